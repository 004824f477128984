package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// checkDeployedMetrics fails when the alert rules or the Grafana dashboard
// name a metric the server does not export (metrics: a /metrics page).
func checkDeployedMetrics(t *testing.T, metrics string) {
	t.Helper()
	exported := map[string]bool{}
	for _, line := range strings.Split(metrics, "\n") {
		if name, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, _, _ = strings.Cut(name, " ")
			exported[name] = true
		}
	}
	name := regexp.MustCompile(`elile_[a-z_]+[a-z]`)
	var checked []string
	for _, f := range []string{"../../deploy/prometheus/alerts.yml", "../../deploy/grafana/elile.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllString(string(b), -1) {
			base := m
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(m, suffix); ok && exported[b] {
					base = b
				}
			}
			if !exported[base] {
				t.Errorf("%s names %s, which /metrics does not export", filepath.Base(f), m)
			}
			if !slices.Contains(checked, base) {
				checked = append(checked, base)
			}
		}
	}
	if len(checked) < 12 {
		t.Errorf("only %d metric names found in the alert rules and dashboard: %v", len(checked), checked)
	}
}

// TestDeploy_PrometheusRules checks the alert rules and runs their unit
// tests with promtool (Debian's prometheus package; CI installs it). On a
// machine without it the test is skipped, saying how to get it — except in
// CI, where it must run.
func TestDeploy_PrometheusRules(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("promtool"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not installed in CI")
		}
		t.Skip("promtool not installed: apt-get install --no-install-recommends prometheus")
	}
	dir := filepath.Join("..", "..", "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
