// Command consumer receives the tracker's done-notifications from a Pub/Sub subscription
// with the CloudEvents Go SDK's Pub/Sub binding (github.com/cloudevents/sdk-go/protocol/pubsub/v2),
// selects them by operation type, labels and result, and acts on each: it prints one JSON
// line (the event's attributes and the Operation in its data) and runs -on-success or
// -on-failure.
//
//	go run . -subscription projects/P/subscriptions/S [selection] [actions] [-count 1] [-timeout 60]
//	go run . -create-subscription projects/P/subscriptions/S -topic projects/P/topics/T \
//	    [-operation-type export] [-label env=prod]... [-result failed|succeeded|cancelled|NOT_FOUND] \
//	    [-on-success CMD] [-on-failure CMD]
//	go run . -print-filter [selection]
//
// -create-subscription creates the subscription with the Pub/Sub filter the selection
// makes (or uses it if it exists on that topic with that filter); with -subscription the
// selection is checked here only. Either way every notification is checked against the
// selection after decoding: one outside it is acknowledged and reported on stderr as
// skipped.
//
// CMD runs with `sh -c`, the notification's JSON line on its stdin, its stdout and stderr
// on the consumer's stderr, and DONE_ID, DONE_OPERATION, DONE_RESULT, DONE_ERROR_CODE,
// DONE_ERROR_MESSAGE, DONE_OPERATION_TYPE, DONE_RESPONSE_TYPE and DONE_RESPONSE in its
// environment. -on-failure runs for failed and cancelled operations. The message is
// acknowledged only when the action exits 0; otherwise it is nacked, redelivered and the
// action runs again. A notification redelivered after it was acted on (the same ce-id) is
// acknowledged and not acted on again; one arriving after -count is nacked for the next
// consumer.
//
// Exit status: 0 when every notification acted on succeeded, 3 when one of them failed
// or was cancelled, 1 on an error (the timeout before -count, a message that is not a
// CloudEvent, a subscription that exists with another filter), 2 for bad flags. -count 0
// runs until SIGINT, SIGTERM or the timeout (-timeout 0: none).
//
// It uses Application Default Credentials, or the emulator when PUBSUB_EMULATOR_HOST is set.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Options are the command's flags.
type Options struct {
	Subscription string
	Create       bool // -create-subscription: create it (on Topic, with the selection's filter)
	Topic        string
	Selector     Selector
	OnSuccess    string
	OnFailure    string
	Count        int
	Timeout      time.Duration
}

// Exit statuses.
const (
	exitOK     = 0
	exitError  = 1
	exitUsage  = 2
	exitFailed = 3
)

func main() {
	var (
		o                    Options
		create, subscription string
		printFilter          bool
		timeout              int
	)
	flag.StringVar(&subscription, "subscription", "", "receive from this subscription: projects/P/subscriptions/S")
	flag.StringVar(&create, "create-subscription", "", "create this subscription on -topic with the selection's filter (or use it if it exists with that filter)")
	flag.StringVar(&o.Topic, "topic", "", "the completion topic, for -create-subscription: projects/P/topics/T")
	flag.StringVar(&o.Selector.OperationType, "operation-type", "", "select operations of this type")
	flag.Func("label", "select operations with this label, KEY=VALUE (repeatable)", func(text string) error {
		l, err := ParseLabel(text)
		o.Selector.Labels = append(o.Selector.Labels, l)
		return err
	})
	flag.StringVar(&o.Selector.Result, "result", "", "select by result: succeeded, failed, cancelled, or a google.rpc.Code name (NOT_FOUND, ...)")
	flag.StringVar(&o.OnSuccess, "on-success", "", "run this shell command for each succeeded operation")
	flag.StringVar(&o.OnFailure, "on-failure", "", "run this shell command for each failed or cancelled operation")
	flag.IntVar(&o.Count, "count", 1, "stop after acting on this many notifications (0: until interrupted or -timeout)")
	flag.IntVar(&timeout, "timeout", 60, "give up after this many seconds (0: never)")
	flag.BoolVar(&printFilter, "print-filter", false, "print the Pub/Sub filter the selection makes, and exit")
	flag.Parse()
	o.Timeout = time.Duration(timeout) * time.Second
	if err := usage(&o, subscription, create, printFilter); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(exitUsage)
	}
	if printFilter {
		filter, _ := o.Selector.Filter()
		fmt.Println(filter)
		return
	}
	failed, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(exitError)
	}
	if failed {
		os.Exit(exitFailed)
	}
}

// usage checks the flags and fills in the subscription to receive from.
func usage(o *Options, subscription, create string, printFilter bool) error {
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if err := CheckResult(o.Selector.Result); err != nil {
		return err
	}
	if _, err := o.Selector.Filter(); err != nil {
		return err
	}
	if o.Count < 0 || o.Timeout < 0 {
		return errors.New("-count and -timeout must be 0 or more")
	}
	if printFilter {
		return nil
	}
	switch {
	case subscription != "" && create != "":
		return errors.New("give -subscription or -create-subscription, not both")
	case create != "":
		o.Subscription, o.Create = create, true
		if _, err := project(o.Topic, "topics"); err != nil {
			return fmt.Errorf("-create-subscription needs -topic: %w", err)
		}
	case subscription != "":
		o.Subscription = subscription
		if o.Topic != "" {
			return errors.New("-topic goes with -create-subscription")
		}
	default:
		return errors.New("give -subscription or -create-subscription projects/P/subscriptions/S")
	}
	_, err := project(o.Subscription, "subscriptions")
	return err
}

// project is P of projects/P/<kind>/NAME.
func project(name, kind string) (string, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[1] == "" || parts[2] != kind || parts[3] == "" {
		return "", fmt.Errorf("%q is not projects/P/%s/NAME", name, kind)
	}
	return parts[1], nil
}

// ensureSubscription creates the subscription with the selection's filter, or checks
// that the one there has the same topic and filter.
func ensureSubscription(ctx context.Context, client *pubsub.Client, o Options) error {
	filter, err := o.Selector.Filter()
	if err != nil {
		return err
	}
	admin := client.SubscriptionAdminClient
	_, err = admin.CreateSubscription(ctx, &pubsubpb.Subscription{Name: o.Subscription, Topic: o.Topic, Filter: filter})
	if status.Code(err) != codes.AlreadyExists {
		return err
	}
	there, err := admin.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: o.Subscription})
	if err != nil {
		return err
	}
	if there.GetTopic() != o.Topic || there.GetFilter() != filter {
		return fmt.Errorf("%s exists on topic %s with filter %q, not on %s with %q",
			o.Subscription, there.GetTopic(), there.GetFilter(), o.Topic, filter)
	}
	return nil
}

// run receives until -count notifications were acted on; whether one of them was a failure.
func run(o Options) (bool, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.Timeout > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeout(ctx, o.Timeout)
		defer cancelTimeout()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	proj, _ := project(o.Subscription, "subscriptions")
	client, err := pubsub.NewClient(ctx, proj)
	if err != nil {
		return false, err
	}
	defer client.Close()
	if o.Create {
		if err := ensureSubscription(ctx, client, o); err != nil {
			return false, err
		}
	}
	var (
		mu      sync.Mutex
		seen    = map[string]bool{}
		acted   int
		failed  bool
		failure error
	)
	out := json.NewEncoder(os.Stdout)
	// One message at a time: an action runs to its end before the next is looked at.
	err = client.Subscriber(o.Subscription).Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		mu.Lock()
		defer mu.Unlock()
		n, err := Decode(ctx, m)
		if err != nil {
			failure = fmt.Errorf("message %s: %w", m.ID, err)
			m.Nack()
			cancel()
			return
		}
		if seen[n.ID] {
			m.Ack()
			return
		}
		if o.Count > 0 && acted >= o.Count {
			m.Nack() // for whoever receives next
			return
		}
		if ok, why := o.Selector.Matches(n); !ok {
			fmt.Fprintf(os.Stderr, "consumer: skipped %s %s: %s\n", n.ID, n.Subject, why)
			m.Ack()
			return
		}
		line, err := json.Marshal(n)
		if err != nil {
			failure = err
			m.Nack()
			cancel()
			return
		}
		if err := act(ctx, o, n, line); err != nil {
			fmt.Fprintf(os.Stderr, "consumer: %s %s: %v; nacked for redelivery\n", n.ID, n.Subject, err)
			m.Nack()
			return
		}
		if err := out.Encode(json.RawMessage(line)); err != nil {
			failure = err
			m.Nack()
			cancel()
			return
		}
		m.Ack()
		seen[n.ID] = true
		acted++
		failed = failed || n.Result != "succeeded"
		if o.Count > 0 && acted >= o.Count {
			cancel()
		}
	})
	mu.Lock()
	defer mu.Unlock()
	switch {
	case failure != nil:
		return failed, failure
	case err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
		return failed, err
	case o.Count > 0 && acted < o.Count:
		return failed, fmt.Errorf("%d of %d notifications in %s", acted, o.Count, o.Timeout)
	}
	return failed, nil
}

// act runs the notification's command, if there is one.
func act(ctx context.Context, o Options, n Notification, line []byte) error {
	command := o.OnFailure
	if n.Result == "succeeded" {
		command = o.OnSuccess
	}
	if command == "" {
		return nil
	}
	// The action's own context: a consumer stopping (signal, timeout) lets it finish.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), "sh", "-c", command)
	cmd.Stdin = bytes.NewReader(append(line, '\n'))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	var message string
	if n.Operation.Error != nil {
		message = n.Operation.Error.Message
	}
	cmd.Env = append(os.Environ(),
		"DONE_ID="+n.ID,
		"DONE_OPERATION="+n.Operation.Name,
		"DONE_RESULT="+n.Result,
		"DONE_ERROR_CODE="+n.ErrorCode,
		"DONE_ERROR_MESSAGE="+message,
		"DONE_OPERATION_TYPE="+n.Operation.Metadata.OperationType,
		"DONE_RESPONSE_TYPE="+n.Operation.ResponseTypeURL,
		"DONE_RESPONSE="+string(n.Operation.Response),
	)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%q: %w", command, err)
	}
	return nil
}
