package recordfmt

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/engine"
)

// Format names a line format.
type Format string

const (
	// JSONL writes one JSON object per record:
	//
	//	{"topic":"t","partition":0,"offset":7,"key":"k","value":"v",
	//	 "timestamp":"2026-01-02T03:04:05.000000006Z","headers":[{"key":"h","value":"x"}]}
	//
	// key, value and header values are JSON strings when they are valid UTF-8.
	// Bytes that are not valid UTF-8 are written base64 (standard alphabet,
	// padded) under "key_base64" / "value_base64" instead, so no byte is lost
	// or silently replaced. A nil key or value is null; a zero time is null.
	JSONL Format = "jsonl"
	// Raw writes each record's value followed by '\n'. Values that contain
	// '\n' therefore span several lines; use jsonl for such data.
	Raw Format = "raw"
)

// Parse checks a format name from a pipeline file; "" means jsonl.
func Parse(s string) (Format, error) {
	switch Format(s) {
	case "", JSONL:
		return JSONL, nil
	case Raw:
		return Raw, nil
	}
	return "", fmt.Errorf("format %q is not known: write format: jsonl (one JSON object per record) or format: raw (each value as one line)", s)
}

// Ext is the file name extension for files in format f.
func (f Format) Ext() string {
	if f == Raw {
		return ".txt"
	}
	return ".jsonl"
}

// Append appends r as one line (ending in '\n') in format f.
func (f Format) Append(dst []byte, r *engine.Record) []byte {
	if f == Raw {
		dst = append(dst, r.Value...)
		return append(dst, '\n')
	}
	return AppendJSON(dst, r)
}

// AppendJSON appends r as one JSON object and a '\n'.
func AppendJSON(dst []byte, r *engine.Record) []byte {
	dst = append(dst, `{"topic":`...)
	dst = appendString(dst, r.Topic)
	dst = append(dst, `,"partition":`...)
	dst = strconv.AppendInt(dst, int64(r.Partition), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, r.Offset, 10)
	dst = appendBytesField(dst, "key", r.Key)
	dst = appendBytesField(dst, "value", r.Value)
	dst = append(dst, `,"timestamp":`...)
	if r.Time.IsZero() {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '"')
		dst = r.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"headers":[`...)
	for i, h := range r.Headers {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"key":`...)
		dst = appendString(dst, h.Key)
		dst = appendBytesField(dst, "value", h.Value)
		dst = append(dst, '}')
	}
	return append(dst, "]}\n"...)
}

// appendBytesField appends ,"name":... choosing a string, base64 or null.
func appendBytesField(dst []byte, name string, b []byte) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	switch {
	case b == nil:
		return append(dst, `":null`...)
	case utf8.Valid(b):
		dst = append(dst, '"', ':')
		return appendString(dst, b)
	default:
		dst = append(dst, `_base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, '"')
	}
}

const hex = "0123456789abcdef"

// appendString appends s, which must be valid UTF-8 (a Go string from a
// Record field may not be; invalid bytes become U+FFFD as encoding/json does),
// as a JSON string.
func appendString[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// jsonRecord is a JSONL line as ParseJSON reads it.
type jsonRecord struct {
	Topic       string       `json:"topic"`
	Partition   int32        `json:"partition"`
	Offset      int64        `json:"offset"`
	Key         *string      `json:"key"`
	KeyBase64   []byte       `json:"key_base64"`
	Value       *string      `json:"value"`
	ValueBase64 []byte       `json:"value_base64"`
	Timestamp   *time.Time   `json:"timestamp"`
	Headers     []jsonHeader `json:"headers"`
}

type jsonHeader struct {
	Key         string  `json:"key"`
	Value       *string `json:"value"`
	ValueBase64 []byte  `json:"value_base64"`
}

// ParseJSON reads one line AppendJSON wrote (with or without its '\n')
// back into a record: bytes come back exactly, a null key or value as nil.
func ParseJSON(line []byte) (engine.Record, error) {
	var j jsonRecord
	if err := json.Unmarshal(line, &j); err != nil {
		return engine.Record{}, fmt.Errorf("not a jsonl record: %w", err)
	}
	r := engine.Record{
		Topic: j.Topic, Partition: j.Partition, Offset: j.Offset,
		Key: bytesField(j.Key, j.KeyBase64), Value: bytesField(j.Value, j.ValueBase64),
	}
	if j.Timestamp != nil {
		r.Time = *j.Timestamp
	}
	if len(j.Headers) > 0 {
		r.Headers = make([]engine.Header, len(j.Headers))
		for i, h := range j.Headers {
			r.Headers[i] = engine.Header{Key: h.Key, Value: bytesField(h.Value, h.ValueBase64)}
		}
	}
	return r, nil
}

func bytesField(s *string, b64 []byte) []byte {
	switch {
	case s != nil:
		return []byte(*s)
	case b64 != nil:
		return b64
	}
	return nil
}
