//go:build !race

package apply

const raceDetector = false
