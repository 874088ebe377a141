package main

// -print-vector: encode one case of schemas/testdata/vectors.json with Encode and the
// data types of events.go, so a test can compare the result with the case's bytes.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

type vectorCase struct {
	Name       string            `json:"name"`
	Mode       string            `json:"mode"`
	Headers    map[string]string `json:"headers"`
	Body       *string           `json:"body"`
	Attributes map[string]string `json:"attributes"`
	Valid      bool              `json:"valid"`
	Expected   *struct {
		ID       string          `json:"id"`
		Source   string          `json:"source"`
		Type     string          `json:"type"`
		Subject  string          `json:"subject"`
		Time     *string         `json:"time"`
		Sequence *int64          `json:"sequence"`
		Attempt  *int32          `json:"attempt"`
		Data     json.RawMessage `json:"data"`
	} `json:"expected"`
}

var dataTypes = map[string]func() any{
	"created":    func() any { return &Created{} },
	"progress":   func() any { return &Progress{} },
	"checkpoint": func() any { return &Checkpoint{} },
	"heartbeat":  func() any { return &Heartbeat{} },
	"succeeded":  func() any { return &Succeeded{} },
	"failed":     func() any { return &Failed{} },
	"cancelled":  func() any { return &Cancelled{} },
}

// coreAttributes are the CloudEvents attributes Event has fields for.
var coreAttributes = map[string]bool{
	"ce-specversion": true, "ce-type": true, "ce-source": true, "ce-id": true,
	"ce-subject": true, "ce-time": true, "ce-sequence": true, "ce-attempt": true,
	"ce-datacontenttype": true,
}

func printVector(path, name string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var file struct {
		Cases []vectorCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, c := range file.Cases {
		if c.Name != name {
			continue
		}
		if !c.Valid || c.Expected == nil {
			return fmt.Errorf("case %s is not a valid event", name)
		}
		x := c.Expected
		e := Event{Type: strings.TrimPrefix(x.Type, "tracker.operation.v1."), Source: x.Source, ID: x.ID, Subject: x.Subject}
		if x.Time != nil {
			if e.Time, err = time.Parse(time.RFC3339Nano, *x.Time); err != nil {
				return err
			}
		}
		if x.Sequence != nil {
			e.Sequence = *x.Sequence
		}
		if x.Attempt != nil {
			e.Attempt = *x.Attempt
		}
		// Extension attributes are part of the input, as a producer would set them.
		extensions, err := vectorExtensions(c)
		if err != nil {
			return err
		}
		if len(extensions) > 0 {
			e.Extensions = extensions
		}
		// The expected data (proto3 JSON) into the kind's Go type; an unknown field is a
		// wrong json tag in events.go. The empty message is sent as no data at all.
		newData, ok := dataTypes[e.Type]
		if !ok {
			return fmt.Errorf("case %s: unknown type %s", name, x.Type)
		}
		if s := string(bytes.TrimSpace(x.Data)); s != "" && s != "{}" && s != "null" {
			data := newData()
			decoder := json.NewDecoder(bytes.NewReader(x.Data))
			decoder.DisallowUnknownFields()
			if err := decoder.Decode(data); err != nil {
				return fmt.Errorf("case %s: data into %T: %w", name, data, err)
			}
			e.Data = data
		}
		attrs, body, err := Encode(e)
		if err != nil {
			return err
		}
		out, err := json.Marshal(map[string]any{"attributes": attrs, "body": string(body)})
		if err != nil {
			return err
		}
		fmt.Println(string(out))
		return nil
	}
	return fmt.Errorf("no case %q in %s", name, path)
}

// vectorExtensions returns the case's extension attributes (without "ce-"): from the
// ce-* headers or attributes in binary mode, from the event JSON in structured mode.
func vectorExtensions(c vectorCase) (map[string]string, error) {
	out := map[string]string{}
	if strings.Contains(c.Mode, "structured") {
		var event map[string]any
		if c.Body == nil || json.Unmarshal([]byte(*c.Body), &event) != nil {
			return nil, fmt.Errorf("case %s: structured body is not a JSON object", c.Name)
		}
		for key, value := range event {
			if !coreAttributes["ce-"+key] && key != "data" && key != "data_base64" && key != "dataschema" {
				out[key] = fmt.Sprint(value)
			}
		}
		return out, nil
	}
	for _, attrs := range []map[string]string{c.Headers, c.Attributes} {
		for key, value := range attrs {
			if strings.HasPrefix(key, "ce-") && !coreAttributes[key] {
				out[strings.TrimPrefix(key, "ce-")] = value
			}
		}
	}
	return out, nil
}
