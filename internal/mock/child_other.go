//go:build !unix

package mock

import (
	"os"
	"os/exec"
)

// Without Unix process groups, a child's group is the child alone.
func setGroup(*exec.Cmd) {}

func signalGroup(p *os.Process, s os.Signal) error { return p.Signal(s) }
