package e2e

import "testing"

// TestShellValue runs without the bed: it checks the parser of
// --authenticate output that TestCookie relies on.
func TestShellValue(t *testing.T) {
	out := "COOKIE='abc=='\nHOST='198.18.20.1'\nCONNECT_URL='https://198.18.20.1/'\n" +
		"FINGERPRINT='pin-sha256:xyz'\nQUOTED='it'\\''s'\nBARE=plain\n"
	for _, tc := range []struct {
		name, want string
		fail       bool
	}{
		{"COOKIE", "abc==", false},
		{"HOST", "198.18.20.1", false},
		{"FINGERPRINT", "pin-sha256:xyz", false},
		{"QUOTED", "it's", false},
		{"BARE", "plain", false},
		{"MISSING", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := shellValue(out, tc.name)
			if (err != nil) != tc.fail {
				t.Fatalf("err %v, want failure %v", err, tc.fail)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
