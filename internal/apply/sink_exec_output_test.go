package apply_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/apply"
)

// outputs is a slog handler that keeps the raw "output" attributes logged.
type outputs struct {
	mu   sync.Mutex
	got  []string
	msgs []string
}

func (o *outputs) Enabled(context.Context, slog.Level) bool { return true }
func (o *outputs) WithAttrs([]slog.Attr) slog.Handler       { return o }
func (o *outputs) WithGroup(string) slog.Handler            { return o }
func (o *outputs) Handle(_ context.Context, r slog.Record) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.msgs = append(o.msgs, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "output" {
			o.got = append(o.got, a.Value.String())
		}
		return true
	})
	return nil
}

var hexRun = regexp.MustCompile(`[0-9a-fA-F]{2,}`)
var b64Run = regexp.MustCompile(`[A-Za-z0-9+/=_-]{8,}`)

// recoverable reports whether any 12-character piece of secret can be read back from
// text: plainly in any case, from its hex runs, or from its base64 runs at any offset
// (white space removed first, as a reader would).
func recoverable(text, secret string) bool {
	flat := strings.Join(strings.Fields(text), "")
	flatNoOffsets := regexp.MustCompile(`(?m)^[0-7]{7} ?`).ReplaceAllString(text, "") // od's offsets
	candidates := []string{strings.ToLower(flat)}
	for _, run := range hexRun.FindAllString(strings.Join(strings.Fields(flatNoOffsets), ""), -1) {
		for shift := range 2 {
			r := run[shift:]
			if b, err := hex.DecodeString(strings.ToLower(r[:len(r)/2*2])); err == nil {
				candidates = append(candidates, string(b))
			}
		}
	}
	for _, run := range b64Run.FindAllString(flat, -1) {
		run = strings.TrimRight(run, "=")
		for shift := range 4 {
			if shift >= len(run) {
				break
			}
			r := run[shift:]
			r = r[:len(r)/4*4]
			for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
				if b, err := enc.DecodeString(r); err == nil {
					candidates = append(candidates, string(b))
				}
			}
		}
	}
	for _, c := range candidates {
		for k := 0; k+12 <= len(secret); k++ {
			if strings.Contains(c, strings.ToLower(secret[k:k+12])) || strings.Contains(c, secret[k:k+12]) {
				return true
			}
		}
	}
	return false
}

// TestExecSinkOutputScrubbedInEveryEncoding: a hand-off that echoes its record wrapped
// in base64 (GNU base64's 76 columns), as od -tx1 hex, or upper-cased, leaves nothing of
// the secret in the log.
func TestExecSinkOutputScrubbedInEveryEncoding(t *testing.T) {
	rec := realRecord("a@x.test", "ci", "t7")
	secret := rec.Token.Reveal()
	for name, cmd := range map[string]string{
		"base64 wrapped":  `sh -c 'base64'`,
		"base64 shifted":  `sh -c '(printf x; cat) | base64'`,
		"base64 -w0":      `sh -c 'base64 -w0'`,
		"od -tx1":         `sh -c 'od -tx1'`,
		"od shifted":      `sh -c '(printf abc; cat) | od -An -tx1'`,
		"upper case":      `sh -c 'tr a-z A-Z'`,
		"hex upper":       `sh -c 'od -An -tx1 | tr a-z A-Z'`,
		"stderr and fail": `sh -c 'base64 >&2; exit 3'`,
	} {
		t.Run(name, func(t *testing.T) {
			h := &outputs{}
			sink, err := apply.NewExecSink(cmd, apply.ExecOptions{Logger: slog.New(h)})
			require.NoError(t, err)
			derr := sink.Deliver(rec)
			all := strings.Join(h.got, "\n")
			if derr != nil {
				all += "\n" + derr.Error()
			}
			require.NotEmpty(t, h.got, "the output was logged")
			assert.False(t, recoverable(all, secret), "the secret can be read back from: %s", all)
		})
	}
	// the check itself finds what an unscrubbed output would give away
	assert.True(t, recoverable(base64.StdEncoding.EncodeToString([]byte("x"+secret)), secret))
	assert.True(t, recoverable(strings.ToUpper(hex.EncodeToString([]byte(secret))), secret))
}

// TestExecSinkBackgroundChildStillDelivered: a hand-off that stores the secret and
// exits 0, leaving a background process with its stdout open, delivered the secret.
func TestExecSinkBackgroundChildStillDelivered(t *testing.T) {
	h := &outputs{}
	sink, err := apply.NewExecSink(`sh -c 'cat >/dev/null; echo stored; sleep 30 & exit 0'`, apply.ExecOptions{Logger: slog.New(h)})
	require.NoError(t, err)
	require.NoError(t, sink.Deliver(realRecord("a@x.test", "ci", "t8")))
	assert.Contains(t, strings.Join(h.msgs, "\n"), "left a background process")
}
