// Package loadtest is refgate's load generator: an open-model request
// scheduler (each request has an intended send time fixed in advance, and
// latency is measured from that time, so a stalled server is charged for
// the requests it kept waiting: no coordinated omission), HDR latency
// histograms overall and per second, the clicks and funnel scenarios with a
// verification of the attribution invariants after a funnel run, a ramp that
// finds the highest rate meeting an SLO, the minimal "ceiling" server used as
// a baseline, and the text, JSON and HTML reports.
//
// cmd/refgate-load wires it to flags; tests drive it directly.
package loadtest
