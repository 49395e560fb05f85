package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// PathFamily names one of the two sets of paths under which deployments serve the
// same partner-user operations.
//
//   - PathsPartner: BASE/v1/partner/user/... — the hosted API (api.chatbotkit.com)
//     and the official SDKs. A base URL with a path keeps it (BASE/api/v1/partner/...).
//   - PathsUser: BASE/api/v1/user/... — the self-hosted platform and the newest Go
//     and Python SDKs. A base URL that already ends in /api is not given a second one.
//   - PathsAuto: the client tries the partner family on its first request and, when
//     that answers 404, the user family once, and keeps whichever answers. Until the
//     family is known no write is sent: a write that comes first waits for a one-item
//     user listing to decide (a wrong family could map a write to another route).
type PathFamily string

// The path families; the zero value is PathsAuto.
const (
	PathsAuto    PathFamily = ""
	PathsPartner PathFamily = "partner"
	PathsUser    PathFamily = "user"
)

// ParsePathFamily reads a family as the command line spells it: auto, partner or user.
func ParsePathFamily(s string) (PathFamily, error) {
	switch s {
	case "", "auto":
		return PathsAuto, nil
	case "partner":
		return PathsPartner, nil
	case "user":
		return PathsUser, nil
	}
	return PathsAuto, fmt.Errorf("API paths %q: want auto, partner or user", s)
}

// String is the family as the command line spells it.
func (f PathFamily) String() string {
	if f == PathsAuto {
		return "auto"
	}
	return string(f)
}

func familyCode(f PathFamily) int {
	switch f {
	case PathsPartner:
		return 1
	case PathsUser:
		return 2
	}
	return 0
}

var familyOfCode = [...]PathFamily{PathsAuto, PathsPartner, PathsUser}

// Paths reports the path family in use: PathsAuto until the first answer told.
func (c *Client) Paths() PathFamily { return familyOfCode[c.family.Load()] }

func otherFamily(f PathFamily) PathFamily {
	if f == PathsUser {
		return PathsPartner
	}
	return PathsUser
}

// familyURL resolves an operation's relative address (see endpoint) against the
// root of family f.
func (c *Client) familyURL(f PathFamily, rel *url.URL) *url.URL {
	u := *c.base
	root := u.Path + "/v1/partner"
	if f == PathsUser {
		root = strings.TrimSuffix(u.Path, "/api") + "/api/v1"
	}
	u.Path = root + "/" + rel.Path
	u.RawPath = root + "/" + rel.EscapedPath()
	u.RawQuery = rel.RawQuery
	return &u
}

// familyFor returns the family a request is sent with. When the family is not known
// yet, a read becomes the probe: it returns the first family to try with release,
// which the caller calls once the answer decided (or failed); every other request
// waits meanwhile. A write never probes: it has a one-item user listing decide first.
func (c *Client) familyFor(ctx context.Context, r *request) (PathFamily, func(), error) {
	for {
		if f := c.Paths(); f != PathsAuto {
			return f, func() {}, nil
		}
		select {
		case c.probe <- struct{}{}:
		case <-ctx.Done():
			return "", nil, context.Cause(ctx)
		}
		if f := c.Paths(); f != PathsAuto {
			<-c.probe
			return f, func() {}, nil
		}
		if r.body == nil {
			released := false
			return PathsPartner, func() {
				if !released {
					released = true
					<-c.probe
				}
			}, nil
		}
		<-c.probe
		if err := c.probeFamily(ctx); err != nil {
			return "", nil, fmt.Errorf("%s: %w", r.op, err)
		}
	}
}

// probeFamily lists one user, only to learn the path family before a write.
func (c *Client) probeFamily(ctx context.Context) error {
	u := c.endpoint("user", "list")
	u.RawQuery = "take=1"
	err := c.doRaw(ctx, &request{op: OpUserList, kind: kindRead, url: u, handle: func(resp *http.Response, _ *watchdog) error {
		var page object
		return readObject(OpUserList, resp, &page)
	}})
	if err != nil {
		return fmt.Errorf("finding the API paths before a write: %w", err)
	}
	if c.Paths() == PathsAuto {
		return fmt.Errorf("finding the API paths before a write: no answer told them")
	}
	return nil
}

// decidesFamily reports whether an answer with status s shows that the path it was
// sent to exists: anything but a 404, an auth failure (which a gateway may give for
// any path), a throttle or a server error.
func decidesFamily(s int) bool {
	switch {
	case s == http.StatusNotFound, s == http.StatusUnauthorized, s == http.StatusPaymentRequired,
		s == http.StatusTooManyRequests, s >= 500:
		return false
	}
	return true
}

// setFamily records the family an answer decided.
func (c *Client) setFamily(f PathFamily) {
	if c.family.CompareAndSwap(0, int32(familyCode(f))) {
		c.log.Debug("api paths", "family", f.String(), "root", c.familyURL(f, &url.URL{}).Redacted())
	}
}
