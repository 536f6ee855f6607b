package postgres

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sluicehq/sluice/engine"
)

func TestFromJSON(t *testing.T) {
	tests := []struct {
		oid     uint32
		raw     string
		want    string // fmt %v of the result, with its type
		wantErr bool
	}{
		{oidText, `"ada"`, "string ada", false},
		{oidText, `{"a":1}`, `string {"a":1}`, false},
		{oidVarchar, `12`, "string 12", false},
		{oidInt8, `42`, "int64 42", false},
		{oidInt4, `"42"`, "int64 42", false},
		{oidInt8, `4.2`, "", true},
		{oidFloat8, `1.5`, "float64 1.5", false},
		{oidBool, `true`, "bool true", false},
		{oidBool, `"yes"`, "", true},
		{oidJSONB, `{"a": [1]}`, `[]uint8 [123 34 97 34 58 32 91 49 93 125]`, false},
		{oidBytea, `"hi"`, "[]uint8 [104 105]", false},
		{oidTimestamptz, `"2026-01-02T03:04:05Z"`, "time.Time 2026-01-02 03:04:05 +0000 UTC", false},
		{oidTimestamptz, `"yesterday"`, "", true},
		{oidInt8, `null`, "<nil> <nil>", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%s", tt.oid, tt.raw), func(t *testing.T) {
			v, err := fromJSON(tt.oid, json.RawMessage(tt.raw))
			if (err != nil) != tt.wantErr {
				t.Fatalf("fromJSON(%d, %s) error = %v, want error %v", tt.oid, tt.raw, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := fmt.Sprintf("%T %v", v, v); got != tt.want {
				t.Errorf("fromJSON(%d, %s) = %s, want %s", tt.oid, tt.raw, got, tt.want)
			}
		})
	}
	n, err := fromJSON(oidNumeric, json.RawMessage(`123.45`))
	if num, ok := n.(pgtype.Numeric); err != nil || !ok || !num.Valid {
		t.Errorf("fromJSON(numeric, 123.45) = %v, %v; want a valid pgtype.Numeric", n, err)
	}
}

func TestParseColumns(t *testing.T) {
	cols, err := parseColumns(map[string]string{"b": "value.user.id", "a": "offset"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) != 2 || cols[0].name != "a" || cols[0].part != "offset" || cols[1].source() != "value.user.id" {
		t.Fatalf("parseColumns = %+v", cols)
	}
	def, err := parseColumns(nil)
	if err != nil || len(def) != 6 {
		t.Fatalf("default columns = %+v, %v; want the six record parts", def, err)
	}
}

// FuzzRowValues feeds arbitrary record values through the JSON-field
// columns of every supported type: errors are fine, panics are not.
func FuzzRowValues(f *testing.F) {
	f.Add([]byte(`{"a":{"b":1},"c":"x"}`))
	f.Add([]byte(`{"a":[1,2],"c":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, value []byte) {
		var cols []column
		for i, oid := range []uint32{oidBool, oidBytea, oidInt2, oidInt4, oidInt8, oidText, oidJSON, oidJSONB,
			oidFloat4, oidFloat8, oidBPChar, oidVarchar, oidTimestamp, oidTimestamptz, oidNumeric} {
			cols = append(cols, column{name: fmt.Sprint("c", i), path: []string{"a", "b"}, oid: oid},
				column{name: fmt.Sprint("d", i), path: []string{"c"}, oid: oid})
		}
		cols = append(cols, column{name: "v", part: partValue, oid: oidText})
		b := rowBuilder{cols: cols}
		row, err := b.values(&engine.Record{Value: value, Time: time.Unix(0, 0)}, nil)
		if err == nil && len(row) != len(cols) {
			t.Fatalf("%d values for %d columns", len(row), len(cols))
		}
	})
}
