# The database is created empty: its DDL (schemas/spanner) declares a PROTO BUNDLE whose
# descriptors must travel with the DDL request, which the provider's `ddl` argument cannot
# send. The schema job below applies it with `tracker schema apply`, the one way schema
# changes are made (docs/deploy.md).

resource "google_spanner_instance" "tracker" {
  count = var.spanner_instance == null ? 1 : 0

  project          = var.project_id
  name             = var.name
  display_name     = "tracker"
  config           = var.spanner_config != null ? var.spanner_config : "regional-${var.region}"
  processing_units = var.spanner_processing_units
  labels           = var.labels
  depends_on       = [google_project_service.apis]
}

resource "google_spanner_database" "tracker" {
  project  = var.project_id
  instance = var.spanner_instance != null ? var.spanner_instance : google_spanner_instance.tracker[0].name
  name     = var.database

  database_dialect       = "GOOGLE_STANDARD_SQL"
  deletion_protection    = var.database_deletion_protection
  enable_drop_protection = var.database_deletion_protection
  depends_on             = [google_project_service.apis]
}

# `tracker schema apply` as a Cloud Run job with the service's image. Terraform runs it
# (run_execution_token) when the job is created and whenever the image or the database
# changes, waits for it to succeed, and only then rolls the service out: a new image's
# schema versions are applied before any instance of it serves.
resource "google_cloud_run_v2_job" "schema" {
  project             = var.project_id
  name                = "${var.name}-schema"
  location            = var.region
  labels              = var.labels
  deletion_protection = false

  run_execution_token = substr(sha256("${var.image} ${local.database_path}"), 0, 24)

  template {
    task_count = 1
    template {
      service_account = google_service_account.schema.email
      # Retries cover IAM grants that are still propagating on a first apply.
      max_retries = 3
      timeout     = "900s"

      containers {
        image = var.image
        args  = local.schema_args

        dynamic "env" {
          for_each = local.client_env
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }

  depends_on = [google_spanner_database_iam_member.schema]
}
