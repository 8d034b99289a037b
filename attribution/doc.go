// Package attribution is refgate's domain: programs (the policy a referral
// programme applies), promoters, links, clicks and the rules that decide who
// gets the credit for a customer.
//
// Everything here is pure: no I/O, no clock reads, no goroutines. Callers pass
// the current time in, so the same rules run against the real clock, a test
// clock, or a model in a property test. The package imports nothing else of
// refgate; stores, the edge and the API depend on it, never the other way.
package attribution
