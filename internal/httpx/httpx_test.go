package httpx

import (
	"net/http"
	"testing"
	"time"
)

func TestContentRangeStart(t *testing.T) {
	for h, want := range map[string]int64{"bytes 0-9/10": 0, "bytes 100-199/200": 100, "bytes 5-/*": 5} {
		if got, err := ContentRangeStart(h); err != nil || got != want {
			t.Errorf("ContentRangeStart(%q) = %d, %v; want %d", h, got, err, want)
		}
	}
	for _, h := range []string{"", "items 0-1/2", "bytes x-1/2", "bytes 5"} {
		if _, err := ContentRangeStart(h); err == nil {
			t.Errorf("ContentRangeStart(%q) accepted", h)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":     0,
		"3":    3 * time.Second,
		" 7":   7 * time.Second,
		"-1":   0,
		"soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	}
	for h, want := range tests {
		if got := ParseRetryAfter(h, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for h, want := range map[string]bool{
		"localhost": true, "localhost:5000": true, "127.0.0.1": true, "127.1.2.3:80": true,
		"[::1]:5000": true, "::1": true, "10.0.0.1:5000": false, "example.com": false, "192.168.1.1": false,
	} {
		if got := IsLoopback(h); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", h, got, want)
		}
	}
}
