package apply

import (
	"encoding/json"
	"time"

	"github.com/cbk-sync/cbk-sync/internal/plan"
	"github.com/cbk-sync/cbk-sync/internal/state"
)

// Statuses of a Result.
const (
	StatusOK      = "ok"
	StatusFailed  = "failed"
	StatusSkipped = "skipped"
)

// ReportFormatVersion is the report's format_version.
const ReportFormatVersion = "1"

// Report is the account of one apply run, written as JSON by --report FILE: what each
// planned action came to, the totals, and how long it took.
type Report struct {
	// FormatVersion is the version of this format: "1". Keys are only ever added.
	FormatVersion string `json:"format_version"`
	// ToolVersion and ExitCode are filled by the command: its version, and the exit
	// status the run ends with.
	ToolVersion string        `json:"tool_version,omitempty"`
	ExitCode    int           `json:"exit_code"`
	Owner       string        `json:"owner,omitempty"`
	StartedAt   time.Time     `json:"started_at"`
	Duration    time.Duration `json:"-"` // written as "duration" (text) and "duration_ms"
	// Interrupted is true when the run was cancelled (SIGINT/SIGTERM) before every
	// action had started; the actions it never started are skipped.
	Interrupted bool   `json:"interrupted"`
	Totals      Totals `json:"totals"`
	// APICalls and Retries are not known to apply: the command fills them from the
	// client's counters after Run returns.
	APICalls map[string]int64 `json:"api_calls,omitempty"`
	Retries  int64            `json:"retries"`
	// Polls counts the run's list requests against the poll limit (filled by the
	// command, like APICalls).
	Polls Polls `json:"polls"`
	// SecretsTo is where the secrets of the tokens created went (never a secret); the
	// command fills it, as it chose the sink.
	SecretsTo *plan.SecretsDestination `json:"secrets_to,omitempty"`
	// Account counts the account's users as the plan read them, declared or not (the
	// plan's own census; filled by the command).
	Account *plan.Census `json:"account,omitempty"`
	// LateTokensRevoked are tokens whose create had lost its answer and was not found
	// by its nonce, which the server completed later all the same (pending, their secret
	// lost): found again at the end of the run and revoked.
	LateTokensRevoked []string `json:"late_tokens_revoked,omitempty"`
	// Results has one entry per planned change, in plan order.
	Results []Result `json:"results"`
}

// Polls is what the run's polls (list requests: pages, JSONL streams) cost against
// the account's poll limit.
type Polls struct {
	Sent     int64 `json:"sent"`
	Rejected int64 `json:"rejected"`
	WaitMS   int64 `json:"wait_ms"`          // wall time polls spent waiting for the window
	Budget   int   `json:"budget,omitempty"` // per window, given or learned; absent if never known
}

// Totals counts the results per status.
type Totals struct {
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
}

// Result is what one planned change came to.
type Result struct {
	Action plan.Action `json:"action"`
	// Identity names the change's user as the plan does (for --ids-out, which maps a
	// created user's identity to its new ID); the report shows email and user_id.
	Identity  state.Identity `json:"-"`
	Email     string         `json:"email"`
	UserID    string         `json:"user_id,omitempty"` // for a user create: the new user's ID
	TokenName string         `json:"token_name,omitempty"`
	// TokenID is the token the plan named (updated, revoked, rotated out), or for a
	// token create the new token's ID.
	TokenID string `json:"token_id,omitempty"`
	// NewTokenID is the successor a rotation created.
	NewTokenID string `json:"new_token_id,omitempty"`
	Status     string `json:"status"` // "ok", "failed" or "skipped"
	// Error says why the change failed or was skipped.
	Error string `json:"error,omitempty"`
	// SecretRolledBack lists the new tokens whose secret reached the secrets
	// destination and was taken back from it (SecretRetractor) when the token was
	// revoked right after (its confirmation failed).
	SecretRolledBack []string `json:"secret_rolled_back,omitempty"`
	// Recovered says how a lost answer or a conflict was resolved, e.g.
	// "answer lost; found by email lookup: adopted".
	Recovered string `json:"recovered,omitempty"`
}

// Failed reports whether anything planned was not done (an action failed or was
// skipped), which the command turns into exit code 3.
func (r *Report) Failed() bool {
	return r.Interrupted || r.Totals.Failed > 0 || r.Totals.Skipped > 0
}

// MarshalJSON writes the duration both readably and as a number.
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report // drops this method, so encoding does not recurse
	return json.Marshal(struct {
		plain
		Duration   string `json:"duration"`
		DurationMS int64  `json:"duration_ms"`
	}{plain(r), r.Duration.String(), r.Duration.Milliseconds()})
}

func (r *Report) count() {
	r.Totals = Totals{}
	for _, res := range r.Results {
		switch res.Status {
		case StatusOK:
			r.Totals.OK++
		case StatusFailed:
			r.Totals.Failed++
		default:
			r.Totals.Skipped++
		}
	}
}
