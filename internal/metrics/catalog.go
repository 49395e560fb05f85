package metrics

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Desc is one metric a run can write: its full name, its labels besides `command`
// (which every series carries), and its help.
type Desc struct {
	Name   string
	Labels []string
	Help   string
}

// Catalog lists every metric Register can write, sorted by name: it registers a run
// that has every optional part (polls, a last success, pending and applied actions, an
// API call) and reads back what was registered, so the list is Register's own and
// docs/output.md, tested equal to it, cannot drift.
func Catalog() ([]Desc, error) {
	reg := prometheus.NewRegistry()
	if err := Register(reg, fullRun()); err != nil {
		return nil, err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	out := make([]Desc, 0, len(mfs))
	for _, mf := range mfs {
		d := Desc{Name: mf.GetName(), Help: mf.GetHelp()}
		if ms := mf.GetMetric(); len(ms) > 0 {
			for _, lp := range ms[0].GetLabel() {
				if lp.GetName() != "command" {
					d.Labels = append(d.Labels, lp.GetName())
				}
			}
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// fullRun is a run with every field set (TestFullRunSetsEveryField keeps it so when Run
// grows a field), so that Register writes every metric it can.
func fullRun() Run {
	return Run{Command: "sync", Start: time.Unix(1, 0), Duration: time.Second, ExitCode: 3,
		LastSuccess: time.Unix(1, 0), Actions: []string{"user_create"},
		Pending: map[string]int{}, Applied: map[string]map[string]int{},
		Calls: map[string]int64{"user.list": 1}, Retries: 1, Throttled: 1,
		Poll: &Poll{}, Users: &Users{}}
}
