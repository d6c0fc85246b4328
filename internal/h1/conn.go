package h1

import "net"

// ReplayConn is a connection whose first reads return bytes that were
// read from it already: a server that read ahead (a sniffer, a request it
// does not answer itself) hands the connection on with them.
type ReplayConn struct {
	net.Conn
	Pending []byte
}

func (c *ReplayConn) Read(p []byte) (int, error) {
	if len(c.Pending) > 0 {
		n := copy(p, c.Pending)
		c.Pending = c.Pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes when the underlying connection can.
func (c *ReplayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// WriteAwaitThen is the underlying connection's (rawtcp.Conn's: write p,
// call then, wait until the connection can be read) once no replayed
// bytes are left; otherwise, or where it has none, Write and then then.
func (c *ReplayConn) WriteAwaitThen(p []byte, then func(int, error)) (int, error) {
	if wa, ok := c.Conn.(interface {
		WriteAwaitThen([]byte, func(int, error)) (int, error)
	}); ok && len(c.Pending) == 0 {
		return wa.WriteAwaitThen(p, then)
	}
	n, err := c.Conn.Write(p)
	if then != nil {
		then(n, err)
	}
	return n, err
}
