package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ServeHTTP serves an HTTP proxy on ln with no authentication and sends
// every flow through r; see Server.ServeHTTP.
func ServeHTTP(ctx context.Context, ln net.Listener, r *Router, log *slog.Logger) error {
	return (&Server{Router: r, Logger: log}).ServeHTTP(ctx, ln)
}

// ServeHTTP serves an HTTP proxy on ln and sends every flow through
// s.Router: CONNECT host:port becomes a spliced TCP tunnel, absolute-form
// requests (GET http://host/path) are forwarded, and GET /proxy.pac (or
// /wpad.dat) returns the PAC file for this proxy. Anything else gets 400,
// and a destination that cannot be reached gets 502. With s.Auth set,
// proxied requests need Proxy-Authorization Basic (407 otherwise);
// without it the username, if any, names the app.
//
// ServeHTTP refuses a listener beyond loopback without s.Auth. It closes
// ln and every connection, hijacked ones included, when ctx is cancelled,
// waits for its goroutines and returns nil.
func (s *Server) ServeHTTP(ctx context.Context, ln net.Listener) error {
	if err := CheckExposure(ln.Addr().String(), s.Auth); err != nil {
		ln.Close()
		return err
	}
	log := s.logger("http")
	r := s.Router
	defer r.AddSelf(ln.Addr())()

	h := &httpProxy{
		srv:    s,
		router: r,
		log:    log,
		via:    viaName(),
		transport: &http.Transport{
			Proxy:               nil, // never chain to $HTTP_PROXY
			DialContext:         r.DialContext,
			DisableCompression:  true, // pass bodies through untouched
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     cmp.Or(s.UpstreamIdle, 90*time.Second),
			TLSHandshakeTimeout: 10 * time.Second,
		},
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, &connInfo{conn: c})
		},
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
	h.closeIdle()

	if ctx.Err() != nil && errors.Is(err, http.ErrServerClosed) {
		log.Info("stopped")
		return nil
	}
	return fmt.Errorf("proxy: http serve: %w", err)
}

// httpProxy is the handler behind ServeHTTP.
type httpProxy struct {
	srv       *Server
	router    *Router
	log       *slog.Logger
	transport *http.Transport
	via       string // our name in Via headers (loop.go)

	// track holds every running handler and every hijacked connection:
	// http.Server.Close forgets connections once they are hijacked.
	track tracker

	mu   sync.Mutex
	apps map[string]*http.Transport // guarded by mu; see transportFor
}

// connKey finds the *connInfo of a request's client connection.
type connKey struct{}

// connInfo looks up a connection's process at most once, on its first
// request, and not in the accept loop.
type connInfo struct {
	conn net.Conn
	once sync.Once
	app  string
}

func (h *httpProxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !h.track.add() {
		http.Error(w, "ocnet proxy: shutting down", http.StatusServiceUnavailable)
		return
	}
	defer h.track.done()

	kind, dst, err := ClassifyRequest(req)
	if err != nil {
		http.Error(w, "ocnet proxy: "+err.Error(), http.StatusBadRequest)
		return
	}
	if kind == RequestPAC {
		h.servePAC(w, req)
		return
	}

	user, ok := h.authorize(req)
	if !ok {
		w.Header().Set("Proxy-Authenticate", `Basic realm="ocnet"`)
		http.Error(w, "ocnet proxy: proxy authentication required",
			http.StatusProxyAuthRequired)
		return
	}
	req = req.WithContext(WithApp(req.Context(), h.appID(req, user)))

	switch {
	case kind == RequestConnect:
		h.connect(w, req, dst)
	case hasVia(req.Header, h.via):
		// Our own forwarded request came back, by way of another proxy
		// or a port forward.
		badGateway(w, dst, fmt.Errorf("request already passed through %s: %w", h.via, ErrLoop))
	default:
		h.forward(w, req)
	}
}

// authorize checks Proxy-Authorization against Auth, and returns the
// username it carries (with no Auth, any or none passes).
func (h *httpProxy) authorize(req *http.Request) (string, bool) {
	user, pass, found := parseBasic(req.Header.Get("Proxy-Authorization"))
	if a := h.srv.Auth; a != nil {
		return user, found && a.ok(user, pass)
	}
	return user, true
}

// appID names the app of a request; a process lookup is done once per
// connection.
func (h *httpProxy) appID(req *http.Request, user string) string {
	if h.srv.Auth == nil && user != "" {
		return sanitizeApp(user)
	}
	ci, _ := req.Context().Value(connKey{}).(*connInfo)
	if ci == nil || !h.srv.AppFromProcess {
		return ""
	}
	ci.once.Do(func() { ci.app = h.srv.appID("", ci.conn, h.log) })
	return ci.app
}

// maxAppTransports bounds the per-app connection pools; requests of
// further apps get connections that are not kept.
const maxAppTransports = 64

// transportFor returns the connection pool for one app. Pools are kept
// apart so that a kept-alive connection, routed for one app, never
// carries another app's request.
func (h *httpProxy) transportFor(app string) *http.Transport {
	if app == "" {
		return h.transport
	}
	h.mu.Lock()
	defer h.mu.Unlock()

	if t, ok := h.apps[app]; ok {
		return t
	}
	t := h.transport.Clone()
	if len(h.apps) >= maxAppTransports {
		t.DisableKeepAlives = true
		return t
	}
	if h.apps == nil {
		h.apps = make(map[string]*http.Transport)
	}
	h.apps[app] = t
	return t
}

// closeIdle closes the idle connections of every pool.
func (h *httpProxy) closeIdle() {
	h.transport.CloseIdleConnections()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.apps {
		t.CloseIdleConnections()
	}
}

// servePAC answers the PAC file naming the address this client reached
// the proxy on. A client beyond loopback must authenticate when Auth is
// set (with Authorization or Proxy-Authorization): the file lists the
// corporate networks and domains.
func (h *httpProxy) servePAC(w http.ResponseWriter, req *http.Request) {
	local, _ := req.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if local == nil {
		http.Error(w, "ocnet proxy: no local address", http.StatusInternalServerError)
		return
	}
	if a := h.srv.Auth; a != nil && !isLoopbackAddr(req.RemoteAddr) {
		u, p, ok := parseBasic(req.Header.Get("Authorization"))
		if !ok {
			u, p, ok = parseBasic(req.Header.Get("Proxy-Authorization"))
		}
		if !ok || !a.ok(u, p) {
			w.Header().Set("WWW-Authenticate", `Basic realm="ocnet"`)
			http.Error(w, "ocnet proxy: authentication required", http.StatusUnauthorized)
			return
		}
	}

	w.Header().Set("Content-Type", PACContentType)
	w.Header().Set("Cache-Control", "no-cache")
	body := PAC(h.router.CurrentPolicy(), local.String())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if req.Method != http.MethodHead {
		w.Write(body)
	}
}

// RequestKind is what an HTTP proxy request asks for.
type RequestKind int

const (
	// RequestConnect is CONNECT host:port.
	RequestConnect RequestKind = iota + 1
	// RequestForward is an absolute-form http:// request to pass on.
	RequestForward
	// RequestPAC is a GET or HEAD of /proxy.pac or /wpad.dat.
	RequestPAC
)

// ClassifyRequest says what req asks of the proxy and, for CONNECT and
// forwarded requests, the destination as "host:port" (port 80 by default
// for http://). Anything else is an error suitable for a 400 answer.
func ClassifyRequest(req *http.Request) (RequestKind, string, error) {
	switch {
	case req.Method == http.MethodConnect:
		host, port, err := net.SplitHostPort(req.Host)
		if err != nil || host == "" {
			return 0, "", errors.New("CONNECT needs host:port")
		}
		if !validHost(host) {
			return 0, "", errors.New("CONNECT host is not a host name or IP address")
		}
		if _, err := parsePort(port, false); err != nil {
			return 0, "", fmt.Errorf("CONNECT port: %v", err)
		}
		return RequestConnect, net.JoinHostPort(host, port), nil

	case req.URL.IsAbs():
		if req.URL.Scheme != "http" || req.URL.Host == "" {
			return 0, "", errors.New("this proxy forwards only http:// URLs; " +
				"use CONNECT for anything else")
		}
		host, port := req.URL.Hostname(), req.URL.Port()
		if port == "" {
			port = "80"
		}
		if host == "" || !validHost(host) {
			return 0, "", errors.New("URL without a valid host")
		}
		if _, err := parsePort(port, false); err != nil {
			return 0, "", fmt.Errorf("URL port: %v", err)
		}
		return RequestForward, net.JoinHostPort(host, port), nil

	case (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.URL.Path == "/proxy.pac" || req.URL.Path == "/wpad.dat"):
		return RequestPAC, "", nil
	}
	return 0, "", errors.New("this is an HTTP proxy; send an absolute URL " +
		"(GET http://host/path), CONNECT host:port, or GET /proxy.pac")
}

// connect dials the CONNECT target, answers 200 and splices the client's
// connection to it until both sides are done.
func (h *httpProxy) connect(w http.ResponseWriter, req *http.Request, dst string) {
	dctx, cancel := context.WithTimeout(req.Context(), dialTimeout)
	target, err := h.router.DialContext(dctx, "tcp", dst)
	cancel()
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
	out.Header.Add("Via", fmt.Sprintf("%d.%d %s", req.ProtoMajor, req.ProtoMinor, h.via))

	resp, err := h.transportFor(AppFrom(req.Context())).RoundTrip(out)
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

// badGateway answers 502 with the dial error, 403 when the policy refused
// the flow, 508 Loop Detected when it led back to this proxy. The text
// names the destination and the path tried; it carries no credentials.
func badGateway(w http.ResponseWriter, dst string, err error) {
	if errors.Is(err, ErrLoop) {
		http.Error(w, fmt.Sprintf("ocnet proxy: %s: %v", dst, err), http.StatusLoopDetected)
		return
	}
	if errors.Is(err, ErrRefused) {
		http.Error(w, fmt.Sprintf("ocnet proxy: %s: %v", dst, err), http.StatusForbidden)
		return
	}
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
