output "forwarder_addr" {
  description = "FORWARDER_ADDR for the sidecars: the forwarder's service-discovery name and port (the guide's forwarder.ecs.local:8888)."
  value       = "${aws_service_discovery_service.forwarder.name}.${var.namespace_name}:8888"
}

output "cluster_name" {
  description = "The cluster label: the forwarder's CLUSTER_NAME, for the sidecars' APP_POD_NAMESPACE."
  value       = local.cluster_name
}

output "ca_secret_crt" {
  description = "ARN of the secret holding the CA certificate, for the sidecar module's ca_secret_crt."
  value       = local.ca_crt_arn
}

output "ca_secret_key" {
  description = "ARN of the secret holding the CA key, for the sidecar module's ca_secret_key."
  value       = local.ca_key_arn
}

output "ca_read_policy_arn" {
  description = "The policy an app's task role needs so that its init container can read the CA (attached for you to app_task_role_names)."
  value       = aws_iam_policy.ca_read.arn
}

output "forwarder_service_name" {
  description = "Name of the forwarder's ECS service."
  value       = aws_ecs_service.forwarder.name
}

output "forwarder_token_secret" {
  description = "ARN of the secret holding FORWARDER_TOKEN, for the sidecar module's forwarder_token_secret; null with no_token."
  value       = local.token_secret_arn
}

output "token_read_policy_arn" {
  description = "The policy an app's execution role needs so that ECS can give goproxy the token (attached for you to app_execution_role_names); null with no_token."
  value       = one(aws_iam_policy.token_read[*].arn)
}
