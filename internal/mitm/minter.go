package mitm

import (
	"container/list"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// ErrNoHost means a leaf was asked for without a host name: the client sent no SNI and the proxy knew no
// CONNECT host.
var ErrNoHost = errors.New("no host name for the leaf certificate")

// ErrSNIMismatch means a client's SNI names neither the host it asked the proxy for nor, when that host is
// an IP address, a plain host name: no leaf is minted for it.
var ErrSNIMismatch = errors.New("SNI is not the CONNECT host")

// ErrBadHost means a leaf was asked for a name that is not a DNS host name or an IP address: a wildcard
// (*.example.com), an empty label, or a byte outside letters, digits, '-' and '_'. No leaf is ever a
// wildcard.
var ErrBadHost = errors.New("not a host name")

// Options tune a Minter. The zero value is ready to use.
type Options struct {
	// CacheSize is how many leaves the LRU cache keeps; if zero, 1024.
	CacheSize int
	// Validity is a leaf's lifetime; if zero, 7 days. A leaf never outlives the CA's NotAfter, and its
	// NotBefore is backdated 1 hour (never before the CA's NotBefore) to tolerate clock skew.
	Validity time.Duration
	// Now is the clock; if nil, time.Now.
	Now func() time.Time
}

const (
	defaultCacheSize = 1024
	defaultValidity  = 7 * 24 * time.Hour
	backdate         = time.Hour
	maxCNLen         = 64 // ub-common-name, RFC 5280
	maxHostLen       = 253
)

// Stats are the Minter's counters, for metrics.
type Stats struct {
	Minted     int64 `json:"minted"`     // leaves signed
	CacheHits  int64 `json:"cacheHits"`  // Leaf calls answered from the cache
	Cached     int64 `json:"cached"`     // leaves in the cache now
	MintErrors int64 `json:"mintErrors"` // mints that failed
}

// Minter mints leaf certificates signed by a CA for the hosts an application connects to, and caches them
// in a bounded LRU. All leaves share one ECDSA P-256 key made by NewMinter: a P-256 handshake signature is
// much cheaper than an RSA one, and minting only costs the CA's signature. It is safe for concurrent use.
type Minter struct {
	opts    Options
	leafKey crypto.Signer
	flight  singleflight.Group

	mu    sync.Mutex
	ca    *CA
	gen   uint64 // bumped by SetCA; a mint started under an older generation is not cached
	lru   *list.List
	items map[string]*list.Element // host -> element holding *entry

	minted, hits, cached, mintErrors atomic.Int64
}

type entry struct {
	host    string
	cert    *tls.Certificate
	refresh time.Time // from then on the leaf is minted anew
}

// NewMinter returns a Minter for ca.
func NewMinter(ca *CA, opts Options) (*Minter, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("new minter: CA certificate and key are required")
	}
	if opts.CacheSize < 0 {
		return nil, fmt.Errorf("new minter: CacheSize %d is negative", opts.CacheSize)
	}
	if opts.Validity < 0 {
		return nil, fmt.Errorf("new minter: Validity %s is negative", opts.Validity)
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = defaultCacheSize
	}
	if opts.Validity == 0 {
		opts.Validity = defaultValidity
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new minter: generate leaf key: %w", err)
	}
	return &Minter{
		opts:    opts,
		leafKey: key,
		ca:      ca,
		lru:     list.New(),
		items:   make(map[string]*list.Element),
	}, nil
}

// SetCA makes the Minter sign new leaves with ca and empties the cache. Leaves being minted with the old
// CA when SetCA is called are returned to their callers but not cached.
func (m *Minter) SetCA(ca *CA) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ca = ca
	m.gen++
	m.lru.Init()
	clear(m.items)
	m.cached.Store(0)
}

// CA returns the CA that signs new leaves.
func (m *Minter) CA() *CA {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ca
}

// Stats returns the counters.
func (m *Minter) Stats() Stats {
	return Stats{
		Minted:     m.minted.Load(),
		CacheHits:  m.hits.Load(),
		Cached:     m.cached.Load(),
		MintErrors: m.mintErrors.Load(),
	}
}

// ServerConfig returns a TLS server config for a tunnel to connectHost (the CONNECT or SOCKS target, with
// or without its port) whose certificate is a leaf minted only for that host:
//   - no SNI: the leaf for connectHost;
//   - an SNI that names connectHost (case, a trailing dot and a port do not matter): that leaf;
//   - connectHost an IP address and the SNI a host name: the leaf for the SNI. This is a client that
//     resolved the name itself (SOCKS4, socks5:// rather than socks5h://, a CONNECT to an address), and the
//     name is all it has to check;
//   - any other SNI, a wildcard such as *.example.com, or a name that is not a DNS host name: the
//     handshake is refused with an error that wraps ErrSNIMismatch or ErrBadHost.
//
// With connectHost empty every handshake is refused (ErrNoHost). The caller sets NextProtos and anything else.
func (m *Minter) ServerConfig(connectHost string) *tls.Config {
	return &tls.Config{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			host, err := LeafHost(connectHost, hello.ServerName)
			if err != nil {
				return nil, err
			}
			return m.Leaf(host)
		},
	}
}

// LeafHost returns the host a leaf is minted for when a client that asked the proxy for connectHost sends
// sni in its ClientHello (sni "" when it sent none), following the rules of ServerConfig.
func LeafHost(connectHost, sni string) (string, error) {
	connect, err := normalizeHost(connectHost)
	if err != nil {
		return "", fmt.Errorf("CONNECT host %q: %w", connectHost, err)
	}
	if sni == "" {
		return connect, nil
	}
	name, err := normalizeHost(sni)
	if err != nil {
		return "", fmt.Errorf("SNI %q: %w", sni, err)
	}
	if name == connect {
		return name, nil
	}
	if _, err := netip.ParseAddr(connect); err == nil {
		if _, err := netip.ParseAddr(name); err != nil {
			return name, nil // a name for an address the client resolved itself
		}
	}
	return "", fmt.Errorf("%w: SNI %q, CONNECT host %q", ErrSNIMismatch, sni, connectHost)
}

// Leaf returns a certificate for host, a DNS name or an IP literal (which gets an IP SAN), from the cache
// or minted. A host:port or bracketed IPv6 literal is reduced to the host. Concurrent calls for one host
// mint once.
func (m *Minter) Leaf(host string) (*tls.Certificate, error) {
	host, err := normalizeHost(host)
	if err != nil {
		return nil, err
	}
	if c := m.lookup(host); c != nil {
		m.hits.Add(1)
		return c, nil
	}
	m.mu.Lock()
	gen := m.gen
	m.mu.Unlock()
	v, err, _ := m.flight.Do(strconv.FormatUint(gen, 10)+"/"+host, func() (any, error) {
		// A flight for host may have finished between lookup and Do: look again so that one host is
		// minted once.
		if c := m.lookup(host); c != nil {
			return c, nil
		}
		return m.mint(host)
	})
	if err != nil {
		return nil, err
	}
	return v.(*tls.Certificate), nil
}

// lookup returns the cached, still fresh leaf for host, or nil.
func (m *Minter) lookup(host string) *tls.Certificate {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[host]
	if !ok {
		return nil
	}
	e := el.Value.(*entry)
	if !now.Before(e.refresh) {
		return nil
	}
	m.lru.MoveToFront(el)
	return e.cert
}

func (m *Minter) mint(host string) (*tls.Certificate, error) {
	m.mu.Lock()
	ca, gen := m.ca, m.gen
	m.mu.Unlock()

	cert, refresh, err := m.sign(ca, host)
	if err != nil {
		m.mintErrors.Add(1)
		return nil, fmt.Errorf("mint leaf for %q: %w", host, err)
	}
	m.minted.Add(1)

	m.mu.Lock()
	defer m.mu.Unlock()
	if gen != m.gen {
		return cert, nil // the CA changed while signing: serve this one, cache none
	}
	if el, ok := m.items[host]; ok {
		el.Value = &entry{host: host, cert: cert, refresh: refresh}
		m.lru.MoveToFront(el)
		return cert, nil
	}
	m.items[host] = m.lru.PushFront(&entry{host: host, cert: cert, refresh: refresh})
	for m.lru.Len() > m.opts.CacheSize {
		oldest := m.lru.Back()
		m.lru.Remove(oldest)
		delete(m.items, oldest.Value.(*entry).host)
	}
	m.cached.Store(int64(m.lru.Len()))
	return cert, nil
}

// sign makes a leaf for host signed by ca, and says when it should be replaced.
func (m *Minter) sign(ca *CA, host string) (*tls.Certificate, time.Time, error) {
	now := m.opts.Now()
	if !now.Before(ca.Cert.NotAfter) {
		return nil, time.Time{}, fmt.Errorf("%w: %q expired at %s", ErrCAExpired, ca.Cert.Subject, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-backdate)
	if notBefore.Before(ca.Cert.NotBefore) {
		notBefore = ca.Cert.NotBefore
	}
	notAfter := now.Add(m.opts.Validity)
	// Replace a leaf once three quarters of its life is gone, so that a long-lived proxy never serves an
	// expired one; a leaf cut short by the CA's expiry cannot be renewed and is served to the end.
	refresh := now.Add(m.opts.Validity / 4 * 3)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter, refresh = ca.Cert.NotAfter, ca.Cert.NotAfter
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("serial number: %w", err)
	}
	cn := host
	if len(cn) > maxCNLen {
		cn = cn[:maxCNLen]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)), // positive, never zero
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = []net.IP{ip.AsSlice()}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, m.leafKey.Public(), ca.Key)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("sign: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("parse signed leaf: %w", err)
	}
	chain := make([][]byte, 0, 1+len(ca.chain))
	chain = append(chain, der)
	chain = append(chain, ca.chain...)
	return &tls.Certificate{Certificate: chain, PrivateKey: m.leafKey, Leaf: leaf}, refresh, nil
}

// normalizeHost returns the name a leaf is minted and cached for: lower case, without a port, brackets,
// IPv6 zone or trailing dot; IP literals in canonical form.
func normalizeHost(host string) (string, error) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.WithZone("").Unmap().String(), nil
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return "", ErrNoHost
	}
	if len(host) > maxHostLen {
		return "", fmt.Errorf("host name of %d bytes is longer than %d", len(host), maxHostLen)
	}
	if err := checkHostName(host); err != nil {
		return "", err
	}
	return host, nil
}

// checkHostName reports whether host (lower case, no trailing dot) is made of non-empty labels of
// letters, digits, '-' and '_' (seen in real internal names), at most 63 bytes each. SNI carries A-labels,
// so an internationalized name arrives as xn--... and passes.
func checkHostName(host string) error {
	label := 0
	for i := 0; i < len(host); i++ {
		switch b := host[i]; {
		case b == '.':
			if label == 0 {
				return fmt.Errorf("%w: %q has an empty label", ErrBadHost, host)
			}
			label = 0
		case b >= 'a' && b <= 'z', b >= '0' && b <= '9', b == '-', b == '_':
			label++
			if label > 63 {
				return fmt.Errorf("%w: %q has a label longer than 63 bytes", ErrBadHost, host)
			}
		case b == '*':
			return fmt.Errorf("%w: %q is a wildcard", ErrBadHost, host)
		default:
			return fmt.Errorf("%w: %q has the byte %q", ErrBadHost, host, b)
		}
	}
	if label == 0 {
		return fmt.Errorf("%w: %q has an empty label", ErrBadHost, host)
	}
	return nil
}
