// Package web holds the p2p example's page, embedded.
package web

import (
	_ "embed"
	"net/http"

	"github.com/switchyard/switchyard/protocols"
)

//go:embed index.html
var index []byte

// Handler serves the page at "/" of whatever it is mounted on.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && r.URL.Path != "/index.html" {
			protocols.WriteHTTPError(w, http.StatusNotFound, "not_found", "no such path")
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(index)
	})
}
