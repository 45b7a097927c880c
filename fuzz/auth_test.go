package fuzz

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ocnet/ocnet/auth"
)

// FuzzAuthXML feeds arbitrary bytes, as a headend or anything posing as
// one would answer an auth POST, to auth.ParseDocument. It must never
// panic; input that is not a config-auth document must be reported as
// ErrNotAnyConnect or another error, never as a document; and an opaque
// element, which is echoed to the headend byte for byte, must be an exact
// slice of the input that still parses on its own.
func FuzzAuthXML(f *testing.F) {
	f.Add([]byte(`<config-auth type="complete"><session-token>t</session-token></config-auth>`))

	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := auth.ParseDocument(data)
		if !bytes.Contains(data, []byte("config-auth")) && !errors.Is(err, auth.ErrNotAnyConnect) {
			t.Fatalf("input without config-auth gave %v, want ErrNotAnyConnect", err)
		}
		if err != nil {
			if doc != nil {
				t.Fatalf("document %+v returned with error %v", doc, err)
			}
			return
		}

		if doc.Opaque != nil {
			if !bytes.HasPrefix(doc.Opaque, []byte("<opaque")) {
				t.Fatalf("opaque %q does not start with its tag", doc.Opaque)
			}
			if !bytes.Contains(data, doc.Opaque) {
				t.Fatalf("opaque %q is not a slice of the input", doc.Opaque)
			}
			wrapped := append([]byte("<config-auth>"), doc.Opaque...)
			wrapped = append(wrapped, "</config-auth>"...)
			again, err := auth.ParseDocument(wrapped)
			if err != nil {
				t.Fatalf("opaque %q does not parse on its own: %v", doc.Opaque, err)
			}
			if !bytes.Equal(again.Opaque, doc.Opaque) {
				t.Fatalf("opaque changed on re-parse: %q -> %q", doc.Opaque, again.Opaque)
			}
		}

		for _, f := range doc.Form.Fields {
			if f == nil {
				t.Fatal("nil field")
			}
		}
	})
}
