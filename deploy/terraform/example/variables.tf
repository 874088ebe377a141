variable "project_id" {
  description = "Project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service and the Spanner instance."
  type        = string
  default     = "us-central1"
}

variable "image" {
  description = "The tracker image by digest, e.g. us-central1-docker.pkg.dev/P/tracker/tracker@sha256:..."
  type        = string
}

variable "api_invokers" {
  description = "Who may call the Operations API, e.g. [\"user:you@example.com\"]."
  type        = list(string)
  default     = []
}

variable "min_instances" {
  description = "Instances Cloud Run keeps running (at least 1: background work)."
  type        = number
  default     = 1
}

variable "max_instances" {
  description = "Most instances Cloud Run scales out to (docs/deploy.md, Many instances)."
  type        = number
  default     = 10
}
