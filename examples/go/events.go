package main

// The part to copy: Event, Encode, publish (Pub/Sub) or post (HTTP), plus the data
// messages you send.
// The contract is schemas/README.md; docs/publishing.md explains each attribute.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
)

// Event is one tracker event, a CloudEvent 1.0.
type Event struct {
	Type       string            // created, progress, checkpoint, heartbeat, succeeded, failed, cancelled
	Source     string            // this producer, a URI-reference such as /workers/export
	ID         string            // unique per Source and operation; a retry of the same event reuses it
	Subject    string            // the operation name, operations/...
	Time       time.Time         // when it happened; the zero time sends none
	Sequence   int64             // per-operation counter 1, 2, 3, ... within the attempt; 0 sends none
	Attempt    int32             // the run of the work: 1, then previous + 1 after a restart; 0 sends none (read as 1)
	Data       any               // the kind's message (Progress{...}, ...); nil sends no data
	Extensions map[string]string // optional further attributes, e.g. traceparent
}

// Encode returns the attributes and data of e in CloudEvents binary content mode.
// The attribute names are the same as Pub/Sub attributes and as HTTP headers.
func Encode(e Event) (map[string]string, []byte, error) {
	attrs := map[string]string{
		"ce-specversion": "1.0",
		"ce-type":        "tracker.operation.v1." + e.Type,
		"ce-source":      e.Source,
		"ce-id":          e.ID,
		"ce-subject":     e.Subject,
	}
	if !e.Time.IsZero() {
		attrs["ce-time"] = e.Time.UTC().Format(time.RFC3339Nano)
	}
	if e.Sequence > 0 {
		attrs["ce-sequence"] = strconv.FormatInt(e.Sequence, 10)
	}
	if e.Attempt > 0 {
		attrs["ce-attempt"] = strconv.FormatInt(int64(e.Attempt), 10)
	}
	for name, value := range e.Extensions {
		attrs["ce-"+name] = value
	}
	if e.Data == nil {
		return attrs, nil, nil
	}
	body, err := json.Marshal(e.Data)
	if err != nil {
		return nil, nil, err
	}
	attrs["content-type"] = "application/json"
	return attrs, body, nil
}

// publish sends e and waits until Pub/Sub has it. The operation name is the ordering
// key: create the Publisher with EnableMessageOrdering = true.
func publish(ctx context.Context, pub *pubsub.Publisher, e Event) error {
	attrs, body, err := Encode(e)
	if err != nil {
		return err
	}
	msg := &pubsub.Message{Data: body, Attributes: attrs, OrderingKey: e.Subject}
	_, err = pub.Publish(ctx, msg).Get(ctx)
	return err
}

// Answer is the tracker's answer to one posted event: what it did with it ("applied",
// "duplicate", "stale", "late") and where the operation stands after it. A worker stops
// when State is "cancelled" (CancelOperation) or CancelRequested is true.
type Answer struct {
	Outcome         string `json:"outcome"`
	State           string `json:"state"` // running, succeeded, failed or cancelled
	Attempt         int32  `json:"attempt"`
	CancelRequested bool   `json:"cancelRequested"`
}

// Cancelled reports whether the work should stop: the operation was cancelled.
func (a Answer) Cancelled() bool { return a.State == "cancelled" || a.CancelRequested }

// post sends e to the tracker's POST /v1/events in HTTP binary mode: the attributes
// as headers, the data as the body. A non-empty token goes as "Authorization: Bearer",
// which a tracker that checks its callers needs (a 401 answer says it is missing).
func post(ctx context.Context, client *http.Client, url, token string, e Event) (Answer, error) {
	attrs, body, err := Encode(e)
	if err != nil {
		return Answer{}, err
	}
	endpoint := strings.TrimRight(url, "/") + "/v1/events"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	for name, value := range attrs {
		req.Header.Set(name, value)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return Answer{}, fmt.Errorf("tracker answered %s: %s", resp.Status, bytes.TrimSpace(answer))
	}
	var results struct {
		Results []Answer `json:"results"`
	}
	if err := json.Unmarshal(answer, &results); err != nil || len(results.Results) != 1 {
		return Answer{}, fmt.Errorf("unexpected answer: %s", bytes.TrimSpace(answer))
	}
	return results.Results[0], nil
}

// currentAttempt reads the operation's attempt (GET /v1/{name}, which needs
// operations.read): 0 when it does not exist yet, or cannot be read. A worker starts with attempt 1 then, else with this + 1, numbering its
// events from 1 again: the tracker orders them after the previous run's.
func currentAttempt(ctx context.Context, client *http.Client, url, token, name string) (int32, error) {
	endpoint := strings.TrimRight(url, "/") + "/v1/" + name
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusNotFound {
		return 0, nil
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		// No operations.read: a restart cannot be told from a first run. Say so, go on.
		fmt.Fprintf(os.Stderr, "cannot read %s (%s): publishing as attempt 1\n", name, resp.Status)
		return 0, nil
	}
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("tracker answered %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var operation struct {
		Metadata struct {
			Attempt int32 `json:"attempt,string"` // an int64 in proto3 JSON: a string
		} `json:"metadata"`
	}
	if err := json.Unmarshal(body, &operation); err != nil {
		return 0, fmt.Errorf("reading %s: %w", name, err)
	}
	return max(operation.Metadata.Attempt, 1), nil
}

// The data message of each kind (schemas/proto/tracker/v1/events.proto) with its
// proto3 JSON field names. metadata and response are any JSON object: one without
// "@type" is stored as google.protobuf.Struct.

type Created struct {
	OperationType    string            `json:"operationType,omitempty"`
	Labels           map[string]string `json:"labels,omitempty"`
	Parent           string            `json:"parent,omitempty"`
	Metadata         any               `json:"metadata,omitempty"`
	Deadline         time.Time         `json:"deadline,omitzero"`
	HeartbeatTimeout string            `json:"heartbeatTimeout,omitempty"` // a Duration: "300s"
	Retry            *RetryPolicy      `json:"retry,omitempty"`
	Children         *ChildrenPolicy   `json:"children,omitempty"`
	Webhooks         []Webhook         `json:"webhooks,omitempty"`
}

// RetryPolicy: the tracker starts another attempt, instead of failing, on a stall or a
// retryable failure (gRPC's retryPolicy shape).
type RetryPolicy struct {
	MaxAttempts          int32    `json:"maxAttempts"`                    // 1 to 100, the first included
	InitialBackoff       string   `json:"initialBackoff,omitempty"`       // a Duration; default "1s"
	MaxBackoff           string   `json:"maxBackoff,omitempty"`           // default "300s"
	BackoffMultiplier    float64  `json:"backoffMultiplier,omitempty"`    // 1 to 10; default 2
	RetryableStatusCodes []string `json:"retryableStatusCodes,omitempty"` // e.g. "UNAVAILABLE"
}

type ChildrenPolicy struct {
	OnDone   string `json:"onDone,omitempty"`          // RESUME or COMPLETE
	Expected int64  `json:"expected,omitempty,string"` // an int64: a string in proto3 JSON
	FailFast bool   `json:"failFast,omitempty"`
}

type Webhook struct {
	URL     string   `json:"url"`
	Notices []string `json:"notices,omitempty"` // "done", "cancel", "resume"; none: all
}

type Progress struct {
	Percent  float64 `json:"percent,omitempty"` // 0 to 100
	Message  string  `json:"message,omitempty"`
	Metadata any     `json:"metadata,omitempty"`
}

type Checkpoint struct {
	Data []byte `json:"data,omitempty"` // base64 in JSON, as proto3 JSON wants
}

type Heartbeat struct {
	Message string `json:"message,omitempty"`
}

type Succeeded struct {
	Response any `json:"response,omitempty"`
}

type Failed struct {
	Error Status `json:"error"`
}

// Status is a google.rpc.Status; Code is a google.rpc.Code from 1 to 16 (never 0, OK).
type Status struct {
	Code    int32  `json:"code"`
	Message string `json:"message,omitempty"`
	Details []any  `json:"details,omitempty"` // each with "@type", e.g. google.rpc.ErrorInfo
}

type Cancelled struct {
	Reason string `json:"reason,omitempty"`
}

// CreateRequest is the body of POST /v1/{parent}/operations (tracker.v1.Operations
// CreateOperation, docs/api.md "Creating an operation").
type CreateRequest struct {
	OperationID string  `json:"operationId,omitempty"` // empty: the tracker names it
	RequestID   string  `json:"requestId"`             // one per create, the same on every retry
	Operation   Created `json:"operation"`
}

// createOperation creates the operation now and returns its name once the tracker has
// committed it: what an API method hands its caller before the work's events follow
// (over Pub/Sub or HTTP). collection is "" or projects/P[/locations/L]. It retries a
// failed call with the same request id, which answers the same operation (AIP-155).
func createOperation(ctx context.Context, client *http.Client, url, token, collection string, r CreateRequest) (string, error) {
	endpoint := strings.TrimRight(url, "/") + "/v1/operations"
	if collection != "" {
		endpoint = strings.TrimRight(url, "/") + "/v1/" + strings.Trim(collection, "/") + "/operations"
	}
	body, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	var last error
	for try := 0; try < 3; try++ {
		if try > 0 {
			time.Sleep(time.Duration(try) * 500 * time.Millisecond)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err // the tracker may have created it: the same request id finds it
			continue
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			last = fmt.Errorf("tracker answered %s: %s", resp.Status, bytes.TrimSpace(answer))
			continue
		}
		if resp.StatusCode/100 != 2 {
			return "", fmt.Errorf("tracker answered %s: %s", resp.Status, bytes.TrimSpace(answer))
		}
		var operation struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(answer, &operation); err != nil || operation.Name == "" {
			return "", fmt.Errorf("unexpected answer: %s", bytes.TrimSpace(answer))
		}
		return operation.Name, nil
	}
	return "", last
}
