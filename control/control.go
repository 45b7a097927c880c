// Package control owns ocnet's local control socket: a Unix socket, in a
// directory only its user can enter, over which `ocnet status` asks a
// running client how it is. It serves what it is given and decides nothing.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// DefaultPath is $XDG_RUNTIME_DIR/ocnet/ocnet.sock, or
// /tmp/ocnet-UID/ocnet.sock where there is no runtime directory.
func DefaultPath() string {
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		return filepath.Join(os.TempDir(), fmt.Sprintf("ocnet-%d", os.Getuid()), "ocnet.sock")
	}
	return filepath.Join(dir, "ocnet", "ocnet.sock")
}

// Serve answers GET /status with status() as JSON on a Unix socket at
// path, until ctx ends, and any extra handlers keyed by ServeMux pattern
// ("GET /explain"). The socket's directory is created 0700 and must
// belong to the caller, so no other user can reach the socket.
func Serve(ctx context.Context, path string, status func() any, log *slog.Logger,
	extra ...map[string]http.HandlerFunc) (stop func(), err error) {
	if err := Check(path); err != nil {
		return nil, err
	}
	os.Remove(path)

	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	os.Chmod(path, 0o600)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(status())
	})
	for _, m := range extra {
		for pattern, h := range m {
			mux.HandleFunc(pattern, h)
		}
	}
	// Clients ask one question and go; an idle keep-alive connection is
	// closed after a minute rather than held for the process's life.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout: time.Minute}
	go srv.Serve(ln)

	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		srv.Close()
		os.Remove(path)
	}()
	var once sync.Once
	return func() { once.Do(func() { close(stopped) }) }, nil
}

// Check reports what would fail Serve at path, so that a caller can fail
// before it logs in and connects: a directory that is another user's or
// open to others, or another ocnet answering there. It creates the
// directory as Serve does.
func Check(path string) error {
	if err := privateDir(filepath.Dir(path)); err != nil {
		return err
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("control: %s: another ocnet is running; "+
			"give this one its own --control path", path)
	}
	return nil
}

// privateDir makes dir (0700) or checks that an existing one is the
// caller's and closed to others.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("control: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("control: %s belongs to another user", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("control: %s is open to other users (mode %v)", dir, fi.Mode().Perm())
	}
	return nil
}

// ErrNotRunning means no client answers on the socket.
var ErrNotRunning = errors.New("control: no ocnet is running")

// Get asks the client at path for its status and decodes it into v.
func Get(ctx context.Context, path string, v any) error {
	return GetPath(ctx, path, "/status", v)
}

// GetPath asks the client at path for target ("/explain?target=x") and
// decodes the JSON answer into v.
func GetPath(ctx context.Context, path, target string, v any) error {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://ocnet"+target, nil)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s", ErrNotRunning, path)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("control: %s: %s: %s", target, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("control: %s: %w", target, err)
	}
	return nil
}
