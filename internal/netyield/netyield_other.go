//go:build !linux

package netyield

import "runtime"

// Yield is runtime.Gosched here: the pipe-based yield is for Linux.
func Yield() { runtime.Gosched() }
