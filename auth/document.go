package auth

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Document types in the config-auth type attribute that Login acts on.
const (
	TypeAuthRequest = "auth-request"
	TypeComplete    = "complete"
)

// Document is one config-auth reply of the headend, decoded. Nothing in it
// aliases the input.
type Document struct {
	Type string // config-auth type: "auth-request", "complete", ...

	// Form holds the <auth> element: id, title, message, error, banner
	// and the inputs of its <form>, in document order.
	Form Form

	// Method and Action are the <form> attributes; both are often absent
	// on an ASA, which means POST to "/".
	Method, Action string

	// Opaque is the <opaque> element exactly as received, start and end
	// tags included, or nil. ASAs keep their dialogue state in it and
	// must get it back byte for byte.
	Opaque []byte

	// SessionToken is the <session-token> text: the session cookie on an
	// ASA. Secret.
	SessionToken string

	// HostScan is set when the headend asks for a HostScan/CSD posture
	// check (host-scan or csd elements).
	HostScan bool

	// SSO is set when the form wants a single-sign-on (SAML) login.
	SSO bool

	// ClientCertRequest is set when an ASA asks, in XML, for a TLS client
	// certificate on a new connection.
	ClientCertRequest bool

	// Profiles lists the files of a vpn-profile-manifest, if any.
	Profiles []Profile
}

// Profile is one file of a vpn-profile-manifest (an AnyConnect XML profile
// the headend offers for download).
type Profile struct {
	URI  string
	Hash string // hex digest, type in HashType
	// HashType names the digest, "sha1" on ocserv.
	HashType string
}

// ParseDocument decodes a config-auth document. Input that is not such a
// document at all (HTML, another root element, not XML) gives an error
// wrapping ErrNotAnyConnect; a broken config-auth document gives a plain
// error. It never panics on any input.
func ParseDocument(b []byte) (*Document, error) {
	p := &parser{d: xml.NewDecoder(bytes.NewReader(b)), in: b, doc: &Document{}}

	// ASA banners may use HTML entities such as &nbsp;; accept them rather
	// than failing the login over a banner.
	p.d.Entity = xml.HTMLEntity

	if err := p.root(); err != nil {
		return nil, err
	}
	if err := p.children(); err != nil {
		return nil, fmt.Errorf("auth: malformed config-auth document: %w", err)
	}
	return p.doc, nil
}

// parser walks the token stream. Every element it does not descend into
// is consumed whole (Skip or DecodeElement), so the stack always mirrors
// the open elements.
type parser struct {
	d     *xml.Decoder
	in    []byte
	doc   *Document
	stack []string
}

// errNoRoot marks input without a config-auth root element.
var errNoRoot = errors.New("no config-auth root element")

// root reads up to the config-auth start tag.
func (p *parser) root() error {
	for {
		tok, err := p.d.Token()
		if err != nil {
			if err == io.EOF {
				err = errNoRoot
			}
			return fmt.Errorf("auth: %w: %v", ErrNotAnyConnect, err)
		}

		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "config-auth" {
				return fmt.Errorf("auth: %w: root element is <%s>, not <config-auth>",
					ErrNotAnyConnect, clip(t.Name.Local))
			}
			p.doc.Type = attr(t, "type")
			p.stack = append(p.stack, t.Name.Local)
			return nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return fmt.Errorf("auth: %w: text before the root element", ErrNotAnyConnect)
			}
		}
	}
}

// children reads the inside of config-auth up to its end tag.
func (p *parser) children() error {
	for len(p.stack) > 0 {
		off := p.d.InputOffset()
		tok, err := p.d.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}

		switch t := tok.(type) {
		case xml.StartElement:
			if err := p.element(t, off); err != nil {
				return err
			}
		case xml.EndElement:
			p.stack = p.stack[:len(p.stack)-1]
		}
	}
	return nil
}

// element handles one start tag at the current depth; off is the input
// offset of its '<'.
func (p *parser) element(t xml.StartElement, off int64) error {
	parent := p.stack[len(p.stack)-1]
	name := t.Name.Local

	switch {
	case name == "host-scan" || strings.HasPrefix(name, "host-scan-") ||
		strings.HasPrefix(name, "csd"):
		p.doc.HostScan = true
		return p.d.Skip()

	case strings.HasPrefix(name, "sso-v2-"):
		p.doc.SSO = true
		return p.d.Skip()

	case name == "client-cert-request" || name == "multiple-client-cert-request":
		p.doc.ClientCertRequest = true
		return p.d.Skip()

	case parent == "config-auth" && name == "opaque":
		return p.opaque(off)

	case parent == "config-auth" && name == "session-token":
		return p.text(t, &p.doc.SessionToken)

	case parent == "config-auth" && name == "auth":
		p.doc.Form.ID = attr(t, "id")

	case parent == "auth" && name == "form":
		p.doc.Method = attr(t, "method")
		p.doc.Action = attr(t, "action")

	case parent == "auth" && name == "title":
		return p.text(t, &p.doc.Form.Title)
	case parent == "auth" && name == "message":
		return p.text(t, &p.doc.Form.Message)
	case parent == "auth" && name == "error":
		return p.text(t, &p.doc.Form.Error)
	case parent == "auth" && name == "banner":
		return p.text(t, &p.doc.Form.Banner)

	case parent == "form" && name == "input":
		p.input(t)
		return p.d.Skip()
	case parent == "form" && name == "select":
		return p.selectList(t)

	case parent == "config-auth" && name == "config",
		parent == "config" && name == "vpn-profile-manifest",
		parent == "vpn-profile-manifest" && name == "vpn":
		// Descend towards the profile files.

	case parent == "vpn" && name == "file":
		return p.profile(t)

	default:
		return p.d.Skip()
	}

	p.stack = append(p.stack, name)
	return nil
}

// opaque captures the raw bytes of the element that starts at off.
func (p *parser) opaque(off int64) error {
	if err := p.d.Skip(); err != nil {
		return err
	}
	end := p.d.InputOffset()
	if p.doc.Opaque != nil {
		return nil // only the first one is echoed
	}
	if off < 0 || end > int64(len(p.in)) || off >= end {
		return errors.New("opaque element offsets out of range")
	}
	p.doc.Opaque = bytes.Clone(p.in[off:end])
	return nil
}

// text stores the trimmed character data of t in *dst; the first
// non-empty occurrence of an element wins.
func (p *parser) text(t xml.StartElement, dst *string) error {
	var s string
	if err := p.d.DecodeElement(&s, &t); err != nil {
		return err
	}
	if *dst == "" {
		*dst = strings.TrimSpace(s)
	}
	return nil
}

// input adds an <input> to the form.
func (p *parser) input(t xml.StartElement) {
	f := &Field{
		Type:  strings.ToLower(attr(t, "type")),
		Name:  attr(t, "name"),
		Label: attr(t, "label"),
		Value: attr(t, "value"),
	}
	if f.Type == "" {
		f.Type = FieldText // the HTML default
	}
	if f.Type == FieldSSO {
		p.doc.SSO = true
	}
	p.doc.Form.Fields = append(p.doc.Form.Fields, f)
}

// xmlOption is an <option>; a missing value attribute means the text is
// the value (ocserv's default-select-group entry).
type xmlOption struct {
	Value    *string `xml:"value,attr"`
	Selected string  `xml:"selected,attr"`
	Text     string  `xml:",chardata"`
}

type xmlSelect struct {
	Options []xmlOption `xml:"option"`
}

// selectList adds a <select> with its options; a selected option becomes
// the field's initial value.
func (p *parser) selectList(t xml.StartElement) error {
	var s xmlSelect
	if err := p.d.DecodeElement(&s, &t); err != nil {
		return err
	}

	f := &Field{Type: FieldSelect, Name: attr(t, "name"), Label: attr(t, "label")}
	for _, o := range s.Options {
		opt := Option{Label: strings.TrimSpace(o.Text)}
		if o.Value != nil {
			opt.Value = *o.Value
		} else {
			opt.Value = opt.Label
		}
		if opt.Label == "" {
			opt.Label = opt.Value
		}
		if f.Value == "" && isTrue(o.Selected) {
			f.Value = opt.Value
		}
		f.Options = append(f.Options, opt)
	}
	p.doc.Form.Fields = append(p.doc.Form.Fields, f)
	return nil
}

type xmlHash struct {
	Type  string `xml:"type,attr"`
	Value string `xml:",chardata"`
}

type xmlFile struct {
	URI  string  `xml:"uri"`
	Hash xmlHash `xml:"hash"`
}

// profile adds one vpn-profile-manifest <file>.
func (p *parser) profile(t xml.StartElement) error {
	var f xmlFile
	if err := p.d.DecodeElement(&f, &t); err != nil {
		return err
	}
	p.doc.Profiles = append(p.doc.Profiles, Profile{
		URI:      strings.TrimSpace(f.URI),
		Hash:     strings.TrimSpace(f.Hash.Value),
		HashType: f.Hash.Type,
	})
	return nil
}

// attr returns the value of t's attribute called name, or "".
func attr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func isTrue(s string) bool {
	return s == "true" || s == "selected" || s == "1"
}

// clip shortens server-supplied text quoted in an error.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	// Cut on a rune boundary so the result stays valid UTF-8.
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
