// Package trust owns the server-certificate policy: which headend
// certificates ocnet accepts (system roots, an extra --cafile, or explicit
// pin-sha256: and sha256: pins) and how a certificate is named as a pin. It hands a
// *tls.Config to auth and session; it never opens a connection itself.
package trust

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// The --servercert schemes openconnect defines (openconnect(8), and
// openconnect_check_peer_cert_hash in its library.c):
//
//   - pinPrefix: the SHA-256 of the certificate's SubjectPublicKeyInfo in
//     standard base64 (RFC 7469's pin); what ocnet prints.
//   - hexPrefix: the same digest in hex. openconnect documents it as the
//     hash of the public key, not of the certificate.
//   - "sha1:HEX" and a bare 40-digit hex string (the SHA-1 of the whole
//     DER certificate, openconnect's oldest form): refused, see weakSHA1.
const (
	pinPrefix = "pin-sha256:"
	hexPrefix = "sha256:"
)

// Options is the user's trust policy for one headend.
type Options struct {
	// CAFile is a PEM file whose certificates are trusted in addition to
	// the system roots. Empty means system roots only.
	CAFile string

	// Pins are "pin-sha256:BASE64" or "sha256:HEX" values (hex in either
	// case, colons between bytes allowed). A leaf certificate matching
	// any of them is accepted without any chain or name check, like
	// openconnect --servercert. A sha256: value matches the SHA-256 of
	// the public key, as in openconnect, or of the whole DER certificate,
	// which is what `openssl x509 -fingerprint -sha256` prints.
	Pins []string
}

// Error reports a server certificate that the policy does not accept. It
// carries what a user needs to decide whether to pin it.
type Error struct {
	// Pin is the leaf certificate's "pin-sha256:..." value.
	Pin string

	// Subject is the leaf certificate's subject, for display.
	Subject string

	// Reason says why verification failed, in words for a user.
	Reason string
}

// Error names the certificate, the reason and the exact flag that would
// accept it.
func (e *Error) Error() string {
	return fmt.Sprintf("trust: server certificate %q is not trusted: %s; "+
		"its pin is %s; to accept this certificate anyway, pass --servercert %s",
		e.Subject, e.Reason, e.Pin, e.Pin)
}

// Pin returns the "pin-sha256:..." value of cert's public key.
func Pin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return pinPrefix + base64.StdEncoding.EncodeToString(sum[:])
}

// PinFromState returns the pin of the peer's leaf certificate in a finished
// handshake, or "" if the peer sent none.
func PinFromState(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return Pin(cs.PeerCertificates[0])
}

// TLSConfig returns a client configuration for serverName that enforces o.
// The returned config does its own verification in VerifyConnection (so
// pins can override the chain check); callers must not reset
// InsecureSkipVerify or VerifyConnection. It is safe to Clone.
func TLSConfig(serverName string, o Options) (*tls.Config, error) {
	if serverName == "" {
		return nil, errors.New("trust: server name is empty")
	}

	pins, err := parsePins(o.Pins)
	if err != nil {
		return nil, err
	}

	extra, err := readCAFile(o.CAFile)
	if err != nil {
		return nil, err
	}
	// Loading the system roots takes tens of milliseconds; start now and
	// wait only if a handshake needs them (a pinned key does not).
	roots := sync.OnceValue(func() *x509.CertPool { return rootPool(extra) })
	go roots()

	v := &verifier{serverName: serverName, pins: pins, roots: roots}
	return &tls.Config{
		ServerName: serverName,
		MinVersion: tls.VersionTLS12,

		// The standard check cannot be told that a pin overrides it, so
		// it is off and verifier.check does the whole job instead.
		InsecureSkipVerify: true,
		VerifyConnection:   v.check,
	}, nil
}

// pinSet holds the parsed pins as raw SHA-256 digests: of the public key
// (SubjectPublicKeyInfo) and of the whole DER certificate.
type pinSet struct {
	key, cert [][]byte
}

func (ps pinSet) empty() bool { return len(ps.key) == 0 && len(ps.cert) == 0 }

// match says whether leaf is pinned.
func (ps pinSet) match(leaf *x509.Certificate) bool {
	key := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	for _, p := range ps.key {
		if bytes.Equal(p, key[:]) {
			return true
		}
	}
	if len(ps.cert) == 0 {
		return false
	}
	cert := sha256.Sum256(leaf.Raw)
	for _, p := range ps.cert {
		if bytes.Equal(p, cert[:]) {
			return true
		}
	}
	return false
}

// weakSHA1 is why a SHA-1 fingerprint is refused rather than matched.
const weakSHA1 = "SHA-1 fingerprints are refused: SHA-1 is broken (colliding " +
	"certificates have been made), so a match does not prove the server's " +
	"certificate; use the pin-sha256: pin ocnet prints for an untrusted server, " +
	"or sha256:HEX"

// parsePins decodes --servercert values into digests. Partial hashes,
// which openconnect takes from 4 characters on, are refused: a few hex
// digits are matched by chance or by a forger's cheap search.
func parsePins(in []string) (pinSet, error) {
	var ps pinSet
	for _, raw := range in {
		p := strings.TrimSpace(raw)
		scheme, val, _ := strings.Cut(p, ":")
		switch strings.ToLower(scheme) + ":" {
		case pinPrefix:
			sum, err := base64.StdEncoding.DecodeString(val)
			if err != nil || len(sum) != sha256.Size {
				return pinSet{}, fmt.Errorf("trust: --servercert %q is not %s followed by "+
					"the base64 of a 32-byte SHA-256 digest", raw, pinPrefix)
			}
			ps.key = append(ps.key, sum)
		case hexPrefix:
			sum, err := hex.DecodeString(strings.ReplaceAll(val, ":", ""))
			if err != nil || len(sum) != sha256.Size {
				return pinSet{}, fmt.Errorf("trust: --servercert %q is not %s followed by "+
					"the 64 hex digits of a SHA-256 digest (colons between bytes allowed)",
					raw, hexPrefix)
			}
			ps.key = append(ps.key, sum)
			ps.cert = append(ps.cert, sum)
		case "sha1:":
			return pinSet{}, fmt.Errorf("trust: --servercert %q: %s", raw, weakSHA1)
		default:
			if isHex(strings.ReplaceAll(p, ":", ""), sha1Size) {
				return pinSet{}, fmt.Errorf("trust: --servercert %q looks like a SHA-1 "+
					"certificate fingerprint: %s", raw, weakSHA1)
			}
			return pinSet{}, fmt.Errorf("trust: --servercert %q: want %sBASE64 or %sHEX",
				raw, pinPrefix, hexPrefix)
		}
	}
	return ps, nil
}

// sha1Size is the length of a SHA-1 digest in bytes.
const sha1Size = 20

// isHex says whether s is the hex encoding of n bytes.
func isHex(s string, n int) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == n
}

// readCAFile parses the certificates in caFile ("" = none).
func readCAFile(caFile string) ([]*x509.Certificate, error) {
	if caFile == "" {
		return nil, nil
	}
	data, err := readLimited(caFile, maxCAFile)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trust: CA file %s: %w", caFile, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("trust: CA file %s holds no PEM certificate", caFile)
	}
	return certs, nil
}

// maxCAFile bounds a CA bundle; the largest system bundles are under 1 MiB.
const maxCAFile = 8 << 20

// readLimited reads a regular file of at most max bytes, so a path such as
// /dev/zero or a FIFO is refused instead of read without end.
func readLimited(path string, max int64) ([]byte, error) {
	// Stat before opening: opening a FIFO would block.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("trust: reading CA file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("trust: CA file %s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trust: reading CA file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("trust: reading CA file: %w", err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("trust: CA file %s is larger than %d MiB", path, max>>20)
	}
	return data, nil
}

// rootPool returns the system roots plus extra.
func rootPool(extra []*x509.Certificate) *x509.CertPool {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		// No system store (minimal containers): the CA file, if any, is
		// then the only trust anchor.
		pool = x509.NewCertPool()
	}
	for _, c := range extra {
		pool.AddCert(c)
	}
	return pool
}

// verifier holds one parsed policy; it is immutable and so safe for the
// concurrent handshakes a shared tls.Config may see.
type verifier struct {
	serverName string
	pins       pinSet
	roots      func() *x509.CertPool
}

// check accepts a pinned leaf, else requires a chain to the roots that is
// valid for the server name. Failures are *Error.
func (v *verifier) check(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("trust: server sent no certificate")
	}
	leaf := cs.PeerCertificates[0]

	if v.pins.match(leaf) {
		return nil
	}

	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		DNSName:       v.serverName,
		Roots:         v.roots(),
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err == nil {
		return nil
	}

	reason := reasonFor(err)
	if !v.pins.empty() {
		reason += ", and it matches none of the given pins"
	}
	return &Error{Pin: Pin(leaf), Subject: leaf.Subject.String(), Reason: reason}
}

// reasonFor turns an x509 verification error into a phrase for a user.
func reasonFor(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &unknown):
		return "it is not signed by a trusted authority (self-signed or private CA?)"
	case errors.As(err, &hostname):
		return fmt.Sprintf("it is not valid for the name %q", hostname.Host)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "it has expired or is not yet valid"
	}
	return strings.TrimPrefix(err.Error(), "x509: ")
}
