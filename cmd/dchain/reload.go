package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/dchain-dev/dchain/starter"
)

// every calls f every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// syncSchedules makes the Temporal Schedules of the chains' sync.schedule
// match the config and says what it changed.
func syncSchedules(ctx context.Context, c client.Client, g *globals) error {
	l, err := g.load()
	if err != nil {
		return err
	}
	did, err := (&starter.Starter{Client: c, Config: l, TaskQueue: g.taskQueue}).SyncSchedules(ctx)
	for _, d := range did {
		fmt.Println("sync schedule:", d)
	}
	return err
}

// reloadOnHUP calls reload on every SIGHUP (and every signal of changed,
// if set) until ctx ends; a failed reload is logged and what was loaded
// before stays.
func reloadOnHUP(ctx context.Context, reload func() error, changed ...<-chan struct{}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var change <-chan struct{}
	if len(changed) > 0 {
		change = changed[0]
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-change:
		}
		if err := reload(); err != nil {
			slog.Error("config reload failed; keeping the config loaded before", "error", err)
		} else {
			slog.Info("config reloaded")
		}
	}
}
