package auth

import (
	"context"
	"fmt"
	"strings"
)

// groupField is the select name AnyConnect headends use for the group
// (connection profile) list. Its answer travels as <group-select>, not
// inside <auth>.
const groupField = "group_list"

// Field types as they appear in the headend's <input type="..."> plus
// "select" for <select> lists.
const (
	FieldText     = "text"
	FieldPassword = "password"
	FieldHidden   = "hidden"
	FieldSelect   = "select"
	FieldSSO      = "sso"
	FieldSubmit   = "submit"
	FieldReset    = "reset"
)

// Field is one input of a login form. FillFunc sets Value; hidden fields
// and pre-selected lists arrive with Value already set.
type Field struct {
	Type  string // one of the Field* constants, lower case
	Name  string // element name the answer is sent under
	Label string // prompt text, e.g. "Password:"
	Value string

	// Options lists the choices of a select field; Value must be one of
	// their Values.
	Options []Option
}

// Option is one entry of a select field.
type Option struct {
	Value string // what is sent back
	Label string // what the user sees
}

// Form is one round of the login dialogue as the user should see it.
type Form struct {
	ID      string // the <auth id>: "main" on ocserv and most ASAs
	Title   string
	Message string // prompt from the headend, e.g. "Please enter your password."
	Error   string // why the previous answer was refused, if it was
	Banner  string // pre-login banner
	Fields  []*Field
}

// FillFunc answers a form by setting the Value of its fields. It may block
// on the user; ctx is the Login context. An error aborts Login and is
// returned wrapped.
type FillFunc func(ctx context.Context, f *Form) error

// Visible reports whether the field needs an answer from the user rather
// than being carried back as is.
func (f *Field) Visible() bool {
	switch f.Type {
	case FieldHidden, FieldSubmit, FieldReset:
		return false
	}
	return true
}

// Secret reports whether the field's value must never be shown or logged.
func (f *Field) Secret() bool {
	return f.Type == FieldPassword || f.Type == FieldSSO
}

// field returns the form's field called name, or nil.
func (f *Form) field(name string) *Field {
	for _, fl := range f.Fields {
		if fl.Name == name {
			return fl
		}
	}
	return nil
}

// needsFill reports whether any field wants an answer from the user.
func (f *Form) needsFill() bool {
	for _, fl := range f.Fields {
		if fl.Visible() {
			return true
		}
	}
	return false
}

// choose resolves want against the select's options: an exact value, then
// an exact label, then either ignoring case. It returns the value to send.
func (f *Field) choose(want string) (string, error) {
	for _, o := range f.Options {
		if o.Value == want {
			return o.Value, nil
		}
	}
	for _, o := range f.Options {
		if o.Label == want {
			return o.Value, nil
		}
	}
	for _, o := range f.Options {
		if strings.EqualFold(o.Value, want) || strings.EqualFold(o.Label, want) {
			return o.Value, nil
		}
	}
	return "", fmt.Errorf("auth: %w %q; the headend offers: %s",
		ErrUnknownGroup, want, f.describeOptions())
}

// describeOptions lists the options for an error message: "value" or
// "value (label)" when the label differs.
func (f *Field) describeOptions() string {
	if len(f.Options) == 0 {
		return "no groups"
	}
	parts := make([]string, 0, len(f.Options))
	for _, o := range f.Options {
		if o.Label != "" && o.Label != o.Value {
			parts = append(parts, fmt.Sprintf("%s (%s)", o.Value, o.Label))
		} else {
			parts = append(parts, o.Value)
		}
	}
	return strings.Join(parts, ", ")
}
