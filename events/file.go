package events

import "github.com/refgate/refgate/internal/seglog"

// FileDir is the directory under the data dir that holds the JSON Lines
// event files of the embedded store: the pipeline's log itself
// (Config.Files), events-000001.jsonl, events-000002.jsonl, ..., one event
// per line.
const FileDir = "events"

// EventFile is one JSON Lines file of events.
type EventFile = seglog.Segment

// EventFiles lists dir's event files, oldest first.
func EventFiles(dir string) ([]EventFile, error) { return seglog.List(dir, "events-", ".jsonl") }
