// Package signaling will relay WebRTC signaling (SDP offers and answers,
// ICE candidates) between peers in rooms over WebSocket, at /signal, and
// reach peers on other nodes through an interface it defines.
//
// Nothing lives here yet: see the signaling issue.
package signaling
