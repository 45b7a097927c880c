package main

// Starting, watching and stopping the clients under test, and reading their
// CPU time and memory from /proc.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// scenario is one client configuration.
type scenario struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"` // ocnet, ocproxy or tun
	DTLS  bool   `json:"dtls"`
	socks bool   // reached through a SOCKS5 proxy
}

var allScenarios = []scenario{
	{Name: "ocnet-dtls", Kind: "ocnet", DTLS: true, socks: true},
	{Name: "ocproxy-dtls", Kind: "ocproxy", DTLS: true, socks: true},
	{Name: "tun-dtls", Kind: "tun", DTLS: true},
	{Name: "ocnet-tls", Kind: "ocnet", socks: true},
	{Name: "ocproxy-tls", Kind: "ocproxy", socks: true},
	{Name: "tun-tls", Kind: "tun"},
}

// client is one running client process (openconnect or ocnet) and its log.
type client struct {
	sc      scenario
	ns      string
	cmd     *exec.Cmd
	start   time.Time
	log     *syncBuffer
	done    chan struct{}
	stopSig syscall.Signal
}

// syncBuffer collects a child's output; the child writes while we read.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// nobody runs argv as user nobody in ns, as a user without privileges would
// run a rootless client; ip netns exec and setpriv exec in place, so the
// child's pid is the client's own.
func nobody(ns string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", ns, "setpriv", "--reuid=65534",
		"--regid=65534", "--clear-groups", "--"}, argv...)
}

// authGroup is picked on the login form by every client alike.
const authGroup = "staff"

// startClient starts the scenario's client and returns without waiting.
func startClient(b *bedInfo, sc scenario, ocnetBin, tunScript, profile string) (*client, error) {
	port := strconv.Itoa(socksPort)
	var argv []string
	c := &client{sc: sc, ns: b.nsClient, log: &syncBuffer{}, done: make(chan struct{}),
		stopSig: syscall.SIGINT}

	switch sc.Kind {
	case "ocnet":
		argv = nobody(b.nsClient, ocnetBin, "connect", "--non-inter", "--user", b.user,
			"--authgroup", authGroup, "--passwd-on-stdin", "--servercert", b.pin,
			"--socks", "127.0.0.1:"+port, "--http-proxy", httpOffPort, "--control", "")
		if profile != "" {
			argv = append(argv, "--cpuprofile", profile)
		}
		c.stopSig = syscall.SIGTERM
	case "ocproxy":
		argv = nobody(b.nsClient, "openconnect", "--non-inter", "--user", b.user,
			"--authgroup", authGroup, "--passwd-on-stdin", "--servercert", b.pin,
			"--script-tun", "--script", "ocproxy -D "+port)
	case "tun":
		c.ns = tunNS
		argv = []string{"ip", "netns", "exec", tunNS, "openconnect", "--non-inter",
			"--user", b.user, "--authgroup", authGroup, "--passwd-on-stdin",
			"--servercert", b.pin,
			"--interface", "ocnb0", "--script", tunScript}
	default:
		return nil, fmt.Errorf("bench: unknown client kind %q", sc.Kind)
	}
	if !sc.DTLS {
		argv = append(argv, "--no-dtls")
	}
	url := b.url
	if sc.Kind == "tun" {
		url = "https://" + tunHeadIP + "/"
	}
	argv = append(argv, url)

	c.cmd = exec.Command(argv[0], argv[1:]...)
	c.cmd.Stdin = strings.NewReader(b.pass + "\n")
	c.cmd.Stdout = c.log
	c.cmd.Stderr = c.log
	c.cmd.Env = append(cleanEnv(), "HOME=/tmp")
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.start = time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", sc.Name, err)
	}
	go func() {
		c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// cleanEnv drops proxy settings, which would send the clients' own traffic
// elsewhere.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy", "home":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// exited reports whether the client has ended.
func (c *client) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// waitDTLS waits up to d for the client to log that data moved to DTLS.
func (c *client) waitDTLS(d time.Duration) bool {
	mark := "Established DTLS connection"
	if c.sc.Kind == "ocnet" {
		mark = "channel=DTLS"
	}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if strings.Contains(c.log.String(), mark) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// pids is the client process and all its descendants (ocproxy runs as a
// child of openconnect, sometimes through a shell).
func (c *client) pids() []int {
	if c.exited() {
		return nil
	}
	all := []int{c.cmd.Process.Pid}
	for i := 0; i < len(all); i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", all[i]))
		for _, t := range tasks {
			data, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(data)) {
				if p, err := strconv.Atoi(f); err == nil {
					all = append(all, p)
				}
			}
		}
	}
	return all
}

// cpuSeconds sums utime+stime of pids.
func cpuSeconds(pids []int) float64 {
	var ticks float64
	for _, p := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command; utime and stime are the
		// 14th and 15th fields of the whole line.
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		ticks += u + st
	}
	return ticks / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// memKiB sums a /proc/PID/status field (VmHWM, VmRSS) over pids, in KiB.
func memKiB(pids []int, field string) float64 {
	var sum float64
	for _, p := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, field+":"); ok {
				f := strings.Fields(rest)
				if len(f) > 0 {
					v, _ := strconv.ParseFloat(f[0], 64)
					sum += v
				}
			}
		}
	}
	return sum
}

// stop ends the client the way a user would (SIGINT for openconnect, which
// says BYE to the headend; SIGTERM for ocnet), gives it 5 s and its
// children (ocproxy, which holds the SOCKS port) 2 s more, then kills what
// is left of the tree by pid.
func (c *client) stop() {
	pids := c.pids()
	if len(pids) == 0 {
		return
	}
	syscall.Kill(pids[0], c.stopSig)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(pids[0], syscall.SIGKILL)
		<-c.done
	}

	kids := pids[1:]
	for i := 0; i < 20 && anyAlive(kids); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range kids {
		if alive(p) {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] != 'Z'
}

func anyAlive(pids []int) bool {
	for _, p := range pids {
		if alive(p) {
			return true
		}
	}
	return false
}

// loadCmd re-executes this binary as "bench load" in the client's namespace.
func loadCmd(ctx context.Context, self, ns string, args ...string) *exec.Cmd {
	argv := append([]string{"netns", "exec", ns, self, "load"}, args...)
	return exec.CommandContext(ctx, "ip", argv...)
}
