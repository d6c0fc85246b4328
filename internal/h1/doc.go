// Package h1 is Tapwire's strict HTTP/1.1 message parser (RFC 9112): request
// and status lines, field lines and message framing (Content-Length,
// chunked, trailers), parsed in place over the bytes read from the wire.
//
// It is hand-written because no library is both fast and transparent:
// net/http's reader canonicalises field names, loses their order and case,
// re-frames bodies and allocates per request, which a proxy that must pass
// the client's bytes as they came (goproxy's engine, internal/proxy) and a
// mock that answers at nginx's rate (internal/mock) cannot afford. A Head's
// fields are slices of the head as received; nothing is copied until a
// record is built (Head.HeadersInto).
//
// Where it is stricter than net/http it says why, each for its RFC reason
// (fuzz_test.go lists them); FuzzH1AgainstNetHTTP and
// FuzzH1ResponseAgainstNetHTTP check every other accept or refuse decision
// and every message boundary against net/http's, and FuzzBodyScanPieces the
// body framing over any split of the bytes.
package h1
