package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ErrBadForward marks a -L specification that does not parse.
var ErrBadForward = errors.New("proxy: bad -L forward")

// Forward is one local port forward, as ssh's -L: connections accepted on
// Listen are dialled to Target through the Router.
type Forward struct {
	Listen string // "addr:port" to listen on
	Target string // "host:port" to reach, resolved by the Router
}

// String returns the forward in -L form.
func (f Forward) String() string { return f.Listen + ":" + f.Target }

// ParseForward parses "[addr:]port:host:hostport". IPv6 addresses go in
// brackets ("[::1]:8022:[fd00::22]:22"). Without addr the forward listens
// on 127.0.0.1; "*" or an empty addr (":8022:host:22") listens on every
// interface, as with ssh. port may be 0 (any free port); hostport may not.
func ParseForward(spec string) (Forward, error) {
	bad := func(format string, a ...any) (Forward, error) {
		return Forward{}, fmt.Errorf("%w %q: %s", ErrBadForward, spec, fmt.Sprintf(format, a...))
	}

	parts, err := splitColons(spec)
	if err != nil {
		return bad("%v", err)
	}
	var bind string
	switch len(parts) {
	case 3:
		bind = "127.0.0.1"
	case 4:
		bind, parts = parts[0], parts[1:]
		if bind == "*" {
			bind = ""
		}
	default:
		return bad("want [addr:]port:host:hostport (IPv6 addresses in brackets)")
	}
	port, host, hostPort := parts[0], parts[1], parts[2]

	if _, err := parsePort(port, true); err != nil {
		return bad("listen port: %v", err)
	}
	if _, err := parsePort(hostPort, false); err != nil {
		return bad("target port: %v", err)
	}
	switch {
	case host == "":
		return bad("empty target host")
	case !validHost(host):
		return bad("target %q is not a host name or IP address", host)
	case bind != "" && !validHost(bind):
		return bad("listen address %q is not a host name or IP address", bind)
	}
	return Forward{
		Listen: net.JoinHostPort(bind, port),
		Target: net.JoinHostPort(host, hostPort),
	}, nil
}

// splitColons splits s at colons outside brackets and strips the
// brackets of a part that is wholly bracketed.
func splitColons(s string) ([]string, error) {
	var parts []string
	start, depth := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			if depth > 0 || i != start {
				return nil, errors.New("misplaced '['")
			}
			depth++
		case ']':
			if depth == 0 || (i+1 < len(s) && s[i+1] != ':') {
				return nil, errors.New("misplaced ']'")
			}
			depth--
		case ':':
			if depth == 0 {
				parts = append(parts, unbracket(s[start:i]))
				start = i + 1
			}
		}
		if len(parts) > 4 {
			return nil, errors.New("too many fields")
		}
	}
	if depth != 0 {
		return nil, errors.New("unclosed '['")
	}
	return append(parts, unbracket(s[start:])), nil
}

func unbracket(s string) string {
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		return s[1 : len(s)-1]
	}
	return s
}

// parsePort parses a decimal port; zero is allowed only when zeroOK.
func parsePort(s string, zeroOK bool) (uint16, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	if strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	if n == 0 && !zeroOK {
		return 0, errors.New("0 is not a valid port")
	}
	return uint16(n), nil
}

// ListenForwards opens the listeners of fs in order. On error it closes
// the ones it opened and names the forward that failed.
func ListenForwards(fs []Forward) ([]net.Listener, error) {
	var lns []net.Listener
	for _, f := range fs {
		ln, err := net.Listen("tcp", f.Listen)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("proxy: -L %s: %w", f, err)
		}
		lns = append(lns, ln)
		if f.TargetsItself(ln.Addr()) {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("proxy: -L %s: the target is the forward's own "+
				"listening address", f)
		}
	}
	return lns, nil
}

// TargetsItself says whether f's target, as written, names its own
// listener at self (a literal local address or localhost, on its port):
// such a forward could only dial itself. Other names are caught per
// connection.
func (f Forward) TargetsItself(self net.Addr) bool {
	l, ok := addrPortOf(self)
	host, port, err := net.SplitHostPort(f.Target)
	if !ok || err != nil {
		return false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if isLocalName(host) {
		ip, err = netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
	}
	return err == nil && reaches(netip.AddrPortFrom(ip, uint16(p)), l)
}

// ServeForward accepts on ln and splices each connection to f.Target,
// dialled through s.Router. A forward has no authentication: it warns
// when ln is beyond loopback, as ssh allows it too. It ends like
// ServeSOCKS5.
func (s *Server) ServeForward(ctx context.Context, ln net.Listener, f Forward) error {
	log := s.logger("forward").With("forward", f.String())
	if !isLoopbackAddr(ln.Addr().String()) {
		log.Warn("forward listens beyond loopback; anyone who reaches it reaches the target",
			"addr", ln.Addr())
	}

	// "-L 9000:localhost:9000" would dial itself, endlessly.
	defer s.Router.AddSelf(ln.Addr())()

	var t tracker
	return acceptLoop(ctx, ln, &t, log, func(conn net.Conn) {
		actx := WithApp(ctx, s.appID("", conn, log))
		dctx, cancel := context.WithTimeout(actx, dialTimeout)
		target, err := s.Router.DialContext(dctx, "tcp", f.Target)
		cancel()
		if err != nil {
			conn.Close()
			log.Info("forward failed", "err", err)
			return
		}
		if !t.add(target) {
			conn.Close()
			target.Close()
			return
		}
		defer t.done(target)
		splice(conn, target)
	})
}
