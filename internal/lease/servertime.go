package lease

import (
	"net/http"
	"sync/atomic"
	"time"
)

// ServerTime is an http.RoundTripper that remembers the Date of the server's latest
// answer, so that a lease's expiry (the server's updatedAt plus its TTL) is judged by
// the server's clock, not by this machine's, which may run fast or slow.
type ServerTime struct {
	Base http.RoundTripper
	last atomic.Int64 // unix nanoseconds of the latest Date seen; 0 before any
}

// RoundTrip sends r with Base and notes the answer's Date.
func (s *ServerTime) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.Base.RoundTrip(r)
	if err == nil {
		if t, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
			s.last.Store(t.UnixNano())
		}
	}
	return resp, err
}

// Now returns the server's time at its latest answer (Date has whole seconds, so it
// is at most a second early: never late), and false before any answer had one.
func (s *ServerTime) Now() (time.Time, bool) {
	n := s.last.Load()
	if n == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}
