package activities

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/dchain-dev/dchain/chain"
	"github.com/dchain-dev/dchain/workflows"
)

// Reachable says whether reg answers its API root (/v2/) at all, with the
// worker's transport to it (its CA trusted): any answer below 500, 401
// included, is a registry that is there.
func (a *Activities) Reachable(ctx context.Context, reg chain.Registry) error {
	tr, err := a.transport(reg)
	if err != nil {
		return err
	}
	scheme := "https"
	if reg.Insecure {
		scheme = "http"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+reg.Address+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("registry %s (%s): %w", reg.Name, reg.Address, err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("registry %s (%s): %s", reg.Name, reg.Address, resp.Status)
	}
	return nil
}

// CheckHealth asks a wave's health URL whether the wave's clusters took the
// image well: a 2xx answer passes; any other answer, or none, is retried
// (the workflow gives up at the check's timeout with the last answer).
func (a *Activities) CheckHealth(ctx context.Context, in workflows.HealthInput) (workflows.HealthResult, error) {
	res := workflows.HealthResult{Attempts: activity.GetInfo(ctx).Attempt}
	what := fmt.Sprintf("health of wave %s (GET %s)", in.Wave, in.URL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL, nil)
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError(what+": "+err.Error(), ErrHealthFailed, nil, res)
	}
	req.Header.Set("User-Agent", "dchain")
	resp, err := a.httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, temporal.NewApplicationError(fmt.Sprintf("%s: %v (will retry)", what, err), ErrHealthFailed, res)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	res.HTTPStatus = resp.StatusCode
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return res, nil
	}
	return res, temporal.NewApplicationError(fmt.Sprintf("%s: HTTP %d %s (will retry)", what, resp.StatusCode, bytes.TrimSpace(snippet)), ErrHealthFailed, res)
}
