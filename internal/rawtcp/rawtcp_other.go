//go:build !linux

package rawtcp

import "net"

// Wrap returns c: Conn (rawtcp_linux.go) is for Linux.
func Wrap(c net.Conn) net.Conn { return c }
