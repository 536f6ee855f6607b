package host

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// restartsCounter returns the sluice_plugin_restarts_total child for one
// step. Steps of all pipelines share the vector on a registry, so a second
// registration reuses the first.
func restartsCounter(reg prometheus.Registerer, pipeline, step string) prometheus.Counter {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_plugin_restarts_total",
		Help: "Plugin processes restarted after a crash or a hung call.",
	}, []string{"pipeline", "plugin"})
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					vec = existing
				}
			}
		}
	}
	return vec.WithLabelValues(pipeline, step)
}
