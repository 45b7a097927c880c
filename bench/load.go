package main

// The load side of the suite. It runs as "bench load MODE ..." inside the
// namespace of the client under test (the parent re-executes its own binary
// there with ip netns exec), so every connection it makes goes through the
// proxy or kernel tunnel being measured and never through the root
// namespace. It prints one JSON object per result line on stdout.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// loadFlags are the knobs every load mode shares.
type loadFlags struct {
	socks   string        // SOCKS5 proxy address; "" dials directly
	target  string        // web server ip:port
	path    string        // request path
	timeout time.Duration // bound on the whole mode
}

// runLoad is the entry point of "bench load".
func runLoad(args []string) error {
	if len(args) < 1 {
		return errors.New("load: want a mode: ready, rps or idle")
	}
	mode := args[0]
	fs := flag.NewFlagSet("load "+mode, flag.ContinueOnError)
	var lf loadFlags
	fs.StringVar(&lf.socks, "socks", "", "SOCKS5 proxy address")
	fs.StringVar(&lf.target, "target", "", "web server ip:port")
	fs.StringVar(&lf.path, "path", "/", "request path")
	fs.DurationVar(&lf.timeout, "timeout", 20*time.Second, "bound on the whole mode")
	dur := fs.Duration("duration", 3*time.Second, "rps: how long to load")
	workers := fs.Int("workers", 8, "rps: concurrent clients")
	counts := fs.String("counts", "1000,5000", "idle: connection counts, ascending")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if _, err := netip.ParseAddrPort(lf.target); err != nil {
		return fmt.Errorf("load: -target: %w", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), lf.timeout)
	defer cancel()
	enc := json.NewEncoder(os.Stdout)

	switch mode {
	case "ready":
		at, err := waitReady(ctx, lf)
		if err != nil {
			return err
		}
		return enc.Encode(map[string]int64{"ready_unix_ns": at.UnixNano()})
	case "rps":
		n, kinds, first, secs := requestRate(ctx, lf, *dur, *workers)
		return enc.Encode(map[string]any{
			"requests": n, "errors": kinds, "first_error": first, "seconds": secs,
		})
	case "idle":
		return holdIdle(ctx, lf, *counts, enc)
	}
	return fmt.Errorf("load: unknown mode %q", mode)
}

// dial opens a TCP connection to target, through the SOCKS5 proxy when one
// is set.
func (lf loadFlags) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	if lf.socks == "" {
		return d.DialContext(ctx, "tcp", lf.target)
	}
	c, err := d.DialContext(ctx, "tcp", lf.socks)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := socksConnect(c, netip.MustParseAddrPort(lf.target)); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// socksConnect speaks the client side of a SOCKS5 CONNECT (RFC 1928) with
// no authentication to an IPv4 address.
func socksConnect(c net.Conn, to netip.AddrPort) error {
	if !to.Addr().Is4() {
		return errors.New("socks: only IPv4 targets")
	}
	// Greeting and request go in two writes, as curl sends them: ocproxy
	// drops a request that arrives with the greeting.
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return fmt.Errorf("socks: %w", err)
	}
	var head [4]byte
	if _, err := io.ReadFull(c, head[:2]); err != nil {
		return fmt.Errorf("socks: %w", err)
	}
	if head[0] != 5 || head[1] != 0 {
		return fmt.Errorf("socks: proxy refused no-auth (method %d)", head[1])
	}

	req := []byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}
	a := to.Addr().As4()
	copy(req[4:8], a[:])
	binary.BigEndian.PutUint16(req[8:10], to.Port())
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("socks: %w", err)
	}

	// The reply head (4 bytes), then a bound address whose length depends
	// on its type.
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return fmt.Errorf("socks: %w", err)
	}
	if head[1] != 0 {
		return fmt.Errorf("socks: connect refused (reply %d)", head[1])
	}
	var rest int
	switch head[3] {
	case 1:
		rest = 4 + 2
	case 4:
		rest = 16 + 2
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return fmt.Errorf("socks: %w", err)
		}
		rest = int(l[0]) + 2
	default:
		return fmt.Errorf("socks: bad address type %d", head[3])
	}
	_, err := io.ReadFull(c, make([]byte, rest))
	if err != nil {
		return fmt.Errorf("socks: %w", err)
	}
	return nil
}

// get sends one GET on c and reads the whole response; it returns the
// status code. keep asks the server to keep the connection open.
func (lf loadFlags) get(c net.Conn, br *bufio.Reader, keep bool) (int, error) {
	conn := "close"
	if keep {
		conn = "keep-alive"
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: %s\r\n\r\n",
		lf.path, lf.target, conn)

	status, err := br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(status)
	if len(f) < 2 {
		return 0, fmt.Errorf("http: bad status line %q", status)
	}
	code, _ := strconv.Atoi(f[1])
	length := -1
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return 0, err
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ":")
		if strings.EqualFold(k, "content-length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if length < 0 {
		return code, errors.New("http: no content-length")
	}
	_, err = br.Discard(length)
	return code, err
}

// waitReady polls every 10 ms until one GET through the path answers 200.
func waitReady(ctx context.Context, lf loadFlags) (time.Time, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok := tryOnce(ctx, lf); ok {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, errors.New("ready: no HTTP 200 before the deadline")
		case <-tick.C:
		}
	}
}

func tryOnce(ctx context.Context, lf loadFlags) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := lf.dial(ctx)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	// Keep-alive, as curl asks; we close after one response anyway, and
	// "Connection: close" makes nginx close first, which costs some
	// proxies a delayed-ACK round.
	code, err := lf.get(c, bufio.NewReader(c), true)
	return err == nil && code == 200
}

// reqTimeout bounds one request of the rps mode, so a request that hangs
// counts as a failure instead of idling its worker to the end of the run.
const reqTimeout = 2 * time.Second

// requestRate runs workers that each loop: new connection, one GET, close,
// for d. It returns completed requests, failures by kind, the first failure
// and the elapsed seconds. The loop and the failure count go by the clock,
// not by ctx.Err(): the context turns done only when its timer fires, a
// little after the deadline, and until then every dial and read fails at
// once, so workers spinning there counted thousands of failures that were
// only the end of the run. A request the end cuts off is no failure.
func requestRate(ctx context.Context, lf loadFlags, d time.Duration,
	workers int) (int64, map[string]int64, string, float64) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	end, _ := ctx.Deadline()
	var ok atomic.Int64
	var mu sync.Mutex
	kinds := map[string]int64{}
	first := ""
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				err := oneRequest(ctx, lf)
				if err == nil {
					ok.Add(1)
					continue
				}
				if !time.Now().Before(end) {
					return
				}
				mu.Lock()
				kinds[failKind(err)]++
				if first == "" {
					first = err.Error()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok.Load(), kinds, first, time.Since(start).Seconds()
}

func oneRequest(ctx context.Context, lf loadFlags) error {
	ctx, cancel := context.WithTimeout(ctx, reqTimeout)
	defer cancel()
	c, err := lf.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// Keep-alive, as curl asks; we close after one response anyway, and
	// "Connection: close" makes nginx close first, which costs some
	// proxies a delayed-ACK round.
	code, err := lf.get(c, bufio.NewReader(c), true)
	if err == nil && code != 200 {
		err = fmt.Errorf("http: status %d", code)
	}
	return err
}

// failKind names what went wrong in one request, in a few words ("dial
// timeout", "read reset"), for the failures-by-kind note.
func failKind(err error) string {
	step := "request"
	var oe *net.OpError
	switch {
	case strings.HasPrefix(err.Error(), "http:"):
		return err.Error()
	case strings.HasPrefix(err.Error(), "socks:"):
		step = "socks"
	case errors.As(err, &oe):
		step = oe.Op
	}
	var te interface{ Timeout() bool }
	switch {
	case errors.As(err, &te) && te.Timeout():
		return step + " timeout"
	case errors.Is(err, syscall.ECONNRESET):
		return step + " reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return step + " refused"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return step + " EOF"
	}
	return step + " error"
}

// holdIdle opens keep-alive connections through the path, one GET each,
// and holds them idle. At each count it prints how many it holds and waits
// for a line on stdin (the parent reads the client's RSS meanwhile).
func holdIdle(ctx context.Context, lf loadFlags, counts string, enc *json.Encoder) error {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	in := bufio.NewReader(os.Stdin)
	const opener = 32
	const maxIdleFails = 64

	for _, s := range strings.Split(counts, ",") {
		want, err := strconv.Atoi(s)
		if err != nil || want < 0 {
			return fmt.Errorf("idle: bad count %q", s)
		}
		start := time.Now()
		fails := 0
		var mu sync.Mutex
		var wg sync.WaitGroup
		need := want - len(conns)
		var next atomic.Int64
		for range opener {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(need) && ctx.Err() == nil {
					c, err := openIdle(ctx, lf)
					mu.Lock()
					if err != nil {
						fails++
					} else {
						conns = append(conns, c)
					}
					// A proxy out of connection slots fails every
					// further open after a timeout: stop early.
					full := fails > maxIdleFails
					mu.Unlock()
					if full {
						return
					}
				}
			}()
		}
		wg.Wait()
		err = enc.Encode(map[string]float64{
			"want": float64(want), "held": float64(len(conns)),
			"failed": float64(fails), "open_seconds": time.Since(start).Seconds(),
		})
		if err != nil {
			return err
		}
		if _, err := in.ReadString('\n'); err != nil {
			return nil
		}
	}
	return nil
}

func openIdle(ctx context.Context, lf loadFlags) (net.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := lf.dial(cctx)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	code, err := lf.get(c, bufio.NewReader(c), true)
	if err != nil || code != 200 {
		c.Close()
		return nil, fmt.Errorf("idle: status %d: %v", code, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
