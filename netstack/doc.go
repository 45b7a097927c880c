// Package netstack owns ocnet's in-process TCP/IP stack: a gVisor stack that
// holds the addresses the headend assigned and terminates every proxied flow.
//
// Packets enter from the datapath through Inject and leave through the
// output function given to New; the proxies get net.Conns from DialContext.
// The package never frames, encrypts or routes: what reaches it is already
// decided to belong to the tunnel.
package netstack
