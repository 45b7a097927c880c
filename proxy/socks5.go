package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	socks5 "github.com/armon/go-socks5"
)

// ServeSOCKS5 serves SOCKS5 (CONNECT only, no authentication) on ln and
// sends every flow through r. Names in requests are not resolved by the
// SOCKS layer: they reach r.DialContext as "name:port", so socks5h
// clients get split DNS. ServeSOCKS5 closes ln and every connection when
// ctx is cancelled, waits for its goroutines and returns nil; any other
// accept error is returned after the same cleanup.
//
// TODO: UDP ASSOCIATE, which go-socks5 does not implement.
func ServeSOCKS5(ctx context.Context, ln net.Listener, r *Router, log *slog.Logger) error {
	if log == nil {
		log = discard
	}
	log = log.With("sub", "socks5")

	srv, err := socks5.New(&socks5.Config{
		Resolver: passName{},
		Dial: func(_ context.Context, network, addr string) (net.Conn, error) {
			// go-socks5 dials with context.Background; ours ends with the
			// listener. An established conn outlives the dial context.
			conn, err := r.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return tcpAddrConn(conn), nil
		},
		Logger: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	})
	if err != nil {
		return fmt.Errorf("proxy: socks5: %w", err)
	}

	var t tracker
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		t.closeAll()
	})
	defer stop()

	log.Info("listening", "addr", ln.Addr())
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if isTemporary(err) && ctx.Err() == nil {
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("accept failed, retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if err != nil {
			ln.Close()
			t.closeAll()
			t.wait()
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				log.Info("stopped")
				return nil
			}
			return fmt.Errorf("proxy: socks5 accept: %w", err)
		}

		if !t.add(conn) {
			conn.Close()
			continue
		}
		go func() {
			defer t.done(conn)
			// go-socks5 logs the failure itself, at debug level.
			srv.ServeConn(conn)
		}()
	}
}

// isTemporary reports whether an accept error may go away by itself.
func isTemporary(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

// passName is a go-socks5 resolver that resolves nothing. With no IP in
// the request's address, go-socks5 dials "name:port" and the Router does
// the lookup with split DNS instead of the host's resolver.
type passName struct{}

func (passName) Resolve(ctx context.Context, _ string) (context.Context, net.IP, error) {
	return ctx, nil, nil
}

// tcpAddrConn makes sure conn reports a *net.TCPAddr as its local
// address: go-socks5 asserts that type unchecked when it builds its reply.
func tcpAddrConn(conn net.Conn) net.Conn {
	if _, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		return conn
	}
	return &fixedAddrConn{conn}
}

type fixedAddrConn struct{ net.Conn }

func (c *fixedAddrConn) LocalAddr() net.Addr { return &net.TCPAddr{} }

// CloseWrite keeps half-close working through the wrapper.
func (c *fixedAddrConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
