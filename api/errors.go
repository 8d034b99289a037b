package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// statusOf maps every error code (attribution.E*) to its HTTP status, here
// and nowhere else. A code missing from it is a 500.
var statusOf = map[string]int{
	attribution.EMalformed:        http.StatusBadRequest,
	attribution.EUnauthorized:     http.StatusUnauthorized,
	attribution.EForbidden:        http.StatusForbidden,
	attribution.ENotFound:         http.StatusNotFound,
	attribution.EMethodNotAllowed: http.StatusMethodNotAllowed,
	attribution.EConflict:         http.StatusConflict,
	attribution.ETooLarge:         http.StatusRequestEntityTooLarge,
	attribution.EInvalid:          http.StatusUnprocessableEntity,
	attribution.ETooManyRequests:  http.StatusTooManyRequests,
	attribution.EUnavailable:      http.StatusServiceUnavailable,
	attribution.EInternal:         http.StatusInternalServerError,
}

// toError turns any error into an *attribution.Error. One of those keeps
// its code; store.ErrNotFound is a 404, store.ErrExists a 409; a JSON syntax
// error is malformed (400), a JSON value of the wrong type invalid (422);
// anything else from a store means it could not answer: a 503, never a
// made-up answer.
func toError(err error) *attribution.Error {
	var de *attribution.Error
	if errors.As(err, &de) {
		return de
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, store.ErrNotFound):
		return attribution.Errorf(attribution.ENotFound, "not found")
	case errors.Is(err, store.ErrExists):
		return attribution.Errorf(attribution.EConflict, "already exists")
	case errors.Is(err, store.ErrEntryConflict), errors.Is(err, store.ErrPaidConflict):
		return attribution.Errorf(attribution.EConflict, "%v", err)
	case errors.Is(err, store.ErrBadCursor):
		return attribution.Errorf(attribution.EMalformed, "bad cursor: pass the next_cursor of an earlier page, unchanged")
	case errors.As(err, &se):
		return attribution.Errorf(attribution.EMalformed, "malformed JSON: %v", se)
	case errors.As(err, &te):
		return attribution.Errorf(attribution.EInvalid, "field %s: want a JSON %v, got %s", te.Field, te.Type, te.Value)
	}
	return attribution.Errorf(attribution.EUnavailable, "store unavailable: %v", err)
}
