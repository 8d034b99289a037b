package attribution

import (
	"math"
	"strings"
	"testing"
	"time"
)

var lt0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func accrual(order string, amount int64) Entry {
	return Entry{ID: AccrualID(order), Program: "shop", Promoter: "alice", Kind: Accrual, Amount: amount, Currency: "CNY",
		Order: order, Customer: "c1", At: lt0, AvailableAt: lt0.Add(30 * 24 * time.Hour)}
}

func TestEntryValidate(t *testing.T) {
	f := func(name string, change func(e *Entry), ok bool) {
		t.Helper()
		e := accrual("o1", 3000)
		change(&e)
		err := e.Validate()
		if ok != (err == nil) {
			t.Errorf("%s: %v, want ok %v", name, err, ok)
		}
		if err != nil {
			if ae, _ := err.(*Error); ae == nil || ae.Code != EInvalid {
				t.Errorf("%s: %#v, want an invalid *Error", name, err)
			}
		}
	}
	f("Accrual", func(e *Entry) {}, true)
	f("Reversal", func(e *Entry) {
		e.Kind, e.ID, e.Refund, e.Amount = Reversal, ReversalID("o1", "r:1"), "r:1", -300
	}, true)
	f("Adjustment", func(e *Entry) {
		e.Kind, e.ID, e.Order, e.Customer, e.Amount, e.Reason = Adjustment, AdjustmentID("fix-1"), "", "", -5, "fraud clawback"
	}, true)
	f("NoHold", func(e *Entry) { e.AvailableAt = e.At }, true)
	f("MaxAmount", func(e *Entry) { e.Amount = MaxEntryAmount }, true)

	f("ZeroAmount", func(e *Entry) { e.Amount = 0 }, false)
	f("NegativeAccrual", func(e *Entry) { e.Amount = -1 }, false)
	f("PositiveReversal", func(e *Entry) { e.Kind, e.ID, e.Refund = Reversal, ReversalID("o1", "r1"), "r1" }, false)
	f("ZeroAdjustment", func(e *Entry) { e.Kind, e.ID, e.Amount = Adjustment, AdjustmentID("x"), 0 }, false)
	f("AmountTooLarge", func(e *Entry) { e.Amount = MaxEntryAmount + 1 }, false)
	f("MinInt64", func(e *Entry) { e.Kind, e.ID, e.Amount = Adjustment, AdjustmentID("x"), math.MinInt64 }, false)
	f("NoPromoter", func(e *Entry) { e.Promoter = "" }, false)
	f("BadPromoter", func(e *Entry) { e.Promoter = "a|b" }, false)
	f("BadProgram", func(e *Entry) { e.Program = "a:b" }, false)
	f("NoProgram", func(e *Entry) { e.Program = "" }, false)
	f("BadCustomer", func(e *Entry) { e.Customer = "c 1" }, false)
	f("NoCurrency", func(e *Entry) { e.Currency = "" }, true) // a storefront that reports none
	f("CurrencyWithSpace", func(e *Entry) { e.Currency = "C NY" }, false)
	f("LongCurrency", func(e *Entry) { e.Currency = "CNYCNYCNY" }, false)
	f("QuoteInCurrency", func(e *Entry) { e.Currency = `C"Y` }, false)
	f("EmptyID", func(e *Entry) { e.ID = "" }, false)
	f("IDNotDerived", func(e *Entry) { e.ID = AccrualID("o2") }, false)
	f("IDWithBar", func(e *Entry) { e.Kind, e.ID, e.Amount = Adjustment, "adj:a|b", 1 }, false)
	f("AdjustmentWithoutPrefix", func(e *Entry) { e.Kind, e.ID, e.Amount = Adjustment, "x1", 1 }, false)
	f("EmptyAdjustmentID", func(e *Entry) { e.Kind, e.ID, e.Amount = Adjustment, "adj:", 1 }, false)
	f("AccrualWithRefund", func(e *Entry) { e.Refund = "r1" }, false)
	f("BadRefund", func(e *Entry) { e.Kind, e.ID, e.Refund, e.Amount = Reversal, ReversalID("o1", "r@1"), "r@1", -1 }, false)
	f("UnknownKind", func(e *Entry) { e.Kind = "bonus" }, false)
	f("NoTime", func(e *Entry) { e.At = time.Time{} }, false)
	f("TimeBefore1970", func(e *Entry) { e.At = time.Unix(-1, 0) }, false)
	f("AvailableBeforeAt", func(e *Entry) { e.AvailableAt = e.At.Add(-time.Nanosecond) }, false)
	f("AvailableAfter2261", func(e *Entry) { e.AvailableAt = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC) }, false)
	f("AlreadySettled", func(e *Entry) { e.Statement = NewStatementID("shop") }, false)
	f("LongReason", func(e *Entry) { e.Reason = strings.Repeat("x", MaxReasonLen+1) }, false)
}

func TestStatementID(t *testing.T) {
	for _, p := range []string{"shop", "a", "tencent_cloud-1", strings.Repeat("p", 64)} {
		id := NewStatementID(p)
		if got, ok := StatementProgram(id); !ok || got != p {
			t.Errorf("StatementProgram(%q) = %q %v, want %q", id, got, ok, p)
		}
		if len(id) != len("st_")+16+1+len(p) {
			t.Errorf("id %q: want st_, 16 hex digits, _ and the program", id)
		}
	}
	if NewStatementID("p") == NewStatementID("p") {
		t.Error("two statement ids are the same")
	}
	for _, id := range []string{"", "st_", "st_0123456789abcdef", "st_0123456789abcdef_", "st_0123456789abcdeF_p",
		"st_0123456789abcde_xp", "xx_0123456789abcdef_p", "st_0123456789abcdef-p", "st_0123456789abcdef_p:q"} {
		if p, ok := StatementProgram(id); ok {
			t.Errorf("StatementProgram(%q) = %q, want not a statement id", id, p)
		}
	}
}

func TestEntryStatus(t *testing.T) {
	e := accrual("o1", 1)
	for _, tc := range []struct {
		now       time.Time
		statement string
		stmt      StatementStatus
		want      EntryStatus
	}{
		{e.AvailableAt.Add(-time.Nanosecond), "", "", EntryPending},
		{e.AvailableAt, "", "", EntryAvailable},
		{e.AvailableAt.Add(time.Hour), "st", StatementOpen, EntrySettled},
		{e.AvailableAt.Add(time.Hour), "st", StatementPaid, EntryPaid},
	} {
		e.Statement = tc.statement
		if got := e.Status(tc.now, tc.stmt); got != tc.want {
			t.Errorf("at %v on %q (%s): %s, want %s", tc.now, tc.statement, tc.stmt, got, tc.want)
		}
	}
}

func TestPlanSettlement(t *testing.T) {
	through := lt0.Add(40 * 24 * time.Hour)
	now := through.Add(time.Hour)
	due := func(id string, amount int64, cur string) Entry {
		e := Entry{ID: AdjustmentID(id), Program: "shop", Promoter: "alice", Kind: Adjustment, Amount: amount, Currency: cur,
			At: lt0, AvailableAt: through}
		return e
	}
	later := due("later", 100000, "CNY")
	later.AvailableAt = through.Add(time.Nanosecond)
	settled := due("settled", 100000, "CNY")
	settled.Statement = "st_x"
	other := due("other", 100000, "CNY")
	other.Promoter = "bob"
	early := due("b-early", 70, "CNY")
	early.At = lt0.Add(-time.Hour)
	entries := []Entry{
		due("c", 500, "CNY"), due("a", -200, "CNY"), early, later, settled, other,
		due("u1", 50, "USD"), due("u2", -60, "USD"), // negative: none
		due("r1", 299, "RUB"), // below min payout
	}
	plan, err := PlanSettlement("shop", "alice", entries, through, 300, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 1 {
		t.Fatalf("%d statements, want one (CNY): %+v", len(plan), plan)
	}
	s := plan[0]
	want := Statement{ID: s.Statement.ID, Program: "shop", Promoter: "alice", Currency: "CNY", Through: through, Entries: 3,
		Amount: 370, Status: StatementOpen, CreatedAt: now}
	if s.Statement != want {
		t.Errorf("statement %+v, want %+v", s.Statement, want)
	}
	if p, ok := StatementProgram(s.Statement.ID); !ok || p != "shop" {
		t.Errorf("statement id %q", s.Statement.ID)
	}
	if got := strings.Join(s.Entries, ","); got != "adj:b-early,adj:a,adj:c" {
		t.Errorf("entries %s, want oldest first, then by id", got)
	}
	plan, _ = PlanSettlement("shop", "alice", entries, through, 1000, now)
	if len(plan) != 0 {
		t.Errorf("min payout 1000: %+v, want no statement", plan)
	}
	plan, _ = PlanSettlement("shop", "alice", entries, through, 0, now)
	if len(plan) != 2 || plan[0].Statement.Currency != "CNY" || plan[1].Statement.Currency != "RUB" {
		t.Errorf("min payout 0: %+v, want CNY and RUB in currency order", plan)
	}
	huge := []Entry{due("h1", MaxEntryAmount, "CNY")}
	for i := 0; i < 5000; i++ {
		huge = append(huge, due("h"+strings.Repeat("x", i%50)+string(rune('a'+i%26)), MaxEntryAmount, "CNY"))
	}
	if _, err := PlanSettlement("shop", "alice", huge, through, 0, now); err == nil {
		t.Error("a sum past int64 was planned")
	}
}

func TestBalances(t *testing.T) {
	now := lt0.Add(31 * 24 * time.Hour)
	pending := accrual("o1", 100)
	pending.AvailableAt = now.Add(time.Nanosecond)
	available := accrual("o2", 200)
	usd := accrual("o3", 7)
	usd.Currency = "USD"
	paidAt := now
	got, err := Balances([]Entry{pending, available, usd},
		[]Statement{{Currency: "CNY", Amount: 1000, Status: StatementOpen}, {Currency: "CNY", Amount: 30, Status: StatementOpen},
			{Currency: "CNY", Amount: 5000, Status: StatementPaid, PaidAt: &paidAt}, {Currency: "RUB", Amount: 9, Status: StatementPaid}}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Balance{"CNY": {Pending: 100, Available: 200, Settled: 1030, Paid: 5000}, "USD": {Available: 7}, "RUB": {Paid: 9}}
	if len(got) != len(want) {
		t.Errorf("balances %+v, want %+v", got, want)
	}
	for c, w := range want {
		if got[c] != w {
			t.Errorf("%s: %+v, want %+v", c, got[c], w)
		}
	}
	if _, err := Balances(nil, []Statement{{Currency: "X", Amount: math.MaxInt64}, {Currency: "X", Amount: 1}}, now); err == nil {
		t.Error("a balance past int64 was summed")
	}
}

func TestAddExact(t *testing.T) {
	for _, tc := range []struct {
		a, b int64
		ok   bool
	}{
		{1, 2, true}, {math.MaxInt64, 0, true}, {math.MaxInt64, 1, false}, {math.MinInt64, -1, false},
		{math.MinInt64, 0, true}, {math.MaxInt64, math.MinInt64, true}, {-1, math.MinInt64, false}, {-5, 3, true},
	} {
		if s, ok := addExact(tc.a, tc.b); ok != tc.ok || ok && s != tc.a+tc.b {
			t.Errorf("addExact(%d, %d) = %d %v, want ok %v", tc.a, tc.b, s, ok, tc.ok)
		}
	}
}
