// Package store declares what refgate keeps and the errors stores return.
//
// Two adapters implement Store: store/redisstore (Redis or Redis Cluster,
// shared by many refgate instances) and store/embedded (a bbolt file, for a
// single instance). store/storetest is the one conformance suite both pass.
package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/refgate/refgate/attribution"
)

// Errors every Store returns, whatever its driver says underneath.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrClosed   = errors.New("store closed")
	ErrConflict = errors.New("too much contention on one customer; try again")
	// ErrErasing is returned by updates of a customer whose erasure
	// started and did not finish (a failure part-way on a store where it
	// spans several writes): EraseCustomer again finishes it.
	ErrErasing = errors.New("customer erasure unfinished; erase the customer again")
	// ErrEntryConflict is PostEntry's answer for an entry whose id is
	// taken by one that moves other money (promoter, kind, amount or
	// currency): the same decision written twice with different values.
	ErrEntryConflict = errors.New("a ledger entry with this id exists with other values")
	// ErrPaidConflict is MarkPaid's answer for a statement paid already
	// with another reference.
	ErrPaidConflict = errors.New("statement already paid with another reference")
	// ErrBadCursor is a list's answer to a cursor it did not hand out.
	ErrBadCursor = errors.New("bad cursor")
)

// RefusedError is a write the store refused whole although it answers:
// Redis out of memory under noeviction (OOM), a read-only replica
// (READONLY), a failed background save that stops writes (MISCONF), too
// few replicas for min-replicas-to-write (NOREPLICAS), an ACL without the
// command (NOPERM). Nothing was written; reads still work. Instrument
// counts these by Reason and reports the store's writes degraded until a
// write is taken again.
type RefusedError struct {
	Reason  string // one of RefusalReasons
	Message string // the store's own words, such as "OOM command not allowed when used memory > 'maxmemory'."
	Err     error  // the driver's error
}

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// RefusalReasons are RefusedError's reasons, the values of the reason label
// of refgate_store_write_errors_total.
var RefusalReasons = []string{"oom", "readonly", "misconf", "noreplicas", "noperm"}

// BatchKeep is how long a store remembers a RecordClicks batch id. It
// bounds the memory the ids take (one id per link per batch on Redis, per
// batch on bbolt) and must outlast every retry of a batch: the driver's
// within one call (seconds), and the caller's while the store is
// unreachable. A retry later than this may count its batch again; a caller
// that writes one batch at a time, as redirect.Batcher does, over-counts by
// at most that one batch, and only if the store went away for longer right
// after applying it. Two minutes outlasts a Redis Cluster failover or a
// frozen server many times over (the driver gives up on a call within
// seconds, and the batcher retries a failed batch within its backoff), and
// keeps the markers' memory small: about 150 bytes per link per batch on
// Redis, some 23 MB at 1,000 clicks/s over 64 links; see redisstore.
const BatchKeep = 2 * time.Minute

// MaxBatchID is the longest RecordClicks batch id.
const MaxBatchID = 64

// CheckBatchID returns an error for an id RecordClicks must refuse.
func CheckBatchID(id string) error {
	if id == "" || len(id) > MaxBatchID {
		return fmt.Errorf("bad click batch id %q: want 1 to %d bytes", id, MaxBatchID)
	}
	return nil
}

// Store keeps programs, promoters, links and click records. Every method is
// safe for concurrent use. Returned values are the caller's to keep.
type Store interface {
	// PutProgram creates or replaces a program.
	PutProgram(ctx context.Context, p *attribution.Program) error
	// Program returns ErrNotFound for an unknown id.
	Program(ctx context.Context, id string) (*attribution.Program, error)

	// PutPromoter creates or replaces a promoter, fingerprints included.
	PutPromoter(ctx context.Context, p *attribution.Promoter) error
	// Promoter returns ErrNotFound for an unknown id.
	Promoter(ctx context.Context, id string) (*attribution.Promoter, error)
	// UpdatePromoter reads promoter id (nil if unknown), calls fn with it
	// and stores the promoter fn returns (nil: nothing is written), as
	// PutPromoter does, invalidation included. It is atomic with respect
	// to every other UpdatePromoter and PutPromoter of the promoter: a
	// write in between makes it read again and call fn again, so fn must
	// depend only on its argument and must not call the store. It keeps
	// what an admin's PUT does not set (fingerprints, the revocation of
	// tokens) from being lost to a concurrent change. ErrConflict means
	// the promoter stayed too contended to update.
	UpdatePromoter(ctx context.Context, id string, fn func(old *attribution.Promoter) (*attribution.Promoter, error)) error

	// CreateLink stores a new link. It returns ErrExists if the code is
	// taken, also by a deleted link: codes are never reused.
	CreateLink(ctx context.Context, l *attribution.Link) error
	// Link returns ErrNotFound for an unknown or deleted code.
	Link(ctx context.Context, code string) (*attribution.Link, error)
	// DeleteLink marks a link deleted; ErrNotFound if unknown or deleted.
	// Like every write that changes a link, program or promoter, it
	// returns nil only once the change's invalidation is on its way to
	// every watcher (WatchInvalidations), who can read the change by the
	// time it arrives; a write that cannot publish fails and changes
	// nothing.
	DeleteLink(ctx context.Context, code string) error
	// UpdateLink reads link code, calls fn with a copy of it, and stores
	// what fn left in the copy, atomically with respect to every other
	// write of the link, and returns the stored link; the invalidation is
	// published as DeleteLink's. fn may be called more than once (another
	// write came in between) and must not call the store; an error from it
	// is returned as is and writes nothing. fn must not change the link's
	// code, program, promoter, creation time or deletion. ErrNotFound for
	// an unknown or deleted code.
	UpdateLink(ctx context.Context, code string, fn func(l *attribution.Link) error) (*attribution.Link, error)
	// LinkStats returns the number of clicks recorded per outcome.
	LinkStats(ctx context.Context, code string) (map[attribution.Outcome]int64, error)

	// The lists (docs/design.md "Reports and lists"). Each is served from
	// an index the writes keep, never from a scan of the store. A cursor
	// is opaque and stays valid: the pages of one listing have no
	// duplicates and no gaps among the items that existed when it began
	// (an item written since may or may not appear). A cursor the list
	// did not hand out is ErrBadCursor; a limit outside 1 to MaxPage an
	// error. next is the cursor of the following page, "" on the last.
	// Returned values are the caller's.

	// Programs lists programs by id, ascending, from after cursor (""
	// from the first), at most limit.
	Programs(ctx context.Context, cursor string, limit int) (programs []attribution.Program, next string, err error)
	// Promoters lists promoters by id, ascending, as Programs does,
	// fingerprints included.
	Promoters(ctx context.Context, cursor string, limit int) (promoters []attribution.Promoter, next string, err error)
	// Links lists links, newest first by CreatedAt (ties by code,
	// descending), of q.Program and of q.Promoter when they are not empty,
	// from after q.Cursor, at most q.Limit. Deleted links are left out.
	Links(ctx context.Context, q LinkQuery) (links []attribution.Link, next string, err error)

	// RecordClicks stores a batch of clicks: it counts each against its
	// link by outcome and, for attributed clicks with a visitor, keeps it
	// as that visitor's record for the program unless Click.Replaces says
	// the existing one stands. In the same write it counts the clicks in
	// the report buckets of their day, program, promoter and link, and
	// adds the visitors of attributed clicks to those buckets' visitors.
	//
	// batch names the batch: the caller gives each batch a new id (unique
	// across instances, at most MaxBatchID bytes) and the same id to every
	// retry of it, and must not reuse an id for other clicks. The store
	// applies a batch's counts at most once per link, so a batch written
	// again with the same id (the caller's retry after an error, which
	// does not prove nothing was written, or the driver's retry of a
	// timed-out write) counts once, as long as the retry comes within
	// BatchKeep of the write that applied it. The visitor records are
	// idempotent anyway. An empty or too long id is an error.
	RecordClicks(ctx context.Context, batch string, clicks []attribution.Click) error
	// VisitorClick returns the visitor's click record for a program,
	// expired or not (the caller compares ExpiresAt with its clock), or
	// ErrNotFound.
	VisitorClick(ctx context.Context, program, visitor string) (*attribution.Click, error)

	// Customer returns a customer's state, or ErrNotFound.
	Customer(ctx context.Context, id string) (*attribution.Customer, error)
	// UpdateCustomer reads customer id (a new Customer{ID: id} if unknown)
	// and, when order is not empty, that order's record (nil if none), calls
	// fn, and stores what fn returns, atomically with respect to every other
	// update of the same customer: updates of one customer are linearizable.
	// fn returning a nil update writes nothing. fn may be called more than
	// once (optimistic concurrency) and must depend only on its arguments:
	// it must not call the store. It is also called again after a write
	// whose reply was lost (a timeout: the write may or may not have been
	// applied), so what fn writes must carry the request's identity (an
	// order id, a refund id, attribution.Customer.Applied) and fn must
	// recognise its own earlier write in the state it is given, and then
	// write nothing: that is what makes a retried request apply once.
	// ErrConflict means the customer stayed too contended to update.
	//
	// It also keeps the index of holders Holders reads: an update that
	// changes a customer's associations (HoldingChanges) adds the customer
	// to its new holder's index and removes it from its old one's.
	UpdateCustomer(ctx context.Context, id, order string, fn UpdateFunc) error
	// Holders lists the customers promoter holds in program at now: those
	// whose association with program is promoter's, has not ended and is
	// unexpired at now. They come newest first by the association's Since
	// (ties by customer id descending), from after cursor ("" = from the
	// newest), at most limit (1 to MaxPage); next is the cursor of the
	// following page, "" on the last. A cursor is opaque and stays valid;
	// one that is not one is ErrBadCursor.
	//
	// It reads the index of holders that UpdateCustomer keeps (see
	// Holding) and each customer it names, and lists only those truly
	// held: on Redis Cluster the index is written right after the
	// customer, on another slot, so it may lag or outlive the customer,
	// and the read is what decides. Members found stale are removed. It
	// never scans customers.
	Holders(ctx context.Context, program, promoter string, now time.Time, cursor string, limit int) (holders []Holder, next string, err error)
	// Decisions returns up to attribution.MaxDecisions of the customer's
	// decisions for a program, newest first.
	Decisions(ctx context.Context, program, customer string) ([]attribution.Decision, error)
	// ClaimOrder records that order belongs to customer, unless it already
	// belongs to someone; it returns the owner either way.
	ClaimOrder(ctx context.Context, order, customer string) (owner string, err error)
	// ClaimOrderAndMark is ClaimOrder and MarkLedger(program, mark, at)
	// together, in one round trip where the store can: a conversion needs
	// both before its decision is stored. It returns the owner once both
	// are done; an error from either is its error.
	ClaimOrderAndMark(ctx context.Context, order, customer, program, mark string, at time.Time) (owner string, err error)
	// OrderOwner returns the customer an order belongs to, or ErrNotFound.
	OrderOwner(ctx context.Context, order string) (customer string, err error)

	// ClaimClick records that click binds customer, on behalf of claim (an
	// id unique to one attempt at a bind), unless the click already binds
	// limit other customers. The claim is kept at least keep. It is
	// idempotent: the same claim again (a store client's retry) gets the
	// same answer, and a customer the click already binds is not counted
	// again.
	ClaimClick(ctx context.Context, click, customer, claim string, limit int, keep time.Duration) (ClickClaim, error)
	// ReleaseClick undoes a claim of click for customer, if that claim made
	// it: a rejected bind uses nothing.
	ReleaseClick(ctx context.Context, click, customer, claim string) error

	// EraseCustomer forgets customer id: its record (fingerprints,
	// associations, flags, what it bought) and its decision logs in every
	// program; its claims of the clicks those name are kept under
	// ErasedClaim names, each still one use of its click. Its order records
	// are money records and stay, decisions, amounts and refunds
	// included, under alias instead of id (a keyed hash of id that the
	// caller computes): each is stored as alias's, with Customer alias and
	// Erased set, and the order index names alias, so that the order
	// reported again finds its decision and a refund finds its order.
	// The ledger entries of those orders (their accruals and the
	// reversals of their refunds, attribution.AccrualID and ReversalID)
	// stay too, with Customer alias where it was id. Erasing a customer
	// the store does not know is no error; the Erasure says what there
	// was.
	//
	// The customer leaves every index of holders its associations, and
	// the binds its decision logs name, put it in.
	//
	// It is idempotent. Where one erasure takes several writes (on Redis
	// Cluster the orders' index lives on other nodes), the customer is
	// first marked: until a call finishes, its updates fail with
	// ErrErasing and Customer answers ErrNotFound, and a call that failed
	// part-way is finished by the next.
	EraseCustomer(ctx context.Context, id, alias string) (Erasure, error)

	// The ledger (docs/design.md "Ledger and statements"): one entry per
	// decision that moves money, statements that settle them, and marks
	// that find a decision whose entry a crash kept from being written.
	// All of a program's ledger is in one place (on Redis Cluster, one
	// slot), so each of these is atomic on its own; the customer's
	// decision is elsewhere, hence the marks. Returned values are the
	// caller's. Nothing of the ledger ever expires.

	// MarkLedger notes that a money decision named mark ("o:"+order,
	// "r:"+order+":"+refund) of program may write a ledger entry. The
	// caller sets it before the decision is stored, so that a crash
	// between the decision and its entry leaves the mark for a repair to
	// find. It is idempotent and keeps the earliest time (to the
	// microsecond on Redis). A mark is 1 to MaxMark bytes.
	MarkLedger(ctx context.Context, program, mark string, at time.Time) error
	// LedgerMarks returns up to n of program's marks set before before,
	// oldest first.
	LedgerMarks(ctx context.Context, program string, before time.Time, n int) ([]string, error)
	// UnmarkLedger removes a mark (the decision moved no money, or its
	// entry is written); an absent one is no error. With a non-zero
	// before it removes the mark only if it was set before before: a
	// repair that found no decision for a mark must not remove one that a
	// retry of the request set again since (MarkLedger keeps the latest
	// time), whose decision may be stored next.
	UnmarkLedger(ctx context.Context, program, mark string, before time.Time) error
	// PostEntry writes e (which must pass attribution.Entry.Validate)
	// unless an entry with e.ID exists in e.Program, and removes mark from
	// the program's marks when mark is not empty, both in one atomic step:
	// also when the entry existed, whatever its values (the decision has
	// its entry). Creating the entry adds its amount to the commission of
	// the report buckets of e.At's day of the program, e.Promoter and, if
	// set, e.Link, in the same step. It returns the stored entry (the existing one when there
	// was one) and whether this call created it: a call whose write was
	// applied but whose reply was lost, and that the store tried again
	// within the call, still says created. An existing entry that moves
	// other money (attribution.Entry.SameMoney) is returned with an error
	// wrapping ErrEntryConflict. e is not kept.
	PostEntry(ctx context.Context, e *attribution.Entry, mark string) (stored *attribution.Entry, created bool, err error)
	// Entry returns one entry of program, or ErrNotFound.
	Entry(ctx context.Context, program, id string) (*attribution.Entry, error)
	// Entries lists a promoter's entries in a program, newest first by At
	// (ties by ID descending), from after q.Cursor ("" = from the
	// newest), at most q.Limit (1 to MaxPage); next is the cursor of the
	// following page, "" on the last. q.From (inclusive) and q.To
	// (exclusive) bound At; zero is unbounded. A cursor is opaque and
	// stays valid: the pages of one listing have no duplicates, no gaps
	// among the entries that existed when it began, and no entry written
	// later with a later At. A cursor that is not one is ErrBadCursor.
	Entries(ctx context.Context, program, promoter string, q EntryQuery) (entries []attribution.Entry, next string, err error)
	// LedgerPromoters lists the promoters of program with unsettled
	// entries (due or not), sorted.
	LedgerPromoters(ctx context.Context, program string) ([]string, error)
	// Settle settles, for one promoter of program, every unsettled entry
	// with AvailableAt <= through as attribution.PlanSettlement decides:
	// per currency whose sum is positive and at least minPayout, one open
	// statement created at now, and each of its entries' Statement set;
	// a currency below that stays unsettled. It is atomic (all of it or
	// nothing) and never settles an entry twice, also under concurrent
	// calls from other instances. It returns the statements made, none
	// being an empty, non-nil slice. ErrConflict means the promoter's
	// ledger stayed too contended to settle.
	Settle(ctx context.Context, program, promoter string, through time.Time, minPayout int64, now time.Time) ([]attribution.Statement, error)
	// Statement returns a statement by id (its program is in the id), or
	// ErrNotFound, also for a string that is no statement id.
	Statement(ctx context.Context, id string) (*attribution.Statement, error)
	// Statements lists a program's statements (of one promoter when
	// promoter is not empty), newest first by CreatedAt (ties by ID
	// descending), paged as Entries.
	Statements(ctx context.Context, program, promoter, cursor string, limit int) (statements []attribution.Statement, next string, err error)
	// StatementEntries lists a statement's entries, all of them, oldest
	// first (by At, then ID); ErrNotFound for an unknown statement.
	StatementEntries(ctx context.Context, id string) ([]attribution.Entry, error)
	// MarkPaid marks a statement paid with reference (1 to
	// attribution.MaxReferenceLen bytes) at at and returns it. A statement
	// paid already with the same reference is returned unchanged; with
	// another, it is returned with an error wrapping ErrPaidConflict. An
	// unknown statement is ErrNotFound.
	MarkPaid(ctx context.Context, id, reference string, at time.Time) (*attribution.Statement, error)
	// Balance sums a promoter's ledger in program per currency at now, as
	// attribution.Balances does: pending and available from unsettled
	// entries (by AvailableAt against now), settled from open statements,
	// paid from paid ones. It reads that promoter's data only: their
	// unsettled entries and their statements, at one point in time.
	Balance(ctx context.Context, program, promoter string, now time.Time) (map[string]attribution.Balance, error)

	// Reports (report.go): day buckets of counts per program, promoter
	// and link. RecordClicks counts clicks and visitors, PostEntry the
	// commission of the entry it creates; CountReport the rest.

	// CountReport adds counts to the buckets of at's UTC day of program,
	// and of promoter and link when they are not empty, all in one atomic
	// step, once per id: the same id again within BatchKeep (a retry of a
	// write whose reply was lost) adds nothing. id is 1 to MaxMark bytes.
	CountReport(ctx context.Context, id, program, promoter, link string, at time.Time, counts ReportCounts) error
	// Report reads the series q asks for (ReportPeriods: an error for a
	// bad query), one ReportPeriod per period, every field of a quiet
	// period 0. Days older than the retention may read as 0.
	Report(ctx context.Context, q ReportQuery) ([]ReportPeriod, error)

	// WatchInvalidations calls fn for every change to a link, program or
	// promoter, made by this or any other instance sharing the store, and
	// with Kind All whenever changes may have been missed (at the start and
	// after a reconnect). It blocks until ctx is done. fn must not block.
	WatchInvalidations(ctx context.Context, fn func(Invalidation)) error

	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	// Close releases the store; it is safe to call twice.
	Close() error
}

// LinkQuery is a page of Store.Links.
type LinkQuery struct {
	Program  string // "" for every program
	Promoter string // "" for every promoter
	Cursor   string // "" for the first page, else a next cursor Links gave
	Limit    int    // 1 to MaxPage
}

// CheckListLimit returns an error for a list's limit outside 1 to MaxPage.
func CheckListLimit(limit int) error {
	if limit < 1 || limit > MaxPage {
		return fmt.Errorf("page limit %d: want 1 to %d", limit, MaxPage)
	}
	return nil
}

// IDCursor checks a cursor of Programs or Promoters: "" or an id (the
// last one of the page before). Anything else is ErrBadCursor.
func IDCursor(cursor string) error {
	if cursor != "" && !attribution.ValidID(cursor) {
		return fmt.Errorf("%w %q", ErrBadCursor, cursor)
	}
	return nil
}

// LinkPageKey is the page key a link sorts by in Links: its creation time
// and its code.
func LinkPageKey(l *attribution.Link) string { return PageKey(l.CreatedAt, l.Code) }

// LinkMatches reports whether l belongs on the page of Links that q asks
// for, found under the index key pk: not deleted, of q's program and
// promoter, and indexed under its own page key (an index entry written by
// a create that found its code taken names another link's time).
func LinkMatches(l *attribution.Link, q LinkQuery, pk string) bool {
	return !l.Deleted && (q.Program == "" || l.Program == q.Program) &&
		(q.Promoter == "" || l.Promoter == q.Promoter) && LinkPageKey(l) == pk
}

// UpdateFunc computes a customer update from the current state.
type UpdateFunc func(c *attribution.Customer, o *attribution.Order) (*CustomerUpdate, error)

// ErasedClaim returns a name for an erased customer's claim of a click:
// alias, "/" and a random part, so that every claim moved stays one use of
// its click (binds_per_click), erased twice or not, and none names the
// customer. The claim's own id, which hashes the customer's id unkeyed, is
// not kept with it.
func ErasedClaim(alias string) string {
	var b [9]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return alias + "/" + base64.RawURLEncoding.EncodeToString(b[:])
}

// ErasedClaimID is the claim id an erased customer's claims keep.
const ErasedClaimID = "erased"

// Erasure says what EraseCustomer erased.
type Erasure struct {
	Customer     bool // a customer record
	Orders       int  // order records moved to the alias
	Entries      int  // ledger entries of those orders whose Customer became the alias
	DecisionLogs int  // programs whose decision log went
	ClickClaims  int  // click claims moved to ErasedClaim names
}

// ClickClaim is ClaimClick's answer.
type ClickClaim int

const (
	ClickUsed    ClickClaim = iota // the click binds limit other customers already
	ClickHeld                      // the click already binds the customer, by an earlier claim
	ClickClaimed                   // this claim's: ReleaseClick undoes it
)

// CustomerUpdate is what UpdateCustomer writes.
type CustomerUpdate struct {
	Customer *attribution.Customer // the new state; nil leaves it as it is
	Order    *attribution.Order    // an order record to store (keyed by its ID)
	// Decisions are logged, each for its Program (the latest MaxDecisions
	// per program are kept), in the order given: the last is the newest.
	Decisions []attribution.Decision
	// Now is the server's time of the update. A store that drops records
	// no longer needed (Redis, by TTL) keeps the customer and its decision
	// logs until Customer.KeepUntil(Now) and a grace period; the zero time
	// keeps them for ever. Orders are kept for ever.
	Now time.Time
}

// InvalidationKind says what an Invalidation is about.
type InvalidationKind byte

const (
	All      InvalidationKind = 'a' // anything may have changed
	Link     InvalidationKind = 'l'
	Program  InvalidationKind = 'p'
	Promoter InvalidationKind = 'm'
)

// Invalidation names something whose cached copies are stale.
type Invalidation struct {
	Kind InvalidationKind
	ID   string
}

// String is the wire form "l:CODE", also used on the Redis channel.
func (i Invalidation) String() string { return string(i.Kind) + ":" + i.ID }

// ParseInvalidation reads the wire form; anything unreadable becomes All,
// the safe answer.
func ParseInvalidation(s string) Invalidation {
	if len(s) >= 2 && s[1] == ':' {
		switch k := InvalidationKind(s[0]); k {
		case Link, Program, Promoter:
			return Invalidation{Kind: k, ID: s[2:]}
		}
	}
	return Invalidation{Kind: All}
}
