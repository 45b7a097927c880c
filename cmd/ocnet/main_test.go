package main

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
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
		err := runCmd(t.Context(), args...)
		if err == nil {
			t.Errorf("%q: no error", args)
			continue
		}
		if code := exitCode(err); code != exitUsage {
			t.Errorf("%q: exit status %d, want 2 (%v)", args, code, err)
		}
	}
}

// TestVersion: --version and the version command print the same line,
// naming the module version, the revision when the build recorded one,
// and the Go version.
func TestVersion(t *testing.T) {
	var outs []string
	for _, args := range [][]string{{"--version"}, {"version"}} {
		root := newRootCmd()
		root.SetArgs(args)
		var out bytes.Buffer
		root.SetOut(&out)
		if err := root.Execute(); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if !strings.HasPrefix(out.String(), "ocnet ") ||
			!strings.Contains(out.String(), runtime.Version()) {
			t.Errorf("%q printed %q", args, out.String())
		}
		outs = append(outs, out.String())
	}
	if outs[0] != outs[1] {
		t.Errorf("--version %q, version %q", outs[0], outs[1])
	}

	for _, tc := range []struct {
		bi   debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{GoVersion: "go1.26"}, "ocnet (devel) go1.26"},
		{debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "v1.2.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "df007fc"},
				{Key: "vcs.modified", Value: "false"}}}, "ocnet v1.2.0 df007fc go1.26"},
		{debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "df007fc"},
				{Key: "vcs.modified", Value: "true"}}}, "ocnet (devel) df007fc-dirty go1.26"},
	} {
		if got := formatVersion(&tc.bi); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
