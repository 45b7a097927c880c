package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/control"
	"github.com/ocnet/ocnet/dnsproxy"
	"github.com/ocnet/ocnet/session"
	"github.com/ocnet/ocnet/split"
)

// explanation is what `ocnet explain` prints, and what the running
// client's control socket sends back for GET /explain.
type explanation struct {
	Target    string      `json:"target"`
	Name      string      `json:"name,omitempty"`
	Port      string      `json:"port,omitempty"`
	App       *step       `json:"app,omitempty"`
	DNS       *step       `json:"dns,omitempty"`
	Addresses []string    `json:"addresses,omitempty"`
	Resolve   string      `json:"resolve,omitempty"` // why there are no addresses
	Routes    []routeStep `json:"routes,omitempty"`
	OnDemand  *step       `json:"on_demand,omitempty"`
	Decision  string      `json:"decision"` // tunnel, direct, refuse; fail, unknown: no address
	Rule      string      `json:"rule"`
}

// step is one rule's verdict.
type step struct {
	Result string `json:"result"`
	Rule   string `json:"rule"`
}

type routeStep struct {
	Address  string `json:"address"`
	Decision string `json:"decision"`
	Rule     string `json:"rule"`
}

// explainFlow decides a flow to target ("NAME", "IP", "NAME:PORT" or
// "[IPv6]:PORT") for app against p. With a resolver the name is resolved
// the way the proxies would (tunnel names through the tunnel only);
// without one only the name rules apply.
func explainFlow(ctx context.Context, p *split.Policy, res *dnsproxy.Resolver,
	target, app string) (*explanation, error) {
	host, port, err := splitTarget(target)
	if err != nil {
		return nil, err
	}
	e := &explanation{Target: target, Port: port}
	if app != "" || p.Apps.Configured() {
		ok, r := p.Apps.Check(app)
		e.App = &step{Result: map[bool]string{true: "may use the tunnel",
			false: "outside the tunnel's apps"}[ok], Rule: r.String()}
	}

	ip, err := netip.ParseAddr(host)
	var addrs []netip.Addr
	if err == nil {
		addrs = []netip.Addr{ip.Unmap()}
	} else {
		e.Name = host
		tunnel, r := p.DNSRule(host)
		e.DNS = &step{Result: map[bool]string{true: "tunnel DNS servers",
			false: "local resolver"}[tunnel], Rule: r.String()}
		localFailed := false
		if res == nil {
			e.Resolve = "not resolved: no live session"
		} else if addrs, err = res.LookupNetIP(ctx, host); err != nil {
			e.Resolve = err.Error()
			localFailed = !tunnel
		}
		e.OnDemand = onDemandStep(&p.OnDemand, host, localFailed)
	}

	flow := split.Flow{Name: e.Name, App: app}
	d, r := p.Decide(flow)
	for i, a := range addrs {
		flow.Addr = a
		da, ra := p.Decide(flow)
		e.Addresses = append(e.Addresses, a.String())
		e.Routes = append(e.Routes, routeStep{a.String(), da.String(), ra.String()})
		if i == 0 {
			d, r = da, ra // the proxies try the addresses in order
		}
	}
	e.Decision, e.Rule = d.String(), r.String()

	// A name the live session cannot resolve is no flow at all: the
	// proxies fail it. Reporting the name rules' "direct" here sent
	// people looking for a direct path that is never tried.
	if res != nil && e.Name != "" && len(addrs) == 0 && d != split.Refuse {
		e.Decision, e.Rule = "fail", "the name does not resolve"
	}

	// Offline nothing is resolved, and a name no app or name rule
	// decides is routed by the address it will resolve to: the rules'
	// fallback ("outside every split-include") said "direct" for names
	// that the tunnel's DNS resolves into a split-include.
	if res == nil && e.Name != "" && byAddress(r) {
		e.Decision, e.Rule = "unknown", "until resolved: "+routesHint(p)
	}
	return e, nil
}

// byAddress says whether r is the fallback Decide reaches when no rule
// matched, which for a flow with an address the address rules precede.
func byAddress(r split.Rule) bool {
	return r.Kind == split.RuleNotIncluded || r.Kind == split.RuleTunnelAll
}

// routesHint says in a line which addresses go to the tunnel, for a name
// that is not resolved yet.
func routesHint(p *split.Policy) string {
	if len(p.Include) == 0 {
		return "tunnel for any address not excluded (split-exclude, --exclude, " +
			"the LAN, loopback), direct for the others"
	}

	const show = 3
	inc := append(append([]netip.Prefix(nil), p.User.Include...), p.Include...)
	var names []string
	for _, pfx := range inc[:min(len(inc), show)] {
		names = append(names, pfx.String())
	}
	list := strings.Join(names, ", ")
	if len(inc) > show {
		list += fmt.Sprintf(" and %d more", len(inc)-show)
	}
	if len(p.Exclude) > 0 || len(p.User.Exclude) > 0 {
		list += " (exclusions apart)"
	}
	return "tunnel for addresses in " + list + ", direct for the others"
}

// onDemandStep reports the connect-on-demand verdict for name, and notes
// when a connect-if-needed entry would apply after a failed local lookup.
func onDemandStep(o *split.OnDemandRules, name string, localFailed bool) *step {
	if !o.Configured() {
		return nil
	}
	connect, r := o.Connect(name, localFailed)
	if connect {
		return &step{Result: onDemandUp, Rule: r.String()}
	}
	if r.Kind == split.RuleNone && !localFailed {
		if c, r2 := o.Connect(name, true); c {
			return &step{Result: onDemandIfNeeded, Rule: r2.String()}
		}
	}
	return &step{Result: onDemandNo, Rule: r.String()}
}

// The on-demand verdicts, as the JSON's on_demand.result carries them.
const (
	onDemandUp       = "bring the tunnel up"
	onDemandIfNeeded = "bring the tunnel up only if the local lookup fails"
	onDemandNo       = "do not bring the tunnel up"
)

// splitTarget separates an optional port from a name or address.
func splitTarget(t string) (host, port string, err error) {
	if t == "" {
		return "", "", usageError{errors.New("explain: empty target")}
	}
	if _, err := netip.ParseAddr(strings.Trim(t, "[]")); err == nil {
		return strings.Trim(t, "[]"), "", nil
	}
	if h, p, err := net.SplitHostPort(t); err == nil {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
			return "", "", usageError{fmt.Errorf("explain: %q: bad port", t)}
		}
		return h, p, nil
	}
	if strings.ContainsAny(t, " /\\:\x00") {
		return "", "", usageError{fmt.Errorf("explain: %q is no name, address or name:port", t)}
	}
	return t, "", nil
}

// explainHandlers answers GET /explain?target=...&app=... on the control
// socket against the client's live policy and resolver.
func explainHandlers(c *client.Client) map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET /explain": func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			rt := c.Router()
			if rt == nil || rt.CurrentPolicy() == nil {
				http.Error(w, "no policy yet", http.StatusServiceUnavailable)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			e, err := explainFlow(ctx, rt.CurrentPolicy(), rt.Resolver, q.Get("target"), q.Get("app"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(e)
		},
	}
}

// explainFlags describe a headend policy on the command line.
type explainFlags struct {
	rules        policyFlags
	app          string
	control      string
	asJSON       bool
	splitInclude []string
	splitExclude []string
	splitDNS     []string
	defaultDom   []string
	dns          []string
	tunnelAllDNS bool
	offline      bool
}

func newExplainCmd() *cobra.Command {
	var f explainFlags
	cmd := &cobra.Command{
		Use:   "explain [flags] NAME|IP[:PORT]",
		Short: "Show where a flow goes (tunnel, direct, refused) and the rule that decides",
		Long: "Without policy flags explain asks the running client (over its control socket)\n" +
			"and resolves names as its proxies would. With any policy flag, or --offline, it\n" +
			"evaluates the policy given on the command line and resolves nothing.",
		Args: explainArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExplain(cmd, f, args[0])
		},
	}
	fl := cmd.Flags()
	addRuleFlags(fl, &f.rules)
	fl.StringVar(&f.app, "app", "", "the app ID (proxy user name or executable) of the flow")
	fl.StringVar(&f.control, "control", defaultControlPath(), "status socket of the client")
	fl.BoolVar(&f.asJSON, "json", false, "print JSON")
	fl.StringArrayVar(&f.splitInclude, "split-include", nil,
		"headend split-include routes (dotted mask or prefix), for an offline policy")
	fl.StringArrayVar(&f.splitExclude, "split-exclude", nil, "headend split-exclude routes")
	fl.StringArrayVar(&f.splitDNS, "split-dns", nil, "headend split-DNS domains")
	fl.StringArrayVar(&f.defaultDom, "default-domain", nil,
		"headend default domains (several may be given space separated)")
	fl.StringArrayVar(&f.dns, "dns", nil, "headend DNS servers")
	fl.BoolVar(&f.tunnelAllDNS, "tunnel-all-dns", false, "headend tunnels all DNS")
	fl.BoolVar(&f.offline, "offline", false, "use only the policy on the command line")
	return cmd
}

// explainArgs wants one target, and on a mistake shows the usage line:
// cobra's own "accepts 1 arg(s), received 0" left people guessing what
// the argument is.
func explainArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 1 {
		return nil
	}
	what := "no target"
	if len(args) > 1 {
		what = fmt.Sprintf("%d targets", len(args))
	}
	return usageError{fmt.Errorf("explain: want one target, got %s\nusage: %s",
		what, cmd.UseLine())}
}

func runExplain(cmd *cobra.Command, f explainFlags, target string) error {
	offline := f.offline
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if fl.Name != "app" && fl.Name != "control" && fl.Name != "json" {
			offline = true
		}
	})

	var e *explanation
	if offline {
		p, err := f.policy()
		if err != nil {
			return err
		}
		if e, err = explainFlow(cmd.Context(), p, nil, target, f.app); err != nil {
			return err
		}
	} else {
		if _, _, err := splitTarget(target); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
		defer cancel()
		q := url.Values{"target": {target}}
		if f.app != "" {
			q.Set("app", f.app)
		}
		e = new(explanation)
		if err := control.GetPath(ctx, f.control, "/explain?"+q.Encode(), e); err != nil {
			return fmt.Errorf("%w (give policy flags or --offline to explain without a session)",
				err)
		}
	}

	if f.asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(e)
	}
	printExplanation(cmd.OutOrStdout(), e)
	return nil
}

// policy builds the offline policy from the flags, reading the header
// values through session's own parser so they mean what a headend's
// would.
func (f explainFlags) policy() (*split.Policy, error) {
	h := http.Header{}
	h.Set("X-CSTP-Address", "192.0.2.1")
	h.Set("X-CSTP-Address-IP6", "2001:db8::1/64")
	h.Set("X-CSTP-MTU", "1400")
	add := func(name string, vals []string) {
		for _, v := range vals {
			for _, w := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' }) {
				if w = strings.TrimSpace(w); w != "" {
					h.Add(name, w)
				}
			}
		}
	}
	var inc4, inc6, exc4, exc6 []string
	for _, r := range f.splitInclude {
		appendFamily(r, &inc4, &inc6)
	}
	for _, r := range f.splitExclude {
		appendFamily(r, &exc4, &exc6)
	}
	add("X-CSTP-Split-Include", inc4)
	add("X-CSTP-Split-Include-IP6", inc6)
	add("X-CSTP-Split-Exclude", exc4)
	add("X-CSTP-Split-Exclude-IP6", exc6)
	add("X-CSTP-Split-DNS", f.splitDNS)
	add("X-CSTP-Default-Domain", f.defaultDom)
	add("X-CSTP-DNS", f.dns)
	if f.tunnelAllDNS {
		h.Set("X-CSTP-Tunnel-All-DNS", "true")
	}
	cfg, err := session.ParseConfig(h)
	if err != nil {
		return nil, usageError{fmt.Errorf("explain: %w", err)}
	}

	p := split.FromConfig(cfg)
	l, err := f.rules.local()
	if err != nil {
		return nil, err
	}
	p.Apply(l)
	return p, nil
}

// appendFamily sorts comma-separated routes into IPv4 and IPv6 lists,
// the way headends send them in separate headers.
func appendFamily(v string, v4, v6 *[]string) {
	for _, r := range strings.Split(v, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if strings.Contains(r, ":") {
			*v6 = append(*v6, r)
		} else {
			*v4 = append(*v4, r)
		}
	}
}

func printExplanation(out io.Writer, e *explanation) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(w, "%s:\t%s\n", k, v) }
	row("target", e.Target)
	if e.App != nil {
		row("app", e.App.Result+" ("+e.App.Rule+")")
	}
	if e.DNS != nil {
		row("dns", e.DNS.Result+" ("+e.DNS.Rule+")")
	}
	if len(e.Addresses) > 0 {
		row("addresses", strings.Join(e.Addresses, ", "))
	} else if e.Resolve != "" {
		// Joined errors (one per server) would break the table's lines.
		row("addresses", strings.ReplaceAll(e.Resolve, "\n", "; "))
	}
	for _, r := range e.Routes {
		row("route", r.Address+" -> "+r.Decision+" ("+r.Rule+")")
	}
	// The on-demand rules act only while the tunnel is down, the
	// decision only while it is up; side by side without saying so they
	// read as a contradiction ("do not bring the tunnel up", "tunnel").
	decision := e.Decision + " (" + e.Rule + ")"
	if e.OnDemand != nil {
		row("on-demand", "while the tunnel is down: "+onDemandText(e.OnDemand))
		decision = "while the tunnel is up: " + decision
	}
	row("decision", decision)
	w.Flush()
}

// onDemandText says what a flow does while the on-demand tunnel is down.
func onDemandText(s *step) string {
	switch s.Result {
	case onDemandUp:
		return "would bring it up (" + s.Rule + ")"
	case onDemandIfNeeded:
		return "would bring it up only if the local lookup fails, else goes direct (" +
			s.Rule + ")"
	case onDemandNo:
		return "would not bring it up; goes direct (" + s.Rule + ")"
	}
	return s.Result + " (" + s.Rule + ")"
}
