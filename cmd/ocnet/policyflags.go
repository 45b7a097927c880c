package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ocnet/ocnet/split"
)

// policyFlags are the user's additions to the headend's split policy,
// shared by connect and explain.
type policyFlags struct {
	include, exclude            []string
	allowedApps, disallowedApps []string
	refuseOtherApps             bool
	onDemandNever               []string
	onDemandAlways              []string
	onDemandIfNeeded            []string

	dnsListen string // connect only
}

// addRuleFlags registers the rule flags connect and explain share.
func addRuleFlags(fl *pflag.FlagSet, p *policyFlags) {
	fl.StringArrayVar(&p.include, "include", nil,
		"send these routes (10.0.0.0/8, 10.0.0.0/255.0.0.0, 2001:db8::/32) or names "+
			"(.corp.example) through the tunnel, whatever the headend says; repeatable, comma separated")
	fl.StringArrayVar(&p.exclude, "exclude", nil,
		"keep these routes or names out of the tunnel; beats --include at equal length")
	fl.StringArrayVar(&p.allowedApps, "allowed-apps", nil,
		"only these apps (proxy user names or executables; com.example.* wildcard) use the tunnel")
	fl.StringArrayVar(&p.disallowedApps, "disallowed-apps", nil,
		"these apps never use the tunnel")
	fl.BoolVar(&p.refuseOtherApps, "refuse-other-apps", false,
		"refuse apps outside the tunnel's set instead of sending them direct (no bypass)")
	fl.StringArrayVar(&p.onDemandNever, "on-demand-never", nil,
		"connect-on-demand: names that never bring the tunnel up (email.example.com, .example.org)")
	fl.StringArrayVar(&p.onDemandAlways, "on-demand-always", nil,
		"connect-on-demand: names that always bring the tunnel up")
	fl.StringArrayVar(&p.onDemandIfNeeded, "on-demand-if-needed", nil,
		"connect-on-demand: names that bring the tunnel up when the local lookup fails")
}

// addPolicyFlags registers the rule flags and the connect-only DNS server.
func addPolicyFlags(fl *pflag.FlagSet, p *policyFlags) {
	addRuleFlags(fl, p)
	fl.StringVar(&p.dnsListen, "dns-listen", "",
		`serve split DNS to other programs on this address, e.g. 127.0.0.1:5353 ("" = off)`)
}

// local parses the rule flags. The host's subnets are read here, once,
// so that the policy itself stays a pure function.
//
// TODO: re-read the host's subnets when the host changes networks.
func (p *policyFlags) local() (split.Local, error) {
	var l split.Local
	var err error
	for _, v := range p.include {
		r, n, err := split.ParseTargets(v)
		if err != nil {
			return l, usageError{fmt.Errorf("--include: %w", err)}
		}
		l.User.Include = append(l.User.Include, r...)
		l.User.IncludeNames = l.User.IncludeNames.Merge(n)
	}
	for _, v := range p.exclude {
		r, n, err := split.ParseTargets(v)
		if err != nil {
			return l, usageError{fmt.Errorf("--exclude: %w", err)}
		}
		l.User.Exclude = append(l.User.Exclude, r...)
		l.User.ExcludeNames = l.User.ExcludeNames.Merge(n)
	}
	if l.Apps.Allowed, err = appList("--allowed-apps", p.allowedApps); err != nil {
		return l, err
	}
	if l.Apps.Disallowed, err = appList("--disallowed-apps", p.disallowedApps); err != nil {
		return l, err
	}
	l.Apps.Refuse = p.refuseOtherApps
	if p.refuseOtherApps && !l.Apps.Configured() {
		return l, usageError{fmt.Errorf(
			"--refuse-other-apps needs --allowed-apps or --disallowed-apps")}
	}

	lists := []struct {
		flag string
		in   []string
		out  *split.DomainList
	}{
		{"--on-demand-never", p.onDemandNever, &l.OnDemand.Never},
		{"--on-demand-always", p.onDemandAlways, &l.OnDemand.Always},
		{"--on-demand-if-needed", p.onDemandIfNeeded, &l.OnDemand.IfNeeded},
	}
	for _, x := range lists {
		if *x.out, err = split.ParseDomainList(strings.Join(x.in, ",")); err != nil {
			return l, usageError{fmt.Errorf("%s: %w", x.flag, err)}
		}
	}

	if l.LAN, err = split.InterfaceSubnets(); err != nil {
		return l, fmt.Errorf("reading the host's subnets: %w", err)
	}
	return l, nil
}

func appList(flag string, vals []string) (split.AppList, error) {
	l, err := split.ParseAppList(strings.Join(vals, ","))
	if err != nil {
		return l, usageError{fmt.Errorf("%s: %w", flag, err)}
	}
	return l, nil
}
