output "url" {
  value = module.tracker.url
}

output "events_topic" {
  value = module.tracker.events_topic
}

output "done_topic" {
  value = module.tracker.done_topic
}

output "worker_service_account" {
  value = module.tracker.worker_service_account
}

output "spanner_database" {
  value = module.tracker.spanner_database
}

output "schema_job" {
  value = module.tracker.schema_job
}
