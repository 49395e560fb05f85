package main

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The emulator's ratios are medians of what was measured side by side, so a burst of
// load on one turn (the last round here) moves none of them.
func TestStateRatiosAreMediansOfTheRounds(t *testing.T) {
	small := &stateRun{Users: 1000, Persisted: true, WriteRounds: []float64{4000, 4100, 3900, 4000, 4000, 4000}}
	large := &stateRun{Users: 100000, Persisted: true, WriteRounds: []float64{3000, 3100, 2900, 3000, 3000, 100}}
	runs := []*stateRun{{Users: 1000}, small, {Users: 100000}, large}
	assert.InDelta(t, 0.75, stateScale(runs), 0.001, "3,000 of 4,000 in every round but the disturbed one")
	assert.Zero(t, stateScale(runs[:2]), "one size: no scale")

	r := &stateRun{Shares: []float64{0.9, 0.1, 0.95, 0.85, 1.2}}
	assert.InDelta(t, 0.9, r.ReadShare(), 1e-9)
	assert.InDelta(t, 0.925, median([]float64{0.9, 0.95, 0.1, 1.2}), 1e-9)
	assert.Zero(t, median(nil))
}

// The turns that are compared come one after the other, every size takes one turn per
// round, and every other round runs backwards.
func TestWriteOrderPutsComparedTurnsSideBySide(t *testing.T) {
	var targets []*stateTarget
	for _, n := range []int{1000, 10000, 100000} {
		for _, p := range []bool{false, true} {
			targets = append(targets, &stateTarget{run: &stateRun{Users: n, Persisted: p}})
		}
	}
	label := func(o []*stateTarget) []string {
		var out []string
		for _, t := range o {
			out = append(out, fmt.Sprintf("%d/%s", t.run.Users, t.run.mode()))
		}
		return out
	}
	assert.Equal(t, []string{"1000/memory", "1000/--state", "100000/--state", "100000/memory", "10000/--state", "10000/memory"}, label(writeOrder(targets, 0)))
	assert.Equal(t, []string{"10000/memory", "10000/--state", "100000/memory", "100000/--state", "1000/--state", "1000/memory"}, label(writeOrder(targets, 1)))
	assert.Equal(t, []string{"1000/memory", "1000/--state"}, label(writeOrder(targets[:2], 0)))
	assert.Len(t, writeOrder(targets[:4], 0), 4)
}
