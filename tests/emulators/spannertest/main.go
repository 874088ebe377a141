// Command spannertest-server runs Google's in-memory Spanner fake
// (cloud.google.com/go/spanner/spannertest) as a standalone gRPC server for tests.
//
// It listens on -addr (default 127.0.0.1:0, a free loopback port), prints the bound
// host:port as one line on stdout once listening, and serves until SIGINT or SIGTERM.
// spannertest serves one database per server, whatever name a client uses.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"cloud.google.com/go/spanner/spannertest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback host:port to listen on (port 0 = pick a free port)")
	quiet := flag.Bool("quiet", true, "drop spannertest's per-request log lines")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "spannertest-server: bad -addr %q: %v\n", *addr, err)
		os.Exit(2)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fmt.Fprintf(os.Stderr, "spannertest-server: refusing non-loopback -addr %q\n", *addr)
		os.Exit(2)
	}

	srv, err := spannertest.NewServer(*addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "spannertest-server: %v\n", err)
		os.Exit(1)
	}
	if *quiet {
		srv.SetLogger(func(string, ...interface{}) {})
	}
	fmt.Println(srv.Addr)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	srv.Close()
}
