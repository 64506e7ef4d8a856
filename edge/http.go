package edge

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/protocols"
)

// httpWriteTimeout bounds writing an answer on the TCP listeners. It does
// not reach WebSocket sessions: gorilla/websocket clears the deadlines
// net/http set when it takes the connection over.
const httpWriteTimeout = 30 * time.Second

// httpServer is the server of one TCP listener.
func (n *Node) httpServer(errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           n.mux,
		ReadHeaderTimeout: n.cfg.HTTPReadHeaderTimeout,
		// A backstop for the whole request: /api/publish sets its own
		// deadline for the body, refuse one for discarding an unread body.
		ReadTimeout:  n.cfg.HTTPReadHeaderTimeout + n.cfg.HTTPBodyTimeout,
		WriteTimeout: httpWriteTimeout,
		IdleTimeout:  n.cfg.HTTPIdleTimeout,
		ConnState:    releaseHandedOff,
		ErrorLog:     errLog,
	}
}

func (n *Node) routes() http.Handler {
	getHead := []string{http.MethodGet, http.MethodHead}
	mux := http.NewServeMux()
	mux.Handle("/ws", n.unlessStopping(n.ws))
	if n.wt != nil {
		mux.Handle("/wt", n.unlessStopping(n.wt))
	}
	if n.cfg.Signal != nil {
		mux.Handle("/signal", n.unlessStopping(n.only([]string{http.MethodGet}, n.cfg.Signal)))
	}
	mux.Handle("/api/publish", n.only([]string{http.MethodPost}, http.HandlerFunc(n.apiPublish)))
	mux.Handle("/api/nodes", n.only([]string{http.MethodGet}, http.HandlerFunc(n.apiNodes)))
	mux.Handle("/api/history", n.only(getHead, http.HandlerFunc(n.apiHistory)))
	mux.Handle("/api/presence", n.only(getHead, http.HandlerFunc(n.apiPresence)))
	mux.Handle("/api/drain", n.only([]string{http.MethodPost}, http.HandlerFunc(n.apiDrain)))
	n.pprofRoutes(mux)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		n.refuse(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("no such API endpoint: %.64q", r.URL.Path))
	})
	mux.Handle("/healthz", n.only(getHead, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "node": n.cfg.Name, "region": n.cfg.Region})
	})))
	mux.Handle("/readyz", n.only(getHead, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		stopping := n.stopping
		n.mu.Unlock()
		if stopping {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": "shutting down"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ready": true})
	})))
	own := map[string]bool{"/signal": n.cfg.Signal != nil, "/ws": true, "/wt": true, "/api/": true, "/api/publish": true, "/api/nodes": true, "/api/history": true, "/api/presence": true, "/api/drain": true, "/debug/pprof/": true, "/healthz": true, "/readyz": true, "/certhash": true, "/metrics": true,
		"/admin": true, "/admin/": true, "/admin/api/stats": true}
	mux.Handle("/metrics", n.only(getHead, n.metrics))
	n.adminRoutes(mux) // admin.go
	if n.cfg.Certs != nil {
		mux.Handle("/certhash", n.only([]string{http.MethodGet, http.MethodHead, http.MethodOptions}, http.HandlerFunc(n.certHash)))
	}
	for p, h := range n.cfg.Extra {
		if !own[p] {
			mux.Handle(p, n.only(getHead, h))
		}
	}
	return n.metrics.countAPIErrors(n.closeUnreadBodies(mux))
}

// closeUnreadBodies wraps the routes. Only /api/publish reads a request
// body; an HTTP/1 request to any other path that announces one has its
// connection closed after the answer, instead of net/http waiting for the
// body so that it can read the next request.
func (n *Node) closeUnreadBodies(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/publish" {
			n.closeAfterReply(w, r, true)
		}
		h.ServeHTTP(w, r)
	})
}

// closeAfterReply makes an HTTP/1 request that announced a body (a
// Content-Length or chunked) close its connection after the answer: with
// "Connection: close", net/http writes the answer at once instead of first
// reading up to 256 KiB of the body. It still discards what arrives of the
// body after the answer, to close cleanly; with bound, that may take at
// most HTTPBodyTimeout from now (without it, the current read deadline
// stands: a body that timed out is not waited for again). HTTP/2 and
// HTTP/3 reset the stream of an unread body instead, and forbid the header.
func (n *Node) closeAfterReply(w http.ResponseWriter, r *http.Request, bound bool) {
	if r.ProtoMajor != 1 || r.ContentLength == 0 {
		return
	}
	w.Header().Set("Connection", "close")
	if bound {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(n.cfg.HTTPBodyTimeout))
	}
}

// refuse answers with a JSON error without reading the request's body,
// closing the connection after the answer when a body was announced.
func (n *Node) refuse(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	n.closeAfterReply(w, r, true)
	protocols.WriteHTTPError(w, status, code, message)
}

// only answers 405 with an Allow header to methods other than methods.
func (n *Node) only(methods []string, h http.Handler) http.Handler {
	allow := strings.Join(methods, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(methods, r.Method) {
			w.Header().Set("Allow", allow)
			n.refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "use "+allow)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// unlessStopping answers 503 instead of opening a session once the node
// is shutting down, so that reconnecting clients back off and go elsewhere
// rather than loop on a closing node.
// admitting reports whether the node takes new sessions (it is not
// stopping).
func (n *Node) admitting() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.stopping
}

func (n *Node) unlessStopping(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		stopping := n.stopping
		n.mu.Unlock()
		if stopping {
			w.Header().Set("Retry-After", "1")
			n.refuse(w, r, http.StatusServiceUnavailable, "shutting_down", "this node is shutting down; connect to another")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// certHash serves {"algorithm","value","notAfter"} of the current leaf, with
// CORS headers for allowed origins so that browser pages can fetch it.
func (n *Node) certHash(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" && n.originAllowed(r) {
		w.Header().Set("Access-Control-Allow-Origin", o)
		w.Header().Add("Vary", "Origin")
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Methods", "GET")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	cert, err := n.cfg.Certs.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		n.refuse(w, r, http.StatusServiceUnavailable, "no_certificate", "no certificate loaded")
		return
	}
	sum := sha256.Sum256(cert.Certificate[0])
	var notAfter time.Time
	if cert.Leaf != nil {
		notAfter = cert.Leaf.NotAfter.UTC()
	} else if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
		notAfter = leaf.NotAfter.UTC()
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"algorithm": "sha-256",
		"value":     base64.StdEncoding.EncodeToString(sum[:]),
		"notAfter":  notAfter.Format(time.RFC3339),
	})
}

// publishRequest is the body of POST /api/publish.
type publishRequest struct {
	Channel        string  `json:"channel"`
	Data           *string `json:"data"`
	DataBase64     *string `json:"data_base64"`
	IdempotencyKey string  `json:"idempotency_key"`
}

// publishReply is the answer of POST /api/publish.
type publishReply struct {
	Position
	Duplicate bool `json:"duplicate,omitempty"`
}

// apiPublish publishes to a channel for an app back end:
// POST /api/publish, X-API-Key, {"channel": "news", "data": "text"} or
// {"channel": "news", "data_base64": "..."}, optionally with
// "idempotency_key" → {"epoch": "...", "offset": n} (and "duplicate": true
// for a key applied before).
// The body must arrive within HTTPBodyTimeout.
func (n *Node) apiPublish(w http.ResponseWriter, r *http.Request) {
	if !n.apiAuthorized(w, r, auth.ScopePublish) {
		return
	}
	// The payload may be base64 (4/3 of its size) plus the JSON around it.
	limit := int64(n.cfg.Session.MaxFrameSize)*4/3 + 4096
	if r.ContentLength > limit {
		n.refuse(w, r, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body over %d bytes", limit))
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(n.cfg.HTTPBodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		// The body is cut short: close after the answer, not waiting for
		// the rest beyond the deadline already set.
		n.closeAfterReply(w, r, false)
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			protocols.WriteHTTPError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body over %d bytes", limit))
		case errors.Is(err, os.ErrDeadlineExceeded):
			protocols.WriteHTTPError(w, http.StatusRequestTimeout, "body_timeout", fmt.Sprintf("the body did not arrive within %v", n.cfg.HTTPBodyTimeout))
		default:
			protocols.WriteHTTPError(w, http.StatusBadRequest, "bad_body", "read body: "+err.Error())
		}
		return
	}
	// The body is in: lift the deadline, which would otherwise end the
	// request's context while the publication is under way.
	_ = rc.SetReadDeadline(time.Time{})
	var req publishRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		protocols.WriteHTTPError(w, http.StatusBadRequest, "bad_json", "body is not a publish request: "+err.Error())
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		protocols.WriteHTTPError(w, http.StatusBadRequest, "bad_json", "body has data after the JSON object")
		return
	}
	if err := n.checkChannel(req.Channel); err != nil {
		protocols.WriteHTTPError(w, http.StatusBadRequest, "invalid_channel", err.Error())
		return
	}
	var data []byte
	switch {
	case req.Data != nil && req.DataBase64 != nil:
		protocols.WriteHTTPError(w, http.StatusBadRequest, "bad_request", `give "data" or "data_base64", not both`)
		return
	case req.Data != nil:
		data = []byte(*req.Data)
	case req.DataBase64 != nil:
		data, err = base64.StdEncoding.DecodeString(*req.DataBase64)
		if err != nil {
			protocols.WriteHTTPError(w, http.StatusBadRequest, "bad_base64", "data_base64: "+err.Error())
			return
		}
	default:
		protocols.WriteHTTPError(w, http.StatusBadRequest, "bad_request", `missing "data" or "data_base64"`)
		return
	}
	if limit := n.maxPayload(req.Channel); len(data) > limit {
		protocols.WriteHTTPError(w, http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("payload is %d bytes, limit %d", len(data), limit))
		return
	}
	if len(req.IdempotencyKey) > protocols.MaxIdempotencyKey {
		protocols.WriteHTTPError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("idempotency_key is %d bytes, limit %d", len(req.IdempotencyKey), protocols.MaxIdempotencyKey))
		return
	}
	if !n.limits.channelAllows(req.Channel) {
		w.Header().Set("Retry-After", "1")
		protocols.WriteHTTPError(w, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("over %g publishes a second on %.64q", n.cfg.Limits.ChannelPublishRate, req.Channel))
		return
	}
	pos, dup, err := n.hub.Publish(r.Context(), req.Channel, req.IdempotencyKey, data)
	if err != nil {
		protocols.WriteHTTPError(w, http.StatusServiceUnavailable, "publish_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, publishReply{Position: pos, Duplicate: dup})
}

// apiNodes lists the cluster's nodes by region, so that clients and load
// balancers can pick a near one: GET /api/nodes → {"self": name,
// "region": region, "regions": {"eu": [NodeInfo...]}}. It needs no key: it
// tells only public URLs.
func (n *Node) apiNodes(w http.ResponseWriter, r *http.Request) {
	nodes := []NodeInfo{{Name: n.cfg.Name, Region: n.cfg.Region, URLs: n.PublicURLs(), Self: true}}
	if n.cfg.Nodes != nil {
		nodes = n.cfg.Nodes()
	}
	regions := map[string][]NodeInfo{}
	for _, ni := range nodes {
		regions[ni.Region] = append(regions[ni.Region], ni)
	}
	writeJSON(w, http.StatusOK, map[string]any{"self": n.cfg.Name, "region": n.cfg.Region, "regions": regions})
}

// apiAuthorized checks the request's X-API-Key for scope: Config.APIKey
// (every scope) or one of Config.APIKeys with that scope (or admin). It
// answers 401 or 403 with a JSON body itself when it refuses.
func (n *Node) apiAuthorized(w http.ResponseWriter, r *http.Request, scope string) bool {
	if n.cfg.APIKey == "" && n.cfg.APIKeys.Len() == 0 {
		n.refuse(w, r, http.StatusForbidden, "api_disabled", "this node has no API key configured")
		return false
	}
	key := r.Header.Get("X-API-Key")
	if key == "" {
		n.refuse(w, r, http.StatusUnauthorized, "missing_api_key", "send the X-API-Key header")
		return false
	}
	if n.cfg.APIKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(n.cfg.APIKey)) == 1 {
		n.audit(r, scope, "api_key")
		return true
	}
	name, err := n.cfg.APIKeys.Check(key, scope)
	switch {
	case err == nil:
		n.audit(r, scope, name)
		return true
	case errors.Is(err, auth.ErrForbidden):
		n.cfg.Logger.Info("api key refused", "key", name, "scope", scope, "path", r.URL.Path)
		n.refuse(w, r, http.StatusForbidden, "forbidden", fmt.Sprintf("the API key %q lacks the %s scope", name, scope))
	default:
		n.refuse(w, r, http.StatusUnauthorized, "bad_api_key", "the X-API-Key is wrong")
	}
	return false
}

// audit logs an admin action (not a read: the dashboard's polls have
// their own, rarer log line) with the name of the key that did it.
func (n *Node) audit(r *http.Request, scope, key string) {
	if scope == auth.ScopeAdmin && r.Method != http.MethodGet && r.Method != http.MethodHead {
		n.cfg.Logger.Info("audit: admin action", "key", key, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	}
}

// POST /api/drain, admin scope: the node drains as on SIGTERM (Config.OnDrain)
// and answers 202 at once.
func (n *Node) apiDrain(w http.ResponseWriter, r *http.Request) {
	if !n.apiAuthorized(w, r, auth.ScopeAdmin) {
		return
	}
	if n.cfg.OnDrain == nil {
		n.refuse(w, r, http.StatusNotImplemented, "not_supported", "this node cannot be drained over the API")
		return
	}
	go n.cfg.OnDrain()
	writeJSON(w, http.StatusAccepted, map[string]any{"draining": true, "node": n.cfg.Name})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// historyReply is the body of GET /api/history.
type historyReply struct {
	Channel      string               `json:"channel"`
	Epoch        string               `json:"epoch"`
	Offset       uint64               `json:"offset"`
	Complete     bool                 `json:"complete"`
	Owner        bool                 `json:"owner"` // this node owns the channel
	Publications []historyPublication `json:"publications"`
}

type historyPublication struct {
	Offset     uint64 `json:"offset"`
	Data       string `json:"data,omitempty"`
	DataBase64 string `json:"data_base64,omitempty"`
}

// GET /api/history?channel=chat[&limit=N][&since_epoch=E&since_offset=O],
// X-API-Key: the channel's kept publications (oldest first) and position;
// with since, those after it, and "complete" tells whether none is
// missing. Served from this node's copy: the owner's, or that of a node
// with subscribers of the channel.
func (n *Node) apiHistory(w http.ResponseWriter, r *http.Request) {
	if !n.apiAuthorized(w, r, auth.ScopeHistory) {
		return
	}
	q := r.URL.Query()
	name := q.Get("channel")
	if err := n.checkChannel(name); err != nil {
		protocols.WriteHTTPError(w, http.StatusBadRequest, "invalid_channel", err.Error())
		return
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l < 0 {
			protocols.WriteHTTPError(w, http.StatusBadRequest, "bad_limit", "limit must be a non-negative integer")
			return
		}
		limit = l
	}
	var since *Position
	if q.Has("since_offset") || q.Has("since_epoch") {
		o, err := strconv.ParseUint(q.Get("since_offset"), 10, 64)
		if err != nil {
			protocols.WriteHTTPError(w, http.StatusBadRequest, "bad_since", "since_offset must be an unsigned integer, with since_epoch")
			return
		}
		since = &Position{Epoch: q.Get("since_epoch"), Offset: o}
	}
	if n.hub.IsVolatile(name) {
		protocols.WriteHTTPError(w, http.StatusBadRequest, "volatile_channel", "a volatile channel keeps no history")
		return
	}
	var pos Position
	var pubs []protocols.Publication
	var complete bool
	if n.cfg.Cluster != nil && !n.cfg.Cluster.IsOwner(name) && n.hub.Subscribers(name) == 0 {
		// No copy here: ask the owner.
		epoch, offset, hist, err := n.cfg.Cluster.History(r.Context(), name)
		if err != nil {
			protocols.WriteHTTPError(w, http.StatusServiceUnavailable, "owner_unavailable", "the channel's owner node did not answer: "+err.Error())
			return
		}
		pos = Position{Epoch: epoch, Offset: offset}
		pubs, complete = selectHistory(pos, hist, since, limit)
	} else {
		pos, pubs, complete = n.hub.History(name, since, limit)
	}
	out := historyReply{Channel: name, Epoch: pos.Epoch, Offset: pos.Offset, Complete: complete, Publications: []historyPublication{},
		Owner: n.cfg.Cluster == nil || n.cfg.Cluster.IsOwner(name)}
	for _, p := range pubs {
		data, ok := protocols.MessageData(p.Frame)
		if !ok {
			continue
		}
		hp := historyPublication{Offset: p.Offset}
		if utf8.Valid(data) {
			hp.Data = string(data)
		} else {
			hp.DataBase64 = base64.StdEncoding.EncodeToString(data)
		}
		out.Publications = append(out.Publications, hp)
	}
	writeJSON(w, http.StatusOK, out)
}

// presenceReply is the body of GET /api/presence.
type presenceReply struct {
	Channel   string           `json:"channel"`
	Clients   uint32           `json:"clients"`
	Users     uint32           `json:"users"`
	Truncated bool             `json:"truncated,omitempty"`
	Members   []presenceMember `json:"members"`
}

type presenceMember struct {
	Client     string `json:"client"`
	User       string `json:"user,omitempty"`
	Info       string `json:"info,omitempty"`
	InfoBase64 string `json:"info_base64,omitempty"`
}

// GET /api/presence?channel=chat[&limit=N], X-API-Key: who is in the
// channel over the whole cluster (asked of its owner): counts, and up to
// limit members (default 1,000; 0 for counts only), sorted by client id.
func (n *Node) apiPresence(w http.ResponseWriter, r *http.Request) {
	if !n.apiAuthorized(w, r, auth.ScopePresence) {
		return
	}
	q := r.URL.Query()
	name := q.Get("channel")
	if err := n.checkChannel(name); err != nil {
		protocols.WriteHTTPError(w, http.StatusBadRequest, "invalid_channel", err.Error())
		return
	}
	limit := DefaultPresenceLimit
	if v := q.Get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l < 0 || l > 100_000 {
			protocols.WriteHTTPError(w, http.StatusBadRequest, "bad_limit", "limit must be an integer from 0 to 100000")
			return
		}
		limit = l
	}
	if !n.hub.presence(name) {
		protocols.WriteHTTPError(w, http.StatusBadRequest, "no_presence", errNoPresence.Error())
		return
	}
	p, err := n.hub.QueryPresence(r.Context(), name, limit)
	if err != nil {
		protocols.WriteHTTPError(w, http.StatusServiceUnavailable, "owner_unavailable", "the channel's owner node did not answer: "+err.Error())
		return
	}
	out := presenceReply{Channel: name, Clients: p.Clients, Users: p.Users, Truncated: p.Truncated, Members: []presenceMember{}}
	for _, m := range p.Members {
		pm := presenceMember{Client: m.Client, User: m.User}
		if utf8.Valid(m.Info) {
			pm.Info = string(m.Info)
		} else {
			pm.InfoBase64 = base64.StdEncoding.EncodeToString(m.Info)
		}
		out.Members = append(out.Members, pm)
	}
	writeJSON(w, http.StatusOK, out)
}
