package api

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

// TestOpenAPIRoutes: every documented route exists and every route is
// documented.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadSpec(t)
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	served := map[string]bool{}
	for _, r := range routes {
		served[r.method+" "+r.pattern] = true
	}
	var missing, extra []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("routes not documented: %v\ndocumented routes not served: %v", missing, extra)
	}
}

// TestOpenAPIOperations: every operation has an operationId, unique and
// camelCase (generated clients name their methods after it), and no path
// ends with "/" (redocly lint's no-path-trailing-slash; the server answers
// /debug/pprof/ as /debug/pprof). make lint-api runs the whole lint.
func TestOpenAPIOperations(t *testing.T) {
	doc := loadSpec(t)
	camel := regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)
	seen := map[string]string{}
	for path, item := range doc.Paths.Map() {
		if path != "/" && strings.HasSuffix(path, "/") {
			t.Errorf("path %s ends with a slash", path)
		}
		for method, op := range item.Operations() {
			where := method + " " + path
			id := op.OperationID
			switch {
			case id == "":
				t.Errorf("%s has no operationId", where)
			case !camel.MatchString(id):
				t.Errorf("%s: operationId %q is not camelCase", where, id)
			case seen[id] != "":
				t.Errorf("operationId %q names both %s and %s", id, seen[id], where)
			default:
				seen[id] = where
			}
		}
	}
}

// TestOpenAPIExamples validates every example against its schema, sends the
// request examples to the real API in a working order, and validates the
// real responses against the documented ones.
func TestOpenAPIExamples(t *testing.T) {
	doc := loadSpec(t)
	visit := func(where string, s *openapi3.SchemaRef, v any) {
		t.Helper()
		if s == nil || s.Value == nil {
			return
		}
		if err := s.Value.VisitJSON(v); err != nil {
			t.Errorf("%s does not match its schema: %v", where, err)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.RequestBody != nil {
				if mt := op.RequestBody.Value.Content.Get("application/json"); mt != nil && mt.Example != nil {
					visit(method+" "+path+" request example", mt.Schema, mt.Example)
				}
			}
			for code, resp := range op.Responses.Map() {
				if mt := resp.Value.Content.Get("application/json"); mt != nil && mt.Example != nil {
					visit(fmt.Sprint(method, " ", path, " ", code, " response example"), mt.Schema, mt.Example)
				}
			}
		}
	}

	e := newEnv(t, true)
	calls := []struct{ method, path, specPath string }{
		{"PUT", "/v1/admin/programs/tencent", "/v1/admin/programs/{id}"},
		{"GET", "/v1/admin/programs/tencent", "/v1/admin/programs/{id}"},
		{"PUT", "/v1/admin/promoters/alice", "/v1/admin/promoters/{id}"},
		{"GET", "/v1/admin/promoters/alice", "/v1/admin/promoters/{id}"},
		{"POST", "/v1/admin/links", "/v1/admin/links"},
		{"GET", "/v1/admin/links/alice-cvm", "/v1/admin/links/{code}"},
		{"GET", "/v1/admin/programs", "/v1/admin/programs"},
		{"GET", "/v1/admin/promoters", "/v1/admin/promoters"},
		{"GET", "/v1/admin/links?program=tencent&promoter=alice", "/v1/admin/links"},
		{"PUT", "/v1/customers/cust-1001", "/v1/customers/{id}"},
		{"POST", "/v1/bind", "/v1/bind"},
		{"GET", "/v1/attribution?program=tencent&customer=cust-1001", "/v1/attribution"},
		{"POST", "/v1/conversions", "/v1/conversions"},
		{"POST", "/v1/conversions/ord-1/refunds", "/v1/conversions/{order}/refunds"},
		{"GET", "/v1/attribution/explain?program=tencent&customer=cust-1001", "/v1/attribution/explain"},
		{"DELETE", "/v1/customers/cust-1001", "/v1/customers/{id}"},
		{"POST", "/v1/admin/test-clock", "/v1/admin/test-clock"},
		{"GET", "/livez", "/livez"},
		{"GET", "/readyz", "/readyz"},
		{"PATCH", "/v1/admin/links/alice-cvm", "/v1/admin/links/{code}"},
		{"DELETE", "/v1/admin/links/alice-cvm", "/v1/admin/links/{code}"},
	}
	for _, c := range calls {
		op := doc.Paths.Find(c.specPath).GetOperation(c.method)
		if op == nil {
			t.Fatalf("%s %s is not documented", c.method, c.specPath)
		}
		body := ""
		if op.RequestBody != nil {
			b, err := json.Marshal(op.RequestBody.Value.Content.Get("application/json").Example)
			if err != nil {
				t.Fatal(err)
			}
			body = string(b)
		}
		r := e.call(c.method, c.path, adminTok, body)
		if r.status >= 300 {
			t.Errorf("%s %s with the documented example: %d %s", c.method, c.path, r.status, r.raw)
			continue
		}
		resp := op.Responses.Status(r.status)
		if resp == nil {
			t.Errorf("%s %s answered %d, which is not documented", c.method, c.path, r.status)
			continue
		}
		if mt := resp.Value.Content.Get("application/json"); mt != nil && strings.TrimSpace(r.raw) != "" {
			var v any
			json.Unmarshal([]byte(r.raw), &v)
			visit(fmt.Sprint(c.method, " ", c.path, " live ", r.status, " response"), mt.Schema, v)
		}
	}
}
