output "container_definitions" {
  description = "init, the app with the sidecar's settings, and goproxy: concat your task's other containers and jsonencode it into container_definitions."
  value       = [local.init, local.app, local.goproxy]
}

output "volume_name" {
  description = "The task volume the three containers share: add volume { name = this } to the task definition."
  value       = local.volume
}

output "load_balancer" {
  description = "The service's new load-balancer target: container goproxy, port 4143, instead of the app's port."
  value = {
    container_name = "goproxy"
    container_port = 4143
  }
}
