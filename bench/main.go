// Command bench is ocnet's benchmark suite: on the project's ocserv bed it
// measures ocnet's SOCKS5 proxy against the two reference clients,
// openconnect + ocproxy (rootless, SOCKS5) and openconnect with a kernel
// TUN (privileged), each over DTLS and over TLS only, in one run with the
// scenarios alternating round by round. It prints medians with their
// spread and ratios to the references, and writes the raw runs as JSON and
// a chart as PNG.
//
//	sudo go run ./bench            # or: make bench
//	sudo go run ./bench -rounds 5 -scenarios ocnet-dtls,ocproxy-dtls
//
// It needs root (network namespaces, a TUN device) and brings the bed up
// with testbed/up if it is down; it never takes the bed down. For the run
// it adds its own nginx on the corporate web address (port 8081, enough
// connections for the idle test, a 1 KiB file at /1k.bin) and a namespace
// for the kernel-TUN client; both go when the run ends.
//
// "bench load ..." is the load generator; the suite runs it inside the
// client's namespace and it is of no use by hand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "load" {
		if err := runLoad(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := runSuite(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func runSuite(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.rounds, "rounds", 3, "sessions per scenario")
	fs.DurationVar(&o.maxTime, "max-time", 5*time.Second, "bound on each download")
	fs.DurationVar(&o.rpsTime, "rps-time", 3*time.Second, "small-request load per session")
	fs.IntVar(&o.streams, "streams", 8, "parallel downloads")
	idle := fs.String("idle", "1000,5000", `idle connection counts, ascending ("" = skip)`)
	names := fs.String("scenarios", scenarioNames(allScenarios), "scenarios to run, comma-separated")
	out := fs.String("out", "", "result directory (default: a new dir under $TMPDIR)")
	prebuilt := fs.String("ocnet", "", "ocnet binary to measure, executable by nobody "+
		"(default: build ./cmd/ocnet)")
	noProfile := fs.Bool("no-profile", false, "skip ocnet's CPU profile")
	if err := fs.Parse(args); err != nil {
		return err
	}
	scs, err := pickScenarios(*names)
	if err != nil {
		return err
	}
	if o.idle, err = parseCounts(*idle); err != nil {
		return err
	}
	if o.rounds < 1 || o.streams < 1 {
		return errors.New("bench: -rounds and -streams must be at least 1")
	}
	if os.Geteuid() != 0 {
		return errors.New("bench: needs root for the bed's namespaces (try: sudo make bench)")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Each proxied connection costs the load side and the proxy one
	// descriptor; children inherit the soft limit we set here, raised as
	// far as the hard limit allows (raising that needs CAP_SYS_RESOURCE).
	if err := raiseNoFile(o.idle); err != nil {
		return err
	}

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(os.TempDir(), "ocbench-"+time.Now().Format("20060102-150405"))
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if o.self, err = os.Executable(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	o.tunScript = filepath.Join(root, "bench", "tun-script")

	fmt.Printf("bench: bed up, building ocnet; results in %s\n", *out)
	b, err := readBed(ctx, root)
	if err != nil {
		return err
	}
	if o.ocnet = *prebuilt; o.ocnet == "" {
		if o.ocnet, err = buildOcnet(ctx, root, *out); err != nil {
			return err
		}
	}
	if !*noProfile {
		// ocnet runs as nobody and writes the profile itself.
		pd := filepath.Join(*out, "profile")
		if err := os.MkdirAll(pd, 0o1777); err == nil {
			os.Chmod(pd, 0o1777)
			o.profile = filepath.Join(pd, "ocnet-dtls.cpu")
		}
	}

	withTun := false
	for _, sc := range scs {
		withTun = withTun || sc.Kind == "tun"
	}
	x, err := setup(ctx, b, withTun)
	defer x.teardown()
	if err != nil {
		return err
	}

	// The first read of big.bin fills the page cache; do it before timing.
	exec.CommandContext(ctx, "cat", filepath.Join(b.state, "www", "big.bin")).Run()

	started := time.Now()
	var runs []runResult
	for round := 1; round <= o.rounds; round++ {
		// Rotate the order each round so no scenario always runs first.
		for i := range scs {
			if ctx.Err() != nil {
				return errors.New("bench: interrupted")
			}
			sc := scs[(i+round-1)%len(scs)]
			t0 := time.Now()
			r := measure(ctx, b, sc, round, o)
			runs = append(runs, r)
			fmt.Printf("bench: round %d %-13s %5.1fs %s\n", round, sc.Name,
				time.Since(t0).Seconds(), brief(r))
			// ocserv frees the session after the BYE; a moment keeps one
			// session's teardown out of the next one's figures.
			time.Sleep(500 * time.Millisecond)
		}
	}

	rep := newReport(scs, runs, o, started)
	return rep.write(ctx, *out, o)
}

// brief is the one-line progress note of a run.
func brief(r runResult) string {
	if r.Error != "" {
		return "ERROR " + r.Error
	}
	s := fmt.Sprintf("ready %.3fs 1x %.0f MB/s %dx %.0f MB/s %.0f req/s",
		r.Figures["ready_s"], r.Figures["single_MBps"], 8, r.Figures["multi_MBps"],
		r.Figures["rps"])
	if v, ok := r.Figures["idle5000_rss_MiB"]; ok {
		s += fmt.Sprintf(" 5k-idle %.0f MiB", v)
	}
	if len(r.Notes) > 0 {
		s += " (" + strings.Join(r.Notes, "; ") + ")"
	}
	return s
}

func scenarioNames(scs []scenario) string {
	var n []string
	for _, s := range scs {
		n = append(n, s.Name)
	}
	return strings.Join(n, ",")
}

func pickScenarios(list string) ([]scenario, error) {
	var out []scenario
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, s := range allScenarios {
			if s.Name == name {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("bench: unknown scenario %q (have %s)", name,
				scenarioNames(allScenarios))
		}
	}
	return out, nil
}

func parseCounts(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("bench: -idle: want ascending positive counts, got %q", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// moduleRoot is the directory holding go.mod, from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bench: run me inside the ocnet module (no go.mod above here)")
		}
		dir = parent
	}
}

// buildOcnet builds cmd/ocnet into dir, readable and executable by nobody.
func buildOcnet(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "ocnet")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/ocnet")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: build ocnet: %w\n%s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return bin, nil
}

// raiseNoFile sets the soft RLIMIT_NOFILE to the hard limit and checks that
// it covers the largest idle count.
func raiseNoFile(idle []int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("bench: RLIMIT_NOFILE: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("bench: raise RLIMIT_NOFILE: %w", err)
	}
	if n := len(idle); n > 0 && lim.Cur < uint64(idle[n-1])+1000 {
		return fmt.Errorf("bench: RLIMIT_NOFILE hard limit %d is too low for %d idle "+
			"connections (ulimit -Hn)", lim.Max, idle[n-1])
	}
	return nil
}
