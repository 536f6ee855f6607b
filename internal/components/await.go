package components

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/internal/kafkaconn"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/sources/kafka"
)

const (
	// DefaultOpenTimeout is how long `run --idle-exit` waits for a source
	// that cannot be opened before it gives up: long enough for a broker
	// that is starting or a topic a script creates next, short enough that
	// a CI job with a typo fails within a minute.
	DefaultOpenTimeout = 30 * time.Second
	// awaitAttempt bounds one metadata request, so a broker that accepts
	// connections and never answers is retried rather than waited on.
	awaitAttempt = 10 * time.Second
	// awaitReminder spaces the reminders while waiting without a timeout:
	// one line a minute says the pipeline is still waiting, not a storm.
	awaitReminder = time.Minute
)

// consoleBootstrap is where the sluice console tools connect when given no
// --bootstrap (and the built-in broker's default address).
const consoleBootstrap = "127.0.0.1:9092"

// awaitBackoff spaces the metadata requests: quick at first (a topic
// created a moment after run starts), then every 2s.
var awaitBackoff = backoff.Policy{Min: 100 * time.Millisecond, Max: 2 * time.Second}

// AwaitSource waits until the pipeline's source can be read before the
// pipeline starts, so a source that cannot be opened is reported once
// with what to change instead of as a retry per batch: for a Kafka source,
// until its brokers answer and every topic it lists exists (one line
// names a missing topic and the `sluice topic create` that makes it). Other
// sources, and a topic pattern, need no waiting. With timeout > 0 it gives
// up after that long and returns the last problem with a hint naming the
// setting to check; with 0 it waits until ctx ends (returning ctx's
// error), reminding every minute.
func AwaitSource(ctx context.Context, spec *pipelines.Spec, opts Options, timeout time.Duration) error {
	k, ok := spec.Source.Config.(*kafka.Settings)
	if !ok {
		return nil
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	env := &Env{Options: opts, Spec: spec}
	addrs, err := env.Brokers(k.Cluster())
	if err != nil {
		return err
	}
	// The client's own log would repeat every failed dial; the one line
	// here says it once.
	kopts, err := kafkaconn.KgoOptions(addrs, k.TLS, k.SASL, "sluice-"+spec.Name, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("source.kafka: %w", err)
	}
	// Fresh metadata on every probe, so a topic created a moment ago is
	// seen at the next one.
	cl, err := kgo.NewClient(append(kopts, kgo.RetryTimeout(awaitAttempt), kgo.MetadataMinAge(awaitBackoff.Min))...)
	if err != nil {
		return fmt.Errorf("source.kafka: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	start := time.Now()
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	var (
		problem  error // the last one, with its hint
		reported = map[string]bool{}
		reminded = start
	)
	for attempt := 1; ; attempt++ {
		problem = probe(ctx, adm, spec, k, addrs)
		var denied *refused
		if errors.As(problem, &denied) {
			return problem // waiting cannot help
		}
		if problem == nil {
			if attempt > 1 {
				log.Info("source ready", "pipeline", spec.Name, "waited", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if msg := problem.Error(); !reported[msg] {
			reported[msg] = true
			log.Warn("waiting for the source", "pipeline", spec.Name, "err", problem, "open_timeout", timeout)
		} else if timeout == 0 && time.Since(reminded) >= awaitReminder {
			reminded = time.Now()
			log.Warn("still waiting for the source", "pipeline", spec.Name, "err", problem, "waited", time.Since(start).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("%s: the source could not be opened for %s (--open-timeout): %w", spec.File, timeout, problem)
		case <-time.After(awaitBackoff.Delay(attempt)):
		}
	}
}

// probe asks the cluster for the source's topics once and returns what
// stops the pipeline from reading, with the setting to check.
func probe(ctx context.Context, adm *kadm.Client, spec *pipelines.Spec, k *kafka.Settings, addrs []string) error {
	ctx, cancel := context.WithTimeout(ctx, awaitAttempt)
	defer cancel()
	topics := k.Topics
	if k.Pattern != "" {
		topics = nil // any topic matching may come later; only reach the brokers
	}
	md, err := adm.Metadata(ctx, topics...)
	var ke *kerr.Error
	if errors.As(err, &ke) && !ke.Retriable {
		// The cluster answered and refused (authentication, authorization).
		return &refused{fmt.Errorf("the brokers %s refused: %v; check source.kafka.sasl, tls: and the ACLs in %s", strings.Join(k.Brokers, ", "), err, spec.File)}
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s", awaitAttempt)
		}
		return fmt.Errorf("cannot reach the brokers %s: %v; check source.kafka.brokers (and tls:, sasl:) in %s", strings.Join(k.Brokers, ", "), err, spec.File)
	}
	var missing []string
	for _, t := range topics {
		td, ok := md.Topics[t]
		switch {
		case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
			missing = append(missing, t)
		case td.Err != nil:
			return &refused{fmt.Errorf("topic %s: %v; check source.kafka.topics and the credentials in %s", t, td.Err, spec.File)}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	// The console tools reach 127.0.0.1:9092 by default; elsewhere the
	// command names the address.
	bootstrap := ""
	if a := strings.Join(addrs, ","); a != consoleBootstrap {
		bootstrap = " --bootstrap " + a
	}
	create := make([]string, len(missing))
	for i, t := range missing {
		create[i] = "sluice topic create " + t + " --partitions N" + bootstrap
	}
	noun := "topic " + missing[0] + " does"
	if len(missing) > 1 {
		noun = "topics " + strings.Join(missing, ", ") + " do"
	}
	return fmt.Errorf("%s not exist; create it (%s) or fix source.kafka.topics in %s", noun, strings.Join(create, "; "), spec.File)
}

// refused is a probe's problem that waiting cannot solve: the cluster
// answered and said no.
type refused struct{ error }

func (r *refused) Unwrap() error { return r.error }
