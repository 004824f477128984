package sourcecache

import (
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/elile/elile/internal/apperr"
)

func TestParseCost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		want string
		ok   bool
	}{
		{"12.50", "12.50", true}, {"0", "0.00", true}, {"999999999999.99", "999999999999.99", true}, {"7.1", "7.10", true},
		{12.5, "12.50", true}, {0.0, "0.00", true}, {1e12, "1000000000000.00", true},
		{"12.505", "", false}, {"-1", "", false}, {"1e3", "", false}, {" 1", "", false}, {"", "", false},
		{"1234567890123", "", false}, {12.345, "", false}, {-0.01, "", false}, {1e12 + 1, "", false},
		{math.NaN(), "", false}, {math.Inf(1), "", false}, {nil, "", false}, {true, "", false},
	}
	for _, tc := range tests {
		got, ok := ParseCost(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseCost(%#v) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestWindows(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ptr := func(d time.Duration) *time.Time { v := at.Add(d); return &v }
	tests := []struct {
		name         string
		checkType    string
		fresh, stale *time.Time
		wantFresh    time.Time
		wantStale    *time.Time
		invalid      []string
	}{
		{name: "CriminalDefaults", checkType: "criminal", wantFresh: at.Add(7 * day), wantStale: ptr(30 * day)},
		{name: "SanctionsNeverFresh", checkType: "sanctions", wantFresh: at, wantStale: ptr(0)},
		{name: "EducationNeverExpires", checkType: "education", wantFresh: at.Add(365 * day)},
		{name: "GivenTimesWin", checkType: "criminal", fresh: ptr(time.Hour), stale: ptr(2 * time.Hour), wantFresh: at.Add(time.Hour), wantStale: ptr(2 * time.Hour)},
		{name: "UnknownTypeNeedsBoth", checkType: "astrology", invalid: []string{"fresh_until", "stale_until"}},
		{name: "UnknownTypeWithBoth", checkType: "astrology", fresh: ptr(time.Hour), stale: ptr(time.Hour), wantFresh: at.Add(time.Hour), wantStale: ptr(time.Hour)},
		{name: "FreshBeforeAcquired", checkType: "criminal", fresh: ptr(-time.Second), invalid: []string{"fresh_until"}},
		{name: "StaleBeforeFresh", checkType: "criminal", fresh: ptr(2 * time.Hour), stale: ptr(time.Hour), invalid: []string{"stale_until"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fresh, stale, errs := Windows(tc.checkType, at, tc.fresh, tc.stale)
			var got []string
			for _, e := range errs {
				got = append(got, e.Path)
			}
			if !reflect.DeepEqual(got, tc.invalid) {
				t.Fatalf("invalid = %v, want %v", got, tc.invalid)
			}
			if len(tc.invalid) > 0 {
				return
			}
			if !fresh.Equal(tc.wantFresh) || !reflect.DeepEqual(stale, tc.wantStale) {
				t.Errorf("windows = %v, %v; want %v, %v", fresh, stale, tc.wantFresh, tc.wantStale)
			}
		})
	}
}

func TestFreshness(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	stale := at.Add(2 * time.Hour)
	e := Entry{FreshUntil: at.Add(time.Hour), StaleUntil: &stale}
	for _, tc := range []struct {
		now  time.Time
		want string
	}{{at, Fresh}, {at.Add(time.Hour - time.Nanosecond), Fresh}, {at.Add(time.Hour), Stale}, {stale, Expired}} {
		if got := e.Freshness(tc.now); got != tc.want {
			t.Errorf("Freshness(%v) = %s, want %s", tc.now, got, tc.want)
		}
	}
	forever := Entry{FreshUntil: at}
	if got := forever.Freshness(at.Add(100 * 365 * day)); got != Stale {
		t.Errorf("an entry without stale_until is %s a century on, want stale", got)
	}
}

func TestService_EntryValidation(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s := NewService(nil, nil, func() time.Time { return now })
	future := now.Add(time.Hour)
	_, err := s.entry([16]byte{1}, NewEntry{CheckType: "astrology", Cost: "x", AcquiredAt: &future})
	got := map[string]bool{}
	for _, f := range apperr.FieldsOf(err) {
		got[f.Path] = true
	}
	for _, want := range []string{"cost_incurred", "acquired_at", "fresh_until", "stale_until"} {
		if !got[want] {
			t.Errorf("invalid fields %v lack %s: every bad field is reported at once", got, want)
		}
	}
	e, err := s.entry([16]byte{1}, NewEntry{CheckType: "criminal", Cost: 3.5})
	if err != nil || e.Currency != "USD" || e.Cost != "3.50" || string(e.NormalizedData) != "{}" || !e.AcquiredAt.Equal(now) {
		t.Errorf("defaults: %+v, %v", e, err)
	}
}
