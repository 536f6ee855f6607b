// Package recordfmt encodes records as output lines for the sinks that write
// text: `raw` (the value as it is) and `jsonl` (one JSON object per record).
// Encoders append to a caller's buffer so a sink can write straight into its
// bufio.Writer without a copy per record.
package recordfmt
