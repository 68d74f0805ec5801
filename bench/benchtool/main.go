// Command benchtool is the Go half of bench/run.sh: it builds the
// benchmark images from real file trees into OCI image layouts, pushes
// them to a registry over plain HTTP, finds a free loopback port and turns
// the raw measurements into the Markdown table.
//
// It is a tool for the benchmark only; nothing in the module imports it.
//
//	benchtool images -image a|b|c|d [-small] [-tree DIR [-prefix PATH]] -out LAYOUT
//	benchtool push -layout LAYOUT -ref 127.0.0.1:PORT/REPO:TAG
//	benchtool freeport
//	benchtool report -raw RAW.tsv -image a=LAYOUT ... [-rebuild]
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "images":
		err = imagesCmd(os.Args[2:])
	case "push":
		err = pushCmd(os.Args[2:])
	case "freeport":
		err = freePort()
	case "report":
		err = reportCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchtool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  benchtool images -image a|b|c|d [-small] [-tree DIR [-prefix PATH]] -out LAYOUT
  benchtool push -layout LAYOUT -ref HOST:PORT/REPO:TAG
  benchtool freeport
  benchtool report -raw RAW.tsv -image NAME=LAYOUT ... [-rebuild]
`)
	os.Exit(2)
}

// freePort prints a loopback port that was free a moment ago; the caller
// binds it itself and retries with another on a race.
func freePort() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return nil
}
