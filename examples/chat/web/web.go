// Package web holds the chat example's page, embedded, so that both the
// example (go run ./examples/chat) and the switchyard binary (its demo
// page at "/") serve it.
package web

import (
	_ "embed"
	"net/http"

	"github.com/switchyard/switchyard/protocols"
)

//go:embed index.html
var index []byte

// Handler serves the chat page at "/" of whatever it is mounted on.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && r.URL.Path != "/index.html" {
			protocols.WriteHTTPError(w, http.StatusNotFound, "not_found", "no such path: "+r.URL.Path)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(index)
	})
}
