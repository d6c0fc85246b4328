// Package e2e runs the ECS/Fargate deployment guide for real on one Linux
// machine: network namespaces stand in for the task (the app and goproxy
// sharing localhost), the forwarder reached as forwarder.ecs.local:8888, the
// hub, the tenant bucket (MinIO), an HTTPS upstream called by host name and
// a load balancer, each process a real binary with the guide's environment. TestGuide checks the
// capture end to end, that secrets sent through the app reach neither the
// hub, the bucket, the forwarder's spool nor the wire from goproxy (recorded
// by a relay on the path), and that a forwarder as speedctl writes it
// refuses unauthenticated batches; then it breaks the deployment (the forwarder killed under
// load, the hub down, the upstream resetting, garbage on the ports, the CA
// rotated) and checks each outcome. docs/e2e.md describes it.
package e2e
