package fuzz

import (
	"bufio"
	"bytes"
	"errors"
	"testing"

	"github.com/ocnet/ocnet/datapath"
)

// FuzzCSTPFrame feeds arbitrary bytes, as a headend would send them after
// CONNECT, through CSTPReader until it reports an error. It must never
// panic, never return a payload longer than the frame header says, and must
// account for every byte it consumes. A small buffer is tried too, so the
// skip path for oversized frames runs.
func FuzzCSTPFrame(f *testing.F) {
	f.Add([]byte("STF\x01\x00\x00\x03\x00"))
	f.Add([]byte("STF\x01\x00\x04\x05\x00\xb0bye"))

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, size := range []int{datapath.CSTPReadBufferLen, datapath.CSTPHeaderLen + 64} {
			readAll(t, data, make([]byte, size))
		}
	})
}

func readAll(t *testing.T, data, buf []byte) {
	rd := bytes.NewReader(data)
	r := datapath.NewCSTPReader(bufio.NewReaderSize(rd, 16))
	consumed := 0

	for {
		typ, p, err := r.ReadFrame(buf)
		if errors.Is(err, datapath.ErrFrameTooLarge) {
			// The frame was skipped whole; its header is still in buf.
			_, n, herr := datapath.ParseCSTPHeader(buf)
			if herr != nil || datapath.CSTPHeaderLen+n <= len(buf) {
				t.Fatalf("too-large frame of %d bytes with %d-byte buffer (%v)",
					n, len(buf), herr)
			}
			consumed += datapath.CSTPHeaderLen + n
			continue
		}
		if err != nil {
			return
		}

		if len(p) > len(buf)-datapath.CSTPHeaderLen {
			t.Fatalf("payload of %d bytes from a %d-byte buffer", len(p), len(buf))
		}
		hdr := make([]byte, datapath.CSTPHeaderLen)
		datapath.PutCSTPHeader(hdr, typ, len(p))
		consumed += datapath.CSTPHeaderLen + len(p)
		if consumed > len(data) {
			t.Fatalf("frames claim %d bytes of a %d-byte stream", consumed, len(data))
		}
		if !bytes.Equal(hdr, data[consumed-len(p)-datapath.CSTPHeaderLen:][:8]) {
			t.Fatalf("header does not round-trip: % x", hdr)
		}
		if !bytes.Equal(p, data[consumed-len(p):consumed]) {
			t.Fatalf("payload differs from the stream")
		}
	}
}
