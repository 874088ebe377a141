// Command handy-spanner-server runs github.com/gcpug/handy-spanner (a Spanner fake
// on SQLite) as a standalone gRPC server for tests.
//
// It is the upstream cmd/handy-spanner minus startup DDL, plus what the test
// harness needs: it listens on -addr (default 127.0.0.1:0, a free loopback port),
// prints the bound host:port as one line on stdout once listening, and serves until
// SIGINT or SIGTERM. (Upstream's binary cannot report a port it picked itself, and
// `go install ...@version` is not possible here: see ../README.md.)
//
// Build with `-tags json1`: handy-spanner panics on ARRAY queries without it.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/gcpug/handy-spanner/fake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback host:port to listen on (port 0 = pick a free port)")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "handy-spanner-server: bad -addr %q: %v\n", *addr, err)
		os.Exit(2)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fmt.Fprintf(os.Stderr, "handy-spanner-server: refusing non-loopback -addr %q\n", *addr)
		os.Exit(2)
	}

	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "handy-spanner-server: %v\n", err)
		os.Exit(1)
	}
	srv, err := fake.New(lis)
	if err != nil {
		fmt.Fprintf(os.Stderr, "handy-spanner-server: %v\n", err)
		os.Exit(1)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Start() }()
	fmt.Println(srv.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
		srv.Stop()
	case err := <-errc:
		fmt.Fprintf(os.Stderr, "handy-spanner-server: %v\n", err)
		os.Exit(1)
	}
}
