package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
)

func chainName(id uuid.UUID) string {
	if id == uuid.Nil {
		return "system"
	}
	return id.String()
}

//nolint:gochecknoglobals // the audit commands' usage, read-only
var auditCommands = map[string]subcommand{
	"verify": {"elile audit verify [--tenant T] [--checkpoint FILE] [--json]",
		"check the audit log's signed seals and events; exit 1 on any tampering"},
	"checkpoint": {"elile audit checkpoint --tenant T",
		"print the chain's latest signed checkpoint, to keep outside the database"},
}

func cmdAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub, err := group("audit", args, auditCommands, []string{"verify", "checkpoint"}, stdout)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("audit "+sub, flag.ContinueOnError)
	var tenantFlag, cpFile *string
	asJSON := new(bool)
	if sub == "verify" {
		tenantFlag = fs.String("tenant", "", "tenant id (default every chain; \"system\" for system events)")
		cpFile = fs.String("checkpoint", "", "a checkpoint saved earlier: prove the log still contains it")
		asJSON = fs.Bool("json", false, "JSON output")
	} else {
		tenantFlag = fs.String("tenant", "", "tenant id, or \"system\" (required)")
		cpFile = new(string)
	}
	if err := parseFlags(fs, args[1:], stdout, auditCommands[sub].use, auditCommands[sub].about); err != nil {
		return err
	}
	var chains []uuid.UUID
	if *tenantFlag == "system" {
		chains = []uuid.UUID{uuid.Nil}
	} else if *tenantFlag != "" {
		id, err := uuid.Parse(*tenantFlag)
		if err != nil {
			return usageError{fmt.Errorf("--tenant %q is not a UUID", *tenantFlag)}
		}
		chains = []uuid.UUID{id}
	}
	if sub == "checkpoint" && len(chains) != 1 {
		return usageError{errors.New("--tenant is required\nusage: " + auditCommands[sub].use)}
	}
	var cp *audit.Checkpoint
	if *cpFile != "" {
		b, err := os.ReadFile(*cpFile)
		if err != nil {
			return usageError{fmt.Errorf("--checkpoint: %w", err)}
		}
		cp = new(audit.Checkpoint)
		if err := json.Unmarshal(b, cp); err != nil {
			return usageError{fmt.Errorf("--checkpoint %s: not a checkpoint: %w", *cpFile, err)}
		}
		cpChain := uuid.Nil
		if cp.Tenant != "" {
			id, err := uuid.Parse(cp.Tenant)
			if err != nil {
				return usageError{fmt.Errorf("--checkpoint %s: tenant_id %q is not a UUID", *cpFile, cp.Tenant)}
			}
			cpChain = id
		}
		switch {
		case len(chains) == 0:
			chains = []uuid.UUID{cpChain}
		case chains[0] != cpChain:
			// Silently verifying without it would report "intact" while
			// proving nothing about the checkpoint.
			return usageError{fmt.Errorf("--checkpoint %s is of chain %s, not of --tenant %s", *cpFile, chainName(cpChain), *tenantFlag)}
		}
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	signer, err := audit.NewSigner(cfg.AuditSeed())
	if err != nil {
		return configError{fmt.Errorf("AUDIT_SIGNING_KEY: %w", err)}
	}
	db, closeDB, err := openDB(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeDB()

	if sub == "checkpoint" {
		s, err := db.LatestSeal(ctx, chains[0])
		if apperr.KindOf(err) == apperr.NotFound {
			return failedCheck{"no sealed events in that chain yet"}
		}
		if err != nil {
			return err
		}
		c := audit.CheckpointOf(s)
		c.PublicKey = base64.StdEncoding.EncodeToString(signer.Public())
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(c)
	}

	if len(chains) == 0 {
		if chains, err = db.AuditChains(ctx); err != nil {
			return err
		}
	}
	tampered := 0
	reports := map[string]audit.Report{}
	for _, t := range chains {
		var c *audit.Checkpoint
		if cp != nil && (cp.Tenant == t.String() || cp.Tenant == "" && t == uuid.Nil) {
			c = cp
		}
		rep, err := audit.Verify(ctx, db, t, signer.Public(), c)
		if err != nil {
			return err
		}
		name := t.String()
		if t == uuid.Nil {
			name = "system"
		}
		reports[name] = rep
		if rep.Status != "intact" {
			tampered++
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "%s: %s (%d seals, %d events checked)\n", name, rep.Status, rep.SealsChecked, rep.EventsChecked)
			for _, p := range rep.Problems {
				fmt.Fprintf(stdout, "  seal %d: %s: %s", p.Seq, p.Kind, p.Detail)
				if p.AuditID != uuid.Nil {
					fmt.Fprintf(stdout, " (audit_id %s)", p.AuditID)
				}
				fmt.Fprintln(stdout)
			}
		}
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(reports); err != nil {
			return err
		}
	}
	if tampered > 0 {
		return failedCheck{fmt.Sprintf("audit log tampered: %d of %d chains", tampered, len(chains))}
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "all %d chains intact\n", len(chains))
	}
	return nil
}
