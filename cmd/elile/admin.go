package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/config"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/tenant"
)

// openDBFromEnv loads the configuration and opens the pool (openDB).
func openDBFromEnv(ctx context.Context, getenv func(string) string, stderr io.Writer) (*postgres.DB, func(), error) {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return nil, nil, err
	}
	return openDB(ctx, cfg, stderr)
}

// openDB opens the pool for an admin command and waits for the database.
func openDB(ctx context.Context, cfg config.Config, stderr io.Writer) (*postgres.DB, func(), error) {
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return nil, nil, err
	}
	o, closeKMS, err := storeOptions(ctx, cfg, 2)
	if err != nil {
		return nil, nil, err
	}
	db, err := postgres.Open(ctx, o)
	if err != nil {
		closeKMS()
		return nil, nil, err
	}
	if err := db.WaitReady(ctx, cfg.DatabaseConnectTimeout, log); err != nil {
		db.Close()
		closeKMS()
		return nil, nil, err
	}
	return db, func() { db.Close(); closeKMS() }, nil
}

type keyJSON struct {
	KeyID    string   `json:"key_id"`
	Secret   string   `json:"secret"`
	Scopes   []string `json:"scopes"`
	TenantID *string  `json:"tenant_id,omitempty"`
}

// createKey makes an API key as the system actor.
func createKey(ctx context.Context, db *postgres.DB, t tenant.ID, name string, scopes []string) (auth.Key, string, error) {
	return tenancy.NewService(db.Tenancy(), nil).CreateKey(ctx, t, tenancy.NewKey{Name: name, Scopes: scopes, Via: "cli"})
}

// createTenant makes a tenant and its first tenant-admin key, in one
// transaction.
func createTenant(ctx context.Context, db *postgres.DB, id tenant.ID, name, slug, locale string) (tenant.Tenant, auth.Key, string, error) {
	c, err := tenancy.NewService(db.Tenancy(), nil).Create(ctx, tenancy.NewTenant{ID: id, Name: name, Slug: slug, Locale: locale,
		AdminKey: true, Via: "cli"})
	return c.Tenant, c.Key, c.Secret, err
}

//nolint:gochecknoglobals // the tenant commands' usage, read-only
var tenantCommands = map[string]subcommand{
	"create": {"elile tenant create --name NAME [--slug SLUG] [--locale US] [--json]", "create a tenant and print its first admin API key (shown once)"},
	"erase":  {"elile tenant erase TENANT_ID --confirm SLUG [--json]", "erase a tenant: destroy its keys, then delete its rows; run again to continue"},
}

func cmdTenant(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub, err := group("tenant", args, tenantCommands, []string{"create", "erase"}, stdout)
	if err != nil {
		return err
	}
	if sub == "erase" {
		return cmdTenantErase(ctx, args[1:], getenv, stdout, stderr)
	}
	fs := flag.NewFlagSet("tenant create", flag.ContinueOnError)
	name := fs.String("name", "", "display name (required)")
	slug := fs.String("slug", "", "3-63 of a-z, 0-9, - (default: from the name)")
	locale := fs.String("locale", "US", "locale")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args[1:], stdout, tenantCommands[sub].use, tenantCommands[sub].about); err != nil {
		return err
	}
	*name = strings.TrimSpace(*name)
	if *name == "" || len(*name) > 200 {
		return usageError{errors.New("--name is required (1 to 200 characters)")}
	}
	db, closeDB, err := openDBFromEnv(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer closeDB()
	t, k, secret, err := createTenant(ctx, db, tenant.NewID(), *name, *slug, *locale)
	if fields := apperr.FieldsOf(err); len(fields) > 0 {
		return usageError{fmt.Errorf("%s: %s", fields[0].Path, fields[0].Message)}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"tenant_id": t.ID.String(),
			"api_key": keyJSON{KeyID: k.ID.String(), Secret: secret, Scopes: k.Scopes}})
	}
	fmt.Fprintf(stdout, "tenant %s (%s) created\nadmin API key %s (shown once): %s\n", t.ID, t.Slug, k.ID, secret)
	return nil
}

func cmdAPIKey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmds := map[string]subcommand{"create": {"elile apikey create (--tenant ID --scopes a,b | --platform-admin) [--name NAME] [--json]",
		"print a new API key once: a tenant's with the given scopes, or a platform admin's"}}
	if _, err := group("apikey", args, cmds, []string{"create"}, stdout); err != nil {
		return err
	}
	fs := flag.NewFlagSet("apikey create", flag.ContinueOnError)
	tid := fs.String("tenant", "", "tenant id")
	scopes := fs.String("scopes", "", "comma-separated scopes")
	platform := fs.Bool("platform-admin", false, "a platform-admin key (no tenant)")
	name := fs.String("name", "", "key name")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args[1:], stdout, cmds["create"].use, cmds["create"].about); err != nil {
		return err
	}
	var t tenant.ID
	var list []string
	switch {
	case *platform && (*tid != "" || *scopes != ""):
		return usageError{errors.New("--platform-admin takes neither --tenant nor --scopes")}
	case *platform:
		list = []string{auth.ScopePlatformAdmin}
	default:
		var err error
		if t, err = tenant.ParseID(*tid); err != nil {
			return usageError{errors.New("usage: " + cmds["create"].use)}
		}
		for _, s := range strings.Split(*scopes, ",") {
			s = strings.TrimSpace(s)
			if s == auth.ScopePlatformAdmin || !auth.ValidScope(s) {
				return usageError{fmt.Errorf("scope %q: want some of %s", s, strings.Join(append(auth.TenantScopes(), auth.ScopeTenantAdmin), ", "))}
			}
			list = append(list, s)
		}
	}
	if *name == "" {
		*name = "cli key"
	}
	db, closeDB, err := openDBFromEnv(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer closeDB()
	if !t.IsZero() {
		if _, err := db.Tenant(ctx, t); errors.Is(err, tenant.ErrNotFound) {
			return usageError{fmt.Errorf("--tenant %s: no such tenant", t)}
		} else if err != nil {
			return err
		}
	}
	k, secret, err := createKey(ctx, db, t, *name, list)
	if err != nil {
		return err
	}
	if *asJSON {
		out := keyJSON{KeyID: k.ID.String(), Secret: secret, Scopes: k.Scopes}
		var tenantID *string
		if !t.IsZero() {
			s := t.String()
			tenantID = &s
		}
		return json.NewEncoder(stdout).Encode(struct {
			keyJSON
			TenantID *string `json:"tenant_id"`
		}{out, tenantID})
	}
	fmt.Fprintf(stdout, "API key %s (shown once): %s\n", k.ID, secret)
	return nil
}

// bootstrapDev gives a fresh development database a tenant and an admin
// key, and prints a request that works. Its credentials are kept beside the
// development keys so later runs can remind the developer.
func bootstrapDev(ctx context.Context, cfg config.Config, db *postgres.DB, stdout io.Writer) error {
	credFile := filepath.Join(filepath.Dir(cfg.DevKeysFile), "dev-credentials.env")
	existing, err := db.Tenants(ctx, uuid.Nil, 1)
	if err != nil {
		return err
	}
	if len(existing) > 0 {
		if _, err := os.Stat(credFile); err == nil {
			fmt.Fprintf(stdout, "development credentials: %s\n", credFile)
		} else {
			fmt.Fprintf(stdout, "the database has tenants already; for an API key run:\n  bin/elile apikey create --tenant %s --scopes tenant:admin\n", existing[0].ID)
		}
		return nil
	}
	id := tenant.NewID()
	if u := uuid.MustParse(cfg.DefaultTenantID); u != uuid.Nil {
		id = tenant.ID(u)
	}
	t, _, secret, err := createTenant(ctx, db, id, "Development", "dev", "US")
	if err != nil {
		return fmt.Errorf("create the development tenant: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(credFile), 0o700); err == nil {
		_ = os.WriteFile(credFile, []byte(fmt.Sprintf("ELILE_TENANT_ID=%s\nELILE_API_KEY=%s\n", t.ID, secret)), 0o600)
	}
	fmt.Fprintf(stdout, `
Created a development tenant %s and an admin API key (also saved in %s):

  curl -s -H 'Authorization: Bearer %s' -H 'X-Tenant-ID: %s' http://%s/v1/tenant

`, t.ID, credFile, secret, t.ID, cfg.Addr())
	return nil
}

// cmdTenantErase erases a tenant (tenancy.Service.Erase): its keys are
// destroyed in the key provider, then its rows deleted batch by batch.
// Interrupted, it can be run again and continues.
func cmdTenantErase(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tenant erase", flag.ContinueOnError)
	confirm := fs.String("confirm", "", "the tenant's slug, to confirm (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	if len(args) == 0 {
		return usageError{errors.New("usage: " + tenantCommands["erase"].use)}
	}
	rest := args[1:]
	if isHelp(args[0]) {
		rest = args
	}
	if err := parseFlags(fs, rest, stdout, tenantCommands["erase"].use, tenantCommands["erase"].about); err != nil {
		return err
	}
	id, err := tenant.ParseID(args[0])
	if err != nil || *confirm == "" {
		return usageError{errors.New("usage: " + tenantCommands["erase"].use)}
	}
	db, closeDB, err := openDBFromEnv(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer closeDB()
	e, err := tenancy.NewService(db.Tenancy(), nil).Erase(ctx, id, *confirm, "cli")
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"tenant_id": id.String(), "keys_destroyed": e.KeysDestroyed,
			"rows_deleted": e.RowsDeleted, "done": e.Done})
	}
	fmt.Fprintf(stdout, "tenant %s: keys destroyed by the provider: %t; %d rows deleted; done: %t\n", id, e.KeysDestroyed, e.RowsDeleted, e.Done)
	if !e.KeysDestroyed {
		fmt.Fprintln(stdout, "the provider did not destroy the keys (local provider, or a key the tenant brought): copies of the database can still be decrypted with that key")
	}
	return nil
}
