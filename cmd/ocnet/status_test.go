package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ocnet/ocnet/client"
)

// TestPrintStatus: an on-demand tunnel that is down says so, with its
// idle timeout and proxies, instead of blank fields; a TUN session names
// its device and counts its packets apart from the proxies' flows. Each
// reply survives the control socket's JSON.
func TestPrintStatus(t *testing.T) {
	for _, tc := range []struct {
		name    string
		st      statusReply
		want    []string
		notWant []string
	}{
		{"on demand, down", statusReply{State: "down (on demand)", OnDemand: true,
			IdleTimeout: 5 * time.Minute, SOCKS: "127.0.0.1:1080"},
			[]string{"state:", "down (on demand)", "idle timeout:", "5m0s",
				"SOCKS5 proxy:", "127.0.0.1:1080", "first flow"},
			[]string{"MTU", "addresses", "channel"}},
		{"tun", statusReply{State: "up", TUN: &tunStatus{Device: "tun7", FastPath: 1234},
			Status: &client.Status{Server: "vpn.example.com", MTU: 1400}},
			[]string{"TUN device:", "tun7", "1234 host->tunnel", "proxy flows:", "MTU:", "1400"},
			nil},
		{"older client", statusReply{Status: &client.Status{Server: "vpn.example.com"}},
			[]string{"state:", "up", "vpn.example.com"}, []string{"TUN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js, err := json.Marshal(tc.st)
			if err != nil {
				t.Fatal(err)
			}
			var st statusReply
			if err := json.Unmarshal(js, &st); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			printStatus(&out, st)
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("no %q in\n%s", w, &out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("%q in\n%s", w, &out)
				}
			}
		})
	}
}
