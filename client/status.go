package client

import (
	"crypto/tls"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/ocnet/ocnet/datapath"
	"github.com/ocnet/ocnet/netstack"
	"github.com/ocnet/ocnet/proxy"
)

// Status is what `ocnet status` shows.
type Status struct {
	Server      string         `json:"server"`
	Channel     string         `json:"channel"` // "DTLS" or "TLS"
	CipherSuite string         `json:"cipher_suite"`
	TLSSuite    string         `json:"tls_cipher_suite"`
	Addresses   []netip.Prefix `json:"addresses"`
	DNS         []netip.Addr   `json:"dns"`
	SplitDNS    []string       `json:"split_dns"`
	Routes      []netip.Prefix `json:"routes"`
	MTU         int            `json:"mtu"`
	TxPackets   uint64         `json:"tx_packets"`
	TxBytes     uint64         `json:"tx_bytes"`
	RxPackets   uint64         `json:"rx_packets"`
	RxBytes     uint64         `json:"rx_bytes"`
	Reconnects  int64          `json:"reconnects"`
	Since       time.Time      `json:"since"`
	Uptime      time.Duration  `json:"uptime_ns"`
	SOCKS       string         `json:"socks,omitempty"`
	HTTP        string         `json:"http,omitempty"`
	Flows       proxy.Stats    `json:"flows"`
	Stack       netstack.Stats `json:"stack"`
}

// Status reports the client's state. It is safe to call at any time.
func (c *Client) Status() Status {
	c.mu.Lock()
	cfg, t, cstp := c.cfg, c.tunnel, c.cstp
	c.mu.Unlock()

	s := Status{
		Server:     c.o.URL.Host,
		Channel:    c.sw.Channel(),
		Addresses:  cfg.Prefixes(),
		DNS:        cfg.DNS,
		SplitDNS:   c.router.CurrentPolicy().Domains,
		Routes:     cfg.SplitInclude,
		MTU:        cfg.MTU,
		Reconnects: c.reconnects.Load(),
		Since:      c.started,
		Uptime:     time.Since(c.started),
		SOCKS:      c.SOCKSAddr(),
		HTTP:       c.HTTPAddr(),
		Flows:      c.router.Stats(),
		Stack:      c.stack.Load().Stats(),
	}
	s.TLSSuite = tls.CipherSuiteName(t.Conn.ConnectionState().CipherSuite)
	s.CipherSuite = s.TLSSuite

	tot := c.ended.snapshot()
	if cstp != nil {
		tot.add(&cstp.Counters)
	}
	if d := c.sw.DTLS(); d != nil {
		s.CipherSuite = d.CipherSuite()
		tot.add(&d.Counters)
	}
	s.TxPackets, s.TxBytes = tot.txp, tot.txb
	s.RxPackets, s.RxBytes = tot.rxp, tot.rxb
	return s
}

// counters accumulate the traffic of channels that have ended.
type counters struct {
	txp, txb, rxp, rxb atomic.Uint64
}

func (k *counters) addCSTP(c *datapath.CSTP) { k.addCounters(&c.Counters) }
func (k *counters) addDTLS(d *datapath.DTLS) { k.addCounters(&d.Counters) }

func (k *counters) addCounters(c *datapath.Counters) {
	k.txp.Add(c.TxPackets.Load())
	k.txb.Add(c.TxBytes.Load())
	k.rxp.Add(c.RxPackets.Load())
	k.rxb.Add(c.RxBytes.Load())
}

type totals struct{ txp, txb, rxp, rxb uint64 }

func (k *counters) snapshot() totals {
	return totals{k.txp.Load(), k.txb.Load(), k.rxp.Load(), k.rxb.Load()}
}

func (t *totals) add(c *datapath.Counters) {
	t.txp += c.TxPackets.Load()
	t.txb += c.TxBytes.Load()
	t.rxp += c.RxPackets.Load()
	t.rxb += c.RxBytes.Load()
}
