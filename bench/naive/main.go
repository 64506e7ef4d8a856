// Command naive runs the benchmark's baseline server (see
// bench/internal/naive): a gorilla/websocket broadcast loop with one write
// per delivery. It prints "listening on ADDR" as its first line of output
// and serves until SIGINT or SIGTERM. With -cert and -key it serves TLS
// (wss://). GET /metrics gives go_goroutines and
// go_memstats_heap_inuse_bytes in Prometheus text and GET
// /debug/pprof/heap?gc=1 collects garbage, for the churn scenario.
//
//	naive -listen 127.0.0.1:0
//	naive -listen 127.0.0.1:0 -cert cert.pem -key key.pem
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/bench/internal/naive"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "TCP `address` to serve on (port 0 picks one)")
	cert := flag.String("cert", "", "TLS certificate `file` (PEM); with -key, serve TLS")
	key := flag.String("key", "", "TLS key `file` (PEM)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *cert, *key); err != nil {
		fmt.Fprintln(os.Stderr, "naive:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, certFile, keyFile string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			ln.Close()
			return err
		}
		// HTTP/1.1 only: a WebSocket upgrade needs it.
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	}
	srv := naive.New()
	mux := http.NewServeMux()
	mux.Handle("/", srv)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(w, "go_goroutines %d\ngo_memstats_heap_inuse_bytes %d\n", runtime.NumGoroutine(), ms.HeapInuse)
	})
	mux.Handle("GET /debug/pprof/heap", pprof.Handler("heap")) // ?gc=1 collects first
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening on %s\n", ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	srv.Close() // hijacked WebSocket conns first: Shutdown does not track them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
