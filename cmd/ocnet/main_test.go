package main

import (
	"io"
	"testing"
)

// TestFlagErrorsAreUsage: every flag that does not parse exits 2, in every
// subcommand; "unknown shorthand flag" used to exit 1.
func TestFlagErrorsAreUsage(t *testing.T) {
	for _, args := range [][]string{
		{"connect", "-Z", "vpn.example.com"},
		{"connect", "--no-such-flag", "vpn.example.com"},
		{"connect", "--reconnect-timeout", "soon", "vpn.example.com"},
		{"connect", "vpn.example.com", "--socks"},
		{"status", "-Q"},
		{"nc", "host", "-1"},
		{"explain", "--bogus", "x"},
		{"-Z"},
	} {
		root := newRootCmd()
		root.SetArgs(args)
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		err := root.Execute()
		if err == nil {
			t.Errorf("%q: no error", args)
			continue
		}
		if code := exitCode(err); code != exitUsage {
			t.Errorf("%q: exit status %d, want 2 (%v)", args, code, err)
		}
	}
}
