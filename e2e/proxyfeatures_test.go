package e2e

// The proxies' own features end to end on bed instance 4 (see
// split_test.go): per-app rules by proxy username, -L forwards, `ocnet nc`
// as an ssh ProxyCommand, SOCKS5 UDP ASSOCIATE, and proxy credentials.

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ocnet/ocnet/internal/bed"
)

// socksAs is a curl proxy URL that names app as the SOCKS5 username; the
// proxies have no credentials here, so any password passes.
func socksAs(app, socks string) string { return "socks5h://" + app + ":x@" + socks }

// httpAs is the same for the HTTP proxy's Proxy-Authorization.
func httpAs(app, httpProxy string) string { return "http://" + app + ":x@" + httpProxy }

// notLogged fails t if a request marked tok reached web server name.
func notLogged(t *testing.T, b *bed.Bed, name, tok string) {
	t.Helper()
	if src, ok := findSource(b, name, tok, 500*time.Millisecond); ok {
		t.Errorf("%s served %s to %s; it should never have arrived", name, tok, src)
	}
}

// TestProxyPerApp: with --allowed-apps com.example.*, an app in the set
// (named by the proxy username) reaches the intranet through the tunnel.
// With --refuse-other-apps any other app is refused, wherever it goes.
// Without it, by design, another app goes direct: the outside page works
// from the client's own address, and the corporate name, resolved but
// routed direct, fails because the client has no route of its own to the
// corporate LAN; the corporate server never sees it.
func TestProxyPerApp(t *testing.T) {
	b := splitBed(t)
	startRecorder(t, b)

	t.Run("refuse-other-apps", func(t *testing.T) {
		r := startSplit(t, b, "--allowed-apps", "com.example.*", "--refuse-other-apps")

		for _, proxy := range []string{socksAs("com.example.mail", r.socks),
			httpAs("com.example.mail", r.http)} {
			tok := token("app-in")
			page := curl(t, b, "--proxy", proxy, corpURL(b, tok))
			if !strings.Contains(page, b.CorpText) {
				t.Fatalf("corporate page lacks %q:\n%s", b.CorpText, page)
			}
			if src := sourceOf(t, b, "nginx", tok); src != r.vpnIP {
				t.Errorf("corporate server saw %s, want the VPN address %s", src, r.vpnIP)
			}
		}

		for _, tc := range []struct{ proxy, want string }{
			{socksAs("org.other", r.socks), "(97)"},
			{httpAs("org.other", r.http), "403"},
			{"socks5h://" + r.socks, "(97)"}, // no username: no app, outside the set
		} {
			tokC, tokN := token("app-out"), token("app-out")
			for _, u := range []string{corpURL(b, tokC), netURL(b, tokN)} {
				out, err := tryCurl(b, "--proxy", tc.proxy, u)
				if err == nil || !strings.Contains(out, tc.want) {
					t.Errorf("curl --proxy %s %s: %v %q, want a refusal (%s)", tc.proxy, u,
						err, out, tc.want)
				}
			}
			notLogged(t, b, "nginx", tokC)
			notLogged(t, b, "nginx-net", tokN)
		}

		e := explainLive(t, b, r, "--app", "org.other", b.CorpName+":80")
		if e.Decision != "refuse" || e.Rule != "app not in allowed-apps" {
			t.Errorf("explain --app org.other: %s by %q, want refuse by app not in allowed-apps",
				e.Decision, e.Rule)
		}
		r.p.stop()
	})

	t.Run("others-direct", func(t *testing.T) {
		r := startSplit(t, b, "--allowed-apps", "com.example.*")

		tok := token("app-in")
		curl(t, b, "--proxy", socksAs("com.example.mail", r.socks), corpURL(b, tok))
		if src := sourceOf(t, b, "nginx", tok); src != r.vpnIP {
			t.Errorf("corporate server saw %s, want the VPN address %s", src, r.vpnIP)
		}

		tok = token("app-out")
		page := curl(t, b, "--proxy", socksAs("org.other", r.socks), netURL(b, tok))
		if !strings.Contains(page, b.NetText) {
			t.Fatalf("outside page lacks %q:\n%s", b.NetText, page)
		}
		if src := sourceOf(t, b, "nginx-net", tok); src != b.ClientNetIP {
			t.Errorf("internet server saw %s, want the client's own %s", src, b.ClientNetIP)
		}

		tok = token("app-out")
		if out, err := tryCurl(b, "--proxy", socksAs("org.other", r.socks),
			corpURL(b, tok)); err == nil {
			t.Errorf("org.other reached the intranet directly: %s", out)
		} else {
			t.Logf("org.other to the intranet, direct: %s", strings.TrimSpace(out))
		}
		notLogged(t, b, "nginx", tok)

		e := explainLive(t, b, r, "--app", "org.other", b.CorpName+":80")
		if e.Decision != "direct" || e.Rule != "app not in allowed-apps" {
			t.Errorf("explain --app org.other: %s by %q, want direct by app not in allowed-apps",
				e.Decision, e.Rule)
		}
		r.p.stop()
	})
}

// runNC runs `ocnet nc` as nobody in the client namespace with input on
// standard input and returns its output, standard error and exit status.
func runNC(t *testing.T, b *bed.Bed, input string, args ...string) (string, string, int) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := b.AsNobodyInClient(ctx, bed.BuildOcnet(t), append([]string{"nc"}, args...)...)
	cmd.Stdin = strings.NewReader(input)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("ocnet nc %s: still running after 30 s", strings.Join(args, " "))
	}
	code := 0
	if err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// TestProxyForwardAndNC: an ssh-style -L forward serves the intranet page
// on a local port, and `ocnet nc` splices standard input and output to
// the web server as ssh's ProxyCommand would, exiting 1 with a message
// when it cannot connect.
func TestProxyForwardAndNC(t *testing.T) {
	b := splitBed(t)
	startRecorder(t, b)
	fwd := "127.0.0.1:" + strconv.Itoa(b.FreeClientPort(t))
	r := startSplit(t, b, "-L", fwd+":"+b.CorpName+":80")

	t.Run("local-forward", func(t *testing.T) {
		tok := token("fwd")
		page := curl(t, b, "-H", "Host: "+b.CorpName, "http://"+fwd+"/?"+tok)
		if !strings.Contains(page, b.CorpText) {
			t.Fatalf("page through -L lacks %q:\n%s", b.CorpText, page)
		}
		if src := sourceOf(t, b, "nginx", tok); src != r.vpnIP {
			t.Errorf("corporate server saw %s, want the VPN address %s", src, r.vpnIP)
		}
	})

	t.Run("nc", func(t *testing.T) {
		tok := token("nc")
		req := "GET /?" + tok + " HTTP/1.0\r\nHost: " + b.CorpName + "\r\n\r\n"
		out, errOut, code := runNC(t, b, req, "--socks", r.socks, "intranet", "80")
		if code != 0 || !strings.HasPrefix(out, "HTTP/1.1 200") ||
			!strings.Contains(out, b.CorpText) {
			t.Fatalf("ocnet nc intranet 80: status %d, stderr %q, output:\n%s", code, errOut, out)
		}
		if src := sourceOf(t, b, "nginx", tok); src != r.vpnIP {
			t.Errorf("corporate server saw %s, want the VPN address %s", src, r.vpnIP)
		}
	})

	t.Run("nc-no-proxy", func(t *testing.T) {
		idle := "127.0.0.1:" + strconv.Itoa(b.FreeClientPort(t))
		_, errOut, code := runNC(t, b, "", "--socks", idle, b.CorpName, "80")
		if code != 1 || !strings.Contains(errOut, "cannot connect") ||
			!strings.Contains(errOut, idle) {
			t.Errorf("ocnet nc with no proxy at %s: status %d, stderr %q; want 1 and a "+
				"message naming the proxy", idle, code, errOut)
		}
		checkClean(t, errOut)
	})

	t.Run("nc-nothing-listens", func(t *testing.T) {
		// The corporate web server has nothing on port 81.
		_, errOut, code := runNC(t, b, "", "--socks", r.socks, b.CorpName, "81")
		if code != 1 || !strings.Contains(errOut, "cannot connect") {
			t.Errorf("ocnet nc %s 81: status %d, stderr %q; want 1 and a message",
				b.CorpName, code, errOut)
		}
		checkClean(t, errOut)
	})
	r.p.stop()
}

// socksAssociate opens a SOCKS5 UDP ASSOCIATE with no authentication from
// the client namespace and returns the control connection and the relay.
func socksAssociate(b *bed.Bed, socks string) (net.Conn, netip.AddrPort, error) {
	var conn net.Conn
	err := inNetns(b.NSClient, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", socks, 5*time.Second)
		return err
	})
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fail := func(err error) (net.Conn, netip.AddrPort, error) {
		conn.Close()
		return nil, netip.AddrPort{}, err
	}

	br := bufio.NewReader(conn)
	if _, err := conn.Write([]byte{5, 1, 0}); err != nil {
		return fail(err)
	}
	var greet [2]byte
	if _, err := io.ReadFull(br, greet[:]); err != nil || greet != [2]byte{5, 0} {
		return fail(fmt.Errorf("greeting: % x %v", greet, err))
	}
	// UDP ASSOCIATE from an address not yet known: 0.0.0.0:0.
	if _, err := conn.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return fail(err)
	}
	var head [4]byte
	if _, err := io.ReadFull(br, head[:]); err != nil || head[0] != 5 || head[1] != 0 {
		return fail(fmt.Errorf("associate reply % x %v", head, err))
	}
	var ip netip.Addr
	switch head[3] {
	case 1:
		var a [4]byte
		if _, err := io.ReadFull(br, a[:]); err != nil {
			return fail(err)
		}
		ip = netip.AddrFrom4(a)
	case 4:
		var a [16]byte
		if _, err := io.ReadFull(br, a[:]); err != nil {
			return fail(err)
		}
		ip = netip.AddrFrom16(a)
	default:
		return fail(fmt.Errorf("associate reply address type %d", head[3]))
	}
	var port [2]byte
	if _, err := io.ReadFull(br, port[:]); err != nil {
		return fail(err)
	}
	conn.SetDeadline(time.Time{})
	relay := netip.AddrPortFrom(ip.Unmap(), binary.BigEndian.Uint16(port[:]))
	if relay.Addr().IsUnspecified() {
		relay = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), relay.Port())
	}
	return conn, relay, nil
}

// TestProxyUDPAssociate sends a DNS query for the corporate name to the
// tunnel's DNS server through the SOCKS5 UDP relay and reads the answer.
func TestProxyUDPAssociate(t *testing.T) {
	b := splitBed(t)
	startRecorder(t, b)
	r := startSplit(t, b)

	ctl, relay, err := socksAssociate(b, r.socks)
	if err != nil {
		t.Fatalf("UDP ASSOCIATE: %v", err)
	}
	defer ctl.Close()
	t.Logf("UDP relay at %s", relay)

	var udp net.Conn
	if err := inNetns(b.NSClient, func() error {
		var err error
		udp, err = net.Dial("udp", relay.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer udp.Close()

	// The tunnel's DNS server: .53 in the corporate LAN.
	dnsIP := netip.MustParseAddr(b.CorpIP).As4()
	dnsIP[3] = 53
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(b.CorpName), dns.TypeA)
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	// RSV RSV FRAG ATYP=IPv4 DST.ADDR DST.PORT DATA (RFC 1928 section 7)
	pkt := append([]byte{0, 0, 0, 1}, dnsIP[:]...)
	pkt = append(pkt, 0, 53)
	pkt = append(pkt, wire...)

	buf := make([]byte, 2048)
	var resp *dns.Msg
	for try := 0; try < 5 && resp == nil; try++ {
		if _, err := udp.Write(pkt); err != nil {
			t.Fatal(err)
		}
		udp.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := udp.Read(buf)
		if err != nil {
			t.Logf("try %d: %v", try+1, err)
			continue
		}
		if n < 10 || buf[3] != 1 || !slicesEqual(buf[4:8], dnsIP[:]) ||
			binary.BigEndian.Uint16(buf[8:10]) != 53 {
			t.Fatalf("relay reply header % x: want from %v:53", buf[:min(n, 10)], dnsIP)
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[10:n]); err != nil {
			t.Fatalf("DNS reply through the relay: %v", err)
		}
		resp = m
	}
	if resp == nil {
		t.Fatal("no DNS reply through the UDP relay in 5 tries")
	}
	if got := addrsOf(resp); resp.Id != q.Id || len(got) != 1 || got[0] != b.CorpIP {
		t.Fatalf("reply id %d (want %d), %s %v, want %s", resp.Id, q.Id,
			dns.RcodeToString[resp.Rcode], got, b.CorpIP)
	}
	t.Logf("%s A %s through SOCKS5 UDP to the tunnel's DNS server", b.CorpName, b.CorpIP)
	ctl.Close()
	r.p.stop()
}

func slicesEqual(a, b []byte) bool { return string(a) == string(b) }

// TestProxyCredentials: a proxy beyond loopback without credentials is a
// usage error (status 2) before anything reaches the headend; with
// credentials the right ones pass, wrong or missing ones are refused on
// both proxies, and the password appears in no log line, also with -v.
func TestProxyCredentials(t *testing.T) {
	b := splitBed(t)
	startRecorder(t, b)

	t.Run("exposed-without-credentials", func(t *testing.T) {
		before := sessionIDs(t, b)
		port := strconv.Itoa(b.FreeClientPort(t))
		for _, flags := range [][]string{
			{"--socks", "0.0.0.0:" + port, "--http-proxy", ""},
			{"--socks", "", "--http-proxy", "0.0.0.0:" + port},
		} {
			args := loginArgs(b, append([]string{"--cafile", b.CAFile, "--control", ""},
				flags...)...)
			p := startOcnet(t, b, b.Password+"\n", append(args, b.URL)...)
			if code := p.wait(exitTimeout); code != 2 {
				t.Errorf("%v: exit %d, want 2; stderr:\n%s", flags, code, p.stderr.String())
			}
			msg := p.stderr.String()
			if !strings.Contains(msg, "0.0.0.0:"+port) || !strings.Contains(msg, "--proxy-user") {
				t.Errorf("%v: message does not name the address and --proxy-user:\n%s", flags, msg)
			}
			if strings.Contains(msg, "login complete") {
				t.Errorf("%v: logged in before refusing:\n%s", flags, msg)
			}
			checkClean(t, msg, b.Password)
		}
		if fresh := newSessionsNow(t, b, before); len(fresh) > 0 {
			t.Errorf("the headend has %d new session(s) after refused starts", len(fresh))
		}
	})

	t.Run("with-credentials", func(t *testing.T) {
		const user, pass = "proxyuser", "Pr0xy-pass-e2e-4711"
		dir := nobodyDir(t)
		passFile := filepath.Join(dir, "proxy-pass")
		if err := os.WriteFile(passFile, []byte(pass+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(passFile, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		sp, hp := strconv.Itoa(b.FreeClientPort(t)), strconv.Itoa(b.FreeClientPort(t))
		args := loginArgs(b, "--cafile", b.CAFile, "--control", "", "-v",
			"--socks", "0.0.0.0:"+sp, "--http-proxy", "0.0.0.0:"+hp,
			"--proxy-user", user, "--proxy-pass-file", passFile)
		p := startOcnet(t, b, b.Password+"\n", append(args, b.URL)...)
		p.waitReady()

		// The client's own address shows the proxies listen beyond loopback.
		host := netip.MustParseAddr(b.ClientNetIP).String()
		socks, httpProxy := net.JoinHostPort(host, sp), net.JoinHostPort(host, hp)
		for _, tc := range []struct {
			name, proxy string
			ok          bool
			refusal     string
		}{
			{"socks-right", "socks5h://" + user + ":" + pass + "@" + socks, true, ""},
			{"http-right", "http://" + user + ":" + pass + "@" + httpProxy, true, ""},
			{"socks-wrong", "socks5h://" + user + ":wrong@" + socks, false, "(97)"},
			{"socks-none", "socks5h://" + socks, false, "(97)"},
			{"socks-other-user", "socks5h://mallory:" + pass + "@" + socks, false, "(97)"},
			{"http-wrong", "http://" + user + ":wrong@" + httpProxy, false, "407"},
			{"http-none", "http://" + httpProxy, false, "407"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tok := token("cred")
				out, err := tryCurl(b, "--proxy", tc.proxy, corpURL(b, tok))
				if tc.ok {
					if err != nil || !strings.Contains(out, b.CorpText) {
						t.Fatalf("right credentials: %v %s", err, out)
					}
					sourceOf(t, b, "nginx", tok)
					return
				}
				if err == nil || !strings.Contains(out, tc.refusal) {
					t.Errorf("got %v %q, want a refusal (%s)", err, out, tc.refusal)
				}
				notLogged(t, b, "nginx", tok)
			})
		}
		p.stop()
		checkClean(t, p.stderr.String(), pass, b.Password)
		if strings.Contains(b.LogTail("ocserv", 200), pass) {
			t.Error("the proxy password reached the headend's log")
		}
	})
}

// newSessionsNow returns the headend's sessions not in before, without
// waiting for one to show up.
func newSessionsNow(t *testing.T, b *bed.Bed, before []int) []bed.Session {
	t.Helper()

	ss, err := b.Users(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var fresh []bed.Session
	for _, s := range ss {
		isOld := false
		for _, id := range before {
			isOld = isOld || id == s.ID
		}
		if !isOld {
			fresh = append(fresh, s)
		}
	}
	return fresh
}

// TestProxyLoop: requests aimed at the proxies' own listening addresses
// are refused at once (508 on HTTP, "not allowed" on SOCKS5, a closed
// connection on a -L forward to itself) instead of recursing until file
// descriptors run out; ocnet keeps serving afterwards.
func TestProxyLoop(t *testing.T) {
	b := splitBed(t)
	r := startSplit(t, b)

	// rawCurl runs curl without --fail and returns its exit status, the
	// HTTP status it saw and its stderr.
	rawCurl := func(args ...string) (int, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		argv := append([]string{"-q", "-sS", "--max-time", "10", "-o", "/dev/null",
			"-w", "%{http_code}"}, args...)
		cmd := b.AsNobodyInClient(ctx, "curl", argv...)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		cmd.Run()
		return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
	}

	for _, tc := range []struct {
		name     string
		args     []string
		wantCode string // the HTTP status curl reports
		wantErr  string // in curl's stderr
	}{
		{"http-forward", []string{"--proxy", "http://" + r.http, "http://" + r.http + "/"},
			"508", ""},
		{"http-connect", []string{"-p", "--proxy", "http://" + r.http, "http://" + r.http + "/"},
			"000", "response 508"},
		{"http-connect-to-socks", []string{"-p", "--proxy", "http://" + r.http,
			"http://" + r.socks + "/"}, "000", "response 508"},
		// curl shows the SOCKS5 reply code: 2, not allowed by the ruleset.
		{"socks5", []string{"--socks5", r.socks, "http://" + r.socks + "/"}, "000", "(2)"},
		{"socks5-to-http", []string{"--socks5", r.socks, "http://" + r.http + "/"},
			"000", "(2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, status, stderr := rawCurl(tc.args...)
			took := time.Since(start).Round(time.Millisecond)
			t.Logf("curl exit %d, HTTP %s, %v: %s", code, status, took, strings.TrimSpace(stderr))
			if status != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("HTTP status %s, stderr %q; want %s and %q",
					status, stderr, tc.wantCode, tc.wantErr)
			}
			if tc.wantCode == "000" && code == 0 {
				t.Error("curl succeeded; want the loop refused")
			}
			if took > 5*time.Second {
				t.Errorf("took %v to refuse", took)
			}
		})
	}

	page := curl(t, b, "--proxy", "http://"+r.http, b.CorpURL)
	if !strings.Contains(page, b.CorpText) {
		t.Errorf("after the loops, the corporate page lacks %q:\n%s", b.CorpText, page)
	}
	page = curl(t, b, "--socks5-hostname", r.socks, b.CorpURL)
	if !strings.Contains(page, b.CorpText) {
		t.Errorf("after the loops, the corporate page via SOCKS5 lacks %q", b.CorpText)
	}
}
