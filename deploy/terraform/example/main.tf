# A complete deployment: `tofu apply` (or `terraform apply`) with the two variables below.
# docs/deploy.md walks through it.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.42.0, < 9.0.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

module "tracker" {
  source = "../modules/tracker"

  project_id = var.project_id
  region     = var.region
  image      = var.image

  # Autoscaling: every instance applies events and serves the API on the one database.
  min_instances = var.min_instances
  max_instances = var.max_instances

  # push: Pub/Sub posts each event to the service (OIDC-authenticated by Cloud Run).
  # pull: the tracker streams the subscription (batches, flow control).
  delivery = "push"

  # Cloud Run IAM decides who gets in: roles/run.invoker for the push account and for
  # each of api_invokers, never allUsers. It strips the signature of the token it checked,
  # so the tracker lets in whoever it admits (docs/auth.md, "Cloud Run").
  api_invokers          = var.api_invokers
  allow_unauthenticated = true

  # A completion subscription the API callers may read; add filters such as
  # attributes.result = "failed" (docs/gcp.md lists the attributes).
  done_subscriptions = {
    all = { members = var.api_invokers }
  }
}
