package loadtest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
)

// Fixture is what setup created, and what the scenarios click: one program,
// its promoters, and their links.
type Fixture struct {
	Program     string   `json:"program"`
	Destination string   `json:"destination"`
	Promoters   []string `json:"promoters"`
	Links       []Link   `json:"links"`
}

// clickPaths returns each link's click path, "/r/CODE" (a worker adds the
// Host), or an error when the fixture has no links.
func (fx *Fixture) clickPaths() ([][]byte, error) {
	if len(fx.Links) == 0 {
		return nil, fmt.Errorf("the fixture has no links")
	}
	paths := make([][]byte, len(fx.Links))
	for i, l := range fx.Links {
		paths[i] = []byte("/r/" + l.Code)
	}
	return paths, nil
}

// Link is one link of the fixture.
type Link struct {
	Code     string `json:"code"`
	Promoter string `json:"promoter"`
}

// SetupOptions say what setup creates.
type SetupOptions struct {
	Program          string // default "load"
	Promoters        int    // default 8
	LinksPerPromoter int    // default 16
	// Destination of every link; its host is the program's only allowed
	// host. Default https://shop.example.com/landing.
	Destination string
	// Prefix names the promoters (prefix-0, prefix-1, ...). Default
	// "load-" plus the program.
	Prefix string
}

func (o *SetupOptions) defaults() {
	if o.Program == "" {
		o.Program = "load"
	}
	if o.Promoters <= 0 {
		o.Promoters = 8
	}
	if o.LinksPerPromoter <= 0 {
		o.LinksPerPromoter = 16
	}
	if o.Destination == "" {
		o.Destination = "https://shop.example.com/landing"
	}
	if o.Prefix == "" {
		o.Prefix = o.Program + "-p"
	}
}

// Setup creates (or updates) the program and promoters and creates fresh
// links through the admin API. Links are listed so that link i belongs to
// promoter i mod Promoters: the most clicked links of a Zipf distribution
// belong to different promoters, which then compete for the same visitors.
func Setup(api *Target, adminToken string, o SetupOptions) (*Fixture, error) {
	o.defaults()
	u, err := url.Parse(o.Destination)
	if err != nil || u.Hostname() == "" {
		return nil, fmt.Errorf("bad destination %q", o.Destination)
	}
	prog := map[string]any{"cookie_days": 30, "allowed_hosts": []string{u.Hostname()},
		"rates": map[string]float64{"protected": 0.3, "standard": 0.25}}
	if err := callJSON(api, adminToken, "PUT", "/v1/admin/programs/"+o.Program, prog, nil); err != nil {
		return nil, err
	}
	f := &Fixture{Program: o.Program, Destination: o.Destination}
	for i := range o.Promoters {
		id := fmt.Sprintf("%s%d", o.Prefix, i)
		if err := callJSON(api, adminToken, "PUT", "/v1/admin/promoters/"+id, map[string]any{"status": "active", "tier": 0}, nil); err != nil {
			return nil, err
		}
		f.Promoters = append(f.Promoters, id)
	}
	for range o.LinksPerPromoter {
		for _, p := range f.Promoters {
			var l struct{ Code string }
			if err := callJSON(api, adminToken, "POST", "/v1/admin/links",
				map[string]any{"program": o.Program, "promoter": p, "destination": o.Destination}, &l); err != nil {
				return nil, err
			}
			f.Links = append(f.Links, Link{Code: l.Code, Promoter: p})
		}
	}
	return f, nil
}

// callJSON sends one JSON request with token, outside any measurement
// (setup and verification), and decodes a 2xx answer into out.
func callJSON(t *Target, token, method, path string, in, out any) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(t.Base + path)
	req.Header.Set("Authorization", "Bearer "+token)
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		req.Header.SetContentType("application/json")
		req.SetBody(b)
	}
	if err := t.Client.DoTimeout(req, resp, 10*time.Second); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if c := resp.StatusCode(); c/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, c, resp.Body())
	}
	if out != nil {
		if err := json.Unmarshal(resp.Body(), out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}
