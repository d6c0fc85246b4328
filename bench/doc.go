// Package bench holds Tapwire's load comparison against nginx (bench/run)
// and the in-process benchmarks of the proxy path that go with it
// (BenchmarkInbound). The package has no code of its own.
package bench
