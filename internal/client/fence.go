package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
)

// WithWriteGate returns a client that shares this one's connections, pacing and
// counters, and asks gate before each write is sent, every attempt of it: the
// account lock's fence (lease.Lease.Check). A write the gate refuses is not sent and
// fails at once with an error wrapping ErrNotSent and the gate's; a write that
// waited in the client (for a 429 pause, the rate cap, a connection) is asked when
// its turn comes, and asked again as its body is written to the connection.
func (c *Client) WithWriteGate(gate func() error) *Client {
	wc := *c
	wc.writeGate = gate
	return &wc
}

// ErrNotSent is wrapped by the error of a write that the write gate refused: the
// server never saw it.
var ErrNotSent = errors.New("not sent")

func notSent(op string, err error) error { return fmt.Errorf("%s: %w: %w", op, ErrNotSent, err) }

// fencedBody is a write's body that asks the gate when the transport first reads it,
// the last moment before the request leaves: a refusal aborts the request before its
// body is sent (its headers may have been), so it arrives incomplete and no server
// acts on it.
type fencedBody struct {
	r       io.Reader
	gate    func() error
	asked   bool
	refusal atomic.Pointer[error]
}

func (b *fencedBody) Read(p []byte) (int, error) {
	if !b.asked {
		b.asked = true
		if err := b.gate(); err != nil {
			b.refusal.Store(&err)
			return 0, err
		}
	}
	return b.r.Read(p)
}

func (b *fencedBody) Close() error { return nil }

// refused is the gate's error if it refused the write.
func (b *fencedBody) refused() error {
	if b == nil {
		return nil
	}
	if e := b.refusal.Load(); e != nil {
		return *e
	}
	return nil
}

// fence asks the gate for a write about to be sent and, if it may go, makes its body
// ask again as it is written. It returns the gate's refusal, or the body to watch.
func (c *Client) fence(req *http.Request, body []byte) (*fencedBody, error) {
	if c.writeGate == nil || body == nil {
		return nil, nil
	}
	if err := c.writeGate(); err != nil {
		return nil, err
	}
	fb := &fencedBody{r: bytes.NewReader(body), gate: c.writeGate}
	req.Body = fb
	req.GetBody = func() (io.ReadCloser, error) {
		// A resend on a fresh connection asks again.
		return &fencedBody{r: bytes.NewReader(body), gate: c.writeGate}, nil
	}
	return fb, nil
}
