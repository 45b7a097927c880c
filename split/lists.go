package split

// Parsers for the rule lists a user writes on the command line: domain
// lists (connect on demand, --include/--exclude names), app lists and
// routes. They return errors naming the bad entry and never panic.

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/ocnet/ocnet/session"
)

// ErrBadRule marks an entry of a rule list that cannot be parsed.
var ErrBadRule = errors.New("split: bad rule")

// maxEntryLen bounds one entry: a DNS name is at most 253 characters.
const maxEntryLen = 253

// domainEntry is one parsed DomainList entry.
type domainEntry struct {
	text  string // lower case, no trailing dot
	exact bool   // match the whole name, not a suffix
	raw   string // as written, for explanations
}

// DomainList is a list of name patterns, matched the way Cisco's
// connect-on-demand lists are:
//
//   - a host name such as "email.example.com" matches only that name;
//   - an entry with a leading dot such as ".example.org" matches any name
//     ending in ".example.org", so "a.example.org" but not
//     "notexample.org" (nor "example.org" itself);
//   - other entries, one label without a dot ("corp") or starting with
//     "*" ("*example.com"), match every name ending in that text.
//
// Names are compared without ASCII case and without a trailing dot. The
// zero value is an empty list that matches nothing.
type DomainList struct {
	entries []domainEntry
}

// ParseDomainList reads a list of entries separated by commas or white
// space.
func ParseDomainList(s string) (DomainList, error) {
	var l DomainList
	for _, f := range splitEntries(s) {
		e, err := parseDomainEntry(f)
		if err != nil {
			return DomainList{}, err
		}
		l.entries = append(l.entries, e)
	}
	return l, nil
}

func parseDomainEntry(raw string) (domainEntry, error) {
	if len(raw) > maxEntryLen {
		return domainEntry{}, fmt.Errorf("%w: domain entry %.20q...: longer than %d",
			ErrBadRule, raw, maxEntryLen)
	}
	text := strings.ToLower(strings.TrimSuffix(raw, "."))
	star := strings.HasPrefix(text, "*")
	text = strings.TrimPrefix(text, "*")
	if text == "" || text == "." {
		return domainEntry{}, fmt.Errorf("%w: domain entry %q matches nothing", ErrBadRule, raw)
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		ok := c == '-' || c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !ok {
			return domainEntry{}, fmt.Errorf("%w: domain entry %q: character %q not allowed",
				ErrBadRule, raw, c)
		}
	}
	if strings.Contains(text, "..") {
		return domainEntry{}, fmt.Errorf("%w: domain entry %q: empty label", ErrBadRule, raw)
	}

	exact := !star && text[0] != '.' && strings.Contains(text, ".")
	return domainEntry{text: text, exact: exact, raw: raw}, nil
}

// Match reports whether name matches an entry, and the first entry that
// does, as written. Match does not allocate.
func (l DomainList) Match(name string) (string, bool) {
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return "", false
	}
	for _, e := range l.entries {
		if e.exact {
			if strings.EqualFold(name, e.text) {
				return e.raw, true
			}
			continue
		}
		if len(name) >= len(e.text) && strings.EqualFold(name[len(name)-len(e.text):], e.text) {
			return e.raw, true
		}
	}
	return "", false
}

// Empty reports whether the list has no entry.
func (l DomainList) Empty() bool { return len(l.entries) == 0 }

// String returns the entries as written, comma separated.
func (l DomainList) String() string {
	s := make([]string, len(l.entries))
	for i, e := range l.entries {
		s[i] = e.raw
	}
	return strings.Join(s, ",")
}

// AppList is a list of application IDs ("com.example.mail", a proxy
// username, an executable path); an entry ending in "*" matches every ID
// that starts with the text before it, so "com.example.*" matches
// "com.example.mail" but not "com.example". IDs are compared exactly.
// The zero value is an empty list.
type AppList struct {
	entries []string
}

// ParseAppList reads a comma-separated list of app IDs.
func ParseAppList(s string) (AppList, error) {
	var l AppList
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if len(f) > maxEntryLen {
			return AppList{}, fmt.Errorf("%w: app %.20q...: longer than %d",
				ErrBadRule, f, maxEntryLen)
		}
		if i := strings.IndexByte(f, '*'); i >= 0 && i != len(f)-1 {
			return AppList{}, fmt.Errorf("%w: app %q: '*' only at the end", ErrBadRule, f)
		}
		for _, c := range []byte(f) {
			if c <= ' ' || c == 0x7f {
				return AppList{}, fmt.Errorf("%w: app %q: space or control character",
					ErrBadRule, f)
			}
		}
		l.entries = append(l.entries, f)
	}
	return l, nil
}

// Match reports whether app matches an entry, and the first that does.
// The empty ID matches only a lone "*". Match does not allocate.
func (l AppList) Match(app string) (string, bool) {
	for _, e := range l.entries {
		if pre, ok := strings.CutSuffix(e, "*"); ok {
			if strings.HasPrefix(app, pre) && (app != "" || pre == "") {
				return e, true
			}
			continue
		}
		if app == e {
			return e, true
		}
	}
	return "", false
}

// Empty reports whether the list has no entry.
func (l AppList) Empty() bool { return len(l.entries) == 0 }

// String returns the entries, comma separated.
func (l AppList) String() string { return strings.Join(l.entries, ",") }

// ParseRoute reads a route the way headends write them (session.ParseRoute:
// "net/24", "net/255.255.255.0", "2001:db8::/32" or a bare address), with
// errors that wrap ErrBadRule.
func ParseRoute(s string) (netip.Prefix, error) {
	p, err := session.ParseRoute(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: route %q: %w", ErrBadRule, s, err)
	}
	return p, nil
}

// ParseTargets reads an --include or --exclude value: routes (see
// ParseRoute) and name patterns (see DomainList), separated by commas or
// white space. An entry that starts like an address must parse as a
// route; anything else is a name pattern.
func ParseTargets(s string) ([]netip.Prefix, DomainList, error) {
	var routes []netip.Prefix
	var names DomainList
	for _, f := range splitEntries(s) {
		if looksLikeRoute(f) {
			r, err := ParseRoute(f)
			if err != nil {
				return nil, DomainList{}, err
			}
			routes = append(routes, r)
			continue
		}
		e, err := parseDomainEntry(f)
		if err != nil {
			return nil, DomainList{}, err
		}
		names.entries = append(names.entries, e)
	}
	return routes, names, nil
}

// looksLikeRoute tells an address from a name: an IPv6 address has a
// colon, an IPv4 one is digits and dots before any "/". A name made only
// of digits and dots is no valid host name anyway.
func looksLikeRoute(f string) bool {
	if strings.ContainsAny(f, ":/") {
		return true
	}
	return strings.Trim(f, "0123456789.") == ""
}

// splitEntries splits on commas and white space, dropping empty fields.
func splitEntries(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
}

// Merge appends the entries of o to l.
func (l DomainList) Merge(o DomainList) DomainList {
	l.entries = append(l.entries[:len(l.entries):len(l.entries)], o.entries...)
	return l
}

// Merge appends the entries of o to l.
func (l AppList) Merge(o AppList) AppList {
	l.entries = append(l.entries[:len(l.entries):len(l.entries)], o.entries...)
	return l
}
