package replay

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"strconv"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/protoraw"
)

// gRPC calls are replayed as what they are on the wire: a POST over HTTP/2 whose body is the recorded
// request messages, each framed (a compressed flag, a 4-byte length, the message), and whose status is the
// grpc-status trailer. Responses are compared message by message, each decoded without a schema into its
// fields (body.0.1 is field 1 of the first message), so that noise is learned per field.

// isGRPC reports whether a request is a gRPC call.
func isGRPC(h capture.Headers) bool {
	ct := h.Get("Content-Type")
	return len(ct) >= 16 && ct[:16] == "application/grpc"
}

// grpcBody frames the messages of one direction of a recorded call. ok is false when one was not captured
// whole.
func grpcBody(msgs []capture.Message, up bool) (body []byte, ok bool) {
	body = []byte{}
	for _, m := range msgs {
		if m.Up != up {
			continue
		}
		if m.Truncated || int64(len(m.Data)) != m.Size {
			return nil, false
		}
		body = appendFrame(body, m.Data, m.Compressed)
	}
	return body, true
}

func appendFrame(b, data []byte, compressed bool) []byte {
	var flag byte
	if compressed {
		flag = 1
	}
	b = append(b, flag)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// grpcMessages splits a framed body into its messages; a cut last frame is kept as it is.
func grpcMessages(body []byte) (msgs [][]byte, compressed []bool) {
	for len(body) >= 5 {
		n := int(binary.BigEndian.Uint32(body[1:5]))
		c := body[0] == 1
		body = body[5:]
		n = min(n, len(body))
		msgs, compressed = append(msgs, body[:n]), append(compressed, c)
		body = body[n:]
	}
	return msgs, compressed
}

// grpcDoc turns messages into a JSON-like document that diffJSON and leaves walk: a list with one object
// per message, keyed by field number (a repeated field becomes a list); a message that does not decode, or is
// compressed, is its base64.
func grpcDoc(msgs [][]byte, compressed []bool) any {
	doc := make([]any, len(msgs))
	for i, m := range msgs {
		if fs, ok := protoraw.Decode(m); ok && !compressed[i] {
			doc[i] = protoDoc(fs)
		} else {
			doc[i] = base64.StdEncoding.EncodeToString(m)
		}
	}
	return doc
}

func protoDoc(fs []capture.ProtoField) map[string]any {
	m := make(map[string]any, len(fs))
	for _, f := range fs {
		var v any
		switch {
		case f.Message != nil:
			v = protoDoc(f.Message)
		case f.String != nil:
			v = *f.String
		case f.Uint != nil:
			v = json.Number(strconv.FormatUint(*f.Uint, 10))
		default:
			v = base64.StdEncoding.EncodeToString(f.Bytes)
		}
		k := strconv.Itoa(int(f.Num))
		switch prev := m[k].(type) {
		case nil:
			m[k] = v
		case []any:
			m[k] = append(prev, v)
		default:
			m[k] = []any{prev, v}
		}
	}
	return m
}

// recordedGRPCDoc is the document of a recorded call's response messages.
func recordedGRPCDoc(msgs []capture.Message) (any, bool) {
	var data [][]byte
	var comp []bool
	for _, m := range msgs {
		if m.Up {
			continue
		}
		if m.Truncated {
			return nil, false
		}
		data, comp = append(data, m.Data), append(comp, m.Compressed)
	}
	return grpcDoc(data, comp), true
}
