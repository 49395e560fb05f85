package client

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

func selectIDs(ids ...string) func(state.User) bool {
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
	}
	return func(u state.User) bool { return set[u.ID] }
}

func TestReadActualFewestCallsAndPipelined(t *testing.T) {
	r := newRegistry(t)
	tokensOfU1Asked := make(chan struct{})
	r.on("GET", usersPath+"?take=100&order=asc", reply(200, page(usersJSON(0, 100), "u99")))
	// The second page is held back until the token list of u1, from the first page,
	// has arrived: the read finishes only if token lists start while pages arrive.
	r.on("GET", usersPath+"?take=100&order=asc&cursor=u99", func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-tokensOfU1Asked:
		case <-time.After(10 * time.Second): // a guard against hanging, not a measurement
			t.Error("the token list of u1 did not start before the last user page")
		}
		reply(200, page(usersJSON(100, 150), "u149"))(w, req)
	})
	r.on("GET", "/v1/partner/user/u1/token/list?take=100&order=asc", func(w http.ResponseWriter, req *http.Request) {
		close(tokensOfU1Asked)
		reply(200, `{"items":[{"id":"t1","name":"ci"},{"id":"t2","name":null}],"cursor":"t2"}`)(w, req)
	})
	r.on("GET", "/v1/partner/user/u120/token/list?take=100&order=asc", reply(200, `{"items":[]}`))

	c := newTestClient(t, r)
	a, err := c.ReadActual(context.Background(), selectIDs("u1", "u120"))
	require.NoError(t, err)
	assert.Len(t, a.Users, 150)
	require.Len(t, a.Tokens, 2, "entries exactly for the selected users")
	assert.Len(t, a.Tokens["u1"], 2)
	ts, ok := a.Tokens["u120"]
	assert.True(t, ok, "a selected user without tokens has an empty entry")
	assert.Empty(t, ts)
	st := c.Stats()
	assert.Equal(t, int64(2), st.Calls[OpUserList])
	assert.Equal(t, int64(2), st.Calls[OpTokenList])
	assert.Equal(t, int64(4), st.Total())
}

func TestReadActualTokenPagesPast100(t *testing.T) {
	r := newRegistry(t)
	r.on("GET", usersPath+"?take=100&order=asc", reply(200, page(`[{"id":"u1"}]`, "u1")))
	var items string
	for i := range 100 {
		if i > 0 {
			items += ","
		}
		items += `{"id":"t` + string(rune('A'+i/26)) + string(rune('a'+i%26)) + `"}`
	}
	r.on("GET", "/v1/partner/user/u1/token/list?take=100&order=asc", reply(200, page("["+items+"]", "tDv")))
	r.on("GET", "/v1/partner/user/u1/token/list?take=100&order=asc&cursor=tDv", reply(200, page(`[{"id":"z"}]`, "z")))
	c := newTestClient(t, r)
	a, err := c.ReadActual(context.Background(), func(state.User) bool { return true })
	require.NoError(t, err)
	assert.Len(t, a.Tokens["u1"], 101)
}

func TestReadActualErrors(t *testing.T) {
	t.Run("token list refused", func(t *testing.T) {
		r := newRegistry(t)
		r.on("GET", usersPath+"?take=100&order=asc", reply(200, page(usersJSON(0, 3), "u2")))
		r.on("GET", "/v1/partner/user/u1/token/list?take=100&order=asc", reply(403, `{"message":"no","code":"NOT_AUTHORIZED"}`))
		c := newTestClient(t, r)
		_, err := c.ReadActual(context.Background(), selectIDs("u1"))
		assert.True(t, IsAuth(err), "%v", err)
	})
	t.Run("user list fails", func(t *testing.T) {
		r := newRegistry(t)
		r.on("GET", usersPath+"?take=100&order=asc", reply(401, `{"message":"who","code":"NOT_AUTHENTICATED"}`))
		c := newTestClient(t, r)
		_, err := c.ReadActual(context.Background(), nil)
		assert.True(t, IsAuth(err), "%v", err)
	})
	t.Run("user deleted meanwhile", func(t *testing.T) {
		r := newRegistry(t)
		r.on("GET", usersPath+"?take=100&order=asc", reply(200, page(usersJSON(0, 3), "u2")))
		r.on("GET", "/v1/partner/user/u1/token/list?take=100&order=asc", reply(404, `{"message":"gone","code":"NOT_FOUND"}`))
		c := newTestClient(t, r)
		a, err := c.ReadActual(context.Background(), selectIDs("u1"))
		require.NoError(t, err)
		assert.Len(t, a.Users, 2)
		assert.Empty(t, a.Tokens)
	})
	t.Run("no users", func(t *testing.T) {
		r := newRegistry(t)
		r.on("GET", usersPath+"?take=100&order=asc", reply(200, `{"items":[]}`))
		c := newTestClient(t, r)
		a, err := c.ReadActual(context.Background(), nil)
		require.NoError(t, err)
		assert.NotNil(t, a.Users)
		assert.NotNil(t, a.Tokens)
	})
}

// The next user page is asked for while the token lists of the current one still run:
// here every token list of the first page is held until the second page is asked for,
// which only a read-ahead can do. (The transport has no connection cap, so that the
// page does not depend on which request a freed connection goes to.)
func TestReadActualReadsPagesAhead(t *testing.T) {
	r := newRegistry(t)
	page2Asked := make(chan struct{})
	r.on("GET", usersPath+"?take=100&order=asc", reply(200, page(usersJSON(0, 100), "u99")))
	r.on("GET", usersPath+"?take=100&order=asc&cursor=u99", func(w http.ResponseWriter, req *http.Request) {
		close(page2Asked)
		reply(200, page(usersJSON(100, 101), "u100"))(w, req)
	})
	for i := range 100 {
		id := "u" + strconv.Itoa(i)
		r.on("GET", "/v1/partner/user/"+id+"/token/list?take=100&order=asc", func(w http.ResponseWriter, req *http.Request) {
			select {
			case <-page2Asked:
			case <-time.After(10 * time.Second): // a guard against hanging, not a measurement
				t.Errorf("the token list of %s waited for a user page that was not asked for", id)
			}
			reply(200, `{"items":[]}`)(w, req)
		})
	}
	c := newTestClient(t, r, func(o *Options) {
		o.MaxConns = 4
		o.HTTPClient = &http.Client{}
	})
	a, err := c.ReadActual(context.Background(), func(u state.User) bool { return u.ID != "u100" })
	require.NoError(t, err)
	assert.Len(t, a.Users, 101)
	assert.Len(t, a.Tokens, 100)
	assert.Equal(t, int64(102), c.Stats().Total())
}
