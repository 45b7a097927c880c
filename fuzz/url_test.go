package fuzz

import (
	"strconv"
	"strings"
	"testing"

	"github.com/ocnet/ocnet/session"
)

// FuzzServerURL parses arbitrary text as the server URL a user types, the
// way ocnet connect does. It must never panic, an accepted URL must be
// https with a host and no user info left in it, and neither an error nor
// RedactURL may repeat a password written into the URL.
func FuzzServerURL(f *testing.F) {
	for _, s := range []string{
		"vpn.example.com",
		"vpn.example.com:8443",
		"https://alice@vpn.example.com/",
		"https://alice:Secr3tPW@vpn.example.com/",
		"https:///alice:Secr3tPW@vpn.example.com",
		"alice:Secr3tPW@vpn.example.com/%zz",
		"http://vpn.example.com/",
		"https://[::1]:443/group",
		"https://a:b@c@d/",
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, s string) {
		secret := password(s)

		u, _, err := session.ParseServerURL(s)
		if err != nil {
			if secret != "" && strings.Contains(err.Error(), secret) {
				t.Fatalf("error repeats the password %q: %v", secret, err)
			}
			return
		}
		if secret != "" {
			t.Fatalf("accepted %q, which holds a password", s)
		}
		if u.Scheme != "https" || u.Hostname() == "" || u.User != nil {
			t.Fatalf("accepted %q as %q", s, u.String())
		}
	})
}

// password returns a distinctive password written in s as
// "scheme://user:PASSWORD@", or "" when s holds none worth checking: short
// ones, ones found elsewhere in s and ones escaping could make up may
// appear in a message by chance.
func password(s string) string {
	// What precedes "://" is a scheme only without these; otherwise the
	// "://" sits in a path, query or fragment, which hold no password.
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || strings.ContainsAny(scheme, "/?#@") {
		rest = s
	}
	rest = strings.TrimLeft(rest, "/")
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	// Escaping (%40, \x10) makes hex digits and x, u, U out of other
	// text; a password without a letter beyond those may be such an echo.
	if !ok || len(pw) < 6 || strings.ContainsAny(pw, "%") ||
		!strings.ContainsAny(pw, "ghijklmnopqrstvwyzGHIJKLMNOPQRSTVWXYZ") {
		return ""
	}
	if strings.Contains(strconv.Quote(strings.Replace(s, pw, "", 1)), pw) {
		return "" // it appears elsewhere in s (quoted, as messages show it)
	}
	return pw
}
