package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/elile/elile/internal/loadtest"
)

func cmdLoadtest(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8000", "server base URL")
	key := fs.String("admin-key", getenv("ELILE_ADMIN_KEY"), "platform-admin API key (default $ELILE_ADMIN_KEY)")
	conc := fs.Int("concurrency", 50, "workers (closed loop) or most requests in flight (open loop)")
	rate := fs.Float64("rate", 0, "requests per second (open loop); 0: closed loop")
	dur := fs.Duration("duration", 0, "how long to run (e.g. 30s)")
	reqs := fs.Int("requests", 0, "how many requests to make")
	mixFlag := fs.String("mix", "create_entity=2,get_entity=4,search=2,create_profile=1,read_cache=1,query_audit=1", "operation weights")
	seed := fs.Int("seed", 50, "entities to create before the run, for the reads")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	quiet := fs.Bool("quiet", false, "no progress lines")
	maxErr := fs.Int("max-errors", -1, "exit 1 when more requests than this fail (-1: never)")
	max5xx := fs.Int("max-5xx", -1, "exit 1 when more requests than this get a 5xx (-1: never)")
	hooks := fs.Bool("webhooks", false, "subscribe a receiver on loopback to the run's entity.created events and report their delivery lag (the server needs WEBHOOK_ALLOW_LOOPBACK=true)")
	if err := parseFlags(fs, args, stdout, "elile loadtest --admin-key K [--concurrency N] [--duration D | --requests N] [--rate R] [--mix …] [--json]",
		"drive a running server with mixed traffic and report latencies per operation; loopback by default"); err != nil {
		return err
	}
	mix, err := loadtest.ParseMix(*mixFlag)
	if err != nil {
		return usageError{err}
	}
	if *key == "" {
		return usageError{errors.New("--admin-key (or ELILE_ADMIN_KEY) is required: make one with elile apikey create --platform-admin")}
	}
	if *dur == 0 && *reqs == 0 {
		*dur = 30 * time.Second
	}
	cfg := loadtest.Config{BaseURL: *url, AdminKey: *key, Concurrency: *conc, Rate: *rate, Duration: *dur, Requests: *reqs,
		Mix: mix, Seed: *seed, Webhooks: *hooks}
	if !*quiet {
		cfg.Progress = stderr
	}
	rep, err := loadtest.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprint(stdout, rep.Text())
	}
	if *maxErr >= 0 && rep.Errors > *maxErr {
		return failedCheck{fmt.Sprintf("%d requests failed (allowed %d)", rep.Errors, *maxErr)}
	}
	if *max5xx >= 0 && rep.Status5xx > *max5xx {
		return failedCheck{fmt.Sprintf("%d requests got a 5xx (allowed %d)", rep.Status5xx, *max5xx)}
	}
	return nil
}
