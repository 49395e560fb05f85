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
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONBody+1))
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
func decodeObject(op string, b []byte, v any) error {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || t[0] != '{' {
		return malformed(op, "not a JSON object: %s", snippet(t))
	}
	var probe struct {
		ID      json.RawMessage `json:"id"`
		Items   json.RawMessage `json:"items"`
		Code    any             `json:"code"`
		Message any             `json:"message"`
	}
	if err := json.Unmarshal(t, &probe); err != nil {
		return malformed(op, "%v", err)
	}
	if probe.Code != nil && probe.Message != nil && probe.ID == nil && probe.Items == nil {
		return &APIError{Op: op, Status: http.StatusOK, Code: stringish(probe.Code), Message: stringish(probe.Message)}
	}
	if err := json.Unmarshal(t, v); err != nil {
		return malformed(op, "%v", err)
	}
	return nil
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
