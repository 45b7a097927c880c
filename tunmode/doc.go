// Package tunmode owns ocnet's TUN front end: the TUN device, the
// host-facing gVisor stack that terminates the flows ocnet must decide or
// answer itself (DNS to the resolver it installs, flows a rule must
// decide), the demultiplexing of packets between the device, that stack,
// the tunnel's fast path and the VPN's own stack, and the host's
// configuration through a vpnc-script. It hands raw packets to the client
// and flows to the client's Router; it never speaks the VPN protocol and
// never decides a route itself (split does).
//
// Which path a packet takes:
//
//	from the TUN, to a tunnel DNS address, port 53   -> host stack -> dnsproxy Answer
//	from the TUN, destination routed to the tunnel   -> client.SendPacket (fast path)
//	from the TUN, sent direct or refused by a rule   -> host stack -> Router
//	from the tunnel, TCP/UDP port in PortRange       -> the VPN's netstack
//	from the tunnel, ICMP error about such a packet  -> the VPN's netstack
//	from the tunnel, anything else                   -> the TUN
package tunmode
