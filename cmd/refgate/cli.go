package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/peterbourgon/ff/v3"
	"gopkg.in/yaml.v2"
)

// commandDocs are the help texts of the commands that take serve's
// configuration, printed above the flags by -h / --help.
var commandDocs = map[string]string{
	"refgate serve": `Usage: refgate serve [flags]

Runs the public edge (clicks) and the API. Every flag can also be set as a
REFGATE_* environment variable (--api-listen is REFGATE_API_LISTEN) or as a
key of the YAML file --config names; a flag wins over the environment,
which wins over the file.
`,
	"refgate validate": `Usage: refgate validate [--config FILE] [flags]

Checks a configuration as serve would read it (flags, REFGATE_* environment,
the --config file) without opening a store or a listener: exit 0 and
"configuration ok", 1 listing every problem, 2 for a flag it does not know.
It takes serve's flags.
`,
}

// usageError is a command line the flag package could not read (an
// unknown flag, a value of the wrong form, a stray argument): the command
// answers it with the error, a hint, and exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usageFailed prints err and where the flags are listed to stderr, and
// returns exit status 2.
func usageFailed(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "%s: %v\nrun '%s --help' for the flags\n", cmd, err, cmd)
	return 2
}

// parseFlags reads args into fs with ff: the command line, then REFGATE_*
// environment variables, then the --config file (if fs has that flag),
// the first to set a value winning. Asked for help (-h, --help) it prints
// doc and fs's flags to help and returns flag.ErrHelp. Errors are
// returned, never printed: the flag package's own output (usage before
// the error) is discarded. A command line error is a usageError.
func parseFlags(fs *flag.FlagSet, args []string, help io.Writer, doc string, opts ...ff.Option) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if fs.Lookup("config") != nil {
		opts = append([]ff.Option{ff.WithConfigFileFlag("config"), ff.WithConfigFileParser(configFileParser(fs))}, opts...)
	}
	err := ff.Parse(fs, args, append([]ff.Option{ff.WithEnvVarPrefix("REFGATE")}, opts...)...)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(help, doc)
		if hasFlags(fs) {
			fmt.Fprint(help, "\nFlags:\n")
			fs.SetOutput(help)
			fs.PrintDefaults()
		}
		return flag.ErrHelp
	case err != nil && !commandLineError(err):
		return err
	case err != nil:
		// ff says "error parsing commandline arguments: " before the
		// flag package's own message, which says it all.
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %v", fs.Args())}
	}
	return nil
}

// commandLineError reports whether ff failed on the command line rather
// than on the environment or the config file.
func commandLineError(err error) bool {
	return strings.HasPrefix(err.Error(), "error parsing commandline arguments: ")
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// configFileParser reads the --config file as YAML (so JSON too), one
// key per flag, as ffyaml does, but refuses what ffyaml reads wrongly: a
// list or a map where the flag takes one value (ffyaml sets the flag once
// per element, so `listen: [1,2]` became listen 2), and a key given twice
// (the last one won). The errors name the file and the key.
func configFileParser(fs *flag.FlagSet) ff.ConfigFileParser {
	return func(r io.Reader, set func(name, value string) error) error {
		file := fs.Lookup("config").Value.String()
		fail := func(format string, args ...any) error {
			return fmt.Errorf("--config %s: "+format, append([]any{file}, args...)...)
		}
		var m yaml.MapSlice
		if err := yaml.NewDecoder(r).Decode(&m); err != nil && !errors.Is(err, io.EOF) {
			return fail("%v", err)
		}
		seen := map[string]bool{}
		for _, kv := range m {
			key, ok := kv.Key.(string)
			if !ok {
				return fail("key %v is not a flag name", kv.Key)
			}
			if seen[key] {
				return fail("key %q is given twice", key)
			}
			seen[key] = true
			v, err := scalar(kv.Value)
			if items, ok := kv.Value.([]any); ok && listFlags[key] {
				v, err = joinList(items)
			}
			if err != nil {
				return fail("key %q: %v", key, err)
			}
			if err := set(key, v); err != nil {
				return fail("%v", err)
			}
		}
		return nil
	}
}

// listFlags take a comma-separated list, which the config file may also
// write as a YAML list of values.
var listFlags = map[string]bool{"trusted-proxies": true, "redis-addrs": true}

// joinList is a YAML list of values as the comma-separated text a list flag
// parses.
func joinList(items []any) (string, error) {
	parts := make([]string, len(items))
	for i, it := range items {
		v, err := scalar(it)
		if err != nil {
			return "", fmt.Errorf("element %d: %v", i+1, err)
		}
		parts[i] = v
	}
	return strings.Join(parts, ","), nil
}

// scalar is a YAML value as the text a flag parses, or an error for a list
// or a map.
func scalar(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(v), nil
	case nil:
		return "", nil
	case []any:
		return "", errors.New("a list, where the flag takes one value (write a list as one comma-separated string)")
	case yaml.MapSlice, map[any]any:
		return "", errors.New("a map, where the flag takes one value")
	}
	return "", fmt.Errorf("a %T, where the flag takes one value", v)
}

// commandDoc is the help text of the command name, or a usage line.
func commandDoc(name string) string {
	if d, ok := commandDocs[name]; ok {
		return d
	}
	return "Usage: " + name + " [flags]\n"
}
