package e2e

// Faults against a live tunnel: UDP to the headend dropped, the client's
// link down, ocserv restarted, a link that stays down. They run on bed
// instance 2 (OCNET_BED_ID=2, its own namespaces and ocserv) so the shared
// bed never feels them. Instance 2 runs ocserv with dpd = 10 instead of 30,
// so that fallback (two DPD intervals) takes 20 s rather than a minute.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/internal/bed"
)

const (
	faultBedID = "2"
	faultDPD   = 10 * time.Second

	// faultRate keeps a 200 MiB download running for about 20 s, long
	// enough to break things in its middle.
	faultRate = "10M"
)

// faultBed is the private bed instance of these tests.
func faultBed(t *testing.T) *bed.Bed {
	t.Helper()
	return bed.StartID(t, faultBedID, fmt.Sprintf("OCNET_BED_DPD=%d", int(faultDPD.Seconds())))
}

// tunnel is one ocnet run with its proxy and status socket.
type tunnel struct {
	p       *ocnetProc
	socks   string
	control string
}

// startTunnel logs in as alice (password on stdin unless args say
// otherwise) with a private status socket and waits for the proxy.
func startTunnel(t *testing.T, b *bed.Bed, input string, args ...string) *tunnel {
	t.Helper()

	dir, err := os.MkdirTemp("", "ocnet-res-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The control socket's directory must belong to the user running ocnet.
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o700)

	socks := "127.0.0.1:" + strconv.Itoa(b.FreeClientPort(t))
	tu := &tunnel{socks: socks, control: filepath.Join(dir, "ocnet.sock")}
	if len(args) == 0 {
		args = loginArgs(b)
	}
	args = append(args, "--cafile", b.CAFile, "--socks", socks, "--http-proxy", "",
		"--control", tu.control)
	tu.p = startOcnet(t, b, input, append(args, b.URL)...)
	tu.p.waitReady()
	return tu
}

// status asks the running ocnet for its status over the control socket,
// with `ocnet status --json` as a user would.
func (tu *tunnel) status(t *testing.T, b *bed.Bed) (client.Status, error) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := b.AsNobodyInClient(ctx, bed.BuildOcnet(t), "status", "--json",
		"--control", tu.control).Output()
	var st client.Status
	if err != nil {
		return st, fmt.Errorf("ocnet status: %w", err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("ocnet status --json: %w: %s", err, out)
	}
	return st, nil
}

// waitFor polls the status every 200 ms until ok holds, for at most d,
// and returns how long it took.
func (tu *tunnel) waitFor(t *testing.T, b *bed.Bed, d time.Duration, what string,
	ok func(client.Status) bool) time.Duration {
	t.Helper()

	begin := time.Now()
	var last client.Status
	for time.Since(begin) < d {
		select {
		case <-tu.p.done:
			t.Fatalf("ocnet exited (status %d) while waiting for %s", tu.p.code, what)
		default:
		}
		st, err := tu.status(t, b)
		if err == nil {
			if ok(st) {
				return time.Since(begin)
			}
			last = st
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no %s within %v; last status: channel %s, rx %d bytes, reconnects %d",
		what, d, last.Channel, last.RxBytes, last.Reconnects)
	return 0
}

// bigFetch is a download of big.bin through the SOCKS proxy, at faultRate,
// in the background.
type bigFetch struct {
	done  chan struct{}
	n     int64
	sum   string
	err   error
	conns string // curl's %{num_connects}
	took  time.Duration
}

func startBigFetch(t *testing.T, b *bed.Bed, socks string) *bigFetch {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	// No --retry: the download must survive on its one TCP connection.
	cmd := b.AsNobodyInClient(ctx, "curl", "-q", "-sS", "--fail", "--max-time", "170",
		"--limit-rate", faultRate, "--socks5-hostname", socks,
		"-w", "%{stderr}connects=%{num_connects}\n", "-o", "-", b.BigURL)
	var errOut lockedBuffer
	cmd.Stderr = &errOut
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	f := &bigFetch{done: make(chan struct{})}
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	go func() {
		defer close(f.done)
		defer cancel()
		h := sha256.New()
		f.n, f.err = io.Copy(h, out)
		if err := cmd.Wait(); err != nil && f.err == nil {
			f.err = fmt.Errorf("curl: %w: %s", err, strings.TrimSpace(errOut.String()))
		}
		f.took = time.Since(begin)
		f.sum = hex.EncodeToString(h.Sum(nil))
		_, f.conns, _ = strings.Cut(strings.TrimSpace(errOut.String()), "connects=")
	}()
	t.Cleanup(func() {
		select {
		case <-f.done:
		default:
			syscall.Kill(pid, syscall.SIGKILL)
			<-f.done
		}
	})
	return f
}

// check waits for the download and checks size, digest and that curl used
// one TCP connection.
func (f *bigFetch) check(t *testing.T, b *bed.Bed) {
	t.Helper()

	select {
	case <-f.done:
	case <-time.After(3 * time.Minute):
		t.Fatal("download still running after 3 min")
	}
	if f.err != nil {
		t.Fatalf("download: %d bytes, then %v", f.n, f.err)
	}
	if f.n != b.BigSize || f.sum != b.BigSHA256 {
		t.Fatalf("download: %d bytes with sha256 %s, want %d with %s",
			f.n, f.sum, b.BigSize, b.BigSHA256)
	}
	if f.conns != "1" {
		t.Fatalf("curl made %q TCP connections, want 1", f.conns)
	}
	t.Logf("download: %d MiB, sha256 ok, one TCP connection, %v",
		f.n>>20, f.took.Round(time.Millisecond))
}

// inNS runs a command as root in a namespace and fails t if it fails.
func inNS(t *testing.T, ns string, args ...string) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	argv := append([]string{"netns", "exec", ns}, args...)
	if out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput(); err != nil {
		t.Fatalf("%s in %s: %v: %s", strings.Join(args, " "), ns, err, out)
	}
}

// blockUDP drops UDP to the headend's port inside the headend namespace
// and returns the function that lifts the block (also run at cleanup).
func blockUDP(t *testing.T, b *bed.Bed) (lift func()) {
	t.Helper()

	const table = "ocnet_fault"
	inNS(t, b.NSHead, "nft", "add", "table", "inet", table)
	inNS(t, b.NSHead, "nft", "add", "chain", "inet", table, "in",
		"{ type filter hook input priority 0 ; policy accept ; }")
	inNS(t, b.NSHead, "nft", "add", "rule", "inet", table, "in", "udp", "dport", "443", "drop")
	lifted := false
	lift = func() {
		if !lifted {
			lifted = true
			inNS(t, b.NSHead, "nft", "delete", "table", "inet", table)
		}
	}
	t.Cleanup(lift)
	return lift
}

// linkDown takes the client's link to the headend down and returns the
// function that brings it up again (also run at cleanup).
func linkDown(t *testing.T, b *bed.Bed) (up func()) {
	t.Helper()

	inNS(t, b.NSClient, "ip", "link", "set", "dev", b.ClientDev, "down")
	isUp := false
	up = func() {
		if !isUp {
			isUp = true
			inNS(t, b.NSClient, "ip", "link", "set", "dev", b.ClientDev, "up")
		}
	}
	t.Cleanup(up)
	return up
}

// TestDTLSByDefault: without flags data flows over DTLS, and ocnet and
// ocserv agree on it.
func TestDTLSByDefault(t *testing.T) {
	b := faultBed(t)
	before := sessionIDs(t, b)
	tu := startTunnel(t, b, b.Password+"\n")

	page := curl(t, b, "--socks5-hostname", tu.socks, b.CorpURL)
	if !strings.Contains(page, b.CorpText) {
		t.Fatalf("page lacks %q", b.CorpText)
	}
	took := tu.waitFor(t, b, 15*time.Second, "DTLS channel", func(st client.Status) bool {
		return st.Channel == "DTLS"
	})
	st, err := tu.status(t, b)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.CipherSuite, "PSK") || !strings.Contains(st.CipherSuite, "GCM") {
		t.Errorf("status cipher suite %q, want a PSK AES-GCM suite", st.CipherSuite)
	}
	mine := newSessions(t, b, before)
	if len(mine) != 1 {
		t.Fatalf("headend shows %d new sessions, want 1", len(mine))
	}
	if !strings.Contains(mine[0].DTLS, "DTLS") {
		t.Fatalf("occtl shows DTLS cipher %q for the session, want a DTLS one", mine[0].DTLS)
	}
	t.Logf("DTLS up %v after ready; ocnet: %s %s; ocserv: %s", took.Round(time.Millisecond),
		st.Channel, st.CipherSuite, mine[0].DTLS)

	tu.p.stop()
	checkClean(t, tu.p.stderr.String(), b.Password)
}

// TestUDPBlockedFallsBackAndReturns drops UDP to the headend in the middle
// of a download: data moves to TLS within two DPD intervals, the download
// completes intact, and data returns to DTLS once the block is lifted.
func TestUDPBlockedFallsBackAndReturns(t *testing.T) {
	b := faultBed(t)
	tu := startTunnel(t, b, b.Password+"\n")
	tu.waitFor(t, b, 15*time.Second, "DTLS channel", func(st client.Status) bool {
		return st.Channel == "DTLS"
	})

	f := startBigFetch(t, b, tu.socks)
	tu.waitFor(t, b, 20*time.Second, "40 MB received", func(st client.Status) bool {
		return st.RxBytes > 40e6
	})

	lift := blockUDP(t, b)
	fallback := tu.waitFor(t, b, 3*faultDPD, "fallback to TLS", func(st client.Status) bool {
		return st.Channel == "TLS"
	})
	t.Logf("UDP blocked: data on TLS after %v (DPD %v)", fallback.Round(100*time.Millisecond),
		faultDPD)
	if fallback > 2*faultDPD+2*time.Second {
		t.Errorf("fallback took %v, more than two DPD intervals (%v)", fallback, 2*faultDPD)
	}
	st, _ := tu.status(t, b)
	rx := st.RxBytes
	// The flow itself resumes when the web server's next retransmission
	// arrives, and its timer has been backing off for the whole stall.
	moving := tu.waitFor(t, b, 60*time.Second, "data over TLS", func(st client.Status) bool {
		return st.Channel == "TLS" && st.RxBytes > rx+1e6
	})
	t.Logf("data flowing over TLS %v after the fallback", moving.Round(100*time.Millisecond))

	lift()
	back := tu.waitFor(t, b, 30*time.Second, "return to DTLS", func(st client.Status) bool {
		return st.Channel == "DTLS"
	})
	t.Logf("block lifted: data back on DTLS after %v", back.Round(100*time.Millisecond))

	f.check(t, b)
	st, err := tu.status(t, b)
	if err != nil {
		t.Fatal(err)
	}
	if st.Channel != "DTLS" || st.Reconnects != 0 {
		t.Errorf("after the download: channel %s, %d reconnects; want DTLS, 0",
			st.Channel, st.Reconnects)
	}
	tu.p.stop()
	checkClean(t, tu.p.stderr.String(), b.Password)
}

// TestLinkDownKeepsFlows takes the client's link down for 10 s in the
// middle of a download: it completes intact on its one TCP connection.
func TestLinkDownKeepsFlows(t *testing.T) {
	b := faultBed(t)
	tu := startTunnel(t, b, b.Password+"\n")

	f := startBigFetch(t, b, tu.socks)
	tu.waitFor(t, b, 20*time.Second, "40 MB received", func(st client.Status) bool {
		return st.RxBytes > 40e6
	})

	up := linkDown(t, b)
	time.Sleep(10 * time.Second)
	st, err := tu.status(t, b)
	if err != nil {
		t.Fatal(err)
	}
	up()
	rx := st.RxBytes
	heal := tu.waitFor(t, b, 60*time.Second, "data after the link came back",
		func(st client.Status) bool { return st.RxBytes > rx+1e6 })
	t.Logf("link down 10 s: data flowing again %v after it came back",
		heal.Round(100*time.Millisecond))

	f.check(t, b)
	st, err = tu.status(t, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the download: channel %s, %d reconnects, %d TCP retransmits",
		st.Channel, st.Reconnects, st.Stack.TCPRetransmits)
	tu.p.stop()
	checkClean(t, tu.p.stderr.String(), b.Password)
}

// restartOcserv ends the instance's ocserv by its pid file, waits until it
// is gone and starts it again with testbed/up; it returns how long the
// headend was away.
func restartOcserv(t *testing.T, b *bed.Bed) time.Duration {
	t.Helper()

	raw, err := os.ReadFile(filepath.Join(b.State, "run", "ocserv.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		t.Fatalf("ocserv.pid holds %q", raw)
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if !strings.HasPrefix(string(comm), "ocserv") {
		t.Fatalf("pid %d from ocserv.pid is %q, not ocserv", pid, comm)
	}

	begin := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i := 0; syscall.Kill(pid, 0) == nil; i++ {
		if i == 100 {
			t.Fatalf("ocserv (pid %d) still runs 10 s after SIGTERM", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := b.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	return time.Since(begin)
}

// TestOcservRestart: the restarted headend has forgotten the session. With
// the password given on stdin ocnet logs in again and carries on; with only
// a cookie it exits with status 6 and says why.
func TestOcservRestart(t *testing.T) {
	b := faultBed(t)

	t.Run("passwd-on-stdin re-authenticates", func(t *testing.T) {
		tu := startTunnel(t, b, b.Password+"\n")
		curl(t, b, "--socks5-hostname", tu.socks, b.CorpURL)

		away := restartOcserv(t, b)
		heal := tu.waitFor(t, b, 60*time.Second, "a reconnect", func(st client.Status) bool {
			return st.Reconnects >= 1
		})
		page := curl(t, b, "--socks5-hostname", tu.socks, b.CorpURL)
		if !strings.Contains(page, b.CorpText) {
			t.Fatalf("page after the restart lacks %q", b.CorpText)
		}
		t.Logf("ocserv away %v; ocnet logged in again and reconnected %v after it was back",
			away.Round(time.Millisecond), heal.Round(100*time.Millisecond))
		if !strings.Contains(tu.p.stderr.String(), "logging in again") {
			t.Errorf("stderr does not say that ocnet logged in again")
		}
		tu.p.stop()
		checkClean(t, tu.p.stderr.String(), b.Password)
	})

	t.Run("cookie-on-stdin exits 6", func(t *testing.T) {
		auth := startOcnet(t, b, b.Password+"\n", append(loginArgs(b, "--cafile", b.CAFile,
			"--authenticate"), b.URL)...)
		if code := auth.wait(exitTimeout); code != 0 {
			t.Fatalf("--authenticate: exit status %d", code)
		}
		cookie, err := shellValue(auth.stdout.String(), "COOKIE")
		if err != nil || cookie == "" {
			t.Fatalf("no cookie: %v", err)
		}

		tu := startTunnel(t, b, cookie+"\n", "connect", "--cookie-on-stdin", "--non-inter")
		curl(t, b, "--socks5-hostname", tu.socks, b.CorpURL)

		restartOcserv(t, b)
		begin := time.Now()
		code := tu.p.wait(60 * time.Second)
		stderr := tu.p.stderr.String()
		t.Logf("ocnet exited %d, %v after ocserv was back", code,
			time.Since(begin).Round(100*time.Millisecond))
		if code != 6 {
			t.Fatalf("exit status %d, want 6; stderr:\n%s", code, stderr)
		}
		// Depending on timing ocserv says DISCONNECT as it stops, or
		// the new one refuses the cookie; either way the session is gone.
		if !strings.Contains(stderr, "ocnet: tunnel lost: client: the headend ended the session") {
			t.Errorf("no clear message on stderr:\n%s", stderr)
		}
		checkClean(t, stderr, cookie)
	})
}

// TestReconnectTimeout keeps the link down: with --reconnect-timeout 20s
// ocnet gives up about 20 s after it saw the tunnel go, with status 5.
func TestReconnectTimeout(t *testing.T) {
	b := faultBed(t)
	tu := startTunnel(t, b, b.Password+"\n",
		loginArgs(b, "--reconnect-timeout", "20s")...)
	curl(t, b, "--socks5-hostname", tu.socks, b.CorpURL)

	down := time.Now()
	linkDown(t, b)

	// Losing the tunnel takes up to two DPD intervals; the bound runs
	// from then.
	var lost time.Time
	for deadline := time.Now().Add(3*faultDPD + 10*time.Second); lost.IsZero(); {
		if strings.Contains(tu.p.stderr.String(), "tunnel lost, reconnecting") {
			lost = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ocnet did not notice the lost tunnel; stderr:\n%s", tu.p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	code := tu.p.wait(60 * time.Second)
	gaveUp := time.Since(lost)
	t.Logf("link down: tunnel lost after %v, ocnet gave up %v later (exit %d), %v in all",
		lost.Sub(down).Round(100*time.Millisecond), gaveUp.Round(100*time.Millisecond), code,
		time.Since(down).Round(100*time.Millisecond))
	if code != 5 {
		t.Fatalf("exit status %d, want 5; stderr:\n%s", code, tu.p.stderr.String())
	}
	if gaveUp < 15*time.Second || gaveUp > 40*time.Second {
		t.Errorf("gave up %v after losing the tunnel, want about 20 s", gaveUp)
	}
	if !strings.Contains(tu.p.stderr.String(), "gave up reconnecting") {
		t.Errorf("no clear message on stderr:\n%s", tu.p.stderr.String())
	}
	checkClean(t, tu.p.stderr.String(), b.Password)
}
