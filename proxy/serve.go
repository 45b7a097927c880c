package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Server is a set of front ends sharing one Router and one set of Options.
// Fill it before the first Serve call and leave it alone afterwards; one
// Server may serve several listeners at once.
type Server struct {
	Router *Router
	Options
	// Logger is given the front end's name as "sub"; nil discards.
	Logger *slog.Logger
}

func (s *Server) logger(sub string) *slog.Logger {
	log := s.Logger
	if log == nil {
		log = discard
	}
	return log.With("sub", sub)
}

// acceptLoop accepts on ln until ctx ends or ln fails, running handle in
// a goroutine per connection registered with t. It closes ln and every
// registered connection, waits for the handlers and returns nil when ctx
// ended (or ln was closed under it), the accept error otherwise.
func acceptLoop(ctx context.Context, ln net.Listener, t *tracker, log *slog.Logger,
	handle func(net.Conn)) error {
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
			return fmt.Errorf("proxy: accept on %s: %w", ln.Addr(), err)
		}

		if !t.add(conn) {
			conn.Close()
			continue
		}
		go func() {
			defer t.done(conn)
			handle(conn)
		}()
	}
}

// isTemporary reports whether an accept error may go away by itself.
func isTemporary(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

// tracker owns the goroutines and connections of one proxy listener so
// that shutdown can close every connection (including hijacked ones the
// http.Server no longer knows about) and then wait for every goroutine.
//
// Shutdown order: close the listener, closeAll, then wait.
type tracker struct {
	wg sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[io.Closer]struct{}
}

// add registers one goroutine and the closers it owns (nil entries are
// skipped). It returns false once closeAll has run; the caller must then
// close its connections itself and not start the goroutine.
func (t *tracker) add(cs ...io.Closer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()

	if t.closed {
		return false
	}
	if t.conns == nil {
		t.conns = make(map[io.Closer]struct{})
	}
	for _, c := range cs {
		if c != nil {
			t.conns[c] = struct{}{}
		}
	}
	t.wg.Add(1)
	return true
}

// done unregisters the goroutine started after add and its closers.
func (t *tracker) done(cs ...io.Closer) {
	t.mu.Lock()
	for _, c := range cs {
		delete(t.conns, c)
	}
	t.mu.Unlock()

	t.wg.Done()
}

// closeAll refuses new work and closes every registered connection.
func (t *tracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()

	t.closed = true
	for c := range t.conns {
		c.Close()
	}
	clear(t.conns)
}

// wait blocks until every registered goroutine has called done.
func (t *tracker) wait() { t.wg.Wait() }

type closeWriter interface {
	CloseWrite() error
}

// splice copies both ways between a and b until both directions end,
// then closes both. When one side finishes sending, the other side's
// write half is shut (if it supports CloseWrite) so the peer sees EOF
// while the reverse direction keeps flowing. An error in either
// direction closes both connections at once.
func splice(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(b, a)
	}()
	copyHalf(a, b)
	<-done

	a.Close()
	b.Close()
}

// Relay buffers. An idle flow waits in Read with only a small buffer, so
// thousands of idle proxied connections stay cheap; a flow whose reads
// fill it borrows a large pooled buffer until its reads come back short,
// so a download moves in few, large writes.
const (
	idleBuf = 4 << 10
	busyBuf = 128 << 10
)

var busyPool = sync.Pool{New: func() any {
	b := make([]byte, busyBuf)
	return &b
}}

// relay copies src to dst until src ends (nil) or either side fails.
func relay(dst io.Writer, src io.Reader) error {
	small := make([]byte, idleBuf)
	for {
		n, err := src.Read(small)
		if n > 0 {
			if _, werr := dst.Write(small[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return eofIsNil(err)
		}
		if n < len(small) {
			continue
		}
		if err := relayBusy(dst, src); err != nil {
			return eofIsNil(err)
		}
	}
}

// relayBusy copies with a pooled large buffer while reads bring at least
// idleBuf; it returns nil when the flow calms down.
func relayBusy(dst io.Writer, src io.Reader) error {
	bp := busyPool.Get().(*[]byte)
	defer busyPool.Put(bp)
	big := *bp
	for {
		n, err := src.Read(big)
		if n > 0 {
			if _, werr := dst.Write(big[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
		if n < idleBuf {
			return nil
		}
	}
}

func eofIsNil(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// copyHalf copies src to dst and then half-closes dst.
func copyHalf(dst, src net.Conn) {
	err := relay(dst, src)
	cw, ok := dst.(closeWriter)
	if err != nil || !ok {
		dst.Close()
		src.Close()
		return
	}
	cw.CloseWrite()
}
