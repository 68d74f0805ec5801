package apply

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/vbatts/tar-split/tar/storage"
)

// tsEntry is one line of the tar-split metadata: tar-split's own entry
// (which stock tar-split reads, ignoring the rest) and, for a file entry
// whose payload the tree holds, the payload's content digest and, when it
// differs from the entry's cleaned name, the path the applier wrote it to
// (at, or at_raw when not UTF-8).
type tsEntry struct {
	storage.Entry
	sum    sum
	hasSum bool
	at     string
}

func (e *tsEntry) setAt(at string) { e.at = at }

// tsEntryJSON is tsEntry as encoding/json sees it.
type tsEntryJSON struct {
	storage.Entry
	Digest string `json:"digest,omitempty"`
	At     string `json:"at,omitempty"`
	AtRaw  []byte `json:"at_raw,omitempty"`
}

func (e *tsEntry) json() tsEntryJSON {
	j := tsEntryJSON{Entry: e.Entry}
	if e.hasSum {
		j.Digest = e.sum.String()
	}
	if utf8.ValidString(e.at) {
		j.At = e.at
	} else {
		j.AtRaw = []byte(e.at)
	}
	return j
}

func (e *tsEntry) fromJSON(j *tsEntryJSON) bool {
	e.Entry = j.Entry
	e.sum, e.hasSum = sum{}, j.Digest != ""
	if e.hasSum {
		var ok bool
		if e.sum, ok = parseSum(j.Digest); !ok {
			return false
		}
	}
	e.at = j.At
	if j.AtRaw != nil {
		e.at = string(j.AtRaw)
	}
	return true
}

// appendEntry appends e as one line of JSON, the bytes json.Encoder
// writes for it (tar-split's own packer uses that encoder). Recording a
// layer writes two entries per tar entry; encoding/json's reflection was a
// tenth of the applier's time on a layer of small files.
func appendEntry(b []byte, e *tsEntry) []byte {
	b = append(b, `{"type":`...)
	b = strconv.AppendInt(b, int64(e.Type), 10)
	if e.Name != "" {
		b = append(b, `,"name":`...)
		b = appendJSONString(b, e.Name)
	}
	if len(e.NameRaw) > 0 {
		b = append(b, `,"name_raw":`...)
		b = appendBase64(b, e.NameRaw)
	}
	if e.Size != 0 {
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, e.Size, 10)
	}
	b = append(b, `,"payload":`...)
	if e.Payload == nil {
		b = append(b, "null"...)
	} else {
		b = appendBase64(b, e.Payload)
	}
	b = append(b, `,"position":`...)
	b = strconv.AppendInt(b, int64(e.Position), 10)
	if e.hasSum {
		b = append(b, `,"digest":"`...)
		b = hex.AppendEncode(b, e.sum[:])
		b = append(b, '"')
	}
	if e.at != "" {
		if utf8.ValidString(e.at) {
			b = append(b, `,"at":`...)
			b = appendJSONString(b, e.at)
		} else {
			b = append(b, `,"at_raw":`...)
			b = appendBase64(b, []byte(e.at))
		}
	}
	return append(b, "}\n"...)
}

func appendBase64(b, p []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

// appendJSONString quotes s as encoding/json does (HTML-safe escaping,
// invalid UTF-8 replaced), taking a short cut for the names almost every
// layer holds: printable ASCII with nothing to escape.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil { // cannot happen for a string
				panic(err)
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// entryReader reads the entries appendEntry wrote, one per line, without
// reflection. A line in any other shape (other key order, escapes in a
// name, spacing) is handed to encoding/json, so any JSON that tar-split's
// unpacker would take line by line is read the same.
type entryReader struct {
	r    *bufio.Reader
	line []byte
}

func newEntryReader(r io.Reader) *entryReader {
	return &entryReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next reads the next entry into e, reusing e.Payload's and e.NameRaw's
// storage; it returns io.EOF after the last.
func (er *entryReader) next(e *tsEntry) error {
	for {
		line, err := er.readLine()
		if len(bytes.TrimSpace(line)) == 0 {
			if err != nil {
				return err
			}
			continue
		}
		if err != nil && err != io.EOF {
			return err
		}
		if parseEntry(line, e) {
			return nil
		}
		var j tsEntryJSON
		if err := json.Unmarshal(line, &j); err != nil {
			return err
		}
		if !e.fromJSON(&j) {
			return fmt.Errorf("malformed digest in %q", line)
		}
		return nil
	}
}

// maxEntryLine bounds one line of a tar-split file. The longest line this
// program writes is a segment of at most pendingMax plus one copy buffer
// (under 2 MiB), in base64, beside a name and a path of at most 1 MiB each
// (archive/tar's limit on a PAX header), escaped: well under 16 MiB. The
// state directory is trusted, but a damaged or forged line must not be
// read whole: 1 GB of one byte, 30 KB of zstd, made rebuild hold 4.2 GB.
const maxEntryLine = 64 << 20

// readLine returns the next line without its newline; it is valid until
// the next call. A line longer than maxEntryLine is an error.
func (er *entryReader) readLine() ([]byte, error) {
	line, err := er.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		er.line = append(er.line[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = er.r.ReadSlice('\n')
			if len(er.line)+len(line) > maxEntryLine {
				return nil, fmt.Errorf("a line longer than %d bytes", maxEntryLine)
			}
			if cap(er.line)-len(er.line) < len(line) {
				// Double (append grows a large slice by a quarter,
				// allocating five times the line on the way), up to
				// the bound.
				er.line = slices.Grow(er.line, min(max(len(er.line), len(line)), maxEntryLine-len(er.line)))
			}
			er.line = append(er.line, line...)
		}
		line = er.line
	}
	return bytes.TrimSuffix(line, []byte("\n")), err
}

// parseEntry parses line in exactly the shape appendEntry writes and
// reports whether it could.
func parseEntry(line []byte, e *tsEntry) bool {
	p := entryParser{b: line}
	if !p.lit(`{"type":`) {
		return false
	}
	typ, ok := p.int()
	if !ok {
		return false
	}
	e.Type, e.Name, e.NameRaw, e.Size = storage.Type(typ), "", e.NameRaw[:0], 0
	if p.lit(`,"name":"`) {
		i := bytes.IndexByte(p.b, '"')
		if i < 0 {
			return false
		}
		name := p.b[:i]
		for _, c := range name {
			if c == '\\' || c < 0x20 {
				return false
			}
		}
		if !utf8.Valid(name) {
			return false
		}
		e.Name, p.b = string(name), p.b[i+1:]
	}
	if p.lit(`,"name_raw":"`) {
		if e.NameRaw, ok = p.base64(e.NameRaw[:0]); !ok {
			return false
		}
	}
	if len(e.NameRaw) == 0 {
		e.NameRaw = nil
	}
	if p.lit(`,"size":`) {
		if e.Size, ok = p.int(); !ok {
			return false
		}
	}
	switch {
	case p.lit(`,"payload":null`):
		e.Payload = nil
	case p.lit(`,"payload":"`):
		if e.Payload, ok = p.base64(e.Payload[:0]); !ok {
			return false
		}
	default:
		return false
	}
	if !p.lit(`,"position":`) {
		return false
	}
	pos, ok := p.int()
	if !ok {
		return false
	}
	e.Position = int(pos)
	e.sum, e.hasSum, e.at = sum{}, false, ""
	if p.lit(`,"digest":"`) {
		if len(p.b) < 2*digestSize+1 || p.b[2*digestSize] != '"' {
			return false
		}
		if _, err := hex.Decode(e.sum[:], p.b[:2*digestSize]); err != nil {
			return false
		}
		e.hasSum, p.b = true, p.b[2*digestSize+1:]
	}
	switch {
	case p.lit(`,"at":"`):
		i := bytes.IndexByte(p.b, '"')
		if i < 0 {
			return false
		}
		at := p.b[:i]
		for _, c := range at {
			if c == '\\' || c < 0x20 {
				return false
			}
		}
		if !utf8.Valid(at) {
			return false
		}
		e.at, p.b = string(at), p.b[i+1:]
	case p.lit(`,"at_raw":"`):
		raw, ok := p.base64(nil)
		if !ok {
			return false
		}
		e.at = string(raw)
	}
	return p.lit("}") && len(p.b) == 0
}

type entryParser struct{ b []byte }

func (p *entryParser) lit(s string) bool {
	if !bytes.HasPrefix(p.b, []byte(s)) {
		return false
	}
	p.b = p.b[len(s):]
	return true
}

// int parses a JSON integer that fits an int64 and, like encoding/json
// into an int, refuses fractions and exponents (they end the number here
// and then fail the next literal).
func (p *entryParser) int() (int64, bool) {
	i := 0
	if i < len(p.b) && p.b[i] == '-' {
		i++
	}
	start := i
	for i < len(p.b) && p.b[i] >= '0' && p.b[i] <= '9' {
		i++
	}
	if i == start || i-start > 1 && p.b[start] == '0' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(p.b[:i]), 10, 64)
	if err != nil {
		return 0, false
	}
	p.b = p.b[i:]
	return n, true
}

// base64 decodes up to the closing quote into dst.
func (p *entryParser) base64(dst []byte) ([]byte, bool) {
	i := bytes.IndexByte(p.b, '"')
	if i < 0 {
		return nil, false
	}
	out, err := base64.StdEncoding.AppendDecode(dst, p.b[:i])
	if err != nil {
		return nil, false
	}
	if out == nil {
		out = []byte{} // "" is an empty payload, not null
	}
	p.b = p.b[i+1:]
	return out, true
}

// appendTreeEntry appends e as one line of JSON, the bytes json.Encoder
// writes for it: the tree manifest has a line per path of the tree, and
// it is written while the unpack waits.
func appendTreeEntry(b []byte, e *treeEntry) []byte {
	b = append(b, '{')
	if e.Path != "" {
		b = append(b, `"path":`...)
		b = appendJSONString(b, e.Path)
		b = append(b, ',')
	}
	if len(e.PathRaw) > 0 {
		b = append(b, `"path_raw":`...)
		b = appendBase64(b, e.PathRaw)
		b = append(b, ',')
	}
	b = append(b, `"type":`...)
	b = appendJSONString(b, e.Type)
	b = append(b, `,"mode":`...)
	b = strconv.AppendUint(b, uint64(e.Mode), 10)
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(e.UID), 10)
	b = append(b, `,"gid":`...)
	b = strconv.AppendUint(b, uint64(e.GID), 10)
	if e.Size != 0 {
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, e.Size, 10)
	}
	if e.Digest != "" {
		b = append(b, `,"digest":`...)
		b = appendJSONString(b, e.Digest)
	}
	if e.Mtime != 0 {
		b = append(b, `,"mtime":`...)
		b = strconv.AppendInt(b, e.Mtime, 10)
	}
	if e.Target != "" {
		b = append(b, `,"target":`...)
		b = appendJSONString(b, e.Target)
	}
	if len(e.TargetRaw) > 0 {
		b = append(b, `,"target_raw":`...)
		b = appendBase64(b, e.TargetRaw)
	}
	if e.Rdev != 0 {
		b = append(b, `,"rdev":`...)
		b = strconv.AppendUint(b, e.Rdev, 10)
	}
	if e.Hardlink != "" {
		b = append(b, `,"hardlink":`...)
		b = appendJSONString(b, e.Hardlink)
	}
	if len(e.HardlinkRaw) > 0 {
		b = append(b, `,"hardlink_raw":`...)
		b = appendBase64(b, e.HardlinkRaw)
	}
	if len(e.Xattrs) > 0 {
		b = append(b, `,"xattrs":[`...)
		for i, x := range e.Xattrs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			if x.Name != "" {
				b = append(b, `"name":`...)
				b = appendJSONString(b, x.Name)
				b = append(b, ',')
			}
			if len(x.NameRaw) > 0 {
				b = append(b, `"name_raw":`...)
				b = appendBase64(b, x.NameRaw)
				b = append(b, ',')
			}
			b = append(b, `"value":`...)
			if x.Value == nil {
				b = append(b, "null"...)
			} else {
				b = appendBase64(b, x.Value)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}
