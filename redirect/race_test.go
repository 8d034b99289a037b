//go:build race

package redirect

// raceEnabled lets slow exhaustive checks sample under the race detector,
// which makes regexp matching some twenty times slower.
const raceEnabled = true
