package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocnet/ocnet/internal/bed"
)

const (
	// readyTimeout bounds the wait for "proxy ready": login plus tunnel.
	readyTimeout = 30 * time.Second

	// exitTimeout bounds runs that must end on their own (failed logins).
	exitTimeout = 30 * time.Second

	// stopTimeout is how long ocnet may take to leave after SIGTERM.
	stopTimeout = 2 * time.Second

	// procTimeout is the hard cap on any one ocnet process.
	procTimeout = 5 * time.Minute

	readyMark = `msg="proxy ready"`
)

func TestMain(m *testing.M) {
	os.Exit(bed.Main(m))
}

// lockedBuffer is a bytes.Buffer safe for one writer and many readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ocnetProc is one ocnet process run as nobody in the client namespace.
// Its stderr is collected in full; ready closes on the "proxy ready" line,
// done closes once the process has exited.
type ocnetProc struct {
	t       *testing.T
	args    []string
	started time.Time
	stdout  lockedBuffer
	stderr  lockedBuffer
	ready   chan struct{}
	readyAt time.Duration
	done    chan struct{}
	pid     int
	code    int
}

// startOcnet runs ocnet with args and input on stdin, and registers a cleanup
// that kills it by pid if it still runs when the test ends.
func startOcnet(t *testing.T, b *bed.Bed, input string, args ...string) *ocnetProc {
	t.Helper()

	bin := bed.BuildOcnet(t)
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	cmd := b.AsNobodyInClient(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(input)

	return launch(t, b, cmd, cancel, args, readyMark, false)
}

// launch starts cmd (an ocnet built for the test), watches its stderr for
// mark, and registers a cleanup that ends it by pid if it still runs:
// SIGKILL, or with gentle SIGTERM first so it can restore the host (TUN
// mode), then SIGKILL after 5 s.
func launch(t *testing.T, b *bed.Bed, cmd *exec.Cmd, cancel context.CancelFunc,
	args []string, mark string, gentle bool) *ocnetProc {
	t.Helper()

	p := &ocnetProc{
		t:     t,
		args:  args,
		ready: make(chan struct{}),
		done:  make(chan struct{}),
	}
	cmd.Stdout = &p.stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}

	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start ocnet: %v", err)
	}
	p.pid = cmd.Process.Pid

	go func() {
		defer close(p.done)
		defer cancel()

		sc := bufio.NewScanner(errPipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		ready := false
		for sc.Scan() {
			line := sc.Text()
			p.stderr.Write([]byte(line + "\n"))
			if !ready && strings.Contains(line, mark) {
				ready = true
				p.readyAt = time.Since(p.started)
				close(p.ready)
			}
		}
		io.Copy(io.Discard, errPipe)

		cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
	}()

	t.Cleanup(func() {
		p.end(gentle)
		if t.Failed() {
			t.Logf("ocnet %s\nstdout:\n%s\nstderr:\n%s\nocserv log, last lines:\n%s",
				strings.Join(p.args, " "), p.stdout.String(), p.stderr.String(),
				b.LogTail("ocserv", 15))
		}
	})
	return p
}

// end ends the process if it still runs, by pid.
func (p *ocnetProc) end(gentle bool) {
	select {
	case <-p.done:
		return
	default:
	}
	if gentle {
		syscall.Kill(p.pid, syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(5 * time.Second):
		}
	}
	syscall.Kill(p.pid, syscall.SIGKILL)
	<-p.done
}

// waitReady waits for the "proxy ready" line and fails t if the process
// exits first or the line does not come in time.
func (p *ocnetProc) waitReady() {
	p.t.Helper()

	select {
	case <-p.ready:
		p.t.Logf("ocnet: proxy ready %v after start", p.readyAt.Round(time.Millisecond))
	case <-p.done:
		p.t.Fatalf("ocnet exited with status %d before %s; stderr:\n%s",
			p.code, readyMark, p.stderr.String())
	case <-time.After(readyTimeout):
		p.t.Fatalf("ocnet: no %s within %v; stderr:\n%s",
			readyMark, readyTimeout, p.stderr.String())
	}
}

// wait waits up to d for the process to exit and returns its status.
func (p *ocnetProc) wait(d time.Duration) int {
	p.t.Helper()

	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		p.t.Fatalf("ocnet still running after %v; stderr:\n%s", d, p.stderr.String())
		return -1
	}
}

// stop sends SIGTERM and checks that ocnet exits 0 within stopTimeout.
func (p *ocnetProc) stop() {
	p.t.Helper()

	begin := time.Now()
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM ocnet: %v", err)
	}
	code := p.wait(stopTimeout)
	p.t.Logf("ocnet: exited %d, %v after SIGTERM", code, time.Since(begin).Round(time.Millisecond))
	if code != 0 {
		p.t.Fatalf("ocnet exited %d after SIGTERM, want 0; stderr:\n%s",
			code, p.stderr.String())
	}
}

// checkClean fails t if stderr shows a Go crash or leaks a secret.
func checkClean(t *testing.T, stderr string, secrets ...string) {
	t.Helper()

	for _, bad := range []string{"goroutine ", "panic"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("stderr contains %q:\n%s", bad, stderr)
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(stderr, s) {
			t.Errorf("stderr leaks a secret (%d chars)", len(s))
		}
	}
}

// proxyArgs returns fresh SOCKS and HTTP listen addresses in the client
// namespace and the flags that set them.
func proxyArgs(t *testing.T, b *bed.Bed) (socks, http string, flags []string) {
	t.Helper()

	socks = "127.0.0.1:" + strconv.Itoa(b.FreeClientPort(t))
	http = "127.0.0.1:" + strconv.Itoa(b.FreeClientPort(t))
	return socks, http, []string{"--socks", socks, "--http-proxy", http}
}

// curl runs curl as nobody in the client namespace and returns its output.
func curl(t *testing.T, b *bed.Bed, args ...string) string {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	argv := append([]string{"-q", "-sS", "--fail", "--max-time", "20"}, args...)
	out, err := b.AsNobodyInClient(ctx, "curl", argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sessionIDs returns the IDs of the headend's current sessions.
func sessionIDs(t *testing.T, b *bed.Bed) []int {
	t.Helper()

	ss, err := b.Users(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, 0, len(ss))
	for _, s := range ss {
		ids = append(ids, s.ID)
	}
	return ids
}

// newSessions waits up to 5 s for sessions that are not in before and
// returns them.
func newSessions(t *testing.T, b *bed.Bed, before []int) []bed.Session {
	t.Helper()

	deadline := time.Now().Add(5 * time.Second)
	for {
		ss, err := b.Users(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var fresh []bed.Session
		for _, s := range ss {
			if !slices.Contains(before, s.ID) {
				fresh = append(fresh, s)
			}
		}
		if len(fresh) > 0 || time.Now().After(deadline) {
			return fresh
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSessionsGone waits up to 5 s until none of sessions is listed.
func waitSessionsGone(t *testing.T, b *bed.Bed, sessions []bed.Session) {
	t.Helper()

	deadline := time.Now().Add(5 * time.Second)
	for {
		left := 0
		now := sessionIDs(t, b)
		for _, s := range sessions {
			if slices.Contains(now, s.ID) {
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			out, _ := b.Occtl(context.Background(), "show", "users")
			t.Fatalf("%d session(s) still on the headend 5 s after exit:\n%s", left, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shellValue reads NAME='value' from openconnect-style --authenticate
// output, undoing shell single quoting.
func shellValue(out, name string) (string, error) {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), name+"=")
		if !ok {
			continue
		}
		if len(rest) < 2 || rest[0] != '\'' || rest[len(rest)-1] != '\'' {
			return rest, nil
		}
		return strings.ReplaceAll(rest[1:len(rest)-1], `'\''`, `'`), nil
	}
	return "", fmt.Errorf("no %s= line in output", name)
}
