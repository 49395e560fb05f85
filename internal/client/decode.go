package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

func malformed(op, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", op, ErrMalformed, fmt.Sprintf(format, args...))
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// readObject reads a 2xx JSON answer into v (see decodeObject).
func readObject(op string, resp *http.Response, v any) error {
	return readObjectFrom(op, resp.Body, v)
}

// readObjectFrom is readObject from a body reader.
func readObjectFrom(op string, body io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(body, maxJSONBody+1))
	if err != nil {
		return fmt.Errorf("%s: reading the answer: %w", op, err)
	}
	if len(b) > maxJSONBody {
		return malformed(op, "answer larger than %d bytes", maxJSONBody)
	}
	return decodeObject(op, b, v)
}

// decodeObject decodes a 2xx body into v after checking that it is a JSON object and
// not an error body: a slow call may switch to a streamed 200 that carries an error.
// Decode into an object (map[string]json.RawMessage) and read its members with member
// where a key matters: encoding/json matches struct fields case-insensitively, and
// {"ITEMS":[]} must not pass for an empty list.
func decodeObject(op string, b []byte, v any) error {
	t := bytes.Trim(b, jsonSpace)
	if len(t) == 0 || t[0] != '{' {
		return malformed(op, "not a JSON object: %s", snippet(t))
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(t, &probe); err != nil {
		return malformed(op, "%v", err)
	}
	_, hasID := probe["id"]
	_, hasItems := probe["items"]
	var code, message any
	_ = json.Unmarshal(probe["code"], &code)
	_ = json.Unmarshal(probe["message"], &message)
	if code != nil && message != nil && !hasID && !hasItems {
		return &APIError{Op: op, Status: http.StatusOK, Code: stringish(code), Message: stringish(message)}
	}
	if err := json.Unmarshal(t, v); err != nil {
		return malformed(op, "%v", err)
	}
	return nil
}

// jsonSpace is the whitespace JSON allows around a value (bytes.TrimSpace would also
// take Unicode spaces, which make the body invalid JSON).
const jsonSpace = " \t\r\n"

// object is a JSON object answer, its members by their keys exactly as written.
type object map[string]json.RawMessage

// member decodes the member key of o into v. It reports false, leaving v alone, when
// the key is missing or null.
func (o object) member(op, key string, v any) (bool, error) {
	raw, ok := o[key]
	if !ok || string(raw) == "null" {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, malformed(op, "%s: %v", key, err)
	}
	return true, nil
}

// snippet shows the start of a bad body, enough to recognise an HTML page or a proxy.
func snippet(b []byte) string {
	const n = 80
	if len(b) == 0 {
		return "empty body"
	}
	if len(b) > n {
		return fmt.Sprintf("%q...", b[:n])
	}
	return fmt.Sprintf("%q", b)
}
