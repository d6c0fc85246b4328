package format

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/markdown"
)

// Markdown is the vendor's Markdown recordings: a directory
// recorded-<time>/<host>/<time>.md, one exchange per file. It is read from
// and written to a directory, not a stream (NewDirWriter, ReadPath).
const Markdown Name = "md"

func init() {
	formats[Markdown] = info{"md", "text/markdown", "the vendor's Markdown recordings: a directory, one .md file per exchange", nil}
}

// Source is one file, or one Markdown recording, that ReadPath reads.
type Source struct {
	Path   string
	Format Name // "" until read
}

// ErrNoRecords is the error of Sources for a directory without record
// files.
var ErrNoRecords = errors.New("no record files")

// Sources lists what ReadPath would read at path: the file itself; for a
// directory holding Markdown recordings (.md files that look like one), the
// directory as one Markdown source; for another directory, every regular
// file below it named as record files are (.jsonl, .ndjson, .json, .har),
// not starting with a dot, in natural order (the file sink's
// records-<stamp>-2.jsonl before -10.jsonl); other files (notes, READMEs)
// are left alone.
func Sources(path string) ([]Source, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []Source{{Path: path}}, nil
	}
	var files []string
	md := false
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != path {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if strings.EqualFold(filepath.Ext(p), markdown.Ext) && !md {
			md = looksMarkdown(p)
		}
		if recordFile(p) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if md {
		return []Source{{Path: path, Format: Markdown}}, nil
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: %w", path, ErrNoRecords)
	}
	sortNatural(files)
	out := make([]Source, len(files))
	for i, f := range files {
		out[i] = Source{Path: f}
	}
	return out, nil
}

// recordFile reports whether a file in a directory is read as records, by
// its name.
func recordFile(p string) bool {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".jsonl", ".ndjson", ".json", ".har":
		return true
	}
	return false
}

// looksMarkdown reports whether the file at p starts like a recording.
func looksMarkdown(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, _ := io.ReadFull(f, head)
	return markdown.Looks(head[:n])
}

// Read reads one source and calls fn with each record; it returns the
// format it found. A .md file is one Markdown recording; any other file is
// told apart by Sniff.
func (s Source) Read(fn func(*capture.Record) error) (Name, error) {
	if s.Format == Markdown {
		return Markdown, markdown.ReadDir(s.Path, fn)
	}
	f, err := os.Open(s.Path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if strings.EqualFold(filepath.Ext(s.Path), markdown.Ext) {
		rec, err := markdown.ReadFile(f, s.Path)
		if err != nil {
			return Markdown, err
		}
		return Markdown, fn(rec)
	}
	return ReadRecords(f, fn)
}

// ReadPath reads every record at path (a file in any format, a Markdown
// recording, or a directory of record files; see Sources) and calls fn with
// each. Errors name the file.
func ReadPath(path string, fn func(*capture.Record) error) error {
	srcs, err := Sources(path)
	if err != nil {
		return err
	}
	for _, s := range srcs {
		if _, err := s.Read(fn); err != nil {
			if s.Format == Markdown {
				return err // markdown names its files
			}
			return fmt.Errorf("%s: %w", s.Path, err)
		}
	}
	return nil
}

// NewDirWriter returns a Writer of format n into the directory dir: a
// Markdown recording for Markdown (dir/<host>/<time>.md), one file
// records.<ext> for the stream formats.
func NewDirWriter(n Name, dir string) (Writer, error) {
	if n == Markdown {
		return markdown.NewWriter(dir)
	}
	if _, ok := formats[n]; !ok {
		return nil, fmt.Errorf("%w %q: want %s", ErrUnknown, n, List())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "records."+n.Ext()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	w, err := NewWriter(n, f, defaultCreator)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fileWriter{Writer: w, f: f}, nil
}

type fileWriter struct {
	Writer
	f *os.File
}

func (w *fileWriter) Close() error {
	err := w.Writer.Close()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// sortNatural sorts paths comparing runs of digits as numbers.
func sortNatural(paths []string) {
	for i := 1; i < len(paths); i++ {
		for j := i; j > 0 && natLess(paths[j], paths[j-1]); j-- {
			paths[j], paths[j-1] = paths[j-1], paths[j]
		}
	}
}

func natLess(a, b string) bool {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			i, j := digits(a), digits(b)
			na, nb := strings.TrimLeft(a[:i], "0"), strings.TrimLeft(b[:j], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digits(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}
