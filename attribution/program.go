package attribution

import (
	"strings"
	"time"

	"golang.org/x/net/idna"
)

// ClickModel says which of several clicks on one visitor's browser counts.
type ClickModel string

const (
	LastClick  ClickModel = "last"  // a new click replaces the cookie (the default)
	FirstClick ClickModel = "first" // an unexpired valid cookie of the program is kept
)

// Purchase scopes: what "first purchase" is counted against.
const (
	ScopeAccount = "account" // the customer's first paid order, whatever the product
	ScopeProduct = "product" // the customer's first paid order of each product
)

// Rates are the base commission rates by how the customer was associated.
type Rates struct {
	Protected Rate `json:"protected"`
	Standard  Rate `json:"standard"`
}

// Program is a referral programme's policy. Its JSON form is part of the
// HTTP contract.
type Program struct {
	ID                 string     `json:"id"`
	CookieDays         int        `json:"cookie_days"`
	ClickModel         ClickModel `json:"click_model"`
	ProtectDays        int        `json:"protect_days"`
	AssociateDays      int        `json:"associate_days"`
	AssociatePaid      bool       `json:"associate_paid"`
	FirstPurchaseScope string     `json:"first_purchase_scope"`
	RequirePrepaid     bool       `json:"require_prepaid"`
	Products           []string   `json:"products"`
	AllowedHosts       []string   `json:"allowed_hosts"`
	Rates              Rates      `json:"rates"`
	TierBonus          []Rate     `json:"tier_bonus"`
	CustomerCap        int64      `json:"customer_cap"`
	AppendToken        bool       `json:"append_token"`
	// BindsPerClick is how many distinct customers one click may bind: a
	// token is a bearer credential, and one shared in a chat must not
	// credit its promoter with everyone who reads it.
	BindsPerClick int `json:"binds_per_click"`
	// RequireUserActivation refuses attribution to cross-site navigations
	// that no user gesture started (a meta refresh, a script setting
	// location, an auto-submitted form, a pop-under): the tools of cookie
	// stuffing. Absent means true; see UserActivationRequired.
	RequireUserActivation *bool `json:"require_user_activation"`
	// HonorGPC treats a click with Sec-GPC: 1 like a bot's: no cookie.
	HonorGPC bool `json:"honor_gpc"`
	// HoldDays is how long a ledger entry stays pending before a
	// statement may settle it: the refund window. Absent means
	// DefaultHoldDays; 0 settles at once.
	HoldDays *int `json:"hold_days"`
	// MinPayout is the least a promoter's statement pays, in minor units:
	// below it the entries roll into the next settlement run.
	MinPayout int64 `json:"min_payout"`
}

// DefaultHoldDays is the hold of a program that names none: a 30-day
// refund window, as the seed programmes have.
const DefaultHoldDays = 30

// MaxHoldDays bounds hold_days.
const MaxHoldDays = 365

// Hold is how long the program's ledger entries are held.
func (p *Program) Hold() time.Duration {
	d := DefaultHoldDays
	if p.HoldDays != nil {
		d = *p.HoldDays
	}
	return time.Duration(d) * 24 * time.Hour
}

// UserActivationRequired is RequireUserActivation with its default, true.
func (p *Program) UserActivationRequired() bool {
	return p.RequireUserActivation == nil || *p.RequireUserActivation
}

// Defaults for fields a program may leave out.
const (
	DefaultProtectDays   = 30
	DefaultAssociateDays = 30
	DefaultBindsPerClick = 1
	MaxBindsPerClick     = 1000
)

// Normalize fills in defaults and canonical forms: click_model "last",
// first_purchase_scope "account", 30-day protection and association windows,
// allowed hosts lower-cased and in IDNA ASCII form, empty lists as [] rather
// than null. Call Validate afterwards.
func (p *Program) Normalize() {
	if p.ClickModel == "" {
		p.ClickModel = LastClick
	}
	if p.FirstPurchaseScope == "" {
		p.FirstPurchaseScope = ScopeAccount
	}
	if p.ProtectDays == 0 {
		p.ProtectDays = DefaultProtectDays
	}
	if p.AssociateDays == 0 {
		p.AssociateDays = DefaultAssociateDays
	}
	if p.BindsPerClick == 0 {
		p.BindsPerClick = DefaultBindsPerClick
	}
	if p.RequireUserActivation == nil {
		v := true
		p.RequireUserActivation = &v
	}
	if p.HoldDays == nil {
		v := DefaultHoldDays
		p.HoldDays = &v
	}
	if p.Products == nil {
		p.Products = []string{}
	}
	if p.TierBonus == nil {
		p.TierBonus = []Rate{}
	}
	for i, h := range p.AllowedHosts {
		suffix := strings.HasPrefix(h, ".")
		a, err := asciiHost(strings.TrimPrefix(h, "."))
		if err != nil {
			continue // Validate reports it
		}
		if suffix {
			a = "." + a
		}
		p.AllowedHosts[i] = a
	}
}

// Validate reports the first bad value as an *Error with code EInvalid.
func (p *Program) Validate() error {
	switch {
	case !ValidProgramID(p.ID):
		return Errorf(EInvalid, "program id %q must be 1 to 64 characters of A-Z a-z 0-9 _ -", p.ID)
	case p.CookieDays < 1 || p.CookieDays > 365:
		return Errorf(EInvalid, "cookie_days must be between 1 and 365, got %d", p.CookieDays)
	case p.ClickModel != LastClick && p.ClickModel != FirstClick:
		return Errorf(EInvalid, "click_model must be %q or %q, got %q", LastClick, FirstClick, p.ClickModel)
	case p.ProtectDays < 1 || p.ProtectDays > 365:
		return Errorf(EInvalid, "protect_days must be between 1 and 365, got %d", p.ProtectDays)
	case p.AssociateDays < 1 || p.AssociateDays > 365:
		return Errorf(EInvalid, "associate_days must be between 1 and 365, got %d", p.AssociateDays)
	case p.FirstPurchaseScope != ScopeAccount && p.FirstPurchaseScope != ScopeProduct:
		return Errorf(EInvalid, "first_purchase_scope must be %q or %q, got %q", ScopeAccount, ScopeProduct, p.FirstPurchaseScope)
	case len(p.AllowedHosts) == 0:
		return Errorf(EInvalid, "allowed_hosts must list at least one host")
	case p.CustomerCap < 0 || p.CustomerCap > MaxAmount:
		return Errorf(EInvalid, "customer_cap must be between 0 and %d", MaxAmount)
	case p.BindsPerClick < 1 || p.BindsPerClick > MaxBindsPerClick:
		return Errorf(EInvalid, "binds_per_click must be between 1 and %d, got %d", MaxBindsPerClick, p.BindsPerClick)
	case p.HoldDays != nil && (*p.HoldDays < 0 || *p.HoldDays > MaxHoldDays):
		return Errorf(EInvalid, "hold_days must be between 0 and %d, got %d", MaxHoldDays, *p.HoldDays)
	case p.MinPayout < 0 || p.MinPayout > MaxAmount:
		return Errorf(EInvalid, "min_payout must be between 0 and %d minor units", MaxAmount)
	}
	for _, h := range p.AllowedHosts {
		if _, err := asciiHost(strings.TrimPrefix(h, ".")); err != nil || h == "." {
			return Errorf(EInvalid, "allowed_hosts entry %q is not a host name", h)
		}
	}
	for _, r := range []Rate{p.Rates.Protected, p.Rates.Standard} {
		if r < 0 || r > RateScale {
			return Errorf(EInvalid, "rates must be between 0 and 1, got %s", r)
		}
	}
	for _, r := range p.TierBonus {
		if r < 0 || r > RateScale {
			return Errorf(EInvalid, "tier_bonus entries must be between 0 and 1, got %s", r)
		}
	}
	for _, pr := range p.Products {
		if pr == "" || len(pr) > maxIDLen {
			return Errorf(EInvalid, "products entries must be 1 to %d characters", maxIDLen)
		}
	}
	return nil
}

// CookieTTL is how long a click on this program's links stays attributable.
func (p *Program) CookieTTL() time.Duration {
	return time.Duration(p.CookieDays) * 24 * time.Hour
}

// AllowsHost reports whether host (lower-case ASCII, as ParseDestination
// returns it) is allowed: equal to an entry, or, for an entry ".suffix",
// equal to the suffix or ending in it at a label boundary.
func (p *Program) AllowsHost(host string) bool {
	for _, h := range p.AllowedHosts {
		if h == host {
			return true
		}
		if len(h) > 1 && h[0] == '.' {
			if host == h[1:] || strings.HasSuffix(host, h) {
				return true
			}
		}
	}
	return false
}

// asciiHost lower-cases a host name and converts it to its IDNA ASCII form,
// the form a browser looks up. IP literals pass through unchanged.
func asciiHost(h string) (string, error) {
	if h == "" {
		return "", Errorf(EInvalid, "empty host")
	}
	if isIPLiteral(h) {
		return h, nil
	}
	a, err := idna.Lookup.ToASCII(strings.ToLower(h))
	if err != nil {
		return "", Errorf(EInvalid, "host %q: %v", h, err)
	}
	return a, nil
}
