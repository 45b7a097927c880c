package main

// What the suite adds to the project's bed for the length of one run: its
// own nginx next to the bed's (same corporate address, another port, enough
// connections for the idle test, a 1 KiB file and the bed's big.bin), and a
// namespace of its own for the kernel-TUN client, linked to the headend by
// a veth pair, so that a TUN device and its routes never appear in the
// client namespace that other tests share. Both are undone by teardown.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// These are the suite's own names and addresses, all in 198.18.0.0/15 and
// chosen apart from the bed's (testbed/lib.sh).
const (
	tunNS       = "ocn-bench"
	tunVethHead = "ocn-bh0"
	tunVethTun  = "ocn-bt0"
	tunHeadIP   = "198.18.250.1"
	tunLocalIP  = "198.18.250.2"
	webPort     = 8081
	smallPath   = "/1k.bin"
	bigPath     = "/big.bin"
	socksPort   = 31080
	httpOffPort = "" // ocnet's HTTP proxy stays off
)

// bedInfo is what testbed/env says about the running bed.
type bedInfo struct {
	root     string
	state    string
	url      string // headend URL from the client namespace
	headIP   string
	ca       string
	pin      string
	user     string
	pass     string
	nsHead   string
	nsClient string
	webIP    string
}

// readBed runs testbed/up (idempotent) and testbed/env and parses the
// latter's NAME=value lines.
func readBed(ctx context.Context, root string) (*bedInfo, error) {
	up := exec.CommandContext(ctx, filepath.Join(root, "testbed", "up"))
	up.Dir = root
	if out, err := up.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bench: testbed/up: %w\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, filepath.Join(root, "testbed", "env")).Output()
	if err != nil {
		return nil, fmt.Errorf("bench: testbed/env: %w", err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		// printf %q quotes values with spaces as 'a b' or $'...'.
		v = strings.TrimPrefix(v, "$")
		v = strings.Trim(v, "'")
		env[k] = strings.ReplaceAll(v, `\ `, " ")
	}
	b := &bedInfo{
		root: root, state: env["OCNET_BED"], url: env["OCNET_BED_URL"],
		ca: env["OCNET_BED_CA"], pin: env["OCNET_BED_PIN"],
		user: env["OCNET_BED_USER"], pass: env["OCNET_BED_PASS"],
		nsHead: env["OCNET_BED_NS_HEAD"], nsClient: env["OCNET_BED_NS_CLIENT"],
	}
	b.headIP = strings.Trim(strings.TrimPrefix(b.url, "https://"), "/")
	ipURL := strings.TrimPrefix(env["OCNET_BED_CORP_IP_URL"], "http://")
	b.webIP = strings.Trim(ipURL, "/")
	for k, v := range map[string]string{
		"state": b.state, "url": b.url, "pin": b.pin, "user": b.user,
		"password": b.pass, "head netns": b.nsHead, "client netns": b.nsClient,
		"web address": b.webIP,
	} {
		if v == "" {
			return nil, fmt.Errorf("bench: testbed/env gave no %s", k)
		}
	}
	return b, nil
}

// web is the base URL of the suite's own nginx.
func (b *bedInfo) web() string { return b.webIP + ":" + strconv.Itoa(webPort) }

// extras are the suite's additions to the bed; teardown removes them.
type extras struct {
	nginxDir string // the nginx's prefix: under $TMPDIR, which user nobody can read
	nginxPid int
	tunNS    bool
}

// run runs a command and returns its combined output in the error.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("bench: %s %s: %w: %s", name, strings.Join(args, " "), err,
			strings.TrimSpace(string(out)))
	}
	return nil
}

// setup starts the suite's nginx and builds the TUN namespace.
func setup(ctx context.Context, b *bedInfo, withTun bool) (*extras, error) {
	x := &extras{}
	if err := x.startNginx(ctx, b); err != nil {
		return x, err
	}
	if withTun {
		if err := x.makeTunNS(ctx, b); err != nil {
			return x, err
		}
	}
	return x, nil
}

func (x *extras) startNginx(ctx context.Context, b *bedInfo) error {
	// Its own web root: a 1 KiB file and a link to the bed's big.bin. A
	// static file, because nginx's "return" body reaches the client in a
	// second segment and measures Nagle against delayed ACKs instead.
	// Not under -out: nginx serves as user nobody, who may not read a
	// result directory inside the checkout.
	nd, err := os.MkdirTemp("", "ocnet-bench-nginx-")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	x.nginxDir = nd
	if err := os.Chmod(nd, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	www := filepath.Join(nd, "www")
	if err := os.MkdirAll(filepath.Join(nd, "tmp"), 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := os.MkdirAll(www, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	small := bytes.Repeat([]byte("ocnet bench 1k.\n"), 1024/16)
	if err := os.WriteFile(filepath.Join(www, smallPath), small, 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	big := filepath.Join(www, bigPath)
	os.Remove(big)
	if err := os.Symlink(filepath.Join(b.state, "www", bigPath), big); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	conf := fmt.Sprintf(`# nginx of the ocnet benchmark suite, written by bench; removed after the run.
daemon off;
worker_processes 1;
worker_rlimit_nofile 19000;
user nobody nogroup;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 16000; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300;
    keepalive_requests 100000;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    default_type application/octet-stream;
    server {
        listen %[2]s;
        root %[3]s;
    }
}
`, nd, b.web(), www)
	cf := filepath.Join(nd, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}

	cmd := exec.Command("ip", "netns", "exec", b.nsHead, "nginx", "-p", nd, "-c", cf, "-e",
		filepath.Join(nd, "error.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench: nginx: %w", err)
	}
	x.nginxPid = cmd.Process.Pid
	go cmd.Wait()

	// Ready when it answers the small file from the headend namespace.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		err := exec.CommandContext(ctx, "ip", "netns", "exec", b.nsHead, "curl", "-sf",
			"-o", "/dev/null", "--max-time", "1", "http://"+b.web()+smallPath).Run()
		if err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(nd, "error.log"))
	return fmt.Errorf("bench: nginx on %s not answering: %s", b.web(), log)
}

// makeTunNS links a fresh namespace to the headend namespace.
func (x *extras) makeTunNS(ctx context.Context, b *bedInfo) error {
	// A namespace left by a killed run is ours by name: start over.
	_ = exec.Command("ip", "netns", "del", tunNS).Run()
	_ = exec.Command("ip", "-n", b.nsHead, "link", "del", tunVethHead).Run()

	steps := [][]string{
		{"netns", "add", tunNS},
		{"-n", tunNS, "link", "set", "lo", "up"},
		{"link", "add", tunVethTun, "netns", tunNS, "type", "veth", "peer", "name",
			tunVethHead, "netns", b.nsHead},
		{"-n", b.nsHead, "addr", "add", tunHeadIP + "/30", "dev", tunVethHead},
		{"-n", b.nsHead, "link", "set", tunVethHead, "up"},
		{"-n", tunNS, "addr", "add", tunLocalIP + "/30", "dev", tunVethTun},
		{"-n", tunNS, "link", "set", tunVethTun, "up"},
	}
	x.tunNS = true
	for _, s := range steps {
		if err := run(ctx, "ip", s...); err != nil {
			return err
		}
	}
	return nil
}

// teardown stops the suite's nginx and removes the TUN namespace.
func (x *extras) teardown() {
	if x.nginxPid > 0 {
		// ip netns exec execs nginx in place: the pid is the master's.
		syscall.Kill(x.nginxPid, syscall.SIGQUIT)
		for i := 0; i < 50 && syscall.Kill(x.nginxPid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if x.tunNS {
		_ = exec.Command("ip", "netns", "del", tunNS).Run()
	}
	if x.nginxDir != "" {
		os.RemoveAll(x.nginxDir)
	}
}
