package dnsproxy

import (
	"testing"

	"github.com/ocnet/ocnet/split"
)

// BenchmarkNameRoute is the DNS routing decision the resolver makes for
// every lookup before any packet goes out: normalise the name, then ask the
// split policy whether the tunnel's DNS servers own it.
func BenchmarkNameRoute(b *testing.B) {
	r := New(Options{Policy: &split.Policy{
		Domains: []string{"corp.example", "dev.example", "lab.example.org"},
	}})
	cases := []struct {
		name, query string
		tunnel      bool
	}{
		{"tunnel", "intranet.corp.example.", true},
		{"local", "www.example.com", false},
		{"mixed-case", "Intranet.CORP.example", true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				n := normalize(tc.query)
				if n == "" || r.isTunnelName(n) != tc.tunnel {
					b.Fatalf("%q: wrong decision", tc.query)
				}
			}
		})
	}
}
