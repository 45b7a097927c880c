package dnsproxy

import (
	"errors"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestNegativeCache: NXDOMAIN and NODATA for tunnel names are cached for
// the SOA's negative TTL within the floor and ceiling, so a second
// lookup reaches no server.
func TestNegativeCache(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		qtype   uint16 // the question whose entry is checked
		soa     string // "" means the server sends none
		wantErr error
		wantTTL time.Duration
	}{
		{"nxdomain, soa minimum", "missing.corp.example", dns.TypeA,
			"corp.example. 300 IN SOA ns. admin. 1 3600 600 86400 30",
			errNXDomain, 30 * time.Second},
		{"nxdomain, soa ttl below minimum", "missing.corp.example", dns.TypeAAAA,
			"corp.example. 20 IN SOA ns. admin. 1 3600 600 86400 40",
			errNXDomain, 20 * time.Second},
		{"nxdomain, capped", "missing.corp.example", dns.TypeA,
			"corp.example. 3600 IN SOA ns. admin. 1 3600 600 86400 3600",
			errNXDomain, maxNegativeTTL},
		{"nxdomain, floor", "missing.corp.example", dns.TypeA,
			"corp.example. 0 IN SOA ns. admin. 1 3600 600 86400 0",
			errNXDomain, minNegativeTTL},
		{"nxdomain, no soa", "missing.corp.example", dns.TypeA, "",
			errNXDomain, minNegativeTTL},
		{"nodata", "v4only.corp.example", dns.TypeAAAA,
			"corp.example. 300 IN SOA ns. admin. 1 3600 600 86400 45",
			nil, 45 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.soa != "" {
				f.tunnel.setSOA(mustRR(t, tt.soa))
			}

			for i := range 3 {
				_, err := f.res.LookupNetIP(t.Context(), tt.host)
				if tt.wantErr == nil && err != nil {
					t.Fatalf("lookup %d: %v", i+1, err)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("lookup %d: %v, want %v", i+1, err, tt.wantErr)
				}
				// A and AAAA once each, however often the name is asked.
				if got := f.tunnel.count(tt.host, ""); got != 2 {
					t.Errorf("after lookup %d the server saw %d questions, want 2", i+1, got)
				}
			}

			h, ok := f.res.sh.cache.get(cacheKey{tt.host, tt.qtype}, time.Now())
			if !ok {
				t.Fatalf("no cache entry for %s %s", tt.host, dns.TypeToString[tt.qtype])
			}
			if h.ttl > tt.wantTTL || h.ttl < tt.wantTTL-2*time.Second {
				t.Errorf("cached for %v, want %v", h.ttl, tt.wantTTL)
			}
			if h.nx != (tt.wantErr != nil) {
				t.Errorf("cached as NXDOMAIN %v, want %v", h.nx, tt.wantErr != nil)
			}
		})
	}
}

// TestNegativeCacheAnswer: the --dns-listen and TUN path keeps the
// difference between NXDOMAIN and NODATA when the answer comes from the
// cache, and asks the server again once the entry expired.
func TestNegativeCacheAnswer(t *testing.T) {
	f := newFixture(t)
	f.tunnel.setSOA(mustRR(t, "corp.example. 300 IN SOA ns. admin. 1 3600 600 86400 30"))

	for i := range 3 {
		resp := f.res.Answer(t.Context(), question("missing.corp.example.", dns.TypeA))
		if resp.Rcode != dns.RcodeNameError {
			t.Errorf("query %d: rcode %s, want NXDOMAIN", i+1, dns.RcodeToString[resp.Rcode])
		}
		resp = f.res.Answer(t.Context(), question("v4only.corp.example.", dns.TypeAAAA))
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
			t.Errorf("query %d: %s with %d records, want NOERROR without any", i+1,
				dns.RcodeToString[resp.Rcode], len(resp.Answer))
		}
	}
	if got := f.tunnel.count("missing.corp.example", ""); got != 1 {
		t.Errorf("server saw missing.corp.example %d times, want 1", got)
	}
	if got := f.tunnel.count("v4only.corp.example", ""); got != 1 {
		t.Errorf("server saw v4only.corp.example %d times, want 1", got)
	}

	// Expiry, on the cache's own clock.
	key := cacheKey{"missing.corp.example", dns.TypeA}
	if _, ok := f.res.sh.cache.get(key, time.Now().Add(31*time.Second)); ok {
		t.Error("negative entry still served after its TTL ran out")
	}
}
