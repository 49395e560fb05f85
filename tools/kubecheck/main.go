// Command kubecheck validates Kubernetes manifests offline, the way a cluster's API
// server would decode them: every document is decoded strictly into the Go type the
// Kubernetes project itself generates its schemas from (k8s.io/api, and the Prometheus
// operator's types for PrometheusRule), so an unknown or misspelt field, a value of the
// wrong type, an unknown kind or apiVersion, or a missing name fails with the file and
// the document's line. kubeconform checks the same against the published JSON schemas
// when their host can be reached (.ci/run); this runs everywhere, with no network, from
// the Go module proxy.
//
// It is a module of its own so that the main module does not depend on k8s.io.
//
//	go run . FILE.yaml...
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	yamlv3 "gopkg.in/yaml.v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// kinds maps apiVersion/kind to a new object of its type. Only the kinds the examples
// use (or may use) are known: anything else is refused, not passed unchecked.
var kinds = map[string]func() any{
	"v1/ConfigMap":                      func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                         func() any { return &corev1.Secret{} },
	"v1/ServiceAccount":                 func() any { return &corev1.ServiceAccount{} },
	"v1/Service":                        func() any { return &corev1.Service{} },
	"batch/v1/CronJob":                  func() any { return &batchv1.CronJob{} },
	"batch/v1/Job":                      func() any { return &batchv1.Job{} },
	"rbac.authorization.k8s.io/v1/Role": func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding": func() any { return &rbacv1.RoleBinding{} },
	"monitoring.coreos.com/v1/PrometheusRule":  func() any { return &monitoringv1.PrometheusRule{} },
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kubecheck FILE.yaml...")
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[1:] {
		n, errs := checkFile(path)
		for _, err := range errs {
			fmt.Fprintln(os.Stderr, err)
			failed = true
		}
		if len(errs) == 0 {
			fmt.Printf("%s: %d objects valid\n", path, n)
		}
	}
	if failed {
		os.Exit(1)
	}
}

func checkFile(path string) (int, []error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, []error{err}
	}
	return check(path, data)
}

// check decodes every document of a YAML stream; it returns how many there were and
// one error per bad document, each naming path:line.
func check(path string, data []byte) (int, []error) {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	var errs []error
	n := 0
	for {
		var node yamlv3.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, append(errs, fmt.Errorf("%s: %w", path, err))
		}
		if len(node.Content) == 0 || node.Content[0].Tag == "!!null" {
			continue // an empty document (a trailing ---)
		}
		n++
		line := node.Content[0].Line
		if err := checkDoc(&node); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", path, line, err))
		}
	}
	if n == 0 {
		errs = append(errs, fmt.Errorf("%s: no Kubernetes object in it", path))
	}
	return n, errs
}

func checkDoc(node *yamlv3.Node) error {
	doc, err := yamlv3.Marshal(node)
	if err != nil {
		return err
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	key := tm.APIVersion + "/" + tm.Kind
	newObj, ok := kinds[key]
	if !ok {
		return fmt.Errorf("apiVersion %q kind %q: not a kind this checker knows (add it to kinds)", tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return fmt.Errorf("%s: %w", tm.Kind, err)
	}
	var om struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &om); err != nil {
		return err
	}
	if strings.TrimSpace(om.Metadata.Name) == "" {
		return fmt.Errorf("%s: metadata.name is required", tm.Kind)
	}
	return required(obj)
}

// required checks the fields the API server's validation requires that a strict
// decode cannot see: a container without a name or an image, a job without a restart
// policy a Job allows, a CronJob without a schedule.
func required(obj any) error {
	var spec *corev1.PodSpec
	switch o := obj.(type) {
	case *batchv1.CronJob:
		if o.Spec.Schedule == "" {
			return errors.New("CronJob: spec.schedule is required")
		}
		spec = &o.Spec.JobTemplate.Spec.Template.Spec
	case *batchv1.Job:
		spec = &o.Spec.Template.Spec
	default:
		return nil
	}
	if len(spec.Containers) == 0 {
		return errors.New("pod template: spec.containers is required")
	}
	if p := spec.RestartPolicy; p != corev1.RestartPolicyNever && p != corev1.RestartPolicyOnFailure {
		return fmt.Errorf("pod template: restartPolicy %q: a Job's must be Never or OnFailure", p)
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			if c.Name == "" || c.Image == "" {
				return fmt.Errorf("container %q: name and image are required", c.Name)
			}
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					return fmt.Errorf("container %q: volumeMount %q names no volume of the pod", c.Name, m.Name)
				}
			}
		}
	}
	return nil
}
