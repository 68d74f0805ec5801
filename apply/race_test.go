//go:build race

package apply

// raceDetector is set when the tests run with -race, which makes the
// million-file TestMemoryPerEntry take a quarter of an hour: .ci/run runs
// it on its own without the detector.
const raceDetector = true
