package emulator

import "sync"

// The operation names used by Counts.
const (
	opUserList    = "user.list"
	opUserFetch   = "user.fetch"
	opUserCreate  = "user.create"
	opUserUpdate  = "user.update"
	opUserDelete  = "user.delete"
	opTokenList   = "token.list"
	opTokenCreate = "token.create"
	opTokenUpdate = "token.update"
	opTokenDelete = "token.delete"
)

var allOps = []string{opUserList, opUserFetch, opUserCreate, opUserUpdate, opUserDelete, opTokenList, opTokenCreate, opTokenUpdate, opTokenDelete}

// counter holds the calls and faults counted per kind, under countMu.
type counter struct {
	countMu     sync.Mutex
	calls       map[string]int64
	faultCounts map[string]int64
}

// Counts returns the number of calls per operation, counting every authenticated
// request that reached an operation, faulted ones included.
func (e *Emulator) Counts() map[string]int64 {
	e.countMu.Lock()
	defer e.countMu.Unlock()
	out := make(map[string]int64, len(e.calls))
	for k, v := range e.calls {
		out[k] = v
	}
	return out
}

// FaultCounts returns the number of injected faults by kind.
func (e *Emulator) FaultCounts() map[string]int64 {
	e.countMu.Lock()
	defer e.countMu.Unlock()
	out := make(map[string]int64, len(e.faultCounts))
	for k, v := range e.faultCounts {
		out[k] = v
	}
	return out
}

// ResetCounts sets every call and fault count to zero.
func (e *Emulator) ResetCounts() {
	e.pollMu.Lock()
	e.polls = 0 // the window itself is the account's, and stays
	e.pollMu.Unlock()
	e.countMu.Lock()
	defer e.countMu.Unlock()
	e.calls = make(map[string]int64, len(allOps))
	for _, op := range allOps {
		e.calls[op] = 0
	}
	e.faultCounts = make(map[string]int64, len(allFaults))
	for _, f := range allFaults {
		e.faultCounts[f] = 0
	}
}

func (e *Emulator) countCall(op string) {
	e.countMu.Lock()
	e.calls[op]++
	e.countMu.Unlock()
}

func (e *Emulator) countFault(kind string) {
	e.countMu.Lock()
	e.faultCounts[kind]++
	e.countMu.Unlock()
}
