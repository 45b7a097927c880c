package main

import (
	"context"
	"io"
	"os"
	"testing"
)

// runCmd runs ocnet with args as main does, without exiting.
func runCmd(ctx context.Context, args ...string) error {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	return root.ExecuteContext(ctx)
}

// setStdin makes os.Stdin a pipe holding in, for the test's duration.
func setStdin(t *testing.T, in string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString(in)
	w.Close()
	old := os.Stdin
	os.Stdin = r
	t.Cleanup(func() {
		os.Stdin = old
		r.Close()
	})
}
