// Command consumer receives the tracker's done-notifications from a Pub/Sub subscription
// with the CloudEvents Go SDK's Pub/Sub binding (github.com/cloudevents/sdk-go/protocol/pubsub/v2)
// and prints each as one JSON line: the event's attributes and the Operation in its data.
//
//	go run . -subscription projects/P/subscriptions/S [-count 1] [-timeout 60]
//
// It uses Application Default Credentials, or the emulator when PUBSUB_EMULATOR_HOST is
// set. A notification redelivered (the same ce-id) is acknowledged and not printed again.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/pubsub/v2"
	cepubsub "github.com/cloudevents/sdk-go/protocol/pubsub/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/protobuf/proto"
)

// Notification is what one done-notification decodes to.
type Notification struct {
	SpecVersion     string            `json:"specversion"`
	Type            string            `json:"type"`
	ID              string            `json:"id"`
	Source          string            `json:"source"`
	Subject         string            `json:"subject"`
	Time            string            `json:"time"`
	DataContentType string            `json:"datacontenttype"`
	DataSchema      string            `json:"dataschema"`
	Extensions      map[string]string `json:"extensions"`
	Operation       Operation         `json:"operation"`
}

// Operation is the part of the google.longrunning.Operation in the data printed here.
type Operation struct {
	Name            string  `json:"name"`
	Done            bool    `json:"done"`
	Error           *Status `json:"error,omitempty"`
	MetadataTypeURL string  `json:"metadataTypeUrl,omitempty"`
	ResponseTypeURL string  `json:"responseTypeUrl,omitempty"`
}

// Status is the Operation's error.
type Status struct {
	Code    int32  `json:"code"`
	Message string `json:"message"`
}

// Decode reads a received message as a CloudEvent with the SDK's Pub/Sub binding.
func Decode(ctx context.Context, m *pubsub.Message) (Notification, error) {
	ev, err := binding.ToEvent(ctx, cepubsub.NewMessage(m))
	if err != nil {
		return Notification{}, fmt.Errorf("not a CloudEvent: %w", err)
	}
	if err := ev.Validate(); err != nil {
		return Notification{}, fmt.Errorf("not a valid CloudEvent: %w", err)
	}
	return notification(ev)
}

func notification(ev *event.Event) (Notification, error) {
	var op longrunningpb.Operation
	if err := proto.Unmarshal(ev.Data(), &op); err != nil {
		return Notification{}, fmt.Errorf("data is not a google.longrunning.Operation: %w", err)
	}
	n := Notification{
		SpecVersion:     ev.SpecVersion(),
		Type:            ev.Type(),
		ID:              ev.ID(),
		Source:          ev.Source(),
		Subject:         ev.Subject(),
		Time:            ev.Time().UTC().Format(time.RFC3339Nano),
		DataContentType: ev.DataContentType(),
		DataSchema:      ev.DataSchema(),
		Extensions:      map[string]string{},
		Operation: Operation{
			Name:            op.GetName(),
			Done:            op.GetDone(),
			MetadataTypeURL: op.GetMetadata().GetTypeUrl(),
			ResponseTypeURL: op.GetResponse().GetTypeUrl(),
		},
	}
	for k, v := range ev.Extensions() {
		n.Extensions[k] = fmt.Sprint(v)
	}
	if e := op.GetError(); e != nil {
		n.Operation.Error = &Status{Code: e.GetCode(), Message: e.GetMessage()}
	}
	return n, nil
}

func main() {
	subscription := flag.String("subscription", "", "projects/P/subscriptions/S")
	count := flag.Int("count", 1, "stop after this many notifications")
	timeout := flag.Int("timeout", 60, "give up after this many seconds")
	flag.Parse()
	parts := strings.Split(*subscription, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "subscriptions" {
		fmt.Fprintln(os.Stderr, "consumer: -subscription must be projects/P/subscriptions/S")
		os.Exit(2)
	}
	if err := run(*subscription, parts[1], *count, time.Duration(*timeout)*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

func run(subscription, project string, count int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client, err := pubsub.NewClient(ctx, project)
	if err != nil {
		return err
	}
	defer client.Close()
	var (
		mu      sync.Mutex
		seen    = map[string]bool{}
		printed int
		failure error
	)
	out := json.NewEncoder(os.Stdout)
	err = client.Subscriber(subscription).Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		n, err := Decode(ctx, m)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failure = fmt.Errorf("message %s: %w", m.ID, err)
			m.Nack()
			cancel()
			return
		}
		m.Ack()
		if seen[n.ID] || printed >= count {
			return
		}
		seen[n.ID] = true
		if err := out.Encode(n); err != nil {
			failure = err
			cancel()
			return
		}
		printed++
		if printed >= count {
			cancel()
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if failure != nil {
		return failure
	}
	if printed < count {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("%d of %d notifications in %s", printed, count, timeout)
	}
	return nil
}
