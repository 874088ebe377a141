// Command pstest-server runs Google's in-memory Pub/Sub fake
// (cloud.google.com/go/pubsub/v2/pstest) as a standalone gRPC server for tests.
//
// It listens on -addr (default 127.0.0.1:0, i.e. a free loopback port), prints the
// bound host:port as one line on stdout once the listener is open, and serves until
// SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"cloud.google.com/go/pubsub/v2/pstest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback host:port to listen on (port 0 = pick a free port)")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pstest-server: bad -addr %q: %v\n", *addr, err)
		os.Exit(2)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fmt.Fprintf(os.Stderr, "pstest-server: refusing non-loopback -addr %q\n", *addr)
		os.Exit(2)
	}

	srv := newServer(*addr)
	// The listener is open (and gRPC serving) once NewServerWithAddress returns.
	fmt.Println(srv.Addr)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	_ = srv.Close()
}

// newServer wraps pstest's constructor, which panics when it cannot listen.
func newServer(addr string) (srv *pstest.Server) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "pstest-server: cannot listen on %s: %v\n", addr, r)
			os.Exit(1)
		}
	}()
	return pstest.NewServerWithAddress(addr)
}
