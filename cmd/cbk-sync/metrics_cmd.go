package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/alecthomas/kong"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cbk-sync/cbk-sync/internal/apply"
	"github.com/cbk-sync/cbk-sync/internal/atomicfile"
	"github.com/cbk-sync/cbk-sync/internal/metrics"
	"github.com/cbk-sync/cbk-sync/internal/plan"
)

// MetricsFlags send Prometheus metrics of a run to monitoring: for scheduled plans and
// syncs, whose only other signal is a red job.
type MetricsFlags struct {
	MetricsFile    string `name:"metrics-file" type:"path" placeholder:"FILE" help:"Write Prometheus metrics of the run to FILE, atomically (text format; for node-exporter's textfile collector, name it *.prom)."`
	Pushgateway    string `name:"pushgateway" placeholder:"URL" help:"Push Prometheus metrics of the run to this pushgateway (e.g. http://pushgateway:9091); for basic auth, https://USER@HOST with the password in CBK_SYNC_PUSHGATEWAY_PASSWORD."`
	PushgatewayJob string `name:"pushgateway-job" default:"cbk-sync" placeholder:"NAME" help:"Job name the metrics are pushed under; give each configuration its own."`
}

func (f *MetricsFlags) metricsFlags() *MetricsFlags { return f }

// Validate checks the pushgateway URL before anything runs.
func (f *MetricsFlags) Validate() error {
	if f.Pushgateway != "" {
		u, err := url.Parse(f.Pushgateway)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--pushgateway %q is not an http(s) URL such as http://pushgateway:9091", redactURL(f.Pushgateway))
		}
		if _, ok := u.User.Password(); ok {
			return fmt.Errorf("--pushgateway %s: a password in the URL is visible to every user of the machine (ps): give the user in the URL (https://USER@HOST) and the password in %s", redactURL(f.Pushgateway), pushgatewayPasswordEnv)
		}
	}
	if f.PushgatewayJob == "" {
		return fmt.Errorf("--pushgateway-job must not be empty")
	}
	return nil
}

// metricsOutput is the metrics file, checked with the run's other destinations before
// any API call: a run whose metrics are lost after it applied would be invisible to
// monitoring.
func (f *MetricsFlags) metricsOutput() output {
	return output{flag: "--metrics-file", path: f.MetricsFile}
}

// runFacts collects, while a command runs, what its metrics report.
type runFacts struct {
	start   time.Time
	plan    *plan.Plan
	report  *apply.Report
	session *session
}

// metricsFlagsOf returns the selected command's metrics flags, or nil.
func metricsFlagsOf(kctx *kong.Context) *MetricsFlags {
	node := kctx.Selected()
	if node == nil || !node.Target.CanAddr() {
		return nil
	}
	if m, ok := node.Target.Addr().Interface().(interface{ metricsFlags() *MetricsFlags }); ok {
		if f := m.metricsFlags(); f.MetricsFile != "" || f.Pushgateway != "" {
			return f
		}
	}
	return nil
}

// emitMetrics writes and pushes the metrics of a finished run. A failure to deliver
// them is logged as an error but does not change the run's exit code: what the run
// did remotely stays what the code says, and a stale last-run timestamp is what
// monitoring alerts on.
func emitMetrics(ctx context.Context, env *Env, f *MetricsFlags, command string, code int) {
	facts := env.facts
	r := metrics.Run{Command: command, Start: facts.start, Duration: time.Since(facts.start), ExitCode: code}
	for _, a := range plan.Actions {
		r.Actions = append(r.Actions, a.String())
	}
	if facts.report != nil {
		r.Applied = map[string]map[string]int{}
		for _, res := range facts.report.Results {
			if r.Applied[res.Action.String()] == nil {
				r.Applied[res.Action.String()] = map[string]int{}
			}
			r.Applied[res.Action.String()][res.Status]++
		}
	} else if facts.plan != nil {
		s := facts.plan.Summary()
		r.Pending = map[string]int{}
		for _, a := range plan.Actions {
			r.Pending[a.String()] = s.Count(a)
		}
	}
	if facts.plan != nil && facts.plan.Account != nil {
		a := facts.plan.Account
		r.Users = &metrics.Users{Declared: a.Declared, OwnedUndeclared: a.OwnedUndeclared, Unmanaged: a.Unmanaged, Foreign: a.Foreign}
	}
	if facts.session != nil {
		st := facts.session.reader.Stats()
		// The lock's own client is counted too: its calls are the run's.
		r.Calls, r.Retries = facts.session.stats()
		r.Throttled = st.Throttled
		r.Poll = &metrics.Poll{Polls: st.Polls, Rejections: st.PollRejections, Wait: st.PollWait, Budget: st.PollBudget}
	}
	if r.Succeeded() {
		r.LastSuccess = r.Start.Add(r.Duration)
	} else if f.MetricsFile != "" {
		if old, err := os.ReadFile(f.MetricsFile); err == nil {
			r.LastSuccess, _ = metrics.LastSuccess(old, command)
		}
	}
	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg, r); err != nil {
		env.Log.Error("metrics not recorded", "err", err)
		return
	}
	if f.MetricsFile != "" {
		// The run may have failed before its destinations were checked (a bad
		// configuration is found first); the same check guards this write.
		text, err := metrics.Text(reg)
		if err == nil {
			_, err = checkDestination(f.metricsOutput())
		}
		if err == nil {
			err = os.MkdirAll(filepath.Dir(f.MetricsFile), 0o755)
		}
		if err == nil {
			err = atomicfile.Write(f.MetricsFile, text, 0o644)
		}
		if err != nil {
			env.Log.Error("--metrics-file: metrics not written", "file", f.MetricsFile, "err", err)
		} else {
			env.Log.Debug("metrics written", "file", f.MetricsFile)
		}
	}
	if f.Pushgateway != "" {
		// Grouped by the job alone: a run that fails before it knows the owner must
		// land in the same group as the runs that succeed. One job name per config.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := metrics.Push(pctx, f.pushURL(env), f.PushgatewayJob, nil, reg, &http.Client{}); err != nil {
			env.Log.Error("--pushgateway: metrics not pushed", "err", err)
		} else {
			env.Log.Debug("metrics pushed", "url", redactURL(f.Pushgateway), "job", f.PushgatewayJob)
		}
	}
}

// pushgatewayPasswordEnv holds the pushgateway's basic-auth password, which the URL
// may not (MetricsFlags.Validate).
const pushgatewayPasswordEnv = "CBK_SYNC_PUSHGATEWAY_PASSWORD"

// pushURL is --pushgateway with the password from the environment added to its user,
// in memory only (the run's redactor knows it: learnSecrets).
func (f *MetricsFlags) pushURL(env *Env) string {
	u, err := url.Parse(f.Pushgateway)
	if err != nil || u.User == nil {
		return f.Pushgateway
	}
	if pw, ok := env.IO.lookupEnv(pushgatewayPasswordEnv); ok && pw != "" {
		u.User = url.UserPassword(u.User.Username(), pw)
	}
	return u.String()
}

// redactURL hides a password in a URL's user info.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
