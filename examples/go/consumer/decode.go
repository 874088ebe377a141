package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/pubsub/v2"
	cepubsub "github.com/cloudevents/sdk-go/protocol/pubsub/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	_ "google.golang.org/protobuf/types/known/structpb" // responses as google.protobuf.Struct
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
	// Result is succeeded, failed or cancelled (an error with code CANCELLED), as the
	// tracker's result attribute; ErrorCode the google.rpc.Code name, OK on success.
	Result    string    `json:"result"`
	ErrorCode string    `json:"errorCode"`
	Operation Operation `json:"operation"`
}

// Operation is the google.longrunning.Operation in the data.
type Operation struct {
	Name            string  `json:"name"`
	Done            bool    `json:"done"`
	Error           *Status `json:"error,omitempty"`
	MetadataTypeURL string  `json:"metadataTypeUrl,omitempty"`
	ResponseTypeURL string  `json:"responseTypeUrl,omitempty"`
	// Response is the response in proto3 JSON when its type is linked into this
	// program (google.protobuf.Struct and the other well-known types), else absent.
	Response json.RawMessage `json:"response,omitempty"`
	Metadata Metadata        `json:"metadata"`
}

// Status is the Operation's error (a google.rpc.Status).
type Status struct {
	Code    int32  `json:"code"`
	Message string `json:"message"`
}

// Metadata is the part of the tracker's tracker.v1.OperationMetadata a consumer selects on.
type Metadata struct {
	OperationType string            `json:"operationType,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Parent        string            `json:"parent,omitempty"`
}

// MetadataTypeURL is the type URL of the tracker's Operation metadata.
const MetadataTypeURL = "type.googleapis.com/tracker.v1.OperationMetadata"

// The field numbers of tracker.v1.OperationMetadata read here (schemas/proto/tracker/v1/operation.proto).
const (
	fieldOperationType protowire.Number = 3
	fieldLabels        protowire.Number = 4
	fieldParent        protowire.Number = 5
)

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
		Result:          "succeeded",
		ErrorCode:       code.Code_OK.String(),
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
		n.Result, n.ErrorCode = "failed", code.Code(e.GetCode()).String()
		if code.Code(e.GetCode()) == code.Code_CANCELLED {
			n.Result = "cancelled"
		}
	}
	if r := op.GetResponse(); r != nil {
		if msg, err := anypb.UnmarshalNew(r, proto.UnmarshalOptions{}); err == nil {
			if text, err := protojson.Marshal(msg); err == nil {
				n.Operation.Response = text
			}
		}
	}
	if m := op.GetMetadata(); m.GetTypeUrl() == MetadataTypeURL {
		meta, err := decodeMetadata(m.GetValue())
		if err != nil {
			return Notification{}, fmt.Errorf("metadata is not a tracker.v1.OperationMetadata: %w", err)
		}
		n.Operation.Metadata = meta
	}
	return n, nil
}

// decodeMetadata reads operation_type, labels and parent from the wire form of a
// tracker.v1.OperationMetadata and skips the other fields.
func decodeMetadata(b []byte) (Metadata, error) {
	meta := Metadata{}
	err := fields(b, func(num protowire.Number, value []byte) error {
		switch num {
		case fieldOperationType:
			meta.OperationType = string(value)
		case fieldParent:
			meta.Parent = string(value)
		case fieldLabels: // a map entry: key = 1, value = 2
			var key, label string
			err := fields(value, func(num protowire.Number, v []byte) error {
				switch num {
				case 1:
					key = string(v)
				case 2:
					label = string(v)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if meta.Labels == nil {
				meta.Labels = map[string]string{}
			}
			meta.Labels[key] = label
		}
		return nil
	})
	return meta, err
}

// fields calls f with each length-delimited field of a message's wire form, skipping
// fields of the other wire types.
func fields(b []byte, f func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		value, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, value); err != nil {
			return err
		}
	}
	return nil
}
