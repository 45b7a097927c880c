package client

import (
	"context"
	"testing"
	"time"

	"github.com/ocnet/ocnet/split"
)

func TestOnDemandUpAndIdle(t *testing.T) {
	t.Parallel()
	h, c := start(t, nil)
	// The tunnel from start only proves the login; on demand uses its own.
	o := c.o
	c.Close()

	logins := 0
	cookie := func(ctx context.Context) (string, error) {
		logins++
		return o.Reauth(ctx)
	}
	o.Local.OnDemand = split.OnDemandRules{}
	od, err := StartOnDemand(o, time.Second, cookie)
	if err != nil {
		t.Fatal(err)
	}
	defer od.Close()
	if st, ok := od.Status().(OnDemandStatus); !ok {
		t.Fatalf("status %+v before any flow, want idle", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := od.router.DialContext(ctx, "tcp", "198.18.120.10:7")
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(conn, "up", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok := od.Status().(Status); !ok {
		t.Fatal("no tunnel while a flow runs")
	}

	// An open flow keeps the tunnel; a closed one lets it idle out.
	time.Sleep(2 * time.Second)
	if _, ok := od.Status().(Status); !ok {
		t.Fatal("tunnel idled out under an open flow")
	}
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := od.Status().(OnDemandStatus); ok {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, ok := od.Status().(OnDemandStatus); !ok {
		t.Fatal("tunnel still up after the idle time")
	}

	// The next corporate flow brings it back with the kept cookie.
	conn, err = od.router.DialContext(ctx, "tcp", "198.18.120.10:7")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := roundTrip(conn, "again", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if logins != 1 {
		t.Fatalf("logged in %d times, want 1 (the cookie should survive idling)", logins)
	}
	_ = h
}
