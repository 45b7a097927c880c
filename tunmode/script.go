package tunmode

// Host configuration: addresses, routes and resolver are set by a
// vpnc-script (Debian's vpnc-scripts by default) run with the environment
// openconnect gives it, so whatever users already hook into that script
// keeps working. Before "connect" the environment is saved in a state
// file; "disconnect" runs from it and removes it, and a start that finds a
// state file of a process that is gone (SIGKILL, a crash) runs that
// disconnect first, so routes and resolv.conf are restored.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ocnet/ocnet/session"
)

// DefaultScript is where Debian's vpnc-scripts package installs the script.
const DefaultScript = "/usr/share/vpnc-scripts/vpnc-script"

// DefaultStateDir holds the state files of running TUN sessions.
const DefaultStateDir = "/run/ocnet"

// scriptTimeout bounds one run of the script.
const scriptTimeout = 30 * time.Second

// Script runs a vpnc-script for one TUN device.
type Script struct {
	// Path is the script; "" means DefaultScript.
	Path string

	// StateDir holds the state file; "" means DefaultStateDir.
	StateDir string

	Logger *slog.Logger

	env   []string // saved by Connect for Disconnect
	state string   // the state file Connect wrote
}

// stateFile is what a later start needs to undo a connect.
type stateFile struct {
	Script string   `json:"script"`
	PID    int      `json:"pid"`
	Env    []string `json:"env"` // without reason
}

// EnvOptions are the facts the environment is made of besides the
// headend's configuration.
type EnvOptions struct {
	TunDev  string
	Gateway netip.Addr // the headend's address
	MTU     int
	PID     int
}

// ScriptEnv returns the variables openconnect sets for its script,
// without reason. Routes are the headend's split includes; when there are
// some, the tunnel's DNS servers are added as host routes if no include
// covers them, since ocnet installs them as the host's resolvers and
// answers them from the TUN.
func ScriptEnv(cfg *session.Config, o EnvOptions) []string {
	var env []string
	set := func(k, v string) { env = append(env, k+"="+v) }
	setList := func(k string, v []string, sep string) {
		if len(v) > 0 {
			set(k, strings.Join(v, sep))
		}
	}

	set("TUNDEV", o.TunDev)
	set("VPNGATEWAY", o.Gateway.String())
	set("VPNPID", strconv.Itoa(o.PID))
	set("LOG_LEVEL", "1")
	if cfg.IdleTimeout > 0 {
		set("IDLE_TIMEOUT", strconv.Itoa(int(cfg.IdleTimeout.Seconds())))
	}

	if a := cfg.Address; a.IsValid() {
		set("INTERNAL_IP4_ADDRESS", a.Addr().String())
		if b := a.Bits(); b > 0 && b < 32 {
			set("INTERNAL_IP4_NETMASK", maskString(b, 32))
			set("INTERNAL_IP4_NETMASKLEN", strconv.Itoa(b))
			set("INTERNAL_IP4_NETADDR", a.Masked().Addr().String())
		}
	}
	if o.MTU > 0 {
		set("INTERNAL_IP4_MTU", strconv.Itoa(o.MTU))
	}
	if a := cfg.Address6; a.IsValid() {
		set("INTERNAL_IP6_ADDRESS", a.Addr().String())
		set("INTERNAL_IP6_NETMASK", a.String())
	}
	var dns4, dns6, nbns []string
	for _, d := range cfg.DNS {
		if d.Is4() {
			dns4 = append(dns4, d.String())
		} else {
			dns6 = append(dns6, d.String())
		}
	}
	for _, d := range cfg.NBNS {
		nbns = append(nbns, d.String())
	}
	setList("INTERNAL_IP4_DNS", dns4, " ")
	setList("INTERNAL_IP6_DNS", dns6, " ")
	setList("INTERNAL_IP4_NBNS", nbns, " ")
	setList("CISCO_DEF_DOMAIN", cfg.DefaultDomains, " ")
	setList("CISCO_SPLIT_DNS", cfg.SplitDNS, ",")
	if cfg.Banner != "" {
		set("CISCO_BANNER", cfg.Banner)
	}

	inc := cfg.SplitInclude
	if len(inc) > 0 {
		for _, d := range cfg.DNS {
			if !covered(inc, d) {
				inc = append(inc[:len(inc):len(inc)], netip.PrefixFrom(d, d.BitLen()))
			}
		}
	}
	env = appendRoutes(env, "CISCO_SPLIT_INC", "CISCO_IPV6_SPLIT_INC", inc)
	env = appendRoutes(env, "CISCO_SPLIT_EXC", "CISCO_IPV6_SPLIT_EXC", cfg.SplitExclude)
	return env
}

func covered(list []netip.Prefix, a netip.Addr) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// appendRoutes adds the numbered route variables the script loops over.
func appendRoutes(env []string, v4, v6 string, routes []netip.Prefix) []string {
	var n4, n6 int
	for _, p := range routes {
		p = p.Masked()
		if p.Addr().Is4() {
			k := fmt.Sprintf("%s_%d_", v4, n4)
			env = append(env,
				k+"ADDR="+p.Addr().String(),
				k+"MASK="+maskString(p.Bits(), 32),
				k+"MASKLEN="+strconv.Itoa(p.Bits()),
				k+"PROTOCOL=0", k+"SPORT=0", k+"DPORT=0")
			n4++
		} else {
			k := fmt.Sprintf("%s_%d_", v6, n6)
			env = append(env,
				k+"ADDR="+p.Addr().String(),
				k+"MASKLEN="+strconv.Itoa(p.Bits()))
			n6++
		}
	}
	if n4 > 0 {
		env = append(env, v4+"="+strconv.Itoa(n4))
	}
	if n6 > 0 {
		env = append(env, v6+"="+strconv.Itoa(n6))
	}
	return env
}

// maskString is the dotted mask of a prefix length.
func maskString(bits, total int) string {
	m := net.CIDRMask(bits, total)
	return net.IP(m).String()
}

func (s *Script) path() string {
	if s.Path == "" {
		return DefaultScript
	}
	return s.Path
}

func (s *Script) dir() string {
	if s.StateDir == "" {
		return DefaultStateDir
	}
	return s.StateDir
}

func (s *Script) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger.With("sub", "script")
}

// PreInit runs the script with reason=pre-init, before the device exists.
func (s *Script) PreInit(ctx context.Context) error {
	return run(ctx, s.path(), "pre-init", nil, s.logger())
}

// Connect saves env in the state file, then runs reason=connect.
func (s *Script) Connect(ctx context.Context, tundev string, env []string) error {
	dir := s.dir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tunmode: state dir: %w", err)
	}
	path := filepath.Join(dir, statePrefix()+tundev+".json")
	if err := s.writeState(path, env); err != nil {
		return err
	}
	s.env, s.state = env, path

	if err := run(ctx, s.path(), "connect", env, s.logger()); err != nil {
		s.Disconnect(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// writeState records what a later start needs to undo env.
func (s *Script) writeState(path string, env []string) error {
	data, err := json.Marshal(stateFile{Script: s.path(), PID: os.Getpid(), Env: env})
	if err != nil {
		return fmt.Errorf("tunmode: state: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("tunmode: state: %w", err)
	}
	return nil
}

// Reconnect brings the host in line with a reconnected tunnel. When env is
// what Connect installed, the script runs with reason=reconnect, which in
// vpnc-script only runs the user's hooks, as after openconnect's
// reconnects. When the headend assigned something else (an address,
// routes, resolvers), the old configuration is taken down with
// reason=disconnect and env set up with reason=connect; the state file
// follows. It is a no-op without a Connect.
func (s *Script) Reconnect(ctx context.Context, env []string) error {
	if s.state == "" {
		return nil
	}
	if slices.Equal(env, s.env) {
		return run(ctx, s.path(), "reconnect", env, s.logger())
	}

	// The client logs what changed; this says what is done about it.
	s.logger().Debug("reconfiguring the host: disconnect, then connect")
	if err := run(ctx, s.path(), "disconnect", s.env, s.logger()); err != nil {
		s.logger().Warn("old host configuration not fully removed", "err", err)
	}
	if err := s.writeState(s.state, env); err != nil {
		return err
	}
	s.env = env
	return run(ctx, s.path(), "connect", env, s.logger())
}

// Disconnect runs reason=disconnect with the environment of Connect and
// removes the state file. It is a no-op without a Connect.
func (s *Script) Disconnect(ctx context.Context) error {
	if s.state == "" {
		return nil
	}
	err := run(ctx, s.path(), "disconnect", s.env, s.logger())
	os.Remove(s.state)
	s.state, s.env = "", nil
	return err
}

// Recover undoes the host configuration of earlier TUN sessions in this
// network namespace whose process is gone, by running their script with
// reason=disconnect and the environment they connected with. It returns
// how many it restored.
func (s *Script) Recover(ctx context.Context) (int, error) {
	files, _ := filepath.Glob(filepath.Join(s.dir(), statePrefix()+"*.json"))
	n := 0
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var st stateFile
		if err := json.Unmarshal(data, &st); err != nil || st.Script == "" {
			errs = append(errs, fmt.Errorf("tunmode: state file %s is corrupt", f))
			os.Remove(f)
			continue
		}
		if st.PID != os.Getpid() && alive(st.PID) {
			continue // another ocnet still owns it
		}
		s.logger().Warn("restoring the host configuration of an ocnet that did not exit cleanly",
			"pid", st.PID, "state", f)
		if err := run(ctx, st.Script, "disconnect", st.Env, s.logger()); err != nil {
			errs = append(errs, err)
		}
		os.Remove(f)
		n++
	}
	return n, errors.Join(errs...)
}

// alive says whether pid runs an ocnet. A pid reused by another program
// counts as gone.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == "ocnet"
}

// statePrefix names state files after the network namespace, so that
// ocnet in one namespace never undoes the configuration of another.
func statePrefix() string {
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return "tun-"
	}
	ns = strings.Trim(strings.TrimPrefix(ns, "net:"), "[]")
	return "tun-" + ns + "-"
}

// run executes the script once with reason and env on top of ours.
func run(ctx context.Context, path, reason string, env []string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, scriptTimeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, path)
	cmd.Env = append(append(os.Environ(), env...), "reason="+reason)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	log.Debug("script ran", "reason", reason, "output", strings.TrimSpace(out.String()))
	if err != nil {
		return fmt.Errorf("tunmode: %s %s: %w: %s", path, reason, err, lastLines(out.String(), 5))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// HostResolvers reads the nameservers of a resolv.conf, leaving out the
// addresses in skip (the tunnel's, which the script is about to install).
// Read it before the script runs: afterwards it names the tunnel's
// servers.
func HostResolvers(path string, skip []netip.Addr) []netip.AddrPort {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []netip.AddrPort
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || slices.Contains(skip, a) {
			continue
		}
		out = append(out, netip.AddrPortFrom(a, 53))
	}
	return out
}
