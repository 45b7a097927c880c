// Package auth owns the aggregate-auth XML dialogue (config-auth documents)
// that logs a user in to an AnyConnect or ocserv headend: the init POST,
// the form rounds answered through a FillFunc, and the session cookie the
// headend grants. It hands that cookie to session; it never opens the
// tunnel and never stores credentials.
package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"github.com/ocnet/ocnet/trust"
)

// Errors callers branch on; match them with errors.Is.
var (
	// ErrAuthFailed means the headend refused the credentials (HTTP 401).
	ErrAuthFailed = errors.New("authentication failed")

	// ErrNotAnyConnect means the URL does not lead to an AnyConnect
	// headend: the answer was not a config-auth document.
	ErrNotAnyConnect = errors.New("not an AnyConnect headend")

	// ErrUnknownGroup means the requested group is not offered.
	ErrUnknownGroup = errors.New("unknown group")

	// ErrUnsupported means the headend wants an auth method ocnet lacks
	// (SSO, HostScan/CSD, certificate requested in XML).
	ErrUnsupported = errors.New("not supported")
)

const (
	// maxRounds bounds the POSTs of one login so a headend that keeps
	// re-asking cannot loop us forever.
	maxRounds = 16

	// maxRedirects bounds the redirects followed for one POST.
	maxRedirects = 5

	// maxBody caps a config-auth reply; real ones are a few KiB.
	maxBody = 1 << 20

	contentTypeXML = "application/xml; charset=utf-8"
)

// Options configures one login.
type Options struct {
	URL       *url.URL    // https://host[:port]/[group-path]
	TLS       *tls.Config // from trust.TLSConfig; nil means system defaults
	UserAgent string      // "" means DefaultUserAgent
	Group     string      // --authgroup value or label, "" = headend default
	Logger    *slog.Logger
}

// Result is what a successful login yields.
type Result struct {
	// Cookie is the webvpn session cookie value for CONNECT. Secret.
	Cookie string

	Banner  string // post-login banner, may be empty
	Message string // final message, may be empty

	// ServerPin is the pin-sha256 of the headend's leaf certificate, for
	// --authenticate output and for pinning the CONNECT to the same key.
	ServerPin string
}

// Login runs the config-auth dialogue until the headend grants a session
// cookie. fill is called once per form round.
//
// A refused password ends Login with ErrAuthFailed, whether the headend
// says so with a 401 (after which ocserv closes the connection) or by
// re-sending the form with "Login failed". Each call uses its own
// connection and cookie jar, so the caller may simply call Login again
// with fresh answers. Errors from fill are returned wrapped.
func Login(ctx context.Context, o Options, fill FillFunc) (*Result, error) {
	if o.URL == nil || o.URL.Scheme != "https" || o.URL.Host == "" {
		return nil, errors.New("auth: the headend URL must be https://host[:port]/[path]")
	}

	l, err := newLogin(o)
	if err != nil {
		return nil, err
	}
	defer l.transport.CloseIdleConnections()

	return l.run(ctx, fill)
}

// login is the state of one Login call.
type login struct {
	o         Options
	log       *slog.Logger
	ua        string
	transport *http.Transport
	client    *http.Client
	pin       string // of the last response's leaf certificate
}

func newLogin(o Options) (*login, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	ua := o.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}

	var cfg *tls.Config
	if o.TLS != nil {
		cfg = o.TLS.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	// The dialogue is HTTP/1.1; never offer h2 by ALPN.
	cfg.NextProtos = nil

	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 15 * time.Second}).DialContext,
		TLSClientConfig:       cfg,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ForceAttemptHTTP2:     false,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		// TODO: honour HTTPS_PROXY for reaching the headend; today the
		// dialogue always dials directly.
	}

	// One jar per login: webvpncontext and any ASA dialogue cookies are
	// echoed within this dialogue and forgotten after it.
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, fmt.Errorf("auth: cookie jar: %w", err)
	}

	l := &login{o: o, log: log.With("sub", "auth"), ua: ua, transport: tr}
	l.client = &http.Client{Transport: tr, Jar: jar, CheckRedirect: l.checkRedirect}
	return l, nil
}

// checkRedirect follows a few redirects as long as they keep the scheme.
// Otherwise the redirect response itself becomes the answer, which
// checkStatus reports as not a headend.
func (l *login) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects || req.URL.Scheme != via[0].URL.Scheme {
		l.log.Debug("not following redirect", "to", displayURL(req.URL), "hops", len(via))
		return http.ErrUseLastResponse
	}
	l.log.Debug("following redirect", "to", displayURL(req.URL))
	return nil
}

// run is the dialogue loop: init, then one POST per form until complete.
func (l *login) run(ctx context.Context, fill FillFunc) (*Result, error) {
	start := *l.o.URL
	if start.Path == "" {
		start.Path = "/"
	}
	target := start

	// The init carries no group-select even when o.Group is set: ocserv
	// puts whatever group the client names at the top of its list, known
	// or not, so only a list fetched without one shows which groups
	// exist. The choice goes with the first answers instead.
	req := &request{typ: "init", groupAccess: l.o.URL.String()}
	regrouped := false
	for round := 0; round < maxRounds; round++ {
		doc, resp, err := l.post(ctx, &target, req)
		if err != nil {
			return nil, err
		}

		switch doc.Type {
		case TypeComplete:
			return l.complete(doc, resp)
		case TypeAuthRequest:
		default:
			return nil, fmt.Errorf("auth: unexpected config-auth type %q", clip(doc.Type))
		}

		if err := refused(req, doc); err != nil {
			return nil, err
		}

		group, err := l.pickGroup(doc)
		if err != nil {
			return nil, err
		}
		if group != "" && doc.Opaque != nil && !regrouped {
			// An ASA builds the form per group (the tunnel-group in
			// opaque), so like openconnect ask again for the chosen
			// group's form instead of answering this one.
			l.log.Debug("asking for the form of the chosen group", "group", group)
			regrouped = true
			req = &request{typ: "init", groupAccess: l.o.URL.String(), groupSelect: group}
			target = start
			continue
		}

		next, err := l.answer(ctx, doc, fill)
		if err != nil {
			return nil, err
		}
		req = next

		// The form's action is relative to the page that carried it,
		// which after a redirect is not the URL we posted to.
		action := doc.Action
		if action == "" {
			action = "/"
		}
		u, err := resp.Request.URL.Parse(action)
		if err != nil || u.Scheme != "https" {
			return nil, fmt.Errorf("auth: form action %q is not an https URL", clip(action))
		}
		target = *u
	}
	return nil, fmt.Errorf("auth: no session after %d rounds", maxRounds)
}

// refused reports a password that the headend turned down by sending the
// form again with a "Login failed" notice instead of a 401.
//
// ocserv 1.1.6 (plain auth) does this twice before its 401, but once a
// password has failed it refuses every later one in that session, even
// the right one (seen live, with openconnect 9.01 too). Answering the
// same form again would only burn the user's retries, so Login ends with
// ErrAuthFailed and the caller's next Login starts a fresh session.
func refused(prev *request, doc *Document) error {
	answeredPassword := false
	for _, a := range prev.answers {
		if strings.Contains(a.name, "password") {
			answeredPassword = true
		}
	}
	if !answeredPassword {
		return nil
	}

	for _, text := range []string{doc.Form.Error, doc.Form.Message} {
		first, _, _ := strings.Cut(strings.TrimSpace(text), "\n")
		first = strings.TrimSpace(first)
		if len(first) >= 12 && strings.EqualFold(first[:12], "login failed") {
			return fmt.Errorf("auth: %w: %s", ErrAuthFailed, printable(clip(first)))
		}
	}
	return nil
}

// pickGroup applies o.Group to the form's group list. It returns the
// group's value when that differs from the list's pre-selected entry, as
// the form may then belong to another group; else "".
func (l *login) pickGroup(doc *Document) (string, error) {
	g := doc.Form.field(groupField)
	if g == nil || l.o.Group == "" {
		return "", nil
	}

	v, err := g.choose(l.o.Group)
	if err != nil {
		return "", err
	}
	changed := g.Value != v
	g.Value = v
	if changed {
		return v, nil
	}
	return "", nil
}

// answer checks a form for what we cannot do, applies the group choice,
// lets fill answer the rest and builds the auth-reply.
func (l *login) answer(ctx context.Context, doc *Document, fill FillFunc) (*request, error) {
	switch {
	case doc.SSO:
		return nil, fmt.Errorf("auth: headend requires single sign-on (SAML): %w",
			ErrUnsupported)
	case doc.HostScan:
		return nil, fmt.Errorf("auth: headend requires a HostScan/CSD posture check: %w",
			ErrUnsupported)
	case doc.ClientCertRequest:
		// TODO: redo the TLS handshake with a client certificate on a new
		// connection and re-POST init, as ASAs that ask in XML expect.
		return nil, fmt.Errorf("auth: headend asks for a client certificate in XML: %w",
			ErrUnsupported)
	case doc.Method != "" && !strings.EqualFold(doc.Method, "post"):
		return nil, fmt.Errorf("auth: form method %q: %w", clip(doc.Method), ErrUnsupported)
	case len(doc.Form.Fields) == 0:
		// Some headends report a refusal this way instead of with a 401.
		if msg := firstNonEmpty(doc.Form.Error, doc.Form.Message); msg != "" {
			return nil, fmt.Errorf("auth: headend sent a form without fields: %s",
				printable(clip(msg)))
		}
		return nil, errors.New("auth: headend sent a form without fields")
	}

	form := &doc.Form
	if form.needsFill() {
		if fill == nil {
			return nil, errors.New("auth: headend wants answers but no FillFunc was given")
		}
		if err := fill(ctx, form); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
	}

	// A group typed by the user must exist too; the headend would only
	// fail later with a vaguer error.
	// TODO: on an ASA, a group picked in fill other than the pre-selected
	// one should also re-POST init for that group's form, as pickGroup
	// does for o.Group; it is sent with these answers instead.
	if g := form.field(groupField); g != nil && g.Value != "" {
		v, err := g.choose(g.Value)
		if err != nil {
			return nil, err
		}
		g.Value = v
	}

	answers, group := replyFor(form)
	return &request{typ: "auth-reply", groupSelect: group, opaque: doc.Opaque,
		answers: answers}, nil
}

// complete extracts the session from a complete document.
func (l *login) complete(doc *Document, resp *http.Response) (*Result, error) {
	cookie := doc.SessionToken
	source := "session-token"
	if cookie == "" {
		cookie = l.webvpnCookie(resp)
		source = "Set-Cookie"
	}
	if cookie == "" {
		return nil, errors.New("auth: headend reported success but sent no session cookie")
	}

	l.log.Info("login complete", "cookie_from", source, "server_pin", l.pin)
	return &Result{
		Cookie:    cookie,
		Banner:    doc.Form.Banner,
		Message:   doc.Form.Message,
		ServerPin: l.pin,
	}, nil
}

// webvpnCookie finds the webvpn cookie in the final response, else in the
// jar (a redirect hop may have set it).
func (l *login) webvpnCookie(resp *http.Response) string {
	for _, c := range resp.Cookies() {
		if c.Name == "webvpn" && c.Value != "" {
			return c.Value
		}
	}
	for _, c := range l.client.Jar.Cookies(resp.Request.URL) {
		if c.Name == "webvpn" && c.Value != "" {
			return c.Value
		}
	}
	return ""
}

// post sends one config-auth document to u and decodes the answer.
func (l *login) post(ctx context.Context, u *url.URL, r *request) (
	*Document, *http.Response, error,
) {
	body, err := r.marshal()
	if err != nil {
		return nil, nil, err
	}

	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("auth: %w", err)
	}
	h := hreq.Header
	h.Set("User-Agent", l.ua)
	h.Set("Accept", "*/*")
	h.Set("Accept-Encoding", "identity")
	h.Set("X-Transcend-Version", "1")
	h.Set("X-Aggregate-Auth", "1")
	h.Set("Content-Type", contentTypeXML)
	// Never X-Support-HTTP-Auth: ocserv switches to GSSAPI when it sees it.

	l.logRequest(u, r)
	resp, err := l.client.Do(hreq)
	if err != nil {
		// url.Error would repeat the method and URL, with the query.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, fmt.Errorf("auth: POST %s: %w", displayURL(u), err)
	}
	defer resp.Body.Close()

	if resp.TLS != nil {
		l.pin = trust.PinFromState(*resp.TLS)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, nil, fmt.Errorf("auth: reading reply from %s: %w",
			displayURL(resp.Request.URL), err)
	}
	l.logResponse(resp)

	if err := checkStatus(resp); err != nil {
		return nil, nil, err
	}
	if len(data) > maxBody {
		return nil, nil, fmt.Errorf("auth: reply from %s exceeds %d bytes",
			displayURL(resp.Request.URL), maxBody)
	}

	doc, err := ParseDocument(data)
	if errors.Is(err, ErrNotAnyConnect) {
		return nil, nil, fmt.Errorf("auth: %w: %s answered with %s, not a config-auth document",
			ErrNotAnyConnect, displayURL(resp.Request.URL), describeType(resp))
	}
	if err != nil {
		return nil, nil, err
	}

	l.log.Debug("config-auth reply", "type", doc.Type, "auth_id", doc.Form.ID,
		"message", doc.Form.Message, "error", doc.Form.Error,
		"fields", fieldSummary(doc.Form.Fields), "opaque", doc.Opaque != nil,
		"session_token", redacted(doc.SessionToken))
	return doc, resp, nil
}

// checkStatus maps HTTP failures. ocserv answers wrong credentials with
// "401 <reason>" and an empty body, then closes the connection.
func checkStatus(resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}

	reason := strings.TrimSpace(strings.TrimPrefix(resp.Status, fmt.Sprint(resp.StatusCode)))
	reason = printable(reason)
	if resp.StatusCode == http.StatusUnauthorized {
		if reason == "" || strings.EqualFold(reason, ErrAuthFailed.Error()) ||
			strings.EqualFold(reason, "Unauthorized") {
			return fmt.Errorf("auth: %w", ErrAuthFailed)
		}
		return fmt.Errorf("auth: %w: %s", ErrAuthFailed, reason)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// Only reached when checkRedirect refused to go on.
		to := "nowhere"
		if loc, err := resp.Location(); err == nil {
			to = displayURL(loc)
		}
		return fmt.Errorf("auth: %w: %s redirects to %s (%d), not followed",
			ErrNotAnyConnect, displayURL(resp.Request.URL), to, resp.StatusCode)
	}
	return fmt.Errorf("auth: %s answered %d %s", displayURL(resp.Request.URL),
		resp.StatusCode, reason)
}

// displayURL shows a URL without its query, fragment or user info, which
// may carry tokens.
func displayURL(u *url.URL) string {
	v := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	if v.Path == "" {
		v.Path = "/"
	}
	return v.String()
}

// describeType names the content type of a response for an error.
func describeType(resp *http.Response) string {
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		return "no content type"
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		return mt
	}
	return printable(clip(ct))
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// printable drops control characters from server text quoted in errors.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
