package replay

import (
	"errors"
	"fmt"
)

// Errors of a replay that the command turns into exit statuses.
var (
	// ErrUsage marks a configuration that cannot run: a bad flag value, a transforms file that does not read,
	// a recording without inbound HTTP records.
	ErrUsage = errors.New("bad usage")
	// ErrUnreachable marks a target that does not accept connections.
	ErrUnreachable = errors.New("target unreachable")
	// ErrWrongTarget marks a target that answers, but not as the recorded service does: none of the first
	// answers had the recorded status.
	ErrWrongTarget = errors.New("target does not look like the recorded service")
)

func errBadPath(s, why string) error {
	return fmt.Errorf("%w: path %q: %s", ErrUsage, s, why)
}
