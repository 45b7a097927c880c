package proxy

// Finding the local process behind a proxy client: the client's socket is
// the /proc/net/tcp{,6} entry whose local and remote ends are our peer's
// and ours; its inode appears as "socket:[N]" among the owner's
// /proc/PID/fd links. Only processes this user may inspect are found,
// which for an unprivileged ocnet means the user's own.

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// errNoOwner means no process this user can see owns the socket.
var errNoOwner = errors.New("proxy: app lookup: no visible process owns the client socket")

// maxProcFDs bounds the fd links read per lookup, so that a host with
// huge fd tables cannot stall an accept for long.
const maxProcFDs = 200_000

// processOf returns the executable path of the local process that owns
// the peer end of conn, a TCP connection accepted on loopback.
func processOf(conn net.Conn) (string, error) {
	peer, err1 := netip.ParseAddrPort(conn.RemoteAddr().String())
	self, err2 := netip.ParseAddrPort(conn.LocalAddr().String())
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("proxy: app lookup: not a TCP/IP connection")
	}

	inode, err := socketInode(peer, self)
	if err != nil {
		return "", err
	}
	return inodeOwner(inode)
}

// socketInode finds the inode of the socket whose local end is local and
// remote end is remote.
func socketInode(local, remote netip.AddrPort) (string, error) {
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		inode := findInode(bufio.NewScanner(f), local, remote)
		f.Close()
		if inode != "" {
			return inode, nil
		}
	}
	return "", fmt.Errorf("proxy: app lookup: socket %s->%s not in /proc/net/tcp", local, remote)
}

// findInode scans /proc/net/tcp-format lines for the local/remote pair.
func findInode(sc *bufio.Scanner, local, remote netip.AddrPort) string {
	local = unmapAP(local)
	remote = unmapAP(remote)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		l, err1 := parseProcAddr(f[1])
		r, err2 := parseProcAddr(f[2])
		if err1 != nil || err2 != nil {
			continue // the header line
		}
		if l == local && r == remote && f[9] != "0" {
			return f[9]
		}
	}
	return ""
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// parseProcAddr decodes "0100007F:1F90" (IPv4) or the 32-hex-digit IPv6
// form: the address as 32-bit words in host byte order, the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || (len(a) != 8 && len(a) != 32) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}

	// Each 32-bit word was printed as a host-order integer.
	var b [16]byte
	for i := 0; i+4 <= len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	ip, _ := netip.AddrFromSlice(b[:len(raw)])
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// inodeOwner returns the executable of a process holding socket inode.
func inodeOwner(inode string) (string, error) {
	want := "socket:[" + inode + "]"
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return "", fmt.Errorf("proxy: app lookup: %w", err)
	}

	seen := 0
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		dir := filepath.Join("/proc", p.Name())
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue // another user's process, or gone
		}
		for _, fd := range fds {
			if seen++; seen > maxProcFDs {
				return "", errNoOwner
			}
			if link, _ := os.Readlink(filepath.Join(dir, "fd", fd.Name())); link == want {
				exe, err := os.Readlink(filepath.Join(dir, "exe"))
				if err != nil {
					return "", fmt.Errorf("proxy: app lookup: %w", err)
				}
				return exe, nil
			}
		}
	}
	return "", errNoOwner
}
