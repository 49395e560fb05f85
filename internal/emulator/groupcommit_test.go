package emulator

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serve sends one request straight to the handler and returns the status.
func serve(e *Emulator, method, path, body string) int {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec.Code
}

// TestWritesArrivingTogetherShareOneSave: while one save is under way, 63 more writes
// arrive; each is answered only after a save that holds it, and they all share one.
func TestWritesArrivingTogetherShareOneSave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	h := newHarness(t, Options{StatePath: path, SaveOnWrite: true})
	ids := make([]string, 64)
	for i := range ids {
		ids[i] = h.createUser(fmt.Sprintf(`{"email":"u%02d@acme.test"}`, i))
	}
	var saves atomic.Int64
	first, release := make(chan struct{}), make(chan struct{})
	h.e.saveMu.Lock()
	h.e.writeJournal = func(w io.Writer, data []byte) error {
		if saves.Add(1) == 1 {
			close(first)
			<-release
		}
		_, err := w.Write(data)
		return err
	}
	h.e.saveMu.Unlock()
	h.e.mu.Lock()
	base := h.e.version
	h.e.mu.Unlock()

	codes := make([]int, len(ids))
	var wg sync.WaitGroup
	wg.Go(func() { codes[0] = serve(h.e, "POST", "/v1/partner/user/"+ids[0]+"/update", `{"name":"n0"}`) })
	<-first // the first save is writing, and holds the others back
	for i := 1; i < len(ids); i++ {
		wg.Go(func() {
			codes[i] = serve(h.e, "POST", "/v1/partner/user/"+ids[i]+"/update", fmt.Sprintf(`{"name":"n%d"}`, i))
		})
	}
	// Wait until every update is made in memory (and so waits for its save); this
	// spins on the state, it does not sleep.
	for {
		h.e.mu.Lock()
		v := h.e.version
		h.e.mu.Unlock()
		if v == base+uint64(len(ids)) {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	for i, c := range codes {
		require.Equal(t, http.StatusOK, c, "update %d", i)
	}
	assert.Equal(t, int64(2), saves.Load(), "the first save, then one for the 63 that arrived together")

	// What was answered is on disk.
	h2 := newHarness(t, Options{StatePath: path})
	for _, u := range h2.e.Users() {
		assert.True(t, strings.HasPrefix(u.Name.Value(), "n"), "user %s was updated", u.Email.Value())
	}
}

// BenchmarkStateWrites measures user updates per second against an emulator that
// saves its state on every write (cbk-sync emulator --state), 32 at a time, and the
// same without a state file as the bound of the run.
func BenchmarkStateWrites(b *testing.B) {
	for _, persisted := range []bool{false, true} {
		name := "memory"
		if persisted {
			name = "state"
		}
		b.Run(name, func(b *testing.B) {
			opts := Options{Token: testToken}
			if persisted {
				opts.StatePath, opts.SaveOnWrite = filepath.Join(b.TempDir(), "state.json"), true
			}
			e, err := New(opts)
			require.NoError(b, err)
			ids := make([]string, 300)
			for i := range ids {
				u, err := e.PutUser(stateUser(fmt.Sprintf("u%03d@acme.test", i), 1700000000000))
				require.NoError(b, err)
				ids[i] = u.ID
			}
			var n atomic.Int64
			b.SetParallelism((32 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					if c := serve(e, "POST", "/v1/partner/user/"+ids[i%int64(len(ids))]+"/update", fmt.Sprintf(`{"name":"n%d"}`, i)); c != http.StatusOK {
						b.Errorf("status %d", c)
						return
					}
				}
			})
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "writes/s")
			if persisted {
				_ = os.Remove(opts.StatePath)
			}
		})
	}
}
