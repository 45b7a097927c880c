// Package deps pins the modules the design names while the packages that
// use them are being written. TODO: delete once every import is real.
package deps

import (
	_ "github.com/armon/go-socks5"
	_ "github.com/miekg/dns"
	_ "github.com/pion/dtls/v2"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/crypto/cryptobyte"
	_ "golang.org/x/term"
	_ "golang.zx2c4.com/wireguard/tun"
	_ "gvisor.dev/gvisor/pkg/tcpip/stack"
)
