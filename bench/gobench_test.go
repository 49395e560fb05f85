package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var updateGoBench = flag.Bool("update-gobench", false, "rewrite the Go benchmarks' table in docs/performance.md from bench/gobench.txt")

// The Go benchmarks' table in docs/performance.md, like the bench's, is the output of
// one run: bench/gobench.txt is what `go test -run '^$' -bench . -benchmem
// ./internal/plan/ ./internal/config/` printed, after "#" lines saying when, where and
// at which load it ran; the table is rendered from it, and a figure edited by hand or
// a table left stale after a new run fails here. After a new run:
//
//	go test ./bench -run TestGoBenchmarksAreMeasured -update-gobench
const (
	goBenchBegin = "<!-- gobench:begin: generated from bench/gobench.txt by TestGoBenchmarksAreMeasured (-update-gobench); do not edit -->"
	goBenchEnd   = "<!-- gobench:end -->"
)

func TestGoBenchmarksAreMeasured(t *testing.T) {
	raw, err := os.ReadFile("gobench.txt")
	require.NoError(t, err)
	table, err := renderGoBench(string(raw))
	require.NoError(t, err)
	path := filepath.Join("..", "docs", "performance.md")
	doc, err := os.ReadFile(path)
	require.NoError(t, err)
	i, j := bytes.Index(doc, []byte(goBenchBegin)), bytes.Index(doc, []byte(goBenchEnd))
	require.True(t, i >= 0 && j > i, "docs/performance.md has the Go benchmarks' markers")
	if *updateGoBench {
		out := append(append(append([]byte{}, doc[:i]...), table...), doc[j+len(goBenchEnd)+1:]...)
		require.NoError(t, os.WriteFile(path, out, 0o644))
		doc = out
		j = bytes.Index(doc, []byte(goBenchEnd))
	}
	assert.Equal(t, table, string(doc[i:j+len(goBenchEnd)+1]), "run with -update-gobench after a new run")
}

var goBenchLine = regexp.MustCompile(`^Benchmark(\w+)(?:/users=(\d+))?-\d+\s+\d+\s+([\d.]+) ns/op(?:\s+[\d.]+ MB/s)?\s+([\d.]+) B/op\s+([\d.]+) allocs/op`)

// renderGoBench renders the table of a `go test -bench -benchmem` output.
func renderGoBench(raw string) (string, error) {
	type result struct{ ns, bytes float64 }
	res := map[string]result{}
	var notes []string
	cpu := ""
	sc := bufio.NewScanner(strings.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		if note, ok := strings.CutPrefix(line, "# "); ok {
			notes = append(notes, note)
			continue
		}
		if c, ok := strings.CutPrefix(line, "cpu: "); ok {
			cpu = strings.TrimSpace(c)
			continue
		}
		m := goBenchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(m[3], 64)
		by, _ := strconv.ParseFloat(m[4], 64)
		res[m[1]+"/"+m[2]] = result{ns, by}
	}
	get := func(name string) (result, error) {
		r, ok := res[name]
		if !ok {
			return r, fmt.Errorf("bench/gobench.txt has no Benchmark%s", name)
		}
		return r, nil
	}
	var b strings.Builder
	b.WriteString(goBenchBegin + "\n")
	fmt.Fprintf(&b, "Go benchmarks (`go test -run '^$' -bench . -benchmem ./internal/plan/ ./internal/config/`), %s, on %s:\n\n", strings.Join(notes, "; "), cpu)
	b.WriteString("| benchmark | 1,000 users | 10,000 users | 100,000 users |\n|---|---|---|---|\n")
	for _, row := range []struct{ label, name string }{
		{"config load (`BenchmarkLoad`)", "Load"},
		{"`plan.Compute`, 2 tokens each (`BenchmarkCompute`)", "Compute"},
	} {
		fmt.Fprintf(&b, "| %s |", row.label)
		for _, n := range []string{"1000", "10000", "100000"} {
			r, err := get(row.name + "/" + n)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, " %s, %s allocated |", duration(r.ns), megabytes(r.bytes))
		}
		b.WriteString("\n")
	}
	var render []string
	for _, name := range []string{"RenderText/", "RenderJSON/", "RenderMarkdown/"} {
		r, err := get(name)
		if err != nil {
			return "", err
		}
		render = append(render, duration(r.ns))
	}
	fmt.Fprintf(&b, "| render text / JSON / Markdown (10,000 users changing) | | %s | |\n", strings.Join(render, " / "))
	fp, err := get("Fingerprint/")
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "| `plan.Fingerprint` of the remote state (`BenchmarkFingerprint`) | | | %s |\n", duration(fp.ns))
	b.WriteString(goBenchEnd + "\n")
	return b.String(), nil
}

// duration is ns in ms or s, three significant digits.
func duration(ns float64) string {
	ms := ns / 1e6
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%.2f s", ms/1000)
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.2f ms", ms)
}

func megabytes(b float64) string {
	mb := b / 1e6
	if mb >= 10 {
		return fmt.Sprintf("%.0f MB", mb)
	}
	return fmt.Sprintf("%.1f MB", mb)
}
