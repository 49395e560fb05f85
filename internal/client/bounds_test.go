package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// hostile serves h on 127.0.0.1 and counts its requests.
type hostile struct {
	srv      *httptest.Server
	requests atomic.Int64
}

func newHostile(t *testing.T, h http.HandlerFunc) *hostile {
	t.Helper()
	hs := &hostile{}
	hs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs.requests.Add(1)
		h(w, r)
	}))
	t.Cleanup(hs.srv.Close)
	return hs
}

func (hs *hostile) client(t *testing.T, edit ...func(*Options)) *Client {
	t.Helper()
	o := Options{BaseURL: hs.srv.URL, Token: state.Secret(testToken), RetryBase: time.Millisecond, RetryMaxElapsed: 10 * time.Millisecond}
	for _, e := range edit {
		e(&o)
	}
	c, err := New(o)
	require.NoError(t, err)
	return c
}

// readAll runs a whole ReadActual, bounded so that a listing that never ends fails
// the test instead of hanging it.
func readAll(t *testing.T, c *Client) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.ReadActual(ctx, nil)
	require.NotErrorIs(t, err, context.DeadlineExceeded, "the listing did not end")
	return err
}

func freshUsers(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"x%d"}`, from+i)
	}
	return "[" + b.String() + "]"
}

// A cursor cycle A -> B -> A is an error at the first repeat, not an endless loop
// (79,736 requests in 40 s before).
func TestListCursorCycleIsAnError(t *testing.T) {
	hs := newHostile(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("cursor") {
		case "":
			fmt.Fprint(w, page(freshUsers(0, 100), "A"))
		case "A":
			fmt.Fprint(w, page(freshUsers(100, 100), "B"))
		default:
			fmt.Fprint(w, page(freshUsers(0, 100), "A"))
		}
	})
	err := readAll(t, hs.client(t))
	require.ErrorIs(t, err, ErrListBound)
	assert.ErrorContains(t, err, `cursor "A" a second time`)
	assert.Equal(t, int64(3), hs.requests.Load())
}

// Endless fresh pages end at the item bound.
func TestListEndlessPagesStopAtTheBound(t *testing.T) {
	var n atomic.Int64
	hs := newHostile(t, func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1))
		fmt.Fprint(w, page(freshUsers(i*100, 100), fmt.Sprint("c", i)))
	})
	c := hs.client(t)
	c.maxListItems = 5_000
	err := readAll(t, c)
	require.ErrorIs(t, err, ErrListBound)
	assert.ErrorContains(t, err, "more than 5000 items")
	assert.Equal(t, int64(51), hs.requests.Load(), "50 pages fit, the 51st breaks the bound")
}

// The same page again and again under fresh cursors is bounded too: repeats count.
func TestListRepeatedPagesUnderFreshCursorsStop(t *testing.T) {
	var n atomic.Int64
	hs := newHostile(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, page(freshUsers(0, 100), fmt.Sprint("c", n.Add(1))))
	})
	c := hs.client(t)
	c.maxListItems = 2_000
	err := readAll(t, c)
	require.ErrorIs(t, err, ErrListBound)
	assert.Equal(t, int64(21), hs.requests.Load())
}

// An endless JSONL stream of fresh items ends at the byte bound, and memory with it:
// the client never holds more than it was allowed to read.
func TestListEndlessStreamStopsAtTheBound(t *testing.T) {
	hs := newHostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jsonl")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, `{"type":"item","data":{"id":"x%d","meta":{"pad":"%s"}}}`+"\n", i, strings.Repeat("p", 200)); err != nil {
				return // the client hung up
			}
		}
	})
	c := hs.client(t, func(o *Options) { o.JSONL = true })
	c.maxListBytes = 4 << 20
	err := readAll(t, c)
	require.ErrorIs(t, err, ErrListBound)
	assert.ErrorContains(t, err, "more than 4 MiB")
	assert.Equal(t, int64(1), hs.requests.Load(), "a bound is not retried")

	c = hs.client(t, func(o *Options) { o.JSONL = true })
	c.maxListItems = 10_000
	err = readAll(t, c)
	require.ErrorIs(t, err, ErrListBound)
	assert.ErrorContains(t, err, "more than 10000 items")
}

// A stream of keep-alives with no item ends once no item came for twice the request
// timeout, also after a first item.
func TestListNopOnlyStreamIsAnError(t *testing.T) {
	for name, first := range map[string]string{"no item": "", "one item then nops": `{"type":"item","data":{"id":"u1"}}` + "\n"} {
		t.Run(name, func(t *testing.T) {
			hs := newHostile(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/jsonl")
				fmt.Fprint(w, first)
				tick := time.NewTicker(5 * time.Millisecond) // the hostile server's keep-alive rhythm
				defer tick.Stop()
				for {
					if _, err := fmt.Fprint(w, `{"type":"nop"}`+"\n"); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-tick.C:
					case <-r.Context().Done():
						return
					}
				}
			})
			c := hs.client(t, func(o *Options) { o.JSONL = true; o.Timeout = 100 * time.Millisecond })
			err := readAll(t, c)
			require.ErrorIs(t, err, ErrListBound)
			assert.ErrorContains(t, err, "no item for")
			assert.Equal(t, int64(1), hs.requests.Load(), "not retried")
		})
	}
}

// gzipBomb is a gzip stream that inflates to n bytes of spaces.
func gzipBomb(t *testing.T, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	chunk := bytes.Repeat([]byte(" "), 1<<20)
	for i := 0; i < n; i += len(chunk) {
		_, err := zw.Write(chunk)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return b.Bytes()
}

// The client never asks for compression, so no answer is inflated behind its back: a
// gzip bomb is read as the few KiB it is on the wire and refused, not inflated to the
// 64 MiB cap on every connection (960 MiB of memory at --parallelism 8 before).
func TestCompressedAnswersAreNeverInflated(t *testing.T) {
	bomb := gzipBomb(t, 80<<20)
	var asked atomic.Value
	hs := newHostile(t, func(w http.ResponseWriter, r *http.Request) {
		asked.Store(r.Header.Get("Accept-Encoding"))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(bomb)
	})
	c := hs.client(t)
	_, err := c.FetchUser(context.Background(), "u1")
	require.ErrorIs(t, err, ErrMalformed)
	assert.ErrorContains(t, err, `the answer is compressed (Content-Encoding "gzip") though the client asked for none`)
	assert.Equal(t, "identity", asked.Load())
}

// Token lists are bounded per user, and all the listings of a run together: ten users
// with a hundred thousand tokens each no longer fill the memory (1.58 GiB before).
func TestTokenFloodsAreBounded(t *testing.T) {
	hs := newHostile(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/user/list") {
			fmt.Fprint(w, page(usersJSON(0, 10), ""))
			return
		}
		user := strings.Split(r.URL.Path, "/")[4]
		var b strings.Builder
		for i := range 100 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"id":"%s-%s-%d"}`, user, r.URL.Query().Get("cursor"), i)
		}
		fmt.Fprint(w, page("["+b.String()+"]", fmt.Sprint(r.URL.Query().Get("cursor"), "x")))
	})
	c := hs.client(t, func(o *Options) { o.Paths = PathsPartner; o.MaxConns = 1 })
	c.maxUserTokens = 1_000
	all := func(state.User) bool { return true }
	_, err := c.ReadActual(context.Background(), all)
	require.ErrorIs(t, err, ErrListBound)
	assert.ErrorContains(t, err, "more than 1000 tokens for one user")

	c = hs.client(t, func(o *Options) { o.Paths = PathsPartner; o.MaxConns = 1 })
	c.maxRunItems = 2_500
	_, err = c.ReadActual(context.Background(), all)
	require.ErrorIs(t, err, ErrListBound)
	assert.ErrorContains(t, err, "more than 2500 users and tokens received in this run")
}

// A JSONL request answered with a JSON page (a proxy, an older server) fails at once
// naming what came back, instead of being retried as a malformed stream for the whole
// --retry-timeout.
func TestJSONLAnsweredWithAPageFailsAtOnce(t *testing.T) {
	for name, body := range map[string]string{
		"compact":  page(usersJSON(0, 3), "u2") + "\n",
		"indented": "{\n  \"items\": " + usersJSON(0, 3) + "\n}\n",
	} {
		t.Run(name, func(t *testing.T) {
			hs := newHostile(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, body)
			})
			c := hs.client(t, func(o *Options) { o.JSONL = true; o.RetryMaxElapsed = time.Minute })
			err := readAll(t, c)
			require.ErrorIs(t, err, ErrMalformed)
			assert.ErrorContains(t, err, `asked for a JSONL stream (Accept: application/jsonl) and the server answered a JSON page (Content-Type "application/json"); use --listing paged`)
			assert.Equal(t, int64(1), hs.requests.Load(), "not retried")
		})
	}
}

// A stream trickled just fast enough to keep each line within --timeout is bounded as
// a whole: beyond twice the timeout, each item may take minStreamItemTime (a stream of
// 40 items sent one every 150 ms at --timeout 200ms took its 6 s before).
func TestSlowStreamIsBoundedAsAWhole(t *testing.T) {
	hs := newHostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jsonl")
		tick := time.NewTicker(150 * time.Millisecond) // the hostile server's trickle
		defer tick.Stop()
		for i := range 40 {
			fmt.Fprintf(w, `{"type":"item","data":{"id":"x%d"}}`+"\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
	})
	c := hs.client(t, func(o *Options) { o.JSONL = true; o.Timeout = 200 * time.Millisecond })
	err := readAll(t, c)
	require.ErrorIs(t, err, ErrListBound)
	assert.ErrorContains(t, err, "slower than cbk-sync waits for (50ms per item beyond twice --timeout)")
	assert.Equal(t, int64(1), hs.requests.Load(), "not retried")
}
