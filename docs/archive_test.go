package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// archiveGlobs returns the globs of the files the release archive takes from the
// repository, as .goreleaser.yaml lists them (archives: files:); entries with a dst are
// build outputs (completions, the man page), not repository files.
func archiveGlobs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../.goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Archives []struct {
			Files []yaml.Node `yaml:"files"`
		} `yaml:"archives"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf(".goreleaser.yaml: %v", err)
	}
	if len(cfg.Archives) != 1 {
		t.Fatalf(".goreleaser.yaml has %d archives; this test knows one", len(cfg.Archives))
	}
	var globs []string
	for _, n := range cfg.Archives[0].Files {
		var f struct{ Src, Dst string }
		switch n.Kind {
		case yaml.ScalarNode:
			f.Src = n.Value
		case yaml.MappingNode:
			if err := n.Decode(&f); err != nil {
				t.Fatalf(".goreleaser.yaml:%d: %v", n.Line, err)
			}
		}
		if f.Src != "" && f.Dst == "" {
			globs = append(globs, f.Src)
		}
	}
	return globs
}

// globRE is a goreleaser file glob as a regular expression: * and ? within one path
// segment, **/ one or more directories (goreleaser's examples/**/* does not take
// examples/x, so the archive lists examples/* too).
func globRE(g string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(g); i++ {
		switch {
		case strings.HasPrefix(g[i:], "**/"):
			b.WriteString("(?:[^/]+/)+")
			i += 2
		case strings.HasPrefix(g[i:], "**"):
			b.WriteString(".*")
			i++
		case g[i] == '*':
			b.WriteString("[^/]*")
		case g[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(g[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// examplePath is a path into examples/ named anywhere in a page (a command of the
// tour, a recipe), not only in a link.
var examplePath = regexp.MustCompile(`examples/[A-Za-z0-9_./-]*[A-Za-z0-9_/-]`)

// TestReleaseArchiveHoldsWhatTheDocsName: an unpacked release archive is a user's copy
// of the docs, so it holds README.md, every file a relative link of README.md or
// docs/*.md points at (for a directory, every file in it), and every examples/ path the
// pages name: no link of the archive's README breaks, and no command of its tour names
// a file it lacks.
func TestReleaseArchiveHoldsWhatTheDocsName(t *testing.T) {
	var res []*regexp.Regexp
	for _, g := range archiveGlobs(t) {
		res = append(res, globRE(g))
	}
	shipped := func(path string) bool {
		for _, re := range res {
			if re.MatchString(path) {
				return true
			}
		}
		return false
	}
	root := absolute(t, "..")
	need := map[string]string{"README.md": "the README itself"} // path -> where it is named
	for _, file := range pages(t) {
		for _, l := range links(t, file) {
			path, _, _ := strings.Cut(l.target, "#")
			if u := strings.ToLower(path); path == "" || strings.Contains(u, ":") {
				continue // an anchor of the same page, or a link out of the repository
			}
			rel, err := filepath.Rel(root, absolute(t, filepath.Join(filepath.Dir(file), filepath.FromSlash(path))))
			if err != nil || strings.HasPrefix(rel, "..") {
				continue // TestLinksResolve reports it
			}
			need[filepath.ToSlash(rel)] = l.file + ":" + strconv.Itoa(l.line)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range examplePath.FindAllString(string(b), -1) {
			if _, err := os.Stat(filepath.Join(root, p)); err == nil {
				need[strings.TrimSuffix(p, "/")] = file
			}
		}
	}
	paths := make([]string, 0, len(need))
	for p := range need {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	checked := 0
	for _, path := range paths {
		where := need[path]
		err := filepath.WalkDir(filepath.Join(root, filepath.FromSlash(path)), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			checked++
			if !shipped(filepath.ToSlash(rel)) {
				t.Errorf("%s, named by %s, is not in the release archive: add it to the archive's files in .goreleaser.yaml (and to the archive check of .ci/run)", filepath.ToSlash(rel), where)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s, named by %s: %v", path, where, err)
		}
	}
	if checked < 20 {
		t.Errorf("only %d files checked: the pages name fewer files than they do", checked)
	}
}
