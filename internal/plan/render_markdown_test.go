package plan

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// bigCreatePlan creates n users, each with a description and two tokens: about 390
// bytes of Markdown a user, so 300 users are well over GitHub's comment limit.
func bigCreatePlan(t *testing.T, n int) *Plan {
	t.Helper()
	d := state.Desired{Owner: gOwner}
	for i := range n {
		d.Users = append(d.Users, state.DesiredUser{
			Email: state.Some(fmt.Sprintf("user%03d@acme.test", i)), Name: state.Some(fmt.Sprintf("User %d", i)),
			Description:  state.Some("Sandbox of the platform team"),
			Meta:         state.Some(meta("team", "platform")),
			ManageTokens: true, Tokens: []state.DesiredToken{{Name: "ci"}, {Name: "deploy"}},
		})
	}
	p, err := Compute(d, state.Actual{Tokens: map[string][]state.Token{}}, DefaultOptions(time.Now()))
	require.NoError(t, err)
	return &p
}

func TestMarkdownMaxBytesCutsAtAUserBoundary(t *testing.T) {
	p := bigCreatePlan(t, 300)
	p.Warnings = append(p.Warnings, "a warning the reviewer must see")
	var full bytes.Buffer
	require.NoError(t, RenderMarkdown(&full, p))
	require.Greater(t, full.Len(), 65536, "the scenario must be over GitHub's limit")

	const limit = 60000
	var cut bytes.Buffer
	require.NoError(t, RenderMarkdownWith(&cut, p, MarkdownOptions{MaxBytes: limit, FullPlanURL: "https://github.com/o/r/actions/runs/1"}))
	out := cut.String()
	assert.LessOrEqual(t, len(out), limit)

	// Whole users only, in plan order, each block closed.
	opened, closed := strings.Count(out, "<details>"), strings.Count(out, "</details>")
	assert.Equal(t, opened, closed)
	require.Greater(t, opened, 100, "the cap leaves room for many users")
	require.Less(t, opened, 300)
	for i := range opened {
		assert.Contains(t, out, fmt.Sprintf("<b>user%03d@acme.test</b>", i))
	}
	assert.NotContains(t, out, fmt.Sprintf("<b>user%03d@acme.test</b>", opened))
	// A prefix of the full rendering, up to the note.
	note := strings.Index(out, "> [!NOTE]")
	require.Positive(t, note)
	assert.True(t, strings.HasPrefix(full.String(), out[:note-len(mdWarnings(p))]))
	t.Logf("full plan %d bytes; cut to %d bytes with %d of 300 users", full.Len(), len(out), opened)

	// The note says what was left out, and where the full plan is.
	m := regexp.MustCompile(`This plan was cut to fit 60000 bytes.\*\* (\d+) of 300 users are shown; (\d+) users are left out \((\d+) user changes, (\d+) token changes\)`).FindStringSubmatch(out)
	require.NotNil(t, m, out[note:])
	shown, _ := strconv.Atoi(m[1])
	left, _ := strconv.Atoi(m[2])
	assert.Equal(t, opened, shown)
	assert.Equal(t, 300, shown+left)
	assert.Equal(t, m[3], strconv.Itoa(left))
	assert.Equal(t, m[4], strconv.Itoa(2*left))
	assert.Contains(t, out, "The full plan: <https://github.com/o/r/actions/runs/1>")
	// The summary still counts the whole plan, and the warning survives the cut.
	assert.Contains(t, out, "| Users | 300 |")
	assert.Contains(t, out, "a warning the reviewer must see")

	// As many users as fit: one more would break the cap.
	var one strings.Builder
	mdUser(&one, &p.Users[shown])
	longer := mdTruncated(p, MarkdownOptions{MaxBytes: limit, FullPlanURL: "https://github.com/o/r/actions/runs/1"}, shown+1, false, false)
	assert.Greater(t, note+one.Len()+len(longer), limit)
}

func TestMarkdownMaxBytesLeavesAFittingPlanAlone(t *testing.T) {
	for _, n := range []int{0, 3} {
		p := bigCreatePlan(t, n)
		var full, capped bytes.Buffer
		require.NoError(t, RenderMarkdown(&full, p))
		require.NoError(t, RenderMarkdownWith(&capped, p, MarkdownOptions{MaxBytes: full.Len()}))
		assert.Equal(t, full.String(), capped.String())
		assert.NotContains(t, capped.String(), "[!NOTE]")
	}
}

func TestMarkdownMaxBytesTinyCapKeepsTheSummary(t *testing.T) {
	p := bigCreatePlan(t, 10)
	var b bytes.Buffer
	require.NoError(t, RenderMarkdownWith(&b, p, MarkdownOptions{MaxBytes: 1}))
	out := b.String()
	assert.Contains(t, out, "| Users | 10 |")
	assert.NotContains(t, out, "<details>")
	assert.Contains(t, out, "0 of 10 users are shown; 10 users are left out (10 user changes, 20 token changes)")
	assert.Contains(t, out, "run `cbk-sync plan`")
}
