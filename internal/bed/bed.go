// Package bed gives end-to-end tests the project's ocserv test bed: it runs
// testbed/up once per test binary, describes the bed (headend URL, trust
// anchors, credentials, corporate names) and runs commands inside the bed's
// network namespaces. It owns no protocol code; tests drive the real ocnet
// binary, built here, against the real headend.
//
// The bed needs root. Without it Start skips the test, except under CI=true,
// where a skip would hide that nothing ran, so Start fails instead.
package bed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// These mirror testbed/lib.sh; the scripts are the source of truth. Names
// and addresses of instance N (OCNET_BED_ID=N) are derived in names.
const (
	corpDomain  = "corp.example"
	netName     = "www.internet.example"
	defaultDir  = "/tmp/ocnet-bed"
	nobodyID    = "65534"
	upTimeout   = 10 * time.Minute
	occtlTimout = 10 * time.Second
)

// names are an instance's namespaces, client link device, headend and
// corporate web server addresses, as testbed/lib.sh derives them.
func names(id string) (head, client, clientDev, headIP, webIP string, err error) {
	n := 0
	if id != "" {
		n, err = strconv.Atoi(id)
		if err != nil || n < 1 || n > 99 || strconv.Itoa(n) != id {
			return "", "", "", "", "", fmt.Errorf("bed: instance id %q: want 1 to 99", id)
		}
	}
	return "ocn" + id + "-head", "ocn" + id + "-cli", "ocn" + id + "-c0",
		fmt.Sprintf("198.18.%d.1", 20+n), fmt.Sprintf("198.18.%d.10", 120+n), nil
}

// Bed describes a running test bed. Its fields are fixed once Start returns;
// a *Bed is safe for concurrent use.
type Bed struct {
	// ID is the instance: "" for the shared bed, "2" for OCNET_BED_ID=2.
	ID string

	// Env holds the KEY=VALUE settings testbed/up ran with (OCNET_BED_ID,
	// tunables such as OCNET_BED_DPD); Up runs it again with them.
	Env []string

	// Root is the module root, where testbed/ and cmd/ocnet live.
	Root string

	// State is the bed's state dir ($OCNET_BED, default /tmp/ocnet-bed).
	State string

	// URL is the headend as seen from the client namespace.
	URL string

	// CAFile signs the headend's certificate; world-readable.
	CAFile string

	// Pin is the headend key's "pin-sha256:..." value.
	Pin string

	// User and Password log in; the user is in groups Groups.
	User, Password string
	Groups         []string

	// Banner is what the headend shows after login.
	Banner string

	// CorpName resolves only through the VPN's DNS, to CorpIP.
	CorpName, CorpIP string

	// CorpURL serves a small page containing CorpText.
	CorpURL, CorpText string

	// BigURL serves BigSize bytes of random data with digest BigSHA256
	// (lowercase hex).
	BigURL    string
	BigSize   int64
	BigSHA256 string

	// NSHead and NSClient are the headend and client network namespaces;
	// ClientDev is the client's end of the link to the headend.
	NSHead, NSClient string
	ClientDev        string

	// OcctlSocket is ocserv's control socket, for occtl -s.
	OcctlSocket string

	// VPNPool is the headend's address pool (198.19.20.0/24): the source
	// address of the client's flows through the tunnel is in it.
	VPNPool string

	// NSNet is "the internet", linked to the client namespace. Its web
	// server NetIP, outside the headend's routes, serves a page with
	// NetText; the client reaches it directly from ClientNetIP. NetName is
	// its name, which nothing in the bed resolves: a test that wants it
	// runs a resolver on 127.0.0.53 in the client namespace.
	NSNet, NetName, NetIP, NetText string
	ClientNetIP                    string
}

// AccessLog is the access log of the bed's web server name ("nginx" on
// the corporate LAN, "nginx-net" on the internet): one line per request,
// the client's address first.
func (b *Bed) AccessLog(name string) string {
	return filepath.Join(b.State, "logs", name+"-access.log")
}

// instance is one bed brought up (or not) by this test binary.
type instance struct {
	once sync.Once
	bed  *Bed
	err  error
}

var (
	instMu    sync.Mutex
	instances = map[string]*instance{}
)

// Start returns the shared bed, bringing it up on the first call in this
// test binary. It skips t without root (fails under CI=true) and fails t
// when the bed cannot be brought up.
func Start(t testing.TB) *Bed {
	t.Helper()
	return StartID(t, "")
}

// StartID is Start for bed instance id ("" is the shared bed): tests that
// break links, drop packets or restart ocserv use their own instance so
// that tests elsewhere on the machine do not feel it. env holds extra
// KEY=VALUE tunables for testbed/up (OCNET_BED_DPD=10); the first call for
// an id decides them.
func StartID(t testing.TB, id string, env ...string) *Bed {
	t.Helper()

	if os.Geteuid() != 0 {
		const why = "the ocserv test bed needs root (network namespaces)"
		if os.Getenv("CI") == "true" {
			t.Fatal("bed: " + why + "; CI=true, so this is a failure, not a skip")
		}
		t.Skip("bed: " + why + "; run as root or via make test")
	}

	instMu.Lock()
	in := instances[id]
	if in == nil {
		in = &instance{}
		instances[id] = in
	}
	instMu.Unlock()

	in.once.Do(func() { in.bed, in.err = bringUp(id, env) })
	if in.err != nil {
		t.Fatal(in.err)
	}
	return in.bed
}

// bringUp runs testbed/up and reads what it wrote.
func bringUp(id string, extra []string) (*Bed, error) {
	head, cli, dev, headIP, webIP, err := names(id)
	if err != nil {
		return nil, err
	}
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	state := defaultDir + id
	if s := os.Getenv("OCNET_BED"); s != "" && id == "" {
		state = s
	}

	corp := "intranet." + corpDomain
	n, _ := strconv.Atoi(id) // names checked it; "" is 0
	b := &Bed{
		ID:          id,
		Env:         append([]string{"OCNET_BED_ID=" + id}, extra...),
		Root:        root,
		State:       state,
		URL:         "https://" + headIP + "/",
		CAFile:      filepath.Join(state, "ca.crt"),
		User:        "alice",
		Password:    "wonderland",
		Groups:      []string{"staff", "eng"},
		Banner:      "Welcome to the ocnet test bed",
		CorpName:    corp,
		CorpIP:      webIP,
		CorpURL:     "http://" + corp + "/",
		CorpText:    "Hello from " + corp,
		BigURL:      "http://" + corp + "/big.bin",
		NSHead:      head,
		NSClient:    cli,
		ClientDev:   dev,
		OcctlSocket: filepath.Join(state, "run", "occtl.sock"),
		VPNPool:     fmt.Sprintf("198.19.%d.0/24", 20+n),
		NSNet:       "ocn" + id + "-net",
		NetName:     netName,
		NetIP:       fmt.Sprintf("198.18.%d.10", 20+n),
		NetText:     "Hello from " + netName,
		ClientNetIP: fmt.Sprintf("198.18.%d.5", 20+n),
	}
	if err := b.Up(context.Background()); err != nil {
		return nil, err
	}

	if b.Pin, err = readLine(filepath.Join(state, "server.pin")); err != nil {
		return nil, err
	}
	if b.BigSHA256, err = readLine(filepath.Join(state, "big.sha256")); err != nil {
		return nil, err
	}
	big, err := os.Stat(filepath.Join(state, "www", "big.bin"))
	if err != nil {
		return nil, fmt.Errorf("bed: %w", err)
	}
	b.BigSize = big.Size()
	return b, nil
}

// Up runs testbed/up for this instance with the settings it was started
// with. It is idempotent: it starts only what is not running, so a test
// that ended ocserv brings it back with Up.
func (b *Bed) Up(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, upTimeout)
	defer cancel()

	up := exec.CommandContext(ctx, filepath.Join(b.Root, "testbed", "up"))
	up.Dir = b.Root
	up.Env = append(os.Environ(), b.Env...)
	out, err := up.CombinedOutput()
	if err != nil {
		return fmt.Errorf("bed: testbed/up (instance %q): %w\n%s", b.ID, err, out)
	}
	return nil
}

// InHead returns a command that runs name with args as root inside the
// headend namespace.
func (b *Bed) InHead(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{"netns", "exec", b.NSHead, name}, args...)
	return exec.CommandContext(ctx, "ip", argv...)
}

func readLine(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("bed: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("bed: %s is empty", path)
	}
	return s, nil
}

// ModuleRoot finds the directory holding go.mod, from the working directory
// up; go test runs each package in its own directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("bed: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bed: no go.mod above the working directory")
		}
		dir = parent
	}
}

// InClient returns a command that runs name with args as root inside the
// client namespace. ip netns exec execs in place, so the command's pid is the
// program's own and signals reach it directly.
func (b *Bed) InClient(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{"netns", "exec", b.NSClient, name}, args...)
	return exec.CommandContext(ctx, "ip", argv...)
}

// AsNobodyInClient is InClient with the program running as user and group
// nobody with no supplementary groups, as an unprivileged user would run
// ocnet. setpriv execs in place too, so the pid is still the program's.
func (b *Bed) AsNobodyInClient(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{
		"netns", "exec", b.NSClient,
		"setpriv", "--reuid=" + nobodyID, "--regid=" + nobodyID, "--clear-groups",
		"--", name,
	}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.Env = append(CleanEnv(), "HOME=/tmp")
	return cmd
}

// CleanEnv is this process's environment without proxy settings (which
// would send a client's own traffic somewhere other than the bed) and
// without HOME, which each caller sets for its program.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(name) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy", "home":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Occtl runs occtl against the headend with args and returns its output.
func (b *Bed) Occtl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, occtlTimout)
	defer cancel()

	argv := append([]string{"netns", "exec", b.NSHead, "occtl", "-s", b.OcctlSocket}, args...)
	out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("bed: occtl %s: %w: %s",
			strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Session is one VPN session as occtl --json show users reports it.
type Session struct {
	ID        int    `json:"ID"`
	Username  string `json:"Username"`
	Groupname string `json:"Groupname"`
	State     string `json:"State"`
	RemoteIP  string `json:"Remote IP"`
	IPv4      string `json:"IPv4"`
	UserAgent string `json:"User-Agent"`
	DTLS      string `json:"DTLS cipher"`
}

// Users lists the headend's sessions.
func (b *Bed) Users(ctx context.Context) ([]Session, error) {
	out, err := b.Occtl(ctx, "--json", "show", "users")
	if err != nil {
		return nil, err
	}
	var ss []Session
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		return nil, fmt.Errorf("bed: occtl json: %w", err)
	}
	return ss, nil
}

// Sessions is the number of sessions occtl show users lists.
func (b *Bed) Sessions(ctx context.Context) (int, error) {
	ss, err := b.Users(ctx)
	return len(ss), err
}

var (
	portMu   sync.Mutex
	nextPort = 21000
)

// FreeClientPort returns a TCP port on 127.0.0.1 in the client namespace that
// nothing listens on and that no earlier call returned.
func (b *Bed) FreeClientPort(t testing.TB) int {
	t.Helper()

	portMu.Lock()
	defer portMu.Unlock()

	for ; nextPort < 30000; nextPort++ {
		p := nextPort
		out, err := b.InClient(context.Background(), "ss", "-Hltn",
			"sport = :"+strconv.Itoa(p)).Output()
		if err != nil {
			t.Fatalf("bed: ss in %s: %v", b.NSClient, err)
		}
		if strings.TrimSpace(string(out)) == "" {
			nextPort++
			return p
		}
	}
	t.Fatal("bed: no free port in 21000-29999")
	return 0
}

// LogTail returns the last n lines of the bed's log file name (ocserv,
// nginx, dnsmasq), for failure messages.
func (b *Bed) LogTail(name string, n int) string {
	data, err := os.ReadFile(filepath.Join(b.State, "logs", name+".log"))
	if err != nil {
		return fmt.Sprintf("(no %s log: %v)", name, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
