package main

import (
	"os"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuildFollowsTheDockerfile(t *testing.T) {
	ctx := fstest.MapFS{
		"linux/arm64/app": {Data: []byte("#!/bin/sh\necho hi\n")},
		"LICENSE":         {Data: []byte("licence")},
	}
	img, err := Build(`# comment
FROM scratch
ARG TARGETPLATFORM
COPY ${TARGETPLATFORM}/app /usr/local/bin/app
COPY LICENSE /usr/share/doc/
USER 65532:65532
ENV A=b
ENTRYPOINT ["/usr/local/bin/app", \
  "run"]
`, ctx, "linux/arm64", time.Unix(0, 0))
	require.NoError(t, err)
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, "65532:65532", cf.Config.User)
	assert.Equal(t, []string{"/usr/local/bin/app", "run"}, cf.Config.Entrypoint)
	assert.Equal(t, []string{"A=b"}, cf.Config.Env)
	assert.Equal(t, "arm64", cf.Architecture)
	m, err := img.Manifest()
	require.NoError(t, err)
	assert.Equal(t, "application/vnd.oci.image.manifest.v1+json", string(m.MediaType))

	// A script is no static ELF: the smoke check says so, after finding it executable.
	_, _, err = Smoke(img, 30)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not an ELF executable")
}

func TestBuildRefusesWhatItCannotBuild(t *testing.T) {
	ctx := fstest.MapFS{"app": {Data: []byte("x")}}
	for name, tc := range map[string]struct{ src, msg string }{
		"a base image":    {"FROM debian:12\nCOPY app /app\n", "only one FROM scratch"},
		"a RUN step":      {"FROM scratch\nRUN echo\nCOPY app /app\n", "RUN is not supported"},
		"a missing file":  {"FROM scratch\nCOPY nope /app\n", "COPY nope"},
		"outside context": {"FROM scratch\nCOPY ../etc/passwd /p\n", "outside the context"},
		"shell form":      {"FROM scratch\nCOPY app /app\nENTRYPOINT /app\n", "JSON array"},
		"empty":           {"FROM scratch\n", "no COPY"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Build(tc.src, ctx, "linux/amd64", time.Unix(0, 0))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestSmokeRefusesRootAndDynamicBinaries(t *testing.T) {
	bin, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh to use as a dynamically linked binary")
	}
	ctx := fstest.MapFS{"sh": {Data: bin}}
	img, err := Build("FROM scratch\nCOPY sh /sh\nENTRYPOINT [\"/sh\"]\n", ctx, "linux/amd64", time.Unix(0, 0))
	require.NoError(t, err)
	_, _, err = Smoke(img, 30)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "runs as root")

	img, err = Build("FROM scratch\nCOPY sh /sh\nUSER 65532\nENTRYPOINT [\"/sh\"]\n", ctx, "linux/amd64", time.Unix(0, 0))
	require.NoError(t, err)
	_, _, err = Smoke(img, 30)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dynamically linked")
}
