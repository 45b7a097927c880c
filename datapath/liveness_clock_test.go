package datapath

import (
	"testing"
	"time"
)

// TestLivenessClock walks the clock through the rules of protocol.md §3.4
// with the intervals a headend sends, including a 9-hour keepalive, which
// the DTLS channel caps (NewDTLS) so ocserv keeps its downstream on UDP.
func TestLivenessClock(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

	for _, tc := range []struct {
		name  string
		dpd   time.Duration
		keep  time.Duration
		rx    []float64 // seconds at which a DPD response arrives
		ticks map[float64]Action
	}{
		{
			name: "quiet peer gets probed, then declared dead",
			dpd:  30 * time.Second,
			ticks: map[float64]Action{
				29: ActNone, 31: ActDPD, 32: ActNone, 47: ActDPD, 61: ActDead,
			},
		},
		{
			name: "DPD responses keep the peer alive",
			dpd:  30 * time.Second,
			rx:   []float64{25, 50},
			ticks: map[float64]Action{
				31: ActNone, 56: ActNone, 81: ActDPD,
			},
		},
		{
			name:  "keepalive after the interval without sending",
			keep:  20 * time.Second,
			ticks: map[float64]Action{19: ActNone, 21: ActKeepalive},
		},
		{
			name:  "9-hour keepalive stays quiet for an hour",
			keep:  9 * time.Hour,
			ticks: map[float64]Action{3600: ActNone},
		},
		{
			name:  "zero intervals do nothing",
			ticks: map[float64]Action{1e6: ActNone},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &Liveness{DPD: tc.dpd, Keepalive: tc.keep}
			l.Start(t0)
			// Walk second by second so probes fire in order.
			for s := 1.0; s <= 1e6; s++ {
				for _, r := range tc.rx {
					if r == s {
						l.Answered(at(s))
					}
				}
				got := l.Tick(at(s))
				if want, ok := tc.ticks[s]; ok && got != want {
					t.Fatalf("at %vs: %v, want %v", s, got, want)
				}
				if got == ActKeepalive {
					l.Sent(at(s))
				}
				if len(tc.ticks) > 0 && s > maxKey(tc.ticks) {
					break
				}
			}
		})
	}
}

func maxKey(m map[float64]Action) float64 {
	var k float64
	for s := range m {
		k = max(k, s)
	}
	return k
}

func TestDTLSKeepaliveCapped(t *testing.T) {
	d, err := NewDTLS(DTLSOptions{
		Conn: nil, Keepalive: 9 * time.Hour,
		Keys: DTLSKeys{
			WriteKey: make([]byte, 16), WriteIV: make([]byte, 4),
			ReadKey: make([]byte, 16), ReadIV: make([]byte, 4),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.live.Keepalive != MaxDTLSKeepalive {
		t.Fatalf("keepalive %v, want the %v cap", d.live.Keepalive, MaxDTLSKeepalive)
	}
}
