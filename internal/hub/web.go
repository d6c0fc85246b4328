package hub

import (
	"embed"
	"io/fs"
	"net/http"
)

// The traffic viewer: static files, embedded, that call the API with the
// read key the user signs in with (kept in the tab's sessionStorage).
//
//go:embed web
var webFiles embed.FS

// contentSecurity lets the viewer's page run its own script and style and
// talk to its own origin, nothing else: captured traffic is hostile input,
// and even if some of it reached the page as markup, no inline script or
// foreign resource would run.
const contentSecurity = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// secure sets the headers every answer of the hub carries.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Content-Security-Policy", contentSecurity)
		h.ServeHTTP(w, r)
	})
}

func (s *Server) routeViewer() {
	sub, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic("hub: embedded viewer: " + err.Error()) // the embed pattern is constant
	}
	files := http.FileServerFS(sub)
	s.mux.Handle("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, sub, "index.html")
	}))
	s.mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})))
}
