package replay

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tapwire/tapwire/internal/capture"
)

// rawCodec passes message bytes through as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append((*(v.(*[]byte)))[:0], b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// pb is the message {1: text, 2: n}.
func pb(text string, n uint64) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendString(b, text)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	return protowire.AppendVarint(b, n)
}

// startOrdersGRPC serves shop.Orders/Get: it answers {1: "order", 2: len(request)}, and NotFound to a request
// that says "missing"; version 2 answers {1: "order", 2: len+1}.
func startOrdersGRPC(t *testing.T, version int) string {
	t.Helper()
	s := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "shop.Orders",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Get", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			if strings.Contains(string(in), "missing") {
				return nil, status.Error(codes.NotFound, "no such order")
			}
			out := pb("order", uint64(len(in)+version-1))
			return &out, nil
		}}},
	}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

func grpcRec(req []byte, resp []byte, code int) *capture.Record {
	r := rec("POST", "/shop.Orders/Get", "", "10.0.0.1", 200, "", 0)
	r.HTTP.Req.Proto = "HTTP/2.0"
	r.HTTP.Req.Headers = capture.Headers{{Name: "Content-Type", Value: "application/grpc"}, {Name: "Te", Value: "trailers"}, {Name: "Grpc-Timeout", Value: "999991u"}}
	r.HTTP.Req.Body = capture.Body{Size: int64(len(req) + 5), Truncated: true}
	r.HTTP.Res.Headers = capture.Headers{{Name: "Content-Type", Value: "application/grpc"}}
	r.HTTP.Res.Body = capture.Body{Size: int64(len(resp) + 5), Truncated: true}
	r.HTTP.Messages = []capture.Message{{Up: true, AtMicros: 100, Size: int64(len(req)), Data: req}}
	if resp != nil {
		r.HTTP.Messages = append(r.HTTP.Messages, capture.Message{AtMicros: 900, Size: int64(len(resp)), Data: resp})
	}
	r.HTTP.GRPC = &capture.GRPC{Service: "shop.Orders", Method: "Get", Status: &code}
	return r
}

func TestGRPCUnary(t *testing.T) {
	req := pb("A-1", 150)
	recs := []*capture.Record{
		grpcRec(req, pb("order", uint64(len(req))), 0),
		grpcRec(pb("missing", 1), nil, int(codes.NotFound)),
	}
	recs[1].Start = recs[0].Start.Add(time.Millisecond)
	for _, tc := range []struct {
		name            string
		version         int
		wantBodyMatched int
	}{{"same build", 1, 2}, {"changed build", 2, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startOrdersGRPC(t, tc.version)
			rep, err := run(t, Config{Target: "http://" + addr}, recs)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Sent != 2 || rep.StatusMatched != 2 || rep.BodyMatched != tc.wantBodyMatched {
				t.Fatalf("sent %d, status matched %d, body matched %d; want 2, 2, %d: %+v", rep.Sent, rep.StatusMatched, rep.BodyMatched, tc.wantBodyMatched, rep.Diffs)
			}
			if rep.Endpoints[0].Endpoint != "gRPC /shop.Orders/Get" {
				t.Errorf("endpoint %q", rep.Endpoints[0].Endpoint)
			}
			if tc.version == 2 {
				f := rep.Diffs[0].Examples[0].Fields
				if len(f) != 1 || f[0] != (FieldDiff{"body.0.2", "8", "9"}) {
					t.Errorf("diff %+v, want field 2 of the first message, 8 then 9", f)
				}
			}
		})
	}
}
