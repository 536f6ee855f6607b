package host

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// slogAdapter is the hclog.Logger go-plugin wants, writing to slog. It
// carries the step's name, so plugin log lines say which step they are from.
type slogAdapter struct {
	l    *slog.Logger
	args []any
}

var _ hclog.Logger = (*slogAdapter)(nil)

func newHCLog(l *slog.Logger) hclog.Logger { return &slogAdapter{l: l} }

func toSlogLevel(lv hclog.Level) slog.Level {
	switch lv {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (a *slogAdapter) Log(lv hclog.Level, msg string, args ...any) {
	if lv == hclog.Off {
		return
	}
	// go-plugin adds the plugin's own timestamp (the host's record has
	// one) and calls the executable "plugin" (the step's name has that key).
	for i := 0; i+1 < len(args); i += 2 {
		switch k, _ := args[i].(string); k {
		case "timestamp":
			args = append(args[:i:i], args[i+2:]...)
			i -= 2
		case "plugin":
			args = append(args[:i:i], append([]any{"path"}, args[i+1:]...)...)
		}
	}
	a.l.Log(context.Background(), toSlogLevel(lv), msg, append(a.args[:len(a.args):len(a.args)], args...)...)
}

func (a *slogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *slogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *slogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *slogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *slogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *slogAdapter) enabled(lv hclog.Level) bool {
	return a.l.Enabled(context.Background(), toSlogLevel(lv))
}
func (a *slogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *slogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *slogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *slogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *slogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *slogAdapter) ImpliedArgs() []any { return a.args }
func (a *slogAdapter) With(args ...any) hclog.Logger {
	return &slogAdapter{l: a.l, args: append(a.args[:len(a.args):len(a.args)], args...)}
}

// Named is a no-op: go-plugin names the logger after the executable's base
// name, which for built-ins is "sluice"; the step name is already attached.
func (a *slogAdapter) Named(string) hclog.Logger      { return a }
func (a *slogAdapter) ResetNamed(string) hclog.Logger { return a }
func (a *slogAdapter) Name() string                   { return "" }
func (a *slogAdapter) SetLevel(hclog.Level)           {}

func (a *slogAdapter) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(lv) {
			return lv
		}
	}
	return hclog.Off
}

func (a *slogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(a.l.Handler(), slog.LevelInfo)
}

func (a *slogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return a.StandardLogger(nil).Writer()
}
