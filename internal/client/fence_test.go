package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

var errFenced = errors.New("fenced")

// gateAfter is a write gate that lets n asks through, then refuses.
func gateAfter(n int64) (func() error, *atomic.Int64) {
	var asked atomic.Int64
	return func() error {
		if asked.Add(1) > n {
			return errFenced
		}
		return nil
	}, &asked
}

// fenceServer answers every user create (after a 429 on the first, Retry-After 1s,
// with throttleFirst), counting the creates that reached it whole.
func fenceServer(t *testing.T, throttleFirst bool) (*Client, *atomic.Int64) {
	var creates atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			// Cut short (the gate refused as the body was written, after the headers
			// went out): not a request any server acts on.
			return
		}
		if creates.Add(1) == 1 && throttleFirst {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"message":"too many requests","code":"TOO_MANY_REQUESTS"}`))
			return
		}
		_, _ = w.Write([]byte(`{"id":"u1"}`))
	}))
	t.Cleanup(srv.Close)
	c, err := New(Options{BaseURL: srv.URL, Token: state.Secret(testToken), Paths: PathsPartner})
	require.NoError(t, err)
	return c, &creates
}

// A write the gate refuses before it is sent never reaches the server and fails as not
// sent (not as a lost answer to look up).
func TestWriteGateRefusesBeforeSending(t *testing.T) {
	c, creates := fenceServer(t, false)
	gate, _ := gateAfter(0)
	_, err := c.WithWriteGate(gate).CreateUser(context.Background(), state.UserFields{Email: state.Some("a@acme.test")})
	require.ErrorIs(t, err, ErrNotSent)
	require.ErrorIs(t, err, errFenced)
	assert.False(t, IsLost(err))
	assert.Zero(t, creates.Load())
	// Reads are not fenced, and the client it was made from is not.
	_, err = c.CreateUser(context.Background(), state.UserFields{Email: state.Some("a@acme.test")})
	require.NoError(t, err)
}

// The gate is asked again as the body is written: a write refused at that last moment
// does not reach the server either.
func TestWriteGateAskedAsTheBodyIsWritten(t *testing.T) {
	c, creates := fenceServer(t, false)
	gate, asked := gateAfter(1)
	_, err := c.WithWriteGate(gate).CreateUser(context.Background(), state.UserFields{Email: state.Some("a@acme.test")})
	require.ErrorIs(t, err, ErrNotSent)
	assert.Equal(t, int64(2), asked.Load())
	assert.Zero(t, creates.Load())
}

// A write that waits out a 429's Retry-After is asked again before it is repeated: a
// lease lost meanwhile drops it.
func TestWriteGateAskedBeforeEachAttempt(t *testing.T) {
	c, creates := fenceServer(t, true)
	gate, _ := gateAfter(2) // the first attempt asks twice (before sending, as written)
	_, err := c.WithWriteGate(gate).CreateUser(context.Background(), state.UserFields{Email: state.Some("a@acme.test")})
	require.ErrorIs(t, err, ErrNotSent)
	assert.Equal(t, int64(1), creates.Load(), "the 429'd attempt only")
}
