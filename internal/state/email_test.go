package state

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestEmailProblemIsThePlatforms pins the platform's email check (Joi's
// email({tlds: false, allowFullyQualified: false})): the four addresses net/mail
// accepts and the platform refuses with 400 are refused, with a reason.
func TestEmailProblemIsThePlatforms(t *testing.T) {
	ok := []string{
		"alice@acme.test", "a.b+c@x.y.z", "o'brien@acme.test", "under_score@acme.test",
		"x@a-b.test", "x@1a.test", "ünï@acme.test", "a@bücher.example", "A@ACME.TEST",
		"cbk-sync-lock+acme-platform@lock.cbk-sync.invalid",
		strings.Repeat("l", 64) + "@acme.test",
	}
	for _, s := range ok {
		assert.Empty(t, EmailProblem(s), s)
	}
	bad := map[string]string{
		"a@localhost":                          "one label",
		"b@x_y.test":                           `character "_"`,
		"c@[1.2.3.4]":                          "IP literal",
		"d@-x.test":                            `starts or ends with "-"`,
		"e@x-.test":                            `starts or ends with "-"`,
		"f@1.2.3.4":                            "does not start with a letter",
		"g@acme.test.":                         "empty label",
		"h@@acme.test":                         `more than one "@"`,
		"@acme.test":                           `nothing stands before`,
		"i@":                                   `nothing stands after`,
		"noat":                                 `no "@"`,
		"j..k@acme.test":                       "empty dot-separated part",
		".j@acme.test":                         "empty dot-separated part",
		`"q"@acme.test`:                        `character "\""`,
		"sp ace@acme.test":                     `character " "`,
		"Alice <a@acme.test>":                  `character " "`,
		"":                                     "empty",
		strings.Repeat("l", 65) + "@acme.test": "longer than 64 bytes",
		"x@" + strings.Repeat(strings.Repeat("d", 60)+".", 5) + "com": "longer than 254",
		"x@" + strings.Repeat("d", 64) + ".test":                      "longer than 63",
	}
	for s, want := range bad {
		assert.Contains(t, EmailProblem(s), want, "%q", s)
	}
}

func FuzzEmailProblem(f *testing.F) {
	for _, s := range []string{"a@b.c", "a@localhost", "b@x_y.test", "c@[1.2.3.4]", "ü@ü.de"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if EmailProblem(s) == "" {
			local, domain, ok := strings.Cut(s, "@")
			if !ok || local == "" || domain == "" || strings.ContainsAny(domain, "_[]@") {
				t.Fatalf("accepted %q", s)
			}
		}
	})
}

// TestLeaseEmailIsValidForEveryOwner: an owner may have 63 characters, and the lease's
// local part would then pass the platform's 64-byte limit; the lease user could never
// be created, and every writing run would fail.
func TestLeaseEmailIsValidForEveryOwner(t *testing.T) {
	seen := map[string]string{}
	for _, owner := range []string{"a", "acme-platform", strings.Repeat("o", 50), strings.Repeat("o", 51),
		strings.Repeat("o", 63), strings.Repeat("o", 62) + "p", strings.Repeat("o", 62) + "q"} {
		e := LeaseEmail(owner)
		assert.Empty(t, EmailProblem(e), "owner %q: %s", owner, e)
		assert.True(t, IsLeaseEmail(e))
		assert.NotContains(t, seen, e, "owners %q and %q share a lease", seen[e], owner)
		seen[e] = owner
	}
	assert.Equal(t, "cbk-sync-lock+acme@lock.cbk-sync.invalid", LeaseEmail("acme"))
}
