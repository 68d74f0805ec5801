// Package recipe rebuilds a layer's compressed blob, byte for byte, from
// its uncompressed tar: it identifies the compressor that wrote the blob
// (its recipe) and runs it again.
//
// A compressor is deterministic for one implementation, release and set
// of settings. A Recipe names all three (the implementation and release
// among those this package carries, frozen: see Implementations), and the
// bytes a producer added around the compressed data (the gzip header).
// Recipes are stored as JSON.
//
// Identification is cheap enough to run on every layer while it is
// applied. A Prober receives both streams the applier already reads (the
// blob and the decompressor's output) and keeps their first bytes; its
// Result narrows the candidates by the stream's own fingerprints (the
// gzip header's OS, XFL and MTIME bytes, pgzip's sync flushes, the zstd
// frame header's window and flags), then compresses the kept uncompressed
// prefix with each remaining candidate, best first, dropping each at its
// first byte that differs from the blob, within a work limit. A candidate
// that reproduces the prefix is only that: Confirm recompresses the whole
// layer and checks the blob's digest, and only then is the recipe
// confirmed (or when the whole layer fit in the prefix: Result.Whole).
// Recompress makes the blob again.
//
// What this package cannot rebuild, it says so: a layer from a compressor
// it does not carry (zlib's: GNU gzip, pigz; libzstd's: the zstd tool),
// from a release it does not pin, or with settings it does not know gets
// no candidate, with a reason. docs/reproducibility.md lists the
// producers found reproducible, and the cost of identification.
package recipe
