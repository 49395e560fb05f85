package main

import (
	"context"
	"encoding/binary"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
)

// testDNSEnv names a UDP address (a fakeDNS of the test process) that the cbk-sync
// test binary resolves every name with, so that a script can look up a name that
// does not exist without depending on the machine's resolver or network.
const testDNSEnv = "CBK_SYNC_TEST_DNS"

// useTestDNS points the process's resolver at the address in testDNSEnv, if set.
func useTestDNS() {
	addr := os.Getenv(testDNSEnv)
	if addr == "" {
		return
	}
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

// fakeDNS answers every query NXDOMAIN ("no such host"). Written by hand because it
// is twenty lines: the header with QR and RCODE 3 set, and the question echoed.
func fakeDNS() (string, func(), error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:n]
			if n < 12 {
				continue
			}
			end := 12 // the question: labels up to the root, then type and class
			for end < n && q[end] != 0 {
				end += int(q[end]) + 1
			}
			end += 5
			if end > n {
				continue
			}
			ans := append([]byte(nil), q[:end]...)
			ans[2] = 0x80 | (q[2] & 0x01) // QR, and RD echoed
			ans[3] = 0x80 | 3             // RA, RCODE NXDOMAIN
			binary.BigEndian.PutUint16(ans[4:], 1)
			binary.BigEndian.PutUint16(ans[6:], 0)
			binary.BigEndian.PutUint16(ans[8:], 0)
			binary.BigEndian.PutUint16(ans[10:], 0)
			_, _ = pc.WriteTo(ans, from)
		}
	}()
	return pc.LocalAddr().String(), func() { pc.Close() }, nil
}

// cmdUnreachable implements the script command
//
//	unreachable KIND VAR
//
// which sets the environment variable VAR to an API URL that cannot be reached in one
// of the ways that waiting will not heal:
//
//	refused     http://127.0.0.1:PORT where nothing listens
//	plain       https:// to a plain-HTTP server
//	untrusted   https:// to a TLS server whose certificate no one trusts
//	nxdomain    https://api.chatbotkit.invalid, resolved by a fake DNS answering NXDOMAIN
func cmdUnreachable(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: unreachable refused|plain|untrusted|nxdomain VAR")
	}
	quiet := log.New(io.Discard, "", 0) // the handshake errors are the point
	var url string
	switch args[0] {
	case "refused":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		url = "http://" + ln.Addr().String()
		ts.Check(ln.Close())
	case "plain":
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		srv.Config.ErrorLog = quiet
		srv.Start()
		ts.Defer(srv.Close)
		url = strings.Replace(srv.URL, "http://", "https://", 1)
	case "untrusted":
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		srv.Config.ErrorLog = quiet
		srv.StartTLS()
		ts.Defer(srv.Close)
		url = srv.URL
	case "nxdomain":
		addr, stop, err := fakeDNS()
		ts.Check(err)
		ts.Defer(stop)
		ts.Setenv(testDNSEnv, addr)
		url = "https://api.chatbotkit.invalid"
	default:
		ts.Fatalf("unreachable: unknown kind %q", args[0])
	}
	ts.Setenv(args[1], url)
}
