package session

import (
	"bufio"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeAppID replaces the redacted X-DTLS-App-ID of the real capture.
const fakeAppID = "476bd831d1db73df2407eec6d148da83f91392be31e48ea4096b096416b35c3e"

// ocservReply is the header block of the 200 CONNECTED reply from ocserv
// 1.1.6 in testbed/handshake-example.txt (password auth, PSK-NEGOTIATE),
// verbatim except for the App-ID.
const ocservReply = `X-CSTP-Version: 1
X-CSTP-Server-Name: ocserv 1.1.6
X-CSTP-Hostname: vm
X-CSTP-DPD: 30
X-CSTP-Default-Domain: corp.example
X-CSTP-Address: 198.19.0.50
X-CSTP-Netmask: 255.255.255.0
X-CSTP-DNS: 198.18.100.53
X-CSTP-Split-DNS: corp.example
X-CSTP-Split-Include: 198.18.100.0/255.255.255.0
X-CSTP-Tunnel-All-DNS: false
X-CSTP-Client-Bypass-Protocol: false
X-CSTP-Keepalive: 60
X-CSTP-Idle-Timeout: none
X-CSTP-Smartcard-Removal-Disconnect: true
X-CSTP-Rekey-Time: 172813
X-CSTP-Rekey-Method: ssl
X-CSTP-Session-Timeout: 0
X-CSTP-Session-Timeout-Remaining: 0
X-CSTP-Disconnected-Timeout: none
X-CSTP-Keep: true
X-CSTP-TCP-Keepalive: true
X-CSTP-License: accept
X-DTLS-DPD: 30
X-DTLS-Port: 443
X-DTLS-Rekey-Time: 172823
X-DTLS-Rekey-Method: ssl
X-DTLS-Keepalive: 60
X-DTLS-App-ID: ` + fakeAppID + `
X-DTLS-CipherSuite: PSK-NEGOTIATE
X-CSTP-Base-MTU: 1500
X-CSTP-MTU: 1434
X-CSTP-Banner: ocnet testbed (pass auth)
`

// readHeader parses a header block the way Connect does.
func readHeader(t testing.TB, block string) http.Header {
	t.Helper()
	block = strings.ReplaceAll(block, "\n", "\r\n") + "\r\n"
	tp := textproto.NewReader(bufio.NewReader(strings.NewReader(block)))
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("header block: %v", err)
	}
	return http.Header(h)
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestParseConfigOcserv(t *testing.T) {
	c, err := ParseConfig(readHeader(t, ocservReply))
	if err != nil {
		t.Fatal(err)
	}

	want := &Config{
		Address:              pfx("198.19.0.50/24"),
		DNS:                  []netip.Addr{addr("198.18.100.53")},
		DefaultDomains:       []string{"corp.example"},
		SplitDNS:             []string{"corp.example"},
		SplitInclude:         []netip.Prefix{pfx("198.18.100.0/24")},
		MTU:                  1434,
		BaseMTU:              1500,
		DPD:                  30 * time.Second,
		Keepalive:            60 * time.Second,
		DTLSDPD:              30 * time.Second,
		DTLSKeepalive:        60 * time.Second,
		RekeyTime:            172813 * time.Second,
		DTLSRekeyTime:        172823 * time.Second,
		RekeyMethod:          "ssl",
		DTLSRekeyMethod:      "ssl",
		Banner:               "ocnet testbed (pass auth)",
		ServerName:           "ocserv 1.1.6",
		Hostname:             "vm",
		DTLSPort:             443,
		DTLSAppID:            c.DTLSAppID,
		DTLSCipherSuite:      "PSK-NEGOTIATE",
		TunnelAllDNS:         false,
		ClientBypassProtocol: false,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("config =\n%+v\nwant\n%+v", c, want)
	}
	if len(c.DTLSAppID) != 32 || c.DTLSAppID[0] != 0x47 || c.DTLSAppID[31] != 0x3e {
		t.Errorf("App-ID = %x", c.DTLSAppID)
	}
	if c.DTLSMode() != "psk" {
		t.Errorf("DTLSMode = %q, want psk", c.DTLSMode())
	}
	if c.Unknown != nil {
		t.Errorf("Unknown = %v, want none", c.Unknown)
	}
}

// TestParseConfigTestVector checks the dual-stack reply of
// protocol-testvectors.md §3.2 against its stated expectations.
func TestParseConfigTestVector(t *testing.T) {
	h := readHeader(t, ocservReply)
	h.Set("X-CSTP-Address", "192.0.2.50")
	h.Set("X-CSTP-Address-IP6", "2001:db8:1::32/64")
	h["X-Cstp-Dns"] = []string{"192.0.2.1", "2001:db8:1::1"}
	h.Set("X-CSTP-Split-Include", "198.51.100.0/255.255.255.0")
	h.Set("X-CSTP-Split-Include-IP6", "2001:db8:100::/48")
	h.Set("X-CSTP-Split-Exclude", "203.0.113.0/255.255.255.0")

	c, err := ParseConfig(h)
	if err != nil {
		t.Fatal(err)
	}
	if c.Address != pfx("192.0.2.50/24") || c.Address6 != pfx("2001:db8:1::32/64") {
		t.Errorf("addresses = %v %v", c.Address, c.Address6)
	}
	wantDNS := []netip.Addr{addr("192.0.2.1"), addr("2001:db8:1::1")}
	if !reflect.DeepEqual(c.DNS, wantDNS) {
		t.Errorf("DNS = %v", c.DNS)
	}
	wantIn := []netip.Prefix{pfx("198.51.100.0/24"), pfx("2001:db8:100::/48")}
	if !reflect.DeepEqual(c.SplitInclude, wantIn) {
		t.Errorf("SplitInclude = %v", c.SplitInclude)
	}
	if !reflect.DeepEqual(c.SplitExclude, []netip.Prefix{pfx("203.0.113.0/24")}) {
		t.Errorf("SplitExclude = %v", c.SplitExclude)
	}
	if got := c.Prefixes(); len(got) != 2 {
		t.Errorf("Prefixes = %v", got)
	}
}

// minimal is the smallest reply ParseConfig accepts; cases add to it.
func minimal() http.Header {
	return http.Header{
		"X-CSTP-Address": {"10.0.0.2"},
		"X-CSTP-Netmask": {"255.255.255.0"},
		"X-CSTP-MTU":     {"1400"},
	}
}

func TestParseConfigValues(t *testing.T) {
	tests := []struct {
		name  string
		set   map[string][]string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "routes in dotted-mask and prefix form",
			set: map[string][]string{
				"X-CSTP-Split-Include": {"10.1.0.0/255.255.0.0", "10.2.0.0/16",
					"10.3.3.3/255.255.255.0", "192.0.2.9"},
				"X-CSTP-Split-Include-IP6": {"2001:db8::/32"},
			},
			check: func(t *testing.T, c *Config) {
				want := []netip.Prefix{pfx("10.1.0.0/16"), pfx("10.2.0.0/16"),
					pfx("10.3.3.0/24"), pfx("192.0.2.9/32"), pfx("2001:db8::/32")}
				if !reflect.DeepEqual(c.SplitInclude, want) {
					t.Errorf("SplitInclude = %v", c.SplitInclude)
				}
			},
		},
		{
			name: "local LAN exclude beside includes",
			set: map[string][]string{
				"X-CSTP-Split-Include": {"198.18.100.0/255.255.255.0"},
				"X-CSTP-Split-Exclude": {"0.0.0.0/255.255.255.255", "203.0.113.0/24"},
			},
			check: func(t *testing.T, c *Config) {
				want := []netip.Prefix{pfx("0.0.0.0/32"), pfx("203.0.113.0/24")}
				if !reflect.DeepEqual(c.SplitExclude, want) {
					t.Errorf("SplitExclude = %v", c.SplitExclude)
				}
				if len(c.SplitInclude) != 1 {
					t.Errorf("SplitInclude = %v", c.SplitInclude)
				}
			},
		},
		{
			name: "several default domains in one value",
			set: map[string][]string{
				"X-CSTP-Default-Domain": {"corp.example, lab.example  eng.example"},
				"X-CSTP-Split-DNS":      {"corp.example", "lab.example"},
			},
			check: func(t *testing.T, c *Config) {
				want := []string{"corp.example", "lab.example", "eng.example"}
				if !reflect.DeepEqual(c.DefaultDomains, want) {
					t.Errorf("DefaultDomains = %q", c.DefaultDomains)
				}
				if len(c.SplitDNS) != 2 {
					t.Errorf("SplitDNS = %q", c.SplitDNS)
				}
			},
		},
		{
			name: "none and 0 both mean no limit",
			set: map[string][]string{
				"X-CSTP-Idle-Timeout":              {"none"},
				"X-CSTP-Session-Timeout":           {"0"},
				"X-CSTP-Session-Timeout-Remaining": {"NONE"},
				"X-CSTP-Disconnected-Timeout":      {"0"},
				"X-CSTP-Lease-Duration":            {"3600"},
			},
			check: func(t *testing.T, c *Config) {
				if c.IdleTimeout != 0 || c.SessionTimeout != 0 || c.SessionRemaining != 0 ||
					c.DisconnectedTimeout != 0 {
					t.Errorf("timeouts = %v %v %v %v", c.IdleTimeout, c.SessionTimeout,
						c.SessionRemaining, c.DisconnectedTimeout)
				}
				if c.LeaseDuration != time.Hour {
					t.Errorf("LeaseDuration = %v", c.LeaseDuration)
				}
			},
		},
		{
			name: "IPv6 address without full capability",
			set: map[string][]string{
				"X-CSTP-Address": {"2001:db8:5::7"},
				"X-CSTP-Netmask": {"2001:db8:5::/64"},
			},
			check: func(t *testing.T, c *Config) {
				if c.Address.IsValid() || c.Address6 != pfx("2001:db8:5::7/64") {
					t.Errorf("addresses = %v %v", c.Address, c.Address6)
				}
			},
		},
		{
			name: "IPv4 and IPv6 in X-CSTP-Address",
			set: map[string][]string{
				"X-CSTP-Address": {"10.0.0.2", "2001:db8:5::7"},
				"X-CSTP-Netmask": {"255.255.255.0", "2001:db8:5::/64"},
			},
			check: func(t *testing.T, c *Config) {
				if c.Address != pfx("10.0.0.2/24") || c.Address6 != pfx("2001:db8:5::7/64") {
					t.Errorf("addresses = %v %v", c.Address, c.Address6)
				}
			},
		},
		{
			name: "IPv6-only tunnel",
			set: map[string][]string{
				"X-CSTP-Address":     nil,
				"X-CSTP-Netmask":     nil,
				"X-CSTP-Address-IP6": {"fd00::5/64"},
			},
			check: func(t *testing.T, c *Config) {
				if c.Address.IsValid() || c.Address6 != pfx("fd00::5/64") {
					t.Errorf("addresses = %v %v", c.Address, c.Address6)
				}
			},
		},
		{
			name: "missing netmask is a host address",
			set:  map[string][]string{"X-CSTP-Netmask": nil},
			check: func(t *testing.T, c *Config) {
				if c.Address != pfx("10.0.0.2/32") {
					t.Errorf("Address = %v", c.Address)
				}
			},
		},
		{
			name: "only X-DTLS-MTU",
			set: map[string][]string{
				"X-CSTP-MTU": nil,
				"X-DTLS-MTU": {"1399"},
			},
			check: func(t *testing.T, c *Config) {
				if c.MTU != 1399 || c.DTLSMTU != 1399 {
					t.Errorf("MTU = %d, DTLSMTU = %d", c.MTU, c.DTLSMTU)
				}
			},
		},
		{
			name: "legacy DTLS",
			set: map[string][]string{
				"X-DTLS-Port":          {"443"},
				"X-DTLS-Session-ID":    {strings.ToUpper(fakeAppID)},
				"X-DTLS12-CipherSuite": {"ECDHE-RSA-AES256-GCM-SHA384"},
			},
			check: func(t *testing.T, c *Config) {
				if c.DTLSMode() != "legacy" || len(c.DTLSSessionID) != 32 ||
					c.DTLS12CipherSuite != "ECDHE-RSA-AES256-GCM-SHA384" {
					t.Errorf("mode %q, id %x, suite %q", c.DTLSMode(), c.DTLSSessionID,
						c.DTLS12CipherSuite)
				}
			},
		},
		{
			name: "non-canonical keys and lower-case header names",
			set: map[string][]string{
				"x-cstp-tunnel-all-dns": {"TRUE"},
				"X-Cstp-Dns-Ip6":        {"2001:db8::53"},
			},
			check: func(t *testing.T, c *Config) {
				if !c.TunnelAllDNS || len(c.DNS) != 1 {
					t.Errorf("TunnelAllDNS %v, DNS %v", c.TunnelAllDNS, c.DNS)
				}
			},
		},
		{
			name: "unknown headers kept, post-auth XML dropped",
			set: map[string][]string{
				"X-CSTP-Post-Auth-XML":      {"<config-auth>secret-cookie</config-auth>"},
				"X-Custom-Admin":            {"hello"},
				"Strict-Transport-Security": {"max-age=1"},
			},
			check: func(t *testing.T, c *Config) {
				want := http.Header{
					"X-Custom-Admin":            {"hello"},
					"Strict-Transport-Security": {"max-age=1"},
				}
				if !reflect.DeepEqual(c.Unknown, want) {
					t.Errorf("Unknown = %v", c.Unknown)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := minimal()
			for k, v := range tt.set {
				if v == nil {
					delete(h, k)
					continue
				}
				h[k] = v
			}
			c, err := ParseConfig(h)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		header string
		value  string // nil-like "" with del removes the header
		del    bool
		want   string // substring of the error
	}{
		{"no address", "X-CSTP-Address", "", true, "X-CSTP-Address: missing header"},
		{"bad address", "X-CSTP-Address", "10.0.0.300", false,
			`X-CSTP-Address: bad value "10.0.0.300"`},
		{"bad netmask", "X-CSTP-Netmask", "255.0.255.0", false, "X-CSTP-Netmask"},
		{"no MTU", "X-CSTP-MTU", "", true, "X-CSTP-MTU: missing header"},
		{"MTU not a number", "X-CSTP-MTU", "big", false, `X-CSTP-MTU: bad value "big"`},
		{"MTU too small", "X-CSTP-MTU", "20", false, "X-CSTP-MTU"},
		{"MTU too large", "X-CSTP-MTU", "70000", false, "X-CSTP-MTU"},
		{"empty MTU", "X-CSTP-MTU", "", false, `X-CSTP-MTU: bad value ""`},
		{"bad base MTU", "X-CSTP-Base-MTU", "-1", false, "X-CSTP-Base-MTU"},
		{"bad DPD", "X-CSTP-DPD", "30s", false, `X-CSTP-DPD: bad value "30s"`},
		{"negative keepalive", "X-CSTP-Keepalive", "-5", false, "X-CSTP-Keepalive"},
		{"huge rekey", "X-CSTP-Rekey-Time", "99999999999999", false, "X-CSTP-Rekey-Time"},
		{"bad bool", "X-CSTP-Tunnel-All-DNS", "yes", false, "X-CSTP-Tunnel-All-DNS"},
		{"bad DNS", "X-CSTP-DNS", "dns.example", false, "X-CSTP-DNS"},
		{"zoned DNS", "X-CSTP-DNS", "fe80::1%eth0", false, "X-CSTP-DNS"},
		{"bad route", "X-CSTP-Split-Include", "10.0.0.0/33", false, "X-CSTP-Split-Include"},
		{"dotted mask on IPv6", "X-CSTP-Split-Include-IP6", "2001:db8::/255.255.0.0", false,
			"X-CSTP-Split-Include-IP6"},
		{"bad address6", "X-CSTP-Address-IP6", "10.0.0.1/24", false, "X-CSTP-Address-IP6"},
		{"bad port", "X-DTLS-Port", "0", false, "X-DTLS-Port"},
		{"short app id", "X-DTLS-App-ID", "abcd", false, "X-DTLS-App-ID: bad value (not shown)"},
		{"non-hex session id", "X-DTLS-Session-ID", strings.Repeat("zz", 32), false,
			"X-DTLS-Session-ID: bad value (not shown)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := minimal()
			if tt.del {
				delete(h, tt.header)
			} else {
				h[tt.header] = []string{tt.value}
			}

			_, err := ParseConfig(h)
			if err == nil {
				t.Fatal("ParseConfig succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) || !strings.HasPrefix(msg, "session: ") {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Errorf("error %T is not a *HeaderError", err)
			}
			if tt.del && !errors.Is(err, ErrMissingHeader) {
				t.Errorf("error does not wrap ErrMissingHeader")
			}
			if IsSecretHeader(tt.header) && strings.Contains(err.Error(), tt.value) {
				t.Errorf("error %q leaks the secret value", err)
			}
		})
	}
}

func TestConfigLogValueRedacts(t *testing.T) {
	h := readHeader(t, ocservReply)
	h.Set("X-Custom-Admin", "hi")
	c, err := ParseConfig(h)
	if err != nil {
		t.Fatal(err)
	}

	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("up", "config", c)
	out := b.String()
	if strings.Contains(out, fakeAppID[:16]) {
		t.Errorf("log line leaks the App-ID: %s", out)
	}
	for _, want := range []string{"config.mtu=1434", "config.dtls=psk", "X-Custom-Admin"} {
		if !strings.Contains(out, want) {
			t.Errorf("log line lacks %q: %s", want, out)
		}
	}
}

func BenchmarkParseConfig(b *testing.B) {
	h := readHeader(b, ocservReply)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseConfig(h); err != nil {
			b.Fatal(err)
		}
	}
}
