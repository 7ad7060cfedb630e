package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"go.temporal.io/sdk/log"
)

// SetupLogging makes slog's default logger write format ("text" or
// "json") at level ("debug", "info", "warn", "error") to w; every dchain
// process logs through it. The SDK's own log goes there too, from warn up
// (everything at debug).
func SetupLogging(w io.Writer, format, level string) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch strings.ToLower(format) {
	case "text", "":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return fmt.Errorf("--log-format %q: want text or json", format)
	}
	slog.SetDefault(slog.New(h))
	sdkLevel = max(lv, slog.LevelWarn)
	if lv <= slog.LevelDebug {
		sdkLevel = lv
	}
	return nil
}

// sdkLevel is the lowest level of the SDK's log that is written.
var sdkLevel = slog.LevelWarn

// QuietLogger is the SDK logger dchain's processes use: slog's default
// logger, from warn up unless the log level is debug.
func QuietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(minLevel{slog.Default().Handler(), sdkLevel}))
}

// minLevel drops records below level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.level && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(a), m.level}
}
func (m minLevel) WithGroup(g string) slog.Handler { return minLevel{m.Handler.WithGroup(g), m.level} }

func init() {
	// Until flags say otherwise: text at info, to stderr.
	_ = SetupLogging(os.Stderr, "text", "info")
}
