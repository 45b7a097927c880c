package e2e

// TUN mode end to end, as root in the client namespace of bed instance 6
// (its own namespaces and ocserv): routes and resolv.conf change there,
// which the shared bed's users must never see. Unmodified programs (curl,
// getent) reach the corporate host by name; the host configuration is
// gone after exit, also after SIGKILL and a restart; no tunnel name leaks
// to the host's resolver; a device opened by the test is handed over with
// --tun-fd; and a download is timed next to openconnect with a kernel TUN.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocnet/ocnet/internal/bed"
)

const (
	tunBedID  = "6"
	tunDev    = "ocnt6"
	tunReady  = `msg="tun ready"`
	tunStateD = "/run/ocnet"
)

func tunBed(t *testing.T) *bed.Bed {
	t.Helper()
	// DPD 10 s, as on the resilience bed: with ocserv's default 30 s the
	// DTLS fallback takes 60 s, as long as nginx's send_timeout, and a
	// download stalled that long may be cut by the server.
	return bed.StartID(t, tunBedID, "OCNET_BED_BIG_MIB=100", "OCNET_BED_DPD=10")
}

// startTUN runs ocnet as root in the client namespace in TUN mode and
// waits for "tun ready". extra comes before the URL; files become fds 3...
func startTUN(t *testing.T, b *bed.Bed, files []*os.File, extra ...string) *ocnetProc {
	t.Helper()

	args := append([]string{"connect", "--non-inter", "--user", b.User, "--authgroup", "eng",
		"--passwd-on-stdin", "--cafile", b.CAFile, "--socks", "", "--http-proxy", "",
		"--control", ""}, extra...)
	args = append(args, b.URL)

	bin := bed.BuildOcnet(t)
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	cmd := b.InClient(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(b.Password + "\n")
	cmd.ExtraFiles = files
	p := launch(t, b, cmd, cancel, args, tunReady, true)

	select {
	case <-p.ready:
		t.Logf("ocnet: tun ready %v after start", p.readyAt.Round(time.Millisecond))
	case <-p.done:
		t.Fatalf("ocnet exited %d before tun ready; stderr:\n%s", p.code, p.stderr.String())
	case <-time.After(readyTimeout):
		t.Fatalf("ocnet: no tun ready within %v; stderr:\n%s", readyTimeout, p.stderr.String())
	}
	return p
}

// inClient runs a command as root in the client namespace and returns its
// output; it fails t on error.
func inClient(t *testing.T, b *bed.Bed, name string, args ...string) string {
	t.Helper()
	out, err := tryInClient(b, 30*time.Second, name, args...)
	if err != nil {
		t.Fatalf("%s %s in %s: %v: %s", name, strings.Join(args, " "), b.NSClient, err, out)
	}
	return out
}

func tryInClient(b *bed.Bed, d time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := b.InClient(ctx, name, args...)
	cmd.Env = append(os.Environ(), "http_proxy=", "https_proxy=", "all_proxy=", "no_proxy=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// resolvConf is the client namespace's resolv.conf as its programs see it.
func resolvConf(t *testing.T, b *bed.Bed) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/etc/netns", b.NSClient, "resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func tunDNS(b *bed.Bed) string {
	// The bed's LAN resolver: .53 in the corporate LAN of this instance.
	return b.CorpIP[:strings.LastIndex(b.CorpIP, ".")] + ".53"
}

func lanPrefix(b *bed.Bed) string {
	return b.CorpIP[:strings.LastIndex(b.CorpIP, ".")] + ".0/24"
}

// checkConfigured fails t unless routes and resolver of the tunnel are in
// place on dev.
func checkConfigured(t *testing.T, b *bed.Bed, dev string) {
	t.Helper()
	routes := inClient(t, b, "ip", "route")
	if !strings.Contains(routes, lanPrefix(b)+" dev "+dev) {
		t.Errorf("no route to %s via %s:\n%s", lanPrefix(b), dev, routes)
	}
	if rc := resolvConf(t, b); !strings.Contains(rc, "nameserver "+tunDNS(b)) {
		t.Errorf("resolv.conf does not name %s:\n%s", tunDNS(b), rc)
	}
}

// checkRestored fails t if anything of the tunnel's configuration is left.
func checkRestored(t *testing.T, b *bed.Bed, before string) {
	t.Helper()
	routes := inClient(t, b, "ip", "route")
	if strings.Contains(routes, lanPrefix(b)) {
		t.Errorf("route to %s left behind:\n%s", lanPrefix(b), routes)
	}
	if rc := resolvConf(t, b); rc != before {
		t.Errorf("resolv.conf not restored:\n%s\nwant:\n%s", rc, before)
	}
	if left, _ := filepath.Glob(filepath.Join(tunStateD, "tun-*")); len(left) > 0 {
		for _, f := range left {
			if ownState(t, b, f) {
				t.Errorf("state file %s left behind", f)
			}
		}
	}
}

// ownState says whether a state file belongs to the client namespace.
func ownState(t *testing.T, b *bed.Bed, f string) bool {
	ns := strings.TrimSpace(inClient(t, b, "readlink", "/proc/self/ns/net"))
	ns = strings.Trim(strings.TrimPrefix(ns, "net:"), "[]")
	return strings.HasPrefix(filepath.Base(f), "tun-"+ns+"-")
}

// fetchCorp fetches the corporate page by name with an unmodified curl.
func fetchCorp(t *testing.T, b *bed.Bed) {
	t.Helper()
	out := inClient(t, b, "curl", "-sS", "-m", "10", "--noproxy", "*", b.CorpURL)
	if !strings.Contains(out, b.CorpText) {
		t.Fatalf("curl %s: %q lacks %q", b.CorpURL, out, b.CorpText)
	}
}

// TestTUNByName: curl and getent reach the corporate host by name through
// the TUN; a host outside the routes goes direct; SIGTERM restores routes
// and resolv.conf.
func TestTUNByName(t *testing.T) {
	b := tunBed(t)
	before := resolvConf(t, b)

	p := startTUN(t, b, nil, "--tun="+tunDev)
	checkConfigured(t, b, tunDev)

	got := inClient(t, b, "getent", "hosts", b.CorpName)
	if !strings.HasPrefix(got, b.CorpIP+" ") {
		t.Errorf("getent hosts %s = %q, want %s", b.CorpName, got, b.CorpIP)
	}
	fetchCorp(t, b)

	// The headend's own address is outside the split routes: it goes out
	// of the client's link, not into the TUN, and is reached from there.
	head := strings.TrimSuffix(strings.TrimPrefix(b.URL, "https://"), "/")
	if r := inClient(t, b, "ip", "route", "get", head); !strings.Contains(r, "dev "+b.ClientDev) {
		t.Errorf("route to %s: %s, want dev %s", head, r, b.ClientDev)
	}
	code := inClient(t, b, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
		"--cacert", b.CAFile, "-m", "10", "--noproxy", "*", b.URL)
	if code == "000" {
		t.Errorf("direct https to %s failed", b.URL)
	}

	p.stop()
	checkRestored(t, b, before)
	checkClean(t, p.stderr.String(), b.Password)
}

// TestTUNKillRestart: after SIGKILL the configuration stays (nobody ran
// the script); the next start restores it first, and a clean exit then
// leaves nothing.
func TestTUNKillRestart(t *testing.T) {
	b := tunBed(t)
	before := resolvConf(t, b)

	p := startTUN(t, b, nil, "--tun="+tunDev)
	syscall.Kill(p.pid, syscall.SIGKILL)
	p.wait(5 * time.Second)
	if rc := resolvConf(t, b); rc == before {
		t.Fatalf("resolv.conf already restored after SIGKILL; the test shows nothing")
	}

	p2 := startTUN(t, b, nil, "--tun="+tunDev)
	if !strings.Contains(p2.stderr.String(), "did not exit cleanly") {
		t.Errorf("the restart did not restore the earlier configuration")
	}
	checkConfigured(t, b, tunDev)
	fetchCorp(t, b)
	p2.stop()
	checkRestored(t, b, before)
}

// TestTUNNoLeak: a recording resolver stands in for the host's own (the
// namespace's resolv.conf names 127.0.0.53). It answers the name outside
// the tunnel, which shows it is asked, and sees no corporate name.
func TestTUNNoLeak(t *testing.T) {
	b := tunBed(t)

	const outside = "outside.example"
	ctx, cancel := context.WithCancel(context.Background())
	rec := b.InClient(ctx, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=127.0.0.53", "--port=53", "--user=root",
		"--pid-file=", "--log-facility=-", "--log-queries",
		"--address=/"+outside+"/198.18.26.99")
	var log lockedBuffer
	rec.Stdout, rec.Stderr = &log, &log
	if err := rec.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(rec.Process.Pid, syscall.SIGTERM)
		rec.Wait()
		cancel()
	})
	for i := 0; !strings.Contains(inClient(t, b, "ss", "-Hlun"), "127.0.0.53:53"); i++ {
		if i == 50 {
			t.Fatalf("recording resolver not listening: %s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	p := startTUN(t, b, nil, "--tun="+tunDev)
	for _, name := range []string{b.CorpName, "files.corp.example", "www", "nosuch.corp.example"} {
		out, _ := tryInClient(b, 15*time.Second, "getent", "ahosts", name)
		t.Logf("getent ahosts %s: %q", name, strings.Fields(out + " ")[0:min(1, len(strings.Fields(out)))])
	}
	out := inClient(t, b, "getent", "hosts", outside)
	if !strings.HasPrefix(out, "198.18.26.99") {
		t.Errorf("getent hosts %s = %q; the host's resolver was not asked", outside, out)
	}
	fetchCorp(t, b)
	p.stop()

	seen := log.String()
	if !strings.Contains(seen, outside) {
		t.Errorf("recording resolver saw no query for %s:\n%s", outside, seen)
	}
	if strings.Contains(strings.ToLower(seen), "corp.example") {
		t.Errorf("a corporate name reached the host's resolver:\n%s", seen)
	}
}

// openTUNIn opens a TUN device named name inside netns ns, as an embedder
// (an Android VpnService, a container runtime) would, and returns it.
func openTUNIn(t *testing.T, ns, name string) *os.File {
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

	// The device is made in the namespace of the thread that asks.
	runtime.LockOSThread()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	fd, openErr := unix.Open("/dev/net/tun", unix.O_RDWR, 0)
	var ifErr error
	if openErr == nil {
		ifr, err := unix.NewIfreq(name)
		if err == nil {
			ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		ifErr = err
	}
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it dies with the goroutine rather
		// than running others in the wrong namespace.
		t.Fatal(err)
	}
	runtime.UnlockOSThread()

	if openErr != nil {
		t.Fatal(openErr)
	}
	if ifErr != nil {
		unix.Close(fd)
		t.Fatalf("TUNSETIFF %s: %v", name, ifErr)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun")
}

// TestTUNFd: the test opens the device itself and hands it over as fd 3.
func TestTUNFd(t *testing.T) {
	b := tunBed(t)
	before := resolvConf(t, b)

	const dev = "ocnfd6"
	f := openTUNIn(t, b.NSClient, dev)
	p := startTUN(t, b, []*os.File{f}, "--tun-fd", "3")
	f.Close() // ocnet holds its own copy
	checkConfigured(t, b, dev)
	fetchCorp(t, b)
	p.stop()
	checkRestored(t, b, before)
}

// tunDownload fetches the big file by name in the client namespace with an
// unmodified curl and checks its digest; it returns the rate in MB/s.
func tunDownload(t *testing.T, b *bed.Bed) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := b.InClient(ctx, "curl", "-sS", "--noproxy", "*", b.BigURL)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, _ := io.Copy(h, out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("curl %s: %v", b.BigURL, err)
	}
	took := time.Since(begin)
	if n != b.BigSize || hex.EncodeToString(h.Sum(nil)) != b.BigSHA256 {
		t.Fatalf("download: %d bytes, digest mismatch or short (want %d)", n, b.BigSize)
	}
	return float64(n) / took.Seconds() / 1e6
}

// startOpenconnect runs the reference client with a kernel TUN and the
// same vpnc-script, and waits until its route is in.
func startOpenconnect(t *testing.T, b *bed.Bed, dev string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	cmd := b.InClient(ctx, "openconnect", "--non-inter", "--user", b.User, "--authgroup", "eng",
		"--passwd-on-stdin", "--cafile", b.CAFile, "--interface", dev,
		"--script", "/usr/share/vpnc-scripts/vpnc-script", b.URL)
	cmd.Stdin = strings.NewReader(b.Password + "\n")
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done); cancel() }()
	t.Cleanup(func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	for i := 0; ; i++ {
		r, _ := tryInClient(b, 5*time.Second, "ip", "route", "get", b.CorpIP)
		if strings.Contains(r, "dev "+dev) && strings.Contains(log.String(), "DTLS") {
			return
		}
		if i == 150 {
			t.Fatalf("openconnect: no route via %s after 15 s:\n%s", dev, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTUNThroughput: the same download through ocnet's TUN and through
// openconnect's kernel TUN, in the same run on the same bed.
func TestTUNThroughput(t *testing.T) {
	b := tunBed(t)
	before := resolvConf(t, b)

	p := startTUN(t, b, nil, "--tun="+tunDev)
	ours := tunDownload(t, b)
	p.stop()
	checkRestored(t, b, before)

	startOpenconnect(t, b, "ococ6")
	ref := tunDownload(t, b)

	ratio := ours / ref
	t.Logf("throughput, %d MiB download by name with curl: ocnet TUN %.1f MB/s, "+
		"openconnect kernel TUN %.1f MB/s, ratio %.2f", b.BigSize>>20, ours, ref, ratio)
	if ratio < 0.5 {
		t.Errorf("ocnet TUN at %.2fx openconnect, below the 0.5x floor", ratio)
	}
}

// TestTUNLinkDown: the client's link goes down for 8 s in the middle of a
// download through the TUN. The device stays, and the host's own TCP
// flow completes intact once the tunnel is back.
func TestTUNLinkDown(t *testing.T) {
	b := tunBed(t)
	p := startTUN(t, b, nil, "--tun="+tunDev)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := b.InClient(ctx, "curl", "-sS", "--noproxy", "*", "--limit-rate", "8M", b.BigURL)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	got := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(h, out)
		got <- n
	}()

	time.Sleep(3 * time.Second)
	inClient(t, b, "ip", "link", "set", "dev", b.ClientDev, "down")
	time.Sleep(8 * time.Second)
	inClient(t, b, "ip", "link", "set", "dev", b.ClientDev, "up")
	if _, err := tryInClient(b, 5*time.Second, "ip", "link", "show", tunDev); err != nil {
		t.Errorf("TUN device gone after the outage: %v", err)
	}

	n := <-got
	if err := cmd.Wait(); err != nil {
		t.Fatalf("curl through the outage: %v", err)
	}
	if n != b.BigSize || hex.EncodeToString(h.Sum(nil)) != b.BigSHA256 {
		t.Fatalf("download through the outage: %d bytes or digest wrong", n)
	}
	fetchCorp(t, b)
	p.stop()
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, "WARN") || strings.Contains(l, "data channel") ||
			strings.Contains(l, "tun closed") {
			t.Log(l)
		}
	}
}
