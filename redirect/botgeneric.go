package redirect

// genericBotPatterns catch User-Agents that no crawler list names: new and
// private bots, monitors, scripts and HTTP libraries. Each is matched
// case-insensitively, anywhere unless anchored. The idea of a generic
// pattern next to a list, and many of the words, come from isbot's pattern
// (github.com/omrilotan/isbot, public domain); these are written for RE2,
// which has no look-around, so an exception such as "bot but not Cubot" is
// spelt out as the characters that may precede the word.
//
// Every pattern must leave the browsers in testdata/bots alone: real
// visitors' clicks classified as bots lose their attribution silently.
var genericBotPatterns = []string{
	// What bots call themselves. "bot" as a word or a suffix (AcoonBot/,
	// bot_), but not the Cubot phone ("; CUBOT X30").
	`(?:^|[^u]|(?:^|[^c])u|(?:^|[^ ])cu)bots?(?:\b|_)`,
	`crawl`, `spider`, `scrap(?:e|er|ing|y)\b`, `fetch`, `preview`, `archiv`, `indexer`,
	`(?:^|[^m]|(?:^|[^a])m|(?:^|[^c])am)scan`, // scanner, not CamScanner
	`search(?:bot|er|engine|console)|^\w*search\b`,
	`agent\b`, `feed`, `rss\b`, `^rss`, `classif`, `snapshot\b`,

	// Monitors, probes, checkers, site analysers, test browsers.
	`monitor`, `uptime`, `health.?check`, `probe`, `pingdom`, `synthetic`, `24x7`, `status.?cake`,
	`check(?:er|\b)`, `validat`, `analy[sz]`, `audit`, `inspect`, `detect`, `lighthouse`, `pagespeed`,
	`headless`, `phantomjs`, `selenium`, `playwright`, `puppeteer`, `cypress/`, `webdriver`,
	`cloudflare`, `datadog`, `new ?relic`, `gomez`, `proxy`, `capture`, `grab`, `download`,
	`transcod`, `extract`, `parser`, `library`, `tools?\b`, `torrent`, `security`, `burpcollaborator`,

	// HTTP clients and script runtimes. Any "http" is one (a URL in a bot's
	// User-Agent, WinHTTP, go-http-client, aiohttp), except libhttp, which
	// some apps' in-app browsers carry.
	`(?:^|[^b]|(?:^|[^i])b|(?:^|[^l])ib)http`,
	`curl`, `wget`, `\blwp\b`, `python`, `\bperl\b`, `ruby`, `^php|\bphp/`,
	`java(?:$|[^;s])`, `\bnode\b`, `node-fetch`, `undici`, `axios`, `okhttp`, `guzzle`, `restsharp`,
	`^rest`, `postman`, `insomnia`, `\bgrpc-`, `^dart/`, `^go\b`, `^apache`, `^jakarta`,
	`^request`, `^got\b`, `^hyper/`, `reqwest`, `ktor`, `^mechanize`, `^winhttp`,

	// Assistants that fetch on a person's behalf: not a browser click.
	`claude`, `openai`, `perplexity`, `anthropic`, `cohere-`, `^cursor/|\bcursor/\d`,

	// Link previews and app fetchers named at the start.
	`^(?:facebook|whatsapp|snapchat|yahoo|yandex|discourse|wordpress|xenforo|invision|duckduckgo|ddg[_-]android|spotify|zoom marketplace)`,

	// Google's services, but not the Google app or Android's WebView:
	// "google" not after "/" and not followed by "app", "wv", "/g" or
	// " pixel".
	`(?:^|[^/])google(?:$|[^a/w ]|a[^p]|ap[^p]|w[^v]|/[^g]| [^p]| p[^i])`,

	// Shapes no browser sends. A bare name, or one product with a version
	// ("ApacheBench/2.3", "Java/17", "prometheus/2.18.1", "Chrome").
	`^[\w .:%()-]+(?:/v?\d+(?:\.\d+)*)?(?:,|$)`,
	`^[\w.-]+/[\w.-]*$`,
	// One product/version and one comment, not Mozilla's ("Cursor/3.0.16
	// (darwin arm64)", "ClamAV/0.101.5 (OS: linux-gnu, ...)").
	`^(?:[^m]|m[^o]|mo[^z])[\w.-]*/v?[\d.]+ ?\([^()]*\)$`,
	// Mozilla with nothing after it, or with an empty or one-product
	// comment ("Mozilla/5.0 Jorgee", "Mozilla/5.0 (compatible; Trance/1.0)").
	`^mozilla/\d\.\d [\w.-]+$`,
	`^mozilla/\d\.\d \((?:compatible; ?)?(?:[\w.-]+(?:[ /]v?[\d.]+)?)?\)$`,
	`^[^ ]{50,}$`, `^\d+$`, `^[<(;{'"]`, `\(\)`, `\|`, `@[a-z][\w-]*\.[a-z]`, `\.com\b|\.org\b|\.io\b`,
	`^[\w ]+;`,
}
