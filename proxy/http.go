package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// ServeHTTP serves an HTTP proxy on ln and sends every flow through r:
// CONNECT host:port becomes a spliced TCP tunnel, and absolute-form
// requests (GET http://host/path) are forwarded. Anything else gets 400,
// and a destination that cannot be reached gets 502. ServeHTTP closes ln
// and every connection, hijacked ones included, when ctx is cancelled,
// waits for its goroutines and returns nil.
func ServeHTTP(ctx context.Context, ln net.Listener, r *Router, log *slog.Logger) error {
	if log == nil {
		log = discard
	}
	log = log.With("sub", "http")

	h := &httpProxy{
		router: r,
		log:    log,
		transport: &http.Transport{
			Proxy:               nil, // never chain to $HTTP_PROXY
			DialContext:         r.DialContext,
			DisableCompression:  true, // pass bodies through untouched
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		},
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}

	stop := context.AfterFunc(ctx, func() {
		srv.Close()
		h.track.closeAll()
	})
	defer stop()

	log.Info("listening", "addr", ln.Addr())
	err := srv.Serve(ln)

	srv.Close()
	h.track.closeAll()
	h.track.wait()
	h.transport.CloseIdleConnections()

	if ctx.Err() != nil && errors.Is(err, http.ErrServerClosed) {
		log.Info("stopped")
		return nil
	}
	return fmt.Errorf("proxy: http serve: %w", err)
}

// httpProxy is the handler behind ServeHTTP.
type httpProxy struct {
	router    *Router
	log       *slog.Logger
	transport *http.Transport

	// track holds every running handler and every hijacked connection:
	// http.Server.Close forgets connections once they are hijacked.
	track tracker
}

func (h *httpProxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !h.track.add() {
		http.Error(w, "ocnet proxy: shutting down", http.StatusServiceUnavailable)
		return
	}
	defer h.track.done()

	switch {
	case req.Method == http.MethodConnect:
		h.connect(w, req)
	case req.URL.IsAbs() && req.URL.Scheme == "http" && req.URL.Host != "":
		h.forward(w, req)
	default:
		http.Error(w, "ocnet proxy: this is an HTTP proxy; send an absolute URL "+
			"(GET http://host/path) or CONNECT host:port", http.StatusBadRequest)
	}
}

// connect dials the CONNECT target, answers 200 and splices the client's
// connection to it until both sides are done.
func (h *httpProxy) connect(w http.ResponseWriter, req *http.Request) {
	dst := req.Host
	if _, port, err := net.SplitHostPort(dst); err != nil || port == "" {
		http.Error(w, "ocnet proxy: CONNECT needs host:port", http.StatusBadRequest)
		return
	}

	target, err := h.router.DialContext(req.Context(), "tcp", dst)
	if err != nil {
		badGateway(w, dst, err)
		return
	}

	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		target.Close()
		http.Error(w, "ocnet proxy: cannot take over the connection",
			http.StatusInternalServerError)
		return
	}
	if !h.track.add(client, target) {
		client.Close()
		target.Close()
		return
	}
	defer h.track.done(client, target)

	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		target.Close()
		return
	}

	// The client may have sent its first bytes (a TLS ClientHello) along
	// with the CONNECT; they sit in the server's read buffer.
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		if _, err := target.Write(early); err != nil {
			client.Close()
			target.Close()
			return
		}
	}
	splice(client, target)
}

// forward sends an absolute-form request on through the router and
// streams the response back.
//
// TODO: protocol upgrades (WebSocket over plain http://) are refused
// because Upgrade is a hop-by-hop header; clients should use CONNECT.
func (h *httpProxy) forward(w http.ResponseWriter, req *http.Request) {
	out := req.Clone(req.Context())
	out.RequestURI = ""
	out.Close = false
	if req.ContentLength == 0 {
		out.Body = nil
	}
	removeHopHeaders(out.Header)

	resp, err := h.transport.RoundTrip(out)
	if err != nil {
		badGateway(w, req.URL.Host, err)
		return
	}
	defer resp.Body.Close()

	removeHopHeaders(resp.Header)
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)

	// Flush after every read so streamed responses (server-sent events,
	// long polls) reach the client as they arrive.
	rc := http.NewResponseController(w)
	buf := make([]byte, 32*1024)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rc.Flush()
		}
		if err != nil {
			// TODO: pass response trailers on; they are dropped today.
			return
		}
	}
}

// badGateway answers 502 with the dial error. The text names the
// destination and the path tried; it carries no credentials.
func badGateway(w http.ResponseWriter, dst string, err error) {
	http.Error(w, fmt.Sprintf("ocnet proxy: cannot reach %s: %v", dst, err),
		http.StatusBadGateway)
}

// hopHeaders apply to one connection only (RFC 9110 section 7.6.1) and
// must not be passed on by a proxy.
var hopHeaders = []string{
	"Connection",
	"Keep-Alive",
	"Proxy-Connection",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopHeaders deletes the hop-by-hop headers, those named in
// Connection, and every Proxy-* header (Proxy-Authorization must never
// travel past the proxy).
func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
	for name := range h {
		if strings.HasPrefix(textproto.CanonicalMIMEHeaderKey(name), "Proxy-") {
			delete(h, name)
		}
	}
}
