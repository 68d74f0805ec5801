package apply

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/vbatts/tar-split/tar/storage"
)

// appendEntry appends e as one line of JSON, the bytes json.Encoder
// writes for it (tar-split's own packer uses that encoder). Recording a
// layer writes two entries per tar entry; encoding/json's reflection was a
// tenth of the applier's time on a layer of small files.
func appendEntry(b []byte, e *storage.Entry) []byte {
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
