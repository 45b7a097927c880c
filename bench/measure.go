package main

// One measured session: start a client, time it to the first HTTP 200,
// then download, count requests and hold idle connections through it while
// reading its CPU time and memory.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// options are the suite's knobs (flags in main).
type options struct {
	rounds    int
	maxTime   time.Duration // per download
	rpsTime   time.Duration
	idle      []int
	streams   int
	self      string // this binary, re-run as the load generator
	ocnet     string
	tunScript string
	profile   string // ocnet CPU profile of the last ocnet-dtls run
}

// runResult is one session's figures; absent figures are not in the map.
type runResult struct {
	Scenario string             `json:"scenario"`
	Round    int                `json:"round"`
	Figures  map[string]float64 `json:"figures"`
	Notes    []string           `json:"notes,omitempty"`
	Error    string             `json:"error,omitempty"`
}

// measure runs one session of sc and returns what it measured; a failure
// part-way keeps the figures taken so far.
func measure(ctx context.Context, b *bedInfo, sc scenario, round int, o options) runResult {
	r := runResult{Scenario: sc.Name, Round: round, Figures: map[string]float64{}}
	profile := ""
	if sc.Name == "ocnet-dtls" && round == o.rounds {
		profile = o.profile
	}
	c, err := startClient(b, sc, o.ocnet, o.tunScript, profile)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer c.stop()

	if err := measureSession(ctx, b, c, o, &r); err != nil {
		r.Error = err.Error()
		if log := c.log.String(); log != "" {
			r.Notes = append(r.Notes, "client log tail: "+tail(log, 600))
		}
	}
	return r
}

func tail(s string, n int) string {
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}

func measureSession(ctx context.Context, b *bedInfo, c *client, o options, r *runResult) error {
	socks := []string{}
	if c.sc.socks {
		socks = []string{"-socks", "127.0.0.1:" + strconv.Itoa(socksPort)}
	}
	web := b.web()

	// Ready: the load side polls and reports the wall-clock time of the
	// first 200, so its own start-up is not counted.
	args := append([]string{"ready", "-target", web, "-path", smallPath,
		"-timeout", "20s"}, socks...)
	var ready struct {
		At int64 `json:"ready_unix_ns"`
	}
	// Stop polling as soon as the client gives up.
	rctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-rctx.Done():
		}
	}()
	err := loadJSON(rctx, o.self, c.ns, args, &ready)
	cancel()
	if err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	r.Figures["ready_s"] = time.Unix(0, ready.At).Sub(c.start).Seconds()
	if c.sc.DTLS && !c.waitDTLS(5*time.Second) {
		r.Notes = append(r.Notes, "DTLS not established within 5 s; measured on TLS")
	}

	// Downloads, one stream then several, with the client's CPU around them.
	pids := c.pids()
	cpu0 := cpuSeconds(pids)
	url := "http://" + web + bigPath
	var n1 int64
	var s1 float64
	n1, s1, err = curlDownloads(ctx, c.ns, socks, url, 1, o.maxTime)
	if err != nil {
		return err
	}
	r.Figures["single_MBps"] = float64(n1) / s1 / 1e6
	nN, sN, err := curlDownloads(ctx, c.ns, socks, url, o.streams, o.maxTime)
	if err != nil {
		return err
	}
	r.Figures["multi_MBps"] = float64(nN) / sN / 1e6
	cpu := cpuSeconds(c.pids()) - cpu0
	r.Figures["cpu_s_per_GiB"] = cpu / (float64(n1+nN) / (1 << 30))

	// Small requests, each on a new connection.
	var rps struct {
		Requests, Seconds float64
		Errors            map[string]int64
		First             string `json:"first_error"`
	}
	args = append([]string{"rps", "-target", web, "-path", smallPath, "-duration",
		o.rpsTime.String(), "-timeout", (o.rpsTime + 10*time.Second).String()}, socks...)
	if err := loadJSON(ctx, o.self, c.ns, args, &rps); err != nil {
		return fmt.Errorf("rps: %w", err)
	}
	r.Figures["rps"] = rps.Requests / rps.Seconds
	if len(rps.Errors) > 0 {
		r.Notes = append(r.Notes, "rps: "+failNote(rps.Errors)+", first: "+rps.First)
	}
	r.Figures["peak_rss_MiB"] = memKiB(c.pids(), "VmHWM") / 1024

	if c.sc.socks && len(o.idle) > 0 {
		if err := measureIdle(ctx, o, c, socks, web, r); err != nil {
			return err
		}
	}
	if c.exited() {
		return fmt.Errorf("client exited during the run")
	}
	return nil
}

// loadJSON runs one load mode in ns and decodes its single JSON line.
func loadJSON(ctx context.Context, self, ns string, args []string, v any) error {
	cmd := loadCmd(ctx, self, ns, args...)
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return fmt.Errorf("load %s: %w %s", args[0], err, msg)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("load %s: %w", args[0], err)
	}
	return nil
}

// curlDownloads runs n curl downloads of url at once in ns, each bounded by
// maxTime, and returns the bytes moved and the wall time of the batch.
func curlDownloads(ctx context.Context, ns string, socks []string, url string, n int,
	maxTime time.Duration) (int64, float64, error) {
	var via []string
	if len(socks) == 2 {
		via = []string{"--socks5", socks[1]}
	}
	secs := strconv.FormatFloat(maxTime.Seconds(), 'f', 1, 64)
	var mu sync.Mutex
	var total int64
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			argv := append([]string{"netns", "exec", ns, "curl", "-q", "-s", "-o", "/dev/null",
				"--max-time", secs, "-w", "%{size_download} %{http_code}"}, via...)
			argv = append(argv, url)
			// curl exits 28 at --max-time; what it wrote still counts.
			out, _ := exec.CommandContext(ctx, "ip", argv...).Output()
			f := strings.Fields(string(out))
			mu.Lock()
			defer mu.Unlock()
			if len(f) != 2 || f[1] != "200" {
				if firstErr == nil {
					firstErr = fmt.Errorf("curl %s: got %q", url, out)
				}
				return
			}
			v, _ := strconv.ParseInt(f[0], 10, 64)
			total += v
		}()
	}
	wg.Wait()
	return total, time.Since(start).Seconds(), firstErr
}

// measureIdle has the load side open and hold idle connections through the
// proxy and reads the client's RSS at each count.
func measureIdle(ctx context.Context, o options, c *client, socks []string, web string,
	r *runResult) error {
	counts := make([]string, len(o.idle))
	for i, n := range o.idle {
		counts[i] = strconv.Itoa(n)
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	args := append([]string{"idle", "-target", web, "-path", smallPath, "-counts",
		strings.Join(counts, ","), "-timeout", "80s"}, socks...)
	cmd := loadCmd(ctx, o.self, c.ns, args...)
	in, _ := cmd.StdinPipe()
	outPipe, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	defer cmd.Wait()
	defer in.Close()

	dec := json.NewDecoder(bufio.NewReader(outPipe))
	for range o.idle {
		var step struct {
			Want, Held, Failed float64
			OpenSeconds        float64 `json:"open_seconds"`
		}
		if err := dec.Decode(&step); err != nil {
			if err == io.EOF {
				return fmt.Errorf("idle: load side ended early")
			}
			return fmt.Errorf("idle: %w", err)
		}
		// Let the client settle after the burst of opens.
		time.Sleep(time.Second)
		key := fmt.Sprintf("idle%d", int(step.Want))
		r.Figures[key+"_rss_MiB"] = memKiB(c.pids(), "VmRSS") / 1024
		r.Figures[key+"_held"] = step.Held
		if step.Held < step.Want {
			r.Notes = append(r.Notes, fmt.Sprintf("idle: held %.0f of %.0f connections",
				step.Held, step.Want))
		}
		io.WriteString(in, "\n")
	}
	return nil
}

// failNote sums failures by kind, the most frequent kind first: "12 failed
// requests (9 dial timeout, 3 read reset)".
func failNote(kinds map[string]int64) string {
	var n int64
	names := make([]string, 0, len(kinds))
	for k, v := range kinds {
		n += v
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if kinds[names[i]] != kinds[names[j]] {
			return kinds[names[i]] > kinds[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%d %s", kinds[k], k)
	}
	return fmt.Sprintf("%d failed requests (%s)", n, strings.Join(parts, ", "))
}
