package protocols

import (
	"encoding/json"
	"net/http"
)

// HTTPError is the JSON body of every 4xx and 5xx answer of a node:
// {"error": "<code>", "message": "<text>"}.
type HTTPError struct {
	Code    string `json:"error"`
	Message string `json:"message"`
}

// WriteHTTPError answers with status and a JSON HTTPError body; the
// message is cut to MaxErrorMessageLen bytes.
func WriteHTTPError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(HTTPError{Code: code, Message: TrimMessage(message)})
}
