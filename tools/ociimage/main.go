// Command ociimage builds the release Dockerfile into an OCI image layout without a
// container daemon or a registry, and smoke-tests the image by running its entrypoint.
// CI uses it because this machine has neither (the release builds the same Dockerfile
// with docker buildx through goreleaser's dockers_v2, and pushes it):
//
//	go run ./tools/ociimage build -dockerfile Dockerfile -context DIR -platform linux/amd64 -o LAYOUT
//	go run ./tools/ociimage smoke -layout LAYOUT -want 'cbk-sync 1.2.3 ' [-- ARGS...]
//
// The builder understands only what a FROM-scratch image of static files needs (FROM
// scratch, ARG, COPY, USER, ENTRYPOINT, ENV, LABEL) and refuses anything else, so the
// Dockerfile cannot grow a step that CI silently does not build. go-containerregistry
// writes the layout; only the parsing of that small subset is written here, as no
// library parses a Dockerfile without pulling in BuildKit.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ociimage build|smoke [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = buildCmd(os.Args[2:])
	case "smoke":
		err = smokeCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (build or smoke)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func buildCmd(args []string) error {
	flags := flag.NewFlagSet("build", flag.ContinueOnError)
	dockerfile := flags.String("dockerfile", "Dockerfile", "the Dockerfile")
	context := flags.String("context", ".", "the build context")
	platform := flags.String("platform", "linux/amd64", "the target platform (os/arch)")
	out := flags.String("o", "", "the OCI layout directory to write")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("build: -o LAYOUT is required")
	}
	src, err := os.ReadFile(*dockerfile)
	if err != nil {
		return err
	}
	img, err := Build(string(src), os.DirFS(*context), *platform, time.Unix(0, 0))
	if err != nil {
		return fmt.Errorf("%s: %w", *dockerfile, err)
	}
	if err := os.RemoveAll(*out); err != nil {
		return err
	}
	p, err := layout.Write(*out, empty.Index)
	if err != nil {
		return err
	}
	osArch := strings.SplitN(*platform, "/", 2)
	if err := p.AppendImage(img, layout.WithPlatform(v1.Platform{OS: osArch[0], Architecture: osArch[1]})); err != nil {
		return err
	}
	m, _ := img.Manifest()
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	d, _ := img.Digest()
	fmt.Printf("wrote %s: %s %s, %d layer(s), %.1f MiB compressed\n", *out, *platform, d, len(m.Layers), float64(size)/(1<<20))
	return nil
}

// Build turns the Dockerfile src into an image from the files of ctx.
func Build(src string, ctx fs.FS, platform string, created time.Time) (v1.Image, error) {
	osArch := strings.SplitN(platform, "/", 2)
	if len(osArch) != 2 {
		return nil, fmt.Errorf("platform %q is not os/arch", platform)
	}
	vars := map[string]string{"TARGETPLATFORM": platform, "TARGETOS": osArch[0], "TARGETARCH": osArch[1]}
	cfg := v1.Config{Labels: map[string]string{}}
	var files []file
	sawFrom := false
	for i, line := range instructions(src) {
		word, rest, _ := strings.Cut(line.text, " ")
		rest = strings.TrimSpace(rest)
		at := fmt.Sprintf("line %d", line.n)
		if !sawFrom && !strings.EqualFold(word, "FROM") && !strings.EqualFold(word, "ARG") {
			return nil, fmt.Errorf("%s: %s before FROM", at, word)
		}
		switch strings.ToUpper(word) {
		case "FROM":
			if rest != "scratch" || sawFrom {
				return nil, fmt.Errorf("%s: only one FROM scratch is supported (got FROM %s)", at, rest)
			}
			sawFrom = true
		case "ARG":
			name, def, _ := strings.Cut(rest, "=")
			if _, builtin := vars[name]; !builtin {
				vars[name] = def
			}
		case "COPY":
			parts := strings.Fields(expand(rest, vars))
			if len(parts) != 2 || strings.HasPrefix(parts[0], "--") {
				return nil, fmt.Errorf("%s: COPY takes exactly SRC DST here (got %q)", at, rest)
			}
			data, err := readFile(ctx, parts[0])
			if err != nil {
				return nil, fmt.Errorf("%s: COPY %s: %w", at, parts[0], err)
			}
			dst := parts[1]
			if strings.HasSuffix(dst, "/") {
				dst += path.Base(parts[0])
			}
			mode := int64(0o644)
			if isExecutable(data) {
				mode = 0o755
			}
			files = append(files, file{name: strings.TrimPrefix(path.Clean(dst), "/"), data: data, mode: mode})
		case "USER":
			cfg.User = expand(rest, vars)
		case "ENTRYPOINT":
			var ep []string
			if err := json.Unmarshal([]byte(rest), &ep); err != nil || len(ep) == 0 {
				return nil, fmt.Errorf("%s: ENTRYPOINT must be a JSON array (exec form)", at)
			}
			cfg.Entrypoint = ep
		case "ENV":
			k, v, ok := strings.Cut(expand(rest, vars), "=")
			if !ok {
				return nil, fmt.Errorf("%s: ENV takes KEY=VALUE", at)
			}
			cfg.Env = append(cfg.Env, k+"="+strings.Trim(v, `"`))
		case "LABEL":
			k, v, ok := strings.Cut(expand(rest, vars), "=")
			if !ok {
				return nil, fmt.Errorf("%s: LABEL takes KEY=VALUE", at)
			}
			cfg.Labels[k] = strings.Trim(v, `"`)
		default:
			return nil, fmt.Errorf("%s: %s is not supported by this builder (instruction %d); CI could not build it", at, word, i+1)
		}
	}
	if !sawFrom {
		return nil, errors.New("no FROM")
	}
	if len(files) == 0 {
		return nil, errors.New("no COPY: the image would be empty")
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarOf(files, created))), nil
	})
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = osArch[0], osArch[1]
	cf.Created = v1.Time{Time: created}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

type file struct {
	name string
	data []byte
	mode int64
}

type line struct {
	n    int
	text string
}

// instructions are the Dockerfile's logical lines: comments and blank lines dropped,
// backslash continuations joined.
func instructions(src string) []line {
	var out []line
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(src, "\n") {
		t := strings.TrimSpace(l)
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(t, "\\") {
			cur.WriteString(strings.TrimSuffix(t, "\\") + " ")
			continue
		}
		cur.WriteString(t)
		out = append(out, line{start, cur.String()})
		cur.Reset()
	}
	return out
}

var varRE = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

func expand(s string, vars map[string]string) string {
	return varRE.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "${}")
		return vars[name]
	})
}

func readFile(ctx fs.FS, name string) ([]byte, error) {
	if path.IsAbs(name) || strings.Contains(path.Clean(name), "..") {
		return nil, fmt.Errorf("%s is outside the context", name)
	}
	return fs.ReadFile(ctx, path.Clean(name))
}

func isExecutable(data []byte) bool {
	return bytes.HasPrefix(data, []byte("\x7fELF")) || bytes.HasPrefix(data, []byte("#!"))
}

// tarOf is one layer with the files and their parent directories, owned by root.
func tarOf(files []file, mtime time.Time) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.name); d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
			dirs[d] = true
		}
		for _, d := range parents {
			must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mtime}))
		}
		must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime}))
		_, err := tw.Write(f.data)
		must(err)
	}
	must(tw.Close())
	return buf.Bytes()
}

// must panics on an error that writing to memory cannot have.
func must(err error) {
	if err != nil {
		panic(err)
	}
}

func smokeCmd(args []string) error {
	flags := flag.NewFlagSet("smoke", flag.ContinueOnError)
	dir := flags.String("layout", "", "the OCI layout directory")
	want := flags.String("want", "", "a regular expression the output must match")
	maxMiB := flags.Float64("max-mib", 30, "the largest compressed image accepted")
	if err := flags.Parse(args); err != nil {
		return err
	}
	runArgs := flags.Args()
	if len(runArgs) == 0 {
		runArgs = []string{"version"}
	}
	img, err := imageFromLayout(*dir)
	if err != nil {
		return err
	}
	bin, cf, err := Smoke(img, *maxMiB)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "ociimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	exe := filepath.Join(tmp, path.Base(cf.Config.Entrypoint[0]))
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		return err
	}
	cmd := exec.Command(exe, append(cf.Config.Entrypoint[1:], runArgs...)...)
	cmd.Env = cf.Config.Env
	cmd.Dir = tmp
	if err := runAs(cmd, cf.Config.User); err != nil {
		return err
	}
	out, err := cmd.CombinedOutput()
	fmt.Printf("image entrypoint %v %v (user %s):\n%s", cf.Config.Entrypoint, runArgs, cf.Config.User, out)
	if err != nil {
		return fmt.Errorf("the entrypoint failed: %w", err)
	}
	if *want != "" && !regexp.MustCompile(*want).Match(out) {
		return fmt.Errorf("the output does not match %q", *want)
	}
	return nil
}

// runAs makes cmd run as the image's USER when this process may switch to it (CI runs
// as root), so the smoke test runs the binary as the image would.
func runAs(cmd *exec.Cmd, user string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uidStr, gidStr, _ := strings.Cut(user, ":")
	uid, err := strconv.ParseUint(uidStr, 10, 32)
	if err != nil {
		return fmt.Errorf("USER %q is not numeric: a scratch image has no /etc/passwd to resolve it", user)
	}
	gid := uid
	if gidStr != "" {
		if gid, err = strconv.ParseUint(gidStr, 10, 32); err != nil {
			return fmt.Errorf("USER %q: the group is not numeric", user)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	return nil
}

func imageFromLayout(dir string) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("%s holds %d images, want 1", dir, len(im.Manifests))
	}
	return idx.Image(im.Manifests[0].Digest)
}

// Smoke checks what the release promises of the image — small, static, non-root, the
// binary as entrypoint — and returns the entrypoint's file, read from the flattened
// image filesystem.
func Smoke(img v1.Image, maxMiB float64) ([]byte, *v1.ConfigFile, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}
	if u := cf.Config.User; u == "" || u == "0" || u == "root" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root:") {
		return nil, nil, fmt.Errorf("the image runs as root (USER %q)", u)
	}
	if len(cf.Config.Entrypoint) == 0 {
		return nil, nil, errors.New("the image has no entrypoint")
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, nil, err
	}
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	if mib := float64(size) / (1 << 20); mib > maxMiB {
		return nil, nil, fmt.Errorf("the image is %.1f MiB compressed, over %.0f MiB", mib, maxMiB)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	want := strings.TrimPrefix(path.Clean(cf.Config.Entrypoint[0]), "/")
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("the entrypoint %s is not in the image", cf.Config.Entrypoint[0])
		}
		if err != nil {
			return nil, nil, err
		}
		if strings.TrimPrefix(path.Clean(h.Name), "/") != want {
			continue
		}
		if h.Mode&0o111 == 0 {
			return nil, nil, fmt.Errorf("the entrypoint %s is not executable (mode %o)", want, h.Mode)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, err
		}
		if err := static(data); err != nil {
			return nil, nil, fmt.Errorf("the entrypoint %s: %w", want, err)
		}
		return data, cf, nil
	}
}

// static fails for an ELF file that needs a dynamic loader (a scratch image has none).
func static(data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("is dynamically linked (it needs an interpreter the image lacks)")
		}
	}
	return nil
}
