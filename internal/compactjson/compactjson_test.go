package compactjson

import (
	"math"
	"testing"
)

func TestMarshal(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		v    any
		want string
	}{
		{map[string]any{"a": "<b>&", "n": 1.5}, `{"a":"<b>&","n":1.5}`},
		{[]any{"é", nil, true}, `["é",null,true]`},
		{"\x01", `"\u0001"`},
	} {
		got, err := Marshal(c.v)
		if err != nil || string(got) != c.want {
			t.Errorf("Marshal(%v) = %s, %v; want %s", c.v, got, err, c.want)
		}
		if Size(c.v) != len(c.want) {
			t.Errorf("Size(%v) = %d, want %d", c.v, Size(c.v), len(c.want))
		}
	}
	if Size(math.NaN()) != -1 {
		t.Error("NaN has no JSON encoding")
	}
}
