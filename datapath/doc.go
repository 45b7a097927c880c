// Package datapath owns the tunnel's packet channels: CSTP framing inside
// the TLS stream (and, later, DTLS records), the dead-peer detection and
// keepalive that keep a channel honest, and the loops that move packets
// between a channel and the netstack.
//
// It never looks past an IP packet's version nibble: what a packet means is
// netstack's business, whether it belongs in the tunnel is split's.
//
// Stages, in order, each in its own goroutine:
//
//	netstack --WritePacket--> channel (frame, one TLS write per frame)
//	channel  --readLoop-----> Deliver (netstack.Inject)
//	timers   --livenessLoop-> DPD-REQ / KEEPALIVE / dead-peer verdict
package datapath
