package dnsproxy

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestAnswerShortName: the --dns-listen server completes a short name with
// the default domain, as the proxies do, answers under the name asked, and
// never sends the bare name to the local resolver.
func TestAnswerShortName(t *testing.T) {
	f := newFixture(t)

	for _, tc := range []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
	}{
		{"intranet", dns.TypeA, dns.RcodeSuccess, []string{"intranet. IN A 10.1.2.3"}},
		{"Intranet", dns.TypeAAAA, dns.RcodeSuccess, []string{"Intranet. IN AAAA fd00::3"}},
		{"nothere", dns.TypeA, dns.RcodeNameError, nil},
	} {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()

			resp := f.res.Answer(ctx, question(tc.name, tc.qtype))
			if resp.Rcode != tc.rcode {
				t.Fatalf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode],
					dns.RcodeToString[tc.rcode])
			}
			if got := rrText(resp); !slices.Equal(got, tc.answer) {
				t.Errorf("answer = %q, want %q", got, tc.answer)
			}
		})
	}
	if n := f.local.total(); n != 0 {
		t.Errorf("local resolver was asked %d questions for short names", n)
	}
	if f.tunnel.count("intranet.corp.example", "") == 0 {
		t.Error("tunnel server never saw intranet.corp.example")
	}
}
