package main

import (
	"context"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// TestTunName: how the device name and the URL are told apart.
func TestTunName(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		wantDev  string
		wantURL  string
		wantFail bool
	}{
		{"bare", []string{"--tun", "vpn.example.com"}, tunAuto, "vpn.example.com", false},
		{"equals", []string{"--tun=corp0", "vpn.example.com"}, "corp0", "vpn.example.com", false},
		{"next argument", []string{"--tun", "corp0", "https://vpn/"}, "corp0", "https://vpn/",
			false},
		{"interface", []string{"--interface", "corp0", "vpn"}, "corp0", "vpn", false},
		{"short interface", []string{"-i", "corp0", "--tun", "vpn"}, "corp0", "vpn", false},
		{"no tun", []string{"vpn"}, "", "vpn", false},
		{"url first", []string{"--tun", "https://vpn/", "corp0"}, "", "", true},
		{"two urls without tun", []string{"a", "b"}, "", "", true},
		{"named twice", []string{"--tun=a", "b", "c"}, "", "", true},
		{"name too long", []string{"--tun", "a-very-long-device0", "vpn"}, "", "", true},
		{"names disagree", []string{"--tun=a", "--interface", "b", "vpn"}, "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tf tunFlags
			fl := pflag.NewFlagSet("connect", pflag.ContinueOnError)
			tf.register(fl)
			if err := fl.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			u, err := tf.takeName(fl.Args())
			if tc.wantFail {
				if err == nil {
					t.Fatalf("takeName(%q) = %q, %q; want an error", tc.args, tf.name, u)
				}
				return
			}
			if err != nil || u != tc.wantURL || tf.name != tc.wantDev {
				t.Fatalf("takeName(%q) = device %q, URL %q, %v; want %q, %q",
					tc.args, tf.name, u, err, tc.wantDev, tc.wantURL)
			}
		})
	}
}

// TestTunDeviceBeforeLogin: a device that cannot be created (no
// CAP_NET_ADMIN) ends connect --tun with status 1 and the reason before
// the headend is contacted; it used to fail after the login, with 5.
func TestTunDeviceBeforeLogin(t *testing.T) {
	saved := createTUN
	createTUN = func(string, int) (tun.Device, error) {
		return nil, &os.PathError{Op: "open", Path: "/dev/net/tun", Err: unix.EPERM}
	}
	t.Cleanup(func() { createTUN = saved })

	head, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer head.Close()
	var contacted atomic.Int32
	go func() {
		for {
			c, err := head.Accept()
			if err != nil {
				return
			}
			contacted.Add(1)
			c.Close()
		}
	}()
	setStdin(t, "pw\n")

	err = runCmd(context.Background(), "connect", "--tun", "--non-inter",
		"--passwd-on-stdin", "--user", "alice", "--socks", "", "--http-proxy", "",
		"--control", "", "https://"+head.Addr().String()+"/")
	if err == nil {
		t.Fatal("connect --tun went on without a device")
	}
	if code := exitCode(err); code != exitOther {
		t.Errorf("exit status %d, want 1 (%v)", code, err)
	}
	if !strings.Contains(err.Error(), "needs CAP_NET_ADMIN") {
		t.Errorf("message %q does not say what is needed", err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := contacted.Load(); n != 0 {
		t.Errorf("the headend was contacted %d times", n)
	}
}
