output "url" {
  description = "Base URL of the tracker (Operations API over HTTP/JSON, POST /v1/events). Callers need roles/run.invoker (api_invokers) and a Google ID token for this URL."
  value       = google_cloud_run_v2_service.tracker.uri
}

output "events_topic" {
  description = "Workers publish CloudEvents here (ordering key: the operation name)."
  value       = google_pubsub_topic.events.id
}

output "done_topic" {
  description = "Completion topic: one tracker.operation.v1.done CloudEvent per finished operation."
  value       = google_pubsub_topic.done.id
}

output "dead_letter_topic" {
  description = "Events that could not be applied or delivered."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Read dead letters here to inspect and replay them."
  value       = google_pubsub_subscription.dead_letter.id
}

output "control_topic" {
  description = "Control messages to workers (not used by the tracker)."
  value       = google_pubsub_topic.control.id
}

output "control_subscription" {
  description = "Workers read control messages here."
  value       = google_pubsub_subscription.control.id
}

output "events_subscription" {
  description = "The tracker's subscription on the events topic."
  value       = google_pubsub_subscription.events.id
}

output "done_subscriptions" {
  description = "Filtered completion subscriptions, name => id."
  value       = { for k, s in google_pubsub_subscription.done : k => s.id }
}

output "spanner_database" {
  description = "projects/P/instances/I/databases/D, for `tracker schema apply` and TRACKER_SPANNER_DATABASE."
  value       = local.database_path
}

output "worker_service_account" {
  description = "Email of NAME-worker (publisher on the events topic), when created."
  value       = var.create_worker_service_account ? google_service_account.worker[0].email : null
}

output "runtime_service_account" {
  description = "Email of the tracker's own identity."
  value       = google_service_account.runtime.email
}

output "push_service_account" {
  description = "Email of the identity Pub/Sub push requests carry."
  value       = google_service_account.push.email
}

output "schema_job" {
  description = "Cloud Run job that runs `tracker schema apply` (gcloud run jobs execute NAME --region REGION)."
  value       = google_cloud_run_v2_job.schema.name
}
