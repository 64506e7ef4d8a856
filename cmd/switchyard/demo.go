package main

import (
	_ "embed"
	"net/http"

	"github.com/switchyard/switchyard/protocols"
)

//go:embed demo.html
var demoHTML []byte

// demoPage serves the landing page at "/" and a JSON 404 elsewhere.
func demoPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			protocols.WriteHTTPError(w, http.StatusNotFound, "not_found", "no such path: "+r.URL.Path)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(demoHTML)
	})
}
