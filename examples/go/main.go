// Command producer publishes the life of one operation to a Pub/Sub topic that the
// tracker pulls from: created -> progress 25% -> progress 75% -> succeeded (or failed),
// as CloudEvents in Pub/Sub binary content mode, numbered by ce-sequence and ordered by
// the operation name as ordering key. See docs/publishing.md.
//
//	go run . -topic projects/P/topics/T -operation operations/demo-1 [-outcome failed]
//
// It honours PUBSUB_EMULATOR_HOST (the Go client does). With -print-vector CASE it
// prints what Encode makes of a case of schemas/testdata/vectors.json instead.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
)

func main() {
	topic := flag.String("topic", os.Getenv("TRACKER_TOPIC"), "Pub/Sub topic: projects/P/topics/T (env TRACKER_TOPIC)")
	operation := flag.String("operation", "", "operation name: operations/...")
	outcome := flag.String("outcome", "succeeded", "how the operation ends: succeeded or failed")
	source := flag.String("source", "/examples/go", "CloudEvents source: this producer")
	vector := flag.String("print-vector", "", "print Encode's attributes and body for this test vector case, then exit")
	vectors := flag.String("vectors", "../../schemas/testdata/vectors.json", "test vector file for -print-vector")
	flag.Parse()

	var err error
	if *vector != "" {
		err = printVector(*vectors, *vector)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		err = run(ctx, *topic, *operation, *outcome, *source)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, topic, operation, outcome, source string) error {
	parts := strings.Split(topic, "/") // projects/P/topics/T
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "topics" || operation == "" {
		return fmt.Errorf("need -topic projects/P/topics/T and -operation operations/NAME")
	}
	last := map[string]any{
		"succeeded": Succeeded{Response: map[string]any{"rows": 1200, "uri": "gs://example/export.csv"}},
		"failed":    Failed{Error: Status{Code: 9, Message: "bucket example does not exist"}}, // FAILED_PRECONDITION
	}[outcome]
	if last == nil {
		return fmt.Errorf("-outcome %q: want succeeded or failed", outcome)
	}

	client, err := pubsub.NewClient(ctx, parts[1])
	if err != nil {
		return err
	}
	defer client.Close()
	pub := client.Publisher(topic)
	pub.EnableMessageOrdering = true
	defer pub.Stop()

	steps := []struct {
		kind string
		data any
	}{
		{"created", Created{OperationType: "export", Labels: map[string]string{"example": "go"}}},
		{"progress", Progress{Percent: 25, Message: "reading rows"}},
		{"progress", Progress{Percent: 75, Message: "writing file"}},
		{outcome, last},
	}
	for i, step := range steps {
		err := publish(ctx, pub, Event{
			Type:     step.kind,
			Source:   source,
			ID:       rand.Text(), // new per event; keep it when you retry the same event
			Subject:  operation,
			Time:     time.Now(),
			Sequence: int64(i + 1),
			Data:     step.data,
		})
		if err != nil {
			return fmt.Errorf("publishing %s: %w", step.kind, err)
		}
		fmt.Printf("published %s %s (sequence %d)\n", step.kind, operation, i+1)
	}
	return nil
}
