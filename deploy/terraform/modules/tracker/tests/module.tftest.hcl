# `tofu test` with a mocked google provider: the module planned and applied offline in
# both delivery modes, with and without the tracker's own authentication
# (tests/deploy/test_deploy.py runs it).

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
  assert {
    condition     = { for e in google_cloud_run_v2_service.tracker.template[0].containers[0].env : e.name => e.value }["TRACKER_ALLOW_UNAUTHENTICATED"] == "true"
    error_message = "by default Cloud Run IAM checks callers and the tracker lets in whoever it admits"
  }
  assert {
    condition     = length(setintersection([for e in google_cloud_run_v2_service.tracker.template[0].containers[0].env : e.name], ["TRACKER_AUTH_AUDIENCE", "TRACKER_GRANT", "TRACKER_AUTH_TOKENS_FILE", "TRACKER_PUSH_AUDIENCE"])) == 0
    error_message = "by default no tracker authentication setting is passed (the tracker would refuse them with TRACKER_ALLOW_UNAUTHENTICATED)"
  }
  assert {
    condition     = length(google_cloud_run_v2_service.tracker.template[0].volumes) == 0 && length(google_secret_manager_secret_iam_member.tokens_runtime) == 0
    error_message = "no tokens file without tracker_auth.tokens_secret"
  }
  assert {
    condition     = length(google_cloud_run_v2_service_iam_member.invokers) == 0 && google_cloud_run_v2_service_iam_member.push_invoker[0].member == "serviceAccount:tracker-mock@my-project.iam.gserviceaccount.com"
    error_message = "without api_invokers or event_invokers the push account alone may invoke the service"
  }
}

run "invokers" {
  command = apply

  variables {
    api_invokers   = ["group:ops@example.com", "serviceAccount:dashboard@my-project.iam.gserviceaccount.com"]
    event_invokers = ["serviceAccount:exporter@my-project.iam.gserviceaccount.com", "group:ops@example.com"]
  }

  assert {
    condition     = toset([for g in google_cloud_run_v2_service_iam_member.invokers : g.member]) == toset(["group:ops@example.com", "serviceAccount:dashboard@my-project.iam.gserviceaccount.com", "serviceAccount:exporter@my-project.iam.gserviceaccount.com"])
    error_message = "one run.invoker grant per principal of api_invokers and event_invokers"
  }
  assert {
    condition     = alltrue([for g in google_cloud_run_v2_service_iam_member.invokers : g.role == "roles/run.invoker" && g.name == google_cloud_run_v2_service.tracker.name])
    error_message = "invokers get roles/run.invoker on the service, nothing else"
  }
}

# The tracker's own checks behind Cloud Run's: static tokens from Secret Manager, ID
# tokens for the given audiences, grants. tests/deploy/test_deploy.py runs the tracker with the
# environment this run proves (cloud_run_auth_env.json).
run "tracker_auth" {
  command = apply

  variables {
    delivery              = "pull"
    allow_unauthenticated = false
    tracker_auth = {
      audiences = ["https://tracker.example.com", "tracker-internal"]
      grants = {
        "operations.write" = ["token:ops"]
        "events.publish"   = ["token:exporter", "serviceAccount:exporter@my-project.iam.gserviceaccount.com"]
        "operations.read"  = ["domain:example.com", "token:ops"]
      }
      tokens_secret = "tracker-tokens"
    }
  }

  assert {
    condition = {
      for e in google_cloud_run_v2_service.tracker.template[0].containers[0].env : e.name => e.value
      if contains(["TRACKER_ALLOW_UNAUTHENTICATED", "TRACKER_AUTH_AUDIENCE", "TRACKER_GRANT", "TRACKER_AUTH_TOKENS_FILE"], e.name)
    } == jsondecode(file("${path.module}/tests/cloud_run_auth_env.json"))
    error_message = "the tracker's authentication settings, as tests/cloud_run_auth_env.json has them"
  }
  assert {
    condition     = google_cloud_run_v2_service.tracker.template[0].volumes[0].secret[0].secret == "tracker-tokens" && google_cloud_run_v2_service.tracker.template[0].volumes[0].secret[0].items[0].version == "latest" && google_cloud_run_v2_service.tracker.template[0].volumes[0].secret[0].items[0].path == "tokens.toml"
    error_message = "the tokens file comes from the secret's latest version"
  }
  assert {
    condition     = "${google_cloud_run_v2_service.tracker.template[0].containers[0].volume_mounts[0].mount_path}/tokens.toml" == { for e in google_cloud_run_v2_service.tracker.template[0].containers[0].env : e.name => e.value }["TRACKER_AUTH_TOKENS_FILE"] && google_cloud_run_v2_service.tracker.template[0].containers[0].volume_mounts[0].name == google_cloud_run_v2_service.tracker.template[0].volumes[0].name
    error_message = "TRACKER_AUTH_TOKENS_FILE is where the secret is mounted"
  }
  assert {
    condition     = google_secret_manager_secret_iam_member.tokens_runtime[0].secret_id == "tracker-tokens" && google_secret_manager_secret_iam_member.tokens_runtime[0].role == "roles/secretmanager.secretAccessor" && google_secret_manager_secret_iam_member.tokens_runtime[0].member == "serviceAccount:tracker-mock@my-project.iam.gserviceaccount.com"
    error_message = "the runtime account reads the tokens secret, and only that secret"
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

run "public_api_invokers_are_refused" {
  command = plan

  variables {
    api_invokers = ["allUsers"]
  }

  expect_failures = [var.api_invokers]
}

run "public_event_invokers_are_refused" {
  command = plan

  variables {
    event_invokers = ["allAuthenticatedUsers"]
  }

  expect_failures = [var.event_invokers]
}

run "no_authentication_at_all_is_refused" {
  command = plan

  variables {
    delivery              = "pull"
    allow_unauthenticated = false
  }

  expect_failures = [google_cloud_run_v2_service.tracker]
}

run "tracker_auth_with_push_is_refused" {
  command = plan

  variables {
    allow_unauthenticated = false
    tracker_auth          = { tokens_secret = "tracker-tokens" }
  }

  expect_failures = [google_cloud_run_v2_service.tracker]
}

run "tracker_auth_with_allow_unauthenticated_is_refused" {
  command = plan

  variables {
    delivery     = "pull"
    tracker_auth = { grants = { "operations.read" = ["token:ops"] } }
  }

  expect_failures = [google_cloud_run_v2_service.tracker]
}

run "unknown_permission_is_refused" {
  command = plan

  variables {
    tracker_auth = { grants = { "operations.fly" = ["token:ops"] } }
  }

  expect_failures = [var.tracker_auth]
}

run "bad_member_is_refused" {
  command = plan

  variables {
    tracker_auth = { grants = { "operations.read" = ["alice"] } }
  }

  expect_failures = [var.tracker_auth]
}

run "authentication_through_extra_env_is_refused" {
  command = plan

  variables {
    extra_env = { TRACKER_GRANT = "operations.read=allUsers" }
  }

  expect_failures = [var.extra_env]
}

run "autoscales_from_one_to_ten_instances_by_default" {
  command = plan

  assert {
    condition     = google_cloud_run_v2_service.tracker.template[0].scaling[0].min_instance_count == 1 && google_cloud_run_v2_service.tracker.template[0].scaling[0].max_instance_count == 10
    error_message = "scaling: 1 to 10 instances by default"
  }
}

run "autoscaling_bounds_are_variables" {
  command = plan

  variables {
    min_instances = 2
    max_instances = 40
  }

  assert {
    condition     = google_cloud_run_v2_service.tracker.template[0].scaling[0].min_instance_count == 2 && google_cloud_run_v2_service.tracker.template[0].scaling[0].max_instance_count == 40
    error_message = "scaling: min_instances and max_instances reach the service"
  }
}

run "max_instances_below_min_instances_is_refused" {
  command = plan

  variables {
    min_instances = 3
    max_instances = 2
  }

  expect_failures = [google_cloud_run_v2_service.tracker]
}
