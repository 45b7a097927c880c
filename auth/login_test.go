package auth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/ocnet/ocnet/trust"
)

// exchange is one request the fake headend expects and its answer.
type exchange struct {
	method  string   // default POST
	path    string   // expected request path
	want    []string // substrings the request body must contain
	notWant []string // substrings it must not contain
	cookie  string   // substring the Cookie header must contain
	noCook  bool     // the request must carry no Cookie header

	// The answer: raw bytes written on the hijacked connection, or a
	// handler, or status (default 200) + Set-Cookie lines + XML body.
	raw     string
	handle  http.HandlerFunc
	status  int
	cookies []string
	body    string
}

// headend is an httptest TLS server that plays a scripted dialogue and
// checks the headers every auth request must carry.
type headend struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	script []exchange
	n      int
}

func newHeadend(t *testing.T, script ...exchange) *headend {
	t.Helper()
	h := &headend{t: t, script: script}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(h.serve))
	h.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	return h
}

func (h *headend) serve(w http.ResponseWriter, r *http.Request) {
	t := h.t
	body, _ := io.ReadAll(r.Body)

	h.mu.Lock()
	i := h.n
	h.n++
	h.mu.Unlock()
	if i >= len(h.script) {
		t.Errorf("unexpected request %d: %s %s", i, r.Method, r.URL.Path)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	ex := h.script[i]

	method := ex.method
	if method == "" {
		method = http.MethodPost
	}
	if r.Method != method || r.URL.Path != ex.path {
		t.Errorf("request %d: %s %s, want %s %s", i, r.Method, r.URL.Path, method, ex.path)
	}
	checkHeaders(t, i, r)
	if r.Method == http.MethodPost && r.Header.Get("Content-Type") != contentTypeXML {
		t.Errorf("request %d: Content-Type %q", i, r.Header.Get("Content-Type"))
	}
	for _, s := range ex.want {
		if !strings.Contains(string(body), s) {
			t.Errorf("request %d body lacks %q:\n%s", i, s, body)
		}
	}
	for _, s := range ex.notWant {
		if strings.Contains(string(body), s) {
			t.Errorf("request %d body has %q:\n%s", i, s, body)
		}
	}
	if c := r.Header.Get("Cookie"); ex.cookie != "" && !strings.Contains(c, ex.cookie) {
		t.Errorf("request %d: Cookie %q lacks %q", i, c, ex.cookie)
	}
	if c := r.Header.Get("Cookie"); ex.noCook && c != "" {
		t.Errorf("request %d: Cookie %q, want none", i, c)
	}

	switch {
	case ex.raw != "":
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		buf.WriteString(ex.raw)
		buf.Flush()
		conn.Close()
	case ex.handle != nil:
		ex.handle(w, r)
	default:
		for _, c := range ex.cookies {
			w.Header().Add("Set-Cookie", c)
		}
		w.Header().Set("Content-Type", "text/xml")
		w.Header().Set("X-Transcend-Version", "1")
		if ex.status != 0 {
			w.WriteHeader(ex.status)
		}
		io.WriteString(w, ex.body)
	}
}

func checkHeaders(t *testing.T, i int, r *http.Request) {
	want := map[string]string{
		"User-Agent":          DefaultUserAgent,
		"Accept":              "*/*",
		"Accept-Encoding":     "identity",
		"X-Transcend-Version": "1",
		"X-Aggregate-Auth":    "1",
	}
	for k, v := range want {
		if got := r.Header.Get(k); got != v {
			t.Errorf("request %d: %s = %q, want %q", i, k, got, v)
		}
	}
	if _, ok := r.Header["X-Support-Http-Auth"]; ok {
		t.Errorf("request %d sends X-Support-HTTP-Auth", i)
	}
	if r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		t.Errorf("request %d uses %s, want HTTP/1.1", i, r.Proto)
	}
}

// options points Login at the headend, trusting its certificate by pin.
func (h *headend) options(t *testing.T) Options {
	u, err := url.Parse(h.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := trust.TLSConfig("127.0.0.1",
		trust.Options{Pins: []string{trust.Pin(h.srv.Certificate())}})
	if err != nil {
		t.Fatal(err)
	}
	return Options{URL: u, TLS: cfg}
}

func (h *headend) requests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// recorder answers forms from a table keyed by field name and keeps a
// copy of every form it saw.
type recorder struct {
	values map[string]string
	forms  []Form
}

func (r *recorder) fill(_ context.Context, f *Form) error {
	c := *f
	c.Fields = nil
	for _, fl := range f.Fields {
		cf := *fl
		c.Fields = append(c.Fields, &cf)
		if v, ok := r.values[fl.Name]; ok {
			fl.Value = v
		}
	}
	r.forms = append(r.forms, c)
	return nil
}

const (
	testCookie  = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	testContext = "ZmFrZS1jb250ZXh0LWlkLWZvci10aGUtdGVzdHMtISE="
	asaToken    = "0A1B2C3D4E5F@32768@ABCD@0123456789ABCDEF0123456789ABCDEF01234567"

	ocservSecondary = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request">
<version who="sg">0.1(1)</version>
<auth id="main">
<message>Enter the code from your token.</message>
<form method="post" action="/auth">
<input type="password" name="secondary_password" label="Password2:" />
</form></auth>
</config-auth>
`
	htmlLogin = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>" +
		"<form action=/login><input name=user></form></body></html>\n"
)

// ocservCookies is what ocserv 1.1.6 sets on a complete reply.
var ocservCookies = []string{
	"webvpncontext=" + testContext + "; Secure; HttpOnly",
	"webvpn=" + testCookie + "; Secure; HttpOnly",
	"webvpnc=; expires=Thu, 01 Jan 1970 22:00:00 GMT; path=/; Secure; HttpOnly",
	"webvpnc=bu:/&p:t&iu:1/&sh:0123456789ABCDEF0123456789ABCDEF01234567; path=/; Secure; HttpOnly",
}

// ocservPasswordFlow is the capture from handshake-example.txt with a
// group list: init, username (+group), password, complete.
func ocservPasswordFlow() []exchange {
	return []exchange{
		{path: "/", want: []string{`type="init"`, `<device-id>linux-64</device-id>`,
			`<group-access>https://127.0.0.1:`},
			notWant: []string{"single-sign-on", "<auth>", "group-select"},
			cookies: []string{"webvpncontext=; expires=Thu, 01 Jan 1970 22:00:00 GMT; " +
				"path=/; Secure; HttpOnly"},
			body: ocservUsernameGroup},
		{path: "/auth", want: []string{`type="auth-reply"`,
			"<auth><username>alice</username></auth><group-select>engineering</group-select>" +
				"</config-auth>"},
			notWant: []string{"password"},
			cookies: []string{"webvpncontext=" + testContext + "; Max-Age=300; Secure; HttpOnly"},
			body:    ocservPassword},
		{path: "/auth", cookie: "webvpncontext=" + testContext,
			want:    []string{"<auth><password>p&lt;ss&amp;w0rd</password></auth>"},
			notWant: []string{"group-select", "username"},
			cookies: ocservCookies, body: ocservComplete},
	}
}

func TestLogin(t *testing.T) {
	ocservAnswers := map[string]string{"username": "alice", "password": "p<ss&w0rd"}

	tests := []struct {
		name    string
		group   string
		values  map[string]string
		script  func(h *headend) []exchange
		want    Result // ServerPin is checked separately
		wantErr error  // errors.Is target
		errHas  []string
		check   func(t *testing.T, forms []Form)
	}{
		{
			name:   "ocserv username password and group chosen by label",
			group:  "Engineering",
			values: ocservAnswers,
			script: func(*headend) []exchange { return ocservPasswordFlow() },
			want:   Result{Cookie: testCookie, Banner: "Welcome to the example VPN"},
			check: func(t *testing.T, forms []Form) {
				if len(forms) != 2 {
					t.Fatalf("fill called %d times, want 2", len(forms))
				}
				g := forms[0].field("group_list")
				if g == nil || g.Value != "engineering" {
					t.Errorf("group field before fill = %+v, want preset engineering", g)
				}
				if forms[1].Message != "Please enter your password." {
					t.Errorf("second form message %q", forms[1].Message)
				}
			},
		},
		{
			name:   "auth POST redirected twice to an HTML login page",
			values: ocservAnswers,
			script: func(h *headend) []exchange {
				return []exchange{
					{path: "/", body: ocservPassword},
					{path: "/auth", handle: redirect("/portal")},
					{method: http.MethodGet, path: "/portal", handle: redirect("/login.html")},
					{method: http.MethodGet, path: "/login.html", handle: htmlPage},
				}
			},
			wantErr: ErrNotAnyConnect,
			errHas:  []string{"/login.html", "text/html"},
		},
		{
			name: "complete without message but with profile manifest",
			script: func(*headend) []exchange {
				return []exchange{{path: "/", cookies: ocservCookies, body: ocservProfile}}
			},
			want: Result{Cookie: testCookie},
		},
		{
			name: "cookie only as Set-Cookie webvpn (ocserv)",
			script: func(*headend) []exchange {
				return []exchange{{path: "/", cookies: ocservCookies, body: ocservComplete}}
			},
			want: Result{Cookie: testCookie, Banner: "Welcome to the example VPN"},
		},
		{
			name: "cookie only as session-token (Cisco)",
			script: func(*headend) []exchange {
				return []exchange{{path: "/", body: asaComplete}}
			},
			want: Result{Cookie: asaToken},
		},
		{
			name: "session-token wins over Set-Cookie",
			script: func(*headend) []exchange {
				return []exchange{{path: "/", cookies: ocservCookies, body: asaComplete}}
			},
			want: Result{Cookie: asaToken},
		},
		{
			name: "complete without any cookie",
			script: func(*headend) []exchange {
				return []exchange{{path: "/", body: ocservComplete}}
			},
			errHas: []string{"no session cookie"},
		},
		{
			name: "opaque comes back byte for byte",
			values: map[string]string{"username": "alice", "password": "first-secret",
				"secondary_password": "123456"},
			script: func(*headend) []exchange {
				odd := strings.Replace(asaRequest, asaOpaque, oddOpaque, 1)
				return []exchange{
					{path: "/", body: odd},
					// No form action: the reply goes to "/".
					{path: "/", want: []string{"\n<config-auth",
						"</capabilities>" + oddOpaque + "<auth>",
						"<auth><username>alice</username><password>first-secret</password>" +
							"<secondary_password>123456</secondary_password></auth>" +
							"<group-select>employees</group-select>"},
						body: asaComplete},
				}
			},
			want: Result{Cookie: asaToken},
		},
		{
			name:  "ASA group other than the preselected one re-posts init",
			group: "contractors",
			values: map[string]string{"username": "alice", "password": "first-secret",
				"secondary_password": "123456"},
			script: func(*headend) []exchange {
				other := strings.NewReplacer(`EMPLOYEES`, `CONTRACTORS`,
					`"employees" selected="true"`, `"employees"`,
					`"contractors"`, `"contractors" selected="true"`).Replace(asaRequest)
				return []exchange{
					{path: "/", notWant: []string{"group-select"}, body: asaRequest},
					{path: "/", want: []string{`type="init"`,
						"<group-select>contractors</group-select>"},
						notWant: []string{"<auth>", "opaque"}, body: other},
					{path: "/", want: []string{"CONTRACTORS",
						"</auth><group-select>contractors</group-select>"},
						notWant: []string{"EMPLOYEES"}, body: asaComplete},
				}
			},
			want: Result{Cookie: asaToken},
			check: func(t *testing.T, forms []Form) {
				if len(forms) != 1 {
					t.Errorf("fill called %d times, want once, for the second form", len(forms))
				}
			},
		},
		{
			name:   "401 with no body",
			values: ocservAnswers,
			script: func(*headend) []exchange {
				return []exchange{
					{path: "/", body: ocservPassword},
					{path: "/auth", raw: "HTTP/1.1 401 No password\r\nContent-Length: 0\r\n\r\n"},
				}
			},
			wantErr: ErrAuthFailed,
			errHas:  []string{"authentication failed: No password"},
		},
		{
			name: "secondary_password round",
			values: map[string]string{"username": "alice", "password": "pw",
				"secondary_password": "123456"},
			script: func(*headend) []exchange {
				flow := ocservPasswordFlow()
				flow[1].want = []string{"<auth><username>alice</username></auth></config-auth>"}
				flow[2].cookies = nil
				flow[2].want = []string{"<auth><password>pw</password></auth>"}
				flow[2].body = ocservSecondary
				return append(flow, exchange{path: "/auth",
					want: []string{
						"<auth><secondary_password>123456</secondary_password></auth>"},
					notWant: []string{"<password>"}, cookies: ocservCookies, body: ocservComplete})
			},
			want: Result{Cookie: testCookie, Banner: "Welcome to the example VPN"},
			check: func(t *testing.T, forms []Form) {
				if len(forms) != 3 || forms[2].Message != "Enter the code from your token." ||
					forms[2].Fields[0].Label != "Password2:" {
					t.Errorf("forms = %+v", forms)
				}
			},
		},
		{
			name:  "unknown group lists the offered groups",
			group: "marketing",
			script: func(*headend) []exchange {
				// ocserv would list a group named in init as if it
				// existed, so init must not name it.
				return []exchange{{path: "/", notWant: []string{"group-select"},
					body: ocservUsernameGroup}}
			},
			wantErr: ErrUnknownGroup,
			errHas:  []string{`"marketing"`, "engineering (Engineering), sales, DEFAULT"},
			check: func(t *testing.T, forms []Form) {
				if len(forms) != 0 {
					t.Errorf("fill called for an unknown group")
				}
			},
		},
		{
			name:   "error element surfaced to the form",
			values: map[string]string{"username": "alice", "password": "pw"},
			script: func(*headend) []exchange {
				form := `<config-auth client="vpn" type="auth-request"><auth id="main">%s<form>` +
					`<input type="text" name="username" label="Username:"/>` +
					`<input type="password" name="password" label="Password:"/>` +
					`</form></auth></config-auth>`
				return []exchange{
					{path: "/", body: strings.Replace(form, "%s", "", 1)},
					{path: "/", body: strings.Replace(form, "%s",
						"<error>Unknown user or wrong code.</error>", 1)},
					{path: "/", body: asaComplete},
				}
			},
			want: Result{Cookie: asaToken},
			check: func(t *testing.T, forms []Form) {
				if len(forms) != 2 || forms[0].Error != "" ||
					forms[1].Error != "Unknown user or wrong code." {
					t.Errorf("form errors = %+v", forms)
				}
			},
		},
		{
			name:   "ocserv Login failed form after a password ends the login",
			values: ocservAnswers,
			script: func(*headend) []exchange {
				failed := strings.Replace(ocservPassword, "Please enter your password.",
					"Login failed.\nPlease enter your password.", 1)
				return []exchange{
					{path: "/", body: ocservPassword},
					{path: "/auth", body: failed},
				}
			},
			wantErr: ErrAuthFailed,
			errHas:  []string{"authentication failed: Login failed."},
			check: func(t *testing.T, forms []Form) {
				if len(forms) != 1 {
					t.Errorf("fill called %d times, want once", len(forms))
				}
			},
		},
		{
			name:   "ASA error element after a password ends the login",
			values: map[string]string{"username": "alice", "password": "pw"},
			script: func(*headend) []exchange {
				form := `<config-auth client="vpn" type="auth-request"><auth id="main">` +
					`<error id="98" param1="" param2="">Login failed.</error><form>` +
					`<input type="password" name="password" label="Password:"/>` +
					`</form></auth></config-auth>`
				return []exchange{
					{path: "/", body: strings.Replace(form, "Login failed.", "", 1)},
					{path: "/", body: form},
				}
			},
			wantErr: ErrAuthFailed,
		},
		{
			name: "SSO form is not supported",
			script: func(*headend) []exchange {
				return []exchange{{path: "/", body: asaSSO}}
			},
			wantErr: ErrUnsupported,
			errHas:  []string{"single sign-on"},
		},
		{
			name: "host-scan is not supported",
			script: func(*headend) []exchange {
				return []exchange{{path: "/", body: hostScan}}
			},
			wantErr: ErrUnsupported,
			errHas:  []string{"HostScan"},
		},
		{
			name: "404 on the group path",
			script: func(*headend) []exchange {
				return []exchange{{path: "/", status: http.StatusNotFound}}
			},
			errHas: []string{"404"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHeadend(t)
			h.script = tt.script(h)
			o := h.options(t)
			o.Group = tt.group
			rec := &recorder{values: tt.values}

			res, err := Login(context.Background(), o, rec.fill)

			if tt.check != nil {
				tt.check(t, rec.forms)
			}
			if got := h.requests(); got != len(h.script) {
				t.Errorf("headend saw %d requests, script has %d", got, len(h.script))
			}
			if tt.wantErr != nil || tt.errHas != nil {
				if err == nil {
					t.Fatalf("Login succeeded: %+v", res)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want errors.Is %v", err, tt.wantErr)
				}
				t.Logf("error: %v", err)
				for _, s := range append(tt.errHas, "auth: ") {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("err = %q, want it to contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			if res.ServerPin != trust.Pin(h.srv.Certificate()) {
				t.Errorf("ServerPin = %q, want the test server's pin", res.ServerPin)
			}
			res.ServerPin = ""
			if *res != tt.want {
				t.Errorf("Result = %+v, want %+v", *res, tt.want)
			}
		})
	}
}

// oddOpaque is valid XML whose exact bytes a re-encoder would change.
const oddOpaque = "<opaque  is-for='sg'>\n <tunnel-group>A&amp;B</tunnel-group><x a=\"1\"/>" +
	"<!-- keep --><config-hash>1700000000000</config-hash></opaque >"

func htmlPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, htmlLogin)
}

func redirect(to string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, to, http.StatusFound)
	}
}

// TestLoginAgainAfter401 shows Login is retry-safe: the second call starts
// a new dialogue on a new connection without the first one's cookies.
func TestLoginAgainAfter401(t *testing.T) {
	h := newHeadend(t,
		exchange{path: "/", cookies: []string{"webvpncontext=" + testContext + "; Secure"},
			body: ocservPassword},
		exchange{path: "/auth", cookie: "webvpncontext=" + testContext,
			raw: "HTTP/1.1 401 Authentication failed\r\nContent-Length: 0\r\n\r\n"},
		exchange{path: "/", noCook: true, body: ocservPassword},
		exchange{path: "/auth", want: []string{"<password>right</password>"},
			cookies: ocservCookies, body: ocservComplete},
	)
	o := h.options(t)

	_, err := Login(context.Background(), o, (&recorder{values: map[string]string{
		"password": "wrong"}}).fill)
	if !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("first Login: %v, want ErrAuthFailed", err)
	}
	if err.Error() != "auth: authentication failed" {
		t.Errorf("err = %q, want the reason phrase not repeated", err)
	}

	res, err := Login(context.Background(), o, (&recorder{values: map[string]string{
		"password": "right"}}).fill)
	if err != nil {
		t.Fatalf("second Login: %v", err)
	}
	if res.Cookie != testCookie {
		t.Errorf("Cookie = %q", res.Cookie)
	}
}

// TestLoginKeepsSecretsOutOfLogs runs full dialogues with debug logging
// and checks that no password, cookie or token reaches the log.
func TestLoginKeepsSecretsOutOfLogs(t *testing.T) {
	const (
		password = "hunter2-Sekrit-pw"
		hidden   = "hidden-Sekrit-tok"
		cookie   = "c2Vrcml0LWNvb2tpZS12YWx1ZS1TZWtyaXQtMTIzNDU="
		token    = "Sekrit@token@value"
	)
	tests := []struct {
		name   string
		script []exchange
	}{
		{"ocserv cookie", []exchange{
			{path: "/", cookies: []string{"webvpncontext=" + cookie + "; Secure"},
				body: ocservPassword},
			{path: "/auth", cookies: []string{"webvpn=" + cookie + "; Secure"},
				body: ocservComplete},
		}},
		{"ASA token and hidden field", []exchange{
			{path: "/", body: `<config-auth type="auth-request"><auth id="main"><form>` +
				`<input type="hidden" name="tok" value="` + hidden + `"/>` +
				`<input type="password" name="password"/></form></auth></config-auth>`},
			{path: "/", want: []string{hidden},
				body: strings.Replace(asaComplete, asaToken, token, 1)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHeadend(t, tt.script...)
			var buf bytes.Buffer
			o := h.options(t)
			debug := &slog.HandlerOptions{Level: slog.LevelDebug}
			o.Logger = slog.New(slog.NewTextHandler(&buf, debug))

			res, err := Login(context.Background(), o,
				(&recorder{values: map[string]string{"password": password}}).fill)
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			if res.Cookie == "" {
				t.Fatal("no cookie")
			}

			log := buf.String()
			if !strings.Contains(log, "config-auth POST") {
				t.Fatalf("nothing was logged:\n%s", log)
			}
			for _, s := range []string{password, hidden, cookie, token, "Sekrit"} {
				if strings.Contains(log, s) {
					t.Errorf("log contains secret %q:\n%s", s, log)
				}
			}
		})
	}
}

func TestLoginRejectsBadURL(t *testing.T) {
	for _, raw := range []string{"http://vpn.example.com/", "https:///x", "vpn.example.com"} {
		t.Run(raw, func(t *testing.T) {
			u, _ := url.Parse(raw)
			if _, err := Login(context.Background(), Options{URL: u}, nil); err == nil {
				t.Fatal("Login accepted it")
			}
		})
	}
}

// TestLoginUntrustedCertificate shows the trust error reaching the caller
// intact, so it can print the pin and exit with the right status.
func TestLoginUntrustedCertificate(t *testing.T) {
	h := newHeadend(t)
	o := h.options(t)
	cfg, err := trust.TLSConfig("127.0.0.1", trust.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o.TLS = cfg

	_, err = Login(context.Background(), o, nil)
	var te *trust.Error
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a *trust.Error inside", err)
	}
	if te.Pin != trust.Pin(h.srv.Certificate()) {
		t.Errorf("Pin = %q", te.Pin)
	}
	if strings.Count(err.Error(), "127.0.0.1") > 1 {
		t.Errorf("err = %q repeats the URL", err)
	}
}
