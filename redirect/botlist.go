package redirect

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// The built-in crawler list: crawler-user-agents.json as published (see
// botlist/README.md for where it comes from and how to replace it).
var (
	//go:embed botlist/crawler-user-agents.json
	embeddedBotList []byte
	//go:embed botlist/VERSION
	embeddedBotListVersion string
)

// BotList decides whether a User-Agent belongs to a crawler, a link-preview
// fetcher, a monitor or an HTTP library. It holds a crawler list in the
// crawler-user-agents format plus refgate's generic patterns, which catch
// what no list names (a bot word, an HTTP client, a bare product/version).
//
// A BotList is immutable and safe for concurrent use. Build one with
// ParseBotList or LoadBotList; DefaultBotList returns the built-in one.
type BotList struct {
	source  string
	listed  int // patterns from the list, before the generic ones
	skipped int // entries of browserListPatterns the list had

	pats []*regexp.Regexp
	// byTrigram finds candidate patterns by the first three bytes (ASCII
	// lower-cased) of a literal every match of them contains, so a
	// User-Agent is matched against the few patterns whose literal it
	// holds rather than against all of them.
	byTrigram map[uint32][]botLiteral
	// rest holds the patterns without such a literal. They run on every
	// User-Agent, so they are few and mostly anchored, and each is its own
	// regexp: joined, the unanchored ones would make every anchored one
	// run at every position too.
	rest []*regexp.Regexp
}

type botLiteral struct {
	lit string // ASCII lower-cased
	pat int    // index into pats
}

// botPattern is one entry of a crawler-user-agents file. Only pattern is
// read; other fields (instances, url, description, ...) are ignored.
type botPattern struct {
	Pattern *string `json:"pattern"`
}

// DefaultBotList returns the built-in list: the embedded crawler-user-agents
// release and the generic patterns. It is compiled once, on first use.
func DefaultBotList() *BotList { return defaultBotList() }

var defaultBotList = sync.OnceValue(func() *BotList {
	l, err := ParseBotList(embeddedBotList, strings.TrimSpace(embeddedBotListVersion))
	if err != nil {
		panic("embedded crawler list: " + err.Error()) // a test keeps this from shipping
	}
	return l
})

// LoadBotList reads a crawler list from a file in the crawler-user-agents
// format (see ParseBotList). Errors name the file.
func LoadBotList(path string) (*BotList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read crawler list: %w", err)
	}
	l, err := ParseBotList(data, path)
	if err != nil {
		return nil, fmt.Errorf("crawler list %s: %w", path, err)
	}
	return l, nil
}

// ParseBotList compiles a crawler list in the crawler-user-agents format: a
// JSON array of objects whose "pattern" is a regular expression (Go RE2
// syntax, matched case-sensitively anywhere in the User-Agent) and whose
// other fields are ignored. source names the list in String. The generic
// patterns are added to it, and the entries of browserListPatterns are left
// out. An empty array, an entry without a pattern and a pattern that does
// not compile are errors, each naming the entry.
func ParseBotList(data []byte, source string) (*BotList, error) {
	var entries []botPattern
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("want a JSON array of {\"pattern\": ...} objects: %w", err)
	}
	if len(entries) == 0 {
		return nil, errors.New("no patterns")
	}
	pats := make([]string, 0, len(entries)+len(genericBotPatterns))
	var errs []error
	skipped := 0
	for i, e := range entries {
		switch {
		case e.Pattern == nil || *e.Pattern == "":
			errs = append(errs, fmt.Errorf("entry %d: no pattern", i))
		case browserListPatterns[*e.Pattern] != "":
			skipped++
		default:
			if _, err := syntax.Parse(*e.Pattern, syntax.Perl); err != nil {
				errs = append(errs, fmt.Errorf("entry %d: pattern %q: %w", i, *e.Pattern, err))
				continue
			}
			pats = append(pats, *e.Pattern)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	listed := len(pats)
	for _, p := range genericBotPatterns {
		pats = append(pats, "(?i)"+p)
	}
	l, err := compileBotList(pats, listed)
	if err != nil {
		return nil, err
	}
	l.source, l.skipped = source, skipped
	return l, nil
}

// browserListPatterns are entries of published crawler lists that match
// browsers people click from, and why; they are left out of every list. A
// missed fetcher costs a cookie set on a fetcher; a flagged browser costs
// the promoter the sale.
var browserListPatterns = map[string]string{
	// crawler-user-agents 1.60.0 files it under 80legs; its own instance
	// is Instagram's in-app browser on an OPPO phone.
	`AP3A\.240617\.008`: "an Android 15 build id that phones carry",
	// isbot lists it as a browser.
	`MetaIAB Facebook`: "Facebook's in-app browser on Android",
	// The fetcher's bare "Viber" is caught by the generic patterns.
	`Viber`: "Viber's in-app browser",
}

func compileBotList(pats []string, listed int) (*BotList, error) {
	l := &BotList{listed: listed, byTrigram: make(map[uint32][]botLiteral)}
	var errs []error
	for _, p := range pats {
		re, err := regexp.Compile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("pattern %q: %w", p, err))
			continue
		}
		tree, _ := syntax.Parse(p, syntax.Perl) // compiled above, so it parses
		lits, ok := requiredLiterals(tree.Simplify())
		if !ok || shortest(lits) < 3 {
			l.rest = append(l.rest, re)
			continue
		}
		idx := len(l.pats)
		l.pats = append(l.pats, re)
		for _, lit := range lits {
			k := trigram(lit[0], lit[1], lit[2])
			l.byTrigram[k] = append(l.byTrigram[k], botLiteral{lit: lit, pat: idx})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return l, nil
}

// String names the list and its size, for the start-up log line.
func (l *BotList) String() string {
	s := fmt.Sprintf("%s (%d patterns + %d generic", l.source, l.listed, len(genericBotPatterns))
	if l.skipped > 0 {
		s += fmt.Sprintf("; %d that match browsers left out", l.skipped)
	}
	return s + ")"
}

// Match reports whether ua matches any pattern. It does not keep ua.
func (l *BotList) Match(ua []byte) bool {
	for _, re := range l.rest {
		if re.Match(ua) {
			return true
		}
	}
	if len(ua) < 3 {
		return false
	}
	// A pattern is run at most once per call: a regexp that failed on ua
	// fails again, and a User-Agent repeating a literal must not make the
	// work quadratic. Lists up to 4096 patterns keep the set on the stack.
	var small [64]uint64
	tried := small[:]
	if n := (len(l.pats) + 63) / 64; n > len(small) {
		tried = make([]uint64, n)
	}
	k := trigram(0, lowerASCII(ua[0]), lowerASCII(ua[1]))
	for i := 2; i < len(ua); i++ {
		k = k<<8&0xffffff | uint32(lowerASCII(ua[i]))
		for _, c := range l.byTrigram[k] {
			w, bit := c.pat/64, uint64(1)<<(c.pat%64)
			if tried[w]&bit != 0 || !hasPrefixFold(ua[i-2:], c.lit) {
				continue
			}
			tried[w] |= bit
			if l.pats[c.pat].Match(ua) {
				return true
			}
		}
	}
	return false
}

func trigram(a, b, c byte) uint32 { return uint32(a)<<16 | uint32(b)<<8 | uint32(c) }

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasPrefixFold reports whether s starts with lit, ignoring ASCII case; lit
// is lower-case.
func hasPrefixFold(s []byte, lit string) bool {
	if len(s) < len(lit) {
		return false
	}
	for i := 0; i < len(lit); i++ {
		if lowerASCII(s[i]) != lit[i] {
			return false
		}
	}
	return true
}

func shortest(lits []string) int {
	n := -1
	for _, s := range lits {
		if n < 0 || len(s) < n {
			n = len(s)
		}
	}
	return n
}

// requiredLiterals returns literals, ASCII lower-cased, at least one of which
// every match of re contains; ok is false when it knows none. Comparing
// lower-cased is looser than the pattern: a candidate is confirmed by the
// pattern itself. (It is stricter in one corner: Go's (?i) also lets the
// Kelvin sign match k and the long s match s, which the index does not.)
func requiredLiterals(re *syntax.Regexp) (lits []string, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		s, ok := lowerLiteral(re)
		return []string{s}, ok
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min < 1 {
			return nil, false
		}
		return requiredLiterals(re.Sub[0])
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			s, ok := requiredLiterals(sub)
			if !ok || len(lits)+len(s) > 16 {
				return nil, false
			}
			lits = append(lits, s...)
		}
		return lits, true
	case syntax.OpConcat:
		// Adjacent literals form one longer run; any other part breaks
		// the run but may require literals of its own. Keep the
		// candidate whose shortest literal is longest.
		var best []string
		consider := func(c []string) {
			if shortest(c) > shortest(best) || shortest(c) == shortest(best) && len(c) < len(best) {
				best = c
			}
		}
		var run strings.Builder
		flush := func() {
			if run.Len() > 0 {
				consider([]string{run.String()})
				run.Reset()
			}
		}
		for _, sub := range re.Sub {
			if sub.Op == syntax.OpLiteral {
				if s, ok := lowerLiteral(sub); ok {
					run.WriteString(s)
					continue
				}
			}
			flush()
			if c, ok := requiredLiterals(sub); ok {
				consider(c)
			}
		}
		flush()
		return best, best != nil
	}
	return nil, false
}

// lowerLiteral lower-cases a literal's ASCII letters. A case-insensitive
// literal with a non-ASCII letter is refused: the matcher folds ASCII only.
func lowerLiteral(re *syntax.Regexp) (string, bool) {
	var b strings.Builder
	for _, r := range re.Rune {
		switch {
		case r < utf8.RuneSelf:
			b.WriteByte(lowerASCII(byte(r)))
		case re.Flags&syntax.FoldCase != 0 && unicode.SimpleFold(r) != r:
			return "", false
		default:
			b.WriteRune(r)
		}
	}
	return b.String(), true
}
