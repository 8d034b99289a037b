package attribution

import "fmt"

// Error is refgate's one error type: a code saying what kind of failure it
// is and a message for people. The domain, the service layer and the API
// all return it; the API maps each code to one HTTP status (api/errors.go)
// and writes it as the body {"error":{"code","message"}}.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes. Each means one HTTP status to the API; the comment says
// which.
const (
	EMalformed        = "malformed"          // the request does not parse: 400
	EUnauthorized     = "unauthorized"       // no or unknown credentials: 401
	EForbidden        = "forbidden"          // credentials that may not do this: 403
	ENotFound         = "not_found"          // 404
	EMethodNotAllowed = "method_not_allowed" // 405
	EConflict         = "conflict"           // 409
	ETooLarge         = "too_large"          // request body too large: 413
	EInvalid          = "invalid"            // valid syntax, bad values: 422
	ETooManyRequests  = "too_many_requests"  // slow down, see Retry-After: 429
	EInternal         = "internal"           // a bug: 500
	EUnavailable      = "unavailable"        // a store or sink cannot answer: 503
)

func (e *Error) Error() string { return e.Message }

// Errorf builds an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
