# The tracker: `tracker serve` (the image's entrypoint) on Cloud Run. One port, HTTP:
# POST /v1/pubsub/push, POST /v1/events, the Operations API over HTTP/JSON (/v1/operations),
# GET /healthz. Nobody is allowed in without roles/run.invoker: Cloud Run verifies each
# caller's Google ID token (signature; audience = a service URL or local.service_url, the
# push audience) before the tracker sees the request.
#
# Cloud Run removes the signature of that token before passing it on, so the tracker's own
# check (TRACKER_PUSH_AUDIENCE) cannot run behind it and stays off here; only the push
# service account and var.api_invokers hold run.invoker on this service.

resource "google_cloud_run_v2_service" "tracker" {
  project             = var.project_id
  name                = var.name
  location            = var.region
  ingress             = var.ingress
  custom_audiences    = [local.service_url]
  labels              = var.labels
  deletion_protection = false

  template {
    service_account                  = google_service_account.runtime.email
    timeout                          = var.request_timeout
    max_instance_request_concurrency = var.concurrency

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    containers {
      image = var.image
      # No command/args: the image's ENTRYPOINT ["tracker"] CMD ["serve"] runs, exactly
      # what tests/test_deploy.py checks against the CLI.

      ports {
        container_port = local.http_port
      }

      dynamic "env" {
        for_each = local.service_env
        content {
          name  = env.key
          value = env.value
        }
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU stays allocated between requests: the outbox dispatcher publishes
        # done-notifications after the request that caused them, and a pull subscriber
        # runs all the time.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      # Cloud Run ignores Docker HEALTHCHECK; these are its probes, on the same endpoint.
      startup_probe {
        http_get {
          path = "/healthz"
          port = local.http_port
        }
        period_seconds    = 2
        timeout_seconds   = 2
        failure_threshold = 30
      }

      liveness_probe {
        http_get {
          path = "/healthz"
          port = local.http_port
        }
        period_seconds    = 15
        timeout_seconds   = 3
        failure_threshold = 4
      }
    }
  }

  # The schema must be at the image's version before an instance starts (the Spanner
  # store refuses to start without it).
  depends_on = [
    google_cloud_run_v2_job.schema,
    google_spanner_database_iam_member.runtime,
    google_pubsub_topic_iam_member.done_runtime,
    google_pubsub_subscription_iam_member.events_runtime,
    google_pubsub_topic_iam_member.dead_letter_runtime,
  ]
}
