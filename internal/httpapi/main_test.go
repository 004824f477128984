package httpapi

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/elile/elile/internal/kv"
)

func TestMain(m *testing.M) {
	kv.QuietDriverLogs()
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"))
}
