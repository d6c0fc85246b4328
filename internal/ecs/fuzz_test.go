package ecs

import (
	"bytes"
	"os"
	"testing"
)

// FuzzInjectUninject: ReadTaskDefinition never panics and reads its own
// output back unchanged; whatever Inject accepts, Uninject undoes exactly,
// and a second Inject changes nothing.
func FuzzInjectUninject(f *testing.F) {
	for _, name := range []string{"notifications.describe.json", "orders.register.json", "bridge.json"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "", 0)
	}
	f.Add([]byte(`{"family":"f","networkMode":"awsvpc","containerDefinitions":[{"name":"a","environment":[{"name":"NO_PROXY","value":"x,,localhost"},{"name":"HTTP_PROXY"}],"portMappings":[{"containerPort":1}]}]}`), "a", 0)
	f.Fuzz(func(t *testing.T, data []byte, container string, port int) {
		td, err := ReadTaskDefinition(data)
		if err != nil {
			return
		}
		orig := td.Bytes()
		again, err := ReadTaskDefinition(orig)
		if err != nil {
			t.Fatalf("reading our own output: %v\n%s", err, orig)
		}
		if !bytes.Equal(again.Bytes(), orig) {
			t.Fatalf("read back differently:\n%s\nwant\n%s", again.Bytes(), orig)
		}
		o := InjectOptions{Container: container, Port: port}
		if _, err := Inject(td, o); err != nil {
			if !bytes.Equal(td.Bytes(), orig) {
				t.Fatalf("a failed Inject (%v) changed the task definition", err)
			}
			return
		}
		once := td.Bytes()
		twice, _ := ReadTaskDefinition(once)
		if _, err := Inject(twice, o); err != nil {
			t.Fatalf("second Inject: %v", err)
		}
		if !bytes.Equal(twice.Bytes(), once) {
			t.Fatalf("second Inject differs:\n%s\nonce:\n%s", twice.Bytes(), once)
		}
		back, _ := ReadTaskDefinition(once)
		if _, err := Uninject(back); err != nil {
			t.Fatalf("Uninject: %v", err)
		}
		if !bytes.Equal(back.Bytes(), orig) {
			t.Fatalf("Uninject:\n%s\nwant\n%s", back.Bytes(), orig)
		}
	})
}
