package lease

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// holderOf reads the holder a lease names ("host/pid/random" for a cbk-sync run).
func holderOf(u state.User) string {
	s, _ := u.Meta.Value()[HolderKey].(string)
	return s
}

// hostPID splits a holder written by defaultHolder into its host and process ID.
func hostPID(holder string) (string, int, bool) {
	parts := strings.Split(holder, "/")
	if len(parts) < 3 {
		return "", 0, false
	}
	pid, err := strconv.Atoi(parts[len(parts)-2])
	if err != nil || pid <= 0 {
		return "", 0, false
	}
	return strings.Join(parts[:len(parts)-2], "/"), pid, true
}

// holderGone reports whether the lease's holder is a process of this host that no
// longer exists: a run killed here, whose lease nobody needs to wait for.
func holderGone(u state.User, self string) bool {
	host, pid, ok := hostPID(holderOf(u))
	if !ok {
		return false
	}
	myHost, myPID, ok := hostPID(self)
	if !ok || host != myHost || pid == myPID {
		return false
	}
	return !processExists(pid)
}

// claimedTTL is the lifetime the lease states (TTLKey), at most MaxTTL; a lease
// without one (an older cbk-sync, one made by hand) lasts DefaultTTL.
func claimedTTL(u state.User) time.Duration {
	s, _ := u.Meta.Value()[TTLKey].(string)
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return DefaultTTL
	}
	return min(d, MaxTTL)
}

// renewedAt is when the server last wrote the lease: its updatedAt (createdAt when
// the API leaves updatedAt out).
func renewedAt(u state.User) time.Time {
	ms := u.UpdatedAt
	if ms == 0 {
		ms = u.CreatedAt
	}
	return time.UnixMilli(ms)
}

// expiresAt is when the lease expires unless renewed, by the server's clock: its last
// write plus its TTL. What the lease claims (ExpiresKey) never extends it, so neither
// a holder whose clock runs fast nor a forged expiry in 2099 can hold the lock longer.
func expiresAt(u state.User) time.Time { return renewedAt(u).Add(claimedTTL(u)) }

// ExpiresAt is when the lease u expires unless renewed, by the server's clock.
func ExpiresAt(u state.User) time.Time { return expiresAt(u) }

// Holder is the holder a lease names.
func Holder(u state.User) string { return holderOf(u) }

func defaultHolder() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), randomHex(4))
}
