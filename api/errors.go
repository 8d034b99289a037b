package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// Error codes of the JSON error body {"error":{"code","message"}}. Each maps
// to exactly one HTTP status, here and nowhere else.
const (
	EMalformed        = "malformed"          // 400
	EUnauthorized     = "unauthorized"       // 401
	EForbidden        = "forbidden"          // 403
	ENotFound         = "not_found"          // 404
	EMethodNotAllowed = "method_not_allowed" // 405
	EConflict         = "conflict"           // 409
	ETooLarge         = "too_large"          // 413
	EInvalid          = "invalid"            // 422
	EUnavailable      = "unavailable"        // 503
	EInternal         = "internal"           // 500
)

var statusOf = map[string]int{
	EMalformed:        http.StatusBadRequest,
	EUnauthorized:     http.StatusUnauthorized,
	EForbidden:        http.StatusForbidden,
	ENotFound:         http.StatusNotFound,
	EMethodNotAllowed: http.StatusMethodNotAllowed,
	EConflict:         http.StatusConflict,
	ETooLarge:         http.StatusRequestEntityTooLarge,
	EInvalid:          http.StatusUnprocessableEntity,
	EUnavailable:      http.StatusServiceUnavailable,
	EInternal:         http.StatusInternalServerError,
}

// Error is an API error: a code from the list above and a message for
// people.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

func errorf(code, msg string) *Error { return &Error{Code: code, Message: msg} }

// toError turns any error into an API error. Domain errors keep their code;
// store.ErrNotFound is a 404, store.ErrExists a 409; anything else from a
// store means it could not answer: a 503, never a made-up answer.
func toError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var de *attribution.Error
	if errors.As(err, &de) {
		return &Error{Code: de.Code, Message: de.Message}
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errorf(ENotFound, "not found")
	case errors.Is(err, store.ErrExists):
		return errorf(EConflict, "already exists")
	case errors.As(err, &se):
		return errorf(EMalformed, "malformed JSON: "+se.Error())
	case errors.As(err, &te):
		return errorf(EInvalid, "field "+te.Field+": want a JSON "+te.Type.String()+", got "+te.Value)
	}
	return errorf(EUnavailable, "store unavailable: "+err.Error())
}
