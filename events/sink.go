package events

import (
	"context"
	"time"

	gojson "github.com/goccy/go-json"

	"github.com/refgate/refgate/attribution"
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

// line is the part of an encoded event the pipeline needs back when it
// reads its log: the record's id and subject, and a click's record for the
// store.
type line struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Subject string    `json:"subject"`
	Time    time.Time `json:"time"`
	Data    struct {
		Program   string     `json:"program"`
		Promoter  string     `json:"promoter"`
		Link      string     `json:"link"`
		ClickID   string     `json:"click_id"`
		Visitor   string     `json:"visitor"`
		Outcome   string     `json:"outcome"`
		Model     string     `json:"click_model"`
		ExpiresAt *time.Time `json:"expires_at"`
	} `json:"data"`
}

// decodeLine reads a record back from its encoded event, with the click
// record when it is a click's (Link is empty otherwise). rec.JSON is line.
func decodeLine(b []byte) (Record, attribution.Click, error) {
	var l line
	if err := gojson.Unmarshal(b, &l); err != nil {
		return Record{}, attribution.Click{}, err
	}
	rec := Record{ID: l.ID, Subject: l.Subject, JSON: b}
	if l.Type != TypeClick || l.Data.Link == "" {
		return rec, attribution.Click{}, nil
	}
	d := &l.Data
	c := attribution.Click{ID: d.ClickID, Program: d.Program, Promoter: d.Promoter, Link: d.Link,
		Visitor: d.Visitor, At: l.Time, Model: attribution.ClickModel(d.Model), Outcome: attribution.Outcome(d.Outcome)}
	if d.ExpiresAt != nil {
		c.ExpiresAt = *d.ExpiresAt
	}
	return rec, c, nil
}
