variable "app_container" {
  description = "The app's container definition, as an object in the form of container_definitions (name, image, portMappings, environment, ...)."
  type        = any
}

variable "app_port" {
  description = "The port the app serves on: goproxy's REVERSE_PROXY_PORT (the guide's 8080)."
  type        = number

  validation {
    condition     = var.app_port >= 1 && var.app_port <= 65535 && !contains([4143, 4140, 4100], var.app_port)
    error_message = "app_port must be 1 to 65535 and not one of goproxy's own ports (4143, 4140, 4100): the app and goproxy share localhost."
  }
}

variable "forwarder_addr" {
  description = "FORWARDER_ADDR: the forwarder's service-discovery name and port (the root module's forwarder_addr output)."
  type        = string
  default     = "forwarder.ecs.local:8888"
}

variable "forwarder_token_secret" {
  description = "Secrets Manager secret (ARN) holding FORWARDER_TOKEN, given to goproxy as a secret (the root module's forwarder_token_secret output); the task's execution role must be allowed to read it. Required: null means no token, the guide's unauthenticated setup, which only a forwarder with no_token accepts."
  type        = string
}

variable "cluster_name" {
  description = "APP_POD_NAMESPACE, the cluster label (the root module's cluster_name output; the guide's \"ecs\")."
  type        = string
  default     = "ecs"
}

variable "app_label" {
  description = "APP_LABEL and APP_POD_NAME, the service label on records. Null: the container's name."
  type        = string
  default     = null
}

variable "ca_secret_crt" {
  description = "Secrets Manager secret (name or ARN) holding the CA certificate (the root module's ca_secret_crt output)."
  type        = string
  default     = "tls.crt"
}

variable "ca_secret_key" {
  description = "Secrets Manager secret (name or ARN) holding the CA key (the root module's ca_secret_key output)."
  type        = string
  default     = "tls.key"
}

variable "goproxy_image" {
  description = "goproxy's image, built from deploy/docker/goproxy.Dockerfile."
  type        = string
}

variable "init_image" {
  description = "The init container's image: it needs bash and the AWS CLI."
  type        = string
  default     = "amazon/aws-cli:2.8.4"
}

variable "log_level" {
  description = "goproxy's LOG_LEVEL: debug, info, warn or error."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warn", "error"], var.log_level)
    error_message = "log_level must be debug, info, warn or error."
  }
}
