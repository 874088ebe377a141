# The tracker on Google Cloud: Pub/Sub in, Cloud Spanner store, completion topic out,
# one Cloud Run service for the push endpoint and the Operations API (HTTP/JSON).
# See docs/deploy.md.

data "google_project" "this" {
  project_id = var.project_id
  depends_on = [google_project_service.apis]
}

locals {
  push = var.delivery == "push"
  pull = var.delivery == "pull"

  # Cloud Run sends traffic to this port (it sets PORT to it); the tracker listens there.
  http_port = 8080

  # The service's deterministic URL, known before it exists (so the push subscription
  # need not wait for the service, and the service may wait for the subscription's IAM).
  # It is also the service's custom audience: the audience of push tokens.
  service_url = "https://${var.name}-${data.google_project.this.number}.${var.region}.run.app"

  instance_name = var.spanner_instance != null ? var.spanner_instance : google_spanner_instance.tracker[0].name
  database_path = "projects/${var.project_id}/instances/${local.instance_name}/databases/${google_spanner_database.tracker.name}"

  # Google's service agent that delivers push requests and moves dead letters.
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  workers = concat(
    var.create_worker_service_account ? ["serviceAccount:${google_service_account.worker[0].email}"] : [],
    var.worker_members,
  )

  # `tracker serve` settings (tracker/config.py), whatever the delivery. Cloud Run has one
  # port: HTTP (events, push, Operations API over HTTP/JSON) is served on it, and gRPC is
  # off because nothing could reach a second port.
  tracker_env = {
    TRACKER_STORE            = "spanner"
    TRACKER_SPANNER_DATABASE = local.database_path
    TRACKER_DONE_TOPIC       = "projects/${var.project_id}/topics/${google_pubsub_topic.done.name}"
    TRACKER_HTTP_HOST        = "0.0.0.0"
    TRACKER_HTTP_PORT        = tostring(local.http_port)
    TRACKER_GRPC_PORT        = "-1"
  }

  # Added with delivery = "pull": stream from the subscription, poison events to the
  # dead-letter topic. With push, Pub/Sub posts to /v1/pubsub/push instead; Cloud Run
  # checks the OIDC token (see the service below).
  tracker_pull_env = {
    TRACKER_SUBSCRIPTION      = "projects/${var.project_id}/subscriptions/${google_pubsub_subscription.events.name}"
    TRACKER_DEAD_LETTER_TOPIC = "projects/${var.project_id}/topics/${google_pubsub_topic.dead_letter.name}"
  }

  # For Google's client libraries, overridable through extra_env. Spanner's client-side
  # metrics would need roles/monitoring.metricWriter on the whole project: off.
  client_env = {
    SPANNER_DISABLE_BUILTIN_METRICS = "true"
  }

  # Who may call the service besides the push identity: one roles/run.invoker grant each.
  invokers = distinct(concat(var.api_invokers, var.event_invokers))

  # The tracker's own authentication (docs/auth.md). By default Cloud Run IAM is the check:
  # only invokers get in, and Cloud Run strips the signature of the ID token it verified,
  # so the tracker runs with TRACKER_ALLOW_UNAUTHENTICATED (without it, or an
  # authentication setting, it refuses to listen on 0.0.0.0). With tracker_auth it checks
  # the Authorization header itself, behind Cloud Run (callers put Cloud Run's token in
  # X-Serverless-Authorization). Empty settings are left out.
  auth_tokens      = var.tracker_auth.tokens_secret != null
  auth_tokens_dir  = "/etc/tracker/auth"
  auth_tokens_file = "${local.auth_tokens_dir}/tokens.toml"
  auth_grants      = flatten([for permission, members in var.tracker_auth.grants : [for m in members : "${permission}=${m}"]])
  auth_configured  = length(var.tracker_auth.audiences) > 0 || local.auth_tokens
  tracker_auth_env = {
    TRACKER_ALLOW_UNAUTHENTICATED = tostring(var.allow_unauthenticated)
    TRACKER_AUTH_AUDIENCE         = join(" ", var.tracker_auth.audiences)
    TRACKER_GRANT                 = join(" ", local.auth_grants)
    TRACKER_AUTH_TOKENS_FILE      = local.auth_tokens ? local.auth_tokens_file : ""
  }
  auth_env = { for name, value in local.tracker_auth_env : name => value if value != "" }

  service_env = merge(local.client_env, var.extra_env, local.tracker_env, local.auth_env, local.pull ? local.tracker_pull_env : {})

  # The schema job: the same image, `tracker schema apply` instead of `tracker serve`.
  schema_args = ["schema", "apply", "--store", "spanner", "--spanner-database", local.database_path]
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? toset([
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "spanner.googleapis.com",
  ]) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# ---- identities ------------------------------------------------------------------------

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.name}-runtime"
  display_name = "tracker: Cloud Run service (Spanner user, done publisher)"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "${var.name}-push"
  display_name = "tracker: identity of Pub/Sub push requests (run.invoker only)"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "schema" {
  project      = var.project_id
  account_id   = "${var.name}-schema"
  display_name = "tracker: schema job (DDL on the tracker database only)"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "worker" {
  count        = var.create_worker_service_account ? 1 : 0
  project      = var.project_id
  account_id   = "${var.name}-worker"
  display_name = "tracker: workers (publish events only)"
  depends_on   = [google_project_service.apis]
}
