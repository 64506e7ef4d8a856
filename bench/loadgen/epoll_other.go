//go:build !linux

package main

import "errors"

type epollReaders struct{}

func startEpollReaders(*load) (*epollReaders, error) {
	return nil, errors.New("-readers epoll needs Linux")
}

func (*epollReaders) stop() {}

func (*epollReaders) add(s *subscriber, _ *teeConn, _ []byte) {
	s.l.endSubscriber(s, errors.New("-readers epoll needs Linux"))
}
