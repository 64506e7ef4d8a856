package edge

import (
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"math"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/switchyard/switchyard/auth"
)

// The admin dashboard (docs/admin.md): GET /admin serves a page, embedded
// below, that polls GET /admin/api/stats every second with an admin key
// and draws what it gets. The page holds no data and is public; the
// stats need the admin scope (Config.APIKey, or an APIKeys entry with
// auth.ScopeAdmin). The stats are read from the node's Prometheus
// registry, as /metrics would serve them (admin_stats.go).

//go:embed admin/index.html admin/admin.css admin/admin.js
var adminFiles embed.FS

// adminCSP lets the page load only its own script and style and talk only
// to its own origin: the key it holds is worth protecting.
const adminCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const (
	// adminAuditEvery is how often an admin key's use is logged at most.
	adminAuditEvery = time.Minute
	// adminStatsMaxAge is how long a snapshot serves further polls: a few
	// open dashboards cost one Gather per second, not one each.
	adminStatsMaxAge = 250 * time.Millisecond
)

// adminAsset is an embedded file of the page.
type adminAsset struct {
	body        []byte
	contentType string
	etag        string
}

// admin serves the dashboard of one node.
type admin struct {
	// immutable after newAdmin
	node    *Node
	created time.Time // the node's uptime counts from here
	assets  map[string]adminAsset

	mu      sync.Mutex           // held while gathering
	audited map[string]time.Time // key identity → last logged use
	cached  []byte               // the last snapshot, JSON
	cachedT time.Time
}

func newAdmin(n *Node) *admin {
	a := &admin{node: n, created: time.Now(), assets: map[string]adminAsset{}, audited: map[string]time.Time{}}
	for path, file := range map[string]struct{ name, ctype string }{
		"/admin":           {"admin/index.html", "text/html; charset=utf-8"},
		"/admin/":          {"admin/index.html", "text/html; charset=utf-8"},
		"/admin/admin.css": {"admin/admin.css", "text/css; charset=utf-8"},
		"/admin/admin.js":  {"admin/admin.js", "text/javascript; charset=utf-8"},
	} {
		body, err := adminFiles.ReadFile(file.name)
		if err != nil {
			panic("edge: embedded admin file missing: " + file.name) // the build embeds them
		}
		sum := sha256.Sum256(body)
		a.assets[path] = adminAsset{body: body, contentType: file.ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return a
}

// adminRoutes adds the dashboard's routes to mux: /admin (and /admin/),
// its script and style, and /admin/api/stats.
func (n *Node) adminRoutes(mux *http.ServeMux) {
	a := newAdmin(n)
	getHead := []string{http.MethodGet, http.MethodHead}
	mux.Handle("/admin", n.only(getHead, http.HandlerFunc(a.serveAsset)))
	mux.Handle("/admin/", n.only(getHead, http.HandlerFunc(a.serveAsset)))
	mux.Handle("/admin/api/stats", n.only([]string{http.MethodGet}, http.HandlerFunc(a.serveStats)))
}

// serveAsset serves the page, its script or its style; 404 otherwise.
func (a *admin) serveAsset(w http.ResponseWriter, r *http.Request) {
	f, ok := a.assets[r.URL.Path]
	if !ok {
		a.node.refuse(w, r, http.StatusNotFound, "not_found", "no such admin path")
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Security-Policy", adminCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(f.body)
}

// serveStats answers GET /admin/api/stats with the node's snapshot
// (adminStats) to an admin key.
func (a *admin) serveStats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !a.node.apiAuthorized(w, r, auth.ScopeAdmin) {
		return
	}
	a.audit(r)
	body, err := a.snapshot()
	if err != nil {
		a.node.refuse(w, r, http.StatusInternalServerError, "stats_failed", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// snapshot returns the node's stats as JSON, gathered now or less than
// adminStatsMaxAge ago.
func (a *admin) snapshot() ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cached != nil && time.Since(a.cachedT) < adminStatsMaxAge {
		return a.cached, nil
	}
	body, err := a.gather()
	if err != nil {
		return nil, err
	}
	a.cached, a.cachedT = body, time.Now()
	return body, nil
}

// audit logs, at Info, who reads the stats: each key at most once per
// adminAuditEvery, not on every poll. apiAuthorized has accepted the key.
func (a *admin) audit(r *http.Request) {
	who := a.keyName(r.Header.Get("X-API-Key"))
	now := time.Now()
	a.mu.Lock()
	last, seen := a.audited[who]
	log := !seen || now.Sub(last) >= adminAuditEvery
	if log {
		a.audited[who] = now
	}
	a.mu.Unlock()
	if log {
		a.node.cfg.Logger.Info("admin api access", "key", who, "path", r.URL.Path, "remote", r.RemoteAddr)
	}
}

// keyName names an accepted admin key for the audit log as apiAuthorized
// does: its APIKeys name, or "api_key" for Config.APIKey. The names are
// few (the configured keys), so audited stays small.
func (a *admin) keyName(key string) string {
	cfg := &a.node.cfg
	if cfg.APIKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(cfg.APIKey)) == 1 {
		return "api_key"
	}
	if name, err := cfg.APIKeys.Check(key, auth.ScopeAdmin); err == nil {
		return name
	}
	return "unknown" // not reached: apiAuthorized accepted the key
}

// quantile estimates the q-quantile (0 < q < 1) of a histogram from its
// cumulative bucket counts, as Prometheus' histogram_quantile does:
// linearly within the bucket it falls in, from 0 in the first one; an
// observation above the last bound counts as that bound. It returns NaN
// without observations.
func quantile(q float64, bounds []float64, cumulative []uint64, total uint64) float64 {
	if total == 0 || len(bounds) == 0 {
		return math.NaN()
	}
	rank := q * float64(total)
	i := sort.Search(len(cumulative), func(i int) bool { return float64(cumulative[i]) >= rank })
	if i == len(bounds) {
		return bounds[len(bounds)-1]
	}
	lower, below := 0.0, uint64(0)
	if i > 0 {
		lower, below = bounds[i-1], cumulative[i-1]
	}
	in := cumulative[i] - below
	if in == 0 {
		return bounds[i]
	}
	return lower + (bounds[i]-lower)*(rank-float64(below))/float64(in)
}
