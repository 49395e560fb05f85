package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"golang.org/x/time/rate"

	"github.com/cbk-sync/cbk-sync/internal/emulator"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// The emulator's own speed, with its state file (`cbk-sync emulator --state FILE`:
// every write appended to a journal and fsynced before it is answered) and without
// (memory only, the bound of the same run), at each size: user updates per second
// from stateWriters clients, and user fetches per second from stateReaders clients
// alone and while writes go on at stateWriteRate. Over real HTTP on loopback.
//
// On a shared machine the load of other processes comes and goes within seconds, so
// nothing is compared across minutes, nor across seconds where it can be helped: every
// emulator (each size, in memory and with --state) is up at once; the write phase is
// cut into stateRounds rounds of short turns, in an order that puts each pair that is
// compared (--state and memory of a size; --state at the smallest and the largest
// size) next to each other, reversed every other round; and each read slice during
// writes is next to a slice of reads alone, which comes first in every other pair. The
// ratios (of memory, of the smallest size, reads during writes over reads alone) are
// the medians of the rounds' or the pairs' ratios, so a burst of load that falls on one
// turn moves one ratio of many, not the figure.
const (
	stateWriters   = 32
	stateReaders   = 8
	stateWriteRate = 400 // writes/s while reads are measured: a sync at P=8 with 20 ms calls
	stateTokens    = 2   // tokens per seeded user, so the state is of a real account's size
	stateRounds    = 20  // turns of writes per emulator
	statePairs     = 30  // pairs of read slices (alone, during writes) per emulator
)

// The targets of issue 22: with the state file, writes/s at the largest size at
// least half of those at the smallest, and reads during writes at least 0.8x of reads
// alone.
const (
	targetStateScale = 0.5
	targetReadShare  = 0.8
)

// stateRun is the emulator measured at one size, with or without its state file.
type stateRun struct {
	Users     int
	Persisted bool
	Load      time.Duration // New: reading the state file

	Writes            int64
	WritesPerSec      float64   // over all its turns
	WriteRounds       []float64 // writes/s in each round's turn
	OfMemory          float64   // --state: median over the rounds of writes/s over memory's at the same size
	ReadsAlone        float64   // fetches/s
	ReadsDuringWrites float64   // fetches/s while writes go on at stateWriteRate
	Shares            []float64 // each pair's fetches/s during writes over alone
	// CPUShares are each pair's fetches per CPU-second of the process during writes over
	// alone: what the share would be on a machine of its own, where the bench, CPU-bound,
	// has every core (the writes' CPU then takes from the fetches exactly as it does
	// here), whatever other processes take meanwhile. It does not see a fetch waiting
	// for a lock, which wastes no CPU: the wall-clock share does.
	CPUShares     []float64
	ReadP99Alone  time.Duration
	ReadP99Writes time.Duration
	Stats         emulator.PersistStats
	Failures      []string
}

// ReadShare is the median over the pairs of slices of reads during writes over reads
// alone.
func (r *stateRun) ReadShare() float64 { return median(r.Shares) }

// median is the middle value (the mean of the two middle ones), 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// stateTarget is one emulator under measure, served over HTTP.
type stateTarget struct {
	run  *stateRun
	emu  *emulator.Emulator
	path string
	url  string
	stop func(context.Context) error
	ids  []string
}

// measureStates seeds a state file of each size (stateTokens tokens per user), starts
// every emulator, in memory and with its state file, and measures them side by side:
// the runs come back memory then --state at each size, smallest first.
func measureStates(ctx context.Context, sizes []int, d time.Duration, seed uint64, progress io.Writer) ([]*stateRun, error) {
	dir, err := os.MkdirTemp("", "cbk-sync-bench-state-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var targets []*stateTarget
	defer func() {
		for _, t := range targets {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = t.stop(sctx)
			cancel()
		}
	}()
	for _, n := range sizes {
		fmt.Fprintf(progress, "bench: the emulator at %d users: seeding its state file ...\n", n)
		path := filepath.Join(dir, fmt.Sprintf("state-%d.json", n))
		if err := seedStateFile(path, n); err != nil {
			return nil, err
		}
		for _, persisted := range []bool{false, true} {
			t, err := startState(path, n, persisted)
			if err != nil {
				return nil, err
			}
			targets = append(targets, t)
		}
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: stateWriters + stateReaders, MaxConnsPerHost: stateWriters + stateReaders}}
	defer hc.CloseIdleConnections()
	var bad atomic.Value
	call := func(method, url, body string) bool {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, rd)
		if err != nil {
			bad.Store(err.Error())
			return false
		}
		req.Header.Set("Authorization", "Bearer "+apiToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			bad.Store(err.Error())
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			bad.Store(fmt.Sprintf("%s %s: %d", method, url, resp.StatusCode))
			return false
		}
		return true
	}
	var seq atomic.Int64
	write := func(t *stateTarget) func(*rand.Rand) bool {
		return func(rng *rand.Rand) bool {
			i := seq.Add(1)
			return call(http.MethodPost, t.url+"/v1/partner/user/"+t.ids[rng.IntN(len(t.ids))]+"/update", fmt.Sprintf(`{"name":"write %d"}`, i))
		}
	}
	read := func(t *stateTarget) func(*rand.Rand) bool {
		return func(rng *rand.Rand) bool {
			return call(http.MethodGet, t.url+"/v1/partner/user/"+t.ids[rng.IntN(len(t.ids))]+"/fetch", "")
		}
	}

	// 1. Writes, as fast as stateWriters clients go: a turn each per round.
	fmt.Fprintf(progress, "bench: the emulators' writes, %d rounds of %d turns ...\n", stateRounds, len(targets))
	turn := d / stateRounds
	for round := range stateRounds {
		for _, t := range writeOrder(targets, round) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			n, _ := loop(turn, stateWriters, seed+uint64(round), nil, write(t))
			t.run.Writes += n
			t.run.WriteRounds = append(t.run.WriteRounds, float64(n)/turn.Seconds())
		}
	}
	for i, t := range targets {
		t.run.WritesPerSec = float64(t.run.Writes) / (turn * stateRounds).Seconds()
		if t.run.Persisted {
			mem := targets[i-1].run
			var of []float64
			for r := range t.run.WriteRounds {
				if mem.WriteRounds[r] > 0 {
					of = append(of, t.run.WriteRounds[r]/mem.WriteRounds[r])
				}
			}
			t.run.OfMemory = median(of)
		}
	}

	// 2. and 3. Reads alone, and reads while writes go on at stateWriteRate: in
	// alternating slices, each pair a ratio.
	slice := d / statePairs
	for _, t := range targets {
		fmt.Fprintf(progress, "bench: the emulator's reads at %d users, %s ...\n", t.run.Users, t.run.mode())
		var alone, during latencies
		var nAlone, nDuring int64
		for k := range statePairs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			var a, b int64
			var ca, cb time.Duration // the process's CPU time in each slice
			aloneSlice := func() {
				c0 := processCPU()
				a, _ = loop(slice, stateReaders, seed+1+uint64(k), &alone, read(t))
				ca = processCPU() - c0
			}
			if k%2 == 0 {
				aloneSlice()
			}
			lim := rate.NewLimiter(rate.Limit(stateWriteRate), 1)
			wctx, cancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			w := write(t)
			for c := range stateWriters {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(seed+2+uint64(k), uint64(c)))
					for lim.Wait(wctx) == nil {
						w(rng)
					}
				})
			}
			c0 := processCPU()
			b, _ = loop(slice, stateReaders, seed+100+uint64(k), &during, read(t))
			cancel()
			wg.Wait()
			cb = processCPU() - c0
			if k%2 == 1 {
				aloneSlice()
			}
			if a > 0 && b > 0 && ca > 0 && cb > 0 {
				t.run.CPUShares = append(t.run.CPUShares, (float64(b)/cb.Seconds())/(float64(a)/ca.Seconds()))
			}
			nAlone += a
			nDuring += b
			if a > 0 {
				t.run.Shares = append(t.run.Shares, float64(b)/float64(a))
			}
		}
		t.run.ReadsAlone, t.run.ReadP99Alone = float64(nAlone)/(slice*statePairs).Seconds(), alone.p99()
		t.run.ReadsDuringWrites, t.run.ReadP99Writes = float64(nDuring)/(slice*statePairs).Seconds(), during.p99()
	}
	if msg, ok := bad.Load().(string); ok && ctx.Err() == nil && !strings.Contains(msg, "context canceled") {
		for _, t := range targets {
			t.run.Failures = append(t.run.Failures, "a request failed: "+msg)
		}
	}

	// Every answered write is in the file: it loads back whole.
	var runs []*stateRun
	for _, t := range targets {
		runs = append(runs, t.run)
		if !t.run.Persisted {
			continue
		}
		t.run.Stats = t.emu.PersistStats()
		if err := t.emu.Close(); err != nil {
			return nil, err
		}
		back, err := emulator.New(emulator.Options{Token: apiToken, StatePath: t.path})
		if err != nil {
			return nil, err
		}
		if got := len(back.Users()); got != t.run.Users {
			t.run.Failures = append(t.run.Failures, fmt.Sprintf("the state file holds %d users after the writes, want %d", got, t.run.Users))
		}
	}
	return runs, nil
}

// writeOrder is the order of a round's turns: targets holds memory then --state at
// each size, smallest first; the pairs that are compared come one after the other
// (memory and --state at the smallest size, --state and memory at the largest, then
// each size between), and every other round runs backwards.
func writeOrder(targets []*stateTarget, round int) []*stateTarget {
	n := len(targets)
	order := []*stateTarget{targets[0], targets[1]}
	if n >= 4 {
		order = append(order, targets[n-1], targets[n-2])
		for i := 2; i+1 < n-2; i += 2 {
			order = append(order, targets[i+1], targets[i])
		}
	}
	if round%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

// seedStateFile writes a state file of n users with stateTokens tokens each, as a
// demo's or a test's fixture is written.
func seedStateFile(path string, n int) error {
	seedEmu, err := emulator.New(emulator.Options{Token: apiToken, StatePath: path})
	if err != nil {
		return err
	}
	base := time.Now().Add(-24 * time.Hour).UnixMilli()
	for i := range n {
		u, err := seedEmu.PutUser(state.User{CreatedAt: base + int64(i), Email: state.Some(userEmail(i)), Name: state.Some(userName(i)),
			Meta: state.Some(state.Meta{state.OwnerKey: benchOwner})})
		if err != nil {
			return err
		}
		for k := range stateTokens {
			if _, err := seedEmu.PutToken(u.ID, state.Token{CreatedAt: base + int64(i), Name: state.Some(tokenName(k))}); err != nil {
				return err
			}
		}
	}
	return seedEmu.Close()
}

// writeSynced writes a file and syncs it, so that its writeback does not fall into
// the measure.
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// startState loads the state file into an emulator, with SaveOnWrite when persisted,
// and serves it. The --state one has a copy of the file of its own, which its writes
// change; the memory one never writes.
func startState(seedPath string, n int, persisted bool) (*stateTarget, error) {
	r := &stateRun{Users: n, Persisted: persisted}
	path := seedPath
	if persisted {
		path = strings.TrimSuffix(seedPath, ".json") + "-state.json"
		b, err := os.ReadFile(seedPath)
		if err != nil {
			return nil, err
		}
		if err := writeSynced(path, b); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	emu, err := emulator.New(emulator.Options{Token: apiToken, StatePath: path, SaveOnWrite: persisted, Faults: emulator.Faults{PollLimit: -1}})
	if err != nil {
		return nil, err
	}
	r.Load = time.Since(t0)
	url, stop, err := emulator.Listen("127.0.0.1:0", emu)
	if err != nil {
		return nil, err
	}
	t := &stateTarget{run: r, emu: emu, path: path, url: url, stop: stop}
	for _, u := range emu.Users() {
		t.ids = append(t.ids, u.ID)
	}
	if len(t.ids) == 0 {
		_ = stop(context.Background())
		return nil, fmt.Errorf("no users to measure")
	}
	return t, nil
}

// loop runs f from clients goroutines for d and returns the calls that succeeded.
func loop(d time.Duration, clients int, seed uint64, lat *latencies, f func(*rand.Rand) bool) (int64, error) {
	var n atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if !f(rng) {
					return
				}
				if lat != nil {
					lat.add(time.Since(t0))
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return n.Load(), nil
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) p99() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*99/100)]
}

func (r *stateRun) mode() string {
	if r.Persisted {
		return "--state"
	}
	return "memory"
}

// stateScale is writes/s with --state at the largest size over those at the smallest,
// the median over the rounds of the ratio in each (0 with fewer than two sizes).
func stateScale(runs []*stateRun) float64 {
	var first, last *stateRun
	for _, r := range runs {
		if r.Persisted {
			if first == nil {
				first = r
			}
			last = r
		}
	}
	if first == nil || first == last {
		return 0
	}
	var ratios []float64
	for i := range min(len(first.WriteRounds), len(last.WriteRounds)) {
		if first.WriteRounds[i] > 0 {
			ratios = append(ratios, last.WriteRounds[i]/first.WriteRounds[i])
		}
	}
	return median(ratios)
}

type jsonStateRun struct {
	Users             int       `json:"users"`
	Persisted         bool      `json:"state_file"`
	LoadMS            float64   `json:"load_ms"`
	Writes            int64     `json:"writes"`
	WritesPerSec      float64   `json:"writes_per_s"`
	WriteRounds       []float64 `json:"writes_per_s_rounds,omitempty"`
	OfMemory          float64   `json:"writes_of_memory,omitempty"` // median over the rounds
	ReadsAlone        float64   `json:"fetches_per_s_alone"`
	ReadsDuringWrites float64   `json:"fetches_per_s_during_writes"`
	ReadShare         float64   `json:"fetch_share"` // median over the pairs of slices
	Shares            []float64 `json:"fetch_shares,omitempty"`
	CPUShare          float64   `json:"fetch_share_cpu,omitempty"` // median over the pairs
	CPUShares         []float64 `json:"fetch_shares_cpu,omitempty"`
	ReadP99AloneMS    float64   `json:"fetch_p99_alone_ms"`
	ReadP99WritesMS   float64   `json:"fetch_p99_during_writes_ms"`
	Appends           int64     `json:"journal_appends"`
	Compactions       int64     `json:"compactions"`
	SnapshotBytes     int64     `json:"snapshot_bytes"`
	Failures          []string  `json:"failures"`
}

func (r *stateRun) json() jsonStateRun {
	f := r.Failures
	if f == nil {
		f = []string{}
	}
	return jsonStateRun{Users: r.Users, Persisted: r.Persisted, LoadMS: ms(r.Load), Writes: r.Writes, WritesPerSec: r.WritesPerSec,
		WriteRounds: r.WriteRounds, OfMemory: r.OfMemory, Shares: r.Shares, CPUShare: median(r.CPUShares), CPUShares: r.CPUShares,
		ReadsAlone: r.ReadsAlone, ReadsDuringWrites: r.ReadsDuringWrites, ReadShare: r.ReadShare(),
		ReadP99AloneMS: ms(r.ReadP99Alone), ReadP99WritesMS: ms(r.ReadP99Writes),
		Appends: r.Stats.Appends, Compactions: r.Stats.Compactions, SnapshotBytes: r.Stats.SnapshotSize, Failures: f}
}

// writeStateText prints the emulator's own runs.
func (rep *report) writeStateText(w io.Writer) {
	if len(rep.stateRuns) == 0 {
		return
	}
	fmt.Fprintf(w, "\nthe emulator, every size up at once: %d writers (user updates) for %s each, in %d rounds of turns; %d readers (user fetches) alone, then during writes at %d/s, %d pairs of slices; ratios are medians\n",
		stateWriters, rep.settings.stateDuration, stateRounds, stateReaders, stateWriteRate, statePairs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "users\tstate\tload\twrites/s\tof memory\tfetches/s alone\tduring writes\tshare\tper CPU-s\tp99 alone\tp99 during\tappends\tcompactions\t")
	for _, r := range rep.stateRuns {
		of := "-"
		if r.Persisted {
			of = fmt.Sprintf("%.2f", r.OfMemory)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.0f\t%s\t%.0f\t%.0f\t%.2f\t%.2f\t%.1fms\t%.1fms\t%d\t%d\t\n", r.Users, r.mode(), seconds(r.Load), r.WritesPerSec, of,
			r.ReadsAlone, r.ReadsDuringWrites, r.ReadShare(), median(r.CPUShares), ms(r.ReadP99Alone), ms(r.ReadP99Writes), r.Stats.Appends, r.Stats.Compactions)
	}
	tw.Flush()
	if sc := stateScale(rep.stateRuns); sc > 0 {
		met := "met"
		if sc < targetStateScale {
			met = "missed"
		}
		fmt.Fprintf(w, "with --state, writes/s at the largest size are %.2fx those at the smallest (target >= %.1f): %s\n", sc, targetStateScale, met)
	}
	for _, r := range rep.stateRuns {
		if r.Persisted {
			met := "met"
			if r.ReadShare() < targetReadShare {
				met = "missed"
			}
			fmt.Fprintf(w, "with --state at %d users, fetches during writes are %.2fx fetches alone (target >= %.1f): %s; per CPU-second of the process %.2fx\n", r.Users, r.ReadShare(), targetReadShare, met, median(r.CPUShares))
		}
	}
}

// jsonMachine says where a run was measured.
type jsonMachine struct {
	Model string `json:"model"` // the CPU, from /proc/cpuinfo where there is one
	CPUs  int    `json:"cpus"`
	OS    string `json:"os"` // GOOS/GOARCH
	Go    string `json:"go"`
}

func thisMachine() jsonMachine {
	m := jsonMachine{Model: "unknown CPU", CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
