package datapath

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// unhex decodes space-separated hex as written in protocol-testvectors.md.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// icmpEcho is the 28-byte IPv4 ICMP echo from protocol-testvectors.md §4.
const icmpEcho = "45 00 00 1c 12 34 00 00 40 01 7c 40 c0 00 02 32 " +
	"c6 33 64 07 08 00 f7 fd 00 01 00 01"

func TestPutCSTPHeader(t *testing.T) {
	tests := []struct {
		name string
		typ  Type
		n    int
		want string
	}{
		{"dpd-req", TypeDPDReq, 0, "53 54 46 01 00 00 03 00"},
		{"dpd-resp", TypeDPDResp, 0, "53 54 46 01 00 00 04 00"},
		{"keepalive", TypeKeepalive, 0, "53 54 46 01 00 00 07 00"},
		{"disconnect", TypeDisconnect, 4, "53 54 46 01 00 04 05 00"},
		{"terminate", TypeTerminate, 0, "53 54 46 01 00 00 09 00"},
		{"data", TypeData, 28, "53 54 46 01 00 1c 00 00"},
		{"max length", TypeData, 65535, "53 54 46 01 ff ff 00 00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Repeat([]byte{0xEE}, CSTPHeaderLen)
			PutCSTPHeader(b, tt.typ, tt.n)
			if want := unhex(t, tt.want); !bytes.Equal(b, want) {
				t.Fatalf("header = % x, want % x", b, want)
			}

			typ, n, err := ParseCSTPHeader(b)
			if err != nil || typ != tt.typ || n != tt.n {
				t.Fatalf("round trip = %v, %d, %v", typ, n, err)
			}
		})
	}
}

func TestPutCSTPHeaderPanicsOnBadLength(t *testing.T) {
	for _, n := range []int{-1, 65536} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("PutCSTPHeader(n=%d) did not panic", n)
				}
			}()
			PutCSTPHeader(make([]byte, 8), TypeData, n)
		}()
	}
}

func TestParseCSTPHeaderErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrShortHeader},
		{"seven bytes", "53 54 46 01 00 00 03", ErrShortHeader},
		{"bad magic", "53 54 47 01 00 00 03 00", ErrBadMagic},
		{"http instead", "48 54 54 50 2f 31 2e 31", ErrBadMagic},
		{"version 2", "53 54 46 02 00 00 03 00", ErrBadVersion},
		{"reserved set", "53 54 46 01 00 00 03 01", ErrBadReserved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseCSTPHeader(unhex(t, tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseCSTPHeaderUnknownType(t *testing.T) {
	typ, n, err := ParseCSTPHeader(unhex(t, "53 54 46 01 00 02 0a 00"))
	if err != nil || typ != 0x0a || n != 2 {
		t.Fatalf("got %v, %d, %v; want Type(0xa), 2, nil", typ, n, err)
	}
	if got := typ.String(); got != "Type(0xa)" {
		t.Errorf("String() = %q", got)
	}
}

func TestTypeString(t *testing.T) {
	want := map[Type]string{
		TypeData: "DATA", TypeDPDReq: "DPD-REQ", TypeDPDResp: "DPD-RESP",
		TypeDisconnect: "DISCONNECT", TypeKeepalive: "KEEPALIVE",
		TypeCompressed: "COMPRESSED", TypeTerminate: "TERMINATE",
	}
	for typ, s := range want {
		if got := typ.String(); got != s {
			t.Errorf("Type(%d).String() = %q, want %q", byte(typ), got, s)
		}
	}
}

// frame is one expected result of ReadFrame.
type frame struct {
	typ     Type
	payload string
}

func TestReadFrame(t *testing.T) {
	tests := []struct {
		name    string
		stream  string
		want    []frame
		wantErr error
	}{
		{
			name:    "empty stream",
			wantErr: io.EOF,
		},
		{
			name:    "dpd then data",
			stream:  "53 54 46 01 00 00 03 00 53 54 46 01 00 1c 00 00" + icmpEcho,
			want:    []frame{{TypeDPDReq, ""}, {TypeData, icmpEcho}},
			wantErr: io.EOF,
		},
		{
			name:    "dpd with payload",
			stream:  "53 54 46 01 00 04 03 00 de ad be ef",
			want:    []frame{{TypeDPDReq, "de ad be ef"}},
			wantErr: io.EOF,
		},
		{
			name:    "user logout",
			stream:  "53 54 46 01 00 04 05 00 b0 62 79 65",
			want:    []frame{{TypeDisconnect, "b0 62 79 65"}},
			wantErr: io.EOF,
		},
		{
			name:    "truncated header",
			stream:  "53 54 46 01 00",
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name:    "truncated payload",
			stream:  "53 54 46 01 00 04 03 00 de ad",
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name:    "bad version after good frame",
			stream:  "53 54 46 01 00 00 07 00 53 54 46 02 00 00 03 00",
			want:    []frame{{TypeKeepalive, ""}},
			wantErr: ErrBadVersion,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewCSTPReader(bufio.NewReader(bytes.NewReader(unhex(t, tt.stream))))
			buf := make([]byte, CSTPReadBufferLen)

			for i, w := range tt.want {
				typ, p, err := r.ReadFrame(buf)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if typ != w.typ || !bytes.Equal(p, unhex(t, w.payload)) {
					t.Fatalf("frame %d = %v % x, want %v %s", i, typ, p, w.typ, w.payload)
				}
			}

			_, _, err := r.ReadFrame(buf)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("final err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestReadFrameTooLarge checks that an oversized frame is reported and
// skipped, and that the next frame still parses.
func TestReadFrameTooLarge(t *testing.T) {
	var stream []byte
	hdr := make([]byte, CSTPHeaderLen)
	PutCSTPHeader(hdr, TypeData, 40)
	stream = append(stream, hdr...)
	stream = append(stream, bytes.Repeat([]byte{0xAA}, 40)...)
	PutCSTPHeader(hdr, TypeDPDResp, 2)
	stream = append(stream, hdr...)
	stream = append(stream, 0x01, 0x02)

	r := NewCSTPReader(bytes.NewReader(stream))
	buf := make([]byte, CSTPHeaderLen+16)

	typ, _, err := r.ReadFrame(buf)
	if !errors.Is(err, ErrFrameTooLarge) || typ != TypeData {
		t.Fatalf("got %v, %v; want DATA and ErrFrameTooLarge", typ, err)
	}
	if !strings.Contains(err.Error(), "40-byte") {
		t.Errorf("error %q does not name the frame size", err)
	}

	typ, p, err := r.ReadFrame(buf)
	if err != nil || typ != TypeDPDResp || !bytes.Equal(p, []byte{1, 2}) {
		t.Fatalf("after skip: %v % x %v", typ, p, err)
	}
}

func TestReadFrameTinyBuffer(t *testing.T) {
	r := NewCSTPReader(bytes.NewReader(unhex(t, "53 54 46 01 00 00 03 00")))
	if _, _, err := r.ReadFrame(make([]byte, 4)); err == nil {
		t.Fatal("ReadFrame with a 4-byte buffer succeeded")
	}
}

func TestReadFrameAllocs(t *testing.T) {
	stream := unhex(t, "53 54 46 01 00 1c 00 00"+icmpEcho)
	rd := bytes.NewReader(stream)
	r := NewCSTPReader(rd)
	buf := make([]byte, CSTPReadBufferLen)

	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(stream)
		if _, _, err := r.ReadFrame(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("ReadFrame allocates %.1f times per frame", allocs)
	}
}

func TestDisconnectPayload(t *testing.T) {
	tests := []struct {
		reason string
		want   string
	}{
		{"", "b0"},
		{"bye", "b0 62 79 65"},
		{"a\r\nb\x00", "b0 61 62"},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			if got := DisconnectPayload(tt.reason); !bytes.Equal(got, unhex(t, tt.want)) {
				t.Fatalf("DisconnectPayload(%q) = % x, want %s", tt.reason, got, tt.want)
			}
		})
	}
}

func TestDisconnectReason(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"code only", "b0", ""},
		{"text", "b0 62 79 65", "bye"},
		{"control bytes dropped", "01 41 0a 1b 42", "AB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DisconnectReason(unhex(t, tt.in)); got != tt.want {
				t.Fatalf("DisconnectReason = %q, want %q", got, tt.want)
			}
		})
	}
}

func BenchmarkPutCSTPHeader(b *testing.B) {
	buf := make([]byte, CSTPHeaderLen)
	b.ReportAllocs()
	b.SetBytes(CSTPHeaderLen)
	for b.Loop() {
		PutCSTPHeader(buf, TypeData, 1400)
	}
}

func BenchmarkParseCSTPHeader(b *testing.B) {
	buf := make([]byte, CSTPHeaderLen)
	PutCSTPHeader(buf, TypeData, 1400)
	b.ReportAllocs()
	b.SetBytes(CSTPHeaderLen)
	for b.Loop() {
		if _, _, err := ParseCSTPHeader(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadFrame reads 1400-byte DATA frames through a bufio.Reader,
// the shape of the CSTP receive path.
func BenchmarkReadFrame(b *testing.B) {
	const payload = 1400
	one := make([]byte, CSTPHeaderLen+payload)
	PutCSTPHeader(one, TypeData, payload)
	stream := bytes.Repeat(one, 64)

	rd := bytes.NewReader(stream)
	br := bufio.NewReaderSize(rd, 32<<10)
	r := NewCSTPReader(br)
	buf := make([]byte, CSTPReadBufferLen)

	b.ReportAllocs()
	b.SetBytes(CSTPHeaderLen + payload)
	for b.Loop() {
		_, _, err := r.ReadFrame(buf)
		if err == io.EOF {
			rd.Reset(stream)
			br.Reset(rd)
			_, _, err = r.ReadFrame(buf)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// TestReadFrameHeaderOnlyBuffer is the regression test for a skip that
// looped forever when the buffer held exactly one header.
func TestReadFrameHeaderOnlyBuffer(t *testing.T) {
	stream := append([]byte("STF\x01\x00\x04\x00\x00abcd"), "STF\x01\x00\x00\x07\x00"...)
	r := NewCSTPReader(bytes.NewReader(stream))
	buf := make([]byte, CSTPHeaderLen)

	done := make(chan error, 1)
	go func() {
		_, _, err := r.ReadFrame(buf)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("err = %v, want ErrFrameTooLarge", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrame never returned")
	}
	if typ, n, err := ParseCSTPHeader(buf); err != nil || typ != TypeData || n != 4 {
		t.Fatalf("header after skip: %v %d %v", typ, n, err)
	}
	typ, p, err := r.ReadFrame(buf)
	if err != nil || typ != TypeKeepalive || len(p) != 0 {
		t.Fatalf("next frame: %v %d %v", typ, len(p), err)
	}
}
