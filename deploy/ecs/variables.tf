variable "speedctl_config" {
  description = <<-EOT
    The values of ~/.speedctl/config, as `speedctl config show --json --reveal` prints them:
    SPEEDSCALE_APP_URL, SPEEDSCALE_API_KEY and TENANT_ID are required; TENANT_NAME, SUB_TENANT_NAME,
    TENANT_BUCKET, TENANT_REGION, SUB_TENANT_STREAM, CLUSTER_NAME, SPEEDSCALE_FILTER_RULE,
    SPEEDSCALE_DLP_CONFIG and SPEEDSCALE_REDACT go into the forwarder's environment when set.
    The API key goes into a Secrets Manager secret, not into the task definition.
  EOT
  type        = map(string)
  sensitive   = true

  validation {
    condition     = alltrue([for k in ["SPEEDSCALE_APP_URL", "SPEEDSCALE_API_KEY", "TENANT_ID"] : try(var.speedctl_config[k], "") != ""])
    error_message = "speedctl_config needs SPEEDSCALE_APP_URL, SPEEDSCALE_API_KEY and TENANT_ID (speedctl config set KEY=VALUE)."
  }
}

variable "name" {
  description = "Name of the forwarder's task family, container, service and service-discovery entry (the guide's \"forwarder\"); also the prefix of the secrets, role and log group this module creates."
  type        = string
  default     = "forwarder"
}

variable "cluster_id" {
  description = "ID (ARN) of the ECS cluster the forwarder runs in (the guide's aws_ecs_cluster.cluster.id)."
  type        = string
}

variable "cluster_name" {
  description = "CLUSTER_NAME, the cluster label on every record. Null: the config's CLUSTER_NAME, else \"ecs\" (the guide's)."
  type        = string
  default     = null
}

variable "namespace_id" {
  description = "ID of the private DNS namespace for service discovery (the guide's aws_service_discovery_private_dns_namespace.cluster.id)."
  type        = string
}

variable "namespace_name" {
  description = "Name of that namespace (the guide's ecs.local): goproxies reach the forwarder at NAME.NAMESPACE:8888."
  type        = string
  default     = "ecs.local"
}

variable "subnet_ids" {
  description = "Subnets of the forwarder's service: private subnets with a route to the hub and to S3 (a NAT gateway or VPC endpoints)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the forwarder's service. They must let the apps' tasks reach TCP 8888."
  type        = list(string)
}

variable "forwarder_image" {
  description = "The forwarder's image, built from deploy/docker/forwarder.Dockerfile and pushed to a registry the tasks can pull from."
  type        = string
}

variable "desired_count" {
  description = "Forwarder tasks to run. Each keeps its own spool; goproxies spread over them through the A records."
  type        = number
  default     = 1
}

variable "log_retention_days" {
  description = "Retention of the forwarder's CloudWatch log group."
  type        = number
  default     = 30
}

variable "ca_cert_pem" {
  description = "The CA certificate (tls.crt, e.g. file(\"tls.crt\") after speedctl certs create). Null: the secrets named by ca_secret_names already exist (made with the guide's aws secretsmanager create-secret)."
  type        = string
  default     = null
}

variable "ca_key_pem" {
  description = "The CA's private key (tls.key), with ca_cert_pem. It is stored in Secrets Manager and in the Terraform state."
  type        = string
  default     = null
  sensitive   = true
}

variable "ca_secret_names" {
  description = "Names of the Secrets Manager secrets holding the CA certificate and key (the guide's tls.crt and tls.key)."
  type = object({
    crt = string
    key = string
  })
  default = {
    crt = "tls.crt"
    key = "tls.key"
  }
}

variable "app_task_role_names" {
  description = "Names of the task roles of the apps that get the sidecar: each gets the policy that lets its init container read the CA secrets."
  type        = list(string)
  default     = []
}

variable "forwarder_token" {
  description = "FORWARDER_TOKEN, the token goproxies send the forwarder. Null: the config's FORWARDER_TOKEN (the one speedctl ecs forwarder and ecs inject write), else one generated here (43 letters and digits). It goes into a Secrets Manager secret that the forwarder and every sidecar read (the forwarder_token_secret output), and into Terraform's state."
  type        = string
  default     = null
  sensitive   = true
}

variable "no_token" {
  description = "UNSAFE. true: no FORWARDER_TOKEN, the guide's setup: the forwarder accepts batches from anyone who reaches TCP 8888, the security group is the only boundary (it says UNAUTHENTICATED in its log and health text). Give the sidecars forwarder_token_secret = null then."
  type        = bool
  default     = false
}

variable "app_execution_role_names" {
  description = "Names of the execution roles of the apps' tasks that get the sidecar: each gets the policy that lets ECS give goproxy the FORWARDER_TOKEN secret (token_read_policy_arn)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource this module creates."
  type        = map(string)
  default     = {}
}
