package edge

import (
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/switchyard/switchyard/auth"
)

// pprofRoutes serves Go's profiles under /debug/pprof/ to an admin key
// (X-API-Key with the admin scope): CPU and heap profiles tell where a
// node spends, and nobody else may read them.
func (n *Node) pprofRoutes(mux *http.ServeMux) {
	mux.Handle("/debug/pprof/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !n.apiAuthorized(w, r, auth.ScopeAdmin) {
			return
		}
		switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
		case "cmdline":
			pprof.Cmdline(w, r)
		case "profile":
			pprof.Profile(w, r)
		case "symbol":
			pprof.Symbol(w, r)
		case "trace":
			pprof.Trace(w, r)
		default:
			pprof.Index(w, r) // the index, and heap, goroutine, allocs, block, mutex by name
		}
	}))
}
