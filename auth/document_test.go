package auth

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// Replies from protocol-testvectors.md §1 and §2 and the ocserv capture.
const (
	ocservUsernameGroup = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request">
<version who="sg">0.1(1)</version>
<auth id="main">
<message>Please enter your username.</message>
<form method="post" action="/auth">
<input type="text" name="username" label="Username:" />
<select name="group_list" label="Group:">
<option value="engineering">Engineering</option>
<option value="sales">sales</option>
<option>DEFAULT</option>
</select>
</form></auth>
</config-auth>
`
	ocservPassword = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request">
<version who="sg">0.1(1)</version>
<auth id="main">
<message>Please enter your password.</message>
<form method="post" action="/auth">
<input type="password" name="password" label="Password:" />
</form></auth>
</config-auth>
`
	ocservComplete = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="complete">
<version who="sg">0.1(1)</version>
<auth id="success">
<title>SSL VPN Service</title><banner>Welcome to the example VPN</banner></auth></config-auth>
`
	asaOpaque = `<opaque is-for="sg"><tunnel-group>EMPLOYEES</tunnel-group>` +
		`<aggauth-handle>1234567</aggauth-handle><auth-method>multiple</auth-method>` +
		`<group-alias>employees</group-alias><config-hash>1700000000000</config-hash></opaque>`
	asaRequest = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request" aggregate-auth-version="2">
` + asaOpaque + `
<auth id="main"><title>Login</title><message>Please enter your username and passwords.</message><banner></banner>
<form>
<input type="text" name="username" label="Username:"></input>
<input type="password" name="password" label="Password:"></input>
<input type="password" name="secondary_password" label="Second Password:" second-auth="1"></input>
<select name="group_list" label="GROUP:">
<option value="employees" selected="true">employees</option>
<option value="contractors">contractors</option>
</select>
</form></auth>
</config-auth>
`
	asaComplete = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="complete" aggregate-auth-version="2">
<session-id>32768</session-id>
<session-token>0A1B2C3D4E5F@32768@ABCD@0123456789ABCDEF0123456789ABCDEF01234567</session-token>
<auth id="success"><message id="0" param1="" param2=""></message></auth>
<capabilities><crypto-supported>ssl-dhe</crypto-supported></capabilities>
</config-auth>
`
	asaSSO = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request" aggregate-auth-version="2">
<auth id="main"><title>Login</title>
<message>Please complete the authentication process in the AnyConnect Login window.</message>
<sso-v2-login>https://vpn.example.com/+CSCOE+/saml/sp/login?tgname=EMPLOYEES</sso-v2-login>
<sso-v2-login-final>https://vpn.example.com/+CSCOE+/saml_ac_login.html</sso-v2-login-final>
<sso-v2-token-cookie-name>acSamlv2Token</sso-v2-token-cookie-name>
<form><input type="sso" name="sso-token"></input></form></auth>
</config-auth>
`
	ocservProfile = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="complete">
<version who="sg">0.1(1)</version>
<auth id="success">
<title>SSL VPN Service</title></auth>
<config client="vpn" type="private"><vpn-profile-manifest><vpn rev="1.0">` +
		`<file type="profile" service-type="user"><uri>/profiles/corp.xml</uri>` +
		`<hash type="sha1">0123456789ABCDEF0123456789ABCDEF01234567</hash></file>` +
		`</vpn></vpn-profile-manifest>
</config></config-auth>
`
	hostScan = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-request">
<host-scan><host-scan-ticket>T</host-scan-ticket><host-scan-token>X</host-scan-token>` +
		`<host-scan-base-uri>https://vpn.example.com/+CSCOH+/</host-scan-base-uri></host-scan>
<auth id="main"><form><input type="text" name="username"/></form></auth>
</config-auth>`
)

func TestParseDocument(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *Document
	}{
		{
			name: "ocserv username form with group list",
			in:   ocservUsernameGroup,
			want: &Document{
				Type: TypeAuthRequest, Method: "post", Action: "/auth",
				Form: Form{ID: "main", Message: "Please enter your username.", Fields: []*Field{
					{Type: FieldText, Name: "username", Label: "Username:"},
					{Type: FieldSelect, Name: "group_list", Label: "Group:", Options: []Option{
						{"engineering", "Engineering"}, {"sales", "sales"}, {"DEFAULT", "DEFAULT"},
					}},
				}},
			},
		},
		{
			name: "ocserv password form",
			in:   ocservPassword,
			want: &Document{
				Type: TypeAuthRequest, Method: "post", Action: "/auth",
				Form: Form{ID: "main", Message: "Please enter your password.", Fields: []*Field{
					{Type: FieldPassword, Name: "password", Label: "Password:"},
				}},
			},
		},
		{
			name: "ocserv complete with banner and no session-token",
			in:   ocservComplete,
			want: &Document{Type: TypeComplete, Form: Form{ID: "success",
				Title: "SSL VPN Service", Banner: "Welcome to the example VPN"}},
		},
		{
			name: "ASA form with opaque, two passwords and a preselected group",
			in:   asaRequest,
			want: &Document{
				Type:   TypeAuthRequest,
				Opaque: []byte(asaOpaque),
				Form: Form{ID: "main", Title: "Login",
					Message: "Please enter your username and passwords.", Fields: []*Field{
						{Type: FieldText, Name: "username", Label: "Username:"},
						{Type: FieldPassword, Name: "password", Label: "Password:"},
						{Type: FieldPassword, Name: "secondary_password", Label: "Second Password:"},
						{Type: FieldSelect, Name: "group_list", Label: "GROUP:", Value: "employees",
							Options: []Option{{"employees", "employees"}, {"contractors", "contractors"}}},
					}},
			},
		},
		{
			name: "ASA complete with session-token",
			in:   asaComplete,
			want: &Document{Type: TypeComplete, Form: Form{ID: "success"},
				SessionToken: "0A1B2C3D4E5F@32768@ABCD@0123456789ABCDEF0123456789ABCDEF01234567"},
		},
		{
			name: "ASA SSO form",
			in:   asaSSO,
			want: &Document{Type: TypeAuthRequest, SSO: true, Form: Form{ID: "main", Title: "Login",
				Message: "Please complete the authentication process in the AnyConnect Login window.",
				Fields:  []*Field{{Type: FieldSSO, Name: "sso-token"}}}},
		},
		{
			name: "complete with profile manifest and no message",
			in:   ocservProfile,
			want: &Document{Type: TypeComplete, Form: Form{ID: "success", Title: "SSL VPN Service"},
				Profiles: []Profile{{URI: "/profiles/corp.xml",
					Hash: "0123456789ABCDEF0123456789ABCDEF01234567", HashType: "sha1"}}},
		},
		{
			name: "host-scan detected",
			in:   hostScan,
			want: &Document{Type: TypeAuthRequest, HostScan: true, Form: Form{ID: "main",
				Fields: []*Field{{Type: FieldText, Name: "username"}}}},
		},
		{
			name: "error text and HTML entity in banner",
			in: `<config-auth type="auth-request"><auth id="main"><error>Login failed.</error>` +
				`<banner>a&nbsp;b &amp; c</banner><form><input name="username"/></form></auth></config-auth>`,
			want: &Document{Type: TypeAuthRequest, Form: Form{ID: "main", Error: "Login failed.",
				Banner: "a\u00a0b & c", Fields: []*Field{{Type: FieldText, Name: "username"}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDocument([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseDocument: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %s\nwant %s", dump(got), dump(tt.want))
			}
		})
	}
}

func TestParseDocumentRejects(t *testing.T) {
	tests := []struct {
		name          string
		in            string
		notAnyConnect bool
	}{
		{"empty", "", true},
		{"HTML login page", "<!DOCTYPE html>\n<html><head><title>Login</title></head></html>", true},
		{"plain text", "Service unavailable", true},
		{"other XML root", `<?xml version="1.0"?><auth id="passwd"></auth>`, true},
		{"truncated config-auth", `<config-auth type="complete"><auth id="success">`, false},
		{"mismatched tags", `<config-auth type="complete"><auth></form></config-auth>`, false},
		{"broken opaque", `<config-auth><opaque is-for="sg"><a></opaque></config-auth>`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := ParseDocument([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseDocument accepted it: %s", dump(doc))
			}
			if got := errors.Is(err, ErrNotAnyConnect); got != tt.notAnyConnect {
				t.Errorf("errors.Is(ErrNotAnyConnect) = %v, want %v (err %v)", got, tt.notAnyConnect, err)
			}
			if !strings.HasPrefix(err.Error(), "auth: ") {
				t.Errorf("error %q lacks the auth: prefix", err)
			}
		})
	}
}

// TestOpaqueVerbatim checks that odd but valid formatting inside opaque
// survives byte for byte.
func TestOpaqueVerbatim(t *testing.T) {
	opaque := "<opaque  is-for='sg' x=\"1\">\n\t<a>x&amp;y</a><b/><!-- c --><![CDATA[<z>]]></opaque  >"
	for _, in := range []string{
		"<config-auth type=\"auth-request\">" + opaque + "<auth/></config-auth>",
		"<config-auth type=\"auth-request\">\n  " + opaque + "\n</config-auth>",
	} {
		doc, err := ParseDocument([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if string(doc.Opaque) != opaque {
			t.Errorf("Opaque = %q, want %q", doc.Opaque, opaque)
		}
	}
}

func dump(d *Document) string {
	if d == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("%+v fields:", *d)
	for _, f := range d.Form.Fields {
		s += fmt.Sprintf(" %+v", *f)
	}
	return s
}
