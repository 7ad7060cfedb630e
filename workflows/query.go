package workflows

import (
	"strings"
	"time"
)

// Query is a Temporal visibility query built from conditions joined by AND.
// Every value goes through Quote, so a value from outside (a ref, a chain
// name, a tag) can only ever be compared, never read as query syntax. It is
// the one way dchain builds visibility queries.
type Query []string

// Eq adds "attr = 'value'".
func (q Query) Eq(attr, value string) Query { return append(q, attr+" = "+Quote(value)) }

// Ne adds "attr != 'value'".
func (q Query) Ne(attr, value string) Query { return append(q, attr+" != "+Quote(value)) }

// StartsWith adds "attr STARTS_WITH 'prefix'".
func (q Query) StartsWith(attr, prefix string) Query {
	return append(q, attr+" STARTS_WITH "+Quote(prefix))
}

// In adds "attr IN ('a', 'b', …)".
func (q Query) In(attr string, values ...string) Query {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = Quote(v)
	}
	return append(q, attr+" IN ("+strings.Join(quoted, ", ")+")")
}

// Before adds "attr < 'time'" (RFC 3339, UTC).
func (q Query) Before(attr string, t time.Time) Query {
	return append(q, attr+" < "+Quote(t.UTC().Format(time.RFC3339Nano)))
}

// String is the query text.
func (q Query) String() string { return strings.Join(q, " AND ") }

// Quote makes s a string literal of Temporal's visibility query language
// (its SQL dialect): single quotes, with backslash and single quote escaped
// by a backslash. Every other byte stands for itself inside the quotes.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c == '\'' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
	return b.String()
}

// OlderRunsQuery selects the running ChainRuns of chain and ref other than
// workflowID, started before before (zero: any time).
func OlderRunsQuery(chainName, ref, workflowID string, before time.Time) Query {
	q := Query{}.Eq("WorkflowType", "ChainRun").Eq(AttrChain.GetName(), chainName).Eq(AttrRef.GetName(), ref).
		Eq("ExecutionStatus", "Running").Ne("WorkflowId", workflowID)
	if !before.IsZero() {
		q = q.Before("StartTime", before)
	}
	return q
}
