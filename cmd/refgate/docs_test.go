package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const repoRoot = "../.."

func readRepoFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDocumentedGoVersion: the README and CONTRIBUTING.md name the Go
// version go.mod's go line needs to start and the toolchain its toolchain
// line builds with.
func TestDocumentedGoVersion(t *testing.T) {
	mod := readRepoFile(t, "go.mod")
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(mod)
	tcLine := regexp.MustCompile(`(?m)^toolchain (go\S+)$`).FindStringSubmatch(mod)
	if goLine == nil || tcLine == nil {
		t.Fatal("go.mod lacks its go or toolchain line")
	}
	for _, file := range []string{"README.md", "CONTRIBUTING.md"} {
		doc := readRepoFile(t, file)
		for _, want := range []string{"Go " + goLine[1] + " or later", "export GOTOOLCHAIN=" + tcLine[1] + "\n"} {
			if !strings.Contains(doc, want) {
				t.Errorf("%s lacks %q (go.mod: go %s, toolchain %s)", file, strings.TrimSpace(want), goLine[1], tcLine[1])
			}
		}
	}
}

// TestProjectDocuments: the README links the project's documents, they
// exist, and nothing in the repository cites a design or rules document by
// a name that is not in it.
func TestProjectDocuments(t *testing.T) {
	readme := readRepoFile(t, "README.md")
	for _, doc := range []string{"LICENSE", "CHANGELOG.md", "SECURITY.md", "CONTRIBUTING.md", "docs/design.md", "docs/rules.md"} {
		if _, err := os.Stat(filepath.Join(repoRoot, doc)); err != nil {
			t.Error(err)
		}
		if !strings.Contains(readme, "]("+doc+")") {
			t.Errorf("README.md does not link %s", doc)
		}
	}
	if l := readRepoFile(t, "LICENSE"); !strings.Contains(l, "Apache License\n                           Version 2.0, January 2004") ||
		!strings.Contains(l, "Copyright 2026 The refgate Authors") {
		t.Error("LICENSE is not the Apache License 2.0 with the project's copyright line")
	}
	// Spelled in two parts so that this file does not match itself.
	stale := regexp.MustCompile(`\b(` + "DESIGN" + `|` + "RULES" + `)\.md\b`)
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == ".git" || name == "testdata" || name == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".yaml", ".yml", ".sh":
		default:
			if d.Name() != "Makefile" {
				return nil
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if m := stale.Find(b); m != nil {
			t.Errorf("%s cites %s, which is not in the repository: cite docs/design.md or docs/rules.md", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRuleLabels: every programme rule label the code and the documents
// cite (T 2.5, A 2.2, ...) is one docs/rules.md has.
func TestRuleLabels(t *testing.T) {
	rules := readRepoFile(t, "docs/rules.md")
	label := regexp.MustCompile(`\b[TAKC] [0-9]+\.[0-9]+\b`)
	have := map[string]bool{}
	for _, l := range label.FindAllString(rules, -1) {
		have[l] = true
	}
	var files []string
	for _, pattern := range []string{"attribution/*.go", "api/*.go", "README.md", "docs/*.md"} {
		m, err := filepath.Glob(filepath.Join(repoRoot, pattern))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range label.FindAllString(string(b), -1) {
			if !have[l] {
				t.Errorf("%s cites %q, which docs/rules.md does not have", f, l)
			}
		}
	}
}
