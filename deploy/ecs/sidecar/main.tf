# The deployment guide's sidecar for one app, as `speedctl ecs inject` writes
# it: the init container that fetches the CA from Secrets Manager, the app
# with its CA and proxy variables, and goproxy. The task definition that uses
# it needs a volume named by the volume_name output and networkMode awsvpc;
# its task role needs the root module's ca_read_policy_arn, and its execution
# role the token_read_policy_arn (ECS reads goproxy's FORWARDER_TOKEN secret
# with it). ecs inject writes the token as a plain variable; here it is a
# secret. See docs/ecs.md.

locals {
  cert_dir  = "/etc/ssl/speedscale"
  cert_file = "/etc/ssl/speedscale/tls.crt"
  proxy_url = "http://localhost:4140"
  volume    = "speedscale"
  app_name  = var.app_container.name
  app_label = coalesce(var.app_label, local.app_name)

  # NO_PROXY: the ECS metadata and credentials endpoint, the instance
  # metadata service and loopback stay direct, then the app's own entries.
  app_env      = try(var.app_container.environment, [])
  app_no_proxy = flatten([for e in local.app_env : [for h in split(",", try(e.value, "")) : trimspace(h)] if e.name == "NO_PROXY"])
  no_proxy     = join(",", distinct(concat(["169.254.170.2", "169.254.169.254", "localhost", "127.0.0.1"], [for h in local.app_no_proxy : h if h != ""])))

  set_env = [
    { name = "SSL_CERT_FILE", value = local.cert_file },
    { name = "HTTP_PROXY", value = local.proxy_url },
    { name = "HTTPS_PROXY", value = local.proxy_url },
    { name = "NO_PROXY", value = local.no_proxy },
    { name = "REQUESTS_CA_BUNDLE", value = local.cert_file },
    { name = "NODE_EXTRA_CA_CERTS", value = local.cert_file },
  ]
  set_names = [for e in local.set_env : e.name]
  app_names = [for e in local.app_env : e.name]

  # The app's variables in their places (ours replacing theirs), then ours that are new.
  environment = concat(
    [for e in local.app_env : contains(local.set_names, e.name) ? local.set_env[index(local.set_names, e.name)] : e],
    [for e in local.set_env : e if !contains(local.app_names, e.name)],
  )

  # The app's log configuration, for init and goproxy too.
  logs = { for k, v in { logConfiguration = try(var.app_container.logConfiguration, null) } : k => v if v != null }

  # FORWARDER_TOKEN from Secrets Manager, unless there is none (the guide's
  # unauthenticated setup).
  token = { for k, v in { secrets = [{ name = "FORWARDER_TOKEN", valueFrom = var.forwarder_token_secret }] } : k => v if var.forwarder_token_secret != null }

  init = merge({
    name       = "init"
    image      = var.init_image
    essential  = false
    entryPoint = ["bash"]
    # The guide's command, writing with > so that a restarted task does not append a second copy.
    command = ["-c", "aws secretsmanager get-secret-value --secret-id ${var.ca_secret_crt} --query SecretString --output text > ${local.cert_dir}/tls.crt && aws secretsmanager get-secret-value --secret-id ${var.ca_secret_key} --query SecretString --output text > ${local.cert_dir}/tls.key"]
    mountPoints = [
      {
        sourceVolume  = local.volume
        containerPath = local.cert_dir
      },
    ]
  }, local.logs)

  app = merge(var.app_container, {
    environment = local.environment
    mountPoints = concat(try(var.app_container.mountPoints, []), [
      {
        sourceVolume  = local.volume
        containerPath = local.cert_dir
        readOnly      = true
      },
    ])
    dependsOn = concat(try(var.app_container.dependsOn, []), [
      {
        containerName = "init"
        condition     = "SUCCESS"
      },
      {
        containerName = "goproxy"
        condition     = "START"
      },
    ])
  })

  goproxy = merge({
    name      = "goproxy"
    image     = var.goproxy_image
    essential = true
    dependsOn = [
      {
        containerName = "init"
        condition     = "SUCCESS"
      },
    ]
    mountPoints = [
      {
        sourceVolume  = local.volume
        containerPath = local.cert_dir
        readOnly      = true
      },
    ]
    portMappings = [
      {
        containerPort = 4143
      },
      {
        containerPort = 4140
      },
    ]
    environment = [
      { name = "LOG_LEVEL", value = var.log_level },
      { name = "APP_LABEL", value = local.app_label },
      { name = "APP_POD_NAME", value = local.app_label },
      { name = "APP_POD_NAMESPACE", value = var.cluster_name },
      { name = "CAPTURE_MODE", value = "proxy" },
      { name = "PROXY_TYPE", value = "dual" },
      { name = "PROXY_PROTOCOL", value = "tcp:http" },
      { name = "TLS_OUT_UNWRAP", value = "true" },
      { name = "REVERSE_PROXY_PORT", value = tostring(var.app_port) },
      { name = "FORWARDER_ADDR", value = var.forwarder_addr },
    ]
  }, local.token, local.logs)
}
