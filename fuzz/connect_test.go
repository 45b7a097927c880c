package fuzz

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ocnet/ocnet/session"
)

// FuzzConnectHeaders parses arbitrary bytes as the header block of a
// CONNECT reply, the way session.Connect reads it, and hands the result to
// session.ParseConfig. It must never panic; a config it accepts must have a
// tunnel address and a usable MTU, and must log without leaking DTLS IDs.
func FuzzConnectHeaders(f *testing.F) {
	f.Add([]byte("X-CSTP-Address: 10.0.0.2\r\nX-CSTP-MTU: 1400\r\n\r\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
		h, err := tp.ReadMIMEHeader()
		if err != nil && len(h) == 0 {
			return
		}

		c, err := session.ParseConfig(http.Header(h))
		if err != nil {
			if err.Error() == "" || !strings.HasPrefix(err.Error(), "session: ") {
				t.Fatalf("error without subsystem prefix: %q", err)
			}
			return
		}

		if len(c.Prefixes()) == 0 {
			t.Fatal("accepted a config with no tunnel address")
		}
		if c.MTU < 68 || c.MTU > 16384 {
			t.Fatalf("accepted MTU %d", c.MTU)
		}
		for k := range c.Unknown {
			if session.IsSecretHeader(k) {
				t.Fatalf("secret header %s kept in Unknown", k)
			}
		}

		var out bytes.Buffer
		slog.New(slog.NewTextHandler(&out, nil)).Info("x", "config", c)
		for _, id := range [][]byte{c.DTLSAppID, c.DTLSSessionID} {
			if len(id) > 0 && bytes.Contains(out.Bytes(), []byte(hex.EncodeToString(id))) {
				t.Fatal("log line leaks a DTLS ID")
			}
		}
	})
}

// TestConnectHeaderSeeds checks that every seed of FuzzConnectHeaders is a
// reply ParseConfig accepts, so the fuzzer starts from valid configs rather
// than from an early error.
func TestConnectHeaderSeeds(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzConnectHeaders/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no seeds: %v", err)
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			data := readSeed(t, name)
			tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
			h, err := tp.ReadMIMEHeader()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := session.ParseConfig(http.Header(h)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// readSeed decodes a one-value corpus file in the "go test fuzz v1" format.
func readSeed(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(string(raw), "\n")
	body = strings.TrimSpace(body)
	if head != "go test fuzz v1" || !strings.HasPrefix(body, "[]byte(") ||
		!strings.HasSuffix(body, ")") {
		t.Fatalf("%s is not a []byte corpus file", name)
	}
	s, err := strconv.Unquote(body[len("[]byte(") : len(body)-1])
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return []byte(s)
}
