package control

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestServeAndGet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ctl")
	path := filepath.Join(dir, "ocnet.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	stop, err := Serve(ctx, path, func() any { return map[string]int{"reconnects": 2} }, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]int
	if err := Get(ctx, path, &got); err != nil {
		t.Fatal(err)
	}
	if got["reconnects"] != 2 {
		t.Fatalf("got %v", got)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir mode %v, want 0700", fi.Mode().Perm())
	}

	if _, err := Serve(ctx, path, func() any { return nil }, nil); err == nil {
		t.Fatal("a second client took over a live socket")
	}
	stop()
}

func TestGetWithoutServer(t *testing.T) {
	err := Get(context.Background(), filepath.Join(t.TempDir(), "none.sock"), new(any))
	if err == nil {
		t.Fatal("no error without a server")
	}
}

func TestOpenDirRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "open")
	os.Mkdir(dir, 0o755)
	os.Chmod(dir, 0o755)
	_, err := Serve(context.Background(), filepath.Join(dir, "s"), func() any { return nil }, nil)
	if err == nil {
		t.Fatal("served from a directory other users can enter")
	}
}
