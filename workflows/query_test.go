package workflows

import (
	"testing"
	"time"

	"github.com/temporalio/sqlparser"
)

// parseWhere parses a visibility query with the SQL parser the Temporal
// server itself uses, and returns its conditions in order.
func parseWhere(t *testing.T, q Query) []*sqlparser.ComparisonExpr {
	t.Helper()
	stmt, err := sqlparser.Parse("select * from executions where " + q.String())
	if err != nil {
		t.Fatalf("query %s does not parse: %v", q, err)
	}
	var out []*sqlparser.ComparisonExpr
	var walk func(e sqlparser.Expr)
	walk = func(e sqlparser.Expr) {
		switch e := e.(type) {
		case *sqlparser.AndExpr:
			walk(e.Left)
			walk(e.Right)
		case *sqlparser.ComparisonExpr:
			out = append(out, e)
		default:
			t.Fatalf("query %s: unexpected %T %s", q, e, sqlparser.String(e))
		}
	}
	walk(stmt.(*sqlparser.Select).Where.Expr)
	return out
}

// checkQuery asserts that every value of q reached the server's parser as
// exactly one string literal equal to the value: no value can add a
// condition, close the string, or comment out the rest.
func checkQuery(t *testing.T, q Query, attrs, values []string) {
	t.Helper()
	conds := parseWhere(t, q)
	if len(conds) != len(values) {
		t.Fatalf("query %s: %d conditions, want %d", q, len(conds), len(values))
	}
	for i, c := range conds {
		col, ok := c.Left.(*sqlparser.ColName)
		val, ok2 := c.Right.(*sqlparser.SQLVal)
		if !ok || !ok2 || col.Name.String() != attrs[i] || val.Type != sqlparser.StrVal || string(val.Val) != values[i] {
			t.Fatalf("query %s: condition %d is %s, want %s = %q", q, i, sqlparser.String(c), attrs[i], values[i])
		}
	}
}

var hostileValues = []string{
	`refs/heads/a\' OR WorkflowType = "ChainRun" -- `,
	`refs/heads/a\`,
	`a'b`, `a"b`, `\\'`, `'`, `\`, "a\nb", "a\x00b", `%_*`, `') OR ('1'='1`, "\xff\xfe",
}

func TestQuoteHostileValues(t *testing.T) {
	for _, v := range hostileValues {
		q := Query{}.Eq("DchainRef", v).Eq("DchainChain", "demo")
		checkQuery(t, q, []string{"DchainRef", "DchainChain"}, []string{v, "demo"})
	}
	q := OlderRunsQuery(`c'\`, hostileValues[0], `w\'`, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	checkQuery(t, q, []string{"WorkflowType", "DchainChain", "DchainRef", "ExecutionStatus", "WorkflowId", "StartTime"},
		[]string{"ChainRun", `c'\`, hostileValues[0], "Running", `w\'`, "2026-01-02T03:04:05Z"})
}

func FuzzQuote(f *testing.F) {
	for _, v := range hostileValues {
		f.Add(v, "demo")
	}
	f.Fuzz(func(t *testing.T, ref, chainName string) {
		q := Query{}.Eq("DchainChain", chainName).Eq("DchainRef", ref).Ne("WorkflowId", ref+chainName)
		checkQuery(t, q, []string{"DchainChain", "DchainRef", "WorkflowId"}, []string{chainName, ref, ref + chainName})
	})
}

// A run ID travels in gRPC headers: a ref in any UTF-8 comes out printable
// ASCII, and distinct refs stay distinct.
func TestBuildWorkflowIDIsPrintable(t *testing.T) {
	a := BuildWorkflowID("demo", "r", "refs/heads/ünïcode", "0123456789abcdef0123456789abcdef01234567")
	b := BuildWorkflowID("demo", "r", "refs/heads/%C3%BCn%C3%AFcode", "0123456789abcdef0123456789abcdef01234567")
	if a != "demo:r:refs/heads/%C3%BCn%C3%AFcode@0123456789ab" || a == b {
		t.Fatalf("%q %q", a, b)
	}
}
