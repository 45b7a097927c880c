package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/session"
	"github.com/ocnet/ocnet/tunmode"
)

// tunAuto is --tun without a name: the kernel picks one (tun0, tun1 ...).
const tunAuto = "tun%d"

// tunFlags are TUN mode's flags: --tun [NAME], --interface NAME, --tun-fd N,
// --script PATH.
type tunFlags struct {
	name   string
	ifname string // --interface, openconnect's spelling
	fd     int
	script string

	engine *tunmode.Engine

	// dev is the device opened before the login (openDevice), until
	// start hands it to the engine; devName is its name once started.
	dev     tun.Device
	devName string

	// reconnected follows the host configuration after a reconnect; made
	// by onReconnect, filled once the script has connected. A pointer,
	// because the flags are passed by value.
	reconnected *atomic.Pointer[func(*session.Config)]
}

func (t *tunFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&t.name, "tun", "",
		"TUN mode: open a TUN device (--tun NAME URL or --tun=NAME names it) and configure "+
			"the host with --script")
	fl.Lookup("tun").NoOptDefVal = tunAuto
	fl.StringVarP(&t.ifname, "interface", "i", "",
		"TUN mode on a device of this name (openconnect's spelling of --tun=NAME)")
	fl.IntVar(&t.fd, "tun-fd", -1, "TUN mode on a TUN device already open as file descriptor N")
	fl.StringVar(&t.script, "script", tunmode.DefaultScript,
		`vpnc-script that configures addresses, routes and resolver in TUN mode ("" = none)`)
}

func (t *tunFlags) enabled() bool { return t.name != "" || t.ifname != "" || t.fd >= 0 }

// takeName reads the connect command's arguments: the URL, preceded by
// the device's name when --tun came without a value. pflag cannot give an
// optional value from the next argument (it would swallow the URL of
// "--tun URL"), so "--tun NAME URL" arrives as two arguments and the first
// is taken as the name here. It returns the URL.
func (t *tunFlags) takeName(args []string) (string, error) {
	if t.ifname != "" {
		if t.name != "" && t.name != tunAuto && t.name != t.ifname {
			return "", usageError{fmt.Errorf("--tun=%s and --interface %s disagree",
				t.name, t.ifname)}
		}
		t.name = t.ifname
	}
	switch {
	case len(args) == 1:
		return args[0], nil
	case len(args) != 2:
		return "", usageError{fmt.Errorf("want one URL, got %d arguments", len(args))}
	case t.name != tunAuto:
		return "", usageError{fmt.Errorf("want one URL, got two (%q %q); "+
			"a device name follows a bare --tun",
			session.RedactURL(args[0]), session.RedactURL(args[1]))}
	}
	if err := checkIfName(args[0]); err != nil {
		return "", usageError{fmt.Errorf("--tun %s %s: %w (use --tun NAME URL, "+
			"flags before the URL)",
			session.RedactURL(args[0]), session.RedactURL(args[1]), err)}
	}
	t.name = args[0]
	return args[1], nil
}

// checkIfName applies the kernel's rules for an interface name (at most
// 15 bytes, no slash, colon or white space) and refuses what is plainly a
// URL, which means the arguments came in the other order.
func checkIfName(name string) error {
	shown := session.RedactURL(name) // it may be a URL with a password
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%q is not a device name", name)
	case len(name) > 15:
		return fmt.Errorf("device name %q is longer than 15 bytes", shown)
	case strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("%q is not a device name (a URL?)", shown)
	}
	return nil
}

// divert is the client's Divert hook in TUN mode, nil otherwise.
func (t *tunFlags) divert() func([]byte) bool {
	if !t.enabled() {
		return nil
	}
	if t.engine == nil {
		t.engine = tunmode.New(nil)
	}
	return t.engine.Divert
}

// onReconnect is the client's OnReconnect hook in TUN mode, nil otherwise.
func (t *tunFlags) onReconnect() func(*session.Config) {
	if !t.enabled() {
		return nil
	}
	hook := new(atomic.Pointer[func(*session.Config)])
	t.reconnected = hook
	return func(cfg *session.Config) {
		if f := hook.Load(); f != nil {
			(*f)(cfg)
		}
	}
}

// portRange keeps the VPN stack's ports apart from the host's in TUN mode.
func (t *tunFlags) portRange() [2]uint16 {
	if !t.enabled() {
		return [2]uint16{}
	}
	return tunmode.PortRange
}

// start opens the device, configures the host and runs the engine. stop
// undoes the host configuration and closes the device.
func (t *tunFlags) start(ctx context.Context, c *client.Client, u *url.URL,
	log *slog.Logger) (stop func(), err error) {
	if !t.enabled() {
		return func() {}, nil
	}
	if t.dev == nil {
		if err := t.openDevice(); err != nil {
			return nil, err
		}
	}
	t.divert() // makes the engine if the client was started without it

	var script *tunmode.Script
	if t.script != "" {
		script = &tunmode.Script{Path: t.script, Logger: log}
		if n, err := script.Recover(ctx); err != nil {
			log.Warn("restoring an earlier host configuration", "err", err, "restored", n)
		}
		if err := script.PreInit(ctx); err != nil {
			return nil, err
		}
	}

	cfg := c.Config()
	hostDNS := tunmode.HostResolvers("/etc/resolv.conf", cfg.DNS)
	gw, err := gatewayAddr(ctx, u)
	if err != nil {
		return nil, err
	}

	// Flows a rule sends direct leave through the headend's link, never
	// back into the TUN; without it they are refused.
	opts := tunmode.Options{HostDNS: hostDNS, Direct: refuseDirect{}}
	if d, underlay, err := tunmode.BoundDialer(gw); err != nil {
		log.Warn("flows sent direct from the TUN will fail", "err", err)
	} else {
		opts.Direct = d
		log.Debug("direct flows from the TUN leave through", "device", underlay)
	}

	dev := t.dev
	name, err := dev.Name()
	if err != nil {
		return nil, fmt.Errorf("tun: device name: %w", err)
	}
	if err := tunmode.SetDeviceMTU(dev, c.MTU()); err != nil {
		log.Warn("TUN device MTU", "device", name, "mtu", c.MTU(), "err", err)
	}
	t.dev, t.devName = nil, name // Run closes it from here on

	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := t.engine.Run(rctx, dev, c, opts)
		if err != nil {
			log.Error("tun stopped", "err", err)
		}
	}()

	if script != nil {
		env := tunmode.ScriptEnv(cfg, tunmode.EnvOptions{
			TunDev: name, Gateway: gw, MTU: c.MTU(), PID: os.Getpid(),
		})
		if err := script.Connect(ctx, name, env); err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
	}
	if t.reconnected != nil {
		// The client has taken the new policy and DNS servers over; the
		// engine follows with its resolver addresses and MTU, then the
		// script with the host's routes and resolver.
		reconf := func(cfg *session.Config) {
			if err := t.engine.Reconfigure(cfg); err != nil {
				log.Warn("TUN after the reconnect", "err", err)
			}
			if script == nil {
				return
			}
			env := tunmode.ScriptEnv(cfg, tunmode.EnvOptions{
				TunDev: name, Gateway: gw, MTU: c.MTU(), PID: os.Getpid(),
			})
			if err := script.Reconnect(rctx, env); err != nil {
				log.Warn("host configuration after the reconnect", "err", err)
			}
		}
		t.reconnected.Store(&reconf)
	}
	log.Info("tun ready", "device", name, "script", t.script, "host_dns", hostDNS)

	return func() {
		if t.reconnected != nil {
			t.reconnected.Store(nil)
		}
		if script != nil {
			if err := script.Disconnect(context.Background()); err != nil {
				log.Warn("host configuration not fully restored", "err", err)
			}
		}
		cancel()
		wg.Wait()
		st := t.engine.Stats()
		log.Info("tun closed", "fast_path", st.FastPath, "host_stack", st.HostStack,
			"diverted", st.Diverted, "dropped", st.Dropped)
	}, nil
}

// openDevice creates the device or adopts the one at --tun-fd, before
// the login, so that a user without CAP_NET_ADMIN learns it without
// costing the headend a login and a session. Its MTU is provisional until
// start knows the tunnel's. Errors are status 1: the errno beneath would
// otherwise read as a network failure (5).
func (t *tunFlags) openDevice() error {
	if !t.enabled() {
		return nil
	}
	if t.name != "" && t.fd >= 0 {
		return usageError{errors.New("--tun (or --interface) and --tun-fd exclude each other")}
	}
	if t.fd >= 0 {
		// Non-blocking, so that the runtime poller owns it and closing
		// the device ends a pending read.
		if err := unix.SetNonblock(t.fd, true); err != nil {
			return usageError{fmt.Errorf("--tun-fd %d: %w", t.fd, err)}
		}
		f := os.NewFile(uintptr(t.fd), "tun-fd")
		if f == nil {
			return usageError{fmt.Errorf("--tun-fd %d: not an open file", t.fd)}
		}
		dev, err := createTUNFromFile(f, provisionalMTU)
		if err != nil {
			return fmt.Errorf("tun: --tun-fd %d: %v", t.fd, err)
		}
		t.dev = dev
		return nil
	}
	dev, err := createTUN(t.name, provisionalMTU)
	if err != nil {
		return fmt.Errorf("tun: create %q (needs CAP_NET_ADMIN): %v", t.name, err)
	}
	t.dev = dev
	return nil
}

// closeDevice closes the device if start never took it.
func (t *tunFlags) closeDevice() {
	if t.dev != nil {
		t.dev.Close()
		t.dev = nil
	}
}

// Device constructors, variables for tests.
var (
	createTUN         = tun.CreateTUN
	createTUNFromFile = tun.CreateTUNFromFile
)

// provisionalMTU is the device's MTU from its creation before the login
// until the tunnel's own is known.
const provisionalMTU = 1500

// tunStatus is TUN mode's part of `ocnet status`: the device and the
// engine's packet counters. TUN traffic is counted in packets, by path,
// since the host's own flows through the device never reach the proxies'
// flow counters.
type tunStatus struct {
	Device    string `json:"device"`
	FastPath  uint64 `json:"fast_path_packets"`  // host -> tunnel, no stack
	HostStack uint64 `json:"host_stack_packets"` // host -> ocnet's host-facing stack
	Diverted  uint64 `json:"to_device_packets"`  // tunnel -> host
	Dropped   uint64 `json:"dropped_packets"`
}

// status reports the running device, or nil outside TUN mode.
func (t *tunFlags) status() *tunStatus {
	if t.devName == "" || t.engine == nil {
		return nil
	}
	st := t.engine.Stats()
	return &tunStatus{Device: t.devName, FastPath: st.FastPath, HostStack: st.HostStack,
		Diverted: st.Diverted, Dropped: st.Dropped}
}

// gatewayAddr is the headend's address, for the script's host route.
func gatewayAddr(ctx context.Context, u *url.URL) (netip.Addr, error) {
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		return a, nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("tun: headend address of %s: %w", u.Hostname(), err)
	}
	return addrs[0].Unmap(), nil
}

// refuseDirect fails direct flows when no dialer could be bound to the
// underlay: dialled from the host's routes they would loop into the TUN.
type refuseDirect struct{}

func (refuseDirect) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("tun: no device to send direct flows through")
}

// newTunCleanupCmd undoes what a TUN session killed with SIGKILL left on
// the host, without connecting: the next "connect --tun" does the same
// before it starts, but a host that stays off the VPN needs it alone.
func newTunCleanupCmd() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "tun-cleanup",
		Short: "Restore routes and resolver left by a TUN session that did not exit cleanly",
		Long: "Runs the vpnc-script of every TUN session in this network namespace whose ocnet " +
			"is gone with reason=disconnect and the environment it connected with, then " +
			"removes its state file from " + tunmode.DefaultStateDir + ". Sessions of a " +
			"running ocnet are left alone.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(verbose, "text")
			if err != nil {
				return err
			}
			s := &tunmode.Script{Logger: log}
			n, err := s.Recover(cmd.Context())
			fmt.Printf("restored %d TUN session(s)\n", n)
			return err
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logging")
	return cmd
}
