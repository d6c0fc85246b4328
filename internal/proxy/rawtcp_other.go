//go:build !linux

package proxy

import "net"

// fastTCP returns c: rawTCP (rawtcp_linux.go) is for Linux.
func fastTCP(c net.Conn) net.Conn { return c }
