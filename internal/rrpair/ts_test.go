package rrpair

import (
	"testing"
	"time"
)

func TestFormatTS(t *testing.T) {
	base := time.Date(2025, 2, 11, 21, 7, 54, 0, time.UTC)
	tests := []struct {
		ns   int
		want string
	}{
		{0, "2025-02-11T21:07:54Z"},
		{500000000, "2025-02-11T21:07:54.500Z"},
		{446220000, "2025-02-11T21:07:54.446220Z"},
		{826199386, "2025-02-11T21:07:54.826199386Z"},
		{1000, "2025-02-11T21:07:54.000001Z"},
	}
	for _, tt := range tests {
		if got := formatTS(base.Add(time.Duration(tt.ns))); got != tt.want {
			t.Errorf("formatTS(+%dns) = %q, want %q", tt.ns, got, tt.want)
		}
	}
}
