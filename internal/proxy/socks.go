package proxy

import (
	"bufio"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
)

// SOCKS versions and the replies goproxy sends (RFC 1928, RFC 1929, and
// the SOCKS4/4a notes).
const (
	socks4 = 0x04
	socks5 = 0x05

	socks5NoAuth   = 0x00
	socks5UserPass = 0x02
	socks5NoMethod = 0xff

	socks5Succeeded      = 0x00
	socks5Failure        = 0x01
	socks5CmdUnsupported = 0x07
	socks5AddrUnsupport  = 0x08

	socks4Granted  = 0x5a
	socks4Rejected = 0x5b
)

// Errors of the SOCKS handshake.
var (
	errSocksVersion = errors.New("socks: unsupported version")
	errSocksAuth    = errors.New("socks: authentication failed")
	errSocksCommand = errors.New("socks: only CONNECT is supported")
	errSocksAddr    = errors.New("socks: bad address")
)

// SocksAuth, when set, requires SOCKS5 username/password authentication
// (RFC 1929); SOCKS4 clients are then refused, since SOCKS4 has no
// password.
type SocksAuth struct {
	Username, Password string
}

// socksHandshake reads a SOCKS4, 4a or 5 CONNECT request from br, answers
// it on w, and returns the target host:port. Bytes are untrusted: every
// length is bounded by the protocol's one-byte fields, and the function is
// fuzzed.
func socksHandshake(br *bufio.Reader, w io.Writer, auth *SocksAuth) (string, error) {
	ver, err := br.ReadByte()
	if err != nil {
		return "", err
	}
	switch ver {
	case socks5:
		return socks5Handshake(br, w, auth)
	case socks4:
		if auth != nil {
			w.Write([]byte{0, socks4Rejected, 0, 0, 0, 0, 0, 0})
			return "", fmt.Errorf("%w: SOCKS4 has no password and one is required", errSocksAuth)
		}
		return socks4Handshake(br, w)
	default:
		return "", fmt.Errorf("%w %d", errSocksVersion, ver)
	}
}

func socks5Handshake(br *bufio.Reader, w io.Writer, auth *SocksAuth) (string, error) {
	n, err := br.ReadByte()
	if err != nil {
		return "", err
	}
	methods := make([]byte, n)
	if _, err := io.ReadFull(br, methods); err != nil {
		return "", err
	}
	want := byte(socks5NoAuth)
	if auth != nil {
		want = socks5UserPass
	}
	offered := false
	for _, m := range methods {
		if m == want {
			offered = true
		}
	}
	if !offered {
		w.Write([]byte{socks5, socks5NoMethod})
		return "", fmt.Errorf("%w: client offered no acceptable method", errSocksAuth)
	}
	if _, err := w.Write([]byte{socks5, want}); err != nil {
		return "", err
	}
	if auth != nil {
		if err := socks5UserPassAuth(br, w, auth); err != nil {
			return "", err
		}
	}
	// The request: VER CMD RSV ATYP DST.ADDR DST.PORT.
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return "", err
	}
	if hdr[0] != socks5 {
		return "", fmt.Errorf("%w %d in request", errSocksVersion, hdr[0])
	}
	reply := func(code byte) { w.Write([]byte{socks5, code, 0, 1, 0, 0, 0, 0, 0, 0}) }
	var host string
	switch hdr[3] {
	case 0x01:
		ip := make([]byte, 4)
		if _, err := io.ReadFull(br, ip); err != nil {
			return "", err
		}
		host = net.IP(ip).String()
	case 0x04:
		ip := make([]byte, 16)
		if _, err := io.ReadFull(br, ip); err != nil {
			return "", err
		}
		host = net.IP(ip).String()
	case 0x03:
		l, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		name := make([]byte, l)
		if _, err := io.ReadFull(br, name); err != nil {
			return "", err
		}
		if l == 0 || !validHostname(name) {
			reply(socks5AddrUnsupport)
			return "", fmt.Errorf("%w: host name %q", errSocksAddr, name)
		}
		host = string(name)
	default:
		reply(socks5AddrUnsupport)
		return "", fmt.Errorf("%w: address type %d", errSocksAddr, hdr[3])
	}
	var port [2]byte
	if _, err := io.ReadFull(br, port[:]); err != nil {
		return "", err
	}
	if hdr[1] != 0x01 {
		reply(socks5CmdUnsupported)
		return "", fmt.Errorf("%w (command %d)", errSocksCommand, hdr[1])
	}
	p := binary.BigEndian.Uint16(port[:])
	if p == 0 {
		reply(socks5Failure)
		return "", fmt.Errorf("%w: port 0", errSocksAddr)
	}
	// Success is answered before dialling, as goproxy answers CONNECT: the
	// upstream is reached when the first bytes say how (TLS unwrap or not).
	reply(socks5Succeeded)
	return net.JoinHostPort(host, strconv.Itoa(int(p))), nil
}

func socks5UserPassAuth(br *bufio.Reader, w io.Writer, auth *SocksAuth) error {
	ver, err := br.ReadByte()
	if err != nil {
		return err
	}
	if ver != 0x01 {
		return fmt.Errorf("%w: username/password version %d", errSocksAuth, ver)
	}
	read := func() ([]byte, error) {
		l, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		b := make([]byte, l)
		_, err = io.ReadFull(br, b)
		return b, err
	}
	user, err := read()
	if err != nil {
		return err
	}
	pass, err := read()
	if err != nil {
		return err
	}
	okUser := subtle.ConstantTimeCompare(user, []byte(auth.Username)) == 1
	okPass := subtle.ConstantTimeCompare(pass, []byte(auth.Password)) == 1
	if !okUser || !okPass {
		w.Write([]byte{0x01, 0x01})
		return errSocksAuth
	}
	_, err = w.Write([]byte{0x01, 0x00})
	return err
}

func socks4Handshake(br *bufio.Reader, w io.Writer) (string, error) {
	// CD DSTPORT DSTIP USERID NUL [DOMAIN NUL]
	var hdr [7]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return "", err
	}
	reject := func() { w.Write([]byte{0, socks4Rejected, 0, 0, 0, 0, 0, 0}) }
	if _, err := readCString(br, 255); err != nil { // user id, unused
		return "", err
	}
	port := binary.BigEndian.Uint16(hdr[1:3])
	ip := net.IP(hdr[3:7])
	host := ip.String()
	if ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && ip[3] != 0 { // SOCKS4a: a host name follows
		name, err := readCString(br, 255)
		if err != nil {
			return "", err
		}
		if len(name) == 0 || !validHostname(name) {
			reject()
			return "", fmt.Errorf("%w: host name %q", errSocksAddr, name)
		}
		host = string(name)
	}
	if hdr[0] != 0x01 {
		reject()
		return "", fmt.Errorf("%w (command %d)", errSocksCommand, hdr[0])
	}
	if port == 0 {
		reject()
		return "", fmt.Errorf("%w: port 0", errSocksAddr)
	}
	if _, err := w.Write([]byte{0, socks4Granted, hdr[1], hdr[2], hdr[3], hdr[4], hdr[5], hdr[6]}); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), nil
}

// readCString reads a NUL-terminated string of at most max bytes.
func readCString(br *bufio.Reader, max int) ([]byte, error) {
	var b []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		if c == 0 {
			return b, nil
		}
		if len(b) == max {
			return nil, fmt.Errorf("%w: string longer than %d bytes", errSocksAddr, max)
		}
		b = append(b, c)
	}
}

// validHostname accepts the bytes of a DNS name or an IP literal: letters,
// digits, '-', '.', '_' and ':' (IPv6).
func validHostname(b []byte) bool {
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == ':':
		default:
			return false
		}
	}
	return true
}
