package client

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// TestStreamDoesNotTakeATokenListsConnection: while the user stream is still open,
// MaxConns token lists must be able to run at once. The server holds the stream open
// until MaxConns token lists are in flight together; a client whose stream takes one
// of the MaxConns connections never gets there (it was the cost of JSONL listing).
func TestStreamDoesNotTakeATokenListsConnection(t *testing.T) {
	const conns = 2
	var mu sync.Mutex
	inFlight := 0
	together := make(chan struct{})
	var once sync.Once
	hs := newHostile(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/user/list"):
			w.Header().Set("Content-Type", "application/jsonl")
			for i := range 4 {
				fmt.Fprintf(w, `{"type":"item","data":{"id":"u%d"}}`+"\n", i)
			}
			w.(http.Flusher).Flush()
			select { // the stream stays open until the token lists ran together
			case <-together:
			case <-r.Context().Done():
			}
		case strings.HasSuffix(r.URL.Path, "/fetch"):
			fmt.Fprint(w, `{"id":"u3"}`)
		default:
			mu.Lock()
			inFlight++
			if inFlight == conns {
				once.Do(func() { close(together) })
			}
			mu.Unlock()
			select {
			case <-together:
			case <-r.Context().Done():
			}
			mu.Lock()
			inFlight--
			mu.Unlock()
			fmt.Fprint(w, `{"items":[]}`)
		}
	})
	c := hs.client(t, func(o *Options) { o.JSONL = true; o.MaxConns = conns; o.Timeout = 20 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := c.ReadActual(ctx, func(state.User) bool { return true })
	require.NoError(t, err, "the token lists never ran %d at once while the stream was open", conns)
	require.Len(t, a.Users, 4)
}
