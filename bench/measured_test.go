package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The performance tables in the docs are the measurement's: rendered from the JSON of
// the run they came from (bench/measured.json, written by `go run ./bench -json`), so
// a figure edited by hand, or a table left stale after a new run, fails here.
func TestPerformanceTablesAreMeasured(t *testing.T) {
	rep, err := readReport("measured.json")
	require.NoError(t, err)
	require.True(t, rep.OK, "the measured run passed its checks")
	doc, err := os.ReadFile(filepath.Join("..", "docs", "performance.md"))
	require.NoError(t, err)
	got, ok := generatedSection(doc)
	require.True(t, ok, "docs/performance.md has the generated section between its markers")
	assert.Equal(t, renderMarkdown(rep), got, "paste the output of -markdown FILE between the markers")
}
