package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ocnet/ocnet/internal/bed"
)

// loginArgs are the flags of a password login as alice, less the URL.
func loginArgs(b *bed.Bed, extra ...string) []string {
	args := []string{"connect", "--user", b.User, "--passwd-on-stdin", "--non-inter"}
	return append(args, extra...)
}

// TestProxyEndToEnd logs in, fetches the intranet page through both proxies
// by name, downloads big.bin through SOCKS, then stops ocnet with SIGTERM and
// checks that the headend dropped the session.
func TestProxyEndToEnd(t *testing.T) {
	b := bed.Start(t)
	socks, httpProxy, proxyFlags := proxyArgs(t, b)
	before := sessionIDs(t, b)

	args := loginArgs(b, append([]string{"--cafile", b.CAFile}, proxyFlags...)...)
	p := startOcnet(t, b, b.Password+"\n", append(args, b.URL)...)
	p.waitReady()

	mine := newSessions(t, b, before)
	if len(mine) != 1 {
		t.Fatalf("headend shows %d new sessions, want 1", len(mine))
	}
	t.Logf("headend session: id %d, group %q, vpn ip %s, dtls %q",
		mine[0].ID, mine[0].Groupname, mine[0].IPv4, mine[0].DTLS)

	t.Run("socks5", func(t *testing.T) {
		page := curl(t, b, "--socks5-hostname", socks, b.CorpURL)
		if !strings.Contains(page, b.CorpText) {
			t.Fatalf("page through SOCKS5 lacks %q:\n%s", b.CorpText, page)
		}
	})

	t.Run("http-proxy", func(t *testing.T) {
		page := curl(t, b, "--proxy", "http://"+httpProxy, b.CorpURL)
		if !strings.Contains(page, b.CorpText) {
			t.Fatalf("page through the HTTP proxy lacks %q:\n%s", b.CorpText, page)
		}
	})

	t.Run("big-download", func(t *testing.T) {
		download(t, b, socks)
	})

	t.Run("banner", func(t *testing.T) {
		if !strings.Contains(p.stderr.String(), b.Banner) {
			t.Errorf("stderr lacks the banner %q", b.Banner)
		}
	})

	p.stop()
	waitSessionsGone(t, b, mine)
	checkClean(t, p.stderr.String(), b.Password)
}

// download fetches big.bin through the SOCKS proxy, checks its digest and
// logs the throughput.
func download(t *testing.T, b *bed.Bed, socks string) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cmd := b.AsNobodyInClient(ctx, "curl", "-q", "-sS", "--fail", "--max-time", "170",
		"--socks5-hostname", socks, "-o", "-", b.BigURL)
	var errOut lockedBuffer
	cmd.Stderr = &errOut
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}

	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, copyErr := io.Copy(h, out)
	waitErr := cmd.Wait()
	took := time.Since(begin)

	if copyErr != nil || waitErr != nil {
		t.Fatalf("download: read %d bytes: copy %v, curl %v: %s",
			n, copyErr, waitErr, errOut.String())
	}
	if n != b.BigSize {
		t.Fatalf("download: got %d bytes, want %d", n, b.BigSize)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != b.BigSHA256 {
		t.Fatalf("download: sha256 %s, want %s", got, b.BigSHA256)
	}
	t.Logf("download: %d MiB in %v = %.1f MB/s through SOCKS5", n>>20,
		took.Round(time.Millisecond), float64(n)/took.Seconds()/1e6)
}

// TestWrongPassword checks that a rejected password ends ocnet with status 3
// and a readable message, without a crash dump or the password.
func TestWrongPassword(t *testing.T) {
	b := bed.Start(t)
	const wrong = "not-the-password"

	args := loginArgs(b, "--cafile", b.CAFile)
	_, _, proxyFlags := proxyArgs(t, b)
	p := startOcnet(t, b, wrong+"\n", append(append(args, proxyFlags...), b.URL)...)

	if code := p.wait(exitTimeout); code != 3 {
		t.Fatalf("exit status %d, want 3; stderr:\n%s", code, p.stderr.String())
	}
	stderr := p.stderr.String()
	if strings.TrimSpace(stderr) == "" {
		t.Fatal("stderr is empty; want a message saying the login failed")
	}
	low := strings.ToLower(stderr)
	if !strings.Contains(low, "auth") && !strings.Contains(low, "login") &&
		!strings.Contains(low, "password") {
		t.Errorf("stderr does not say that authentication failed:\n%s", stderr)
	}
	checkClean(t, stderr, wrong)
}

// TestServerCert checks that an untrusted headend ends ocnet with status 4
// and a message naming the pin, and that the pin then lets it connect.
func TestServerCert(t *testing.T) {
	b := bed.Start(t)

	t.Run("untrusted", func(t *testing.T) {
		_, _, proxyFlags := proxyArgs(t, b)
		args := append(loginArgs(b, proxyFlags...), b.URL)
		p := startOcnet(t, b, b.Password+"\n", args...)

		if code := p.wait(exitTimeout); code != 4 {
			t.Fatalf("exit status %d, want 4; stderr:\n%s", code, p.stderr.String())
		}
		stderr := p.stderr.String()
		for _, want := range []string{b.Pin, "--servercert pin-sha256:"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		checkClean(t, stderr, b.Password)
	})

	t.Run("pinned", func(t *testing.T) {
		socks, _, proxyFlags := proxyArgs(t, b)
		args := loginArgs(b, append([]string{"--servercert", b.Pin}, proxyFlags...)...)
		p := startOcnet(t, b, b.Password+"\n", append(args, b.URL)...)
		p.waitReady()

		page := curl(t, b, "--socks5-hostname", socks, b.CorpURL)
		if !strings.Contains(page, b.CorpText) {
			t.Errorf("page lacks %q:\n%s", b.CorpText, page)
		}
		p.stop()
	})
}

// TestAuthGroup checks --authgroup: a group alice is in lands her session
// in it, a group the headend does not offer fails with status 3 and a
// message listing the groups it does offer.
func TestAuthGroup(t *testing.T) {
	b := bed.Start(t)

	t.Run("eng", func(t *testing.T) {
		_, _, proxyFlags := proxyArgs(t, b)
		before := sessionIDs(t, b)
		args := loginArgs(b, append([]string{"--cafile", b.CAFile, "--authgroup", "eng"},
			proxyFlags...)...)
		p := startOcnet(t, b, b.Password+"\n", append(args, b.URL)...)
		p.waitReady()

		mine := newSessions(t, b, before)
		if len(mine) != 1 {
			t.Fatalf("headend shows %d new sessions, want 1", len(mine))
		}
		if g := mine[0].Groupname; g != "eng" {
			out, _ := b.Occtl(context.Background(), "show", "users")
			t.Errorf("session group %q, want eng\n%s", g, out)
		}
		p.stop()
		waitSessionsGone(t, b, mine)
	})

	t.Run("nosuch", func(t *testing.T) {
		_, _, proxyFlags := proxyArgs(t, b)
		args := loginArgs(b, append([]string{"--cafile", b.CAFile, "--authgroup", "nosuch"},
			proxyFlags...)...)
		p := startOcnet(t, b, b.Password+"\n", append(args, b.URL)...)

		if code := p.wait(exitTimeout); code != 3 {
			t.Fatalf("exit status %d, want 3; stderr:\n%s", code, p.stderr.String())
		}
		stderr := p.stderr.String()
		low := strings.ToLower(stderr)
		if !strings.Contains(low, "staff") || !strings.Contains(low, "eng") {
			t.Errorf("stderr does not name the groups staff and eng:\n%s", stderr)
		}
		checkClean(t, stderr, b.Password)
	})
}

// TestCookie checks the two-step login: --authenticate prints the cookie and
// the fingerprint and exits, and --cookie-on-stdin connects with that cookie.
func TestCookie(t *testing.T) {
	b := bed.Start(t)

	args := loginArgs(b, "--cafile", b.CAFile, "--authenticate", b.URL)
	auth := startOcnet(t, b, b.Password+"\n", args...)
	if code := auth.wait(exitTimeout); code != 0 {
		t.Fatalf("--authenticate: exit status %d, want 0; stderr:\n%s",
			code, auth.stderr.String())
	}
	out := auth.stdout.String()
	cookie, err := shellValue(out, "COOKIE")
	if err != nil || cookie == "" {
		t.Fatalf("--authenticate: no COOKIE (%v); stdout:\n%s", err, out)
	}
	if fp, err := shellValue(out, "FINGERPRINT"); err != nil || fp != b.Pin {
		t.Errorf("--authenticate: FINGERPRINT %q (%v), want %q", fp, err, b.Pin)
	}
	if _, err := shellValue(out, "HOST"); err != nil {
		t.Errorf("--authenticate: %v", err)
	}
	checkClean(t, auth.stderr.String(), b.Password, cookie)

	socks, _, proxyFlags := proxyArgs(t, b)
	args = append([]string{"connect", "--cookie-on-stdin", "--non-inter",
		"--cafile", b.CAFile}, proxyFlags...)
	p := startOcnet(t, b, cookie+"\n", append(args, b.URL)...)
	p.waitReady()

	page := curl(t, b, "--socks5-hostname", socks, b.CorpURL)
	if !strings.Contains(page, b.CorpText) {
		t.Errorf("page lacks %q:\n%s", b.CorpText, page)
	}
	p.stop()
	checkClean(t, p.stderr.String(), cookie)

	// ocnet logged out on SIGTERM, so the headend no longer knows the
	// cookie: reusing it is an authentication failure, not a network one.
	again := startOcnet(t, b, cookie+"\n", append(args, b.URL)...)
	checkCookieRefused(t, again, cookie)
}

// TestCookieRejected checks that a cookie the headend refuses ends ocnet
// at once with status 3 and a message saying so, without the cookie:
// ocserv 1.1.6 answers one it cannot decode with a bare 503 and a TLS
// access-denied alert, and a well-formed one it never issued with 401.
func TestCookieRejected(t *testing.T) {
	b := bed.Start(t)

	for _, tc := range []struct{ name, cookie string }{
		{"garbage", "garbage-not-a-cookie"},
		// The shape of an ocserv cookie, 32 bytes in base64.
		{"never issued", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, proxyFlags := proxyArgs(t, b)
			args := append([]string{"connect", "--cookie-on-stdin", "--non-inter",
				"--cafile", b.CAFile}, proxyFlags...)
			p := startOcnet(t, b, tc.cookie+"\n", append(args, b.URL)...)
			checkCookieRefused(t, p, tc.cookie)
		})
	}
}

// checkCookieRefused waits for p to exit 3 within 10 s with a message that
// the headend does not accept the cookie, and no trace of the cookie.
func checkCookieRefused(t *testing.T, p *ocnetProc, cookie string) {
	t.Helper()

	if code := p.wait(10 * time.Second); code != 3 {
		t.Fatalf("exit status %d, want 3; stderr:\n%s", code, p.stderr.String())
	}
	t.Logf("ocnet: exited 3 after %v", time.Since(p.started).Round(time.Millisecond))
	stderr := p.stderr.String()
	if !strings.Contains(stderr, "does not accept the session cookie") {
		t.Errorf("stderr does not say the cookie was refused:\n%s", stderr)
	}
	checkClean(t, stderr, cookie)
}

// TestUnreachable checks that a headend nobody listens for ends ocnet with
// status 5, the network-failure status.
func TestUnreachable(t *testing.T) {
	b := bed.Start(t)

	_, _, proxyFlags := proxyArgs(t, b)
	url := strings.TrimSuffix(b.URL, "/") + ":4444/"
	args := loginArgs(b, append([]string{"--cafile", b.CAFile}, proxyFlags...)...)
	p := startOcnet(t, b, b.Password+"\n", append(args, url)...)

	if code := p.wait(exitTimeout); code != 5 {
		t.Fatalf("exit status %d, want 5; stderr:\n%s", code, p.stderr.String())
	}
	checkClean(t, p.stderr.String(), b.Password)
}

// urlSecret is a password put in a server URL, which ocnet must refuse
// without repeating.
const urlSecret = "pw-in-the-url"

// TestUserInURL checks that "alice@" in the server URL logs in as alice
// without --user, and that no log line, even at debug level, shows the
// URL's user info.
func TestUserInURL(t *testing.T) {
	b := bed.Start(t)

	at := strings.Replace(b.URL, "https://", "https://"+b.User+"@", 1)
	args := []string{"connect", "-v", "--passwd-on-stdin", "--non-inter",
		"--cafile", b.CAFile, "--authenticate", at}
	p := startOcnet(t, b, b.Password+"\n", args...)
	if code := p.wait(exitTimeout); code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", code, p.stderr.String())
	}
	if c, err := shellValue(p.stdout.String(), "COOKIE"); err != nil || c == "" {
		t.Fatalf("no COOKIE (%v); stdout:\n%s", err, p.stdout.String())
	}
	if u, _ := shellValue(p.stdout.String(), "CONNECT_URL"); strings.Contains(u, "@") {
		t.Errorf("CONNECT_URL %q keeps the user info", u)
	}
	stderr := p.stderr.String()
	if !strings.Contains(stderr, "level=DEBUG") {
		t.Errorf("no debug lines, so the check below proves little:\n%s", stderr)
	}
	checkClean(t, stderr, b.Password, b.User+"@")
}

// TestUsage checks that bad command lines exit with status 2. It needs the
// binary but not the bed, so it runs without root too. The URL is a closed
// loopback port, so a run that got past the flags would reach nothing.
func TestUsage(t *testing.T) {
	bin := bed.BuildOcnet(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	self := ln.Addr().String() // free once closed, for a -L to itself
	ln.Close()

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"unknown-flag", []string{"connect", "--no-such-flag", "https://127.0.0.1:1/"}},
		{"no-url", []string{"connect", "--non-inter"}},
		{"bad-log-format", []string{"connect", "--log-format", "xml", "https://127.0.0.1:1/"}},
		{"password-in-url", []string{"connect", "--non-inter",
			"https://alice:" + urlSecret + "@127.0.0.1:1/"}},
		{"user-conflict", []string{"connect", "--non-inter", "--user", "bob",
			"https://alice@127.0.0.1:1/"}},
		{"forward-to-itself", []string{"connect", "--non-inter", "--socks", "",
			"--http-proxy", "", "-L", self + ":" + self, "https://127.0.0.1:1/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			cmd := exec.CommandContext(ctx, bin, tc.args...)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Fatalf("exit status %d, want 2; output:\n%s", code, out)
			}
			checkClean(t, string(out), urlSecret)
		})
	}
}
