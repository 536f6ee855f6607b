package engine

import "testing"

func TestHitLimit(t *testing.T) {
	recs := func(parts ...int32) []Record {
		var rs []Record
		for _, p := range parts {
			rs = append(rs, Record{Topic: "t", Partition: p})
		}
		return rs
	}
	tests := []struct {
		name string
		recs []Record
		l    Limits
		want bool
	}{
		{"no limits", recs(0, 0, 0), Limits{}, false},
		{"a partition at its cap", recs(0, 1, 0, 1, 0), Limits{MaxRecordsPerPartition: 3}, true},
		{"every partition below its cap", recs(0, 1, 0, 1, 2), Limits{MaxRecordsPerPartition: 3}, false},
		{"same partition number, other topic", append(recs(0, 0), Record{Topic: "u", Partition: 0}), Limits{MaxRecordsPerPartition: 3}, false},
		{"the batch at the rate controller's cap", recs(0, 1, 2), Limits{MaxRecordsPerPartition: 10, MaxRecords: 3}, true},
		{"the batch below the rate controller's cap", recs(0, 1), Limits{MaxRecords: 3}, false},
		{"empty", nil, Limits{MaxRecordsPerPartition: 1, MaxRecords: 1}, false},
	}
	for _, tt := range tests {
		if got := hitLimit(tt.recs, tt.l); got != tt.want {
			t.Errorf("%s: hitLimit = %v, want %v", tt.name, got, tt.want)
		}
	}
}
