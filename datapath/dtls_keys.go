package datapath

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/gob"
	"fmt"
	"hash"

	"github.com/pion/dtls/v2"
	"github.com/pion/dtls/v2/pkg/crypto/prf"
)

// pionState mirrors the fields of pion's serialised dtls.State that the key
// schedule needs; gob matches them by name. pion documents MarshalBinary
// as the way to carry a connection's state elsewhere.
type pionState struct {
	LocalEpoch     uint16
	LocalRandom    [32]byte
	RemoteRandom   [32]byte
	CipherSuiteID  uint16
	MasterSecret   []byte
	SequenceNumber uint64
	IsClient       bool
}

// suite describes the AEAD suites the record layer implements.
type suite struct {
	name   string
	keyLen int
	hash   func() hash.Hash
}

var suites = map[uint16]suite{
	0x00a8: {"TLS_PSK_WITH_AES_128_GCM_SHA256", 16, sha256.New},
	0x00a9: {"TLS_PSK_WITH_AES_256_GCM_SHA384", 32, sha512.New384},
	0xc02b: {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 16, sha256.New},
	0xc02f: {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 16, sha256.New},
	0xc030: {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 32, sha512.New384},
}

// KeysFromPion derives the record keys of a finished pion handshake (RFC
// 5246 §6.3 key expansion) so the data path can run without pion's Conn.
// The Conn must not be used to send or receive afterwards.
func KeysFromPion(c *dtls.Conn) (DTLSKeys, error) {
	st := c.ConnectionState()
	raw, err := st.MarshalBinary()
	if err != nil {
		return DTLSKeys{}, fmt.Errorf("datapath: dtls state: %w", err)
	}
	var s pionState
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&s); err != nil {
		return DTLSKeys{}, fmt.Errorf("datapath: dtls state: %w", err)
	}
	return keysFromState(s)
}

func keysFromState(s pionState) (DTLSKeys, error) {
	su, ok := suites[s.CipherSuiteID]
	if !ok {
		return DTLSKeys{}, fmt.Errorf("datapath: dtls cipher suite 0x%04x has no "+
			"record layer here", s.CipherSuiteID)
	}
	client, server := s.LocalRandom[:], s.RemoteRandom[:]
	if !s.IsClient {
		client, server = server, client
	}
	ek, err := prf.GenerateEncryptionKeys(s.MasterSecret, client, server,
		0, su.keyLen, 4, su.hash)
	if err != nil {
		return DTLSKeys{}, fmt.Errorf("datapath: dtls key expansion: %w", err)
	}

	k := DTLSKeys{
		Epoch:           s.LocalEpoch,
		NextSeq:         s.SequenceNumber,
		CipherSuite:     s.CipherSuiteID,
		CipherSuiteName: su.name,
		WriteKey:        ek.ClientWriteKey,
		WriteIV:         ek.ClientWriteIV,
		ReadKey:         ek.ServerWriteKey,
		ReadIV:          ek.ServerWriteIV,
	}
	if !s.IsClient {
		k.WriteKey, k.ReadKey = k.ReadKey, k.WriteKey
		k.WriteIV, k.ReadIV = k.ReadIV, k.WriteIV
	}
	return k, nil
}
