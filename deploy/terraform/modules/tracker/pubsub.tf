# Topics: events (workers -> tracker), done (tracker -> consumers), dead letter (events
# that can never apply, or that Pub/Sub gave up delivering), control (your control plane
# -> workers; the tracker neither reads nor writes it).

resource "google_pubsub_topic" "events" {
  project    = var.project_id
  name       = "${var.name}-events"
  labels     = var.labels
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "done" {
  project    = var.project_id
  name       = "${var.name}-done"
  labels     = var.labels
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  project    = var.project_id
  name       = "${var.name}-dead-letter"
  labels     = var.labels
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "control" {
  project    = var.project_id
  name       = "${var.name}-control"
  labels     = var.labels
  depends_on = [google_project_service.apis]
}

# The tracker's subscription. Push or pull is only the push_config block, so switching
# `delivery` keeps the subscription and its backlog.
resource "google_pubsub_subscription" "events" {
  project = var.project_id
  name    = "${var.name}-events"
  topic   = google_pubsub_topic.events.id
  labels  = var.labels

  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.message_retention
  # Workers publish with the operation name as ordering key.
  enable_message_ordering = true

  dynamic "push_config" {
    for_each = local.push ? [1] : []
    content {
      push_endpoint = "${local.service_url}/v1/pubsub/push"
      # Pub/Sub signs an ID token for this account with this audience; Cloud Run checks
      # signature, audience and the account's run.invoker before the request gets in.
      oidc_token {
        service_account_email = google_service_account.push.email
        audience              = local.service_url
      }
    }
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  expiration_policy {
    ttl = "" # never expires, however quiet
  }

  depends_on = [
    # Pub/Sub must be able to publish dead letters and mint push tokens from the start.
    google_pubsub_topic_iam_member.dead_letter_pubsub_agent,
    google_service_account_iam_member.push_token_creator,
  ]
}

# Keeps what reaches the dead-letter topic (a topic alone keeps nothing) for an operator to
# inspect and replay.
resource "google_pubsub_subscription" "dead_letter" {
  project = var.project_id
  name    = "${var.name}-dead-letter"
  topic   = google_pubsub_topic.dead_letter.id
  labels  = var.labels

  ack_deadline_seconds       = 60
  message_retention_duration = var.message_retention
  expiration_policy {
    ttl = ""
  }
}

# Workers read control messages here (e.g. a cancel request for an operation they run).
resource "google_pubsub_subscription" "control" {
  project = var.project_id
  name    = "${var.name}-control"
  topic   = google_pubsub_topic.control.id
  labels  = var.labels

  ack_deadline_seconds       = 60
  message_retention_duration = var.message_retention
  enable_message_ordering    = true
  expiration_policy {
    ttl = ""
  }
}

# Filtered subscriptions on the completion topic, for consumers (wait_done, subscribe_done).
resource "google_pubsub_subscription" "done" {
  for_each = var.done_subscriptions

  project = var.project_id
  name    = "${var.name}-done-${each.key}"
  topic   = google_pubsub_topic.done.id
  labels  = var.labels
  filter  = each.value.filter

  ack_deadline_seconds    = 60
  enable_message_ordering = true
  expiration_policy {
    ttl = ""
  }
}
