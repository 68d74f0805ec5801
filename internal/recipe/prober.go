package recipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// A Prober identifies, cheaply, which recipe wrote a compressed layer. The
// applier feeds it both streams as it reads them: the blob's bytes through
// Compressed, the decompressor's output through Uncompressed. It keeps only
// their first bytes (about 1 MiB of each) and does no work while they
// stream in; Result then tries the candidate recipes the stream's own
// fingerprints allow, best first, each compressing the kept uncompressed
// prefix beside the kept compressed one and dropped at its first differing
// byte, within a work limit.
//
// A Prober is safe for use by several goroutines. Its writers never fail,
// so teeing the layer into them cannot break an apply.
type Prober struct {
	o options

	mu        sync.Mutex
	comp, unc []byte // the kept prefixes
	compTotal int64  // bytes written to each side
	uncTotal  int64
	ended     bool
	done      bool
	res       Result
}

// Result is what a Prober found.
type Result struct {
	// Format is FormatGzip or FormatZstd, or "" when the stream is
	// neither.
	Format string `json:"format,omitempty"`
	// Candidates reproduced the compressed stream on every byte they
	// were compared on, best first. Empty: no pinned recipe does (Reason
	// says why). A candidate becomes confirmed only when its output for
	// the whole layer hashes to the blob's digest (Confirm), or when Whole
	// is set and the caller verified the blob's digest.
	Candidates []Recipe `json:"candidates,omitempty"`
	// Whole: both streams ended within the kept prefix and Candidates[0]
	// reproduced the compressed one to its last byte.
	Whole bool `json:"whole,omitempty"`
	// Compared is how many bytes of the compressed stream Candidates[0]
	// matched.
	Compared int64 `json:"compared,omitempty"`
	// Tried is how many candidates ran; Work how many uncompressed bytes
	// they compressed in all.
	Tried int   `json:"tried"`
	Work  int64 `json:"work"`
	// Reason says why Candidates is empty.
	Reason string `json:"reason,omitempty"`
}

// NewProber returns a Prober for one layer.
func NewProber(opts ...Option) (*Prober, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	return &Prober{o: o}, nil
}

type proberSide struct {
	p          *Prober
	compressed bool
}

func (s proberSide) Write(b []byte) (int, error) {
	s.p.write(s.compressed, b)
	return len(b), nil
}

// Compressed is where the applier copies the blob's bytes, as read.
func (p *Prober) Compressed() io.Writer { return proberSide{p, true} }

// Uncompressed is where the applier copies the decompressed stream.
func (p *Prober) Uncompressed() io.Writer { return proberSide{p, false} }

// compCap is how much of the compressed stream is kept: enough for the
// longest prefix any candidate compresses, even stored (level 0) or
// incompressible, plus headers.
func (p *Prober) compCap() int { return p.o.maxPrefix + p.o.maxPrefix/64 + 4096 }

func (p *Prober) write(compressed bool, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || p.ended {
		return
	}
	if compressed {
		p.compTotal += int64(len(b))
		p.comp = keep(p.comp, b, p.compCap())
		return
	}
	p.uncTotal += int64(len(b))
	p.unc = keep(p.unc, b, p.o.maxPrefix)
}

// keep appends to buf what of b fits below limit. The buffer starts at
// 64 KiB and then takes its full size at once: small layers stay cheap,
// large ones pay one allocation, not a doubling's copies.
func keep(buf, b []byte, limit int) []byte {
	n := min(len(b), limit-len(buf))
	if n <= 0 {
		return buf
	}
	if len(buf)+n > cap(buf) {
		size := limit
		if cap(buf) == 0 {
			size = min(limit, max(n, 64<<10))
		}
		buf = append(make([]byte, 0, size), buf...)
	}
	return append(buf, b[:n]...)
}

// Close tells the Prober that both streams were written to their end:
// the whole blob, and the decompressor's output up to its EOF. Without it
// a Prober never reports Whole.
func (p *Prober) Close() error {
	p.mu.Lock()
	p.ended = true
	p.mu.Unlock()
	return nil
}

// Result runs the identification on what was written so far, once; later
// calls return the same Result. Its error is ctx's when ctx ends first
// (a later call runs it again). Writers wait while it runs, so call it
// once both streams are done, e.g. in a goroutine of its own after the
// layer is applied. After it, the Prober ignores further writes and
// holds no buffers.
func (p *Prober) Result(ctx context.Context) (Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return p.res, nil
	}
	in := probeInput{
		comp: p.comp, unc: p.unc,
		compComplete: p.ended && int64(len(p.comp)) == p.compTotal,
		uncComplete:  p.ended && int64(len(p.unc)) == p.uncTotal,
	}
	res, err := identify(ctx, in, p.o)
	if err != nil {
		return Result{}, err
	}
	p.done, p.res, p.comp, p.unc = true, res, nil, nil
	return res, nil
}

type probeInput struct {
	comp, unc                 []byte
	compComplete, uncComplete bool // the slice holds the whole stream
}

// candidate is a recipe to try, with what tells it apart.
type candidate struct {
	r Recipe
	// family groups implementations that share an algorithm and so may
	// agree on a prefix and differ later: once one candidate reproduces
	// the prefix, the others of its family and level are tried too.
	family string
	// header is the length of the stream's header: a candidate must
	// reproduce at least one byte past it to count.
	header int
}

func identify(ctx context.Context, in probeInput, o options) (Result, error) {
	var res Result
	var cands []*candidate
	switch {
	case len(in.comp) == 0:
		res.Reason = "no compressed bytes were seen"
		return res, nil
	case bytes.HasPrefix(in.comp, []byte{0x1f, 0x8b}):
		res.Format = FormatGzip
		cands, res.Reason = gzipCandidates(in)
	case bytes.HasPrefix(in.comp, zstdMagic):
		res.Format = FormatZstd
		cands, res.Reason = zstdCandidates(in)
	default:
		res.Reason = "the stream is neither gzip nor zstd"
		return res, nil
	}
	var alive []*run
	// diedAt records, per implementation and level, the input offset
	// by which a candidate failed. pgzip with blocks of B bytes writes the
	// same bytes as one plain deflate stream for the first B bytes, so a
	// candidate that differs from another framing of its implementation
	// and level only after offset min(B1, B2) need not run when that one
	// failed before.
	diedAt := map[string][]died{}
	// The encoders of the candidates that reproduced the evidence go
	// back to the pool, for the next layer of the same recipe (both
	// releases at its level, though one may differ later); those of the
	// candidates ruled out by it are dropped (see EncoderPool).
	var matched []*run
	defer func() {
		for _, r := range matched {
			o.pool.put(&r.c.r, r.enc)
		}
	}()
	for _, c := range cands {
		if len(alive) > 0 && (c.family != alive[0].c.family || c.r.Level != alive[0].c.r.Level) {
			continue
		}
		key := fmt.Sprintf("%s %s %d", c.r.Encoder, c.r.Version, c.r.Level)
		if sameFate(diedAt[key], c.r.BlockSize) {
			continue
		}
		if res.Work >= o.work {
			if len(alive) == 0 {
				res.Reason = fmt.Sprintf("no candidate reproduced the stream within the work limit (%d candidates tried on %d bytes)", res.Tried, res.Work)
			}
			break
		}
		r := newRun(c, in, o)
		res.Tried++
		if err := r.probe(ctx, in, o, &res.Work); err != nil {
			return Result{}, err
		}
		if r.failed() {
			if r.differed {
				diedAt[key] = append(diedAt[key], died{blockSize: c.r.BlockSize, at: r.fed})
			}
			continue
		}
		alive = append(alive, r)
		matched = append(matched, r)
		if r.whole {
			break
		}
	}
	// Candidates that agree on the prefix may still differ later (two
	// releases of one encoder, two pgzip block sizes): run them on, side
	// by side, up to the maximum prefix, until one is left.
	if len(alive) > 1 && !alive[0].whole {
		target := min(o.maxPrefix, len(in.unc))
		for len(alive) > 1 {
			progressed := false
			var next []*run
			for _, r := range alive {
				if r.fed < target && !r.stopped() {
					progressed = true
					if err := r.feed(ctx, in, min(r.fed+chunk, target), &res.Work); err != nil {
						return Result{}, err
					}
					r.finish(in)
				}
				if !r.failed() {
					next = append(next, r)
				}
			}
			alive = next
			if !progressed {
				break
			}
		}
	}
	for _, r := range alive {
		res.Candidates = append(res.Candidates, r.c.r)
	}
	if len(alive) > 0 {
		res.Whole, res.Compared = alive[0].whole, int64(alive[0].m.pos)
	} else if res.Reason == "" {
		res.Reason = fmt.Sprintf("none of the %d candidate recipes reproduced the stream", res.Tried)
	}
	return res, nil
}

type died struct {
	blockSize int // 0: one deflate stream
	at        int
}

// sameFate reports whether a candidate with pgzip block size bs (0: none)
// would fail as one of those in ds did: its output is the same as theirs
// up to the smaller block size, and theirs differed before that offset.
func sameFate(ds []died, bs int) bool {
	limit := func(b int) int {
		if b == 0 {
			return int(^uint(0) >> 1)
		}
		return b
	}
	for _, d := range ds {
		if d.at < min(limit(d.blockSize), limit(bs)) {
			return true
		}
	}
	return false
}

// chunk is how much uncompressed input a candidate gets per write, which
// is also how often its evidence and the context are checked.
const chunk = 32 << 10

var (
	errDiffers = errors.New("output differs")
	errBeyond  = errors.New("output goes past the kept compressed bytes")
)

// matcher compares a candidate's output with the kept compressed stream.
type matcher struct {
	want     []byte
	complete bool // want is the whole stream
	pos      int
	err      error
}

func (m *matcher) Write(b []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	n := min(len(b), len(m.want)-m.pos)
	for i := 0; i < n; i++ {
		if b[i] != m.want[m.pos+i] {
			m.pos += i
			m.err = errDiffers
			return i, m.err
		}
	}
	m.pos += n
	if n < len(b) {
		m.err = errBeyond
		if m.complete {
			m.err = errDiffers
		}
		return n, m.err
	}
	return n, nil
}

// run is one candidate compressing the kept uncompressed prefix into a
// matcher.
type run struct {
	c        *candidate
	evidence int // compressed bytes past the header it must match
	prefix   int // how much input it can get
	m        *matcher
	enc      io.WriteCloser
	fed      int  // uncompressed bytes given to enc
	broken   bool // enc failed on its own: not this recipe
	differed bool // its output differs from the stream's
	closed   bool
	whole    bool // closed, and its output is the whole stream
}

func newRun(c *candidate, in probeInput, o options) *run {
	r := &run{c: c, evidence: o.evidence, prefix: min(o.maxPrefix, len(in.unc)), m: &matcher{want: in.comp, complete: in.compComplete}}
	var err error
	if r.enc, err = o.pool.get(r.m, &c.r); err != nil {
		r.broken = true
	}
	return r
}

// stopped: nothing more can be learnt by feeding it.
func (r *run) stopped() bool { return r.broken || r.m.err != nil || r.closed }

// failed: it is not the stream's recipe, or too little tells it is: it
// must reproduce the evidence, or all it could compare when it ran out of
// kept bytes first (a layer that compresses very well).
func (r *run) failed() bool {
	if r.whole {
		return false
	}
	ranOut := r.fed >= r.prefix || errors.Is(r.m.err, errBeyond)
	matched := r.m.pos - r.c.header
	return r.broken || r.differed || r.closed || matched <= 0 || matched < r.evidence && !ranOut
}

// feed gives r the input up to offset limit, a chunk at a time, while its
// output still matches, counting what it gives in work.
func (r *run) feed(ctx context.Context, in probeInput, limit int, work *int64) error {
	limit = min(limit, len(in.unc))
	for r.fed < limit && !r.stopped() {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(chunk, limit-r.fed)
		_, err := r.enc.Write(in.unc[r.fed : r.fed+n])
		r.fed += n
		*work += int64(n)
		r.note(err)
	}
	return nil
}

func (r *run) note(err error) {
	switch {
	case errors.Is(r.m.err, errDiffers):
		r.differed = true
	case err != nil && r.m.err == nil:
		r.broken = true
	}
}

// finish closes r when it was given the whole uncompressed stream, which
// decides whether it reproduces the whole compressed one.
func (r *run) finish(in probeInput) {
	if r.stopped() || r.fed != len(in.unc) || !in.uncComplete {
		return
	}
	err := r.enc.Close()
	r.closed = true
	r.note(err)
	r.whole = !r.broken && r.m.err == nil && in.compComplete && r.m.pos == len(in.comp)
}

// probe runs r until it has reproduced o.evidence bytes past the header,
// or differs, or has had o.maxPrefix bytes of input, within the work
// limit. A layer that ended within o.whole bytes is run to its end: the
// candidate then reproduces the whole blob, or not.
func (r *run) probe(ctx context.Context, in probeInput, o options, work *int64) error {
	toEnd := in.uncComplete && len(in.unc) <= o.whole
	limit := min(o.maxPrefix, len(in.unc))
	for r.fed < limit && !r.stopped() && *work < o.work {
		if !toEnd && r.m.pos-r.c.header >= o.evidence {
			break
		}
		if err := r.feed(ctx, in, r.fed+chunk, work); err != nil {
			return err
		}
	}
	r.finish(in)
	return nil
}

// pgzipZeroMTime is the MTIME pgzip writes for a zero ModTime: the zero
// time.Time's Unix seconds truncated to 32 bits. Go's own compress/gzip
// (and klauspost's) write 0 instead.
const pgzipZeroMTime = 0x886e0900

// pgzipBlockSizes are the block sizes real producers use: pgzip's
// default (containers/image: skopeo, podman, buildah) and umoci's.
var pgzipBlockSizes = []int{1 << 20, 256 << 10}

func gzipCandidates(in probeInput) ([]*candidate, string) {
	h, n, err := parseGzipHeader(in.comp)
	switch {
	case errors.Is(err, errShortHeader):
		return nil, "the stream ends inside its gzip header"
	case err != nil:
		return nil, err.Error()
	case h.OS != 255:
		// Every Go writer puts 255 there; zlib-based tools (GNU gzip,
		// pigz, zlib's gzopen) put their system, 3 on Unix.
		return nil, fmt.Sprintf("gzip header names OS %d: not written by a Go compressor (GNU gzip and pigz write 3), and no pinned recipe reproduces zlib", h.OS)
	}
	// Go and klauspost write XFL 4 at level 1, 2 at level 9, 0 otherwise.
	levelOK := func(l int) bool {
		switch h.XFL {
		case 4:
			return l == 1
		case 2:
			return l == 9
		case 0:
			return l != 1 && l != 9
		}
		return false
	}
	// pgzip leaves its zero-time MTIME and a sync flush (an empty stored
	// block: 00 00 ff ff once aligned) at the end of every block: try its
	// framings first when either shows. Go's flate ends every stream with
	// an empty stored block too, just before the 8-byte trailer.
	body := in.comp[n:]
	if in.compComplete {
		body = body[:max(0, len(body)-12)]
	}
	markers := bytes.Contains(body, []byte{0, 0, 0xff, 0xff})
	pgzipFirst := h.MTime == pgzipZeroMTime || markers
	// klauspost's framings: klauspost's compress/gzip writes MTIME 0 for a
	// zero time, as Go's does since 1.9, and pgzip its zero-time MTIME, so
	// those two values each rule the other framing out.
	var framings []int
	switch {
	case h.MTime == pgzipZeroMTime:
		framings = pgzipBlockSizes
	case markers:
		framings = append(append([]int{}, pgzipBlockSizes...), 0)
	case h.MTime == 0:
		framings = []int{0}
	default:
		framings = append([]int{0}, pgzipBlockSizes...)
	}
	var out []*candidate
	seen := map[string]bool{}
	add := func(versions []string, levels ...int) {
		for _, l := range levels {
			for _, v := range versions {
				if key := fmt.Sprint(v, l); !seen[key] && levelOK(l) {
					seen[key] = true
					d := findDeflaterVersion(v)
					for _, bs := range framings {
						if bs != 0 && d.encoder != EncoderKlauspostFlate {
							continue // pgzip is built on klauspost's flate
						}
						hc := *h
						out = append(out, &candidate{
							r:      Recipe{Format: FormatGzip, Encoder: d.encoder, Version: d.version, Level: l, BlockSize: bs, Gzip: &hc},
							family: deflateFamily(d, l),
							header: n,
						})
					}
				}
			}
		}
	}
	// The order is the likelihood of a producer over the cost of ruling
	// it out. Defaults first: Go's compress/gzip (6: the benchmark
	// generator) or pgzip's and klauspost's gzip (5: umoci,
	// containers/image) when the header says pgzip.
	g126, g127, kpm, kp15 := "go1.26.8", "go1.27.3", klauspostModuleVersion, "v1.15.12"
	all := []string{g126, g127, kpm, kp15}
	if len(body) > 0 && body[0]&6 == 0 {
		add(all, 0) // the first block is stored: level 0
	}
	if pgzipFirst {
		add([]string{kp15, kpm}, 5)
		add([]string{g126, g127}, 6)
	} else {
		add([]string{g126, g127}, 6)
		add([]string{kpm, kp15}, 5)
	}
	add(all, 1, 9) // the only levels XFL 4 and 2 allow: crane writes 1
	// The klauspost lineage writes a block per 64 KiB at levels up to 6,
	// so a wrong one fails fast; Go 1.26 writes one per 16384 tokens
	// (100 to 200 KiB of a tar), its levels 7 and 8 are slow, and
	// klauspost's 7 and 8 hold 300 KiB before their first block.
	kfam := []string{kpm, kp15, g127}
	add(kfam, 6, 5, 4, 3, 2)
	add(all, 0, -2) // a stored or Huffman-only block per 64 KiB
	add([]string{g126}, 5, 4, 7, 3, 2, 8)
	add(kfam, 7, 8)
	return out, ""
}

func findDeflaterVersion(version string) *deflater {
	for _, d := range deflaters {
		if d.version == version {
			return d
		}
	}
	panic("recipe: no deflater " + version)
}

// deflateFamily: Go 1.27's compress/flate is a port of klauspost's
// levels, so the two may agree for a while; Go 1.26's stands alone but
// for stored blocks.
func deflateFamily(d *deflater, level int) string {
	switch {
	case level == 0:
		// Stored blocks of 65535 bytes whoever writes them: they
		// differ only in how the stream ends.
		return "stored"
	case d.version == "go1.26.8":
		return "go1.26"
	}
	return "klauspost"
}

func zstdCandidates(in probeInput) ([]*candidate, string) {
	h, err := parseZstdFrameHeader(in.comp)
	switch {
	case errors.Is(err, errShortHeader):
		return nil, "the stream ends inside its zstd frame header"
	case err != nil:
		return nil, err.Error()
	case h.dictID != 0:
		return nil, fmt.Sprintf("the zstd frame needs dictionary %d", h.dictID)
	case h.hasSize && !h.singleSegment:
		// klauspost writes a content size only for input it encodes in
		// one go, as a single segment; the zstd tool writes one for
		// files.
		return nil, "the zstd frame header has a content size without being a single segment: not written by klauspost/compress (the zstd tool writes such frames)"
	}
	var out []*candidate
	for _, level := range zstdEncoders[0].levels {
		for _, v := range []string{klauspostModuleVersion, "v1.15.12"} {
			z := findZstdEncoder(EncoderKlauspostZstd, v)
			if !h.singleSegment && zstdDefaultWindow(v, level) != h.window {
				continue
			}
			out = append(out, &candidate{
				r:      Recipe{Format: FormatZstd, Encoder: z.encoder, Version: z.version, Level: level, Zstd: &ZstdParams{Checksum: h.checksum}},
				family: "klauspost-zstd",
				header: h.length,
			})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Sprintf("no pinned zstd encoder writes a %d-byte window at any level", h.window)
	}
	return out, ""
}
