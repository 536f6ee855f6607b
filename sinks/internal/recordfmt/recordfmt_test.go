package recordfmt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

func TestAppendJSON(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	tests := []struct {
		name string
		rec  engine.Record
		want string
	}{
		{
			name: "text key and value",
			rec:  engine.Record{Topic: "t", Partition: 2, Offset: 7, Key: []byte("k"), Value: []byte("v"), Time: ts},
			want: `{"topic":"t","partition":2,"offset":7,"key":"k","value":"v","timestamp":"2026-01-02T02:04:05.000000006Z","headers":[]}` + "\n",
		},
		{
			name: "nil key and zero time",
			rec:  engine.Record{Topic: "t", Value: []byte("")},
			want: `{"topic":"t","partition":0,"offset":0,"key":null,"value":"","timestamp":null,"headers":[]}` + "\n",
		},
		{
			name: "binary value is base64",
			rec:  engine.Record{Topic: "t", Key: []byte("k"), Value: []byte{0xff, 0x00}},
			want: `{"topic":"t","partition":0,"offset":0,"key":"k","value_base64":"/wA=","timestamp":null,"headers":[]}` + "\n",
		},
		{
			name: "escapes and headers",
			rec: engine.Record{Topic: "a\"b", Value: []byte("x\n\t\\\x01é"), Headers: []engine.Header{
				{Key: "h1", Value: []byte("1")}, {Key: "h2", Value: []byte{0xc3}}}},
			want: `{"topic":"a\"b","partition":0,"offset":0,"key":null,"value":"x\n\t\\\u0001é","timestamp":null,"headers":[{"key":"h1","value":"1"},{"key":"h2","value_base64":"ww=="}]}` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendJSON(nil, &tt.rec))
			if got != tt.want {
				t.Errorf("AppendJSON:\n got %s\nwant %s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

func TestAppendRaw(t *testing.T) {
	got := Raw.Append([]byte("x"), &engine.Record{Value: []byte("hello")})
	if string(got) != "xhello\n" {
		t.Errorf("Raw.Append = %q, want %q", got, "xhello\n")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Format
		wantErr bool
	}{
		{"", JSONL, false}, {"jsonl", JSONL, false}, {"raw", Raw, false}, {"csv", "", true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("Parse(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

type decoded struct {
	Topic       string  `json:"topic"`
	Partition   int32   `json:"partition"`
	Offset      int64   `json:"offset"`
	Key         *string `json:"key"`
	KeyBase64   string  `json:"key_base64"`
	Value       *string `json:"value"`
	ValueBase64 string  `json:"value_base64"`
}

// FuzzAppendJSON checks that every key and value survives the round trip
// through the encoder and encoding/json byte for byte.
func FuzzAppendJSON(f *testing.F) {
	f.Add("t", []byte("k"), []byte("v"))
	f.Add("\xff", []byte{0xff}, []byte("\u2028\"\\\x00"))
	f.Fuzz(func(t *testing.T, topic string, key, value []byte) {
		line := AppendJSON(nil, &engine.Record{Topic: topic, Key: key, Value: value})
		var d decoded
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatalf("invalid JSON %q: %v", line, err)
		}
		check := func(what string, s *string, b64 string, want []byte) {
			var got []byte
			switch {
			case s != nil:
				got = []byte(*s)
			case b64 != "":
				var err error
				if got, err = base64.StdEncoding.DecodeString(b64); err != nil {
					t.Fatalf("%s: bad base64: %v", what, err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: got %q, want %q (line %s)", what, got, want, line)
			}
		}
		check("key", d.Key, d.KeyBase64, key)
		check("value", d.Value, d.ValueBase64, value)
		if bytes.Count(line, []byte("\n")) != 1 {
			t.Fatalf("line %q must hold exactly one newline, at the end", line)
		}
	})
}

// FuzzParseJSON checks that ParseJSON gives back exactly the record
// AppendJSON wrote, and never panics on a damaged line.
func FuzzParseJSON(f *testing.F) {
	f.Add("t", []byte("k"), []byte("v"), "h", []byte("x"), int64(7), false)
	f.Add("\xff", []byte{0xff}, []byte("\u2028\"\\\x00"), "", []byte{0x80}, int64(-1), true)
	f.Fuzz(func(t *testing.T, topic string, key, value []byte, hkey string, hvalue []byte, offset int64, nilKey bool) {
		if nilKey {
			key = nil
		}
		in := engine.Record{Topic: strings.ToValidUTF8(topic, "\uFFFD"), Offset: offset, Key: key, Value: value,
			Time:    time.Unix(0, offset).UTC(),
			Headers: []engine.Header{{Key: strings.ToValidUTF8(hkey, "\uFFFD"), Value: hvalue}}}
		line := AppendJSON(nil, &in)
		got, err := ParseJSON(line)
		if err != nil {
			t.Fatalf("ParseJSON(%q): %v", line, err)
		}
		if got.Topic != in.Topic || got.Offset != in.Offset || !got.Time.Equal(in.Time) ||
			!bytes.Equal(got.Key, in.Key) || (got.Key == nil) != (in.Key == nil) || !bytes.Equal(got.Value, in.Value) ||
			len(got.Headers) != 1 || got.Headers[0].Key != in.Headers[0].Key || !bytes.Equal(got.Headers[0].Value, hvalue) {
			t.Fatalf("round trip of %q:\n got %+v\nwant %+v", line, got, in)
		}
		ParseJSON(line[:len(line)/2]) // a torn line: an error, not a panic
	})
}
