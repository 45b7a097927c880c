package session

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the tunnel configuration the headend sends in its reply to
// CONNECT (protocol.md §2.2), decoded into typed values. Lists keep the
// order of the headers. A zero duration means the server set no limit.
type Config struct {
	// Address is the tunnel's IPv4 address with its netmask as prefix
	// length (host bits kept). Address6 is its IPv6 address: from
	// X-CSTP-Address-IP6, or from an IPv6 X-CSTP-Address plus X-CSTP-Netmask
	// when the server did not see Full-IPv6-Capability. At least one is
	// valid.
	Address  netip.Prefix
	Address6 netip.Prefix

	DNS            []netip.Addr // X-CSTP-DNS and X-CSTP-DNS-IP6
	NBNS           []netip.Addr // WINS servers
	DefaultDomains []string     // search domains; one header may carry several
	SplitDNS       []string     // domains to resolve through the tunnel

	// SplitInclude lists the routes into the tunnel (empty = all traffic),
	// SplitExclude those kept outside. Both families share a list, masked
	// to the network. An exclude of 0.0.0.0/32 is Cisco's "local LAN
	// access" marker and is kept for split to interpret.
	SplitInclude []netip.Prefix
	SplitExclude []netip.Prefix

	TunnelAllDNS         bool // all DNS queries through the tunnel
	ClientBypassProtocol bool // a family with no tunnel address bypasses the VPN
	DynDNS               bool // headend name is dynamic DNS; re-resolve on reconnect

	// MTU is the tunnel's inner MTU (X-CSTP-MTU, or X-DTLS-MTU when only
	// that was sent). BaseMTU is the link MTU the server settled on;
	// DTLSMTU is the data MTU over legacy DTLS. 0 = not sent.
	MTU     int
	BaseMTU int
	DTLSMTU int

	DPD                 time.Duration // CSTP dead-peer-detection interval
	Keepalive           time.Duration // CSTP keepalive interval
	DTLSDPD             time.Duration
	DTLSKeepalive       time.Duration
	IdleTimeout         time.Duration
	SessionTimeout      time.Duration
	SessionRemaining    time.Duration // X-CSTP-Session-Timeout-Remaining
	DisconnectedTimeout time.Duration // how long the server keeps a dropped session
	LeaseDuration       time.Duration
	RekeyTime           time.Duration
	DTLSRekeyTime       time.Duration

	RekeyMethod     string // "ssl", "new-tunnel" or "none"
	DTLSRekeyMethod string

	Banner     string // post-login banner, to show the user
	ServerName string // e.g. "ocserv 1.1.6"
	Hostname   string // our hostname as the server accepted it

	// DTLSPort is the UDP port for DTLS on the headend's address; 0 means
	// DTLS is off. DTLSAppID (PSK-NEGOTIATE mode) or DTLSSessionID (legacy
	// mode) is the 32-byte ID that attaches the DTLS flow to this session.
	// Both are secrets: never log them.
	DTLSPort          int
	DTLSAppID         []byte
	DTLSSessionID     []byte
	DTLSCipherSuite   string // "PSK-NEGOTIATE" or a legacy suite name
	DTLS12CipherSuite string // legacy DTLS 1.2 suite chosen from X-DTLS12-CipherSuite

	CSTPContentEncoding string // compression on CSTP; "" unless we offered it
	DTLSContentEncoding string
	ProxyPACURL         string // X-CSTP-MSIE-Proxy-Pac-URL

	// Unknown holds every header ParseConfig did not understand, keys in
	// canonical form. Secret headers it knows of are never kept here.
	Unknown http.Header
}

// ErrMissingHeader is wrapped by ParseConfig when a header the tunnel
// cannot work without is absent.
var ErrMissingHeader = errors.New("missing header")

// HeaderError reports a CONNECT reply header that ParseConfig could not
// use. Its message names the header and, unless the header carries a
// secret, the offending value.
type HeaderError struct {
	Header string // as spelled on the wire, e.g. "X-CSTP-MTU"
	Value  string // empty when Secret or when the header is missing
	Secret bool   // the value was withheld because it is a secret
	Err    error
}

func (e *HeaderError) Error() string {
	switch {
	case e.Secret:
		return "session: " + e.Header + ": bad value (not shown): " + e.Err.Error()
	case errors.Is(e.Err, ErrMissingHeader):
		return "session: " + e.Header + ": " + e.Err.Error()
	}
	return fmt.Sprintf("session: %s: bad value %s: %v", e.Header, quoteShort(e.Value), e.Err)
}

func (e *HeaderError) Unwrap() error { return e.Err }

// field describes one header ParseConfig knows: its wire spelling, whether
// its value is a secret, and how to store it. A nil parse marks a header
// that is understood but carries nothing ocnet uses.
type field struct {
	name   string
	secret bool
	parse  func(c *Config, v string) error
}

// fields lists the known headers in the order they are applied, which is
// the order list values are appended in.
var fields = []field{
	{name: "X-CSTP-Version"},
	{name: "X-CSTP-Server-Name", parse: str(func(c *Config) *string { return &c.ServerName })},
	{name: "X-CSTP-Hostname", parse: str(func(c *Config) *string { return &c.Hostname })},
	{name: "X-CSTP-Banner", parse: parseBanner},

	{name: "X-CSTP-Address-IP6", parse: parseAddress6},
	{name: "X-CSTP-DNS", parse: addrs(func(c *Config) *[]netip.Addr { return &c.DNS })},
	{name: "X-CSTP-DNS-IP6", parse: addrs(func(c *Config) *[]netip.Addr { return &c.DNS })},
	{name: "X-CSTP-NBNS", parse: addrs(func(c *Config) *[]netip.Addr { return &c.NBNS })},
	{name: "X-CSTP-Default-Domain",
		parse: words(func(c *Config) *[]string { return &c.DefaultDomains })},
	{name: "X-CSTP-Split-DNS", parse: words(func(c *Config) *[]string { return &c.SplitDNS })},
	{name: "X-CSTP-Split-Include",
		parse: routes(func(c *Config) *[]netip.Prefix { return &c.SplitInclude })},
	{name: "X-CSTP-Split-Include-IP6",
		parse: routes(func(c *Config) *[]netip.Prefix { return &c.SplitInclude })},
	{name: "X-CSTP-Split-Exclude",
		parse: routes(func(c *Config) *[]netip.Prefix { return &c.SplitExclude })},
	{name: "X-CSTP-Split-Exclude-IP6",
		parse: routes(func(c *Config) *[]netip.Prefix { return &c.SplitExclude })},
	{name: "X-CSTP-Tunnel-All-DNS",
		parse: boolean(func(c *Config) *bool { return &c.TunnelAllDNS })},
	{name: "X-CSTP-Client-Bypass-Protocol",
		parse: boolean(func(c *Config) *bool { return &c.ClientBypassProtocol })},
	{name: "X-CSTP-DynDNS", parse: boolean(func(c *Config) *bool { return &c.DynDNS })},

	{name: "X-CSTP-MTU", parse: mtu(func(c *Config) *int { return &c.MTU })},
	{name: "X-CSTP-Base-MTU", parse: mtu(func(c *Config) *int { return &c.BaseMTU })},
	{name: "X-DTLS-MTU", parse: mtu(func(c *Config) *int { return &c.DTLSMTU })},

	{name: "X-CSTP-DPD", parse: seconds(func(c *Config) *time.Duration { return &c.DPD })},
	{name: "X-CSTP-Keepalive",
		parse: seconds(func(c *Config) *time.Duration { return &c.Keepalive })},
	{name: "X-DTLS-DPD", parse: seconds(func(c *Config) *time.Duration { return &c.DTLSDPD })},
	{name: "X-DTLS-Keepalive",
		parse: seconds(func(c *Config) *time.Duration { return &c.DTLSKeepalive })},
	{name: "X-CSTP-Idle-Timeout",
		parse: seconds(func(c *Config) *time.Duration { return &c.IdleTimeout })},
	{name: "X-CSTP-Session-Timeout",
		parse: seconds(func(c *Config) *time.Duration { return &c.SessionTimeout })},
	{name: "X-CSTP-Session-Timeout-Remaining",
		parse: seconds(func(c *Config) *time.Duration { return &c.SessionRemaining })},
	{name: "X-CSTP-Disconnected-Timeout",
		parse: seconds(func(c *Config) *time.Duration { return &c.DisconnectedTimeout })},
	{name: "X-CSTP-Lease-Duration",
		parse: seconds(func(c *Config) *time.Duration { return &c.LeaseDuration })},
	{name: "X-CSTP-Rekey-Time",
		parse: seconds(func(c *Config) *time.Duration { return &c.RekeyTime })},
	{name: "X-DTLS-Rekey-Time",
		parse: seconds(func(c *Config) *time.Duration { return &c.DTLSRekeyTime })},
	{name: "X-CSTP-Rekey-Method", parse: str(func(c *Config) *string { return &c.RekeyMethod })},
	{name: "X-DTLS-Rekey-Method",
		parse: str(func(c *Config) *string { return &c.DTLSRekeyMethod })},

	{name: "X-DTLS-Port", parse: parsePort},
	{name: "X-DTLS-App-ID", secret: true,
		parse: dtlsID(func(c *Config) *[]byte { return &c.DTLSAppID })},
	{name: "X-DTLS-Session-ID", secret: true,
		parse: dtlsID(func(c *Config) *[]byte { return &c.DTLSSessionID })},
	{name: "X-DTLS-CipherSuite",
		parse: str(func(c *Config) *string { return &c.DTLSCipherSuite })},
	{name: "X-DTLS12-CipherSuite",
		parse: str(func(c *Config) *string { return &c.DTLS12CipherSuite })},
	{name: "X-CSTP-Content-Encoding",
		parse: str(func(c *Config) *string { return &c.CSTPContentEncoding })},
	{name: "X-DTLS-Content-Encoding",
		parse: str(func(c *Config) *string { return &c.DTLSContentEncoding })},
	{name: "X-CSTP-MSIE-Proxy-Pac-URL",
		parse: str(func(c *Config) *string { return &c.ProxyPACURL })},

	// AnyConnect UI and licensing constants; nothing for ocnet to do.
	{name: "X-CSTP-Smartcard-Removal-Disconnect"},
	{name: "X-CSTP-Keep"},
	{name: "X-CSTP-TCP-Keepalive"},
	{name: "X-CSTP-License"},
	{name: "X-CSTP-Routing-Filtering-Ignore"},

	// Secrets that must neither be kept in Unknown nor logged: the ASA's
	// post-auth document holds the session cookie, and the others are
	// request-side secrets a server has no reason to echo.
	{name: "X-CSTP-Post-Auth-XML", secret: true},
	{name: "X-DTLS-Master-Secret", secret: true},
	{name: "Set-Cookie", secret: true},
	{name: "Cookie", secret: true},
}

// The address headers are parsed together, after the table, because the
// netmask only means something next to its address.
const (
	hdrAddress = "X-CSTP-Address"
	hdrNetmask = "X-CSTP-Netmask"
)

// secretHeaders holds the canonical names of headers whose values must
// never reach a log line or an error.
var secretHeaders = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range fields {
		if f.secret {
			m[textproto.CanonicalMIMEHeaderKey(f.name)] = true
		}
	}
	return m
}()

// IsSecretHeader reports whether the named CONNECT header carries a secret
// (cookie, DTLS key material, post-auth XML) that must not be logged.
func IsSecretHeader(name string) bool {
	return secretHeaders[textproto.CanonicalMIMEHeaderKey(name)]
}

// ParseConfig decodes the headers of a 200 reply to CONNECT. Every
// malformed value is an error naming the header; a reply with no tunnel
// address or no MTU is an error wrapping ErrMissingHeader. Headers it does
// not know land in Config.Unknown.
func ParseConfig(h http.Header) (*Config, error) {
	h = canonical(h)
	c := &Config{}

	known := map[string]bool{
		textproto.CanonicalMIMEHeaderKey(hdrAddress): true,
		textproto.CanonicalMIMEHeaderKey(hdrNetmask): true,
	}
	for _, f := range fields {
		key := textproto.CanonicalMIMEHeaderKey(f.name)
		known[key] = true
		if f.parse == nil {
			continue
		}
		for _, v := range h[key] {
			if err := f.parse(c, strings.TrimSpace(v)); err != nil {
				return nil, headerError(f, v, err)
			}
		}
	}

	if err := parseAddress(c, h); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}

	for k, vs := range h {
		if !known[k] {
			if c.Unknown == nil {
				c.Unknown = http.Header{}
			}
			c.Unknown[k] = slices.Clone(vs)
		}
	}
	return c, nil
}

// check applies the rules that involve more than one header.
func (c *Config) check() error {
	if !c.Address.IsValid() && !c.Address6.IsValid() {
		return &HeaderError{Header: hdrAddress, Err: ErrMissingHeader}
	}

	// openconnect needs one of the two MTUs and so do we.
	if c.MTU == 0 {
		c.MTU = c.DTLSMTU
	}
	if c.MTU == 0 {
		return &HeaderError{Header: "X-CSTP-MTU", Err: ErrMissingHeader}
	}
	return nil
}

// canonical returns h with every key in canonical MIME form, so a header
// built by hand ("X-CSTP-MTU") and one read by textproto ("X-Cstp-Mtu")
// look the same. Keys that collide are merged in sorted key order.
func canonical(h http.Header) http.Header {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	out := make(http.Header, len(h))
	for _, k := range keys {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		out[ck] = append(out[ck], h[k]...)
	}
	return out
}

func headerError(f field, v string, err error) error {
	if f.secret {
		return &HeaderError{Header: f.name, Secret: true, Err: err}
	}
	return &HeaderError{Header: f.name, Value: v, Err: err}
}

// quoteShort quotes v for an error message, cut to a readable length.
func quoteShort(v string) string {
	const limit = 64
	if len(v) > limit {
		return strconv.Quote(v[:limit]) + "..."
	}
	return strconv.Quote(v)
}

// The helpers below build a parse func that stores into the field picked
// by the accessor, so the table above stays one line per header.

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		*p(c) = v
		return nil
	}
}

func parseBanner(c *Config, v string) error {
	// Several banner headers are joined as lines rather than dropped.
	if c.Banner != "" {
		c.Banner += "\n"
	}
	c.Banner += v
	return nil
}

func boolean(p func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		switch strings.ToLower(v) {
		case "true":
			*p(c) = true
		case "false":
			*p(c) = false
		default:
			return errors.New("want true or false")
		}
		return nil
	}
}

// maxMTU bounds any MTU the server may give us. The CSTP receive buffers
// in datapath hold 16 KiB of payload; a larger MTU could not be honoured.
const (
	minMTU = 68 // RFC 791: every IPv4 link must carry 68 bytes
	maxMTU = 16384
)

func mtu(p func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("not an integer")
		}
		if n < minMTU || n > maxMTU {
			return fmt.Errorf("outside %d..%d", minMTU, maxMTU)
		}
		*p(c) = n
		return nil
	}
}

// maxSeconds caps durations at 68 years; anything longer is a broken value,
// not a policy.
const maxSeconds = math.MaxInt32

// seconds parses a duration in whole seconds. "none" and "0" both mean no
// limit: the Debian ocserv 1.1.6 binary sends 0 for an unlimited session.
func seconds(p func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		if strings.EqualFold(v, "none") {
			*p(c) = 0
			return nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > maxSeconds {
			return errors.New(`want seconds or "none"`)
		}
		*p(c) = time.Duration(n) * time.Second
		return nil
	}
}

func parsePort(c *Config, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return errors.New("not a port number")
	}
	c.DTLSPort = n
	return nil
}

// dtlsIDLen is the size of X-DTLS-App-ID and X-DTLS-Session-ID.
const dtlsIDLen = 32

func dtlsID(p func(*Config) *[]byte) func(*Config, string) error {
	return func(c *Config, v string) error {
		if len(v) != 2*dtlsIDLen {
			return fmt.Errorf("want %d hex digits", 2*dtlsIDLen)
		}
		b, err := hex.DecodeString(v)
		if err != nil {
			return errors.New("not hex")
		}
		*p(c) = b
		return nil
	}
}

// splitList splits a header value on commas and white space. Servers put
// one item per header, but several search domains in one value also occur.
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t'
	})
}

func words(p func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		*p(c) = append(*p(c), splitList(v)...)
		return nil
	}
}

func addrs(p func(*Config) *[]netip.Addr) func(*Config, string) error {
	return func(c *Config, v string) error {
		for _, s := range splitList(v) {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				return errors.New("not an IP address")
			}
			*p(c) = append(*p(c), a.Unmap())
		}
		return nil
	}
}

func routes(p func(*Config) *[]netip.Prefix) func(*Config, string) error {
	return func(c *Config, v string) error {
		for _, s := range splitList(v) {
			r, err := ParseRoute(s)
			if err != nil {
				return err
			}
			*p(c) = append(*p(c), r)
		}
		return nil
	}
}

// ParseRoute reads a route the way headends write them: "net/24" or
// "net/255.255.255.0" (IPv4 only, contiguous) for IPv4, "net/64" for IPv6,
// or a bare address as a host route. The result is masked to the network.
// split uses it for the user's --include and --exclude routes too.
func ParseRoute(s string) (netip.Prefix, error) {
	addr, mask, hasMask := strings.Cut(strings.TrimSpace(s), "/")
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errors.New("not an address/mask route")
	}
	a = a.Unmap()

	bits := a.BitLen()
	if hasMask {
		if bits, err = parseMask(a, mask); err != nil {
			return netip.Prefix{}, err
		}
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// parseMask returns the prefix length written either as a number or, for
// IPv4, as a contiguous dotted netmask.
func parseMask(a netip.Addr, mask string) (int, error) {
	if n, err := strconv.Atoi(mask); err == nil {
		if n < 0 || n > a.BitLen() {
			return 0, errors.New("prefix length out of range")
		}
		return n, nil
	}

	m, err := netip.ParseAddr(mask)
	if err != nil || !a.Is4() || !m.Is4() {
		return 0, errors.New("bad netmask")
	}
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for v&0x80000000 != 0 {
		ones++
		v <<= 1
	}
	if v != 0 {
		return 0, errors.New("netmask is not contiguous")
	}
	return ones, nil
}

func parseAddress6(c *Config, v string) error {
	p, err := netip.ParsePrefix(v)
	if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() {
		return errors.New("want ipv6/prefixlen")
	}
	c.Address6 = p
	return nil
}

// parseAddress combines X-CSTP-Address with X-CSTP-Netmask. Servers send
// one address per family; an IPv6 one appears here only when the client
// did not claim full IPv6 capability, with "ipv6/len" as its netmask, and
// X-CSTP-Address-IP6 wins over it. A missing IPv4 netmask means /32.
func parseAddress(c *Config, h http.Header) error {
	var mask4, mask6 string
	for _, m := range h.Values(hdrNetmask) {
		m = strings.TrimSpace(m)
		if strings.Contains(m, ":") {
			mask6 = m
		} else {
			mask4 = m
		}
	}

	for _, v := range h.Values(hdrAddress) {
		v = strings.TrimSpace(v)
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return &HeaderError{Header: hdrAddress, Value: v, Err: errors.New("not an IP address")}
		}
		a = a.Unmap()

		if a.Is4() {
			bits := 32
			if mask4 != "" {
				if bits, err = parseMask(a, mask4); err != nil {
					return &HeaderError{Header: hdrNetmask, Value: mask4, Err: err}
				}
			}
			c.Address = netip.PrefixFrom(a, bits)
			continue
		}

		if c.Address6.IsValid() {
			continue
		}
		bits := 128
		if mask6 != "" {
			_, l, _ := strings.Cut(mask6, "/")
			if bits, err = parseMask(a, l); err != nil {
				return &HeaderError{Header: hdrNetmask, Value: mask6, Err: err}
			}
		}
		c.Address6 = netip.PrefixFrom(a, bits)
	}
	return nil
}

// Prefixes returns the tunnel's addresses, IPv4 first, for the netstack.
func (c *Config) Prefixes() []netip.Prefix {
	var ps []netip.Prefix
	for _, p := range []netip.Prefix{c.Address, c.Address6} {
		if p.IsValid() {
			ps = append(ps, p)
		}
	}
	return ps
}

// DTLSMode names the DTLS flavour the server chose: "psk" (PSK-NEGOTIATE
// with an App-ID), "legacy" (session resumption with a Session-ID) or ""
// when DTLS is not on offer.
func (c *Config) DTLSMode() string {
	switch {
	case c.DTLSPort == 0:
		return ""
	case c.DTLSCipherSuite == "PSK-NEGOTIATE" && len(c.DTLSAppID) == dtlsIDLen:
		return "psk"
	case len(c.DTLSSessionID) == dtlsIDLen:
		return "legacy"
	}
	return ""
}

// LogValue summarises the configuration for a log line. It leaves out the
// DTLS IDs and the banner text, and lists unknown headers by name only.
func (c *Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Any("addrs", c.Prefixes()),
		slog.Int("mtu", c.MTU),
		slog.Any("dns", c.DNS),
		slog.Any("split_dns", c.SplitDNS),
		slog.Int("split_include", len(c.SplitInclude)),
		slog.Int("split_exclude", len(c.SplitExclude)),
		slog.Bool("tunnel_all_dns", c.TunnelAllDNS),
		slog.Duration("dpd", c.DPD),
		slog.Duration("keepalive", c.Keepalive),
		slog.Duration("idle_timeout", c.IdleTimeout),
		slog.Duration("session_timeout", c.SessionTimeout),
		slog.Duration("rekey", c.RekeyTime),
		slog.String("rekey_method", c.RekeyMethod),
		slog.String("dtls", c.DTLSMode()),
		slog.Int("dtls_port", c.DTLSPort),
		slog.String("server", c.ServerName),
	}
	if len(c.Unknown) > 0 {
		names := make([]string, 0, len(c.Unknown))
		for k := range c.Unknown {
			names = append(names, k)
		}
		slices.Sort(names)
		attrs = append(attrs, slog.Any("unknown", names))
	}
	return slog.GroupValue(attrs...)
}
