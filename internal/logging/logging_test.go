package logging_test

import (
	"bytes"
	"strings"
	"testing"

	"log/slog"

	"github.com/elile/elile/internal/logging"
)

func TestAtLeast(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := logging.New(&buf, "json", "DEBUG")
	if err != nil {
		t.Fatal(err)
	}
	quiet := logging.AtLeast(log, slog.LevelWarn).With("component", "jobs")
	quiet.Info("routine")
	quiet.Warn("worth reading")
	log.Info("the rest still logs at info")
	out := buf.String()
	if strings.Contains(out, "routine") || !strings.Contains(out, "worth reading") || !strings.Contains(out, `"component":"jobs"`) ||
		!strings.Contains(out, "the rest still logs") {
		t.Errorf("log:\n%s", out)
	}
}
