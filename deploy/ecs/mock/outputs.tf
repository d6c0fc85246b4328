output "container_definitions" {
  description = "init and mock: jsonencode it into the mock task's container_definitions."
  value       = [local.init, local.mock]
}

output "volume_name" {
  description = "The task volume the two containers share: add volume { name = this } to the task definition."
  value       = local.volume
}

output "proxy_port" {
  description = "The port the app's HTTPS_PROXY and HTTP_PROXY point at: http://MOCK_ADDRESS:4140."
  value       = 4140
}
