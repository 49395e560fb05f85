package emulator

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var updateRoutes = flag.Bool("update-routes", false, "rewrite testdata/routes.golden from the emulator's answers")

// TestRoutesGolden pins the emulator's answer, byte for byte, to the requests a router
// is most likely to change: unknown paths, wrong methods (HEAD and lower-case ones
// included), trailing and doubled slashes, dot segments, escaped slashes and letters,
// "@alias" refs, the control endpoints and each path family. Each line records the
// status, the headers (Date aside), the body and the calls counted, so a router that
// answers 301 for a dot segment, 405 in text/plain, or splits an escaped "/" otherwise
// than the platform fails here. Rewrite with -update-routes and read the diff.
func TestRoutesGolden(t *testing.T) {
	reqs := []struct{ method, target, body string }{
		{"GET", "/v1/partner/user/list", ""},
		{"HEAD", "/v1/partner/user/list", ""},
		{"POST", "/v1/partner/user/list", "{}"},
		{"PUT", "/v1/partner/user/list", ""},
		{"DELETE", "/v1/partner/user/list", ""},
		{"OPTIONS", "/v1/partner/user/list", ""},
		{"get", "/v1/partner/user/list", ""},
		{"GET", "/v1/partner/user/list/", ""},
		{"GET", "/v1/partner/user//list", ""},
		{"GET", "//v1/partner/user/list", ""},
		{"GET", "/v1/partner/user/list?take=1&order=asc", ""},
		{"GET", "/v1/partner/user/lis%74", ""},
		{"GET", "/v1/partner/user/./list", ""},
		{"GET", "/v1/partner/user/../user/list", ""},
		{"GET", "/v1/partner/user/u1/fetch", ""},
		{"GET", "/v1/partner/user/u1/%66etch", ""},
		{"GET", "/v1/partner/user/u%311/fetch", ""},
		{"GET", "/v1/partner/user/u1%2Ffetch", ""},
		{"GET", "/v1/partner/user/a%2Fb/fetch", ""},
		{"GET", "/v1/partner/user/a%20b/fetch", ""},
		{"GET", "/v1/partner/user/./fetch", ""},
		{"GET", "/v1/partner/user/../fetch", ""},
		{"GET", "/v1/partner/user/%2E/fetch", ""},
		{"GET", "/v1/partner/user/u1/../u1/fetch", ""},
		{"GET", "/v1/partner/user/list/fetch", ""},
		{"GET", "/v1/partner/user/create/fetch", ""},
		{"POST", "/v1/partner/user/u1/fetch", ""},
		{"HEAD", "/v1/partner/user/u1/fetch", ""},
		{"GET", "/v1/partner/user/u1/update", ""},
		{"GET", "/v1/partner/user/u1/delete", ""},
		{"GET", "/v1/partner/user/create", ""},
		{"GET", "/v1/partner/user/u1", ""},
		{"GET", "/v1/partner/user/u1/", ""},
		{"GET", "/v1/partner/user/u1/token", ""},
		{"GET", "/v1/partner/user/u1/token/list", ""},
		{"POST", "/v1/partner/user/u1/token/list", ""},
		{"GET", "/v1/partner/user/u1/token/create", ""},
		{"GET", "/v1/partner/user/u1/token/t1/update", ""},
		{"GET", "/v1/partner/user/u1/token/t1/delete", ""},
		{"GET", "/v1/partner/user/u1/token/t1/fetch", ""},
		{"POST", "/v1/partner/user/u1/token/t1/fetch", ""},
		{"GET", "/v1/partner/user/u1/token/t1/update/x", ""},
		{"GET", "/v1/partner/user/token/list", ""},
		{"GET", "/v1/partner/user/nobody/token/list", ""},
		{"POST", "/v1/partner/user/u1/token/nothing/update", "{}"},
		{"POST", "/v1/partner/user/u1/update", `{"alias":"al"}`},
		{"GET", "/v1/partner/user/@al/fetch", ""},
		{"GET", "/v1/partner/user/%40al/fetch", ""},
		{"GET", "/v1/partner/user/@al/token/list", ""},
		{"GET", "/v1/partner/unknown", ""},
		{"GET", "/v1/partner", ""},
		{"GET", "/v1/partner/", ""},
		{"GET", "/v1/partner/user", ""},
		{"GET", "/v1/partner/user/", ""},
		{"GET", "/V1/partner/user/list", ""},
		{"GET", "/api/v1/partner/user/list", ""},
		{"GET", "/api/v1/partner/user/u1/fetch", ""},
		{"GET", "/api/v1/user/list", ""},
		{"POST", "/api/v1/user/list", ""},
		{"GET", "/api/v1/user/u1/fetch", ""},
		{"GET", "/api/v1/user/u1/token/list", ""},
		{"GET", "/api/v1/user/user/list", ""},
		{"GET", "/api/v1/user/", ""},
		{"GET", "/api/v1/user", ""},
		{"GET", "/api/v1/partner/user/list/", ""},
		{"GET", "/", ""},
		{"OPTIONS", "*", ""},
		{"GET", "/_emulator", ""},
		{"GET", "/_emulator/", ""},
		{"GET", "/_emulator/counts", ""},
		{"HEAD", "/_emulator/counts", ""},
		{"POST", "/_emulator/counts", ""},
		{"GET", "/_emulator/counts/", ""},
		{"GET", "/_emulator//counts", ""},
		{"GET", "/_emulator/./counts", ""},
		{"GET", "/_emulator/nothing", ""},
		{"GET", "/_emulator/reset-counts", ""},
		{"POST", "/_emulator/reset-counts", ""},
		{"POST", "/v1/partner/user/u1/token/t1/delete", "{}"},
		{"POST", "/v1/partner/user/u1/delete", "{}"},
		{"GET", "/v1/partner/user/u1/fetch", ""},
	}
	var out bytes.Buffer
	for _, paths := range []Paths{PathsPartner, PathsUser, PathsBoth} {
		fmt.Fprintf(&out, "### paths=%s\n", paths)
		e, err := New(Options{Token: testToken, Paths: paths, Now: newFakeClock().now})
		require.NoError(t, err)
		// Fixed ids, so that the golden file does not depend on newID's randomness.
		u := stateUser("a@acme.test", 1_700_000_000_000)
		u.ID = "u1"
		_, err = e.PutUser(u)
		require.NoError(t, err)
		tok := stateToken("ci", 1_700_000_000_500)
		tok.ID = "t1"
		_, err = e.PutToken("u1", tok)
		require.NoError(t, err)
		for _, rq := range reqs {
			req := httptest.NewRequest(rq.method, rq.target, strings.NewReader(rq.body))
			req.Header.Set("Authorization", "Bearer "+testToken)
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			fmt.Fprintf(&out, "%s %s %s\n  -> %d", rq.method, rq.target, rq.body, rec.Code)
			for _, k := range slices.Sorted(maps.Keys(rec.Header())) {
				if k != "Date" {
					fmt.Fprintf(&out, " %s=%q", k, rec.Header()[k])
				}
			}
			fmt.Fprintf(&out, "\n  %s\n  calls:", strings.TrimSpace(rec.Body.String()))
			counts := e.Counts()
			for _, op := range slices.Sorted(maps.Keys(counts)) {
				if counts[op] > 0 {
					fmt.Fprintf(&out, " %s=%d", op, counts[op])
				}
			}
			out.WriteString("\n")
			e.ResetCounts()
		}
		// Unauthenticated: 401 before any routing, known path or not.
		for _, target := range []string{"/v1/partner/user/list", "/nothing", "/_emulator/counts"} {
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
			fmt.Fprintf(&out, "GET %s (no token)\n  -> %d %s\n", target, rec.Code, strings.TrimSpace(rec.Body.String()))
		}
	}
	const golden = "testdata/routes.golden"
	if *updateRoutes {
		require.NoError(t, os.WriteFile(golden, out.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run with -update-routes to create it")
	require.Equal(t, string(want), out.String())
}
