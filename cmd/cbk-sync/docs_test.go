package main

import (
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/cbk-sync/cbk-sync/internal/exitcode"
	"github.com/cbk-sync/cbk-sync/internal/metrics"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the generated parts of docs/*.md")

// cliModel is the command-line model Main parses with.
func cliModel(t *testing.T) *kong.Application {
	t.Helper()
	k, err := kong.New(&CLI{}, modelOptions()...)
	require.NoError(t, err)
	return k.Model
}

// metricsMarkdown is the metrics table of docs/output.md.
func metricsMarkdown(t *testing.T) string {
	t.Helper()
	descs, err := metrics.Catalog()
	require.NoError(t, err)
	var b strings.Builder
	b.WriteString("| metric | labels | meaning |\n|---|---|---|\n")
	for _, d := range descs {
		labels := "–"
		if len(d.Labels) > 0 {
			labels = "`" + strings.Join(d.Labels, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", d.Name, labels, strings.ReplaceAll(d.Help, "|", `\|`))
	}
	return b.String()
}

// generatedBlocks are the parts of docs/ made from the code.
func generatedBlocks(t *testing.T) []struct{ file, name, text string } {
	return []struct{ file, name, text string }{
		{"commands.md", "commands", commandsMarkdown(cliModel(t))},
		{"output.md", "exit-codes", exitcode.Markdown()},
		{"output.md", "metrics", metricsMarkdown(t)},
		{"development.md", "imports", importsMarkdown(t)},
	}
}

// ourImports returns, for each package of the module but the tools, the packages of
// ours its non-test files import ("internal/plan" -> ["internal/state"]).
func ourImports(t *testing.T) map[string][]string {
	t.Helper()
	const module = "github.com/cbk-sync/cbk-sync/"
	root := filepath.Join("..", "..")
	dirs := []string{"cmd/cbk-sync", "bench"}
	entries, err := os.ReadDir(filepath.Join(root, "internal"))
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, "internal/"+e.Name())
		}
	}
	out := map[string][]string{}
	for _, d := range dirs {
		files, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(d), "*.go"))
		require.NoError(t, err)
		set := map[string]bool{}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			require.NoError(t, err)
			for _, imp := range af.Imports {
				if p := strings.Trim(imp.Path.Value, `"`); strings.HasPrefix(p, module) {
					set[strings.TrimPrefix(p, module)] = true
				}
			}
		}
		deps := []string{}
		for p := range set {
			deps = append(deps, p)
		}
		sort.Strings(deps)
		out[d] = deps
	}
	return out
}

// importsMarkdown is the import graph of docs/development.md.
func importsMarkdown(t *testing.T) string {
	imports := ourImports(t)
	pkgs := make([]string, 0, len(imports))
	arrows := 0
	for p, deps := range imports {
		pkgs = append(pkgs, p)
		arrows += len(deps)
	}
	sort.Strings(pkgs)
	var b strings.Builder
	fmt.Fprintf(&b, "%d arrows (non-test imports between our packages):\n\n| package | imports of ours |\n|---|---|\n", arrows)
	for _, p := range pkgs {
		deps := "–"
		if len(imports[p]) > 0 {
			deps = "`" + strings.Join(imports[p], "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s |\n", p, deps)
	}
	return b.String()
}

// TestImportArrows keeps the data flow one way (docs/development.md): plan is pure and
// imports neither client nor apply; client knows no plan; the leaves import nothing of
// ours but state; nothing imports the command.
func TestImportArrows(t *testing.T) {
	imports := ourImports(t)
	allowed := map[string][]string{
		"internal/state":      {},
		"internal/atomicfile": {},
		"internal/exitcode":   {},
		"internal/config":     {"internal/state"},
		"internal/client":     {"internal/state"},
		"internal/plan":       {"internal/state"},
		"internal/metrics":    {"internal/exitcode"},
		"internal/emulator":   {"internal/atomicfile", "internal/state"},
		"internal/lease":      {"internal/client", "internal/state"},
		"internal/apply":      {"internal/atomicfile", "internal/client", "internal/plan", "internal/state"},
	}
	for p, deps := range imports {
		want, ok := allowed[p]
		if !ok {
			if strings.HasPrefix(p, "internal/") {
				t.Errorf("%s is a new package: say in TestImportArrows (and docs/development.md) what it may import", p)
			}
			continue
		}
		for _, d := range deps {
			if !slices.Contains(want, d) {
				t.Errorf("%s imports %s: an arrow the layout does not have (docs/development.md)", p, d)
			}
		}
	}
}

// TestDocsAreCurrent keeps the generated parts of docs/ — every command and flag
// (docs/commands.md), the exit codes and the metrics (docs/output.md) — equal to what
// the code defines, as TestShippedSchemaIsCurrent does for the schema. After changing a
// flag, an exit code or a metric:
//
//	go test ./cmd/cbk-sync -run TestDocsAreCurrent -update-docs
func TestDocsAreCurrent(t *testing.T) {
	for _, g := range generatedBlocks(t) {
		path := filepath.Join("..", "..", "docs", g.file)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		begin, end := "<!-- BEGIN GENERATED "+g.name+" -->\n", "<!-- END GENERATED "+g.name+" -->"
		text := string(b)
		i, j := strings.Index(text, begin), strings.Index(text, end)
		require.True(t, i >= 0 && j > i, "docs/%s has no %q ... %q block", g.file, strings.TrimSpace(begin), end)
		cur := text[i+len(begin) : j]
		want := "<!-- Generated from the code by TestDocsAreCurrent; do not edit: run go test ./cmd/cbk-sync -run TestDocsAreCurrent -update-docs -->\n\n" +
			g.text + "\n"
		if *updateDocs {
			require.NoError(t, os.WriteFile(path, []byte(text[:i+len(begin)]+want+text[j:]), 0o644))
			continue
		}
		assert.Equal(t, want, cur, "docs/%s's %s are stale: run go test ./cmd/cbk-sync -run TestDocsAreCurrent -update-docs", g.file, g.name)
	}
}

// TestCommandsReferenceIsComplete checks the generator itself against the parser: every
// command kong accepts and every flag it lists in --help is in the reference, and no
// hidden flag is.
func TestCommandsReferenceIsComplete(t *testing.T) {
	app := cliModel(t)
	doc := commandsMarkdown(app)
	man := manPage(app, "1.2.3", "2026-01-02")
	var visible, hidden []string
	_ = kong.Visit(app.Node, func(n kong.Visitable, next kong.Next) error {
		switch n := n.(type) {
		case *kong.Node:
			if n.Type == kong.CommandNode && !n.Hidden && !strings.Contains(doc, "\n### cbk-sync "+n.Path()+"\n") {
				t.Errorf("command %s missing from docs/commands.md", n.Path())
			}
		case *kong.Flag:
			if n.Hidden {
				hidden = append(hidden, n.Name)
			} else {
				visible = append(visible, n.Name)
			}
		}
		return next(nil)
	})
	require.NotEmpty(t, hidden, "the CLI has hidden flags (test hooks); none found: the walk is wrong")
	shown := map[string]bool{}
	for _, f := range visible {
		shown[f] = true
		if !regexp.MustCompile("`(-., )?--" + regexp.QuoteMeta(f) + "[=`]").MatchString(doc) {
			t.Errorf("flag --%s missing from docs/commands.md", f)
		}
		if !strings.Contains(man, `\-\-`+strings.ReplaceAll(f, "-", `\-`)) {
			t.Errorf("flag --%s missing from the man page", f)
		}
	}
	for _, f := range hidden {
		if shown[f] {
			continue // hidden in one command, a flag of another (export's old -o)
		}
		if regexp.MustCompile("--" + regexp.QuoteMeta(f) + "[=` ]").MatchString(doc) {
			t.Errorf("hidden flag --%s in docs/commands.md", f)
		}
		if regexp.MustCompile(`\\-\\-` + regexp.QuoteMeta(strings.ReplaceAll(f, "-", `\-`)) + `[=\\ ]`).MatchString(man) {
			t.Errorf("hidden flag --%s in the man page", f)
		}
	}
}

// TestManPage: a real header, a description, every exit code.
func TestManPage(t *testing.T) {
	man := manPage(cliModel(t), "1.2.3", "2026-01-02")
	lines := strings.Split(man, "\n")
	assert.Equal(t, `.TH CBK-SYNC 1 "2026-01-02" "cbk\-sync 1.2.3" "User Commands"`, lines[0])
	section := func(name string) string {
		i := strings.Index(man, ".SH "+name+"\n")
		require.GreaterOrEqual(t, i, 0, "no %s section", name)
		rest := man[i+len(".SH "+name+"\n"):]
		if j := strings.Index(rest, ".SH "); j >= 0 {
			rest = rest[:j]
		}
		return rest
	}
	assert.Greater(t, len(section("DESCRIPTION")), 200, "the DESCRIPTION is empty or a stub")
	status := section("EXIT STATUS")
	for _, c := range exitcode.All {
		assert.Contains(t, status, fmt.Sprintf(".TP\n%d\n", c.Value))
	}
	env := section("ENVIRONMENT")
	for _, e := range append(append([]string{}, tokenEnvVars...), "CHATBOTKIT_API_URL", "NO_COLOR") {
		assert.Contains(t, env, strings.ReplaceAll(e, "-", `\-`))
	}
	for i, l := range lines {
		if i > 0 && (strings.HasPrefix(l, "'") || (strings.HasPrefix(l, ".") && !regexp.MustCompile(`^\.(SH|SS|TP|PP|TH) ?`).MatchString(l))) {
			t.Errorf("line %d would be read as an unknown roff request: %q", i+1, l)
		}
	}
}

// TestExitCodesEverywhere: the metric's help and the Action's exit-code output name
// every exit code, from the one table.
func TestExitCodesEverywhere(t *testing.T) {
	descs, err := metrics.Catalog()
	require.NoError(t, err)
	help := map[string]string{}
	for _, d := range descs {
		help[d.Name] = d.Help
	}
	assert.Equal(t, "The exit code of the last run: "+exitcode.Summary()+".", help["cbk_sync_last_run_exit_code"])
	for _, c := range exitcode.All {
		assert.Contains(t, help["cbk_sync_last_run_result"], c.Result)
	}

	b, err := os.ReadFile(filepath.Join("..", "..", "action.yml"))
	require.NoError(t, err)
	var action struct {
		Outputs map[string]struct {
			Description string `yaml:"description"`
		} `yaml:"outputs"`
	}
	require.NoError(t, yaml.Unmarshal(b, &action))
	assert.Equal(t, "cbk-sync's exit code: "+exitcode.Summary()+".", action.Outputs["exit-code"].Description,
		"action.yml's exit-code output must list the codes of internal/exitcode")
}

// TestMetricNamesInDocsExist: every cbk_sync_* name the README or docs/ mention is a
// metric a run writes, and every metric is in docs/output.md.
func TestMetricNamesInDocsExist(t *testing.T) {
	descs, err := metrics.Catalog()
	require.NoError(t, err)
	known := map[string]bool{}
	for _, d := range descs {
		known[d.Name] = true
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	require.NoError(t, err)
	files = append(files, filepath.Join("..", "..", "README.md"))
	name := regexp.MustCompile(`\bcbk_sync_[a-z_]+`)
	var mentioned []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range name.FindAllString(string(b), -1) {
			if !known[m] {
				t.Errorf("%s mentions %s, which no run writes", f, m)
			}
			mentioned = append(mentioned, m)
		}
	}
	sort.Strings(mentioned)
	for n := range known {
		assert.Contains(t, mentioned, n)
	}
}
