package activities

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/workflows"
)

// DeliverTrigger POSTs the trigger's payload. 2xx succeeds; 408, 429, 5xx and
// network errors are retried; any other answer is a permanent failure. The
// body, signature and idempotency key are the same on every attempt.
func (a *Activities) DeliverTrigger(ctx context.Context, in workflows.DeliverInput) (workflows.DeliverResult, error) {
	attempt := activity.GetInfo(ctx).Attempt
	res := workflows.DeliverResult{Attempts: attempt}
	what := fmt.Sprintf("trigger %s (POST %s)", in.Trigger.Name, in.Trigger.URL)
	body, contentType, err := TriggerBody(in.Trigger.PayloadFormat(), in.IdempotencyKey, in.Event)
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError(what+": render payload: "+err.Error(), ErrTriggerRejected, nil, res)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.Trigger.URL, bytes.NewReader(body))
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError(what+": "+err.Error(), ErrTriggerRejected, nil, res)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "dchain")
	req.Header.Set(HeaderEvent, EventName(in.Event))
	req.Header.Set(HeaderRun, in.Event.RunID)
	req.Header.Set(HeaderDelivery, in.IdempotencyKey)
	req.Header.Set(HeaderIdempotency, in.IdempotencyKey)
	if in.Trigger.Secret != "" {
		secret, err := in.Trigger.Secret.Resolve()
		if err != nil {
			return res, temporal.NewNonRetryableApplicationError(what+": "+err.Error(), ErrCredentials, nil, res)
		}
		req.Header.Set(HeaderSignature, Sign(secret, body))
	}
	resp, err := a.httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, temporal.NewApplicationError(fmt.Sprintf("%s: %v (will retry)", what, err), ErrTriggerFailed, res)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	res.HTTPStatus = resp.StatusCode
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return res, nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return res, temporal.NewApplicationError(fmt.Sprintf("%s: HTTP %d %s (will retry)", what, code, bytes.TrimSpace(snippet)), ErrTriggerFailed, res)
	default:
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: HTTP %d %s", what, code, bytes.TrimSpace(snippet)), ErrTriggerRejected, nil, res)
	}
}
