package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestFailKind(t *testing.T) {
	op := func(o string, err error) error { return &net.OpError{Op: o, Net: "tcp", Err: err} }
	for _, tc := range []struct {
		err  error
		want string
	}{
		{op("dial", os.ErrDeadlineExceeded), "dial timeout"},
		{op("read", os.NewSyscallError("read", syscall.ECONNRESET)), "read reset"},
		{op("dial", os.NewSyscallError("connect", syscall.ECONNREFUSED)), "dial refused"},
		{fmt.Errorf("socks: %w", op("read", os.ErrDeadlineExceeded)), "socks timeout"},
		{fmt.Errorf("socks: %w", io.EOF), "socks EOF"},
		{io.ErrUnexpectedEOF, "request EOF"},
		{errors.New("http: status 503"), "http: status 503"},
		{errors.New("odd"), "request error"},
	} {
		if got := failKind(tc.err); got != tc.want {
			t.Errorf("failKind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestFailNote(t *testing.T) {
	got := failNote(map[string]int64{"read reset": 1, "dial timeout": 3, "dial refused": 1})
	want := "5 failed requests (3 dial timeout, 1 dial refused, 1 read reset)"
	if got != want {
		t.Errorf("failNote = %q, want %q", got, want)
	}
}
