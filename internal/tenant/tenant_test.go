package tenant

import (
	"context"
	"testing"
)

func TestScope(t *testing.T) {
	t.Parallel()
	id := NewID()
	tests := []struct {
		name            string
		sc              Scope
		valid, platform bool
		tenant          ID
	}{
		{"Zero", Scope{}, false, false, ID{}},
		{"OfZeroID", Of(ID{}), false, false, ID{}},
		{"Tenant", Of(id), true, false, id},
		{"Platform", Platform(), true, true, ID{}},
	}
	for _, tc := range tests {
		if tc.sc.Valid() != tc.valid || tc.sc.IsPlatform() != tc.platform || tc.sc.Tenant() != tc.tenant {
			t.Errorf("%s: Valid %v IsPlatform %v Tenant %v", tc.name, tc.sc.Valid(), tc.sc.IsPlatform(), tc.sc.Tenant())
		}
	}
	if Of(id) == Platform() || (Scope{}) == Platform() {
		t.Error("a tenant scope or the zero scope equals the platform's")
	}
}

func TestScopeFrom(t *testing.T) {
	t.Parallel()
	if sc, ok := ScopeFrom(context.Background()); ok || sc.Valid() {
		t.Errorf("empty context: %v, %v", sc, ok)
	}
	if sc, ok := ScopeFrom(WithScope(context.Background(), ID{})); ok || sc.Valid() {
		t.Errorf("zero tenant in context: %v, %v; want no scope", sc, ok)
	}
	id := NewID()
	if sc, ok := ScopeFrom(WithScope(context.Background(), id)); !ok || sc != Of(id) {
		t.Errorf("tenant in context: %v, %v", sc, ok)
	}
}
