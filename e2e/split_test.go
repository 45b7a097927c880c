package e2e

// Split tunnel and split DNS end to end on bed instance 4: its own headend,
// corporate LAN and client namespace, with "the internet" (a web server
// outside the headend's routes) linked to the client. The web servers'
// access logs name the source address of each request, so a test can see
// that a corporate flow arrived from the VPN address and an outside flow
// from the client's own. A recording resolver in Go stands in for the
// host's resolver (the client namespace's resolv.conf names 127.0.0.53)
// and shows which names ever reached it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/ocnet/ocnet/internal/bed"
)

const (
	splitBedID = "4"

	// hostResolver is where the client namespace's resolv.conf points.
	hostResolver = "127.0.0.53:53"

	// logWait bounds the wait for a request's line in an access log.
	logWait = 5 * time.Second
)

func splitBed(t *testing.T) *bed.Bed {
	t.Helper()
	return bed.StartID(t, splitBedID)
}

// splitRun is one ocnet with both proxies and a private control socket.
type splitRun struct {
	p       *ocnetProc
	socks   string
	http    string
	control string
	vpnIP   string // the session's address in the VPN pool
}

// startSplit logs in with extra flags, waits for the proxies and finds the
// new session's VPN address on the headend.
func startSplit(t *testing.T, b *bed.Bed, extra ...string) *splitRun {
	t.Helper()

	dir := nobodyDir(t)
	socks, httpProxy, proxyFlags := proxyArgs(t, b)
	r := &splitRun{socks: socks, http: httpProxy, control: filepath.Join(dir, "ocnet.sock")}
	before := sessionIDs(t, b)

	args := loginArgs(b, "--cafile", b.CAFile, "--control", r.control)
	args = append(append(append(args, proxyFlags...), extra...), b.URL)
	r.p = startOcnet(t, b, b.Password+"\n", args...)
	r.p.waitReady()

	mine := newSessions(t, b, before)
	if len(mine) != 1 {
		t.Fatalf("headend shows %d new sessions, want 1", len(mine))
	}
	r.vpnIP = mine[0].IPv4
	pool := netip.MustParsePrefix(b.VPNPool)
	if ip, err := netip.ParseAddr(r.vpnIP); err != nil || !pool.Contains(ip) {
		t.Fatalf("session address %q is not in the pool %s", r.vpnIP, pool)
	}
	t.Cleanup(func() {
		select {
		case <-r.p.done:
		default:
			syscall.Kill(r.p.pid, syscall.SIGTERM)
			select {
			case <-r.p.done:
			case <-time.After(stopTimeout):
			}
		}
	})
	return r
}

// nobodyDir is a fresh directory that belongs to nobody, for control
// sockets (whose directory must belong to the user running ocnet) and
// files nobody reads.
func nobodyDir(t *testing.T) string {
	t.Helper()

	dir, err := os.MkdirTemp("", "ocnet-split-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o700)
	return dir
}

var tokenSeq atomic.Int64

// token is a query string that marks one request in an access log.
func token(what string) string {
	return fmt.Sprintf("t=%s-%d-%d", what, os.Getpid(), tokenSeq.Add(1))
}

// sourceOf waits for the request marked tok in the access log of web
// server name ("nginx" corporate, "nginx-net" the internet) and returns
// the client address the server saw.
func sourceOf(t *testing.T, b *bed.Bed, name, tok string) string {
	t.Helper()

	src, ok := findSource(b, name, tok, logWait)
	if !ok {
		t.Fatalf("no request with %s in %s within %v", tok, b.AccessLog(name), logWait)
	}
	return src
}

// findSource is sourceOf without failing: false when no line shows up
// within wait.
func findSource(b *bed.Bed, name, tok string, wait time.Duration) (string, bool) {
	deadline := time.Now().Add(wait)
	for {
		data, _ := os.ReadFile(b.AccessLog(name))
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, tok+" ") || strings.Contains(line, tok+"&") {
				src, _, _ := strings.Cut(line, " ")
				return src, true
			}
		}
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tryCurl runs curl as nobody in the client namespace and returns its
// output and error, for requests that are meant to fail.
func tryCurl(b *bed.Bed, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	argv := append([]string{"-q", "-sS", "--fail", "--max-time", "20"}, args...)
	out, err := b.AsNobodyInClient(ctx, "curl", argv...).CombinedOutput()
	return string(out), err
}

// corpURL and netURL are the two sites by name, marked with tok.
func corpURL(b *bed.Bed, tok string) string { return b.CorpURL + "?" + tok }
func netURL(b *bed.Bed, tok string) string  { return "http://" + b.NetName + "/?" + tok }

// inNetns runs fn on an OS thread that has joined network namespace ns:
// sockets fn opens live there. fn runs on a goroutine of its own, so a
// thread whose namespace cannot be restored dies with it.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()

		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()

		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread ends with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// recorder is a DNS server on the client namespace's host resolver
// address that logs every question. It knows one name, the internet's
// web server, and answers NXDOMAIN for all others.
type recorder struct {
	name, ip string // the one name it knows, as an FQDN, and its address

	mu   sync.Mutex
	seen []string // "A www.internet.example."
}

func (rec *recorder) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	rec.mu.Lock()
	rec.seen = append(rec.seen, dns.TypeToString[q.Qtype]+" "+strings.ToLower(q.Name))
	rec.mu.Unlock()

	known := strings.EqualFold(q.Name, rec.name)
	switch {
	case known && q.Qtype == dns.TypeA:
		resp.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
			A:   net.ParseIP(rec.ip).To4(),
		}}
	case known:
		// NOERROR, no records of this type
	default:
		resp.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(resp)
}

// questions returns what the recorder was asked so far.
func (rec *recorder) questions() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.seen...)
}

// startRecorder serves the recorder on UDP and TCP 127.0.0.53:53 in the
// client namespace until the test ends.
func startRecorder(t *testing.T, b *bed.Bed) *recorder {
	t.Helper()

	rec := &recorder{}
	rec.name, rec.ip = dns.Fqdn(b.NetName), b.NetIP

	var pc net.PacketConn
	var ln net.Listener
	err := inNetns(b.NSClient, func() error {
		var err error
		if pc, err = net.ListenPacket("udp", hostResolver); err != nil {
			return err
		}
		if ln, err = net.Listen("tcp", hostResolver); err != nil {
			pc.Close()
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("recording resolver in %s: %v", b.NSClient, err)
	}

	servers := []*dns.Server{{PacketConn: pc, Handler: rec}, {Listener: ln, Handler: rec}}
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.ActivateAndServe()
		}()
	}
	t.Cleanup(func() {
		for _, s := range servers {
			s.Shutdown()
		}
		pc.Close()
		ln.Close()
		wg.Wait()
	})
	return rec
}

// tunnelNameLeaks returns the questions that name the tunnel's domain or
// are short names the proxy should have completed with it.
func tunnelNameLeaks(seen []string) []string {
	var bad []string
	for _, s := range seen {
		_, name, _ := strings.Cut(s, " ")
		name = strings.TrimSuffix(name, ".")
		if name == "corp.example" || strings.HasSuffix(name, ".corp.example") ||
			!strings.Contains(name, ".") {
			bad = append(bad, s)
		}
	}
	return bad
}

// dnsAsk sends one question to server (in the client namespace) over
// network "udp" or "tcp" and returns the reply.
func dnsAsk(b *bed.Bed, network, server, name string, qtype uint16) (*dns.Msg, error) {
	var conn net.Conn
	err := inNetns(b.NSClient, func() error {
		var err error
		conn, err = net.DialTimeout(network, server, 5*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 15 * time.Second}
	resp, _, err := c.ExchangeWithConn(q, &dns.Conn{Conn: conn})
	return resp, err
}

// addrsOf lists the A and AAAA records of a reply.
func addrsOf(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

// TestSplitCorpTunnelOutsideDirect: through each proxy, the corporate name
// reaches the corporate web server from the session's VPN address and the
// outside name reaches the internet's from the client's own address.
func TestSplitCorpTunnelOutsideDirect(t *testing.T) {
	b := splitBed(t)
	rec := startRecorder(t, b)
	r := startSplit(t, b)

	for _, via := range []struct{ name, flag, proxy string }{
		{"socks5", "--socks5-hostname", r.socks},
		{"http-proxy", "--proxy", "http://" + r.http},
	} {
		t.Run(via.name, func(t *testing.T) {
			tok := token("corp-" + via.name)
			if page := curl(t, b, via.flag, via.proxy, corpURL(b, tok)); !strings.Contains(
				page, b.CorpText) {
				t.Fatalf("corporate page lacks %q:\n%s", b.CorpText, page)
			}
			if src := sourceOf(t, b, "nginx", tok); src != r.vpnIP {
				t.Errorf("corporate server saw %s, want the VPN address %s", src, r.vpnIP)
			}

			tok = token("net-" + via.name)
			if page := curl(t, b, via.flag, via.proxy, netURL(b, tok)); !strings.Contains(
				page, b.NetText) {
				t.Fatalf("outside page lacks %q:\n%s", b.NetText, page)
			}
			if src := sourceOf(t, b, "nginx-net", tok); src != b.ClientNetIP {
				t.Errorf("internet server saw %s, want the client's own address %s",
					src, b.ClientNetIP)
			}
		})
	}

	if leaks := tunnelNameLeaks(rec.questions()); len(leaks) > 0 {
		t.Errorf("the host's resolver was asked for tunnel names: %q", leaks)
	}
	r.p.stop()
	checkClean(t, r.p.stderr.String(), b.Password)
}

// leakNames are tunnel names in the forms a user types them: full, with
// odd case and a trailing dot, deep, missing, and short names that only
// the default domain completes.
var leakNames = []string{
	"intranet.corp.example", "www.corp.example", "files.corp.example", "dns.corp.example",
	"Intranet.CORP.example.", "nosuch.corp.example", "a.b.c.corp.example",
	"intranet", "www", "files", "nosuchshort",
}

// TestSplitDNSNoLeak resolves many tunnel names through SOCKS5, the HTTP
// proxy and --dns-listen (A and AAAA, UDP and TCP) and checks that the
// host's resolver never saw one, while it did see the outside name.
func TestSplitDNSNoLeak(t *testing.T) {
	b := splitBed(t)
	rec := startRecorder(t, b)
	dnsAddr := "127.0.0.1:" + strconv.Itoa(b.FreeClientPort(t))
	r := startSplit(t, b, "--dns-listen", dnsAddr)

	ok := 0
	for _, name := range leakNames {
		url := "http://" + name + "/"
		for _, via := range [][]string{
			{"--socks5-hostname", r.socks}, {"--proxy", "http://" + r.http},
		} {
			if out, err := tryCurl(b, append(via, "-o", "/dev/null", url)...); err == nil {
				ok++
			} else {
				t.Logf("curl %s %s: %s", via[0], url, strings.TrimSpace(out))
			}
		}
		for _, network := range []string{"udp", "tcp"} {
			for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
				m, err := dnsAsk(b, network, dnsAddr, name, qt)
				if err != nil {
					t.Errorf("--dns-listen %s %s %s: %v", network, dns.TypeToString[qt], name, err)
					continue
				}
				t.Logf("--dns-listen %s %s %s: %s %v", network, dns.TypeToString[qt], name,
					dns.RcodeToString[m.Rcode], addrsOf(m))
			}
		}
	}
	// Each existing corporate name, by either proxy: 6 full and 6 short.
	if ok < 12 {
		t.Errorf("only %d fetches of corporate names worked, want at least 12", ok)
	}

	// The outside name, to show the recorder is the resolver in use.
	curl(t, b, "--socks5-hostname", r.socks, "-o", "/dev/null", netURL(b, token("leak")))
	m, err := dnsAsk(b, "udp", dnsAddr, b.NetName, dns.TypeA)
	if err != nil || len(addrsOf(m)) == 0 {
		t.Errorf("--dns-listen A %s: %v %v", b.NetName, err, m)
	}

	seen := rec.questions()
	t.Logf("the host's resolver saw %d questions: %q", len(seen), seen)
	if !strings.Contains(strings.Join(seen, "\n"), strings.ToLower(b.NetName)) {
		t.Errorf("the host's resolver never saw %s: it is not the one in use", b.NetName)
	}
	if leaks := tunnelNameLeaks(seen); len(leaks) > 0 {
		t.Errorf("tunnel names reached the host's resolver: %q", leaks)
	}
	r.p.stop()
}

// TestSplitDNSListen asks --dns-listen over UDP and TCP, as any program
// would, for a corporate and an outside name.
func TestSplitDNSListen(t *testing.T) {
	b := splitBed(t)
	startRecorder(t, b)
	dnsAddr := "127.0.0.1:" + strconv.Itoa(b.FreeClientPort(t))
	r := startSplit(t, b, "--dns-listen", dnsAddr)

	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range []struct {
			name  string
			qtype uint16
			rcode int
			want  []string
		}{
			{b.CorpName, dns.TypeA, dns.RcodeSuccess, []string{b.CorpIP}},
			{"intranet", dns.TypeA, dns.RcodeSuccess, []string{b.CorpIP}},
			{b.CorpName, dns.TypeAAAA, dns.RcodeSuccess, nil},
			{"nosuch.corp.example", dns.TypeA, dns.RcodeNameError, nil},
			{b.NetName, dns.TypeA, dns.RcodeSuccess, []string{b.NetIP}},
			{"nosuch.internet.example", dns.TypeA, dns.RcodeNameError, nil},
		} {
			t.Run(network+"/"+dns.TypeToString[tc.qtype]+"/"+tc.name, func(t *testing.T) {
				m, err := dnsAsk(b, network, dnsAddr, tc.name, tc.qtype)
				if err != nil {
					t.Fatal(err)
				}
				got := addrsOf(m)
				if m.Rcode != tc.rcode || strings.Join(got, ",") != strings.Join(tc.want, ",") {
					t.Errorf("got %s %v, want %s %v", dns.RcodeToString[m.Rcode], got,
						dns.RcodeToString[tc.rcode], tc.want)
				}
			})
		}
	}
	r.p.stop()
}

// explainLive runs `ocnet explain --json` against the running client.
func explainLive(t *testing.T, b *bed.Bed, r *splitRun, args ...string) explained {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	argv := append([]string{"explain", "--json", "--control", r.control}, args...)
	out, err := b.AsNobodyInClient(ctx, bed.BuildOcnet(t), argv...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("ocnet explain %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("ocnet explain %s: %v", strings.Join(args, " "), err)
	}
	var e explained
	if err := json.Unmarshal(out, &e); err != nil {
		t.Fatalf("ocnet explain --json: %v: %s", err, out)
	}
	t.Logf("explain %s: %s", strings.Join(args, " "), out)
	return e
}

// explained is the part of `ocnet explain --json` the tests read.
type explained struct {
	Addresses []string `json:"addresses"`
	Decision  string   `json:"decision"`
	Rule      string   `json:"rule"`
	App       *struct {
		Result string `json:"result"`
		Rule   string `json:"rule"`
	} `json:"app"`
}

// TestSplitExplainLive asks the running client why a corporate and an
// outside name go where they go.
func TestSplitExplainLive(t *testing.T) {
	b := splitBed(t)
	startRecorder(t, b)
	r := startSplit(t, b)

	lan := netip.MustParsePrefix(b.CorpIP + "/24").Masked().String()
	e := explainLive(t, b, r, b.CorpName+":80")
	if e.Decision != "tunnel" || e.Rule != "split-include "+lan {
		t.Errorf("%s: %s by %q, want tunnel by split-include %s", b.CorpName, e.Decision,
			e.Rule, lan)
	}
	if len(e.Addresses) == 0 || e.Addresses[0] != b.CorpIP {
		t.Errorf("%s: addresses %v, want %s first", b.CorpName, e.Addresses, b.CorpIP)
	}

	e = explainLive(t, b, r, b.NetName+":80")
	if e.Decision != "direct" {
		t.Errorf("%s: %s by %q, want direct", b.NetName, e.Decision, e.Rule)
	}
	if len(e.Addresses) == 0 || e.Addresses[0] != b.NetIP {
		t.Errorf("%s: addresses %v, want %s", b.NetName, e.Addresses, b.NetIP)
	}
	r.p.stop()
}

// chromium returns Debian's chromium, installing it when it is missing:
// CI machines start without it.
func chromium(t *testing.T) string {
	t.Helper()

	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	apt := []string{"-o", "DPkg::Lock::Timeout=600", "-y", "-q", "--no-install-recommends",
		"install", "chromium"}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd := exec.CommandContext(ctx, "apt-get", apt...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		// A fresh machine may have no package lists yet.
		up := exec.CommandContext(ctx, "apt-get", "-o", "DPkg::Lock::Timeout=600", "-q", "update")
		up.Env = env
		up.Run()
		cmd = exec.CommandContext(ctx, "apt-get", apt...)
		cmd.Env = env
		if out2, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get install chromium: %v\n%s\n%s", err, out, out2)
		}
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium installed but not found: %v", err)
	}
	return p
}

// TestSplitBrowserPAC: headless chromium in the client namespace, told
// only the PAC URL, loads the corporate page through ocnet (the server
// sees the VPN address) and the outside page directly (it sees the
// client's own).
func TestSplitBrowserPAC(t *testing.T) {
	b := splitBed(t)
	bin := chromium(t)
	startRecorder(t, b)
	r := startSplit(t, b)
	pac := "http://" + r.http + "/proxy.pac"

	for _, tc := range []struct {
		name, text, server, want string
	}{
		{"corporate", b.CorpText, "nginx", r.vpnIP},
		{"outside", b.NetText, "nginx-net", b.ClientNetIP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := token("browser-" + tc.name)
			url := corpURL(b, tok)
			if tc.server == "nginx-net" {
				url = netURL(b, tok)
			}
			profile, err := os.MkdirTemp("", "ocnet-chromium-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(profile)

			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := b.InClient(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu",
				"--no-first-run", "--disable-background-networking",
				"--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
				"--user-data-dir="+profile, "--proxy-pac-url="+pac, "--dump-dom", url)
			cmd.Env = append(bed.CleanEnv(), "HOME="+profile)
			var stderr lockedBuffer
			cmd.Stderr = &stderr
			// Chromium's helpers outlive it unless their group is ended.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			begin := time.Now()
			dom, err := cmd.Output()
			if cmd.Process != nil {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
			if err != nil {
				t.Fatalf("chromium: %v\n%s", err, lastLines(stderr.String(), 20))
			}
			t.Logf("chromium loaded %s in %v", url, time.Since(begin).Round(time.Millisecond))
			if !strings.Contains(string(dom), tc.text) {
				t.Fatalf("chromium's page lacks %q:\n%s\nstderr:\n%s", tc.text, dom,
					lastLines(stderr.String(), 20))
			}
			if src := sourceOf(t, b, tc.server, tok); src != tc.want {
				t.Errorf("%s saw %s, want %s", tc.server, src, tc.want)
			}
		})
	}
	r.p.stop()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitUsers polls the headend until ok holds for the number of sessions
// that are not in before, for at most d, and returns them.
func waitUsers(t *testing.T, b *bed.Bed, before []int, d time.Duration,
	ok func(n int) bool) ([]bed.Session, bool) {
	t.Helper()

	deadline := time.Now().Add(d)
	for {
		fresh := newSessionsNow(t, b, before)
		if ok(len(fresh)) {
			return fresh, true
		}
		if time.Now().After(deadline) {
			return fresh, false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSplitOnDemand: with --on-demand the proxies serve at once and the
// headend has no session; a flow to a never-connect name goes direct and
// brings nothing up; the first corporate flow waits for the tunnel and
// arrives from the VPN address; after --idle-timeout without flows the
// session is gone again, and the next corporate flow brings it back.
func TestSplitOnDemand(t *testing.T) {
	const idle = 5 * time.Second
	b := splitBed(t)
	startRecorder(t, b)
	before := sessionIDs(t, b)

	socks, httpProxy, proxyFlags := proxyArgs(t, b)
	args := loginArgs(b, "-v", "--cafile", b.CAFile, "--control", "", "--on-demand",
		"--idle-timeout", idle.String(), "--on-demand-never", b.NetName,
		"--on-demand-always", ".corp.example")
	p := startOcnet(t, b, b.Password+"\n", append(append(args, proxyFlags...), b.URL)...)
	p.waitReady()

	none := func(n int) bool { return n == 0 }
	if fresh, ok := waitUsers(t, b, before, 2*time.Second, func(n int) bool { return n > 0 }); ok {
		t.Fatalf("a session exists before any flow: %+v", fresh)
	}

	tok := token("od-never")
	curl(t, b, "--socks5-hostname", socks, netURL(b, tok))
	if src := sourceOf(t, b, "nginx-net", tok); src != b.ClientNetIP {
		t.Errorf("internet server saw %s, want the client's own %s", src, b.ClientNetIP)
	}
	if fresh, ok := waitUsers(t, b, before, time.Second, none); !ok {
		t.Fatalf("a never-connect name brought the tunnel up: %+v", fresh)
	}

	for round := 1; round <= 2; round++ {
		tok = token("od-corp")
		begin := time.Now()
		via := []string{"--socks5-hostname", socks}
		if round == 2 {
			via = []string{"--proxy", "http://" + httpProxy}
		}
		page := curl(t, b, append(via, corpURL(b, tok))...)
		if !strings.Contains(page, b.CorpText) {
			t.Fatalf("round %d: corporate page lacks %q:\n%s", round, b.CorpText, page)
		}
		t.Logf("round %d: first corporate flow answered %v after it started (tunnel up on demand)",
			round, time.Since(begin).Round(time.Millisecond))
		mine, ok := waitUsers(t, b, before, 5*time.Second, func(n int) bool { return n == 1 })
		if !ok {
			t.Fatalf("round %d: %d new sessions after the corporate flow, want 1", round, len(mine))
		}
		if src := sourceOf(t, b, "nginx", tok); src != mine[0].IPv4 {
			t.Errorf("round %d: corporate server saw %s, want the VPN address %s", round, src,
				mine[0].IPv4)
		}

		gone := time.Now()
		if fresh, ok := waitUsers(t, b, before, idle+10*time.Second, none); !ok {
			t.Fatalf("round %d: session still on the headend %v after the last flow: %+v",
				round, time.Since(gone).Round(time.Second), fresh)
		}
		waited := time.Since(gone)
		t.Logf("round %d: session gone %v after the last flow (idle timeout %v)", round,
			waited.Round(100*time.Millisecond), idle)
		if waited < idle-time.Second {
			t.Errorf("round %d: session gone after %v, before the idle timeout %v", round,
				waited, idle)
		}
	}
	p.stop()
	checkClean(t, p.stderr.String(), b.Password)
}
