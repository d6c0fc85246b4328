// Package config reads and writes speedctl's config file, ~/.speedctl/config:
// KEY=VALUE lines, as the deployment guide expects, that a POSIX shell can
// source (`set -a; . ~/.speedctl/config`) and that hold every forwarder
// variable of the guide.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FileName is the config file's name inside the home folder.
const FileName = "config"

// HomeEnv names the environment variable that moves the home folder, as
// speedctl's --home flag does.
const HomeEnv = "SPEEDCTL_HOME"

// ErrNotFound is returned by Load when the config file does not exist.
var ErrNotFound = errors.New("no speedctl config")

// Key describes one setting of the config file.
type Key struct {
	Name   string
	Help   string
	Secret bool // shown masked unless asked
}

// Keys are the settings the config file holds, in the order `speedctl
// config show` lists them: every forwarder variable of the deployment
// guide, with the guide's names and meaning, then speedctl's own (the
// hub's URL and a read key for speedctl traffic).
var Keys = []Key{
	{"SPEEDSCALE_APP_URL", "the hub's address (host[:port], or a full URL; a bare host means https)", false},
	{"SPEEDSCALE_API_KEY", "the API key the forwarder presents to the hub", true},
	{"TENANT_ID", "tenant id, carried on every record", false},
	{"TENANT_NAME", "tenant name", false},
	{"SUB_TENANT_NAME", "sub-tenant name (the guide: default)", false},
	{"TENANT_BUCKET", "S3 bucket for raw batches", false},
	{"TENANT_REGION", "the bucket's AWS region", false},
	{"SUB_TENANT_STREAM", "stream that batches are announced on", false},
	{"CLUSTER_NAME", "cluster label on every record (the guide: ecs)", false},
	{"SPEEDSCALE_FILTER_RULE", "filter that drops unwanted traffic in the forwarder (default standard)", false},
	{"SPEEDSCALE_DLP_CONFIG", "redaction rules, JSON in the vendor's redactlist form", false},
	{"SPEEDSCALE_REDACT", "true or false: the forwarder's default redaction of credentials", false},
	{"FORWARDER_TOKEN", "the shared token of goproxy and the forwarder (their FORWARDER_TOKEN); speedctl ecs writes one here when it is missing", true},
	{"TAPWIRE_HUB_URL", "the hub's URL for speedctl traffic (default SPEEDSCALE_APP_URL)", false},
	{"TAPWIRE_READ_KEY", "a read key of the hub, for speedctl traffic", true},
}

// LookupKey returns the Key named name.
func LookupKey(name string) (Key, bool) {
	i := slices.IndexFunc(Keys, func(k Key) bool { return k.Name == name })
	if i < 0 {
		return Key{}, false
	}
	return Keys[i], true
}

// KeyNames returns the names of Keys.
func KeyNames() []string {
	names := make([]string, len(Keys))
	for i, k := range Keys {
		names[i] = k.Name
	}
	return names
}

// DefaultHome is the home folder when --home is not given: $SPEEDCTL_HOME
// if set, else ~/.speedctl.
func DefaultHome(getenv func(string) string) (string, error) {
	if h := getenv(HomeEnv); h != "" {
		return h, nil
	}
	home := getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("find the home folder (set --home or %s): %w", HomeEnv, err)
		}
	}
	return filepath.Join(home, ".speedctl"), nil
}

// File is a config file: its entries in order, with the comments and
// blank lines between them kept as they were.
type File struct {
	Path    string // where Load found it or Save writes it
	entries []entry
}

// entry is one logical line: an assignment (key set) or a comment or
// blank line. raw is its exact text, with its final newline if any.
type entry struct {
	raw        string
	key, value string
}

// New returns an empty File that Save writes to home/config.
func New(home string) *File {
	return &File{Path: filepath.Join(home, FileName)}
}

// Load reads home/config. A missing file gives an error wrapping
// ErrNotFound that says how to create one.
func Load(home string) (*File, error) {
	path := filepath.Join(home, FileName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s: create it with `speedctl config set SPEEDSCALE_APP_URL=... SPEEDSCALE_API_KEY=... TENANT_ID=...` (see `speedctl config set --help`), or point --home at the folder that holds one", ErrNotFound, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s:%w", path, err)
	}
	f.Path = path
	return f, nil
}

// Get returns the value of key, as a shell sourcing the file would see it
// (the last assignment wins).
func (f *File) Get(key string) (string, bool) {
	for i := len(f.entries) - 1; i >= 0; i-- {
		if f.entries[i].key == key {
			return f.entries[i].value, true
		}
	}
	return "", false
}

// Lookup is Get without the second result, for use as a getenv.
func (f *File) Lookup(key string) string {
	v, _ := f.Get(key)
	return v
}

// Names returns the keys the file sets, in the order of their last
// assignment.
func (f *File) Names() []string {
	var names []string
	for i := len(f.entries) - 1; i >= 0; i-- {
		if k := f.entries[i].key; k != "" && !slices.Contains(names, k) {
			names = append(names, k)
		}
	}
	slices.Reverse(names)
	return names
}

// Set assigns value to key: the last assignment of key is rewritten in
// place (earlier ones are removed), or a new line is appended.
func (f *File) Set(key, value string) error {
	if !validName(key) {
		return fmt.Errorf("key %q: want letters, digits and _, not starting with a digit", key)
	}
	raw := key + "=" + Quote(value) + "\n"
	last := -1
	for i, e := range f.entries {
		if e.key == key {
			last = i
		}
	}
	if last < 0 {
		if n := len(f.entries); n > 0 && !strings.HasSuffix(f.entries[n-1].raw, "\n") {
			f.entries[n-1].raw += "\n"
		}
		f.entries = append(f.entries, entry{raw: raw, key: key, value: value})
		return nil
	}
	out := make([]entry, 0, len(f.entries))
	for i, e := range f.entries {
		switch {
		case i == last:
			out = append(out, entry{raw: raw, key: key, value: value})
		case e.key == key: // an earlier assignment, which the last one overrode
		default:
			out = append(out, e)
		}
	}
	f.entries = out
	return nil
}

// Bytes returns the file's text.
func (f *File) Bytes() []byte {
	var b strings.Builder
	for _, e := range f.entries {
		b.WriteString(e.raw)
	}
	return []byte(b.String())
}

// Save writes the file to f.Path, mode 0600 in a folder created with mode
// 0700, through a temporary file and a rename so that a reader never sees
// half a file.
func (f *File) Save() error {
	dir := filepath.Dir(f.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create config folder: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+FileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing left to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if _, err := tmp.Write(f.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Quote returns value as a POSIX shell word: bare when every byte is
// safe, else in single quotes (a ' inside becomes '\”).
func Quote(value string) string {
	if value != "" && strings.Trim(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return value
	}
	return "'" + strings.ReplaceAll(value, "'", `'\''`) + "'"
}
