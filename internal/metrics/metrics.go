// Package metrics turns what one cbk-sync run came to into Prometheus metrics, for the
// textfile collector of node-exporter (--metrics-file) or a pushgateway
// (--pushgateway): the shape of a batch job's metrics, where every value is about the
// last run. The metrics go to a registry passed in, never the global default.
package metrics

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cbk-sync/cbk-sync/internal/exitcode"
)

// Namespace prefixes every metric.
const Namespace = "cbk_sync"

// Outcomes of an applied action, as apply reports them.
var outcomes = []string{"ok", "failed", "skipped"}

// Run is what one run came to.
type Run struct {
	Command  string // plan, sync, apply
	Start    time.Time
	Duration time.Duration
	ExitCode int
	// LastSuccess is the end of the last successful run: this one's when it succeeded,
	// else the one carried over from the previous metrics (zero: none known).
	LastSuccess time.Time
	// Actions are the kinds of change (plan.Actions' names), so every series exists
	// with a zero even when a run has none of a kind.
	Actions []string
	// Pending counts the planned changes per action of a run that only planned (plan,
	// sync --dry-run); nil when the run applied or never got a plan.
	Pending map[string]int
	// Applied counts applied actions per action and outcome (ok, failed, skipped);
	// nil when nothing was applied.
	Applied map[string]map[string]int
	// Calls, Retries and Throttled are the client's counters (client.Stats).
	Calls     map[string]int64
	Retries   int64
	Throttled int64
	// Poll is the poll scheduler's counters; nil (no poll metrics) where the client
	// does not count them.
	Poll *Poll
	// Users counts the account's users the run's plan read, by relation to the files;
	// nil (no user metrics) when the run read no plan.
	Users *Users
}

// Users counts the users of the account a plan read (plan.Census): a scheduled job can
// alert on users the files do not declare, such as new sign-ups.
type Users struct {
	Declared        int // matched by a declared user
	OwnedUndeclared int // owned, not declared (orphans, deletes, releases)
	Unmanaged       int // no owner marker, not declared
	Foreign         int // another owner's, not declared
}

// Poll is what the client's poll scheduler counted (client.Stats' poll fields).
type Poll struct {
	Polls      int64         // list requests sent (pages, JSONL streams)
	Rejections int64         // polls the platform's poll limit refused
	Wait       time.Duration // time polls waited for the window
	Budget     int           // the poll budget in force at the end (0: never needed)
}

// resultNames are the values of last_run_result's result label, one per exit code.
func resultNames() string {
	names := make([]string, len(exitcode.All))
	for i, c := range exitcode.All {
		names[i] = c.Result
	}
	return strings.Join(names, ", ")
}

// Succeeded reports whether the run counts as a success: exit 0, or 2 (changes pending
// is the answer a plan gives, not a failure).
func (r Run) Succeeded() bool { return r.ExitCode == exitcode.OK || r.ExitCode == exitcode.Pending }

// Register adds the run's metrics to reg.
func Register(reg prometheus.Registerer, r Run) error {
	cmd := prometheus.Labels{"command": r.Command}
	gauge := func(name, help string, v float64) prometheus.Collector {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help, ConstLabels: cmd})
		g.Set(v)
		return g
	}
	cs := []prometheus.Collector{
		gauge("last_run_timestamp_seconds", "When the last run ended (Unix time).", unix(r.Start.Add(r.Duration))),
		gauge("last_run_duration_seconds", "How long the last run took.", r.Duration.Seconds()),
		gauge("last_run_exit_code", "The exit code of the last run: "+exitcode.Summary()+".", float64(r.ExitCode)),
		gauge("api_retries", "Requests of the last run that repeated an earlier one.", float64(r.Retries)),
		gauge("api_throttled_responses", "429 answers the last run met.", float64(r.Throttled)),
	}
	if r.Poll != nil {
		cs = append(cs,
			gauge("polls", "List requests (pages, JSONL streams) the last run sent.", float64(r.Poll.Polls)),
			gauge("poll_rejections", "Polls of the last run that the platform's poll limit refused.", float64(r.Poll.Rejections)),
			gauge("poll_wait_seconds", "Time polls of the last run waited for the poll window.", r.Poll.Wait.Seconds()),
			gauge("poll_budget", "The poll budget in force at the end of the last run (0: never needed).", float64(r.Poll.Budget)),
		)
	}
	if r.Users != nil {
		users := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "account_users",
			Help:        "Users of the account the last plan read, by relation to the files: declared, owned_undeclared (owned, no file declares it), unmanaged (no owner marker, not declared: e.g. a new sign-up), foreign (another owner's).",
			ConstLabels: cmd}, []string{"relation"})
		users.WithLabelValues("declared").Set(float64(r.Users.Declared))
		users.WithLabelValues("owned_undeclared").Set(float64(r.Users.OwnedUndeclared))
		users.WithLabelValues("unmanaged").Set(float64(r.Users.Unmanaged))
		users.WithLabelValues("foreign").Set(float64(r.Users.Foreign))
		cs = append(cs, users)
	}
	if !r.LastSuccess.IsZero() {
		cs = append(cs, gauge("last_success_timestamp_seconds", "When the last successful run (exit 0 or 2) ended (Unix time); kept across failed runs.", unix(r.LastSuccess)))
	}

	result := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "last_run_result",
		Help: "1 for the result of the last run, 0 for the others (" + resultNames() + ").", ConstLabels: cmd}, []string{"result"})
	for _, c := range exitcode.All {
		result.WithLabelValues(c.Result).Set(boolf(c.Value == r.ExitCode))
	}
	calls := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "api_calls",
		Help: "Requests the last run sent, per API operation (retries included).", ConstLabels: cmd}, []string{"operation"})
	for op, n := range r.Calls {
		calls.WithLabelValues(op).Set(float64(n))
	}
	cs = append(cs, result, calls)

	if r.Pending != nil {
		pending := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "pending_changes",
			Help: "Changes the last plan found pending, per action (runs that only planned, or were refused).", ConstLabels: cmd}, []string{"action"})
		for _, a := range r.Actions {
			pending.WithLabelValues(a).Set(float64(r.Pending[a]))
		}
		cs = append(cs, pending)
	}
	if r.Applied != nil {
		applied := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "actions",
			Help: "Actions the last run applied, per action and outcome (ok, failed, skipped); runs that applied only.", ConstLabels: cmd}, []string{"action", "outcome"})
		for _, a := range r.Actions {
			for _, o := range outcomes {
				applied.WithLabelValues(a, o).Set(float64(r.Applied[a][o]))
			}
		}
		cs = append(cs, applied)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Text renders what g gathers in the Prometheus text format (what node-exporter's
// textfile collector reads).
func Text(g prometheus.Gatherer) ([]byte, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// LastSuccess reads the last success timestamp of command from metrics written
// earlier in the text format, so a failed run does not erase when the last good one
// was. Unreadable text yields nothing.
func LastSuccess(text []byte, command string) (time.Time, bool) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return time.Time{}, false
	}
	mf := mfs[Namespace+"_last_success_timestamp_seconds"]
	if mf == nil {
		return time.Time{}, false
	}
	for _, m := range mf.GetMetric() {
		if label(m, "command") == command && m.GetGauge() != nil {
			v := m.GetGauge().GetValue()
			return time.Unix(0, int64(v*1e9)).UTC(), v > 0
		}
	}
	return time.Time{}, false
}

// Push sends what g gathers to the pushgateway at url under job and the grouping
// labels. It adds (POST) rather than replaces, so the last success timestamp that a
// failed run leaves out survives there.
func Push(ctx context.Context, url, job string, grouping map[string]string, g prometheus.Gatherer, hc *http.Client) error {
	p := push.New(url, job).Gatherer(g).Client(hc).Format(expfmt.NewFormat(expfmt.TypeTextPlain))
	keys := make([]string, 0, len(grouping))
	for k := range grouping {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p = p.Grouping(k, grouping[k])
	}
	if err := p.AddContext(ctx); err != nil {
		return fmt.Errorf("pushing metrics to %s: %w", url, err)
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
