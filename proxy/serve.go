package proxy

import (
	"io"
	"net"
	"sync"
)

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

// copyHalf copies src to dst and then half-closes dst.
func copyHalf(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	cw, ok := dst.(closeWriter)
	if err != nil || !ok {
		dst.Close()
		src.Close()
		return
	}
	cw.CloseWrite()
}
