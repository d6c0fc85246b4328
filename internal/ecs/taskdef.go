// Package ecs writes and rewrites Amazon ECS task definitions for Tapwire,
// as the deployment guide does by hand: the forwarder's task definition,
// service and service-discovery entry, and the injection of the goproxy
// sidecar (with the init container that fetches the CA from Secrets
// Manager) into an application's task definition, and its removal.
//
// Task definitions are held as ordered JSON (Object), not as typed
// structs, so that fields this package does not know (newer ECS features)
// pass through untouched and uninject gives back the text it was given.
package ecs

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrNotTaskDefinition is returned by ReadTaskDefinition for JSON that is
// not a task definition.
var ErrNotTaskDefinition = errors.New("not a task definition")

// ReadOnlyFields are what describe-task-definition prints but
// register-task-definition does not take; ReadTaskDefinition drops them.
var ReadOnlyFields = []string{
	"taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
	"registeredAt", "registeredBy", "deregisteredAt",
}

// RegisterFields are the members of register-task-definition's input
// (ecs.RegisterTaskDefinitionInput in the AWS SDK for Go v2, which a test
// holds this list to).
var RegisterFields = []string{
	"family", "taskRoleArn", "executionRoleArn", "networkMode", "containerDefinitions", "volumes",
	"placementConstraints", "requiresCompatibilities", "cpu", "memory", "tags", "pidMode", "ipcMode",
	"proxyConfiguration", "inferenceAccelerators", "ephemeralStorage", "runtimePlatform",
	"enableFaultInjection", "trustedExecutionConfiguration",
}

// TaskDefinition is a task definition in the form of
// register-task-definition's input.
type TaskDefinition struct {
	*Object
	// Form says what ReadTaskDefinition was given: "describe-task-definition
	// output", "task definition" or "register-task-definition input".
	Form string
	// Dropped lists the read-only fields ReadTaskDefinition removed.
	Dropped []string
	// Unknown lists top-level fields that register-task-definition does not
	// take as far as this version knows; they are kept.
	Unknown []string
}

// ReadTaskDefinition reads a task definition as `aws ecs
// describe-task-definition` prints it ({"taskDefinition": {...}, "tags":
// [...]}), a bare taskDefinition object, or register-task-definition input
// JSON, and returns it as register-task-definition input: read-only fields
// dropped, the tags of describe's --include TAGS moved in.
func ReadTaskDefinition(data []byte) (*TaskDefinition, error) {
	v, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%w: not valid JSON: %w", ErrNotTaskDefinition, err)
	}
	obj, ok := v.(*Object)
	if !ok {
		if a, ok := v.([]any); ok && len(a) > 0 {
			if c, ok := a[0].(*Object); ok && c.Has("name") && c.Has("image") {
				return nil, fmt.Errorf("%w: this is a list of container definitions (Terraform's container_definitions?); "+
					"give the whole task definition (aws ecs describe-task-definition --task-definition FAMILY), "+
					"or with Terraform use the module in deploy/ecs/sidecar", ErrNotTaskDefinition)
			}
		}
		return nil, fmt.Errorf("%w: want a JSON object, got %s", ErrNotTaskDefinition, kind(v))
	}
	td := &TaskDefinition{Form: "register-task-definition input"}
	if inner, ok := obj.Get("taskDefinition"); ok {
		in, ok := inner.(*Object)
		if !ok {
			return nil, fmt.Errorf("%w: taskDefinition is %s, want an object", ErrNotTaskDefinition, kind(inner))
		}
		td.Form = "describe-task-definition output"
		if tags := obj.Array("tags"); len(tags) > 0 && !in.Has("tags") {
			in.Set("tags", tags)
		}
		obj = in
	} else if obj.Has("taskDefinitionArn") || obj.Has("revision") || obj.Has("status") {
		td.Form = "task definition"
	}
	if !obj.Has("containerDefinitions") {
		keys := obj.Keys()
		if len(keys) > 6 {
			keys = append(keys[:6], "...")
		}
		return nil, fmt.Errorf("%w: no containerDefinitions (found %s); want the output of `aws ecs describe-task-definition`, "+
			"its taskDefinition, or register-task-definition input", ErrNotTaskDefinition, strings.Join(keys, ", "))
	}
	cs, ok := obj.Get("containerDefinitions")
	if _, isArray := cs.([]any); !ok || !isArray {
		return nil, fmt.Errorf("%w: containerDefinitions is %s, want an array", ErrNotTaskDefinition, kind(cs))
	}
	for i, c := range cs.([]any) {
		co, ok := c.(*Object)
		if !ok || co.String("name") == "" {
			return nil, fmt.Errorf("%w: containerDefinitions[%d] has no name", ErrNotTaskDefinition, i)
		}
	}
	if obj.String("family") == "" {
		return nil, fmt.Errorf("%w: no family", ErrNotTaskDefinition)
	}
	for _, k := range ReadOnlyFields {
		if obj.Has(k) {
			obj.Delete(k)
			td.Dropped = append(td.Dropped, k)
		}
	}
	for _, k := range obj.Keys() {
		if !slices.Contains(RegisterFields, k) {
			td.Unknown = append(td.Unknown, k)
		}
	}
	td.Object = obj
	return td, nil
}

// Bytes returns the task definition as indented JSON.
func (td *TaskDefinition) Bytes() []byte { return Encode(td.Object) }

// Containers returns the container definitions.
func (td *TaskDefinition) Containers() []*Object {
	var cs []*Object
	for _, c := range td.Array("containerDefinitions") {
		if o, ok := c.(*Object); ok {
			cs = append(cs, o)
		}
	}
	return cs
}

// Container returns the container definition named name, or nil.
func (td *TaskDefinition) Container(name string) *Object {
	for _, c := range td.Containers() {
		if c.String("name") == name {
			return c
		}
	}
	return nil
}

// ContainerNames returns the names of the containers in order.
func (td *TaskDefinition) ContainerNames() []string {
	var names []string
	for _, c := range td.Containers() {
		names = append(names, c.String("name"))
	}
	return names
}

func kind(v any) string {
	switch v.(type) {
	case *Object:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// number returns v as an int when it is an integral JSON number.
func number(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	case int:
		return n, true
	}
	return 0, false
}
