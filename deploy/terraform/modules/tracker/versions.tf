terraform {
  # OpenTofu 1.6+ or Terraform 1.5+.
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 7.42 added run_execution_token to google_cloud_run_v2_job (the schema job runs
      # during apply); 8.x is what deploy/tools.py builds for `tofu validate`.
      version = ">= 7.42.0, < 9.0.0"
    }
  }
}
