package auth

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Identity sent in every config-auth request.
const (
	// ClientVersion is the <version who="vpn"> text.
	ClientVersion = "v9.01-ocnet"

	// DefaultUserAgent makes ocserv classify us as OpenConnect v4 or later
	// (protocol.md §1.2): XML forms, one X-CSTP-DNS list with IPv6, and
	// IPv6 routes. A major version of 3 or less would get the legacy
	// non-XML forms; an unknown agent loses IPv6 configuration.
	DefaultUserAgent = "Open AnyConnect VPN Agent " + ClientVersion

	// deviceID is the platform name of <device-id>.
	deviceID = "linux-64"
)

// request is one config-auth document we send: the init POST or an
// auth-reply.
type request struct {
	typ         string // "init" or "auth-reply"
	groupAccess string // init: the URL the user asked for
	groupSelect string // chosen group, "" for the headend default
	opaque      []byte // auth-reply: echoed verbatim
	answers     []answer
}

// answer is one child of <auth>; the value may be secret.
type answer struct {
	name, value string
}

// marshal renders the document.
//
// It is written out by hand instead of with xml.Encoder because ocserv
// (html.c unescape_html) decodes only the named entities &lt; &gt; &amp;
// &quot; &apos;, while xml.EscapeText emits numeric references such as
// &#34; for quotes and &#xA; for newlines, which would corrupt passwords.
// Text is therefore escaped with &amp; &lt; &gt; only.
//
// Element order matters to ocserv's substring scanner (protocol.md §1.5):
// it takes the first "<username>", the first "<password" prefix and the
// first "_password>" anywhere in the body. Nothing but the form's own
// answers is ever written with such names, and they come after the fixed
// header elements.
func (r *request) marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	fmt.Fprintf(&b, `<config-auth client="vpn" type="%s" aggregate-auth-version="2">`, r.typ)
	b.WriteString(`<version who="vpn">` + ClientVersion + `</version>`)
	b.WriteString(`<device-id>` + deviceID + `</device-id>`)

	// No SSO auth-methods: an ASA that sees them answers with a SAML form
	// instead of a password form, and SSO is not implemented.
	b.WriteString(`<capabilities></capabilities>`)

	if r.groupAccess != "" {
		if err := element(&b, "group-access", r.groupAccess); err != nil {
			return nil, err
		}
	}
	if r.opaque != nil {
		b.Write(r.opaque)
	}

	if r.typ != "init" {
		b.WriteString(`<auth>`)
		for _, a := range r.answers {
			if err := element(&b, a.name, a.value); err != nil {
				return nil, err
			}
		}
		b.WriteString(`</auth>`)
	}

	if r.groupSelect != "" {
		if err := element(&b, "group-select", r.groupSelect); err != nil {
			return nil, err
		}
	}
	b.WriteString(`</config-auth>` + "\n")
	return b.Bytes(), nil
}

// element writes <name>text</name>. The error names the element but never
// quotes the value, which may be a password.
func element(b *bytes.Buffer, name, text string) error {
	if !isName(name) {
		return fmt.Errorf("auth: form field name %q is not a usable XML name", clip(name))
	}
	esc, ok := escapeText(text)
	if !ok {
		return fmt.Errorf("auth: value of %s holds characters XML cannot carry", name)
	}
	b.WriteString("<" + name + ">" + esc + "</" + name + ">")
	return nil
}

var textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// escapeText escapes s for element content. It fails on invalid UTF-8 and
// on control characters that XML 1.0 forbids.
func escapeText(s string) (string, bool) {
	if !utf8.ValidString(s) {
		return "", false
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			return "", false
		}
	}
	return textEscaper.Replace(s), true
}

// isName accepts the conservative subset of XML names that form fields
// use: an ASCII letter or '_' followed by letters, digits, '_', '-', '.'.
func isName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// replyFor turns a filled form into the answers and group choice of the
// next auth-reply.
//
// Like openconnect, it sends the answers to ASA challenge inputs named
// "answer", "whichpin" and "new_password" as "password" and drops the
// "verify_*" confirmation inputs, which the headend does not expect back.
func replyFor(f *Form) (answers []answer, group string) {
	for _, fl := range f.Fields {
		switch {
		case fl.Name == groupField:
			group = fl.Value
			continue
		case fl.Type == FieldSubmit || fl.Type == FieldReset:
			continue
		case fl.Name == "verify_pin" || fl.Name == "verify_password":
			continue
		}

		name := fl.Name
		switch name {
		case "answer", "whichpin", "new_password":
			name = "password"
		}
		answers = append(answers, answer{name: name, value: fl.Value})
	}
	return answers, group
}
