package main

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// textQuote returns s as it is when it prints safely on a terminal, and
// Go-quoted (strconv.Quote) when it holds a character that is not
// printable (control bytes, escape sequences, format characters such as
// bidirectional overrides), invalid UTF-8, or a backslash (so that a
// quoted form can never be mistaken for a plain one). Names, labels,
// environment values and commands come from images: printed raw, a file
// named "x\nverify: rootfs is clean" forged a line of output, and ANSI
// sequences could erase lines. --json output needs no such care: JSON
// escapes them.
func textQuote(s string) string {
	if needsQuote(s) {
		return strconv.Quote(s)
	}
	return s
}

func needsQuote(s string) bool {
	if strings.IndexByte(s, '\\') >= 0 || !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if r != ' ' && !strconv.IsPrint(r) {
			return true
		}
	}
	return false
}

// textQuoteAll quotes each element and joins them with spaces, as a
// command line prints.
func textQuoteAll(ss []string) string {
	return strings.Join(quoteEach(ss), " ")
}

// quoteEach quotes each element of ss, for a list whose elements come
// from an image (the platforms of an index).
func quoteEach(ss []string) []string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = textQuote(s)
	}
	return q
}
