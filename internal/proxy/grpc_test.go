package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/testca"
)

// rawCodec sends and receives message bytes as they are, so the test
// needs no generated code; the bytes are real protobuf built by protowire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// msg is a protobuf message {1: text, 2: n}.
func msg(text string, n uint64) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendString(b, text)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	return protowire.AppendVarint(b, n)
}

// echoService is test.Echo with one method of each kind.
func echoService() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "Unary", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var in []byte
				if err := dec(&in); err != nil {
					return nil, err
				}
				if strings.Contains(string(in), "fail") {
					return nil, status.Error(codes.NotFound, "no such order: 42%")
				}
				out := msg("echo", uint64(len(in)))
				return &out, nil
			}},
		},
		Streams: []grpc.StreamDesc{
			{StreamName: "ServerStream", ServerStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
				var in []byte
				if err := s.RecvMsg(&in); err != nil {
					return err
				}
				for i := uint64(1); i <= 3; i++ {
					out := msg("part", i)
					if err := s.SendMsg(&out); err != nil {
						return err
					}
				}
				return nil
			}},
			{StreamName: "ClientStream", ClientStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
				var n uint64
				for {
					var in []byte
					if err := s.RecvMsg(&in); errors.Is(err, io.EOF) {
						break
					} else if err != nil {
						return err
					}
					n++
				}
				out := msg("total", n)
				return s.SendMsg(&out)
			}},
			{StreamName: "Bidi", ClientStreams: true, ServerStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
				for {
					var in []byte
					if err := s.RecvMsg(&in); errors.Is(err, io.EOF) {
						return nil
					} else if err != nil {
						return err
					}
					out := msg("pong", uint64(len(in)))
					if err := s.SendMsg(&out); err != nil {
						return err
					}
				}
			}},
		},
	}
}

func startGRPC(t *testing.T, creds credentials.TransportCredentials) string {
	t.Helper()
	opts := []grpc.ServerOption{grpc.ForceServerCodec(rawCodec{})}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	s.RegisterService(echoService(), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// exercise makes one call of each kind on conn and checks the answers.
func exercise(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opt := grpc.ForceCodec(rawCodec{})

	in, out := msg("hello", 42), []byte(nil)
	if err := conn.Invoke(ctx, "/test.Echo/Unary", &in, &out, opt); err != nil {
		t.Fatalf("unary: %v", err)
	}
	fail := msg("fail", 1)
	if err := conn.Invoke(ctx, "/test.Echo/Unary", &fail, &out, opt); status.Code(err) != codes.NotFound {
		t.Fatalf("unary failing: %v, want NotFound", err)
	}
	stream := func(name string, desc *grpc.StreamDesc, send int) int {
		s, err := conn.NewStream(ctx, desc, "/test.Echo/"+name, opt)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := 0
		for i := 0; i < send; i++ {
			m := msg("ping", uint64(i))
			if err := s.SendMsg(&m); err != nil {
				t.Fatalf("%s send: %v", name, err)
			}
			if desc.ServerStreams && desc.ClientStreams { // ping-pong
				var r []byte
				if err := s.RecvMsg(&r); err != nil {
					t.Fatalf("%s recv: %v", name, err)
				}
				got++
			}
		}
		s.CloseSend()
		for {
			var r []byte
			if err := s.RecvMsg(&r); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s recv: %v", name, err)
			}
			got++
		}
		return got
	}
	if n := stream("ServerStream", &grpc.StreamDesc{ServerStreams: true}, 1); n != 3 {
		t.Errorf("server stream: %d messages, want 3", n)
	}
	if n := stream("ClientStream", &grpc.StreamDesc{ClientStreams: true}, 4); n != 1 {
		t.Errorf("client stream: %d answers, want 1", n)
	}
	if n := stream("Bidi", &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, 3); n != 3 {
		t.Errorf("bidi: %d answers, want 3", n)
	}
}

// checkGRPCRecords checks the five records exercise makes.
func checkGRPCRecords(t *testing.T, rec *recorder) {
	t.Helper()
	byMethod := map[string][]*capture.Record{}
	for i := 0; i < 5; i++ {
		r := rec.next(t)
		if r.HTTP == nil || r.HTTP.GRPC == nil {
			t.Fatalf("record %d is not a gRPC record: %+v", i, r.HTTP)
		}
		byMethod[r.HTTP.GRPC.Method] = append(byMethod[r.HTTP.GRPC.Method], r)
	}
	dirs := func(r *capture.Record) string {
		var b strings.Builder
		for _, m := range r.HTTP.Messages {
			if m.Up {
				b.WriteByte('>')
			} else {
				b.WriteByte('<')
			}
		}
		return b.String()
	}
	tests := []struct {
		method, dirs string
		status       int
	}{
		{"ServerStream", "><<<", 0},
		{"ClientStream", ">>>><", 0},
		{"Bidi", "><><><", 0},
	}
	for _, tt := range tests {
		rs := byMethod[tt.method]
		if len(rs) != 1 {
			t.Errorf("%s: %d records", tt.method, len(rs))
			continue
		}
		g := rs[0].HTTP.GRPC
		if got := dirs(rs[0]); got != tt.dirs || g.Service != "test.Echo" || g.Status == nil || *g.Status != tt.status {
			t.Errorf("%s: messages %q status %v, want %q %d", tt.method, got, g.Status, tt.dirs, tt.status)
		}
	}
	unary := byMethod["Unary"]
	if len(unary) != 2 {
		t.Fatalf("unary records: %d, want 2", len(unary))
	}
	var ok, failed *capture.Record
	for _, r := range unary {
		if *r.HTTP.GRPC.Status == 0 {
			ok = r
		} else {
			failed = r
		}
	}
	if ok == nil || failed == nil {
		t.Fatalf("want one OK and one failed unary call")
	}
	ms := ok.HTTP.Messages
	if len(ms) != 2 || !ms[0].Up || ms[1].Up {
		t.Fatalf("unary messages = %+v", ms)
	}
	f := ms[0].Fields
	if len(f) != 2 || f[0].Num != 1 || f[0].String == nil || *f[0].String != "hello" || f[1].Num != 2 || f[1].Uint == nil || *f[1].Uint != 42 {
		t.Errorf("request decoded as %+v, want {1: \"hello\", 2: 42}", f)
	}
	if ms[0].Size != int64(len(msg("hello", 42))) || string(ms[0].Data) != string(msg("hello", 42)) {
		t.Errorf("request message size %d data %x", ms[0].Size, ms[0].Data)
	}
	if *failed.HTTP.GRPC.Status != int(codes.NotFound) || failed.HTTP.GRPC.StatusMessage != "no such order: 42%" {
		t.Errorf("failed call: status %d %q", *failed.HTTP.GRPC.Status, failed.HTTP.GRPC.StatusMessage)
	}
}

func TestInboundGRPC(t *testing.T) {
	app := startGRPC(t, nil)
	addr, rec := startInbound(t, "http://"+app, true, Options{})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exercise(t, conn)
	checkGRPCRecords(t, rec)
}

func TestOutboundGRPCUnwrapped(t *testing.T) {
	app := testca.New(t)
	upCA := testca.New(t)
	upstream := startGRPC(t, credentials.NewTLS(upCA.ServerTLS(t, "localhost")))
	rec := newRecorder()
	ca, err := mitm.ParseCA(app.CertPEM(), app.KeyPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	minter, err := mitm.NewMinter(ca, mitm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := NewOutbound(Options{Emitter: rec, RootCAs: upCA.Pool(), Minter: minter})
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr := serve(t, out)
	_, port, _ := net.SplitHostPort(upstream)
	// The app dials through the proxy with CONNECT, as grpc-go does with
	// HTTPS_PROXY, and trusts only goproxy's CA.
	dial := func(ctx context.Context, target string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", proxyAddr)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil || res.StatusCode != 200 {
			c.Close()
			return nil, fmt.Errorf("CONNECT: %v %v", res, err)
		}
		return c, nil
	}
	conn, err := grpc.NewClient("passthrough:///localhost:"+port,
		grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: app.Pool(), ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exercise(t, conn)
	checkGRPCRecords(t, rec)
}

// TestDecodeBudget: bytes that decode into large trees (a run of 'x' is a
// message of many fields) are decoded only within the record's budget.
func TestDecodeBudget(t *testing.T) {
	x := []byte(strings.Repeat("x", 1024))
	ms := make([]capture.Message, 10)
	for i := range ms {
		ms[i] = capture.Message{Size: int64(len(x)), Data: x}
	}
	ms = append(ms, capture.Message{Size: maxDecodeBytes + 1, Data: make([]byte, maxDecodeBytes+1)})
	decodeProtobuf(ms)
	decoded, fields := 0, 0
	for _, m := range ms {
		if m.Fields != nil {
			decoded++
			for range m.Fields {
				fields++
			}
		}
	}
	if decoded == 0 || decoded == len(ms) || fields > maxDecodedPerRecord {
		t.Errorf("decoded %d of %d messages, %d top-level fields; want some, within %d fields", decoded, len(ms), fields, maxDecodedPerRecord)
	}
	if ms[len(ms)-1].Fields != nil {
		t.Errorf("a message over %d bytes was decoded", maxDecodeBytes)
	}
}

// TestHoldFlush: a gRPC response's headers are not flushed before its first
// body byte (a trailers-only answer must stay one HEADERS frame), and are
// once a message is written.
func TestHoldFlush(t *testing.T) {
	rec := httptest.NewRecorder()
	w := &holdFlush{ResponseWriter: rec}
	w.Header().Set("Grpc-Status", "5")
	w.WriteHeader(200)
	http.NewResponseController(w).Flush()
	if rec.Flushed {
		t.Fatal("flushed before any body byte")
	}
	w.Write([]byte{0, 0, 0, 0, 1, 8})
	http.NewResponseController(w).Flush()
	if !rec.Flushed {
		t.Fatal("not flushed after a message")
	}
}
