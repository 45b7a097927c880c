package main

import (
	"testing"

	"github.com/spf13/pflag"
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
