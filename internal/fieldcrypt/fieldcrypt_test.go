package fieldcrypt_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/fieldcrypt"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, fieldcrypt.KeySize) }

func ring(t testing.TB, active uint32, versions ...uint32) *fieldcrypt.Keyring {
	t.Helper()
	keys := make(map[uint32][]byte)
	for _, v := range versions {
		keys[v] = key(byte(v))
	}
	k, err := fieldcrypt.NewKeyring(keys, active, key(0xbb))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ad() fieldcrypt.AD {
	return fieldcrypt.AD{Table: "entities", Column: "identifiers", Row: uuid.MustParse("01900000-0000-7000-8000-000000000001"),
		Tenant: uuid.MustParse("01900000-0000-7000-8000-0000000000aa")}
}

func TestSealOpen_RoundTrip(t *testing.T) {
	t.Parallel()
	k := ring(t, 1, 1)
	for _, tc := range []struct {
		name string
		pt   []byte
	}{
		{"Empty", []byte{}},
		{"ASCII", []byte(`{"ssn":"123456789"}`)},
		{"MultiByte", []byte("Zoë Ñúñez — 東京都 🙂")},
		{"OneMiB", bytes.Repeat([]byte{0xa5, 0x00, 0x7f}, (1<<20)/3+1)[:1<<20]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ct, err := k.Seal(tc.pt, ad())
			if err != nil {
				t.Fatal(err)
			}
			if len(ct) != len(tc.pt)+fieldcrypt.Overhead {
				t.Errorf("len = %d, want %d", len(ct), len(tc.pt)+fieldcrypt.Overhead)
			}
			if len(tc.pt) > 8 && bytes.Contains(ct, tc.pt[:8]) {
				t.Error("ciphertext contains plaintext")
			}
			got, err := k.Open(ct, ad())
			if err != nil || !bytes.Equal(got, tc.pt) {
				t.Fatalf("Open = %d bytes, %v; want the %d plaintext bytes", len(got), err, len(tc.pt))
			}
		})
	}
}

func TestSeal_FreshNonce(t *testing.T) {
	t.Parallel()
	k := ring(t, 1, 1)
	seen := map[string]bool{}
	for range 1000 {
		ct, err := k.Seal([]byte("same"), ad())
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(ct)] {
			t.Fatal("the same plaintext sealed twice gave the same ciphertext")
		}
		seen[string(ct)] = true
	}
}

func TestOpen_EveryByteFlipFails(t *testing.T) {
	t.Parallel()
	k := ring(t, 1, 1)
	ct, _ := k.Seal([]byte("123-45-6789 and more personal data"), ad())
	for i := range ct {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(ct)
			bad[i] ^= bit
			if _, err := k.Open(bad, ad()); err == nil {
				t.Fatalf("flipping bit %#x of byte %d still opened", bit, i)
			}
		}
	}
}

func TestOpen_BoundToPlace(t *testing.T) {
	t.Parallel()
	k := ring(t, 1, 1)
	ct, _ := k.Seal([]byte("secret"), ad())
	other := uuid.MustParse("01900000-0000-7000-8000-000000000002")
	for name, mutate := range map[string]func(*fieldcrypt.AD){
		"OtherRow":     func(a *fieldcrypt.AD) { a.Row = other },
		"OtherTenant":  func(a *fieldcrypt.AD) { a.Tenant = other },
		"SharedTenant": func(a *fieldcrypt.AD) { a.Tenant = uuid.Nil },
		"OtherColumn":  func(a *fieldcrypt.AD) { a.Column = "findings" },
		"OtherTable":   func(a *fieldcrypt.AD) { a.Table = "entity_profiles" },
		// Length-prefixing keeps "ab"+"c" apart from "a"+"bc".
		"ShiftedBoundary": func(a *fieldcrypt.AD) { a.Table, a.Column = "entitiesi", "dentifiers" },
	} {
		a := ad()
		mutate(&a)
		if _, err := k.Open(ct, a); !errors.Is(err, fieldcrypt.ErrAuthentication) {
			t.Errorf("%s: Open = %v, want ErrAuthentication", name, err)
		}
	}
}

func TestOpen_SwappedCiphertexts(t *testing.T) {
	t.Parallel()
	k := ring(t, 1, 1)
	a1, a2 := ad(), ad()
	a2.Row = uuid.MustParse("01900000-0000-7000-8000-000000000003")
	c1, _ := k.Seal([]byte("row one"), a1)
	c2, _ := k.Seal([]byte("row two"), a2)
	if _, err := k.Open(c2, a1); !errors.Is(err, fieldcrypt.ErrAuthentication) {
		t.Errorf("row two's ciphertext opened as row one: %v", err)
	}
	if _, err := k.Open(c1, a2); !errors.Is(err, fieldcrypt.ErrAuthentication) {
		t.Errorf("row one's ciphertext opened as row two: %v", err)
	}
}

func TestOpen_DistinctErrors(t *testing.T) {
	t.Parallel()
	k1 := ring(t, 1, 1)
	k2 := ring(t, 2, 2)
	ct, _ := k1.Seal([]byte("x"), ad())
	if _, err := k2.Open(ct, ad()); !errors.Is(err, fieldcrypt.ErrUnknownKey) {
		t.Errorf("unknown key: %v, want ErrUnknownKey", err)
	}
	for _, n := range []int{0, 1, 5, fieldcrypt.HeaderSize, fieldcrypt.Overhead - 1} {
		if _, err := k1.Open(ct[:n], ad()); !errors.Is(err, fieldcrypt.ErrTruncated) {
			t.Errorf("truncated to %d: %v, want ErrTruncated", n, err)
		}
	}
	bad := bytes.Clone(ct)
	bad[0] = 9
	if _, err := k1.Open(bad, ad()); !errors.Is(err, fieldcrypt.ErrUnsupportedVersion) {
		t.Errorf("version 9: %v, want ErrUnsupportedVersion", err)
	}
	if _, err := k1.Open([]byte{9}, ad()); !errors.Is(err, fieldcrypt.ErrUnsupportedVersion) {
		t.Errorf("short version 9: %v, want ErrUnsupportedVersion", err)
	}
	if v, err := fieldcrypt.KeyVersion(ct); v != 1 || err != nil {
		t.Errorf("KeyVersion = %d, %v", v, err)
	}
}

func TestKeyring_RotationAndReseal(t *testing.T) {
	t.Parallel()
	old := ring(t, 1, 1)
	both := ring(t, 2, 1, 2)
	onlyNew := ring(t, 2, 2)
	ct1, _ := old.Seal([]byte("value"), ad())
	if pt, err := both.Open(ct1, ad()); err != nil || string(pt) != "value" {
		t.Fatalf("old value under the two-key ring: %q, %v", pt, err)
	}
	ct2, changed, err := both.Reseal(ct1, ad())
	if err != nil || !changed {
		t.Fatalf("Reseal = %v, %v", changed, err)
	}
	if v, _ := fieldcrypt.KeyVersion(ct2); v != 2 {
		t.Fatalf("resealed under %d, want 2", v)
	}
	if _, changed, _ := both.Reseal(ct2, ad()); changed {
		t.Error("Reseal of an active-key value changed it")
	}
	if pt, err := onlyNew.Open(ct2, ad()); err != nil || string(pt) != "value" {
		t.Fatalf("resealed value without key 1: %q, %v", pt, err)
	}
	if _, _, err := both.Reseal([]byte{1}, ad()); err == nil {
		t.Error("Reseal of garbage succeeded")
	}
	wrong := ad()
	wrong.Row = uuid.New()
	if _, _, err := both.Reseal(ct1, wrong); !errors.Is(err, fieldcrypt.ErrAuthentication) {
		t.Errorf("Reseal with the wrong AD = %v", err)
	}
	if got := both.Versions(); len(got) != 2 || got[0] != 1 || got[1] != 2 || both.Active() != 2 {
		t.Errorf("Versions = %v active %d", got, both.Active())
	}
}

func TestNewKeyring_Rejects(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		keys   map[uint32][]byte
		active uint32
		blind  []byte
	}{
		"NoKeys":        {map[uint32][]byte{}, 1, key(1)},
		"ActiveMissing": {map[uint32][]byte{1: key(1)}, 2, key(1)},
		"ShortKey":      {map[uint32][]byte{1: key(1)[:16]}, 1, key(1)},
		"VersionZero":   {map[uint32][]byte{0: key(1), 1: key(1)}, 1, key(1)},
		"ShortBlind":    {map[uint32][]byte{1: key(1)}, 1, key(1)[:31]},
	} {
		if _, err := fieldcrypt.NewKeyring(tc.keys, tc.active, tc.blind); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestBlindIndex(t *testing.T) {
	t.Parallel()
	k := ring(t, 1, 1)
	ta, tb := uuid.New(), uuid.New()
	a1 := k.BlindIndex(ta, "ssn", "123456789")
	if len(a1) != 32 || !bytes.Equal(a1, k.BlindIndex(ta, "ssn", "123456789")) {
		t.Fatal("blind index is not a deterministic 32-byte value")
	}
	if bytes.Equal(a1, k.BlindIndex(tb, "ssn", "123456789")) {
		t.Error("the same SSN in two tenants gave equal indexes")
	}
	if bytes.Equal(a1, k.BlindIndex(ta, "passport", "123456789")) {
		t.Error("an SSN and a passport with the same digits collide")
	}
	if bytes.Equal(k.BlindIndex(ta, "ab", "c"), k.BlindIndex(ta, "a", "bc")) {
		t.Error("kind/value boundary is ambiguous")
	}
	// Independent of the encryption keys: rotation keeps lookups.
	rotated, _ := fieldcrypt.NewKeyring(map[uint32][]byte{7: key(7)}, 7, key(0xbb))
	if !bytes.Equal(a1, rotated.BlindIndex(ta, "ssn", "123456789")) {
		t.Error("blind index changed with the encryption keys")
	}
	otherRoot, _ := fieldcrypt.NewKeyring(map[uint32][]byte{1: key(1)}, 1, key(0xcc))
	if bytes.Equal(a1, otherRoot.BlindIndex(ta, "ssn", "123456789")) {
		t.Error("blind index does not depend on its root key")
	}
	d1, err := fieldcrypt.DeriveBlindRoot(key(1))
	d2, _ := fieldcrypt.DeriveBlindRoot(key(2))
	if err != nil || len(d1) != 32 || bytes.Equal(d1, d2) || bytes.Equal(d1, key(1)) {
		t.Error("DeriveBlindRoot is not a distinct 32-byte derivation")
	}
	if g1, g2 := fieldcrypt.GenerateKey(), fieldcrypt.GenerateKey(); len(g1) != 32 || bytes.Equal(g1, g2) {
		t.Error("GenerateKey is not random 32 bytes")
	}
}

func FuzzOpen(f *testing.F) {
	k, _ := fieldcrypt.NewKeyring(map[uint32][]byte{1: key(1), 2: key(2)}, 2, key(0xbb))
	good, _ := k.Seal([]byte("seed"), ad())
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 1})
	f.Add(bytes.Repeat([]byte{1}, fieldcrypt.Overhead))
	f.Fuzz(func(t *testing.T, ct []byte) {
		// Only a ciphertext this keyring sealed opens; the seeds' is "seed".
		pt, err := k.Open(ct, ad())
		if err == nil && string(pt) != "seed" {
			t.Fatalf("forged ciphertext opened: %x -> %q", ct, pt)
		}
		_, _ = fieldcrypt.KeyVersion(ct)
	})
}

func FuzzSealOpen(f *testing.F) {
	k, _ := fieldcrypt.NewKeyring(map[uint32][]byte{1: key(1)}, 1, key(0xbb))
	f.Add([]byte("hello"), "t", "c")
	f.Fuzz(func(t *testing.T, pt []byte, table, column string) {
		a := fieldcrypt.AD{Table: table, Column: column}
		if len(table) > 1000 || len(column) > 1000 {
			return
		}
		ct, err := k.Seal(pt, a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := k.Open(ct, a)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

func BenchmarkSealOpen200B(b *testing.B) {
	k := ring(b, 1, 1)
	pt := []byte(strings.Repeat("x", 200))
	a := ad()
	b.ReportAllocs()
	for b.Loop() {
		ct, err := k.Seal(pt, a)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := k.Open(ct, a); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBlindIndex(b *testing.B) {
	k := ring(b, 1, 1)
	t := uuid.New()
	b.ReportAllocs()
	for b.Loop() {
		k.BlindIndex(t, "ssn", "123456789")
	}
}
