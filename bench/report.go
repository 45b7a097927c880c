package main

// Summaries of the runs: medians with their spread, ratios to the reference
// clients, a text table, the JSON record and the chart.

import (
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// figure describes one measured quantity.
type figure struct {
	Key    string `json:"key"`
	Label  string `json:"label"`
	Higher bool   `json:"higher_is_better"`
}

// baseFigures are measured on every scenario; figureList adds the idle ones.
var baseFigures = []figure{
	{"single_MBps", "download, 1 stream (MB/s)", true},
	{"multi_MBps", "download, 8 streams (MB/s)", true},
	{"rps", "1 KiB requests/s, new conns", true},
	{"ready_s", "start to first HTTP 200 (s)", false},
	{"cpu_s_per_GiB", "client CPU s per GiB", false},
	{"peak_rss_MiB", "client peak RSS (MiB)", false},
}

func figureList(idle []int) []figure {
	fs := append([]figure(nil), baseFigures...)
	for _, n := range idle {
		fs = append(fs, figure{fmt.Sprintf("idle%d_rss_MiB", n),
			fmt.Sprintf("RSS, %d idle conns (MiB)", n), false})
	}
	return fs
}

// stat is the median and spread of one figure over a scenario's runs.
type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// comparison is a ratio column: subject over reference, figure by figure.
type comparison struct {
	Subject   string             `json:"subject"`
	Reference string             `json:"reference"`
	Ratios    map[string]float64 `json:"ratios"`
}

type report struct {
	Started     time.Time                  `json:"started"`
	Seconds     float64                    `json:"seconds"`
	Host        map[string]string          `json:"host"`
	Options     map[string]any             `json:"options"`
	Figures     []figure                   `json:"figures"`
	Scenarios   []scenario                 `json:"scenarios"`
	Summary     map[string]map[string]stat `json:"summary"`
	Comparisons []comparison               `json:"comparisons"`
	Runs        []runResult                `json:"runs"`
	Caveat      string                     `json:"caveat"`
}

func newReport(scs []scenario, runs []runResult, o options, started time.Time) *report {
	rep := &report{
		Started: started, Seconds: time.Since(started).Seconds(),
		Host: hostInfo(),
		Options: map[string]any{
			"rounds": o.rounds, "max_time_s": o.maxTime.Seconds(),
			"rps_time_s": o.rpsTime.Seconds(), "streams": o.streams, "idle": o.idle,
		},
		Figures: figureList(o.idle), Scenarios: scs, Runs: runs,
		Summary: map[string]map[string]stat{},
		Caveat: "2 shared cores run client, headend, web server and load generator; " +
			"other work on the machine adds noise, so read medians",
	}
	for _, sc := range scs {
		vals := map[string][]float64{}
		for _, r := range runs {
			if r.Scenario != sc.Name {
				continue
			}
			for k, v := range r.Figures {
				if !math.IsNaN(v) && !math.IsInf(v, 0) {
					vals[k] = append(vals[k], v)
				}
			}
		}
		sum := map[string]stat{}
		for k, v := range vals {
			sum[k] = summarize(v)
		}
		rep.Summary[sc.Name] = sum
	}

	// ocnet against ocproxy on the same channel (the rootless reference),
	// and against the kernel TUN on the same channel (the privileged one).
	for _, ch := range []string{"dtls", "tls"} {
		for _, ref := range []string{"ocproxy", "tun"} {
			subj, refName := "ocnet-"+ch, ref+"-"+ch
			a, ok1 := rep.Summary[subj]
			b, ok2 := rep.Summary[refName]
			if !ok1 || !ok2 {
				continue
			}
			c := comparison{Subject: subj, Reference: refName, Ratios: map[string]float64{}}
			for _, f := range rep.Figures {
				if sa, ok := a[f.Key]; ok {
					if sb, ok := b[f.Key]; ok && sb.Median != 0 {
						c.Ratios[f.Key] = sa.Median / sb.Median
					}
				}
			}
			rep.Comparisons = append(rep.Comparisons, c)
		}
	}
	return rep
}

func summarize(v []float64) stat {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return stat{Median: med, Min: s[0], Max: s[n-1], N: n}
}

func hostInfo() map[string]string {
	h := map[string]string{"cpus": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h["kernel"] = strings.TrimSpace(string(b))
	}
	for _, c := range [][]string{{"openconnect", "--version"}, {"ocserv", "--version"}} {
		out, _ := exec.Command(c[0], c[1]).CombinedOutput()
		if line, _, _ := strings.Cut(string(out), "\n"); line != "" {
			h[c[0]] = strings.TrimSpace(line)
		}
	}
	return h
}

// write prints the table and writes table.txt, results.json, chart.png and,
// when there is a profile, ocnet's top functions.
func (rep *report) write(ctx context.Context, dir string, o options) error {
	var sb strings.Builder
	rep.table(&sb)
	fmt.Print(sb.String())
	if err := os.WriteFile(filepath.Join(dir, "table.txt"), []byte(sb.String()), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}

	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), js, 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := rep.chart(filepath.Join(dir, "chart.png")); err != nil {
		return err
	}
	fmt.Printf("\nbench: %s/{table.txt,results.json,chart.png}\n", dir)

	if o.profile != "" {
		if _, err := os.Stat(o.profile); err == nil {
			top := filepath.Join(dir, "ocnet-cpu-top.txt")
			out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top",
				"-nodecount=30", o.ocnet, o.profile).CombinedOutput()
			if err == nil {
				os.WriteFile(top, out, 0o644)
				fmt.Printf("bench: ocnet CPU profile (last ocnet-dtls session): %s, top: %s\n",
					o.profile, top)
			}
		}
	}
	return nil
}

// table writes medians with [min-max] per scenario, then the ratios.
func (rep *report) table(w io.Writer) {
	fmt.Fprintf(w, "\nmedian [min-max] of %v sessions per scenario; %s\n\n",
		rep.Options["rounds"], rep.Caveat)
	fmt.Fprintf(w, "%-30s", "figure")
	for _, sc := range rep.Scenarios {
		fmt.Fprintf(w, " %22s", sc.Name)
	}
	fmt.Fprintln(w)
	for _, f := range rep.Figures {
		fmt.Fprintf(w, "%-30s", f.Label)
		for _, sc := range rep.Scenarios {
			s, ok := rep.Summary[sc.Name][f.Key]
			if !ok {
				fmt.Fprintf(w, " %22s", "n/a")
				continue
			}
			fmt.Fprintf(w, " %22s", fmt.Sprintf("%s [%s-%s]", num(s.Median), num(s.Min),
				num(s.Max)))
		}
		fmt.Fprintln(w)
	}
	if len(rep.Comparisons) == 0 {
		return
	}

	fmt.Fprintf(w, "\nratio of medians (higher-is-better figures: >1 means ocnet is ahead; "+
		"lower-is-better: <1)\n\n%-30s", "figure")
	for _, c := range rep.Comparisons {
		fmt.Fprintf(w, " %26s", c.Subject+" / "+c.Reference)
	}
	fmt.Fprintln(w)
	for _, f := range rep.Figures {
		fmt.Fprintf(w, "%-30s", f.Label)
		for _, c := range rep.Comparisons {
			v, ok := c.Ratios[f.Key]
			if !ok {
				fmt.Fprintf(w, " %26s", "n/a")
				continue
			}
			fmt.Fprintf(w, " %26s", fmt.Sprintf("%.2fx", v))
		}
		fmt.Fprintln(w)
	}
	for _, r := range rep.Runs {
		if r.Error != "" || len(r.Notes) > 0 {
			fmt.Fprintf(w, "\nround %d %s: %s %s", r.Round, r.Scenario, r.Error,
				strings.Join(r.Notes, "; "))
		}
	}
	fmt.Fprintln(w)
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff},
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, color.RGBA{0xd6, 0x27, 0x28, 0xff},
	color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff},
}

// chart draws two panels: throughput medians per scenario, and ocnet's ratios to each reference per figure.
func (rep *report) chart(path string) error {
	left := plot.New()
	left.Title.Text = "Throughput (median; spread in table.txt)"
	left.Y.Label.Text = "MB/s"
	groups := []string{"single_MBps", "multi_MBps"}
	w := vg.Points(14)
	for i, sc := range rep.Scenarios {
		vals := make(plotter.Values, len(groups))
		for j, k := range groups {
			s := rep.Summary[sc.Name][k]
			vals[j] = s.Median
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return fmt.Errorf("bench: chart: %w", err)
		}
		bars.Color = palette[i%len(palette)]
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(float64(i)-float64(len(rep.Scenarios)-1)/2)
		left.Add(bars)
		left.Legend.Add(sc.Name, bars)

	}
	left.NominalX("1 stream", "8 streams")
	left.Legend.Top = true

	right := plot.New()
	right.Title.Text = "ocnet / reference (median ratio)"
	right.Y.Label.Text = "ratio (1 = same)"
	var labels []string
	for _, f := range rep.Figures {
		labels = append(labels, shortLabel(f.Key))
	}
	for i, c := range rep.Comparisons {
		vals := make(plotter.Values, len(rep.Figures))
		for j, f := range rep.Figures {
			vals[j] = c.Ratios[f.Key]
		}
		bars, err := plotter.NewBarChart(vals, vg.Points(8))
		if err != nil {
			return fmt.Errorf("bench: chart: %w", err)
		}
		bars.Color = palette[(i+2)%len(palette)]
		bars.LineStyle.Width = 0
		bars.Offset = vg.Points(8) * vg.Length(float64(i)-float64(len(rep.Comparisons)-1)/2)
		right.Add(bars)
		right.Legend.Add(c.Subject+" / "+c.Reference, bars)
	}
	one := plotter.NewFunction(func(float64) float64 { return 1 })
	one.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
	right.Add(one)
	right.NominalX(labels...)
	right.Legend.Top = true

	img := vgimg.New(16*vg.Inch, 6*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 2, PadTop: vg.Inch / 4,
		PadBottom: vg.Inch / 4, PadLeft: vg.Inch / 4, PadRight: vg.Inch / 4}
	canvases := plot.Align([][]*plot.Plot{{left, right}}, tiles, dc)
	left.Draw(canvases[0][0])
	right.Draw(canvases[0][1])

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: chart: %w", err)
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return fmt.Errorf("bench: chart: %w", err)
	}
	return nil
}

func shortLabel(key string) string {
	if n, ok := strings.CutPrefix(key, "idle"); ok {
		n, _, _ = strings.Cut(n, "_")
		return "RSS " + n + " idle"
	}
	return map[string]string{
		"single_MBps": "1 stream", "multi_MBps": "8 streams", "rps": "req/s",
		"ready_s": "ready", "cpu_s_per_GiB": "CPU/GiB", "peak_rss_MiB": "peak RSS",
	}[key]
}
