package e2e

// TUN mode under faults and rules, on bed instance 6: ocserv restarted and
// UDP blocked in the middle of a download through the TUN (the host's own
// TCP flow completes intact), the flow-ending host stack (a flow a rule
// sends direct leaves by the headend's link, not the tunnel), and
// "ocnet tun-cleanup" after SIGKILL.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocnet/ocnet/internal/bed"
)

// tunFetch is a download of the big file through the TUN by an unmodified
// curl, at a limited rate so that a fault lands in its middle.
type tunFetch struct {
	cmd *exec.Cmd
	got chan int64
	sum func() string
}

func startTUNFetch(t *testing.T, b *bed.Bed, rate string) *tunFetch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := b.InClient(ctx, "curl", "-sS", "--noproxy", "*", "--limit-rate", rate, b.BigURL)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	f := &tunFetch{cmd: cmd, got: make(chan int64, 1)}
	f.sum = func() string { return hex.EncodeToString(h.Sum(nil)) }
	go func() {
		n, _ := io.Copy(h, out)
		f.got <- n
	}()
	return f
}

// check waits for the download and fails t unless it is whole.
func (f *tunFetch) check(t *testing.T, b *bed.Bed) {
	t.Helper()
	n := <-f.got
	if err := f.cmd.Wait(); err != nil {
		t.Fatalf("curl through the fault: %v", err)
	}
	if n != b.BigSize || f.sum() != b.BigSHA256 {
		t.Fatalf("download through the fault: %d of %d bytes or digest wrong", n, b.BigSize)
	}
	t.Logf("download through the fault: %d MiB, sha256 ok", n>>20)
}

// tunAddr is the IPv4 address on the TUN device.
func tunAddr(t *testing.T, b *bed.Bed, dev string) string {
	t.Helper()
	out := inClient(t, b, "ip", "-4", "-o", "addr", "show", "dev", dev)
	f := strings.Fields(out)
	for i, w := range f {
		if w == "inet" && i+1 < len(f) {
			return strings.SplitN(f[i+1], "/", 2)[0]
		}
	}
	t.Fatalf("no IPv4 address on %s: %q", dev, out)
	return ""
}

// logLines returns the lines of stderr that contain any of words.
func logLines(stderr string, words ...string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// TestTUNOcservRestart: ocserv restarts during a download through the
// TUN. ocnet logs in again (password on stdin) and reconnects; the
// headend hands back the same address, so the host configuration stays
// (the script runs with reason=reconnect) and curl's own TCP flow
// completes with the right digest.
func TestTUNOcservRestart(t *testing.T) {
	b := tunBed(t)
	p := startTUN(t, b, nil, "--tun", tunDev)
	addr := tunAddr(t, b, tunDev)

	f := startTUNFetch(t, b, "6M")
	time.Sleep(3 * time.Second)
	rc := resolvConf(t, b)
	away := restartOcserv(t, b)
	t.Logf("ocserv away %v", away.Round(time.Millisecond))

	// testbed/up, which started ocserv again, also reset the client
	// namespace's resolv.conf; put back what the script had installed.
	err := os.WriteFile(filepath.Join("/etc/netns", b.NSClient, "resolv.conf"), []byte(rc), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, b)

	if !strings.Contains(p.stderr.String(), "msg=reconnected") {
		t.Errorf("no reconnect logged")
	}
	if got := tunAddr(t, b, tunDev); got != addr {
		t.Logf("the headend assigned %s after the restart (was %s)", got, addr)
	}
	checkConfigured(t, b, tunDev)
	fetchCorp(t, b)
	p.stop()
	for _, l := range logLines(p.stderr.String(), "reconnect", "logging in again", "tun closed") {
		t.Log(l)
	}
	checkClean(t, p.stderr.String(), b.Password)
}

// TestTUNDTLSFallback: UDP to the headend is dropped in the headend's
// namespace during a download through the TUN; ocnet falls back to TLS
// and the download completes intact.
func TestTUNDTLSFallback(t *testing.T) {
	b := tunBed(t)
	p := startTUN(t, b, nil, "--tun", tunDev)
	if !strings.Contains(p.stderr.String(), "channel=DTLS") {
		// DTLS comes up just after "tun ready" at times; give it a moment.
		time.Sleep(2 * time.Second)
	}

	f := startTUNFetch(t, b, "6M")
	time.Sleep(3 * time.Second)
	lift := blockUDP(t, b)
	f.check(t, b)
	lift()

	stderr := p.stderr.String()
	if !strings.Contains(stderr, "channel=TLS") {
		t.Errorf("no fallback to TLS logged")
	}
	fetchCorp(t, b)
	p.stop()
	for _, l := range logLines(p.stderr.String(), "data channel", "tun closed") {
		t.Log(l)
	}
}

// listenIn serves, on addr inside netns ns, a page that says which
// address the client came from.
func listenIn(t *testing.T, ns, addr string) {
	t.Helper()
	target, err := os.Open(filepath.Join("/var/run/netns", ns))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	self, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()

	// A socket stays in the namespace it was made in.
	runtime.LockOSThread()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	ln, lerr := net.Listen("tcp", addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err) // the thread stays locked and dies with the goroutine
	}
	runtime.UnlockOSThread()
	if lerr != nil {
		t.Fatal(lerr)
	}

	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			fmt.Fprint(w, host)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// TestTUNDirectFlow: a flow the policy sends direct although the TUN
// routes it (--exclude inside the headend's routes) is ended by the host
// stack and dialled from the host through the headend's link; a listener
// on the corporate LAN sees it come from the client's link address,
// where without the rule it comes from the VPN pool.
func TestTUNDirectFlow(t *testing.T) {
	b := tunBed(t)

	// The listener is the headend's own LAN address, inside the routes.
	lanHead := b.CorpIP[:strings.LastIndex(b.CorpIP, ".")] + ".1"
	listenIn(t, b.NSHead, net.JoinHostPort(lanHead, "18086"))
	url := "http://" + net.JoinHostPort(lanHead, "18086") + "/"
	from := func() string {
		return inClient(t, b, "curl", "-sS", "-m", "10", "--noproxy", "*", url)
	}

	p := startTUN(t, b, nil, "--tun", tunDev)
	if got := from(); !strings.HasPrefix(got, "198.19.") {
		t.Errorf("without a rule the listener saw %q, want an address of the VPN pool", got)
	}
	p.stop()

	// The host's own path to the LAN, which the TUN's route outranks: a
	// direct flow needs one, as it would on a real network.
	headLink := strings.TrimSuffix(b.URL[strings.Index(b.URL, "//")+2:], "/")
	link := headLink[:strings.LastIndex(headLink, ".")] + ".2"
	inClient(t, b, "ip", "route", "add", lanPrefix(b), "via", headLink, "dev", b.ClientDev,
		"metric", "900")
	t.Cleanup(func() {
		tryInClient(b, 5*time.Second, "ip", "route", "del", lanPrefix(b), "via", headLink,
			"dev", b.ClientDev, "metric", "900")
	})

	p = startTUN(t, b, nil, "--tun", tunDev, "--exclude", lanHead+"/32")
	if r := inClient(t, b, "ip", "route", "get", lanHead); !strings.Contains(r, "dev "+tunDev) {
		t.Fatalf("route to %s: %s, want dev %s", lanHead, r, tunDev)
	}
	if got := from(); got != link {
		t.Errorf("with --exclude the listener saw %q, want the client's link address %s",
			got, link)
	}
	fetchCorp(t, b) // the rest of the LAN still goes through the tunnel
	p.stop()
	closed := logLines(p.stderr.String(), "tun closed")
	if len(closed) == 0 || strings.Contains(closed[0], "host_stack=0 ") {
		t.Errorf("the host stack saw nothing: %q", closed)
	}
	t.Log(closed)
}

// TestTUNCleanup: after SIGKILL, "ocnet tun-cleanup" restores routes and
// resolv.conf without connecting.
func TestTUNCleanup(t *testing.T) {
	b := tunBed(t)
	before := resolvConf(t, b)

	p := startTUN(t, b, nil, "--tun", tunDev)
	syscall.Kill(p.pid, syscall.SIGKILL)
	p.wait(5 * time.Second)
	if resolvConf(t, b) == before {
		t.Fatalf("resolv.conf already restored after SIGKILL; the test shows nothing")
	}

	out := inClient(t, b, bed.BuildOcnet(t), "tun-cleanup")
	if !strings.Contains(out, "restored 1 ") {
		t.Errorf("tun-cleanup said %q, want one session restored", out)
	}
	checkRestored(t, b, before)
	out = inClient(t, b, bed.BuildOcnet(t), "tun-cleanup")
	if !strings.Contains(out, "restored 0 ") {
		t.Errorf("a second tun-cleanup said %q, want nothing restored", out)
	}
}
