package proxy

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ocnet/ocnet/split"
)

// evalPAC runs the generated script for host, the way a browser would,
// with a small interpreter for exactly the statements PAC emits. Any
// other statement fails the test, so the generator cannot drift from what
// this checks. resolve stands in for the browser's dnsResolve.
func evalPAC(t *testing.T, js, host string, resolve map[string]string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(js), "\n")
	if len(lines) < 8 || !strings.HasPrefix(lines[0], "// ") ||
		lines[1] != "function FindProxyForURL(url, host) {" || lines[len(lines)-1] != "}" {
		t.Fatalf("unexpected PAC frame:\n%s", js)
	}
	m := tunnelLine.FindStringSubmatch(lines[2])
	if m == nil {
		t.Fatalf("no tunnel line: %q", lines[2])
	}
	tunnel := m[1]
	fixed := []string{
		"\thost = host.toLowerCase().replace(/^\\[|\\]$/g, \"\");",
		"\tvar v4 = /^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$/.test(host);",
		"\tvar v6 = host.indexOf(\":\") >= 0;",
	}
	for i, want := range fixed {
		if lines[3+i] != want {
			t.Fatalf("line %d = %q, want %q", 4+i, lines[3+i], want)
		}
	}
	host = strings.Trim(strings.ToLower(host), "[]")
	v4 := dotted.MatchString(host)
	v6 := strings.Contains(host, ":")

	atoms := []struct {
		re   *regexp.Regexp
		eval func(a []string) bool
	}{
		{pacAtoms[0], func(a []string) bool { return host == a[1] }},
		{pacAtoms[1], func(a []string) bool { return strings.HasSuffix(host, a[1]) }},
		{pacAtoms[2], func(a []string) bool {
			ok, err := path.Match(a[2], host)
			if err != nil {
				t.Fatalf("bad pattern %q", a[2])
			}
			return ok && (a[1] == "v4" && v4 || a[1] == "v6" && v6)
		}},
		{pacAtoms[3],
			func([]string) bool { return !strings.Contains(host, ".") }},
		{pacAtoms[4], func([]string) bool { return !v4 && !v6 }},
		{pacAtoms[5], func([]string) bool { return v4 }},
		{pacAtoms[6], func([]string) bool { return host == "" }},
		{pacAtoms[7], func([]string) bool { return true }},
		{pacAtoms[8], func(a []string) bool {
			ip, err1 := netip.ParseAddr(host)
			nw, err2 := netip.ParseAddr(a[1])
			mask, err3 := netip.ParseAddr(a[2])
			if err2 != nil || err3 != nil || !nw.Is4() || !mask.Is4() {
				t.Fatalf("isInNet with %q %q", a[1], a[2])
			}
			if err1 != nil || !ip.Is4() {
				return false
			}
			x, n, k := ip.As4(), nw.As4(), mask.As4()
			for i := range 4 {
				if x[i]&k[i] != n[i] {
					return false
				}
			}
			return true
		}},
		{pacAtoms[9], func(a []string) bool {
			pfx, err := netip.ParsePrefix(a[1])
			if err != nil {
				t.Fatalf("isInNetEx with %q", a[1])
			}
			ip, err := netip.ParseAddr(host)
			return err == nil && pfx.Contains(ip)
		}},
	}
	cond := func(c string) bool {
		for _, a := range atoms {
			if m := a.re.FindStringSubmatch(c); m != nil {
				return a.eval(m)
			}
		}
		t.Fatalf("condition the test does not know: %q", c)
		return false
	}
	target := func(x string) string {
		switch x {
		case "tunnel":
			return tunnel
		case `"DIRECT"`:
			return "DIRECT"
		}
		t.Fatalf("return of %q", x)
		return ""
	}

	active := []bool{true}
	for _, line := range lines[6 : len(lines)-1] {
		line = strings.TrimLeft(line, "\t")
		on := active[len(active)-1]
		switch {
		case ifReturn.MatchString(line):
			m := ifReturn.FindStringSubmatch(line)
			if on && cond(m[1]) {
				return target(m[2])
			}
		case ifBlock.MatchString(line):
			m := ifBlock.FindStringSubmatch(line)
			active = append(active, on && cond(m[1]))
		case line == "}":
			active = active[:len(active)-1]
		case strings.HasPrefix(line, "return "):
			if on {
				return target(strings.TrimSuffix(strings.TrimPrefix(line, "return "), ";"))
			}
		case line == "host = dnsResolve(host);":
			if on {
				host = resolve[host] // "" when it does not resolve
			}
		case line == "v4 = true;":
			if on {
				v4 = true
			}
		default:
			t.Fatalf("statement the test does not know: %q", line)
		}
	}
	t.Fatalf("script fell off its end for %q", host)
	return ""
}

// The statements and conditions evalPAC understands.
var (
	pacStr     = `"([^"]*)"`
	tunnelLine = regexp.MustCompile(`^\tvar tunnel = "(PROXY [^"]+)";$`)
	dotted     = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$`)
	ifReturn   = regexp.MustCompile(`^if \((.*)\) return (tunnel|"DIRECT");$`)
	ifBlock    = regexp.MustCompile(`^if \((.*)\) \{$`)
	pacAtoms   = []*regexp.Regexp{
		regexp.MustCompile(`^host == ` + pacStr + `$`),
		regexp.MustCompile(`^dnsDomainIs\(host, ` + pacStr + `\)$`),
		regexp.MustCompile(`^(v4|v6) && shExpMatch\(host, ` + pacStr + `\)$`),
		regexp.MustCompile(`^isPlainHostName\(host\)$`),
		regexp.MustCompile(`^!v4 && !v6$`),
		regexp.MustCompile(`^v4$`),
		regexp.MustCompile(`^!host$`),
		regexp.MustCompile(`^typeof isInNetEx == "function"$`),
		regexp.MustCompile(`^isInNet\(host, ` + pacStr + `, ` + pacStr + `\)$`),
		regexp.MustCompile(`^isInNetEx\(host, ` + pacStr + `\)$`),
	}
)

func pfxs(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

var pacPolicies = map[string]*split.Policy{
	"split": {
		Include:    pfxs("10.0.0.0/8", "172.16.0.0/12", "fd00::/8"),
		Exclude:    pfxs("10.1.0.0/16", "0.0.0.0/32", "fd00:1::/32"),
		DNSServers: []netip.Addr{netip.MustParseAddr("192.0.2.53")},
		Domains:    []string{"corp.example", ".Eng.Example."},
	},
	"full tunnel with exclude": {
		Exclude: pfxs("203.0.113.0/24"),
		Domains: []string{"corp.example"},
	},
	"full tunnel": {},
	"tunnel all dns": {
		Include:      pfxs("10.0.0.0/8"),
		TunnelAllDNS: true,
	},
	"user overrides and LAN": {
		Include: pfxs("10.0.0.0/8"),
		Exclude: pfxs("10.7.0.0/16"),
		LAN:     pfxs("10.3.0.0/16", "192.168.1.0/24"),
		User: split.Overrides{
			Include: pfxs("192.168.1.128/25", "10.7.7.0/24"),
			Exclude: pfxs("10.9.0.0/16"),
		},
	},
	"same length include and exclude": {
		Include: pfxs("10.0.0.0/8", "10.2.0.0/16"),
		Exclude: pfxs("10.2.0.0/16"),
	},
}

// TestPACNames checks names and literals against hand-written answers.
func TestPACNames(t *testing.T) {
	const proxy = "PROXY 127.0.0.1:8080"
	resolve := map[string]string{
		"www.outside.example":  "198.51.100.7",
		"wiki.partner.example": "10.5.0.1",
		"excluded.example":     "10.1.2.3",
		"blocked.example":      "203.0.113.9",
	}
	tests := []struct {
		policy, host, want string
	}{
		{"split", "intranet.corp.example", proxy},
		{"split", "INTRANET.Corp.Example", proxy},
		{"split", "corp.example", proxy},
		{"split", "build.eng.example", proxy},
		{"split", "notcorp.example", "DIRECT"}, // resolves nowhere
		{"split", "intranet", proxy},           // short name, completed with the domain
		{"split", "www.outside.example", "DIRECT"},
		{"split", "wiki.partner.example", proxy}, // resolves into the include
		{"split", "excluded.example", "DIRECT"},
		{"split", "10.9.9.9", proxy},
		{"split", "10.1.0.1", "DIRECT"},
		{"split", "192.0.2.53", proxy}, // the tunnel's DNS server
		{"split", "8.8.8.8", "DIRECT"},
		{"split", "[fd00::1]", proxy},
		{"split", "fd00:1::5", "DIRECT"},
		{"split", "2001:db8::1", "DIRECT"},
		{"split", "localhost", "DIRECT"},
		{"split", "127.0.0.1", "DIRECT"},
		{"split", "::1", "DIRECT"},
		{"split", "169.254.169.254", "DIRECT"},
		{"split", "fe80::1", "DIRECT"},
		{"full tunnel with exclude", "www.outside.example", proxy},
		{"full tunnel with exclude", "blocked.example", "DIRECT"},
		{"full tunnel with exclude", "203.0.113.1", "DIRECT"},
		{"full tunnel with exclude", "unresolvable.example", "DIRECT"},
		{"full tunnel", "anything.example", proxy},
		{"full tunnel", "2001:db8::1", proxy},
		{"full tunnel", "localhost", "DIRECT"},
		{"tunnel all dns", "www.outside.example", proxy},
		{"tunnel all dns", "8.8.8.8", "DIRECT"},
		{"user overrides and LAN", "10.3.0.9", "DIRECT"},     // LAN
		{"user overrides and LAN", "10.9.0.9", "DIRECT"},     // --exclude
		{"user overrides and LAN", "10.7.7.7", proxy},        // --include beats split-exclude
		{"user overrides and LAN", "10.7.8.8", "DIRECT"},     // split-exclude
		{"user overrides and LAN", "192.168.1.200", proxy},   // --include beats LAN
		{"user overrides and LAN", "192.168.1.20", "DIRECT"}, // LAN
		{"user overrides and LAN", "10.4.0.1", proxy},        // split-include
		{"same length include and exclude", "10.2.3.4", "DIRECT"},
		{"same length include and exclude", "10.3.3.4", proxy},
	}
	for _, tt := range tests {
		t.Run(tt.policy+"/"+tt.host, func(t *testing.T) {
			js := string(PAC(pacPolicies[tt.policy], "127.0.0.1:8080"))
			if got := evalPAC(t, js, tt.host, resolve); got != tt.want {
				t.Errorf("FindProxyForURL(%q) = %q, want %q\n%s", tt.host, got, tt.want, js)
			}
		})
	}
}

// TestPACMatchesRoute compares the script with split.Policy.Route on
// random addresses in and around every route of every policy.
func TestPACMatchesRoute(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for name, p := range pacPolicies {
		t.Run(name, func(t *testing.T) {
			js := string(PAC(p, "127.0.0.1:1"))
			var probes []netip.Addr
			probed := slices.Concat(p.Include, p.Exclude, p.LAN, p.User.Include, p.User.Exclude)
			for _, pfx := range probed {
				for range 20 {
					probes = append(probes, near(rng, pfx))
				}
			}
			for range 50 {
				probes = append(probes, near(rng, pfxs("0.0.0.0/0")[0]), near(rng, pfxs("::/0")[0]))
			}
			for _, ip := range probes {
				if !ip.IsValid() || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
					continue // always direct in the script
				}
				want := "DIRECT"
				if p.Route(ip) == split.Tunnel {
					want = "PROXY 127.0.0.1:1"
				}
				if got := evalPAC(t, js, ip.String(), nil); got != want {
					t.Errorf("%s: script says %q, Route says %q", ip, got, want)
				}
			}
		})
	}
}

// near returns a random address in pfx, or next to its edges.
func near(rng *rand.Rand, pfx netip.Prefix) netip.Addr {
	b := pfx.Masked().Addr().AsSlice()
	for i := range b {
		if i*8+8 > pfx.Bits() {
			b[i] ^= byte(rng.UintN(256)) & (0xff >> max(0, pfx.Bits()-i*8))
		}
	}
	a, _ := netip.AddrFromSlice(b)
	switch rng.UintN(4) {
	case 0:
		return a.Prev().Unmap()
	case 1:
		return a.Next().Unmap()
	}
	return a
}

func TestPACIncludeNamesSendAllNames(t *testing.T) {
	names, err := split.ParseDomainList("wiki.partner.example")
	if err != nil {
		t.Fatal(err)
	}
	p := &split.Policy{Include: pfxs("10.0.0.0/8"), User: split.Overrides{IncludeNames: names}}
	js := string(PAC(p, "127.0.0.1:1"))
	for _, host := range []string{"wiki.partner.example", "www.outside.example"} {
		if got := evalPAC(t, js, host, nil); got != "PROXY 127.0.0.1:1" {
			t.Errorf("%s: %q, want the proxy", host, got)
		}
	}
}

func TestPACDomainsSanitised(t *testing.T) {
	p := &split.Policy{Domains: []string{`evil"); alert(1); ("`, "ok.example", "", "."}}
	js := string(PAC(p, "127.0.0.1:8080"))
	if strings.Contains(js, "alert") || !strings.Contains(js, `".ok.example"`) {
		t.Errorf("domains not sanitised:\n%s", js)
	}
}

// TestPACServed fetches the PAC file from a running HTTP proxy.
func TestPACServed(t *testing.T) {
	r := &Router{Policy: pacPolicies["split"]}
	_, httpAddr := servers(t, r, Options{Auth: &Auth{User: "a", Pass: "b"}})

	for _, p := range []string{"/proxy.pac", "/wpad.dat"} {
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + httpAddr + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != PACContentType {
			t.Fatalf("GET %s: %d %q", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if !strings.Contains(string(body), `"PROXY `+httpAddr+`"`) {
			t.Errorf("PAC does not name the proxy %s:\n%s", httpAddr, body)
		}
		if got := evalPAC(t, string(body), "intranet.corp.example", nil); got != "PROXY "+httpAddr {
			t.Errorf("served PAC sends the corporate name to %q", got)
		}
	}

	// A POST is no PAC fetch.
	resp, err := http.Post("http://"+httpAddr+"/proxy.pac", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST /proxy.pac = %d, want 400", resp.StatusCode)
	}
}

// TestPACNeedsAuthBeyondLoopback serves a client whose address is not
// loopback, via the handler directly.
func TestPACNeedsAuthBeyondLoopback(t *testing.T) {
	h := &httpProxy{srv: &Server{Options: Options{Auth: &Auth{User: "a", Pass: "b"}}},
		router: &Router{}, log: discard}
	for _, tt := range []struct {
		auth string
		want int
	}{{"", 401}, {"Basic YTpi", 200}, {"Basic YTpj", 401}} {
		req, _ := http.NewRequest(http.MethodGet, "/proxy.pac", nil)
		req.RequestURI = "/proxy.pac"
		req.URL.Scheme, req.URL.Host = "", ""
		req.RemoteAddr = "192.0.2.9:5555"
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		local := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 8080}
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, local))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("Authorization %q: %d, want %d", tt.auth, rec.Code, tt.want)
		}
		if tt.want == 200 && !strings.Contains(rec.Body.String(), `"PROXY 192.0.2.1:8080"`) {
			t.Errorf("PAC names the wrong proxy:\n%s", rec.Body)
		}
	}
}
