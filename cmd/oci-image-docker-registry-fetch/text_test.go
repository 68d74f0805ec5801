package main

import "testing"

func TestTextQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"usr/bin/env":                "usr/bin/env",
		"with space":                 "with space",
		"日本語/é":                      "日本語/é",
		"x\nverify: rootfs is clean": `"x\nverify: rootfs is clean"`,
		"\x1b[2K\x1b[1Aerased":       `"\x1b[2K\x1b[1Aerased"`,
		"tab\there":                  `"tab\there"`,
		`back\slash`:                 `"back\\slash"`,
		"bad\xffutf8":                `"bad\xffutf8"`,
		"c1\u0085control":            `"c1\u0085control"`,
		"rtl\u202eoverride":          `"rtl\u202eoverride"`,
		"del\x7f":                    `"del\x7f"`,
		"":                           "",
	} {
		if got := textQuote(in); got != want {
			t.Errorf("textQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{
		"0": 0, "4096": 4096, "512K": 512 << 10, "64GiB": 64 << 30, "64gib": 64 << 30, "1T": 1 << 40, "10MB": 10 << 20, "7B": 7, "3 G": 3 << 30,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1X", "KB", "9999999999T", "1.5G", "GiB1"} {
		if n, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, n)
		}
	}
	if s := formatSize(64 << 30); s != "64GiB" {
		t.Errorf("formatSize = %s", s)
	}
}
