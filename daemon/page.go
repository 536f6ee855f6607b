package daemon

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// pollInterval is how often the status page's script asks for
	// GET /pipelines: as often as the rates change (sampleInterval).
	pollInterval = sampleInterval
	// refreshSeconds is how often the page reloads itself when JavaScript
	// is off: slower than polling, a whole page each time.
	refreshSeconds = 5
)

// The status page: one HTML template, its style and script inlined, all
// embedded so the binary serves it with nothing to fetch or build.
//
//go:embed status/page.html status/page.css status/page.js
var statusFiles embed.FS

var (
	pageCSS  = mustRead("status/page.css")
	pageJS   = mustRead("status/page.js")
	pageTmpl = template.Must(template.New("page.html").Funcs(template.FuncMap{
		"clock": func(t any) string {
			switch t := t.(type) {
			case time.Time:
				return t.UTC().Format("15:04:05") + " UTC"
			case *time.Time:
				return t.UTC().Format("15:04:05") + " UTC"
			}
			return ""
		},
		"rate": func(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) },
		"opt": func(x *int64) string {
			if x == nil {
				return "–"
			}
			return strconv.FormatInt(*x, 10)
		},
		"pids": func(pids []int) string {
			s := make([]string, len(pids))
			for i, p := range pids {
				s[i] = strconv.Itoa(p)
			}
			return strings.Join(s, ", ")
		},
	}).ParseFS(statusFiles, "status/page.html"))
	// pageCSP allows only the inlined style and script (by hash) and
	// fetches from this origin; no frame may embed the page.
	pageCSP = "default-src 'none'; style-src '" + hashSource(pageCSS) + "'; script-src '" + hashSource(pageJS) +
		"'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

func mustRead(name string) string {
	b, err := statusFiles.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func hashSource(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// pageData is what page.html renders.
type pageData struct {
	Mode, Version  string
	Now            time.Time
	Pipelines      []Info
	PollMillis     int64
	RefreshSeconds int
	CSS            template.CSS
	JS             template.JS
}

// page serves the status page, rendered with the pipelines as they are
// now, so it reads without JavaScript; its script then polls
// GET /pipelines and redraws them.
func (a *api) page(w http.ResponseWriter, _ *http.Request) {
	var buf bytes.Buffer
	err := pageTmpl.Execute(&buf, pageData{
		Mode: a.mode, Version: a.version, Now: time.Now(), Pipelines: a.infos(),
		PollMillis: pollInterval.Milliseconds(), RefreshSeconds: refreshSeconds,
		CSS: template.CSS(pageCSS), JS: template.JS(pageJS),
	})
	if err != nil {
		slog.Error("rendering the status page", "err", err)
		writeError(w, http.StatusInternalServerError, "rendering the status page failed: "+err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}
