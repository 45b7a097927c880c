package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/ocnet/ocnet/auth"
	"github.com/ocnet/ocnet/proxy"
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

// TestOnDemandLoginFailures: a login the headend refused ends the
// OnDemand (Done, Err), since no later flow can do better; a network
// failure fails only its flow, and the next flow logs in.
func TestOnDemandLoginFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		first   error
		wantEnd bool
	}{
		{"refused", fmt.Errorf("login: %w", auth.ErrAuthFailed), true},
		{"unknown group", fmt.Errorf("login: %w", auth.ErrUnknownGroup), true},
		{"session gone", fmt.Errorf("%w: needs a person", ErrSessionGone), true},
		{"network", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("refused")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, c := start(t, nil)
			o := c.o
			c.Close()

			calls := 0
			cookie := func(ctx context.Context) (string, error) {
				calls++
				if calls == 1 {
					return "", tc.first
				}
				return o.Reauth(ctx)
			}
			od, err := StartOnDemand(o, time.Minute, cookie)
			if err != nil {
				t.Fatal(err)
			}
			defer od.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := od.router.DialContext(ctx, "tcp", "198.18.120.10:7"); err == nil {
				t.Fatal("first flow went through a tunnel its login did not bring up")
			}
			select {
			case <-od.Done():
				if !tc.wantEnd {
					t.Fatalf("a network failure ended the OnDemand: %v", od.Err())
				}
				if !errors.Is(od.Err(), tc.first) {
					t.Fatalf("Err %v, want %v", od.Err(), tc.first)
				}
				return
			default:
				if tc.wantEnd {
					t.Fatal("a refused login left a useless proxy running")
				}
			}

			conn, err := od.router.DialContext(ctx, "tcp", "198.18.120.10:7")
			if err != nil {
				t.Fatalf("next flow after a network failure: %v", err)
			}
			defer conn.Close()
			if err := roundTrip(conn, "retried", 5*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOnDemandStatusDown: before any flow the status says the tunnel is
// down, on demand, with its idle timeout.
func TestOnDemandStatusDown(t *testing.T) {
	t.Parallel()
	_, c := start(t, nil)
	o := c.o
	c.Close()
	od, err := StartOnDemand(o, 42*time.Second, o.Reauth)
	if err != nil {
		t.Fatal(err)
	}
	defer od.Close()
	st, ok := od.Status().(OnDemandStatus)
	if !ok || st.State != "down (on demand)" || st.IdleTimeout != 42*time.Second {
		t.Fatalf("status %+v", od.Status())
	}
}

// TestOnDemandNeedsListsDecide: with on-demand lists, they alone decide
// whether a name brings the tunnel up, also once a tunnel was up and its
// split-DNS domains are known; without lists, those domains decide.
func TestOnDemandNeedsListsDecide(t *testing.T) {
	list := func(s string) split.DomainList {
		l, err := split.ParseDomainList(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	pol := &split.Policy{Domains: []string{"corp.example"}}

	withLists := &OnDemand{pol: pol}
	withLists.o.Local.OnDemand = split.OnDemandRules{
		Never:  list("secret.corp.example"),
		Always: list(".wiki.corp.example"),
	}
	noLists := &OnDemand{pol: pol}

	for _, tc := range []struct {
		od   *OnDemand
		name string
		want bool
	}{
		{withLists, "a.wiki.corp.example", true},
		{withLists, "secret.corp.example", false}, // never, though a tunnel domain
		{withLists, "files.corp.example", false},  // on no list
		{noLists, "files.corp.example", true},     // the tunnel's domain
		{noLists, "www.example.net", false},
	} {
		if got := tc.od.needs(t.Context(), tc.name); got != tc.want {
			t.Errorf("lists %v, %s: needs = %v, want %v",
				tc.od == withLists, tc.name, got, tc.want)
		}
	}
}

// TestOnDemandRefusesOtherAppsWhileDown: --refuse-other-apps holds while
// no tunnel is up, instead of sending such an app direct.
func TestOnDemandRefusesOtherAppsWhileDown(t *testing.T) {
	allowed, err := split.ParseAppList("org.corp.*")
	if err != nil {
		t.Fatal(err)
	}
	od := &OnDemand{pol: &split.Policy{Domains: []string{"corp.example"}}}
	od.o.Local.Apps = split.AppRules{Allowed: allowed, Refuse: true}

	ctx := proxy.WithApp(t.Context(), "org.other")
	if _, err := od.gate(ctx, "www.example.net"); !errors.Is(err, proxy.ErrRefused) {
		t.Fatalf("other app while down: err = %v, want ErrRefused", err)
	}
	ctx = proxy.WithApp(t.Context(), "org.corp.mail")
	if d, err := od.gate(ctx, "www.example.net"); err != nil || d == nil {
		t.Fatalf("allowed app to an outside name while down: %v, %v", d, err)
	}
}
