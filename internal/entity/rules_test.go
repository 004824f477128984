package entity

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/elile/elile/internal/apperr"
)

func raw(s ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(s))
	for i, v := range s {
		out[i] = json.RawMessage(v)
	}
	return out
}

func rawStrings(in []json.RawMessage) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}

func TestComputeDelta(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		prev, next        Profile
		wantNew, wantGone []string
		wantScore         float64
		wantConns         int
	}{
		{name: "FindingMatchedByID",
			prev:    Profile{Findings: raw(`{"id":1,"severity":"low"}`), RiskScore: map[string]any{"overall": 0.2}},
			next:    Profile{Findings: raw(`{"id":1,"severity":"high"}`), RiskScore: map[string]any{"overall": 0.5}},
			wantNew: []string{}, wantGone: []string{}, wantScore: 0.3},
		{name: "FindingWithoutIDMatchedByContentWhateverTheKeyOrder",
			prev: Profile{Findings: raw(`{"a":1,"b":2}`)}, next: Profile{Findings: raw(`{"b":2,"a":1}`)},
			wantNew: []string{}, wantGone: []string{}},
		{name: "NewAndResolved",
			prev:    Profile{Findings: raw(`{"id":"x"}`, `{"id":"y"}`), Connections: raw(`1`, `2`, `3`)},
			next:    Profile{Findings: raw(`{"id":"y"}`, `{"id":"z"}`), Connections: raw(`1`)},
			wantNew: []string{`{"id":"z"}`}, wantGone: []string{`{"id":"x"}`}, wantConns: -2},
		{name: "IDsOfDifferentJSONTypesDiffer",
			prev: Profile{Findings: raw(`{"id":1}`)}, next: Profile{Findings: raw(`{"id":"1"}`)},
			wantNew: []string{`{"id":"1"}`}, wantGone: []string{`{"id":1}`}},
		{name: "ScoreChangeRoundedTo6Places",
			prev: Profile{RiskScore: map[string]any{"overall": 0.1}}, next: Profile{RiskScore: map[string]any{"overall": 0.3}},
			wantNew: []string{}, wantGone: []string{}, wantScore: 0.2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := ComputeDelta(tc.prev, tc.next)
			if got := rawStrings(d.NewFindings); !reflect.DeepEqual(got, tc.wantNew) {
				t.Errorf("new findings = %v, want %v", got, tc.wantNew)
			}
			if got := rawStrings(d.ResolvedFindings); !reflect.DeepEqual(got, tc.wantGone) {
				t.Errorf("resolved findings = %v, want %v", got, tc.wantGone)
			}
			if d.RiskScoreChange != tc.wantScore {
				t.Errorf("risk score change = %v, want %v", d.RiskScoreChange, tc.wantScore)
			}
			if d.ConnectionCountChange != tc.wantConns {
				t.Errorf("connection count change = %d, want %d", d.ConnectionCountChange, tc.wantConns)
			}
		})
	}
}

func TestFirstDelta(t *testing.T) {
	t.Parallel()
	d := FirstDelta(Profile{Findings: raw(`{"id":1}`), Connections: raw(`1`, `2`), RiskScore: map[string]any{"overall": 0.4}})
	if len(d.NewFindings) != 1 || len(d.ResolvedFindings) != 0 || d.RiskScoreChange != 0.4 || d.ConnectionCountChange != 2 {
		t.Errorf("FirstDelta = %+v, want everything new", d)
	}
	if d := FirstDelta(Profile{}); d.NewFindings == nil || d.ResolvedFindings == nil {
		t.Error("FirstDelta of an empty profile has nil lists (rendered as null)")
	}
}

func paths(fs []apperr.Field) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Path
	}
	return out
}

func TestValidateScore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		score map[string]any
		want  []string
	}{
		{"Valid", map[string]any{"overall": 0.5, "criminal": 1.0, "note": "text is not a score"}, []string{}},
		{"Bounds", map[string]any{"overall": 0.0, "x": 1.0}, []string{}},
		{"MissingOverall", map[string]any{"criminal": 0.5}, []string{"risk_score.overall"}},
		{"OverallNotANumber", map[string]any{"overall": "high"}, []string{"risk_score.overall"}},
		{"OverallOutOfRangeIsOneItem", map[string]any{"overall": 2.0}, []string{"risk_score.overall"}},
		{"OtherScoresOutOfRange", map[string]any{"overall": 0.1, "b": -0.1, "a": 1.5}, []string{"risk_score.a", "risk_score.b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := paths(ValidateScore(tc.score)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ValidateScore(%v) = %v, want %v", tc.score, got, tc.want)
			}
		})
	}
}

func TestNormalizeIdentifiers(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	out, errs := NormalizeIdentifiers(map[string]string{"ssn": "123-45-6789", "email": " A@Example.COM "}, now)
	if len(errs) != 0 || out["ssn"] != "123456789" || out["email"] != "a@example.com" {
		t.Errorf("NormalizeIdentifiers = %v, %v", out, errs)
	}
	_, errs = NormalizeIdentifiers(map[string]string{"ssn": "12", "Bad Kind": "x", "email": "not-an-email"}, now)
	if got := paths(errs); len(got) != 3 {
		t.Errorf("three bad identifiers gave %v, want one item each", got)
	}
	many := map[string]string{}
	for i := range MaxIdentifiers + 1 {
		many["note_"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	if _, errs := NormalizeIdentifiers(many, now); !strings.Contains(strings.Join(paths(errs), ","), "canonical_identifiers") {
		t.Errorf("%d identifiers: %v, want the limit reported", len(many), errs)
	}
}

func TestValidateMetadata(t *testing.T) {
	t.Parallel()
	if errs := ValidateMetadata(map[string]string{"team": "risk"}); len(errs) != 0 {
		t.Errorf("valid metadata: %v", errs)
	}
	bad := map[string]string{"": "empty key", strings.Repeat("k", 65): "v", "long": strings.Repeat("v", 257)}
	if errs := ValidateMetadata(bad); len(errs) != 3 {
		t.Errorf("three bad entries gave %v", errs)
	}
}

func TestService_Changes(t *testing.T) {
	t.Parallel()
	s := NewService(nil, nil, func() time.Time { return time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC) })
	tests := []struct {
		name    string
		patch   IdentifierPatch
		want    map[string]string // kind -> value ("" = removed)
		invalid []string
	}{
		{name: "SetAndRemove", patch: IdentifierPatch{"ssn": "123-45-6789", "passport": nil},
			want: map[string]string{"ssn": "123456789", "passport": ""}},
		{name: "Empty", patch: IdentifierPatch{}, invalid: []string{"canonical_identifiers"}},
		{name: "NotAStringOrNull", patch: IdentifierPatch{"ssn": 123}, invalid: []string{"canonical_identifiers.ssn"}},
		{name: "BadValue", patch: IdentifierPatch{"ssn": "12"}, invalid: []string{"canonical_identifiers.ssn"}},
		{name: "UnknownKind", patch: IdentifierPatch{"dob": "1980-01-01"}, invalid: []string{"canonical_identifiers.dob"}},
		{name: "RemovingAKindNoLongerAccepted", patch: IdentifierPatch{"drivers_license": nil}, want: map[string]string{"drivers_license": ""}},
		{name: "RemovingABadKind", patch: IdentifierPatch{"Not Valid": nil}, invalid: []string{"canonical_identifiers.Not Valid"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			changes, bad := identifierChanges(tc.patch, s.now())
			if got := paths(bad); len(tc.invalid) > 0 || len(got) > 0 {
				if !reflect.DeepEqual(got, tc.invalid) {
					t.Fatalf("invalid fields = %v, want %v", got, tc.invalid)
				}
				return
			}
			got := map[string]string{}
			for k, v := range changes {
				got[k] = ""
				if v != nil {
					got[k] = *v
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("changes = %v, want %v", got, tc.want)
			}
		})
	}
	tooMany := IdentifierPatch{}
	for i := range 2*MaxIdentifiers + 1 {
		tooMany[strings.Repeat("k", 1+i%60)+"_"+string(rune('a'+i%26))+string(rune('a'+i/26))] = nil
	}
	if _, bad := identifierChanges(tooMany, s.now()); len(bad) != 1 || bad[0].Path != "canonical_identifiers" {
		t.Errorf("a patch of %d changes = %v, want canonical_identifiers invalid", len(tooMany), bad)
	}
}

func TestEntity_MaskedAndShared(t *testing.T) {
	t.Parallel()
	e := Entity{Identifiers: map[string]string{"ssn": "123456789", "email": "a@example.com"}}
	m := e.Masked()
	if m["ssn"] == "123456789" || !strings.HasSuffix(m["ssn"], "6789") || m["email"] == "a@example.com" {
		t.Errorf("Masked = %v", m)
	}
	if e.Identifiers["ssn"] != "123456789" {
		t.Error("Masked changed the entity")
	}
	if !e.Shared() {
		t.Error("an entity without a tenant is not shared")
	}
	if got := e.Kinds(); !reflect.DeepEqual(got, []string{"email", "ssn"}) {
		t.Errorf("Kinds = %v", got)
	}
}
