package apply

// entryRecorder sees the layer stream in tar-split's terms while the
// applier reads it, so that recording tar-split metadata needs no second
// parse: every byte of the uncompressed stream reaches it exactly once and
// in order, either as a segment (headers, padding, the end-of-archive
// blocks and anything after them, verbatim) or as the payload of a file
// entry (its name, size and CRC-64/ISO, as tar-split's packer stores them).
type entryRecorder interface {
	// segment records bytes that are not file payload. b is only valid
	// during the call.
	segment(b []byte) error
	// file records that the payload of the entry whose header carried name
	// came next: size as in the header, crc the CRC-64 (ISO table) of the
	// payload bytes read, nil unless wantCRC.
	file(name string, size int64, crc []byte) error
	// wantCRC reports whether file needs crc, so that the applier computes
	// it only for a recorder that keeps it.
	wantCRC() bool
	// end is called once the whole stream was read and its digest matched.
	end() error
}

// nopRecorder records nothing.
type nopRecorder struct{}

func (nopRecorder) segment([]byte) error             { return nil }
func (nopRecorder) file(string, int64, []byte) error { return nil }
func (nopRecorder) wantCRC() bool                    { return false }
func (nopRecorder) end() error                       { return nil }
