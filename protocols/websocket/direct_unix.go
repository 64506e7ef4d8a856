//go:build unix

package websocket

import "syscall"

// writeNow writes b with write(2) until the socket would block, returning
// what it did not take.
func (w *wire) writeNow(b []byte) ([]byte, error) {
	var werr error
	err := w.raw.Write(func(fd uintptr) bool {
		for len(b) > 0 {
			n, err := syscall.Write(int(fd), b)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				if err != syscall.EAGAIN {
					werr = err
				}
				return true
			}
			b = b[n:]
		}
		return true // never wait for the socket: the session's writer does
	})
	if err == nil {
		err = werr
	}
	return b, err
}

// directWrites: write(2) on the socket's descriptor is available.
const directWrites = true
