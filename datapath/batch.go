package datapath

import (
	"net"

	"golang.org/x/net/ipv4"
)

// batchReader reads many datagrams per system call (recvmmsg). The
// returned slices alias its buffers until the next read.
type batchReader struct {
	pc   *ipv4.PacketConn
	msgs []ipv4.Message
	out  [][]byte
}

// newBatchReader works for IPv4 and IPv6 sockets alike: recvmmsg does not
// care about the family, only x/net's wrapper type does.
func newBatchReader(c *net.UDPConn, n, size int) *batchReader {
	br := &batchReader{
		pc:   ipv4.NewPacketConn(c),
		msgs: make([]ipv4.Message, n),
		out:  make([][]byte, 0, n),
	}
	for i := range br.msgs {
		br.msgs[i].Buffers = [][]byte{make([]byte, size)}
	}
	return br
}

func (b *batchReader) read() ([][]byte, error) {
	n, err := b.pc.ReadBatch(b.msgs, 0)
	if err != nil {
		return nil, err
	}
	b.out = b.out[:0]
	for i := range n {
		b.out = append(b.out, b.msgs[i].Buffers[0][:b.msgs[i].N])
	}
	return b.out, nil
}
