# A mock task, as docs/ecs.md describes it: speedctl mock answers an app's
# outbound calls from a hub snapshot, listening where goproxy's outbound
# port would (4140), with TLS unwrap by the guide's CA. The app's task points
# HTTPS_PROXY and HTTP_PROXY at it and trusts the CA (SSL_CERT_FILE), as
# under goproxy. The task definition that uses these containers needs a
# volume named by the volume_name output and networkMode awsvpc; its task
# role needs the root module's ca_read_policy_arn and read access to
# read_key_secret; its security group should admit only the app's tasks.

locals {
  cert_dir = "/etc/ssl/speedscale"
  volume   = "speedscale"
  logs     = { for k, v in { logConfiguration = var.log_configuration } : k => v if v != null }

  init = merge({
    name       = "init"
    image      = var.init_image
    essential  = false
    entryPoint = ["bash"]
    command    = ["-c", "aws secretsmanager get-secret-value --secret-id ${var.ca_secret_crt} --query SecretString --output text > ${local.cert_dir}/tls.crt && aws secretsmanager get-secret-value --secret-id ${var.ca_secret_key} --query SecretString --output text > ${local.cert_dir}/tls.key"]
    mountPoints = [
      {
        sourceVolume  = local.volume
        containerPath = local.cert_dir
      },
    ]
  }, local.logs)

  mock = merge({
    name      = "mock"
    image     = var.image
    essential = true
    command   = ["mock", "--snapshot", var.snapshot_id, "--listen", "0.0.0.0:4140", "--ca-dir", local.cert_dir, "--on-miss", var.on_miss]
    environment = [
      { name = "TAPWIRE_HUB_URL", value = var.hub_url },
    ]
    secrets = [
      { name = "TAPWIRE_READ_KEY", valueFrom = var.read_key_secret },
    ]
    portMappings = [
      { containerPort = 4140, protocol = "tcp" },
    ]
    mountPoints = [
      {
        sourceVolume  = local.volume
        containerPath = local.cert_dir
        readOnly      = true
      },
    ]
    dependsOn = [
      { containerName = "init", condition = "SUCCESS" },
    ]
  }, local.logs)
}
