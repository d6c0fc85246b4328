package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"
)

// orders is the demo app: a small shop's order API. Creating an order
// charges a card at the payments upstream over HTTPS, through goproxy's
// outbound proxy; the inventory endpoint fails now and then, as a busy
// dependency does.
type orders struct {
	payments string       // the upstream's base URL, https://localhost:PORT
	client   *http.Client // through goproxy's outbound proxy, trusting the demo CA
	broken   bool         // GET /api/orders/{id} answers 500 (AppConfig.BrokenLookup)

	mu     sync.Mutex
	rnd    *rand.Rand
	next   int
	orders []order // the newest last; at most maxOrders
}

// maxOrders bounds the orders the app keeps in memory.
const maxOrders = 200

type order struct {
	ID       int       `json:"id"`
	SKU      string    `json:"sku"`
	Quantity int       `json:"quantity"`
	Amount   int       `json:"amountCents"`
	ChargeID string    `json:"chargeId"`
	Created  time.Time `json:"created"`
}

// skus and their prices in cents.
var skus = map[string]int{"tea-earl-grey": 850, "tea-sencha": 1200, "mug-blue": 1500, "kettle": 4900}

var skuNames = []string{"tea-earl-grey", "tea-sencha", "mug-blue", "kettle"}

func newOrders(payments string, client *http.Client) *orders {
	o := &orders{payments: payments, client: client, rnd: rand.New(rand.NewPCG(1, 2)), next: 1000}
	for i, sku := range skuNames[:3] {
		o.orders = append(o.orders, order{ID: o.next + i, SKU: sku, Quantity: i + 1, Amount: skus[sku] * (i + 1),
			ChargeID: fmt.Sprintf("ch_seed%d", i), Created: time.Now().UTC()})
	}
	o.next += len(o.orders)
	return o
}

func (o *orders) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/orders", o.list)
	mux.HandleFunc("GET /api/orders/{id}", o.get)
	mux.HandleFunc("POST /api/orders", o.create)
	mux.HandleFunc("GET /api/inventory/{sku}", o.inventory)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"service": "orders", "endpoints": []string{
			"GET /api/orders", "GET /api/orders/{id}", "POST /api/orders", "GET /api/inventory/{sku}"}})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (o *orders) list(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	n := min(len(o.orders), 10)
	out := make([]order, n)
	for i := range n {
		out[i] = o.orders[len(o.orders)-1-i]
	}
	o.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"orders": out})
}

func (o *orders) get(w http.ResponseWriter, r *http.Request) {
	if o.broken {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "order lookup is broken in this build"})
		return
	}
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "order id must be a number"})
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, x := range o.orders {
		if x.ID == id {
			writeJSON(w, http.StatusOK, x)
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no order %d", id)})
}

func (o *orders) inventory(w http.ResponseWriter, r *http.Request) {
	sku := r.PathValue("sku")
	price, ok := skus[sku]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown sku " + strconv.Quote(sku)})
		return
	}
	o.mu.Lock()
	fail, stock := o.rnd.IntN(100) < 15, o.rnd.IntN(40)
	o.mu.Unlock()
	if fail {
		time.Sleep(30 * time.Millisecond)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "inventory database is overloaded; retry later"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sku": sku, "inStock": stock, "priceCents": price})
}

// create takes {"sku", "quantity", "card"}, charges the card at the
// payments upstream and stores the order.
func (o *orders) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
		Card     string `json:"card"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want a JSON body {\"sku\", \"quantity\", \"card\"}"})
		return
	}
	price, ok := skus[in.SKU]
	if !ok || in.Quantity < 1 {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": "unknown sku or quantity below 1"})
		return
	}
	amount := price * in.Quantity
	body, _ := json.Marshal(map[string]any{"amount": amount, "currency": "usd", "source": in.Card})
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, o.payments+"/v1/charges", bytes.NewReader(body))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk_test_demo_4eC39HqLyjWDarjtT1zdp7dc")
	res, err := o.client.Do(req)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "payments unreachable: " + err.Error()})
		return
	}
	defer res.Body.Close()
	var charge struct {
		ID    string `json:"id"`
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.NewDecoder(io.LimitReader(res.Body, 64<<10)).Decode(&charge)
	switch {
	case res.StatusCode == http.StatusPaymentRequired:
		code := "declined"
		if charge.Error != nil {
			code = charge.Error.Code
		}
		writeJSON(w, http.StatusPaymentRequired, map[string]string{"error": "payment failed: " + code})
		return
	case res.StatusCode != http.StatusOK:
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "payments answered " + res.Status})
		return
	}
	o.mu.Lock()
	x := order{ID: o.next, SKU: in.SKU, Quantity: in.Quantity, Amount: amount, ChargeID: charge.ID, Created: time.Now().UTC()}
	o.next++
	o.orders = append(o.orders, x)
	if len(o.orders) > maxOrders {
		o.orders = append(o.orders[:0], o.orders[len(o.orders)-maxOrders:]...)
	}
	o.mu.Unlock()
	w.Header().Set("Location", "/api/orders/"+strconv.Itoa(x.ID))
	writeJSON(w, http.StatusCreated, x)
}

// AppConfig is the orders app run alone (speedctl demo app), as a build of
// it runs in CI under speedctl test.
type AppConfig struct {
	// Listen is the address the app serves on; if zero, the demo's,
	// 127.0.0.1:9090.
	Listen string
	// Payments is the payments upstream's base URL; if zero, the demo's,
	// https://localhost:9443.
	Payments string
	// BrokenLookup makes GET /api/orders/{id} answer 500: a build with a
	// bug, to see speedctl test fail.
	BrokenLookup bool
}

func (c *AppConfig) setDefaults() {
	d := DefaultPorts()
	if c.Listen == "" {
		c.Listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(d.App))
	}
	if c.Payments == "" {
		c.Payments = "https://localhost:" + strconv.Itoa(d.Upstream)
	}
}

// RunApp serves the orders app until ctx ends, and then lets the requests
// in flight finish for up to 5 seconds. Its calls to payments go through
// HTTPS_PROXY (HTTP_PROXY for an http:// upstream), localhost included,
// and trust the system's roots, which SSL_CERT_FILE replaces: as under
// goproxy's outbound proxy, or speedctl mock.
func RunApp(ctx context.Context, cfg AppConfig, out io.Writer) error {
	cfg.setDefaults()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	tr := &http.Transport{Proxy: proxyFromEnv, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	app := newOrders(cfg.Payments, &http.Client{Transport: tr, Timeout: 10 * time.Second})
	app.broken = cfg.BrokenLookup
	fmt.Fprintf(out, "orders: serving http://%s; payments at %s", ln.Addr(), cfg.Payments)
	if p, _ := proxyFromEnv(&http.Request{URL: &url.URL{Scheme: "https"}}); p != nil {
		fmt.Fprintf(out, " through %s", p.Redacted())
	}
	if cfg.BrokenLookup {
		fmt.Fprint(out, "; GET /api/orders/{id} broken (500)")
	}
	fmt.Fprintln(out)
	return serveUntil(ctx, ln, app.handler(), nil)
}

// proxyFromEnv is http.ProxyFromEnvironment without its exception for
// localhost and loopback addresses, which would send the calls to
// https://localhost:PORT around the proxy, and without NO_PROXY.
func proxyFromEnv(req *http.Request) (*url.URL, error) {
	keys := []string{"HTTP_PROXY", "http_proxy"}
	if req.URL.Scheme == "https" {
		keys = []string{"HTTPS_PROXY", "https_proxy"}
	}
	for _, k := range keys {
		if v := os.Getenv(k); v != "" {
			u, err := url.Parse(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			return u, nil
		}
	}
	return nil, nil
}

// payments is the HTTPS upstream: a card processor's charge endpoint.
type payments struct {
	mu   sync.Mutex
	next int
}

func (p *payments) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/charges", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Amount   int    `json:"amount"`
			Currency string `json:"currency"`
			Source   string `json:"source"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil || in.Amount <= 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_request"}})
			return
		}
		if in.Source == "tok_chargeDeclined" {
			writeJSON(w, http.StatusPaymentRequired, map[string]any{"error": map[string]string{
				"code": "card_declined", "message": "Your card was declined."}})
			return
		}
		p.mu.Lock()
		p.next++
		id := fmt.Sprintf("ch_3Pdemo%06d", p.next)
		p.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "charge", "amount": in.Amount,
			"currency": in.Currency, "status": "succeeded", "paid": true})
	})
	return mux
}
