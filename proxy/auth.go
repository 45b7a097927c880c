package proxy

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"
)

// ErrAuthRequired means a proxy would listen beyond loopback without
// credentials: anyone who reaches it would use the VPN.
var ErrAuthRequired = errors.New("proxy: a listener beyond loopback needs --proxy-user and a password")

// Auth is the username and password both proxies ask for: SOCKS5
// username/password (RFC 1929) and HTTP Proxy-Authorization Basic.
type Auth struct {
	User string
	Pass string
}

// String names the user and hides the password.
func (a *Auth) String() string {
	if a == nil {
		return "none"
	}
	return a.User + ":[redacted]"
}

// LogValue keeps the password out of structured logs.
func (a *Auth) LogValue() slog.Value { return slog.StringValue(a.String()) }

// ok checks credentials in time independent of where they differ.
func (a *Auth) ok(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(a.User))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(a.Pass))
	return u&p == 1
}

// Options configure the front ends beyond the Router.
type Options struct {
	// Auth, when set, is required on every SOCKS5 and HTTP proxy
	// connection. Without it a SOCKS5 or HTTP username is taken as the
	// app ID instead, and any password is accepted.
	Auth *Auth

	// AppFromProcess names the app by the executable of the local process
	// that owns the client's socket (Linux only, best effort) when the
	// client gave no username.
	AppFromProcess bool

	// Forwards are the -L local port forwards.
	Forwards []Forward

	// UpstreamIdle is how long the HTTP proxy keeps an idle upstream
	// connection for the next request; 0 means 90 s. Connect-on-demand
	// keeps it short, since a pooled connection is an open flow that
	// holds the tunnel up.
	UpstreamIdle time.Duration
}

// CheckExposure refuses a proxy listen address beyond loopback when no
// credentials are set. addr is "host:port" as given on the command line
// or a listener's address; an empty host or one that is not "localhost"
// or a loopback IP counts as beyond loopback.
func CheckExposure(addr string, auth *Auth) error {
	if auth != nil || addr == "" || isLoopbackAddr(addr) {
		return nil
	}
	return fmt.Errorf("%w (listen address %s)", ErrAuthRequired, addr)
}

func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// parseBasic returns the user and password of a "Basic" authorization
// value.
func parseBasic(v string) (user, pass string, ok bool) {
	scheme, cred, found := strings.Cut(strings.TrimSpace(v), " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}

type appKey struct{}

// WithApp returns ctx carrying the ID of the app a flow belongs to: the
// proxy username, or the client's executable.
func WithApp(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, appKey{}, id)
}

// AppFrom returns the app ID WithApp stored, or "".
func AppFrom(ctx context.Context) string {
	id, _ := ctx.Value(appKey{}).(string)
	return id
}

// appID names the app behind one client connection: the username it
// offered when that is not a credential, else its executable when asked
// for, else "".
func (o *Options) appID(user string, conn net.Conn, log *slog.Logger) string {
	if o.Auth == nil && user != "" {
		return sanitizeApp(user)
	}
	if !o.AppFromProcess || conn == nil {
		return ""
	}
	exe, err := processOf(conn)
	if err != nil {
		log.Debug("app of client unknown", "client", conn.RemoteAddr(), "err", err)
		return ""
	}
	return exe
}

// sanitizeApp keeps printable ASCII of an app ID so that it is safe in logs
// and rule matching; at most 255 bytes arrive from either proxy anyway.
func sanitizeApp(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f {
			return -1
		}
		return r
	}, s)
}
