// Package fakehead is an in-process AnyConnect headend for fast unit tests:
// just enough aggregate auth, CONNECT and CSTP to exercise a client's
// lifecycle (reconnects, address changes, rekeys, terminations), with a
// netstack behind it playing the corporate network. It never replaces the
// real ocserv in end-to-end tests; it has no DTLS.
package fakehead

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/ocnet/ocnet/auth"
	"github.com/ocnet/ocnet/datapath"
	"github.com/ocnet/ocnet/netstack"
)

// Corporate network behind the fake headend.
var (
	CorpHost = netip.MustParseAddr("198.18.120.10")
	corpNet  = netip.MustParsePrefix("198.18.120.0/24")

	// CorpDNS are two DNS servers on the corporate network. Each answers
	// every A question with its own address, so a test sees who answered.
	CorpDNS = [2]netip.Addr{
		netip.MustParseAddr("198.18.120.53"), netip.MustParseAddr("198.18.120.54"),
	}
)

// Headend is a running fake headend. Its knobs may be changed while it
// runs; each CONNECT reads them afresh.
type Headend struct {
	Addr    string         // host:port of the TLS listener
	Pool    *x509.CertPool // trusts the headend's certificate
	Corp    *netstack.Stack
	Logins  atomic.Int32 // completed password logins
	Logouts atomic.Int32 // DISCONNECTs with a reason: the session is given back

	// Knobs.
	Address       atomic.Pointer[netip.Prefix]   // address handed out
	RejectCookies atomic.Bool                    // answer CONNECT with 401
	Refuse        atomic.Bool                    // close every new connection at once
	Flap          atomic.Bool                    // end each tunnel right after CONNECT
	RekeyTime     atomic.Int64                   // seconds; 0 = none
	DNS           atomic.Pointer[[]netip.Addr]   // X-CSTP-DNS; nil = none
	SplitDNS      atomic.Pointer[[]string]       // X-CSTP-Split-DNS; nil = none
	Routes        atomic.Pointer[[]netip.Prefix] // X-CSTP-Split-Include; nil = the corp net
	MTU           atomic.Int32                   // X-CSTP-MTU; 0 = 1400

	ln      net.Listener
	cookie  atomic.Pointer[string]
	mu      sync.Mutex
	current net.Conn // the tunnel stream in use
	wg      sync.WaitGroup

	dnsMu   sync.Mutex
	dnsSeen []DNSQuery // guarded by dnsMu
}

// DNSQuery is one question a CorpDNS server received.
type DNSQuery struct {
	Server netip.Addr
	From   netip.AddrPort
	Name   string // as asked, with the trailing dot
}

// Password is the only password the headend accepts.
const Password = "secret"

// Start runs a headend on 127.0.0.1 until Close.
func Start() (*Headend, error) {
	cert, pool, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		return nil, err
	}
	h := &Headend{Addr: ln.Addr().String(), Pool: pool, ln: ln}
	p := netip.MustParsePrefix("198.19.20.50/24")
	h.Address.Store(&p)
	h.newCookie()

	h.Corp, err = netstack.New(netstack.Config{
		Addrs: []netip.Prefix{netip.PrefixFrom(CorpHost, 24),
			netip.PrefixFrom(CorpDNS[0], 24), netip.PrefixFrom(CorpDNS[1], 24)},
		MTU:      1400,
		Headroom: datapath.CSTPHeaderLen,
	}, h.toClient)
	if err != nil {
		ln.Close()
		return nil, err
	}
	for _, a := range CorpDNS {
		pc, err := h.Corp.ListenUDP(netip.AddrPortFrom(a, 53))
		if err != nil {
			ln.Close()
			h.Corp.Close()
			return nil, err
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.serveDNS(a, pc)
		}()
	}

	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		http.Serve(ln, http.HandlerFunc(h.serveHTTP))
	}()
	return h, nil
}

// URL is where clients connect.
func (h *Headend) URL() *url.URL { return &url.URL{Scheme: "https", Host: h.Addr, Path: "/"} }

// TLS is a client configuration that trusts the headend.
func (h *Headend) TLS() *tls.Config {
	return &tls.Config{RootCAs: h.Pool, ServerName: "127.0.0.1"}
}

// Login logs alice in with the right password, as a client's Reauth
// would, and returns the session cookie.
func (h *Headend) Login(ctx context.Context) (string, error) {
	res, err := auth.Login(ctx, auth.Options{URL: h.URL(), TLS: h.TLS()},
		func(_ context.Context, f *auth.Form) error {
			for _, fd := range f.Fields {
				switch fd.Name {
				case "username":
					fd.Value = "alice"
				case "password":
					fd.Value = Password
				}
			}
			return nil
		})
	if err != nil {
		return "", err
	}
	return res.Cookie, nil
}

// Close stops the headend.
func (h *Headend) Close() {
	h.ln.Close()
	h.DropTunnel()
	h.Corp.Close() // ends the DNS servers
	h.wg.Wait()
}

// serveDNS answers every A question with the server's own address and
// anything else with an empty answer, until pc closes.
func (h *Headend) serveDNS(self netip.Addr, pc net.PacketConn) {
	defer pc.Close()
	buf := make([]byte, 4096)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var q dns.Msg
		if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
			continue
		}
		src, _ := netip.ParseAddrPort(from.String())
		h.dnsMu.Lock()
		h.dnsSeen = append(h.dnsSeen, DNSQuery{self, src, q.Question[0].Name})
		h.dnsMu.Unlock()

		reply := new(dns.Msg)
		reply.SetReply(&q)
		if q.Question[0].Qtype == dns.TypeA {
			reply.Answer = []dns.RR{&dns.A{
				Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA,
					Class: dns.ClassINET, Ttl: 60},
				A: self.AsSlice(),
			}}
		}
		if out, err := reply.Pack(); err == nil {
			pc.WriteTo(out, from)
		}
	}
}

// DNSQueries returns the questions the CorpDNS servers received so far.
func (h *Headend) DNSQueries() []DNSQuery {
	h.dnsMu.Lock()
	defer h.dnsMu.Unlock()
	return append([]DNSQuery(nil), h.dnsSeen...)
}

// DropTunnel breaks the current tunnel stream, as a network failure would.
func (h *Headend) DropTunnel() {
	h.mu.Lock()
	if h.current != nil {
		h.current.Close()
		h.current = nil
	}
	h.mu.Unlock()
}

// ForgetCookie makes the headend refuse the session cookie from now on,
// as ocserv does after a restart.
func (h *Headend) ForgetCookie() { h.newCookie() }

// Terminate sends TERMINATE on the current tunnel and forgets the cookie.
func (h *Headend) Terminate() {
	h.newCookie()
	h.writeFrame(datapath.TypeTerminate, nil)
}

func (h *Headend) newCookie() {
	b := make([]byte, 32)
	rand.Read(b)
	c := base64.StdEncoding.EncodeToString(b)
	h.cookie.Store(&c)
}

func (h *Headend) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if h.Refuse.Load() {
		hj, _ := w.(http.Hijacker)
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	switch {
	case r.Method == http.MethodConnect && r.RequestURI == "/CSCOSSLC/tunnel":
		h.connect(w, r)
	case r.Method == http.MethodPost:
		h.auth(w, r)
	default:
		http.NotFound(w, r)
	}
}

// auth answers the aggregate-auth dialogue in one round: a form asking for
// username and password, then "complete" with the cookie.
func (h *Headend) auth(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	w.Header().Set("Content-Type", "text/xml")
	if !strings.Contains(string(body), "<password>") {
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request" aggregate-auth-version="2">
<auth id="main"><message>Please log in.</message>
<form method="post" action="/auth">
<input type="text" name="username" label="Username:"></input>
<input type="password" name="password" label="Password:"></input>
</form></auth></config-auth>`)
		return
	}
	if !strings.Contains(string(body), "<password>"+Password+"</password>") {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	h.Logins.Add(1)
	h.newCookie()
	http.SetCookie(w, &http.Cookie{Name: "webvpn", Value: *h.cookie.Load(), Secure: true})
	fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="complete" aggregate-auth-version="2">
<auth id="success"><title>fake headend</title></auth></config-auth>`)
}

func (h *Headend) connect(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie("webvpn")
	if err != nil || h.RejectCookies.Load() || c.Value != *h.cookie.Load() {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}

	addr := *h.Address.Load()
	hdr := []string{
		"HTTP/1.1 200 CONNECTED",
		"X-CSTP-Version: 1",
		"X-CSTP-Address: " + addr.Addr().String(),
		"X-CSTP-Netmask: 255.255.255.0",
		fmt.Sprintf("X-CSTP-MTU: %d", cmp.Or(h.MTU.Load(), 1400)),
		"X-CSTP-DPD: 30",
		"X-CSTP-Keepalive: 20",
		"X-CSTP-Banner: fake headend",
	}
	routes := []netip.Prefix{corpNet}
	if r := h.Routes.Load(); r != nil {
		routes = *r
	}
	for _, p := range routes {
		mask := net.IP(net.CIDRMask(p.Bits(), 32)).String()
		hdr = append(hdr, "X-CSTP-Split-Include: "+p.Addr().String()+"/"+mask)
	}
	if d := h.DNS.Load(); d != nil {
		for _, a := range *d {
			hdr = append(hdr, "X-CSTP-DNS: "+a.String())
		}
	}
	if d := h.SplitDNS.Load(); d != nil {
		for _, name := range *d {
			hdr = append(hdr, "X-CSTP-Split-DNS: "+name)
		}
	}
	if rt := h.RekeyTime.Load(); rt > 0 {
		hdr = append(hdr, fmt.Sprintf("X-CSTP-Rekey-Time: %d", rt),
			"X-CSTP-Rekey-Method: new-tunnel")
	}
	// A new CONNECT with the cookie takes the session over, as ocserv's
	// does: the old stream ends. The new one is current before the reply
	// goes out, so a test that acts once the client is up finds it.
	h.mu.Lock()
	if h.current != nil {
		h.current.Close()
	}
	h.current = conn
	h.mu.Unlock()

	rw.WriteString(strings.Join(hdr, "\r\n") + "\r\n\r\n")
	rw.Flush()
	if h.Flap.Load() {
		conn.Close()
		return
	}

	h.readFrames(conn, rw.Reader)
}

// readFrames hands the client's packets to the corporate stack and answers
// DPD, until the stream ends.
func (h *Headend) readFrames(conn net.Conn, br *bufio.Reader) {
	defer conn.Close()
	rd := datapath.NewCSTPReader(br)
	buf := make([]byte, datapath.CSTPReadBufferLen)
	for {
		conn.SetReadDeadline(time.Now().Add(time.Minute))
		t, p, err := rd.ReadFrame(buf)
		if err != nil {
			return
		}
		switch t {
		case datapath.TypeData:
			h.Corp.Inject(p)
			if br.Buffered() == 0 {
				h.Corp.Flush()
			}
		case datapath.TypeDPDReq:
			h.writeFrame(datapath.TypeDPDResp, p)
		case datapath.TypeDisconnect:
			if len(p) > 0 {
				h.Logouts.Add(1)
			}
			return
		}
	}
}

// toClient frames a packet from the corporate stack onto the tunnel.
func (h *Headend) toClient(frame []byte) error {
	datapath.PutCSTPHeader(frame, datapath.TypeData, len(frame)-datapath.CSTPHeaderLen)
	h.mu.Lock()
	conn := h.current
	h.mu.Unlock()
	if conn == nil {
		return net.ErrClosed
	}
	_, err := conn.Write(frame)
	return err
}

func (h *Headend) writeFrame(t datapath.Type, p []byte) {
	f := make([]byte, datapath.CSTPHeaderLen+len(p))
	datapath.PutCSTPHeader(f, t, len(p))
	copy(f[datapath.CSTPHeaderLen:], p)
	h.mu.Lock()
	conn := h.current
	h.mu.Unlock()
	if conn != nil {
		conn.Write(f)
	}
}

func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fakehead"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
