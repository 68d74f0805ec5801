package apply

import (
	"github.com/ocifetch/ocifetch/internal/recipe"
	"github.com/ocifetch/ocifetch/mediatype"
)

// LayerRecipe is what the state records of how a compressed layer's blob
// was made from its tar (see package internal/recipe and
// docs/reproducibility.md): the recipes that reproduced the blob's first
// bytes while it was applied, best first, and whether the first one was
// confirmed on the whole blob against its digest. Uncompressed layers
// have none: their blob is the tar.
type LayerRecipe struct {
	// Candidates reproduced the start of the blob, best first; empty when
	// no pinned compressor did (Reason says why).
	Candidates []recipe.Recipe `json:"candidates,omitempty"`
	// Confirmed: Candidates[0] (then the only one) made the whole blob,
	// its digest checked, either because the whole layer fit in what the
	// probe compared while the blob's digest was verified, or because
	// Confirm recompressed the layer from the tree (gc --unpacked).
	Confirmed bool `json:"confirmed,omitempty"`
	// Reason says why there is no candidate.
	Reason string `json:"reason,omitempty"`
}

// Reproducible tells whether the blob of l can be made again from the
// tree, and how surely: "tar" (an uncompressed layer: the blob is the
// tar), "confirmed" (a recipe made the whole blob once, its digest
// checked), "candidate" (recipes reproduced its start; a rebuild still
// checks the digest) or "" (no recipe: the blob cannot be made again).
func (l StateLayer) Reproducible() string {
	if ml, ok := mediatype.LayerOf(l.MediaType); ok && ml.Compression == mediatype.Uncompressed {
		return "tar"
	}
	switch {
	case l.Recipe == nil || len(l.Recipe.Candidates) == 0 || l.Digest == "":
		return ""
	case l.Recipe.Confirmed:
		return "confirmed"
	}
	return "candidate"
}

// layerProbe identifies one layer's recipe while it is applied: the
// prober sees the blob through the compressed tap and the tar through
// the uncompressed one, and is asked for its result once the layer was
// verified, in a goroutine of its own, while the next layer applies.
type layerProbe struct {
	i      int
	p      *recipe.Prober // nil for an uncompressed layer
	n      int64          // bytes of the blob, counted by the tap
	result chan *LayerRecipe
}

// Write is the compressed tap: it counts the blob and feeds the prober.
// Only the decompressor's goroutine writes to it.
func (lp *layerProbe) Write(b []byte) (int, error) {
	lp.n += int64(len(b))
	if lp.p != nil {
		lp.p.Compressed().Write(b)
	}
	return len(b), nil
}

// startProbe begins identifying layer i's recipe (a compressed layer with
// a digest to check against) and returns the taps that feed it. The
// result of the layer before is collected first: at most two probes hold
// their buffers at a time however many layers an image has.
func (s *stateRec) startProbe(i int) layerTaps {
	s.joinProbe()
	lp := &layerProbe{i: i}
	s.probe = lp
	l := s.state.Layers[i]
	if ml, ok := mediatype.LayerOf(l.MediaType); ok && ml.Compression != mediatype.Uncompressed && l.Digest != "" && !s.noRecipes {
		if p, err := recipe.NewProber(s.probeOpts...); err == nil {
			lp.p = p
			return layerTaps{compressed: lp, uncompressed: p.Uncompressed()}
		}
	}
	return layerTaps{compressed: lp}
}

// endProbe is called once layer's blob and tar were verified (digest,
// size, diffID): the prober learns that both streams ended, and its
// result is worked out in the background.
func (s *stateRec) endProbe() {
	lp := s.probe
	if lp == nil {
		return
	}
	if s.state.Layers[lp.i].Size == 0 {
		s.state.Layers[lp.i].Size = lp.n
	}
	if lp.p == nil {
		s.probe = nil
		return
	}
	lp.p.Close()
	lp.result = make(chan *LayerRecipe, 1)
	ctx := s.ctx
	go func() {
		res, err := lp.p.Result(ctx)
		if err != nil {
			// The apply was cancelled: it fails, nothing is recorded.
			lp.result <- nil
			return
		}
		lr := &LayerRecipe{Candidates: res.Candidates, Reason: res.Reason}
		if res.Whole && len(res.Candidates) > 0 {
			// The whole blob was reproduced, and its digest verified
			// (endProbe runs only after): that is a confirmation.
			lr.Candidates, lr.Confirmed = res.Candidates[:1], true
		}
		lp.result <- lr
	}()
}

// dropProbe forgets the probe of a layer that failed.
func (s *stateRec) dropProbe() {
	if s.probe != nil && s.probe.result == nil {
		s.probe = nil
	}
}

// joinProbe waits for the result of the last layer probed and records
// it in the state.
func (s *stateRec) joinProbe() {
	lp := s.probe
	s.probe = nil
	if lp == nil || lp.result == nil {
		return
	}
	if r := <-lp.result; r != nil {
		s.state.Layers[lp.i].Recipe = r
	}
}
