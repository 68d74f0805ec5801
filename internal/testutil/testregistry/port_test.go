package testregistry

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// TestRunReportsTakenPort checks the port race handling: a registry that
// cannot bind its port must say so (so that Start picks another), and must
// not take the answers of whoever holds the port for its own.
func TestRunReportsTakenPort(t *testing.T) {
	squatter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer squatter.Close()
	_, portStr, err := net.SplitHostPort(squatter.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatal(err)
	}

	r := Start(t)
	r.Stop()
	if err := r.writeConfig(port, "", ""); err != nil {
		t.Fatal(err)
	}
	r.Host = squatter.Listener.Addr().String()
	r.URL = squatter.URL
	err = r.run()
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("run on a taken port: %v, want errPortTaken\n%s", err, r.logTail())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		t.Fatal("the failed process is still recorded as running")
	}
}
