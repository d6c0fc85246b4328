package replay

import "math/bits"

// subBits sets the histogram's precision: values are kept in buckets 1/64 of their power of two wide (within
// 1.6%), and exactly below 128 µs.
const subBits = 7

// nBuckets covers 0 to 2^40 µs (12 days); longer latencies land in the last bucket.
const nBuckets = (1 << subBits) + (40-subBits)*(1<<(subBits-1))

// histogram counts latencies in µs in log-linear buckets: a fixed 18 KiB whatever the number of samples.
// Not safe for concurrent use.
type histogram struct {
	counts [nBuckets]uint64
	n      uint64
	max    int64
}

func bucketOf(us int64) int {
	if us < 0 {
		us = 0
	}
	v := uint64(us)
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - subBits
	i := (1 << subBits) + (e-1)*(1<<(subBits-1)) + int(v>>e) - (1 << (subBits - 1))
	return min(i, nBuckets-1)
}

// bucketMid is the middle of bucket i, in µs.
func bucketMid(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	j := i - (1 << subBits)
	e := j/(1<<(subBits-1)) + 1
	lo := (int64(j%(1<<(subBits-1))) + 1<<(subBits-1)) << e
	return lo + (int64(1)<<e)/2
}

func (h *histogram) add(us int64) {
	h.counts[bucketOf(us)]++
	h.n++
	h.max = max(h.max, us)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q ≤ 1) in µs: the middle of the bucket that holds it, never more than
// the largest value seen. 0 without samples.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(bucketMid(i), h.max)
		}
	}
	return h.max
}
