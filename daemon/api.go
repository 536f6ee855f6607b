package daemon

import (
	"encoding/json"
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// handler is the HTTP API:
//
//	GET  /pipelines                      every pipeline's status
//	GET  /pipelines/{name}               one pipeline's status (split into tasks: with the tasks this process runs)
//	POST /pipelines/{name}/pause         drain and stop until resumed
//	POST /pipelines/{name}/resume
//	POST /pipelines/{name}/restart       drain, commit and start again
//	GET  /metrics                        Prometheus
//	GET  /healthz                        the process is up
//	GET  /readyz                         every valid pipeline is running or paused
//
// Run serves it behind guard: the Host check, and the origin, body and
// token checks of POSTs.
func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /pipelines", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, d.infos())
	})
	mux.HandleFunc("GET /pipelines/{name}", func(w http.ResponseWriter, r *http.Request) {
		m := d.byName(r.PathValue("name"))
		if m == nil {
			writeError(w, http.StatusNotFound, "no pipeline named "+r.PathValue("name")+"; GET /pipelines lists them")
			return
		}
		writeJSON(w, http.StatusOK, m.info())
	})
	action := func(do func(*managed)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			m := d.byName(r.PathValue("name"))
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
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var notReady []string
		for _, in := range d.infos() {
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
	return mux
}

func (d *Daemon) infos() []Info {
	d.mu.Lock()
	all := make([]*managed, 0, len(d.pipelines))
	for _, m := range d.pipelines {
		all = append(all, m)
	}
	d.mu.Unlock()
	out := make([]Info, 0, len(all))
	for _, m := range all {
		out = append(out, m.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (d *Daemon) byName(name string) *managed {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range d.pipelines {
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
