package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dchain-dev/dchain/workflows"
)

// MissingSearchAttributes lists, sorted, the dchain search attributes that
// namespace does not have, and those it has with another type.
func MissingSearchAttributes(ctx context.Context, c client.Client, namespace string) (missing, wrongType []string, err error) {
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, nil, fmt.Errorf("list search attributes of namespace %s: %w", namespace, err)
	}
	for name, typ := range workflows.SearchAttributes {
		got, ok := have.CustomAttributes[name]
		switch {
		case !ok:
			missing = append(missing, name)
		case got != typ:
			wrongType = append(wrongType, fmt.Sprintf("%s is %s, want %s", name, got, typ))
		}
	}
	slices.Sort(missing)
	slices.Sort(wrongType)
	return missing, wrongType, nil
}

// CheckSearchAttributes fails, naming them and the fix, when namespace
// lacks dchain's search attributes: runs could not be listed or filtered.
func CheckSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	missing, wrong, err := MissingSearchAttributes(ctx, c, namespace)
	if err != nil {
		return err
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, "missing "+strings.Join(missing, ", "))
	}
	problems = append(problems, wrong...)
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("namespace %s lacks dchain's search attributes (%s): run `dchain setup` once against this cluster, "+
		"or start the worker with --register-search-attributes", namespace, strings.Join(problems, "; "))
}

// RegisterSearchAttributes adds dchain's missing search attributes to
// namespace and returns the names it added. An attribute that exists with
// another type is an error: it cannot be changed in place.
func RegisterSearchAttributes(ctx context.Context, c client.Client, namespace string) ([]string, error) {
	missing, wrong, err := MissingSearchAttributes(ctx, c, namespace)
	if err != nil {
		return nil, err
	}
	if len(wrong) > 0 {
		return nil, fmt.Errorf("namespace %s: %s (remove it or use another namespace)", namespace, strings.Join(wrong, "; "))
	}
	if len(missing) == 0 {
		return nil, nil
	}
	add := map[string]enumspb.IndexedValueType{}
	for _, name := range missing {
		add[name] = workflows.SearchAttributes[name]
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: add})
	if err != nil {
		return nil, fmt.Errorf("add search attributes %s to namespace %s: %w", strings.Join(missing, ", "), namespace, err)
	}
	return missing, nil
}

// EnsureNamespace registers namespace with the given retention when the
// cluster does not have it; created says whether it did.
func EnsureNamespace(ctx context.Context, c client.Client, namespace string, retention time.Duration) (created bool, err error) {
	ws := c.WorkflowService()
	_, err = ws.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
	var notFound *serviceerror.NamespaceNotFound
	switch {
	case err == nil:
		return false, nil
	case !errors.As(err, &notFound):
		return false, fmt.Errorf("describe namespace %s: %w", namespace, err)
	}
	_, err = ws.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        namespace,
		Description:                      "dchain delivery chains",
		WorkflowExecutionRetentionPeriod: durationpb.New(retention),
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if errors.As(err, &exists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("register namespace %s: %w", namespace, err)
	}
	return true, nil
}
