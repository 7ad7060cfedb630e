package worker

import (
	"log/slog"
	"os"

	"go.temporal.io/sdk/log"
)

// QuietLogger is the SDK logger dchain's processes use: warnings and errors, to stderr.
func QuietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}
