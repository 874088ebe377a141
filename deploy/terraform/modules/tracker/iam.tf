# Least privilege: every grant is on one resource (topic, subscription, database, service,
# service account), none on the project. tests/deploy/test_deploy.py holds this list.

# ---- the tracker (Cloud Run service identity) ------------------------------------------

resource "google_spanner_database_iam_member" "runtime" {
  project  = var.project_id
  instance = google_spanner_database.tracker.instance
  database = google_spanner_database.tracker.name
  role     = "roles/spanner.databaseUser"
  member   = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_pubsub_topic_iam_member" "done_runtime" {
  project = var.project_id
  topic   = google_pubsub_topic.done.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# Pull only: stream the events subscription, publish poison events to the dead-letter topic.
resource "google_pubsub_subscription_iam_member" "events_runtime" {
  count        = local.pull ? 1 : 0
  project      = var.project_id
  subscription = google_pubsub_subscription.events.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_pubsub_topic_iam_member" "dead_letter_runtime" {
  count   = local.pull ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# tracker_auth.tokens_secret only: read the static tokens file (digests) mounted in the service.
resource "google_secret_manager_secret_iam_member" "tokens_runtime" {
  count     = local.auth_tokens ? 1 : 0
  project   = var.project_id
  secret_id = var.tracker_auth.tokens_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"
}

# ---- the schema job --------------------------------------------------------------------

# DDL on this database only (`tracker schema apply` reads and writes TrackerSchema and
# sends UpdateDatabaseDdl).
resource "google_spanner_database_iam_member" "schema" {
  project  = var.project_id
  instance = google_spanner_database.tracker.instance
  database = google_spanner_database.tracker.name
  role     = "roles/spanner.databaseAdmin"
  member   = "serviceAccount:${google_service_account.schema.email}"
}

# ---- Pub/Sub push ----------------------------------------------------------------------

# The push identity may call the service, nothing else.
resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  count    = local.push ? 1 : 0
  project  = var.project_id
  location = google_cloud_run_v2_service.tracker.location
  name     = google_cloud_run_v2_service.tracker.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.push.email}"
}

# Pub/Sub's service agent mints the push tokens for the push identity.
resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
  # The service agent exists once Pub/Sub has been used in the project.
  depends_on = [google_pubsub_topic.events]
}

# ---- dead lettering (Pub/Sub's service agent moves undeliverable events) ----------------

resource "google_pubsub_topic_iam_member" "dead_letter_pubsub_agent" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "events_pubsub_agent" {
  project      = var.project_id
  subscription = google_pubsub_subscription.events.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# ---- workers ---------------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "events_workers" {
  for_each = toset(local.workers)
  project  = var.project_id
  topic    = google_pubsub_topic.events.name
  role     = "roles/pubsub.publisher"
  member   = each.value
}

resource "google_pubsub_subscription_iam_member" "control_workers" {
  for_each     = toset(local.workers)
  project      = var.project_id
  subscription = google_pubsub_subscription.control.name
  role         = "roles/pubsub.subscriber"
  member       = each.value
}

resource "google_pubsub_topic_iam_member" "control_publishers" {
  for_each = toset(var.control_publishers)
  project  = var.project_id
  topic    = google_pubsub_topic.control.name
  role     = "roles/pubsub.publisher"
  member   = each.value
}

# ---- API callers, HTTP publishers and completion consumers ------------------------------

# One grant per principal of api_invokers and event_invokers (their validation refuses
# allUsers and allAuthenticatedUsers): the service is never public.
resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = toset(local.invokers)
  project  = var.project_id
  location = google_cloud_run_v2_service.tracker.location
  name     = google_cloud_run_v2_service.tracker.name
  role     = "roles/run.invoker"
  member   = each.value
}

moved {
  from = google_cloud_run_v2_service_iam_member.api_invokers
  to   = google_cloud_run_v2_service_iam_member.invokers
}

resource "google_pubsub_subscription_iam_member" "done_consumers" {
  for_each = {
    for pair in flatten([
      for sub, spec in var.done_subscriptions : [
        for member in spec.members : { key = "${sub} ${member}", sub = sub, member = member }
      ]
    ]) : pair.key => pair
  }
  project      = var.project_id
  subscription = google_pubsub_subscription.done[each.value.sub].name
  role         = "roles/pubsub.subscriber"
  member       = each.value.member
}
