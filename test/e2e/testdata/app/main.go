// Command app is the service of the end-to-end test, the guide's
// "notifications": it serves HTTP on :8080 and calls an HTTPS upstream by
// host name with Go's default client, which follows HTTP_PROXY/HTTPS_PROXY
// and trusts SSL_CERT_FILE, exactly as the guide configures an app.
//
//	GET /hello                 200 "hello"
//	GET /call?id=ID[&path=P][&host=H]
//	                           calls UPSTREAM+P?id=ID (P defaults to /echo; H,
//	                           if given, replaces UPSTREAM's host) and answers
//	                           with the upstream's status and body, or 502
//	                           "app: upstream call failed: ..." when the call
//	                           itself fails
//	POST /login?id=ID&password=P
//	                           posts to UPSTREAM/login?id=ID&password=P with the
//	                           request's Authorization, X-Vault-Token,
//	                           Content-Type and body, and answers with the
//	                           upstream's status, X-Vault-Token, Content-Type
//	                           and body (the same 502 on failure): secrets pass
//	                           through goproxy both ways, inbound and outbound
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	upstream := flag.String("upstream", "https://api.upstream.test", "base URL of the upstream")
	flag.Parse()

	client := &http.Client{Timeout: 20 * time.Second} // http.DefaultTransport: HTTP(S)_PROXY, SSL_CERT_FILE
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("GET /call", func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Query().Get("path")
		if path == "" {
			path = "/echo"
		}
		u, err := url.Parse(*upstream + path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if h := r.URL.Query().Get("host"); h != "" {
			u.Host = h
		}
		u.RawQuery = "id=" + url.QueryEscape(r.URL.Query().Get("id"))
		res, err := client.Get(u.String())
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "app: upstream call failed: %v", err)
			return
		}
		defer res.Body.Close()
		w.Header().Set("Content-Type", res.Header.Get("Content-Type"))
		w.WriteHeader(res.StatusCode)
		io.Copy(w, res.Body)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		q := url.Values{"id": {r.URL.Query().Get("id")}, "password": {r.URL.Query().Get("password")}}
		req, err := http.NewRequest("POST", *upstream+"/login?"+q.Encode(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, h := range []string{"Authorization", "X-Vault-Token", "Content-Type"} {
			req.Header.Set(h, r.Header.Get(h))
		}
		res, err := client.Do(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "app: upstream call failed: %v", err)
			return
		}
		defer res.Body.Close()
		for _, h := range []string{"X-Vault-Token", "Content-Type"} {
			w.Header().Set(h, res.Header.Get(h))
		}
		w.WriteHeader(res.StatusCode)
		io.Copy(w, res.Body)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("app: serving on %s, upstream %s", *listen, *upstream)
	log.Fatal(srv.ListenAndServe())
}
