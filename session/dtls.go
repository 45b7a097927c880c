package session

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/pion/dtls/v2"

	"github.com/ocnet/ocnet/datapath"
)

// PSKNegotiate is the X-DTLS-CipherSuite value that asks for DTLS 1.2 with
// a PSK derived from the TLS session (protocol.md §4.2).
const PSKNegotiate = "PSK-NEGOTIATE"

// ErrNoDTLS means the headend offered no DTLS mode ocnet speaks; data
// stays on CSTP.
var ErrNoDTLS = errors.New("session: headend offered no usable DTLS")

// DTLSHandshakeTimeout bounds one DTLS attempt, as openconnect does.
const DTLSHandshakeTimeout = 12 * time.Second

// DTLSLink is an established DTLS association, ready for the record layer.
type DTLSLink struct {
	Conn    *net.UDPConn
	Pending [][]byte // datagrams that arrived during the handoff
	Keys    datapath.DTLSKeys
}

// DialDTLS runs the PSK-NEGOTIATE handshake for t. pion does the
// handshake; the keys are then exported and pion lets go of the socket.
func DialDTLS(ctx context.Context, t *Tunnel, log *slog.Logger) (*DTLSLink, error) {
	cfg := t.Config
	if cfg.DTLSCipherSuite != PSKNegotiate || len(cfg.DTLSAppID) == 0 || cfg.DTLSPort == 0 {
		return nil, ErrNoDTLS
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	psk, err := t.ExportPSK()
	if err != nil {
		return nil, err
	}

	host, _, err := net.SplitHostPort(t.Conn.RemoteAddr().String())
	if err != nil {
		return nil, fmt.Errorf("session: dtls: headend address: %w", err)
	}
	raddr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(cfg.DTLSPort)))
	if err != nil {
		return nil, fmt.Errorf("session: dtls: %w", err)
	}
	sock, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, fmt.Errorf("session: dtls: %w", err)
	}
	hc := datapath.NewHandoffConn(sock)

	ctx, cancel := context.WithTimeout(ctx, DTLSHandshakeTimeout)
	defer cancel()
	conn, err := dtls.ClientWithContext(ctx, hc, &dtls.Config{
		PSK: func([]byte) ([]byte, error) { return psk, nil },
		// pion sends this as the client's PSK identity; ocserv
		// ignores it and openconnect sends the same word.
		PSKIdentityHint: []byte("psk"),
		// The record layer implements AES-GCM; ocserv's PSK list and
		// pion's meet there.
		CipherSuites: []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_GCM_SHA256},
		SessionStore: appIDStore{id: cfg.DTLSAppID},
	})
	if err != nil {
		sock.Close()
		return nil, fmt.Errorf("session: dtls handshake with %s: %w", raddr, err)
	}

	keys, err := datapath.KeysFromPion(conn)
	if err != nil {
		sock.Close()
		return nil, err
	}
	udp, pending := hc.Detach()
	conn.Close()
	log.Debug("dtls handshake done", "suite", keys.CipherSuiteName, "peer", raddr)
	return &DTLSLink{Conn: udp, Pending: pending, Keys: keys}, nil
}

// appIDStore is how the App-ID reaches the ClientHello's session_id: pion
// takes the ID of a stored session and offers it for resumption. ocserv
// uses that ID only to find the worker and answers with a full handshake.
type appIDStore struct{ id []byte }

func (s appIDStore) Set([]byte, dtls.Session) error { return nil }
func (s appIDStore) Del([]byte) error               { return nil }

func (s appIDStore) Get([]byte) (dtls.Session, error) {
	// The secret is never used: the server never resumes this ID.
	secret := make([]byte, 48)
	rand.Read(secret)
	return dtls.Session{ID: s.id, Secret: secret}, nil
}
