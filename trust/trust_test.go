package trust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a private CA and a server leaf it signed for 127.0.0.1 and
// vpn.example.com.
type testPKI struct {
	caPEM  []byte
	leaf   *x509.Certificate
	server tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ocnet test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "vpn.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"vpn.example.com"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}

	return &testPKI{
		caPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		leaf:   leaf,
		server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
	}
}

// serve runs a loopback TLS server that completes handshakes and hangs up.
func serve(t *testing.T, cert tls.Certificate) string {
	t.Helper()

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })

	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestTLSConfig(t *testing.T) {
	pki := newPKI(t)
	addr := serve(t, pki.server)

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pki.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPin := Pin(&x509.Certificate{RawSubjectPublicKeyInfo: mustSPKI(t, &otherKey.PublicKey)})
	leafPin := Pin(pki.leaf)

	// openconnect's sha256: is the public key's digest in hex; the whole
	// certificate's is what openssl x509 -fingerprint -sha256 prints.
	keySum := sha256.Sum256(pki.leaf.RawSubjectPublicKeyInfo)
	certSum := sha256.Sum256(pki.leaf.Raw)
	keyHex := "sha256:" + hex.EncodeToString(keySum[:])
	certHex := "sha256:" + colonHex(certSum[:])
	otherSum := sha256.Sum256(mustSPKI(t, &otherKey.PublicKey))
	otherHex := "sha256:" + hex.EncodeToString(otherSum[:])

	tests := []struct {
		name       string
		serverName string
		opts       Options
		wantErr    bool   // handshake must fail with *Error
		wantReason string // substring of Error.Reason
	}{
		{name: "untrusted self-signed chain", serverName: "127.0.0.1",
			wantErr: true, wantReason: "not signed by a trusted authority"},
		{name: "CA file adds a root", serverName: "127.0.0.1",
			opts: Options{CAFile: caFile}},
		{name: "CA file but wrong name", serverName: "other.example.com",
			opts: Options{CAFile: caFile}, wantErr: true, wantReason: "not valid for the name"},
		{name: "pin overrides chain and name", serverName: "other.example.com",
			opts: Options{Pins: []string{leafPin}}},
		{name: "one of several pins matches", serverName: "127.0.0.1",
			opts: Options{Pins: []string{otherPin, leafPin}}},
		{name: "wrong pin", serverName: "127.0.0.1",
			opts: Options{Pins: []string{otherPin}}, wantErr: true,
			wantReason: "none of the given pins"},
		{name: "sha256 hex of the public key", serverName: "other.example.com",
			opts: Options{Pins: []string{keyHex}}},
		{name: "sha256 hex, upper case", serverName: "other.example.com",
			opts: Options{Pins: []string{strings.ToUpper(keyHex)}}},
		{name: "sha256 of the whole certificate, with colons", serverName: "127.0.0.1",
			opts: Options{Pins: []string{" " + certHex + " "}}},
		{name: "sha256 among other pins", serverName: "127.0.0.1",
			opts: Options{Pins: []string{otherPin, otherHex, keyHex}}},
		{name: "wrong sha256", serverName: "127.0.0.1",
			opts: Options{Pins: []string{otherHex}}, wantErr: true,
			wantReason: "none of the given pins"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := TLSConfig(tt.serverName, tt.opts)
			if err != nil {
				t.Fatalf("TLSConfig: %v", err)
			}
			if cfg.MinVersion != tls.VersionTLS12 {
				t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
			}

			conn, err := tls.Dial("tcp", addr, cfg)
			if err == nil {
				if cs := conn.ConnectionState(); PinFromState(cs) != leafPin {
					t.Errorf("PinFromState = %q, want %q", PinFromState(cs), leafPin)
				}
				conn.Close()
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				return
			}

			// Callers see the error through layers of wrapping.
			wrapped := fmt.Errorf("session: dial: %w", err)
			var te *Error
			if !errors.As(wrapped, &te) {
				t.Fatalf("error %v (%T) is not a *trust.Error", err, err)
			}
			if te.Pin != leafPin {
				t.Errorf("Pin = %q, want %q", te.Pin, leafPin)
			}
			if !strings.Contains(te.Reason, tt.wantReason) {
				t.Errorf("Reason = %q, want it to contain %q", te.Reason, tt.wantReason)
			}
			msg := te.Error()
			wants := []string{"not trusted", "--servercert " + leafPin, "vpn.example.com"}
			for _, want := range wants {
				if !strings.Contains(msg, want) {
					t.Errorf("Error() = %q, missing %q", msg, want)
				}
			}
		})
	}
}

func TestTLSConfigRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		serverName string
		opts       Options
		want       string
	}{
		{"no scheme", "h", Options{Pins: []string{"AAAA"}},
			"want pin-sha256:BASE64 or sha256:HEX"},
		{"unknown scheme", "h", Options{Pins: []string{"md5:" + strings.Repeat("a", 32)}},
			"want pin-sha256:BASE64 or sha256:HEX"},
		{"empty", "h", Options{Pins: []string{""}}, "want pin-sha256:BASE64"},
		{"not base64", "h", Options{Pins: []string{"pin-sha256:!!!"}}, "32-byte"},
		{"short digest", "h", Options{Pins: []string{"pin-sha256:AAAA"}}, "32-byte"},
		{"sha256 not hex", "h", Options{Pins: []string{"sha256:" + strings.Repeat("x", 64)}},
			"64 hex digits"},
		// openconnect matches from 4 characters on; ocnet wants it all.
		{"sha256 partial", "h", Options{Pins: []string{"sha256:abcd"}}, "64 hex digits"},
		{"sha256 too long", "h", Options{Pins: []string{"sha256:" + strings.Repeat("a", 66)}},
			"64 hex digits"},
		{"sha256 as base64", "h", Options{Pins: []string{
			"sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}}, "64 hex digits"},
		{"sha1 scheme", "h", Options{Pins: []string{"sha1:" + strings.Repeat("0a", 20)}},
			"SHA-1 is broken"},
		{"sha1 partial", "h", Options{Pins: []string{"sha1:0123"}}, "SHA-1 is broken"},
		{"bare sha1", "h", Options{Pins: []string{strings.Repeat("0A", 20)}},
			"looks like a SHA-1 certificate fingerprint"},
		{"bare sha1 with colons", "h", Options{Pins: []string{
			strings.TrimSuffix(strings.Repeat("0A:", 20), ":")}}, "SHA-1 is broken"},
		{"missing CA file", "h", Options{CAFile: filepath.Join(dir, "nope")}, "reading CA file"},
		{"CA file without PEM", "h", Options{CAFile: notPEM}, "no PEM certificate"},
		{"empty server name", "", Options{}, "server name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := TLSConfig(tt.serverName, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "trust: ") {
				t.Errorf("err = %q, want the trust: prefix", err)
			}
		})
	}
}

func TestPin(t *testing.T) {
	// SHA-256 of the empty string, as a pin of an empty SPKI.
	got := Pin(&x509.Certificate{})
	want := "pin-sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	if got != want {
		t.Fatalf("Pin = %q, want %q", got, want)
	}
	if PinFromState(tls.ConnectionState{}) != "" {
		t.Fatal("PinFromState of an empty state should be empty")
	}

	// A pin we print must be one TLSConfig accepts.
	if _, err := TLSConfig("h", Options{Pins: []string{got}}); err != nil {
		t.Fatalf("TLSConfig rejects its own pin: %v", err)
	}
}

// colonHex is b in upper-case hex with colons between bytes, as openssl
// prints fingerprints.
func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}

func mustSPKI(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCAFileNotRegular(t *testing.T) {
	for _, path := range []string{"/dev/zero", t.TempDir()} {
		if _, err := TLSConfig("vpn.example.com", Options{CAFile: path}); err == nil {
			t.Errorf("CA file %s accepted", path)
		}
	}
}
