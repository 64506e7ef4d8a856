package main

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

var errServerMasked = errors.New("websocket: masked frame from the server")

// wsReader parses the server → client half of a WebSocket connection from
// the bytes read off the socket, in whatever pieces they come: the -readers
// epoll path, which reads sockets itself instead of through gorilla. Servers
// never mask, and no extension is negotiated (the dialer asks for none), so
// the reserved bits must be clear. It is owned by one goroutine at a time.
type wsReader struct {
	max     int    // largest message
	pending []byte // the start of a frame not yet complete
	msg     []byte // the fragments so far of a fragmented message
	op      byte   // the opcode of that message; 0: none in progress
}

// feed parses data, after whatever was pending, and calls fn for every
// complete message (opText, opBinary, fragments joined) and control frame
// (opClose, opPing, opPong), in order. payload is only valid during the
// call. The first error, fn's or a protocol error, ends the connection.
func (r *wsReader) feed(data []byte, fn func(op byte, payload []byte) error) error {
	fromPending := len(r.pending) > 0
	if fromPending {
		r.pending = append(r.pending, data...)
		data = r.pending
	}
	rest, err := r.parse(data, fn)
	if err != nil {
		return err
	}
	switch {
	case len(rest) == 0:
		r.pending = r.pending[:0]
		if cap(r.pending) > 64<<10 {
			r.pending = nil
		}
	case fromPending:
		r.pending = r.pending[:copy(r.pending, rest)]
	default:
		r.pending = append(r.pending[:0], rest...)
	}
	return nil
}

// parse consumes the complete frames at the start of b and returns the
// rest.
func (r *wsReader) parse(b []byte, fn func(op byte, payload []byte) error) ([]byte, error) {
	for len(b) >= 2 {
		b0, b1 := b[0], b[1]
		fin, op := b0&0x80 != 0, b0&0x0f
		if b0&0x70 != 0 {
			return nil, fmt.Errorf("websocket: reserved bits %#x set", b0&0x70)
		}
		if b1&0x80 != 0 {
			return nil, errServerMasked
		}
		n, h := uint64(b1&0x7f), 2
		switch n {
		case 126:
			if len(b) < 4 {
				return b, nil
			}
			n, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			if len(b) < 10 {
				return b, nil
			}
			n, h = binary.BigEndian.Uint64(b[2:]), 10
		}
		switch op {
		case opClose, opPing, opPong:
			if !fin || n > 125 {
				return nil, fmt.Errorf("websocket: control frame %#x: fin %v, %d bytes", op, fin, n)
			}
		case opContinuation, opText, opBinary:
			if n > uint64(r.max) || (op == opContinuation && n+uint64(len(r.msg)) > uint64(r.max)) {
				return nil, fmt.Errorf("websocket: message longer than %d bytes", r.max)
			}
		default:
			return nil, fmt.Errorf("websocket: unknown opcode %#x", op)
		}
		if uint64(len(b)-h) < n {
			return b, nil
		}
		p := b[h : h+int(n)]
		b = b[h+int(n):]
		switch op {
		case opClose, opPing, opPong:
			if err := fn(op, p); err != nil {
				return nil, err
			}
		case opContinuation:
			if r.op == 0 {
				return nil, errors.New("websocket: continuation frame without a message")
			}
			r.msg = append(r.msg, p...)
			if fin {
				op := r.op
				r.op = 0
				err := fn(op, r.msg)
				r.msg = r.msg[:0]
				if cap(r.msg) > 256<<10 {
					r.msg = nil
				}
				if err != nil {
					return nil, err
				}
			}
		default:
			if r.op != 0 {
				return nil, fmt.Errorf("websocket: message %#x inside a fragmented message", op)
			}
			if !fin {
				r.op = op
				r.msg = append(r.msg[:0], p...)
				continue
			}
			if err := fn(op, p); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

// closeFrame decodes a close frame's payload: its status code and reason
// (1005, no status, when it has none).
func closeFrame(p []byte) (int, string, error) {
	switch {
	case len(p) == 0:
		return 1005, "", nil
	case len(p) == 1:
		return 0, "", errors.New("websocket: close frame of one byte")
	}
	return int(binary.BigEndian.Uint16(p)), string(p[2:]), nil
}
