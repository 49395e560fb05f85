package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
)

// UnreachableError says that the API cannot be reached at its URL for a reason that
// waiting will not heal: the host name does not resolve, every address refuses the
// connection, TLS fails (an untrusted or wrong certificate, a failed handshake, a
// plain-HTTP server on an https:// URL). Such a request is not retried, so a typo in
// the URL or a runner without network fails in well under a second instead of
// retrying for minutes.
type UnreachableError struct {
	Op    string
	URL   string // scheme and host of the API, as asked for
	What  string // what failed, e.g. "the host name does not resolve"
	Check string // what to check
	Err   error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%s: cannot reach the API at %s: %s (%v); not retried: check %s", e.Op, e.URL, e.What, e.Err, e.Check)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnreachable) true, also after scrub rebuilt the error.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// ErrUnreachable is matched by every *UnreachableError.
var ErrUnreachable = errors.New("API unreachable")

// IsUnreachable reports an error that retrying cannot heal (see UnreachableError).
func IsUnreachable(err error) bool { return errors.Is(err, ErrUnreachable) }

// unreachable classifies a transport error as one that will not heal, or returns nil.
// TLS failures are final always: a certificate does not become trusted by waiting,
// and a host whose certificate changed mid-run is not one to send the token to. A
// failed DNS lookup, a refused connection or an unreachable network are final only
// until the API has answered once in this run: after that the host is known to exist
// and they are the network's passing failures, retried like a reset.
func (c *Client) unreachable(op string, u *url.URL, err error) error {
	what, check, final := "", "", false
	var dns *net.DNSError
	var cve *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	var alert tls.AlertError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") || errors.As(err, &rhe):
		what, check, final = "the server answered plain HTTP to a TLS (https://) request", "the URL's scheme and port (an http:// server is not https://)", true
	case errors.As(err, &cve) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalid):
		what, check, final = "its TLS certificate is not valid for this host or not trusted", "the URL's host name, the server's certificate and the system's trusted CAs", true
	case errors.As(err, &alert):
		what, check, final = "the TLS handshake failed", "the URL's scheme and port, and that the server speaks TLS", true
	case c.reached.Load():
		return nil
	case errors.As(err, &dns):
		what, check = "the host name does not resolve", "the URL's host name (--api-url, CHATBOTKIT_API_URL) and the DNS resolver"
		if !dns.IsNotFound {
			what = "the host name could not be looked up"
		}
		final = true
	case errors.Is(err, syscall.ECONNREFUSED):
		what, check, final = "the connection was refused", "the URL's host and port, and that the server is running", true
	case errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH):
		what, check, final = "the network or host is unreachable", "the network (is there a route to the host, e.g. egress from this runner?)", true
	}
	if !final {
		return nil
	}
	return &UnreachableError{Op: op, URL: (&url.URL{Scheme: u.Scheme, Host: u.Host}).String(), What: what, Check: check, Err: innermost(err)}
}

// innermost drops net/http's url.Error wrapper, whose text repeats the whole URL.
func innermost(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
