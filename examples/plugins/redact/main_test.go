package main

import (
	"context"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/plugins/sdk"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name     string
		settings map[string]any
		in, want string
		err      string
	}{
		{"default pattern", nil, "mail ann@example.com now", "mail [redacted] now", ""},
		{"own pattern", map[string]any{"pattern": `\d{4}`, "replacement": "####"}, "card 1234 5678", "card #### ####", ""},
		{"bad pattern", map[string]any{"pattern": `(`}, "", "", "pattern:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := sdk.Local(context.Background(), newTransform(), "redact", tt.settings)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out, _, err := tr.Process(context.Background(), []sdk.Record{{Value: []byte(tt.in)}})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(out[0].Value); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
