# Tapwire on Amazon ECS, as the deployment guide sets it up: the forwarder's
# task definition, service-discovery entry and service ("Setup the
# forwarder"), and the CA in Secrets Manager ("Create TLS secrets"). The
# sidecar goes into each app's task definition with the module in ./sidecar.
# Unlike the guide, the hop from goproxy to the forwarder is authenticated:
# a FORWARDER_TOKEN in Secrets Manager, read by the forwarder and by every
# sidecar (no_token = true gives the guide's unauthenticated setup).
# docs/ecs.md walks through it.

locals {
  cfg = var.speedctl_config

  cluster_name = coalesce(var.cluster_name, try(local.cfg["CLUSTER_NAME"], ""), "ecs")

  # The guide's variables in the guide's order, then the optional ones; the
  # API key and FORWARDER_TOKEN come from Secrets Manager instead.
  forwarder_keys = [
    "CLUSTER_NAME", "SPEEDSCALE_APP_URL", "SUB_TENANT_NAME", "SUB_TENANT_STREAM", "TENANT_BUCKET",
    "TENANT_NAME", "TENANT_ID", "TENANT_REGION", "SPEEDSCALE_FILTER_RULE", "SPEEDSCALE_DLP_CONFIG", "SPEEDSCALE_REDACT",
  ]
  forwarder_env = [
    for k in local.forwarder_keys : {
      name  = k
      value = k == "CLUSTER_NAME" ? local.cluster_name : local.cfg[k]
    } if k == "CLUSTER_NAME" || try(local.cfg[k], "") != ""
  ]

  # FORWARDER_TOKEN, shared by the forwarder and the sidecars: forwarder_token,
  # else the config's (the one speedctl ecs forwarder and ecs inject write),
  # else generated here. The random one is made whenever the token is on: its
  # count cannot depend on the config, which is sensitive.
  token_enabled    = !var.no_token
  given_token      = var.forwarder_token != null ? var.forwarder_token : try(local.cfg["FORWARDER_TOKEN"], "")
  forwarder_token  = local.given_token != "" ? local.given_token : one(random_password.forwarder_token[*].result)
  token_secret_arn = local.token_enabled ? one(aws_secretsmanager_secret.forwarder_token[*].arn) : null

  forwarder_secrets = concat(
    [{ name = "SPEEDSCALE_API_KEY", valueFrom = aws_secretsmanager_secret.api_key.arn }],
    local.token_enabled ? [{ name = "FORWARDER_TOKEN", valueFrom = local.token_secret_arn }] : [],
  )

  create_ca_secrets = var.ca_cert_pem != null
  ca_crt_arn        = local.create_ca_secrets ? aws_secretsmanager_secret.ca_crt[0].arn : data.aws_secretsmanager_secret.ca_crt[0].arn
  ca_key_arn        = local.create_ca_secrets ? aws_secretsmanager_secret.ca_key[0].arn : data.aws_secretsmanager_secret.ca_key[0].arn

  region = data.aws_region.current.name
}

data "aws_region" "current" {}

# --- The CA, in Secrets Manager, where each task's init container reads it.

resource "aws_secretsmanager_secret" "ca_crt" {
  count = local.create_ca_secrets ? 1 : 0
  name  = var.ca_secret_names.crt
  tags  = var.tags
}

resource "aws_secretsmanager_secret_version" "ca_crt" {
  count         = local.create_ca_secrets ? 1 : 0
  secret_id     = aws_secretsmanager_secret.ca_crt[0].id
  secret_string = var.ca_cert_pem
}

resource "aws_secretsmanager_secret" "ca_key" {
  count = local.create_ca_secrets ? 1 : 0
  name  = var.ca_secret_names.key
  tags  = var.tags
}

resource "aws_secretsmanager_secret_version" "ca_key" {
  count         = local.create_ca_secrets ? 1 : 0
  secret_id     = aws_secretsmanager_secret.ca_key[0].id
  secret_string = var.ca_key_pem
}

data "aws_secretsmanager_secret" "ca_crt" {
  count = local.create_ca_secrets ? 0 : 1
  name  = var.ca_secret_names.crt
}

data "aws_secretsmanager_secret" "ca_key" {
  count = local.create_ca_secrets ? 0 : 1
  name  = var.ca_secret_names.key
}

# The guide: "The role used by your task needs to have secretsmanager:GetSecretValue
# and kms:Decrypt permissions in order to access the TLS secrets."
data "aws_iam_policy_document" "ca_read" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.ca_crt_arn, local.ca_key_arn]
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_policy" "ca_read" {
  name        = "${var.name}-ca-read"
  description = "Lets the Tapwire init container of an ECS task read the CA (tls.crt, tls.key) from Secrets Manager."
  policy      = data.aws_iam_policy_document.ca_read.json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "ca_read" {
  for_each   = toset(var.app_task_role_names)
  role       = each.value
  policy_arn = aws_iam_policy.ca_read.arn
}

# --- The forwarder.

resource "aws_secretsmanager_secret" "api_key" {
  name = "${var.name}-speedscale-api-key"
  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "api_key" {
  secret_id     = aws_secretsmanager_secret.api_key.id
  secret_string = local.cfg["SPEEDSCALE_API_KEY"]
}

# 43 letters and digits, about 256 bits, like speedctl's 32 random bytes in
# base64url. It is in Terraform's state, as the secret's value is.
resource "random_password" "forwarder_token" {
  count   = local.token_enabled ? 1 : 0
  length  = 43
  special = false
}

resource "aws_secretsmanager_secret" "forwarder_token" {
  count = local.token_enabled ? 1 : 0
  name  = "${var.name}-forwarder-token"
  tags  = var.tags
}

resource "aws_secretsmanager_secret_version" "forwarder_token" {
  count         = local.token_enabled ? 1 : 0
  secret_id     = aws_secretsmanager_secret.forwarder_token[0].id
  secret_string = local.forwarder_token
}

# ECS reads a container's secrets with the task's execution role: the apps'
# execution roles need this to give goproxy its FORWARDER_TOKEN.
data "aws_iam_policy_document" "token_read" {
  count = local.token_enabled ? 1 : 0
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.token_secret_arn]
  }
}

resource "aws_iam_policy" "token_read" {
  count       = local.token_enabled ? 1 : 0
  name        = "${var.name}-token-read"
  description = "Lets ECS give the goproxy sidecar of a task its FORWARDER_TOKEN from Secrets Manager (attach to the task's execution role)."
  policy      = data.aws_iam_policy_document.token_read[0].json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "token_read" {
  for_each   = toset(local.token_enabled ? var.app_execution_role_names : [])
  role       = each.value
  policy_arn = aws_iam_policy.token_read[0].arn
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# The forwarder's execution role: pull the image, write logs, read the API key
# and the token.
resource "aws_iam_role" "exec" {
  name               = "${var.name}-exec"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "exec" {
  role       = aws_iam_role.exec.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "api_key_read" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for s in local.forwarder_secrets : s.valueFrom]
  }
}

resource "aws_iam_role_policy" "api_key_read" {
  name   = "api-key-read"
  role   = aws_iam_role.exec.id
  policy = data.aws_iam_policy_document.api_key_read.json
}

resource "aws_cloudwatch_log_group" "forwarder" {
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_ecs_task_definition" "forwarder" {
  family                   = var.name
  execution_role_arn       = aws_iam_role.exec.arn
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  tags                     = var.tags

  container_definitions = jsonencode([
    {
      name      = var.name
      image     = var.forwarder_image
      essential = true
      portMappings = [
        {
          containerPort = 8888
        },
      ]
      environment = local.forwarder_env
      secrets     = local.forwarder_secrets
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.forwarder.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "ecs"
        }
      }
    },
  ])
}

resource "aws_service_discovery_service" "forwarder" {
  name         = var.name
  namespace_id = var.namespace_id
  tags         = var.tags

  dns_config {
    namespace_id = var.namespace_id

    dns_records {
      ttl  = 10
      type = "A"
    }
  }
}

resource "aws_ecs_service" "forwarder" {
  name                 = var.name
  cluster              = var.cluster_id
  task_definition      = aws_ecs_task_definition.forwarder.arn
  force_new_deployment = true
  desired_count        = var.desired_count
  launch_type          = "FARGATE"
  tags                 = var.tags

  service_registries {
    registry_arn   = aws_service_discovery_service.forwarder.arn
    container_name = var.name
  }

  network_configuration {
    subnets         = var.subnet_ids
    security_groups = var.security_group_ids
  }

  depends_on = [aws_iam_role_policy.api_key_read, aws_secretsmanager_secret_version.api_key, aws_secretsmanager_secret_version.forwarder_token]
}
