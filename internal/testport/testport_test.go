package testport

import (
	"net"
	"strconv"
	"testing"
)

func TestFree(t *testing.T) {
	lo := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		p, err := Free()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d given twice", p)
		}
		seen[p] = true
		if lo-lowest >= 1000 && (p < lowest || p >= lo) {
			t.Errorf("port %d, want one in [%d, %d): below the ephemeral range", p, lowest, lo)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		ln.Close()
	}
}

// TestPickSkipsTaken: of ten ports, nine held by listeners and one given
// before, pick finds none; with the tenth free, it finds that one.
func TestPickSkipsTaken(t *testing.T) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	// Ten consecutive ports of which a listener could take all.
	base := -1
	for b := lowest; b < 32000 && base < 0; b += 10 {
		var ls []net.Listener
		for p := b; p < b+10; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		if len(ls) == 10 {
			base, held = b, ls
		} else {
			for _, l := range ls {
				l.Close()
			}
		}
	}
	if base < 0 {
		t.Skip("no ten free consecutive ports")
	}
	free := base + 7
	held[7].Close()
	held = append(held[:7], held[8:]...)
	mu.Lock()
	defer mu.Unlock()
	given[free] = true
	if p, ok := pick(base, base+10, 500); ok {
		t.Fatalf("pick gave port %d: held by a listener or given before", p)
	}
	delete(given, free)
	p, ok := pick(base, base+10, 500)
	if !ok || p != free {
		t.Fatalf("pick = %d, %v; want %d, the one free port", p, ok, free)
	}
	if !given[free] {
		t.Errorf("port %d given but not noted", free)
	}
}
