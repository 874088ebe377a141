// Command producer publishes the life of one operation: created -> progress 25% ->
// progress 75% -> succeeded (or failed), as CloudEvents in binary content mode,
// numbered by ce-sequence within its ce-attempt. To a Pub/Sub topic that the tracker
// pulls from (ordered by the operation name as ordering key), or with -url straight to
// the tracker's POST /v1/events, sending $TRACKER_TOKEN as a bearer token when it is
// set. See docs/publishing.md.
//
// A restart is the next attempt: with -url it reads the operation first and, if it
// exists, publishes as its attempt + 1 with sequence from 1 (over Pub/Sub, pass
// -attempt). It stops when the tracker's answer says the operation was cancelled.
// -exit-after N stops after N events without ending the operation, as a worker killed
// mid-run would.
//
//	go run . -topic projects/P/topics/T -operation operations/demo-1 [-outcome failed]
//	TRACKER_TOKEN=... go run . -url http://127.0.0.1:8080 -operation operations/demo-2
//	go run . -create http://127.0.0.1:8080 -collection projects/P/locations/L -topic projects/P/topics/T
//
// With -create it first creates the operation synchronously (POST /v1/operations, the
// committed Operation back, idempotent by request id) and then publishes the rest.
//
// It honours PUBSUB_EMULATOR_HOST (the Go client does). With -print-vector CASE it
// prints what Encode makes of a case of schemas/testdata/vectors.json instead.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
)

func main() {
	topic := flag.String("topic", os.Getenv("TRACKER_TOPIC"), "Pub/Sub topic: projects/P/topics/T (env TRACKER_TOPIC)")
	url := flag.String("url", "", "post to this tracker's POST /v1/events instead of Pub/Sub, e.g. http://127.0.0.1:8080")
	operation := flag.String("operation", "", "operation name: operations/...")
	outcome := flag.String("outcome", "succeeded", "how the operation ends: succeeded or failed")
	source := flag.String("source", "/examples/go", "CloudEvents source: this producer")
	vector := flag.String("print-vector", "", "print Encode's attributes and body for this test vector case, then exit")
	vectors := flag.String("vectors", "../../schemas/testdata/vectors.json", "test vector file for -print-vector")
	attempt := flag.Int("attempt", 0, "the attempt to publish as (0: with -url, the operation's current attempt + 1, or 1)")
	exitAfter := flag.Int("exit-after", 0, "exit after this many events, leaving the operation running (0: never)")
	create := flag.String("create", "", "create the operation first at this tracker (POST /v1/{collection}/operations), then publish the rest")
	collection := flag.String("collection", "", "with -create and no -operation: the tracker names it in projects/P[/locations/L]")
	requestID := flag.String("request-id", "", "with -create: the request id (default: a new one, kept across this run's retries)")
	flag.Parse()

	var err error
	if *vector != "" {
		err = printVector(*vectors, *vector)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		name := *operation
		if *create != "" {
			name, err = created(ctx, *create, *collection, name, *requestID)
		}
		if err == nil {
			err = run(ctx, *topic, *url, name, *outcome, *source, int32(*attempt), *exitAfter, *create != "")
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		os.Exit(1)
	}
}

// sender returns how events go out: over HTTP with -url, else to the Pub/Sub topic
// (which answers nothing: the Answer is empty).
func sender(ctx context.Context, topic, url string) (func(Event) (Answer, error), func(), error) {
	if url != "" {
		client := &http.Client{Timeout: 10 * time.Second}
		token := os.Getenv("TRACKER_TOKEN") // empty: no Authorization header
		return func(e Event) (Answer, error) { return post(ctx, client, url, token, e) }, func() {}, nil
	}
	parts := strings.Split(topic, "/") // projects/P/topics/T
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "topics" {
		return nil, nil, fmt.Errorf("need -topic projects/P/topics/T or -url URL")
	}
	client, err := pubsub.NewClient(ctx, parts[1])
	if err != nil {
		return nil, nil, err
	}
	pub := client.Publisher(topic)
	pub.EnableMessageOrdering = true
	stop := func() { pub.Stop(); client.Close() }
	return func(e Event) (Answer, error) { return Answer{}, publish(ctx, pub, e) }, stop, nil
}

// created makes the operation with the tracker at url synchronously and returns its
// name: operation when given (operations/ID or projects/P/locations/L/operations/ID),
// else one the tracker picks in collection.
func created(ctx context.Context, url, collection, operation, requestID string) (string, error) {
	if requestID == "" {
		requestID = rand.Text()
	}
	r := CreateRequest{
		RequestID: requestID,
		Operation: Created{OperationType: "export", Labels: map[string]string{"example": "go"}},
	}
	if operation != "" {
		head, id, found := strings.Cut(operation, "operations/")
		if !found {
			return "", fmt.Errorf("-operation %q: want .../operations/ID", operation)
		}
		collection, r.OperationID = strings.TrimSuffix(head, "/"), id
	}
	client := &http.Client{Timeout: 10 * time.Second}
	name, err := createOperation(ctx, client, url, os.Getenv("TRACKER_TOKEN"), collection, r)
	if err != nil {
		return "", fmt.Errorf("creating the operation: %w", err)
	}
	fmt.Printf("created %s (request id %s)\n", name, requestID)
	return name, nil
}

func run(ctx context.Context, topic, url, operation, outcome, source string, attempt int32, exitAfter int, exists bool) error {
	if operation == "" {
		return fmt.Errorf("need -operation operations/NAME")
	}
	last := map[string]any{
		"succeeded": Succeeded{Response: map[string]any{"rows": 1200, "uri": "gs://example/export.csv"}},
		"failed":    Failed{Error: Status{Code: 9, Message: "bucket example does not exist"}}, // FAILED_PRECONDITION
	}[outcome]
	if last == nil {
		return fmt.Errorf("-outcome %q: want succeeded or failed", outcome)
	}
	if attempt == 0 && url != "" {
		// A restart is the next attempt: read where the operation stands first.
		client := &http.Client{Timeout: 10 * time.Second}
		current, err := currentAttempt(ctx, client, url, os.Getenv("TRACKER_TOKEN"), operation)
		if err != nil {
			return err
		}
		attempt = current + 1
	}
	send, stop, err := sender(ctx, topic, url)
	if err != nil {
		return err
	}
	defer stop()

	steps := []struct {
		kind string
		data any
	}{
		{"created", Created{OperationType: "export", Labels: map[string]string{"example": "go"}}},
		{"progress", Progress{Percent: 25, Message: "reading rows"}},
		{"progress", Progress{Percent: 75, Message: "writing file"}},
		{outcome, last},
	}
	if exists { // created already, with its type and labels: the events report the work
		steps = steps[1:]
	}
	for i, step := range steps {
		if exitAfter > 0 && i == exitAfter {
			fmt.Printf("exiting after %d events\n", i)
			return nil
		}
		answer, err := send(Event{
			Type:     step.kind,
			Source:   source,
			ID:       rand.Text(), // new per event; keep it when you retry the same event
			Subject:  operation,
			Time:     time.Now(),
			Sequence: int64(i + 1), // from 1 in every attempt
			Attempt:  attempt,
			Data:     step.data,
		})
		if err != nil {
			return fmt.Errorf("publishing %s: %w", step.kind, err)
		}
		fmt.Printf("published %s %s (attempt %d, sequence %d) %s\n", step.kind, operation, max(attempt, 1), i+1, answer.Outcome)
		if answer.Cancelled() {
			fmt.Printf("cancelled: %s stops\n", operation)
			return nil
		}
	}
	return nil
}
