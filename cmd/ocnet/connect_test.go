package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ocnet/ocnet/session"
)

// TestCookieHint: a refused cookie is an authentication failure (3) with
// advice that fits where the cookie came from; other connect errors pass
// untouched. (Refused on reconnect, with no re-login, it is exit 6: see
// client.ErrSessionGone.)
func TestCookieHint(t *testing.T) {
	refused := fmt.Errorf("%w (HTTP 401: Cookie is not acceptable)", session.ErrCookieRejected)
	busy := &session.ConnectError{Status: 503, Reason: "Server configuration error"}

	for _, tc := range []struct {
		name      string
		err       error
		fromStdin bool
		wantCode  int
		wantText  string
	}{
		{"stdin cookie", refused, true, exitAuth, "--authenticate"},
		{"fresh cookie", refused, false, exitAuth, "just issued"},
		{"server busy", busy, true, exitNetwork, "Server configuration error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := cookieHint(tc.err, tc.fromStdin)
			if got := exitCode(err); got != tc.wantCode {
				t.Errorf("exit code %d, want %d (%v)", got, tc.wantCode, err)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("message %q lacks %q", err, tc.wantText)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("hint lost the cause: %v", err)
			}
		})
	}
}
