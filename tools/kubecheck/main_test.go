package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const good = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: drift
spec:
  schedule: "*/15 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          volumes:
            - name: config
              configMap:
                name: cbk-sync-config
          containers:
            - name: plan
              image: example.test/cbk-sync:1@sha256:0000000000000000000000000000000000000000000000000000000000000000
              volumeMounts:
                - name: config
                  mountPath: /config
`

// TestExamplesAreValid is what .ci/run checks, here too so a plain go test sees it.
func TestExamplesAreValid(t *testing.T) {
	files, err := filepath.Glob("../../examples/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example manifests: %v", err)
	}
	for _, f := range files {
		if n, errs := checkFile(f); len(errs) > 0 || n == 0 {
			t.Errorf("%s: %d objects, errors %v", f, n, errs)
		}
	}
}

func TestCheck(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"good", good, ""},
		{"misspelt field", strings.Replace(good, "restartPolicy:", "restartPolcy:", 1), `unknown field "restartPolcy"`},
		{"wrong type", strings.Replace(good, "name: plan", "name: [plan]", 1), "cannot unmarshal array"},
		{"unknown kind", strings.Replace(good, "kind: CronJob", "kind: CronJobs", 1), `kind "CronJobs": not a kind`},
		{"old apiVersion", strings.Replace(good, "batch/v1", "batch/v1beta1", 1), `apiVersion "batch/v1beta1"`},
		{"no schedule", strings.Replace(good, `  schedule: "*/15 * * * *"`+"\n", "", 1), "spec.schedule is required"},
		{"no image", strings.Replace(good, "              image: example.test/cbk-sync:1@sha256:0000000000000000000000000000000000000000000000000000000000000000\n", "", 1), "name and image are required"},
		{"mount of no volume", strings.Replace(good, "- name: config\n                  mountPath", "- name: conf\n                  mountPath", 1), `volumeMount "conf" names no volume`},
		{"restart always", strings.Replace(good, "restartPolicy: Never", "restartPolicy: Always", 1), "must be Never or OnFailure"},
		{"no name", strings.Replace(good, "  name: drift\n", "  labels: {}\n", 1), "metadata.name is required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A second document after a good one: the error must name its line.
			doc := "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n---\n" + c.doc
			n, errs := check("m.yaml", []byte(doc))
			if n != 2 {
				t.Fatalf("objects = %d, want 2", n)
			}
			if c.want == "" {
				if len(errs) > 0 {
					t.Fatalf("errors %v, want none", errs)
				}
				return
			}
			if len(errs) != 1 {
				t.Fatalf("errors %v, want one", errs)
			}
			msg := errs[0].Error()
			if !strings.HasPrefix(msg, "m.yaml:6: ") || !strings.Contains(msg, c.want) {
				t.Fatalf("error %q, want m.yaml:6: ... %q", msg, c.want)
			}
		})
	}
}

func TestEmptyFileIsAnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "e.yaml")
	if err := os.WriteFile(p, []byte("---\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs := checkFile(p); len(errs) != 1 || !strings.Contains(errs[0].Error(), "no Kubernetes object") {
		t.Fatalf("errors %v", errs)
	}
}
