package httpapi

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"github.com/elile/elile/internal/apperr"
)

// TestErrorCodes_Catalogue: the catalogue (the reference's error section,
// the problem code's enum) holds every code the source can raise — every
// apperr.New(kind, "CODE", …) outside tests, and the codes of errors huma
// raises by status — with the status that kind answers, and nothing else.
func TestErrorCodes_Catalogue(t *testing.T) {
	t.Parallel()
	raised := map[string]int{} // code -> status
	for _, m := range kindStatus {
		raised[m.code] = m.status
	}
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "New" || !isIdent(sel.X, "apperr") {
				return true
			}
			if isIdent(call.Args[0], "kind") && isIdent(call.Args[1], "code") {
				return true // huma's errors, by status: kindStatus, counted above
			}
			kind, ok := call.Args[0].(*ast.SelectorExpr)
			lit, isLit := call.Args[1].(*ast.BasicLit)
			if !ok || !isLit || lit.Kind != token.STRING {
				t.Errorf("%s: apperr.New without a literal kind and code", fset.Position(call.Pos()))
				return true
			}
			code, _ := strconv.Unquote(lit.Value)
			k, known := kindByName(kind.Sel.Name)
			if !known {
				t.Errorf("%s: unknown kind %s", fset.Position(call.Pos()), kind.Sel.Name)
				return true
			}
			status, _ := statusOf(k)
			if prev, seen := raised[code]; seen && prev != status {
				t.Errorf("%s: %s raised as %d and %d", fset.Position(call.Pos()), code, prev, status)
			}
			raised[code] = status
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(raised) < 40 {
		t.Fatalf("found only %d codes: the walk missed the source", len(raised))
	}
	listed := map[string]bool{}
	for _, c := range errorCodes {
		if listed[c.Code] {
			t.Errorf("%s listed twice", c.Code)
		}
		listed[c.Code] = true
		status, ok := raised[c.Code]
		switch {
		case !ok:
			t.Errorf("%s is in the catalogue but nothing raises it", c.Code)
		case status != c.Status:
			t.Errorf("%s: the catalogue says %d, the source answers %d", c.Code, c.Status, status)
		case c.Meaning == "" || c.Action == "":
			t.Errorf("%s: no meaning or action", c.Code)
		}
	}
	for code, status := range raised {
		if !listed[code] {
			t.Errorf("%s (%d) is raised but not in the catalogue (codes.go)", code, status)
		}
	}
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func kindByName(name string) (apperr.Kind, bool) {
	for k := range kindStatus {
		if strings.ReplaceAll(k.String(), "_", "") == strings.ToLower(name) {
			return k, true
		}
	}
	return 0, false
}

// TestErrorCodes_PerOperation: every operation named in operationCodes
// exists, and every code an operation declares is in the catalogue.
func TestErrorCodes_PerOperation(t *testing.T) {
	t.Parallel()
	_, api := newServer(Deps{Log: quiet(), Version: "v1"})
	ids := map[string]bool{}
	catalogue := map[string]bool{}
	for _, c := range errorCodes {
		catalogue[c.Code] = true
	}
	eachOperation(api.OpenAPI(), func(_, _ string, op *huma.Operation) {
		ids[op.OperationID] = true
		for _, c := range declaredCodes(op) {
			if !catalogue[c] {
				t.Errorf("%s declares %s, which is not in the catalogue", op.OperationID, c)
			}
		}
	})
	for id := range operationCodes {
		if !ids[id] {
			t.Errorf("operationCodes names %s, which is no operation", id)
		}
	}
	for id := range requestExamples {
		if !ids[id] {
			t.Errorf("requestExamples names %s, which is no operation", id)
		}
	}
}
