package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/cbk-sync/cbk-sync/internal/state"
)

// What goes on the wire: the API's error answers and the shapes of its answers.

// apiError is an answer with a non-2xx status and the Partner API's error body. It is
// also what PutUser and PutToken return, so seeding fails exactly like the API would.
type apiError struct {
	status int
	code   string
	msg    string
	header http.Header
}

func (e *apiError) Error() string {
	return fmt.Sprintf("emulator: %d %s: %s", e.status, e.code, e.msg)
}

func errBadRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "BAD_REQUEST", msg: fmt.Sprintf(format, args...)}
}

// errUniqueViolation is the platform's one 409 body, for a duplicate email and a
// duplicate alias alike: a client cannot tell from it which was taken.
func errUniqueViolation() *apiError {
	return &apiError{status: http.StatusConflict, code: "CONFLICT", msg: "Unique constraint violation"}
}

func errNotFound(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, code: "NOT_FOUND", msg: fmt.Sprintf(format, args...)}
}

// errForeign is the answer for a user of another partner account.
func errForeign() *apiError {
	return &apiError{status: http.StatusForbidden, code: "NOT_AUTHORIZED", msg: "not authorized to access this user"}
}

func methodNotAllowed(allow string) *apiError {
	return &apiError{status: http.StatusMethodNotAllowed, code: "METHOD_NOT_ALLOWED",
		msg: "use " + allow, header: http.Header{"Allow": {allow}}}
}

// errorBody is the Partner API's error answer.
type errorBody struct {
	Message string `json:"message"`
	Code    string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"message":"encoding the answer failed","code":"INTERNAL_SERVER_ERROR"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, e *apiError) {
	for k, vs := range e.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	writeJSON(w, e.status, errorBody{Message: e.msg, Code: e.code})
}

// userAnswer is a User as the API answers it: every field present, unset ones null,
// except description, which a fetch leaves out.
type userAnswer struct {
	ID          string                  `json:"id"`
	CreatedAt   int64                   `json:"createdAt"`
	UpdatedAt   int64                   `json:"updatedAt"`
	Name        state.Opt[string]       `json:"name"`
	Description state.Opt[string]       `json:"description,omitzero"`
	Meta        state.Opt[state.Meta]   `json:"meta"`
	Image       state.Opt[string]       `json:"image"`
	Email       state.Opt[string]       `json:"email"`
	Limits      state.Opt[state.Limits] `json:"limits"`
}

func answerUser(u *user, withDescription bool) userAnswer {
	a := userAnswer{ID: u.ID, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, Name: u.Name,
		Meta: hideMeta(u.Meta), Image: u.Image, Email: u.Email, Limits: hideLimits(u.Limits)}
	if withDescription {
		a.Description = orNull(u.Description)
	}
	return a
}

// tokenAnswer is a Token as the API answers it (never the secret).
type tokenAnswer struct {
	ID          string                `json:"id"`
	CreatedAt   int64                 `json:"createdAt"`
	UpdatedAt   int64                 `json:"updatedAt"`
	Name        state.Opt[string]     `json:"name"`
	Description state.Opt[string]     `json:"description"`
	Meta        state.Opt[state.Meta] `json:"meta"`
}

func answerToken(t *token) tokenAnswer {
	return tokenAnswer{ID: t.ID, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, Name: t.Name, Description: t.Description, Meta: hideMeta(t.Meta)}
}

// listAnswer is a page. Cursor is left out of an empty page.
type listAnswer struct {
	Items  []any  `json:"items"`
	Cursor string `json:"cursor,omitempty"`
}

type idAnswer struct {
	ID string `json:"id"`
}

type createdTokenAnswer struct {
	ID        string `json:"id"`
	Token     string `json:"token"`
	CreatedAt int64  `json:"createdAt"`
}

func acceptsJSONL(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), "application/jsonl") {
			return true
		}
	}
	return false
}
