package demo

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// generator sends a mix of requests to the app through goproxy's inbound
// port, one at a time at a bounded rate.
type generator struct {
	base   string // http://127.0.0.1:IN
	rate   float64
	client *http.Client

	sent, failed atomic.Int64 // requests sent; those that got no answer
}

func newGenerator(base string, rate float64) *generator {
	return &generator{base: base, rate: rate, client: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second},
	}}
}

// run sends requests until ctx is done, and then returns once the request
// in flight has its answer. A slow answer delays the next request instead
// of adding concurrency: the rate is an upper bound.
func (g *generator) run(ctx context.Context) {
	defer g.client.CloseIdleConnections()
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	t := time.NewTicker(time.Duration(float64(time.Second) / g.rate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		method, path, body := pick(rnd)
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		// Not ctx: a request in flight when the demo stops is finished
		// (within the client's timeout), not cut off into a failed record.
		req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), method, g.base+path, rd)
		if err != nil {
			continue
		}
		req.Header.Set("User-Agent", "tapwire-demo-shopper/1.0")
		req.Header.Set("Accept", "application/json")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		g.sent.Add(1)
		res, err := g.client.Do(req)
		if err != nil {
			g.failed.Add(1)
			continue
		}
		io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
		res.Body.Close()
	}
}

// pick chooses the next request: mostly reads, some orders (a few with a
// card that is declined), inventory checks that fail now and then, and
// the odd unknown order.
func pick(rnd *rand.Rand) (method, path, body string) {
	sku := skuNames[rnd.IntN(len(skuNames))]
	switch n := rnd.IntN(100); {
	case n < 35:
		return http.MethodGet, "/api/orders", ""
	case n < 50:
		return http.MethodGet, fmt.Sprintf("/api/orders/%d", 1000+rnd.IntN(12)), ""
	case n < 75:
		card := "tok_visa"
		if rnd.IntN(10) == 0 {
			card = "tok_chargeDeclined"
		}
		return http.MethodPost, "/api/orders", fmt.Sprintf(`{"sku":%q,"quantity":%d,"card":%q}`, sku, 1+rnd.IntN(3), card)
	default:
		return http.MethodGet, "/api/inventory/" + sku, ""
	}
}
