package state

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Delete drops pipeline's state: its local stores under dataDir and, with
// kafka (nil: local only), its changelog topic. Missing pieces are not an
// error. The pipeline must not be running.
func Delete(ctx context.Context, dataDir, pipeline string, kafka []kgo.Opt) error {
	if pipeline == "" {
		return errors.New("state: no pipeline named")
	}
	var errs []error
	if dataDir != "" {
		if err := os.RemoveAll(Dir(dataDir, pipeline)); err != nil {
			errs = append(errs, fmt.Errorf("state: %w", err))
		}
	}
	if kafka != nil {
		cl, err := kgo.NewClient(kafka...)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("state: %w", err))...)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(ctx, adminTimeout)
		defer cancel()
		topic := ChangelogTopic(pipeline)
		_, err = kadm.NewClient(cl).DeleteTopic(ctx, topic)
		if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			errs = append(errs, fmt.Errorf("state: delete changelog topic %s: %w; delete it yourself (sluice topic delete %s) or allow this client to", topic, err, topic))
		}
	}
	return errors.Join(errs...)
}
