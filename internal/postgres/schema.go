package postgres

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Column is one column of the live schema.
type Column struct {
	Name     string
	Type     string
	Nullable bool
	PK       bool
}

// ForeignKey links columns of one table to another.
type ForeignKey struct {
	Table, Column, RefTable, RefColumn, OnDelete string
}

// Schema is the live schema's tables (partitions folded into their
// parent, migration bookkeeping left out) and foreign keys.
type Schema struct {
	Tables  map[string][]Column
	Foreign []ForeignKey
}

// ReadSchema reads the schema of the database at url, as its owner.
func ReadSchema(ctx context.Context, url string) (Schema, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return Schema{}, fmt.Errorf("connect: %w", translate(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	s := Schema{Tables: map[string][]Column{}}
	rows, err := conn.Query(ctx, `
		SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
		       EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY(i.indkey))
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> 'goose_db_version'
		ORDER BY c.relname, a.attnum`)
	if err != nil {
		return Schema{}, err
	}
	for rows.Next() {
		var table string
		var col Column
		if err := rows.Scan(&table, &col.Name, &col.Type, &col.Nullable, &col.PK); err != nil {
			return Schema{}, err
		}
		s.Tables[table] = append(s.Tables[table], col)
	}
	if err := rows.Err(); err != nil {
		return Schema{}, err
	}
	rows, err = conn.Query(ctx, `
		SELECT cl.relname, a.attname, rc.relname, ra.attname,
		       CASE con.confdeltype WHEN 'c' THEN 'cascade' WHEN 'n' THEN 'set null' WHEN 'r' THEN 'restrict' ELSE 'no action' END
		FROM pg_constraint con
		JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_class rc ON rc.oid = con.confrelid
		JOIN pg_namespace n ON n.oid = cl.relnamespace
		JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
		JOIN pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = con.confkey[1]
		WHERE con.contype = 'f' AND n.nspname = 'public' AND NOT cl.relispartition
		ORDER BY 1, 2, 3`)
	if err != nil {
		return Schema{}, err
	}
	for rows.Next() {
		var fk ForeignKey
		if err := rows.Scan(&fk.Table, &fk.Column, &fk.RefTable, &fk.RefColumn, &fk.OnDelete); err != nil {
			return Schema{}, err
		}
		s.Foreign = append(s.Foreign, fk)
	}
	return s, rows.Err()
}

func (s Schema) tableNames() []string {
	names := make([]string, 0, len(s.Tables))
	for n := range s.Tables {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Mermaid renders the schema as a Mermaid erDiagram.
func (s Schema) Mermaid() string {
	var b strings.Builder
	b.WriteString("# elile database schema\n\nGenerated from the live schema by `elile schema erd`; a test fails when it falls behind the migrations.\n\n```mermaid\nerDiagram\n")
	for _, t := range s.tableNames() {
		fmt.Fprintf(&b, "    %s {\n", t)
		for _, c := range s.Tables[t] {
			key := ""
			if c.PK {
				key = " PK"
			}
			for _, fk := range s.Foreign {
				if fk.Table == t && fk.Column == c.Name {
					if key == "" {
						key = " FK"
					} else {
						key += ", FK"
					}
					break
				}
			}
			typ := strings.NewReplacer(" ", "_", "(", "_", ")", "", ",", "_", "[", "", "]", "_array").Replace(c.Type)
			fmt.Fprintf(&b, "        %s %s%s\n", typ, c.Name, key)
		}
		b.WriteString("    }\n")
	}
	for _, fk := range s.Foreign {
		card := "||--o{"
		for _, c := range s.Tables[fk.Table] {
			if c.Name == fk.Column && c.Nullable {
				card = "|o--o{"
			}
		}
		fmt.Fprintf(&b, "    %s %s %s : \"%s (on delete %s)\"\n", fk.RefTable, card, fk.Table, fk.Column, fk.OnDelete)
	}
	b.WriteString("```\n")
	return b.String()
}

// DOT renders the schema for Graphviz.
func (s Schema) DOT() string {
	var b strings.Builder
	b.WriteString("digraph elile {\n  graph [rankdir=LR, fontname=\"Helvetica\", label=\"elile schema (generated)\", labelloc=t];\n")
	b.WriteString("  node [shape=plaintext, fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=8];\n")
	for _, t := range s.tableNames() {
		fmt.Fprintf(&b, "  %s [label=<<table border=\"0\" cellborder=\"1\" cellspacing=\"0\"><tr><td bgcolor=\"#dde4ee\" colspan=\"2\"><b>%s</b></td></tr>", t, t)
		for _, c := range s.Tables[t] {
			name := c.Name
			if c.PK {
				name = "<u>" + name + "</u>"
			}
			fmt.Fprintf(&b, "<tr><td align=\"left\" port=\"%s\">%s</td><td align=\"left\">%s</td></tr>", c.Name, name, strings.ReplaceAll(c.Type, "<", "&lt;"))
		}
		b.WriteString("</table>>];\n")
	}
	for _, fk := range s.Foreign {
		fmt.Fprintf(&b, "  %s:%s -> %s:%s [label=\"%s\"];\n", fk.Table, fk.Column, fk.RefTable, fk.RefColumn, fk.OnDelete)
	}
	b.WriteString("}\n")
	return b.String()
}
