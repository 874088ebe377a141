# The tracker: `tracker serve` (the image's entrypoint) on Cloud Run. One port, HTTP:
# POST /v1/pubsub/push, POST /v1/events, the Operations API over HTTP/JSON (/v1/operations),
# GET /healthz. Nobody is allowed in without roles/run.invoker: Cloud Run verifies each
# caller's Google ID token (signature; audience = a service URL or local.service_url, the
# push audience) before the tracker sees the request. Only the push service account and
# the principals of api_invokers and event_invokers hold it, one grant each (iam.tf).
#
# Cloud Run removes the signature of that token before passing it on, so the tracker
# cannot check it again: by default it runs with TRACKER_ALLOW_UNAUTHENTICATED and Cloud
# Run IAM is the check (docs/auth.md). With tracker_auth the tracker checks its own
# credentials behind Cloud Run's; a push token arrives unsigned, hence pull only.

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

    dynamic "volumes" {
      for_each = local.auth_tokens ? [1] : []
      content {
        name = "auth-tokens"
        secret {
          secret = var.tracker_auth.tokens_secret
          items {
            version = var.tracker_auth.tokens_secret_version
            path    = basename(local.auth_tokens_file)
          }
        }
      }
    }

    containers {
      image = var.image
      # No command/args: the image's ENTRYPOINT ["tracker"] CMD ["serve"] runs, exactly
      # what tests/deploy/test_deploy.py checks against the CLI.

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

      # tracker_auth.tokens_secret: the static tokens file (SHA-256 digests only).
      dynamic "volume_mounts" {
        for_each = local.auth_tokens ? [1] : []
        content {
          name       = "auth-tokens"
          mount_path = local.auth_tokens_dir
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

  # Combinations `tracker serve` would refuse at start-up (tracker/config.py), refused at
  # plan time instead.
  lifecycle {
    precondition {
      condition     = var.allow_unauthenticated || local.auth_configured
      error_message = "allow_unauthenticated = false needs tracker_auth.audiences or tracker_auth.tokens_secret: without authentication the tracker refuses to listen on 0.0.0.0 (docs/auth.md)."
    }
    precondition {
      condition     = !var.allow_unauthenticated || !(local.auth_configured || length(local.auth_grants) > 0)
      error_message = "tracker_auth needs allow_unauthenticated = false: the tracker refuses to check credentials and let everyone in at once."
    }
    precondition {
      condition     = var.max_instances >= var.min_instances
      error_message = "max_instances must be at least min_instances."
    }
    precondition {
      condition     = var.allow_unauthenticated || local.pull
      error_message = "allow_unauthenticated = false needs delivery = \"pull\": Cloud Run strips the signature of Pub/Sub's push token, so the tracker would refuse every push."
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
    google_secret_manager_secret_iam_member.tokens_runtime,
  ]
}
