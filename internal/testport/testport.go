// Package testport finds loopback ports for servers that a test starts in
// another process (PostgreSQL, MinIO, a built goproxy or forwarder), which
// must be told a port number rather than handed a listener.
//
// The usual way, a listener on ":0" closed at once, gives a port from the
// kernel's ephemeral range (net.ipv4.ip_local_port_range), the range every
// outgoing connection and every ":0" listener of the packages tested
// beside it draws from: between the close and the server's bind, one of
// them can take it, and the server fails to start. Free picks ports below
// that range instead, where only explicit binds go, at random, and checks
// that each is free now; a port it gave is not given again by the same
// process.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port Free picks: above the ports of the services a
// machine may run (PostgreSQL's 5432, MinIO's 9000, 8080...), mostly.
const lowest = 20000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Free returns a loopback TCP port that no socket holds now, outside the
// ephemeral range when the machine leaves room below it (else a port the
// kernel picks).
func Free() (int, error) {
	hi := ephemeralLow() // exclusive
	mu.Lock()
	defer mu.Unlock()
	if hi-lowest >= 1000 {
		if p, ok := pick(lowest, hi, 200); ok {
			return p, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testport: find a free port: %w", err)
	}
	defer ln.Close()
	p := ln.Addr().(*net.TCPAddr).Port
	given[p] = true
	return p, nil
}

// pick tries up to tries random ports of [lo, hi) and returns the first
// that was not given before and that a listener can take now. Called with
// mu held.
func pick(lo, hi, tries int) (int, bool) {
	for range tries {
		p := lo + rand.IntN(hi-lo)
		if given[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // taken
		}
		ln.Close()
		given[p] = true
		return p, true
	}
	return 0, false
}

// Addr is Free as "127.0.0.1:PORT".
func Addr() (string, error) {
	p, err := Free()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768,
// Linux's default, where the system does not say).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo < 1024 {
		return 32768
	}
	return lo
}
