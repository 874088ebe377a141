package main

import (
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/code"
)

// MaxFilterBytes is the longest subscription filter Pub/Sub takes.
const MaxFilterBytes = 256

// Selector is what a consumer wants of the done-notifications: each field set must match.
// It becomes the subscription's Pub/Sub filter (Filter) and is checked again on every
// decoded notification (Matches): a server that does not apply filters (Google's
// emulator), a label left out of the attributes (attributes_truncated) or two label keys
// that map to one attribute name cannot make the consumer act on the wrong operation.
type Selector struct {
	OperationType string
	Labels        []Label
	// Result is succeeded, failed or cancelled (the result attribute), or a
	// google.rpc.Code name such as NOT_FOUND (the error_code attribute; OK on success).
	Result string
}

// Label is one key=value of -label.
type Label struct{ Key, Value string }

var (
	results = map[string]bool{"succeeded": true, "failed": true, "cancelled": true}
	// The characters the tracker replaces with _ in a label's attribute key.
	notAttributeKey = regexp.MustCompile(`[^A-Za-z0-9_-]`)
)

// ParseLabel reads KEY=VALUE.
func ParseLabel(text string) (Label, error) {
	key, value, ok := strings.Cut(text, "=")
	if !ok || key == "" {
		return Label{}, fmt.Errorf("%q is not KEY=VALUE", text)
	}
	return Label{key, value}, nil
}

// CheckResult refuses a -result that is neither a result word nor a google.rpc.Code name.
func CheckResult(result string) error {
	if result == "" || results[result] {
		return nil
	}
	if _, ok := code.Code_value[result]; ok {
		return nil
	}
	return fmt.Errorf("-result %q: want succeeded, failed, cancelled or a google.rpc.Code name (NOT_FOUND, ...)", result)
}

// Filter is the Pub/Sub filter on the tracker's done-notification attributes, "" for all.
func (s Selector) Filter() (string, error) {
	var terms []string
	if s.OperationType != "" {
		terms = append(terms, equals("operation_type", s.OperationType))
	}
	for _, l := range s.Labels {
		terms = append(terms, equals("label_"+notAttributeKey.ReplaceAllString(l.Key, "_"), l.Value))
	}
	switch {
	case results[s.Result]:
		terms = append(terms, equals("result", s.Result))
	case s.Result != "":
		terms = append(terms, equals("error_code", s.Result))
	}
	filter := strings.Join(terms, " AND ")
	if len(filter) > MaxFilterBytes {
		return "", fmt.Errorf("the filter is %d bytes, Pub/Sub takes at most %d: %s", len(filter), MaxFilterBytes, filter)
	}
	return filter, nil
}

func equals(attribute, value string) string {
	quoted := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(value)
	return fmt.Sprintf(`attributes.%s = "%s"`, attribute, quoted)
}

// Matches says whether a decoded notification is one the selector wants, and if not why.
func (s Selector) Matches(n Notification) (bool, string) {
	meta := n.Operation.Metadata
	if s.OperationType != "" && meta.OperationType != s.OperationType {
		return false, fmt.Sprintf("operation type %q", meta.OperationType)
	}
	for _, l := range s.Labels {
		if value, ok := meta.Labels[l.Key]; !ok || value != l.Value {
			return false, fmt.Sprintf("label %s=%q", l.Key, value)
		}
	}
	if results[s.Result] && n.Result != s.Result {
		return false, "result " + n.Result
	}
	if s.Result != "" && !results[s.Result] && n.ErrorCode != s.Result {
		return false, "error code " + n.ErrorCode
	}
	return true, ""
}
