package main

import (
	"fmt"
	"net"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Describe the Kafka cluster",
	}
	conn := addKafkaFlags(cmd)
	describe := &cobra.Command{
		Use:   "describe",
		Short: "Show the cluster id, the controller, the brokers and what you may do on the cluster (like kafka-cluster.sh and kafka-broker-api-versions.sh)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := conn.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			req := kmsg.NewPtrDescribeClusterRequest()
			req.EndpointType = 1 // brokers
			req.IncludeClusterAuthorizedOperations = true
			resp, err := req.RequestWith(cmd.Context(), cl)
			if err != nil {
				return fmt.Errorf("describe cluster: %w", err)
			}
			if err := kafkaErr(resp.ErrorCode, resp.ErrorMessage); err != nil {
				return fmt.Errorf("describe cluster: %w", err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "cluster id:  %s\ncontroller:  %d\n", resp.ClusterID, resp.ControllerID)
			if ops := authorizedOps(resp.ClusterAuthorizedOperations); ops != "" {
				fmt.Fprintf(out, "you may:     %s\n", ops)
			}
			fmt.Fprintln(out)
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NODE\tADDRESS\tRACK")
			for _, b := range resp.Brokers {
				rack := "-"
				if b.Rack != nil {
					rack = *b.Rack
				}
				fmt.Fprintf(w, "%d\t%s\t%s\n", b.NodeID, net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))), rack)
			}
			return w.Flush()
		},
	}
	cmd.AddCommand(describe)
	return cmd
}

// authorizedOps names the operations set in a Kafka authorized-operations
// bit field; "" when the broker did not say (math.MinInt32).
func authorizedOps(bits int32) string {
	if bits < 0 {
		return ""
	}
	var s string
	for op := kmsg.ACLOperation(0); op < 31; op++ {
		if bits&(1<<op) == 0 {
			continue
		}
		if s != "" {
			s += ", "
		}
		s += op.String()
	}
	return s
}
