package session

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ParseServerURL accepts "host", "host:port" or a full https URL, and
// "user@" in front of the host, which it returns apart: the URL it
// returns has no user info, so nothing downstream can log it. A password
// in the URL is refused, since it would sit in the process list and the
// shell's history; no message repeats it.
func ParseServerURL(s string) (*url.URL, string, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error would quote the URL whole, password and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		// An escape error quotes the bad escape, which may be a piece
		// of the password.
		var ee url.EscapeError
		if errors.As(err, &ee) && RedactURL(s) != s {
			err = errors.New("invalid %-escape")
		}
		return nil, "", fmt.Errorf("server URL %q: %w", RedactURL(s), err)
	}
	if _, ok := u.User.Password(); ok {
		return nil, "", fmt.Errorf("server URL %q holds a password; leave it out and "+
			"type it at the prompt, or pipe it to --passwd-on-stdin", u.Redacted())
	}

	// redactURL, not u.Redacted: with extra slashes ("https:///a:pw@h")
	// the user info parses as a path, which Redacted shows.
	if u.Scheme != "https" {
		return nil, "", fmt.Errorf("server URL %q: only https is supported", RedactURL(s))
	}
	if u.Hostname() == "" {
		return nil, "", fmt.Errorf("server URL %q has no host", RedactURL(s))
	}
	user := u.User.Username()
	u.User = nil
	return u, user, nil
}

// RedactURL hides whatever may be user info in a server URL that may not
// parse, for messages: everything from after the scheme and its slashes
// up to the last "@" before any query or fragment. A path holding "@" is
// hidden too; a typo such as "https:/alice:pw@vpn" must not show pw.
func RedactURL(s string) string {
	end := len(s)
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		end = i
	}
	at := strings.LastIndex(s[:end], "@")
	if at < 0 {
		return s
	}

	start := 0
	if i := strings.Index(s[:at], ":"); i > 0 && isScheme(s[:i]) && s[i+1] == '/' {
		start = i + 1
	}
	for start < at && s[start] == '/' {
		start++
	}
	return s[:start] + "xxxxx" + s[at:]
}

// isScheme reports whether s is a URL scheme (RFC 3986 section 3.1).
func isScheme(s string) bool {
	for i, c := range s {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		other := '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'
		if !letter && (i == 0 || !other) {
			return false
		}
	}
	return s != ""
}
