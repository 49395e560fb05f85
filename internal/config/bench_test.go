package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchConfig is a realistic file of users [from, to): defaults, meta, limits, tokens.
func benchConfig(from, to int) []byte {
	var b strings.Builder
	b.Grow((to - from) * 260)
	b.WriteString("version: 1\nowner: acme-platform\ndefaults:\n  meta: { plan: standard }\n  limits: { conversations: 1000 }\nusers:\n")
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "  - email: user%d@acme.test\n    name: User %d\n    meta: { team: team%d, region: eu }\n", i, i, i%50)
		b.WriteString("    limits:\n      tokens: 100000\n      database: { datasets: 5, files: 100 }\n")
		b.WriteString("    tokens:\n      - name: ci\n        rotateAfter: 30d\n")
	}
	return []byte(b.String())
}

// BenchmarkLoad loads n users from a directory of files of at most 25,000 users
// (about 5.5 MB each: 100,000 such users do not fit the 10 MiB limit of one file).
func BenchmarkLoad(b *testing.B) {
	const perFile = 25_000
	for _, n := range []int{1_000, 10_000, 100_000} {
		dir := b.TempDir()
		var size int64
		for from := 0; from < n; from += perFile {
			data := benchConfig(from, min(from+perFile, n))
			size += int64(len(data))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("users-%06d.yaml", from)), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(size)
			for b.Loop() {
				d, err := Load([]string{dir}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if len(d.Users) != n {
					b.Fatalf("loaded %d users, want %d", len(d.Users), n)
				}
			}
		})
	}
}
