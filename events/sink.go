package events

import (
	"context"
	"encoding/json"
)

// Record is one encoded event on its way to a sink.
type Record struct {
	ID      string
	Subject string
	JSON    []byte // the event, without a trailing newline
}

// Sink is where events are delivered.
type Sink interface {
	// Write delivers recs. On error it returns the records that may not
	// have been delivered; a nil failed list with an error means all of
	// them. A record reported failed may have been written anyway (a timed
	// out write can land), which is why consumers dedupe on the id.
	Write(ctx context.Context, recs []Record) (failed []Record, err error)
	// Ping reports whether the sink answers.
	Ping(ctx context.Context) error
	// Name is how logs and /readyz name the sink.
	Name() string
	Close() error
}

// header is the part of an encoded event a sink or the spool needs back.
type header struct {
	ID      string `json:"id"`
	Subject string `json:"subject"`
}

// decodeRecord reads a record back from its encoded event.
func decodeRecord(line []byte) (Record, error) {
	var h header
	if err := json.Unmarshal(line, &h); err != nil {
		return Record{}, err
	}
	return Record{ID: h.ID, Subject: h.Subject, JSON: line}, nil
}
