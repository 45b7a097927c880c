// Package client owns one running VPN connection from the moment a session
// cookie exists: it opens the tunnel (session), runs the packet channel
// (datapath) into the stack (netstack), and serves the proxies on top.
//
// Authentication happens before it (package auth); what a flow does is
// decided below it (split, dnsproxy). An embedder that already holds a
// cookie needs only this package.
package client
