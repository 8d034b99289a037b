package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

func TestStatusOfEveryCode(t *testing.T) {
	f := func(code string, want int) {
		t.Helper()
		if got, ok := statusOf[code]; !ok || got != want {
			t.Errorf("statusOf[%q] = %d (listed %v), want %d", code, got, ok, want)
		}
	}
	f(attribution.EMalformed, 400)
	f(attribution.EUnauthorized, 401)
	f(attribution.EForbidden, 403)
	f(attribution.ENotFound, 404)
	f(attribution.EMethodNotAllowed, 405)
	f(attribution.EConflict, 409)
	f(attribution.ETooLarge, 413)
	f(attribution.EInvalid, 422)
	f(attribution.ETooManyRequests, 429)
	f(attribution.EInternal, 500)
	f(attribution.EUnavailable, 503)
	if len(statusOf) != 11 {
		t.Errorf("statusOf has %d codes, the test knows 11", len(statusOf))
	}
}

// decodeErr is what json.Unmarshal says about data.
func decodeErr(data string) error {
	var v struct{ N int }
	return json.Unmarshal([]byte(data), &v)
}

func TestToError(t *testing.T) {
	f := func(name string, err error, wantCode string, wantStatus int) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			t.Helper()
			e := toError(err)
			if e.Code != wantCode || statusOf[e.Code] != wantStatus {
				t.Errorf("toError(%v) = %q (%d), want %q (%d)", err, e.Code, statusOf[e.Code], wantCode, wantStatus)
			}
			if e.Message == "" {
				t.Errorf("toError(%v) has no message", err)
			}
		})
	}
	f("Invalid", attribution.Errorf(attribution.EInvalid, "bad"), attribution.EInvalid, 422)
	f("WrappedConflict", fmt.Errorf("cannot convert: %w", attribution.Errorf(attribution.EConflict, "taken")), attribution.EConflict, 409)
	f("UnknownCode", attribution.Errorf("nonsense", "?"), "nonsense", 0)
	f("ErrNotFound", store.ErrNotFound, attribution.ENotFound, 404)
	f("WrappedErrNotFound", fmt.Errorf("cannot load program p: %w", store.ErrNotFound), attribution.ENotFound, 404)
	f("ErrExists", store.ErrExists, attribution.EConflict, 409)
	f("ErrClosed", store.ErrClosed, attribution.EUnavailable, 503)
	f("ErrConflict", store.ErrConflict, attribution.EUnavailable, 503)
	f("DriverError", errors.New("dial tcp: connection refused"), attribution.EUnavailable, 503)
	f("JSONSyntax", decodeErr(`{"N":}`), attribution.EMalformed, 400)
	f("JSONType", decodeErr(`{"N":"one"}`), attribution.EInvalid, 422)
}

func TestToErrorKeepsDomainError(t *testing.T) {
	de := attribution.Errorf(attribution.EInvalid, "tier must be between 0 and 100, got %d", 101)
	if got := toError(fmt.Errorf("put promoter: %w", de)); got != de {
		t.Errorf("toError = %+v, want the domain error itself", got)
	}
}

func TestFailBody(t *testing.T) {
	f := func(name string, err error, wantStatus int, wantCode, wantMessage string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			t.Helper()
			var ctx fasthttp.RequestCtx
			New(Config{}).fail(&ctx, err)
			if got := ctx.Response.StatusCode(); got != wantStatus {
				t.Errorf("status %d, want %d", got, wantStatus)
			}
			var body struct {
				Error *struct {
					Code    *string `json:"code"`
					Message *string `json:"message"`
				} `json:"error"`
			}
			dec := json.NewDecoder(bytes.NewReader(ctx.Response.Body()))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil || body.Error == nil || body.Error.Code == nil || body.Error.Message == nil {
				t.Fatalf("body %s (%v), want {\"error\":{\"code\",\"message\"}}", ctx.Response.Body(), err)
			}
			if *body.Error.Code != wantCode || *body.Error.Message != wantMessage {
				t.Errorf("error %q %q, want %q %q", *body.Error.Code, *body.Error.Message, wantCode, wantMessage)
			}
		})
	}
	f("Invalid", attribution.Errorf(attribution.EInvalid, "unknown program %s", "p"), 422, "invalid", "unknown program p")
	f("NotFound", store.ErrNotFound, 404, "not_found", "not found")
	f("Unavailable", errors.New("i/o timeout"), 503, "unavailable", "store unavailable: i/o timeout")
	f("UnknownCode", attribution.Errorf("nonsense", "?"), 500, "nonsense", "?")
}

func TestDecodeErrors(t *testing.T) {
	f := func(name, body, wantCode string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			t.Helper()
			var ctx fasthttp.RequestCtx
			ctx.Request.SetBody([]byte(body))
			var v struct {
				N int    `json:"n"`
				S string `json:"s"`
			}
			err := decode(&ctx, &v)
			if got := toError(err).Code; err == nil || got != wantCode {
				t.Errorf("decode(%s) = %v (%q), want %q", body, err, got, wantCode)
			}
		})
	}
	f("Empty", "  ", attribution.EMalformed)
	f("Syntax", `{"n":}`, attribution.EMalformed)
	f("Truncated", `{"n":1`, attribution.EMalformed)
	f("Trailing", `{"n":1} {}`, attribution.EMalformed)
	f("UnknownField", `{"n":1,"m":2}`, attribution.EMalformed)
	f("WrongType", `{"n":"one"}`, attribution.EInvalid)
	f("WrongTypeString", `{"s":1}`, attribution.EInvalid)
}
