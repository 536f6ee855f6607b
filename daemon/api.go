package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// api is the HTTP API over a set of pipelines: the daemon's, or the one
// `sluice run --http` runs (read-only: no actions).
type api struct {
	all     func() []*managed // the pipelines, any order
	reg     *prometheus.Registry
	version string
	mode    string // the page's title: "daemon" or "run"
	// actions serves pause, resume and restart; without it they answer
	// 405 with readOnlyHint.
	actions      bool
	readOnlyHint string
	// remove deletes a pipeline (DELETE); nil answers 405 with readOnlyHint.
	remove func(context.Context, *managed) error
}

// handler is the HTTP API:
//
//	GET  /                               the status page (page.go)
//	GET  /pipelines                      every pipeline's status
//	GET  /pipelines/{name}               one pipeline's status (split into tasks: with the tasks this process runs)
//	POST /pipelines/{name}/pause         drain and stop until resumed
//	POST /pipelines/{name}/resume
//	POST /pipelines/{name}/restart       drain, commit and start again
//	DELETE /pipelines/{name}             drain and stop it, remove its file, its state and its changelog topic
//	GET  /metrics                        Prometheus
//	GET  /healthz                        the process is up
//	GET  /readyz                         every valid pipeline is running or paused
//
// Every error, the mux's own 404 and 405 included, is {"error": "..."}.
// It is served behind guard: the Host check, and the origin, body and
// token checks of POSTs.
func (a *api) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.page)
	mux.HandleFunc("GET /pipelines", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, a.infos())
	})
	mux.HandleFunc("GET /pipelines/{name}", func(w http.ResponseWriter, r *http.Request) {
		m := a.byName(r.PathValue("name"))
		if m == nil {
			writeError(w, http.StatusNotFound, "no pipeline named "+r.PathValue("name")+"; GET /pipelines lists them")
			return
		}
		writeJSON(w, http.StatusOK, m.info())
	})
	action := func(do func(*managed)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !a.actions {
				w.Header().Set("Allow", "GET, HEAD")
				writeError(w, http.StatusMethodNotAllowed, a.readOnlyHint)
				return
			}
			m := a.byName(r.PathValue("name"))
			switch {
			case m == nil:
				writeError(w, http.StatusNotFound, "no pipeline named "+r.PathValue("name")+"; GET /pipelines lists them")
			case !m.valid():
				writeError(w, http.StatusConflict, "pipeline "+m.name+" is invalid: "+m.info().Error)
			default:
				do(m)
				writeJSON(w, http.StatusAccepted, m.info())
			}
		}
	}
	mux.HandleFunc("POST /pipelines/{name}/pause", action((*managed).pause))
	mux.HandleFunc("POST /pipelines/{name}/resume", action((*managed).unpause))
	mux.HandleFunc("POST /pipelines/{name}/restart", action((*managed).restartRun))
	mux.HandleFunc("DELETE /pipelines/{name}", func(w http.ResponseWriter, r *http.Request) {
		if a.remove == nil {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, a.readOnlyHint)
			return
		}
		m := a.byName(r.PathValue("name"))
		if m == nil {
			writeError(w, http.StatusNotFound, "no pipeline named "+r.PathValue("name")+"; GET /pipelines lists them")
			return
		}
		if err := a.remove(r.Context(), m); err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"deleted": m.name})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var notReady []string
		for _, in := range a.infos() {
			if in.State != StateRunning && in.State != StatePaused && in.State != StateInvalid {
				notReady = append(notReady, in.Name+" is "+in.State)
			}
		}
		if len(notReady) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "pipelines": notReady})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	return jsonMux{mux}
}

// jsonMux answers in JSON what the ServeMux itself would answer in plain
// text: a path no route has (404) and a method its route does not take
// (405, with the Allow header).
type jsonMux struct{ mux *http.ServeMux }

func (j jsonMux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := j.mux.Handler(r)
	if pattern != "" {
		j.mux.ServeHTTP(w, r) // which sets the path's values
		return
	}
	// No route: run the mux's answer against a probe to learn its status
	// (a redirect, to a cleaned path, passes through).
	p := &probe{header: http.Header{}}
	h.ServeHTTP(p, r)
	switch p.code {
	case http.StatusNotFound:
		writeError(w, p.code, "no endpoint "+r.URL.Path+": GET / is the status page, GET /pipelines lists the pipelines")
	case http.StatusMethodNotAllowed:
		allow := p.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeError(w, p.code, r.Method+" is not allowed on "+r.URL.Path+": use "+strings.ReplaceAll(allow, ", ", " or "))
	default:
		h.ServeHTTP(w, r)
	}
}

// probe is a ResponseWriter that keeps only the header and status.
type probe struct {
	header http.Header
	code   int
}

func (p *probe) Header() http.Header { return p.header }
func (p *probe) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}
func (p *probe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

func (a *api) infos() []Info {
	all := a.all()
	out := make([]Info, 0, len(all))
	for _, m := range all {
		out = append(out, m.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (a *api) byName(name string) *managed {
	for _, m := range a.all() {
		if m.name == name {
			return m
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// writeError answers {"error": msg} on one line.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
