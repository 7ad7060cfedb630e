package activities

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/dchain-dev/dchain/chain"
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
