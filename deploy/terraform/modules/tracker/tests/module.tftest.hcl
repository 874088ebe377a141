# `tofu test` with a mocked google provider: the module planned and applied offline in
# both delivery modes (tests/test_deploy.py runs it).

mock_provider "google" {
  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }
  mock_resource "google_service_account" {
    defaults = {
      name  = "projects/my-project/serviceAccounts/tracker-mock@my-project.iam.gserviceaccount.com"
      email = "tracker-mock@my-project.iam.gserviceaccount.com"
    }
  }
}

variables {
  project_id = "my-project"
  image      = "us-central1-docker.pkg.dev/my-project/tracker/tracker@sha256:0000000000000000000000000000000000000000000000000000000000000000"
}

run "push" {
  command = apply # mocked: nothing leaves this machine

  assert {
    condition     = google_pubsub_subscription.events.push_config[0].push_endpoint == "https://tracker-123456789012.us-central1.run.app/v1/pubsub/push"
    error_message = "push endpoint: the service's /v1/pubsub/push"
  }
  assert {
    condition     = google_pubsub_subscription.events.push_config[0].oidc_token[0].audience == "https://tracker-123456789012.us-central1.run.app"
    error_message = "push audience: the service URL"
  }
  assert {
    condition     = contains(google_cloud_run_v2_service.tracker.custom_audiences, google_pubsub_subscription.events.push_config[0].oidc_token[0].audience)
    error_message = "Cloud Run must accept the push audience"
  }
  assert {
    condition     = google_pubsub_subscription.events.dead_letter_policy[0].max_delivery_attempts == 10
    error_message = "dead-letter policy"
  }
  assert {
    condition     = length(google_cloud_run_v2_service_iam_member.push_invoker) == 1 && length(google_pubsub_subscription_iam_member.events_runtime) == 0 && length(google_pubsub_topic_iam_member.dead_letter_runtime) == 0
    error_message = "push: the push identity invokes the service; the tracker neither subscribes nor dead-letters"
  }
  assert {
    condition     = !contains([for e in google_cloud_run_v2_service.tracker.template[0].containers[0].env : e.name], "TRACKER_SUBSCRIPTION")
    error_message = "push: no pull subscriber"
  }
  assert {
    condition     = { for e in google_cloud_run_v2_service.tracker.template[0].containers[0].env : e.name => e.value }["TRACKER_SPANNER_DATABASE"] == "projects/my-project/instances/tracker/databases/tracker"
    error_message = "the tracker's database"
  }
  assert {
    condition     = google_cloud_run_v2_job.schema.template[0].template[0].containers[0].args == tolist(["schema", "apply", "--store", "spanner", "--spanner-database", "projects/my-project/instances/tracker/databases/tracker"])
    error_message = "the schema job applies the schema to the tracker's database"
  }
  assert {
    condition     = google_pubsub_topic_iam_member.dead_letter_pubsub_agent.member == "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    error_message = "the Pub/Sub service agent dead-letters"
  }
  assert {
    condition     = length(google_pubsub_topic_iam_member.events_workers) == 1
    error_message = "the worker account publishes events"
  }
}

run "pull" {
  command = apply

  variables {
    delivery       = "pull"
    extra_env      = { TRACKER_STRICT = "true", TRACKER_STORE = "sqlite" }
    worker_members = ["serviceAccount:exporter@my-project.iam.gserviceaccount.com"]
  }

  assert {
    condition     = length(google_pubsub_subscription.events.push_config) == 0
    error_message = "pull: no push config"
  }
  assert {
    condition     = length(google_cloud_run_v2_service_iam_member.push_invoker) == 0 && length(google_pubsub_subscription_iam_member.events_runtime) == 1 && length(google_pubsub_topic_iam_member.dead_letter_runtime) == 1
    error_message = "pull: the tracker subscribes and dead-letters; nobody pushes"
  }
  assert {
    condition     = { for e in google_cloud_run_v2_service.tracker.template[0].containers[0].env : e.name => e.value }["TRACKER_SUBSCRIPTION"] == "projects/my-project/subscriptions/tracker-events"
    error_message = "pull: the tracker streams its subscription"
  }
  assert {
    condition     = { for e in google_cloud_run_v2_service.tracker.template[0].containers[0].env : e.name => e.value }["TRACKER_STORE"] == "spanner"
    error_message = "extra_env cannot override the module's settings"
  }
  assert {
    condition     = { for e in google_cloud_run_v2_service.tracker.template[0].containers[0].env : e.name => e.value }["TRACKER_STRICT"] == "true"
    error_message = "extra_env reaches the tracker"
  }
  assert {
    condition     = length(google_pubsub_topic_iam_member.events_workers) == 2
    error_message = "worker_members publish events too"
  }
}

run "existing_instance" {
  command = plan

  variables {
    spanner_instance = "shared"
  }

  assert {
    condition     = length(google_spanner_instance.tracker) == 0 && google_spanner_database.tracker.instance == "shared"
    error_message = "an existing instance is used, none created"
  }
}

run "image_by_tag_is_refused" {
  command = plan

  variables {
    image = "us-central1-docker.pkg.dev/my-project/tracker/tracker:latest"
  }

  expect_failures = [var.image]
}

run "bad_delivery_is_refused" {
  command = plan

  variables {
    delivery = "poll"
  }

  expect_failures = [var.delivery]
}
