// Package wire is the packed record encoding carried in the plugin
// protocol's bytes fields. One contiguous buffer per batch keeps the cost of
// crossing the process boundary close to a memcpy: decoding allocates the
// record slice, one string per distinct topic and the header slices, while
// keys and values alias the buffer.
//
// Layout (all integers are varints, lengths are unsigned):
//
//	topics   count, then each topic as length+bytes
//	records  count, then per record:
//	         topic index, partition (signed), offset (signed),
//	         time (signed Unix nanoseconds; 0 = zero time),
//	         key, value (length+1 then bytes; 0 = nil),
//	         header count, then per header key (length+bytes), value (length+1+bytes)
package wire
