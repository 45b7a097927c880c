package auth

import (
	"strings"
	"testing"
)

func TestRequestMarshal(t *testing.T) {
	const head = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<config-auth client="vpn" type="%s" aggregate-auth-version="2">` +
		`<version who="vpn">v9.01-ocnet</version><device-id>linux-64</device-id>` +
		`<capabilities></capabilities>`

	tests := []struct {
		name string
		req  request
		want string
	}{
		{
			name: "init with group",
			req: request{typ: "init", groupAccess: "https://vpn.example.com/?a=1&b=2",
				groupSelect: "engineering"},
			want: strings.Replace(head, "%s", "init", 1) +
				`<group-access>https://vpn.example.com/?a=1&amp;b=2</group-access>` +
				`<group-select>engineering</group-select></config-auth>` + "\n",
		},
		{
			name: "password is escaped with named entities only",
			req:  request{typ: "auth-reply", answers: []answer{{"password", "p<ss&w0rd\"'>\n"}}},
			want: strings.Replace(head, "%s", "auth-reply", 1) +
				"<auth><password>p&lt;ss&amp;w0rd\"'&gt;\n</password></auth></config-auth>\n",
		},
		{
			name: "opaque echoed before auth, group after it",
			req: request{typ: "auth-reply", opaque: []byte(asaOpaque), groupSelect: "employees",
				answers: []answer{{"username", "alice"}, {"password", "first-secret"},
					{"secondary_password", "123456"}}},
			want: strings.Replace(head, "%s", "auth-reply", 1) + asaOpaque +
				`<auth><username>alice</username><password>first-secret</password>` +
				`<secondary_password>123456</secondary_password></auth>` +
				`<group-select>employees</group-select></config-auth>` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.req.marshal()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestRequestMarshalRejects(t *testing.T) {
	tests := []struct {
		name string
		a    answer
	}{
		{"tag injection in name", answer{"user><password", "x"}},
		{"empty name", answer{"", "x"}},
		{"digit first", answer{"1x", "x"}},
		{"NUL in value", answer{"password", "se\x00cret"}},
		{"invalid UTF-8", answer{"password", "se\xffcret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request{typ: "auth-reply", answers: []answer{tt.a}}
			_, err := r.marshal()
			if err == nil {
				t.Fatal("marshal accepted it")
			}
			if strings.Contains(err.Error(), "cret") {
				t.Errorf("error %q quotes the value", err)
			}
		})
	}
}

// TestReplyFor checks the renames and drops openconnect applies, and that
// the group leaves <auth> so ocserv's scanner finds it as group-select.
func TestReplyFor(t *testing.T) {
	f := &Form{Fields: []*Field{
		{Type: FieldText, Name: "username", Value: "alice"},
		{Type: FieldSelect, Name: "group_list", Value: "sales"},
		{Type: FieldPassword, Name: "new_password", Value: "n1"},
		{Type: FieldPassword, Name: "verify_password", Value: "n1"},
		{Type: FieldHidden, Name: "tok", Value: "h"},
		{Type: FieldSubmit, Name: "go", Value: "Login"},
	}}
	answers, group := replyFor(f)
	if group != "sales" {
		t.Errorf("group = %q", group)
	}
	want := []answer{{"username", "alice"}, {"password", "n1"}, {"tok", "h"}}
	if len(answers) != len(want) {
		t.Fatalf("answers = %v, want %v", answers, want)
	}
	for i := range want {
		if answers[i] != want[i] {
			t.Errorf("answer %d = %v, want %v", i, answers[i], want[i])
		}
	}
}
