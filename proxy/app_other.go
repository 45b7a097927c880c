//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// processOf is Linux-only: elsewhere no app is named by its process.
func processOf(net.Conn) (string, error) {
	return "", errors.New("proxy: app lookup: only supported on Linux")
}
