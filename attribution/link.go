package attribution

import (
	"net/netip"
	"time"
)

// Link maps a short code to a program, a promoter and a destination. A
// deleted link keeps its code reserved: a code that once pointed at one
// promoter must never start crediting another.
type Link struct {
	Code        string    `json:"code"`
	Program     string    `json:"program"`
	Promoter    string    `json:"promoter"`
	Destination string    `json:"destination"`
	CreatedAt   time.Time `json:"created_at"`
	Deleted     bool      `json:"deleted,omitempty"`
	// Status is LinkActive (also when empty, as links written before it
	// existed are) or LinkPaused. A paused link, or one past ExpiresAt,
	// is inactive: the edge still redirects, to ExpiredURL when set, but
	// sets no cookie and counts the click OutcomeInactive.
	Status     LinkStatus `json:"status,omitempty"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	ExpiredURL string     `json:"expired_url,omitempty"`
}

// LinkStatus is a link's status, set by PATCH /v1/admin/links/{code}.
type LinkStatus string

const (
	LinkActive LinkStatus = "active"
	LinkPaused LinkStatus = "paused"
)

// Outcome is what became of one click at the edge. The set is fixed: it is a
// metric label.
type Outcome string

const (
	OutcomeAttributed  Outcome = "attributed"   // cookie set, click recorded for the visitor
	OutcomeBot         Outcome = "bot"          // crawler, link preview, HEAD or prefetch
	OutcomeSuspect     Outcome = "suspect"      // not a top-level navigation (img, iframe, fetch)
	OutcomeSelfClick   Outcome = "self_click"   // from the promoter's own fingerprinted IP
	OutcomeRateLimited Outcome = "rate_limited" // its client address was past --attribution-rate
	OutcomeGPC         Outcome = "gpc"          // Sec-GPC: 1 to a program that honours it
	OutcomeInactive    Outcome = "inactive"     // on a paused or expired link: redirected, no cookie
	OutcomeNotFound    Outcome = "not_found"    // unknown or deleted code
)

// RecordedOutcomes are the outcomes a click record can carry (a click on an
// unknown code has no link to record it against).
var RecordedOutcomes = []Outcome{OutcomeAttributed, OutcomeBot, OutcomeSuspect, OutcomeSelfClick,
	OutcomeRateLimited, OutcomeInactive, OutcomeGPC}

// FetchSite is a click request's Sec-Fetch-Site header, from a fixed set.
type FetchSite string

const (
	FetchSiteAbsent     FetchSite = ""            // no header: an older browser, or not a browser
	FetchSiteCrossSite  FetchSite = "cross-site"  // from another site: a link, a redirect, a script
	FetchSiteSameSite   FetchSite = "same-site"   // from another host of the same site
	FetchSiteSameOrigin FetchSite = "same-origin" // from the edge's own origin
	FetchSiteNone       FetchSite = "none"        // typed, bookmarked, opened from outside the browser
	FetchSiteOther      FetchSite = "other"       // a value the spec does not define
)

// Seen is what the edge saw of a click's request that its event carries
// and its record does not. The click log copies what it keeps.
type Seen struct {
	IP        netip.Addr
	UserAgent []byte
	Referer   []byte
	FetchSite FetchSite
	// UserActivation is Sec-Fetch-User: ?1: the browser says a user's
	// gesture (a tap, a click, a key) started the navigation.
	UserActivation bool
}

// Click is one click on a link, as the edge records it. For an attributed
// click it is also the visitor's record that bind finds by visitor id.
type Click struct {
	ID        string     `json:"id"`
	Program   string     `json:"program"`
	Promoter  string     `json:"promoter"`
	Link      string     `json:"link"`
	Visitor   string     `json:"visitor,omitempty"`
	At        time.Time  `json:"at"`
	ExpiresAt time.Time  `json:"expires_at"`
	Model     ClickModel `json:"model,omitempty"`
	Outcome   Outcome    `json:"outcome"`
}

// Replaces reports whether click c, under its program's click model, takes
// the place of the visitor's existing record: always for "last", and for
// "first" only once the existing record has expired at the time of c.
func (c *Click) Replaces(existing *Click) bool {
	if existing == nil || c.Model != FirstClick {
		return true
	}
	return !existing.ExpiresAt.After(c.At)
}
