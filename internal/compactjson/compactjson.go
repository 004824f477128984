// Package compactjson encodes JSON values the way their byte budgets are
// measured: compact, UTF-8, without the HTML escaping of encoding/json
// (which would count a "<" as six bytes).
package compactjson

import (
	"bytes"
	"encoding/json"
)

// Marshal returns v's compact JSON encoding.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

// Size is the size of v's compact JSON encoding, or -1 when v cannot be
// encoded.
func Size(v any) int {
	b, err := Marshal(v)
	if err != nil {
		return -1
	}
	return len(b)
}
