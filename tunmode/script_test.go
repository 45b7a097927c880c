package tunmode

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ocnet/ocnet/session"
)

func TestScriptEnv(t *testing.T) {
	cfg := &session.Config{
		Address:        netip.MustParsePrefix("198.19.20.50/24"),
		DNS:            []netip.Addr{netip.MustParseAddr("10.9.0.53")},
		DefaultDomains: []string{"corp.example"},
		SplitDNS:       []string{"corp.example", "lab.example"},
		SplitInclude:   []netip.Prefix{netip.MustParsePrefix("198.18.120.0/24")},
		SplitExclude:   []netip.Prefix{netip.MustParsePrefix("198.18.120.128/25")},
		Banner:         "hello",
	}
	env := ScriptEnv(cfg, EnvOptions{
		TunDev: "tun0", Gateway: netip.MustParseAddr("198.18.20.1"), MTU: 1400, PID: 42,
	})
	for _, want := range []string{
		"TUNDEV=tun0", "VPNGATEWAY=198.18.20.1", "VPNPID=42",
		"INTERNAL_IP4_ADDRESS=198.19.20.50", "INTERNAL_IP4_NETMASK=255.255.255.0",
		"INTERNAL_IP4_NETMASKLEN=24", "INTERNAL_IP4_NETADDR=198.19.20.0",
		"INTERNAL_IP4_MTU=1400", "INTERNAL_IP4_DNS=10.9.0.53",
		"CISCO_DEF_DOMAIN=corp.example", "CISCO_SPLIT_DNS=corp.example,lab.example",
		"CISCO_BANNER=hello",
		"CISCO_SPLIT_INC=2",
		"CISCO_SPLIT_INC_0_ADDR=198.18.120.0", "CISCO_SPLIT_INC_0_MASK=255.255.255.0",
		"CISCO_SPLIT_INC_0_MASKLEN=24", "CISCO_SPLIT_INC_0_PROTOCOL=0",
		// the DNS server is outside the includes: a host route is added
		"CISCO_SPLIT_INC_1_ADDR=10.9.0.53", "CISCO_SPLIT_INC_1_MASKLEN=32",
		"CISCO_SPLIT_EXC=1", "CISCO_SPLIT_EXC_0_MASKLEN=25",
	} {
		t.Run(want, func(t *testing.T) {
			if !slices.Contains(env, want) {
				t.Errorf("missing %s in\n%s", want, strings.Join(env, "\n"))
			}
		})
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "reason=") || strings.HasPrefix(kv, "INTERNAL_IP6") {
			t.Errorf("unexpected %s", kv)
		}
	}
}

func TestHostResolvers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("# c\nnameserver 127.0.0.53\nnameserver 10.9.0.53\n"+
		"nameserver fe80::1%eth0\nsearch x\nnameserver bogus\n"), 0o600)
	got := HostResolvers(p, []netip.Addr{netip.MustParseAddr("10.9.0.53")})
	want := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.53:53"), netip.MustParseAddrPort("[fe80::1%eth0]:53"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if HostResolvers(filepath.Join(t.TempDir(), "none"), nil) != nil {
		t.Error("a missing file gave resolvers")
	}
}

// TestScriptReconnect: the same configuration runs reason=reconnect; a new
// one takes the old down and puts the new up, and the state file follows.
func TestScriptReconnect(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	script := filepath.Join(dir, "script")
	body := "#!/bin/sh\necho \"$reason $INTERNAL_IP4_ADDRESS\" >> " + calls + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Script{Path: script, StateDir: filepath.Join(dir, "state")}
	old := []string{"TUNDEV=tun9", "INTERNAL_IP4_ADDRESS=198.19.20.50"}
	renewed := []string{"TUNDEV=tun9", "INTERNAL_IP4_ADDRESS=198.19.20.77"}

	ctx := t.Context()
	if err := s.Connect(ctx, "tun9", old); err != nil {
		t.Fatal(err)
	}
	if err := s.Reconnect(ctx, slices.Clone(old)); err != nil {
		t.Fatal(err)
	}
	if err := s.Reconnect(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	state, err := os.ReadFile(s.state)
	if err != nil || !strings.Contains(string(state), "198.19.20.77") {
		t.Errorf("state file after the new address: %q, %v", state, err)
	}
	if err := s.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}

	got, _ := os.ReadFile(calls)
	want := "connect 198.19.20.50\nreconnect 198.19.20.50\ndisconnect 198.19.20.50\n" +
		"connect 198.19.20.77\ndisconnect 198.19.20.77\n"
	if string(got) != want {
		t.Errorf("script ran:\n%s\nwant:\n%s", got, want)
	}
}
