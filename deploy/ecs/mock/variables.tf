variable "snapshot_id" {
  description = "The hub snapshot whose outbound records answer the app's calls (speedctl snapshot create prints it)."
  type        = string

  validation {
    condition     = can(regex("^snap_[a-z2-7]{16}$", var.snapshot_id))
    error_message = "snapshot_id must be a snapshot id as speedctl snapshot create prints it: snap_ and 16 characters a-z, 2-7."
  }
}

variable "hub_url" {
  description = "TAPWIRE_HUB_URL: the hub's URL (the forwarder's SPEEDSCALE_APP_URL, as a URL)."
  type        = string
}

variable "read_key_secret" {
  description = "Secrets Manager secret (ARN) holding a read key of the hub (hub keys create -tenant T -role read): TAPWIRE_READ_KEY."
  type        = string
}

variable "image" {
  description = "The speedctl image (deploy/docker/speedctl.Dockerfile)."
  type        = string
}

variable "init_image" {
  description = "The image of the container that fetches the CA (the guide's amazon/aws-cli)."
  type        = string
  default     = "amazon/aws-cli"
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

variable "on_miss" {
  description = "What a request no recording matches gets: 404, 502 or passthrough (to the real upstream)."
  type        = string
  default     = "404"

  validation {
    condition     = contains(["404", "502", "passthrough"], var.on_miss)
    error_message = "on_miss must be 404, 502 or passthrough."
  }
}

variable "log_configuration" {
  description = "The containers' logConfiguration (awslogs...), or null for none."
  type        = any
  default     = null
}
