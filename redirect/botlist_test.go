package redirect

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The corpora in testdata/bots (see its README.md): what the list and the
// generic patterns must catch, and browsers they must leave alone.

func readLines(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "bots", name))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// readFixtures flattens one of isbot's fixture files: a YAML map from a
// name to its User-Agents.
func readFixtures(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "bots", name))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string][]string
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var out []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}) {
		out = append(out, m[k]...)
	}
	return out
}

// flagged returns the share of uas that l matches, in percent, and the ones
// it matches (want=true) or misses (want=false).
func flagged(l *BotList, uas []string, want bool) (pct float64, odd []string) {
	n := 0
	for _, ua := range uas {
		if l.Match([]byte(ua)) {
			n++
		}
		if l.Match([]byte(ua)) != want {
			odd = append(odd, ua)
		}
	}
	return 100 * float64(n) / float64(len(uas)), odd
}

func TestBotCorpora(t *testing.T) {
	l := DefaultBotList()
	t.Logf("list: %s", l)
	f := func(name string, uas []string, min float64) {
		t.Helper()
		pct, missed := flagged(l, uas, true)
		t.Logf("%s: %.1f %% of %d flagged (%d missed)", name, pct, len(uas), len(missed))
		if pct < min {
			t.Errorf("%s: %.1f %% flagged, want at least %.0f %%; missed:\n%s", name, pct, min, strings.Join(missed, "\n"))
		}
	}
	f("crawler-user-agents 1.60.0 instances", readLines(t, "crawler-user-agents-instances.txt"), 97)
	f("isbot crawler fixtures", readFixtures(t, "isbot-crawlers.yml"), 95)

	browsers := readLines(t, "browsers.txt")
	if len(browsers) < 100 {
		t.Fatalf("only %d browsers", len(browsers))
	}
	pct, wrong := flagged(l, browsers, false)
	t.Logf("current browsers: %.1f %% of %d flagged", pct, len(browsers))
	if len(wrong) > 0 {
		t.Errorf("%d browsers flagged as bots:\n%s", len(wrong), strings.Join(wrong, "\n"))
	}
	// isbot's browser fixtures reach back to the 1990s and include app
	// HTTP clients (Dalvik, CFNetwork) that never carry a cookie back to a
	// storefront; they are reported, not required.
	pct, _ = flagged(l, readFixtures(t, "isbot-browsers.yml"), false)
	t.Logf("isbot browser fixtures (old and odd browsers included): %.1f %% flagged", pct)
}

// TestBotListIndex checks the literal index against the plain way: no
// pattern, run on its own, matches a User-Agent of the corpora that Match
// passes. (A User-Agent that Match flags has been matched by one of the
// patterns themselves, so only the other side can go wrong.)
func TestBotListIndex(t *testing.T) {
	var pats []*regexp.Regexp
	for _, e := range mustEntries(t, embeddedBotList) {
		if browserListPatterns[e] == "" {
			pats = append(pats, regexp.MustCompile(e))
		}
	}
	for _, p := range genericBotPatterns {
		pats = append(pats, regexp.MustCompile("(?i)"+p))
	}
	l := DefaultBotList()
	var all []string
	all = append(all, readLines(t, "crawler-user-agents-instances.txt")...)
	all = append(all, readLines(t, "browsers.txt")...)
	all = append(all, readFixtures(t, "isbot-crawlers.yml")...)
	all = append(all, readFixtures(t, "isbot-browsers.yml")...)
	all = append(all, "", "a", "ab", "abc", "GOOGLEBOT", "kube-probe/1.33", strings.Repeat("bot ", 4000))
	step := 1
	if raceEnabled {
		step = 16 // every pattern on every User-Agent takes 15 s there
	}
	for i := 0; i < len(all); i += step {
		ua := all[i]
		if l.Match([]byte(ua)) {
			continue
		}
		if i := slices.IndexFunc(pats, func(re *regexp.Regexp) bool { return re.MatchString(ua) }); i >= 0 {
			t.Errorf("Match(%q) = false, but pattern %q matches it", ua, pats[i])
		}
	}
}

func mustEntries(t *testing.T, data []byte) []string {
	t.Helper()
	var list []botPattern
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list {
		out = append(out, *e.Pattern)
	}
	return out
}

func TestRequiredLiterals(t *testing.T) {
	f := func(pattern string, want ...string) {
		t.Helper()
		l, err := compileBotList([]string{pattern}, 1)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, cs := range l.byTrigram {
			for _, c := range cs {
				got = append(got, c.lit)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%q: literals %q, want %q", pattern, got, want)
		}
		if (len(want) == 0) != (len(l.rest) == 1) {
			t.Errorf("%q: rest %v", pattern, l.rest)
		}
	}
	f(`Googlebot\/`, "googlebot/")
	f(`[wW]get`, "wget")
	f(`(?i)^mozilla/\d\.\d [\w.-]+$`, "mozilla/")
	f(`(Aa|Bb)crawler`, "crawler")
	f(`(foo|bar)x`, "bar", "foo")
	f(`foo|ba`) // "ba" is too short to index: the pattern runs on every User-Agent
	f(`x+yz`)
	f(`(abc)+`, "abc")
	f(`(abc)*de`)
	f(`^[\w.-]+/[\w.-]*$`)
}

func TestParseBotList(t *testing.T) {
	t.Run("Good", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bots.json")
		data := `[{"pattern": "AcmeFetcher", "instances": ["AcmeFetcher/1.0"]}, {"pattern": "^[Ee]xample-agent"}]`
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := LoadBotList(path)
		if err != nil {
			t.Fatal(err)
		}
		if s := l.String(); !strings.Contains(s, path) || !strings.Contains(s, "2 patterns") {
			t.Errorf("String() = %q", s)
		}
		f := func(ua string, want bool) {
			t.Helper()
			if got := l.Match([]byte(ua)); got != want {
				t.Errorf("Match(%q) = %v, want %v", ua, got, want)
			}
		}
		f("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36 AcmeFetcher", true)
		f("example-agent 3", true)
		f("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", true) // generic: bot
		f("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36", false)
		// The file replaces the built-in list: a name only it knows is
		// no longer matched.
		f("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/100.0.4896.127 Safari/537.36 PTST/220609.133020", false)
		if !DefaultBotList().Match([]byte("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/100.0.4896.127 Safari/537.36 PTST/220609.133020")) {
			t.Error("the built-in list misses PTST")
		}
	})
	t.Run("Bad", func(t *testing.T) {
		f := func(name, data, want string) {
			t.Helper()
			_, err := ParseBotList([]byte(data), "test")
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %v, want one containing %q", name, err, want)
			}
		}
		f("NotJSON", `pattern: bot`, "want a JSON array")
		f("Object", `{"pattern": "bot"}`, "want a JSON array")
		f("Empty", `[]`, "no patterns")
		f("NoPattern", `[{"pattern": "ok"}, {"instances": ["x"]}]`, "entry 1: no pattern")
		f("EmptyPattern", `[{"pattern": ""}]`, "entry 0: no pattern")
		f("Lookbehind", `[{"pattern": "ok"}, {"pattern": "(?<!cu)bot"}]`, `entry 1: pattern "(?<!cu)bot"`)
	})
	t.Run("Missing", func(t *testing.T) {
		_, err := LoadBotList(filepath.Join(t.TempDir(), "none.json"))
		if err == nil || !strings.Contains(err.Error(), "none.json") {
			t.Errorf("error %v", err)
		}
	})
}

// The embedded list is the published file: its VERSION names it, and
// every entry's instances match that entry's pattern (as the list's own
// tests require), so a refresh that breaks either fails here.
func TestEmbeddedBotList(t *testing.T) {
	if v := strings.TrimSpace(embeddedBotListVersion); !regexp.MustCompile(`^crawler-user-agents \d+\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("botlist/VERSION = %q", v)
	}
	var list []struct {
		Pattern   string
		Instances []string
	}
	if err := json.Unmarshal(embeddedBotList, &list); err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		re := regexp.MustCompile(e.Pattern)
		for _, ua := range e.Instances {
			if !re.MatchString(ua) {
				t.Errorf("pattern %q misses its instance %q", e.Pattern, ua)
			}
		}
	}
	if !bytes.Contains(embeddedBotList, []byte(`"pattern"`)) || len(list) < 1000 {
		t.Errorf("embedded list has %d entries", len(list))
	}
}
