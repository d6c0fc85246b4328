// Package ecstest checks JSON that speedctl writes for AWS against the AWS
// SDK for Go v2: it decodes it strictly into the SDK's input types, checks
// enum values, serializes it again with the SDK's own client (over a fake
// HTTP transport, no network) and requires the same JSON back, so a field
// name in the wrong case, an unknown field or a wrong type fails. Tests
// only: it keeps the SDK out of the speedctl binary.
package ecstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/servicediscovery"
)

// RegisterTaskDefinition checks register-task-definition input JSON.
func RegisterTaskDefinition(data []byte) error {
	return check(data, func(ctx context.Context, in *awsecs.RegisterTaskDefinitionInput, hc aws.HTTPClient) error {
		_, err := ecsClient(hc).RegisterTaskDefinition(ctx, in)
		return err
	})
}

// CreateService checks ecs create-service input JSON.
func CreateService(data []byte) error {
	return check(data, func(ctx context.Context, in *awsecs.CreateServiceInput, hc aws.HTTPClient) error {
		_, err := ecsClient(hc).CreateService(ctx, in)
		return err
	})
}

// CreateDiscoveryService checks servicediscovery create-service input JSON.
func CreateDiscoveryService(data []byte) error {
	return check(data, func(ctx context.Context, in *servicediscovery.CreateServiceInput, hc aws.HTTPClient) error {
		c := servicediscovery.New(servicediscovery.Options{Region: "us-east-1", HTTPClient: hc, Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1})
		_, err := c.CreateService(ctx, in)
		return err
	})
}

// Forwarder checks the JSON of `speedctl ecs forwarder --format json`:
// its taskDefinition, serviceDiscovery and service members.
func Forwarder(data []byte) error {
	var parts map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(data))
	if err := d.Decode(&parts); err != nil {
		return err
	}
	checks := map[string]func([]byte) error{
		"taskDefinition":   RegisterTaskDefinition,
		"serviceDiscovery": CreateDiscoveryService,
		"service":          CreateService,
	}
	if len(parts) != len(checks) {
		return fmt.Errorf("members %v, want taskDefinition, serviceDiscovery, service", slices.Sorted(mapsKeys(parts)))
	}
	for name, f := range checks {
		p, ok := parts[name]
		if !ok {
			return fmt.Errorf("no %s member", name)
		}
		if err := f(p); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func mapsKeys(m map[string]json.RawMessage) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func ecsClient(hc aws.HTTPClient) *awsecs.Client {
	return awsecs.New(awsecs.Options{Region: "us-east-1", HTTPClient: hc, Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1})
}

// capture is an HTTP client that keeps the request body and answers {}.
type capture struct{ body []byte }

func (c *capture) Do(r *http.Request) (*http.Response, error) {
	var err error
	if c.body, err = io.ReadAll(r.Body); err != nil {
		return nil, err
	}
	return &http.Response{
		StatusCode: 200,
		Header:     http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
		Body:       io.NopCloser(strings.NewReader("{}")),
		Request:    r,
	}, nil
}

func check[T any](data []byte, call func(context.Context, *T, aws.HTTPClient) error) error {
	var in T
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&in); err != nil {
		return fmt.Errorf("decode into %T: %w", in, err)
	}
	if err := checkEnums(reflect.ValueOf(in), reflect.TypeOf(in).Name()); err != nil {
		return err
	}
	hc := &capture{}
	if err := call(context.Background(), &in, hc); err != nil {
		return fmt.Errorf("the SDK refuses it: %w", err)
	}
	var ours, sdk any
	if err := json.Unmarshal(data, &ours); err != nil {
		return err
	}
	if err := json.Unmarshal(hc.body, &sdk); err != nil {
		return fmt.Errorf("the SDK's request body: %w", err)
	}
	var diffs []string
	compare("", ours, sdk, &diffs)
	if len(diffs) > 0 {
		sort.Strings(diffs)
		return fmt.Errorf("the SDK serializes it differently (a field it does not know, in another case or of another type):\n  %s", strings.Join(diffs, "\n  "))
	}
	return nil
}

// checkEnums fails on a string of an SDK enum type that is not one of
// the type's Values().
func checkEnums(v reflect.Value, path string) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return checkEnums(v.Elem(), path)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				if err := checkEnums(v.Field(i), path+"."+v.Type().Field(i).Name); err != nil {
					return err
				}
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			if err := checkEnums(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			if err := checkEnums(v.MapIndex(k), fmt.Sprintf("%s[%v]", path, k)); err != nil {
				return err
			}
		}
	case reflect.String:
		m := v.MethodByName("Values")
		if !m.IsValid() || v.Len() == 0 {
			return nil
		}
		allowed := m.Call(nil)[0]
		var names []string
		for i := 0; i < allowed.Len(); i++ {
			if allowed.Index(i).String() == v.String() {
				return nil
			}
			names = append(names, allowed.Index(i).String())
		}
		return fmt.Errorf("%s = %q: not a %s (want one of %s)", path, v.String(), v.Type().Name(), strings.Join(names, ", "))
	}
	return nil
}

// compare records where ours and the SDK's JSON differ. A zero scalar
// (0, false, "") that the SDK leaves out is no difference: the SDK omits
// zero values of fields that are not pointers.
func compare(path string, ours, sdk any, diffs *[]string) {
	switch o := ours.(type) {
	case map[string]any:
		s, ok := sdk.(map[string]any)
		if !ok {
			*diffs = append(*diffs, fmt.Sprintf("%s: ours an object, the SDK's %T", path, sdk))
			return
		}
		for k, v := range o {
			sv, ok := s[k]
			if !ok {
				if v == 0.0 || v == false || v == "" {
					continue
				}
				*diffs = append(*diffs, fmt.Sprintf("%s.%s: ours only", path, k))
				continue
			}
			compare(path+"."+k, v, sv, diffs)
		}
		for k := range s {
			if _, ok := o[k]; !ok && !(path == "" && k == "CreatorRequestId") { // an idempotency token the SDK fills in
				*diffs = append(*diffs, fmt.Sprintf("%s.%s: the SDK's only", path, k))
			}
		}
	case []any:
		s, ok := sdk.([]any)
		if !ok || len(s) != len(o) {
			*diffs = append(*diffs, fmt.Sprintf("%s: ours %v, the SDK's %v", path, ours, sdk))
			return
		}
		for i := range o {
			compare(fmt.Sprintf("%s[%d]", path, i), o[i], s[i], diffs)
		}
	default:
		if !reflect.DeepEqual(ours, sdk) {
			*diffs = append(*diffs, fmt.Sprintf("%s: ours %v, the SDK's %v", path, ours, sdk))
		}
	}
}
