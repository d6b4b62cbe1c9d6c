// A small Go service that leaks: each /leak request keeps 16 buffers of
// 4 KiB in a global slice. It prints its address, then serves pprof's
// handlers (/debug/pprof/heap) beside its own.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
)

var kept [][]byte

//go:noinline
func leakSessionBuffers(n int) {
	for i := 0; i < n; i++ {
		kept = append(kept, make([]byte, 4096))
	}
}

//go:noinline
func transientWork() int {
	b := make([]byte, 64<<10)
	return len(b)
}

func main() {
	// Sample every 64 KiB on average, so a short test sees the leak.
	runtime.MemProfileRate = 64 << 10
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	http.HandleFunc("/leak", func(w http.ResponseWriter, r *http.Request) {
		leakSessionBuffers(16)
		// The heap profile shows the heap as of the last collection.
		runtime.GC()
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, transientWork())
	})
	fmt.Printf("listening on http://%s\n", ln.Addr())
	os.Stdout.Sync()
	if err := http.Serve(ln, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
