package emulator

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCRUDOnBothPrefixes(t *testing.T) {
	for _, prefix := range []string{"/v1/partner", "/api/v1/partner"} {
		t.Run(prefix, func(t *testing.T) {
			h := newHarness(t, Options{})
			m := h.ok("POST", prefix+"/user/create", `{"email":"a@acme.test","name":"A"}`)
			id := m["id"].(string)
			u := h.ok("GET", prefix+"/user/"+id+"/fetch", "")
			assert.Equal(t, "A", u["name"])
			assert.Equal(t, id, h.ok("POST", prefix+"/user/"+id+"/update", `{"name":"B"}`)["id"])
			assert.Equal(t, []string{id}, ids(t, h.ok("GET", prefix+"/user/list", "")))
			tk := h.ok("POST", prefix+"/user/"+id+"/token/create", `{"name":"ci"}`)
			tid := tk["id"].(string)
			assert.Equal(t, []string{tid}, ids(t, h.ok("GET", prefix+"/user/"+id+"/token/list", "")))
			assert.Equal(t, tid, h.ok("POST", prefix+"/user/"+id+"/token/"+tid+"/update", `{"name":"cd"}`)["id"])
			assert.Equal(t, tid, h.ok("POST", prefix+"/user/"+id+"/token/"+tid+"/delete", `{}`)["id"])
			assert.Equal(t, id, h.ok("POST", prefix+"/user/"+id+"/delete", `{}`)["id"])
			assert.Empty(t, h.e.Users())
			want := map[string]int64{"user.list": 1, "user.fetch": 1, "user.create": 1, "user.update": 1, "user.delete": 1,
				"token.list": 1, "token.create": 1, "token.update": 1, "token.delete": 1}
			assert.Equal(t, want, h.e.Counts())
		})
	}
}

func TestListenServesAndStops(t *testing.T) {
	e, err := New(Options{Token: testToken})
	require.NoError(t, err)
	base, stop, err := Listen("127.0.0.1:0", e)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(base, "http://127.0.0.1:"), base)

	req, err := http.NewRequest("GET", base+"/v1/partner/user/list", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"items":[]}`, string(b))

	require.NoError(t, stop(context.Background()))
	_, err = http.DefaultClient.Do(req)
	assert.Error(t, err, "the server must be stopped")
}
