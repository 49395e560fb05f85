package state

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

const testSecret = "sk-0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff"

// wrap cuts s into lines of n characters, as GNU base64 does at 76.
func wrap(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	return b.String() + s
}

// odHex prints b as od -An -tx1 does: 16 bytes a line, each as " xx".
func odHex(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 && i%16 == 0 {
			sb.WriteString("\n")
		}
		fmt.Fprintf(&sb, " %02x", c)
	}
	return sb.String()
}

// recovers reports whether text still holds enough of the secret to matter: any piece
// of MinFragment characters of it, decoded from any of the forms the redactor knows.
func recovers(text string) bool {
	flat := strings.Join(strings.Fields(text), "")
	candidates := []string{strings.ToLower(flat)}
	if b, err := hex.DecodeString(strings.ToLower(flat)); err == nil {
		candidates = append(candidates, string(b))
	}
	for shift := range 4 {
		if shift < len(flat) {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding} {
				s := flat[shift:]
				s = s[:len(s)/4*4]
				if b, err := enc.DecodeString(s); err == nil {
					candidates = append(candidates, string(b))
				}
			}
		}
	}
	for _, c := range candidates {
		for k := 0; k+MinFragment <= len(testSecret); k++ {
			if strings.Contains(c, testSecret[k:k+MinFragment]) {
				return true
			}
		}
	}
	return false
}

func TestRedactorForms(t *testing.T) {
	r := NewRedactor(testSecret)
	record := `{"email":"a@acme.test","token_name":"ci","token":"` + testSecret + `"}` + "\n"
	for name, text := range map[string]string{
		"plain":           "token " + testSecret + " end",
		"upper":           strings.ToUpper(testSecret),
		"cut piece":       "...d3c4b5a69788796a5b4",
		"base64 -w0":      base64.StdEncoding.EncodeToString([]byte(record)),
		"base64 wrapped":  wrap(base64.StdEncoding.EncodeToString([]byte(record)), 76),
		"base64 shifted":  base64.StdEncoding.EncodeToString([]byte("x" + record)),
		"base64 shifted2": wrap(base64.StdEncoding.EncodeToString([]byte("xy"+record)), 64),
		"base64 url":      base64.URLEncoding.EncodeToString([]byte("xy" + testSecret)),
		"hex":             hex.EncodeToString([]byte(record)),
		"hex upper":       strings.ToUpper(hex.EncodeToString([]byte(record))),
		"od -tx1":         odHex([]byte(record)),
		"od shifted":      odHex([]byte("abcde" + record)),
	} {
		t.Run(name, func(t *testing.T) {
			assert.True(t, recovers(text), "the test case holds the secret")
			out := r.String(text)
			assert.False(t, recovers(out), "left recoverable: %q", out)
			assert.Contains(t, out, Redacted)
		})
	}
}

func TestRedactorKeepsOrdinaryText(t *testing.T) {
	r := NewRedactor(testSecret, "hunter22")
	for _, s := range []string{
		"Plan: 3 users to create, task-20240101abcdef done",
		"user u000@acme.test name=\"User 0\" meta={\"cbkSyncOwner\":\"acme\"}",
		hex.EncodeToString([]byte("an ordinary sentence with nothing secret in it")),
		base64.StdEncoding.EncodeToString([]byte("an ordinary sentence with nothing secret in it")),
	} {
		assert.Equal(t, s, r.String(s))
	}
	assert.Equal(t, "pw "+Redacted+" ok", r.String("pw hunter22 ok"))
	assert.Equal(t, Redacted, r.String(hex.EncodeToString([]byte("hunter22"))))
	assert.Equal(t, "", (*Redactor)(nil).String(""))
	assert.Equal(t, "x", (*Redactor)(nil).String("x"))
}

func TestRedactorWithShape(t *testing.T) {
	parent := NewRedactor(testSecret)
	other := "sk-" + strings.Repeat("ab", 32)
	c := parent.With(other)
	assert.Equal(t, "a "+Redacted+" b "+Redacted, c.String("a "+testSecret+" b "+strings.ToUpper(other[:20])))
	assert.Equal(t, "x "+Redacted, c.String("x sk-12345678"), "secret-shaped text")
	assert.Equal(t, "x sk-12345678", parent.String("x sk-12345678"), "the parent knows no shape")
	assert.Equal(t, "task-20240101", c.String("task-20240101"))
	assert.True(t, parent.Knows(testSecret))
	assert.False(t, parent.Knows(other))
	assert.True(t, parent.Contains("..."+testSecret[5:30]))
}
