variable "project_id" {
  description = "Project that holds everything the module creates."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service, the schema job and (when created) the Spanner instance."
  type        = string
  default     = "us-central1"
}

variable "name" {
  description = "Prefix of every resource name; service account ids are NAME-runtime, NAME-push, NAME-schema, NAME-worker."
  type        = string
  default     = "tracker"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}[a-z0-9]$", var.name))
    error_message = "name: 4 to 22 characters, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "image" {
  description = "Tracker image by digest (REGION-docker.pkg.dev/P/REPO/tracker@sha256:...), built from deploy/container/Dockerfile. The schema job runs again whenever it changes."
  type        = string

  validation {
    condition     = can(regex("@sha256:[0-9a-f]{64}$", var.image))
    error_message = "image: give the image by digest (...@sha256:<64 hex>), so that the schema job and the service run exactly the image you built."
  }
}

variable "delivery" {
  description = "How events reach the tracker: push (Pub/Sub posts to /v1/pubsub/push on Cloud Run, OIDC-authenticated) or pull (the tracker streams from the subscription)."
  type        = string
  default     = "push"

  validation {
    condition     = contains(["push", "pull"], var.delivery)
    error_message = "delivery: push or pull."
  }
}

variable "enable_apis" {
  description = "Enable the Cloud Run, Pub/Sub, Spanner and IAM APIs in the project (never disabled on destroy)."
  type        = bool
  default     = true
}

# ---- Spanner ---------------------------------------------------------------------------

variable "spanner_instance" {
  description = "Name of an existing Spanner instance to use; null creates NAME in spanner_config."
  type        = string
  default     = null
}

variable "spanner_config" {
  description = "Instance configuration of a created instance; null means regional-REGION."
  type        = string
  default     = null
}

variable "spanner_processing_units" {
  description = "Compute of a created instance (100 processing units = 1/10 node)."
  type        = number
  default     = 100
}

variable "database" {
  description = "Spanner database name. Terraform creates it empty; the schema job applies schemas/spanner with `tracker schema apply`."
  type        = string
  default     = "tracker"
}

variable "database_deletion_protection" {
  description = "Keep Terraform (deletion_protection) and Spanner (enable_drop_protection) from dropping the database. Set false and apply before a destroy."
  type        = bool
  default     = true
}

# ---- Pub/Sub ---------------------------------------------------------------------------

variable "max_delivery_attempts" {
  description = "Deliveries of an event before Pub/Sub moves it to the dead-letter topic (5..100)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts: Pub/Sub accepts 5..100."
  }
}

variable "retry_minimum_backoff" {
  description = "Shortest wait before Pub/Sub redelivers a nacked or unanswered event."
  type        = string
  default     = "10s"
}

variable "retry_maximum_backoff" {
  description = "Longest wait before Pub/Sub redelivers (at most 600s)."
  type        = string
  default     = "600s"
}

variable "ack_deadline_seconds" {
  description = "Time the tracker has to ack a pulled event, or to answer a push."
  type        = number
  default     = 60
}

variable "message_retention" {
  description = "How long unacked events, dead letters and control messages are kept."
  type        = string
  default     = "604800s"
}

variable "done_subscriptions" {
  description = "Filtered pull subscriptions on the completion topic, name => filter (e.g. attributes.operation_type = \"export\"), with the members allowed to consume each."
  type = map(object({
    filter  = optional(string, "")
    members = optional(list(string), [])
  }))
  default = {}
}

# ---- who may do what -------------------------------------------------------------------

variable "create_worker_service_account" {
  description = "Create NAME-worker, a service account for workers with publish rights on the events topic only."
  type        = bool
  default     = true
}

variable "worker_members" {
  description = "Further principals (serviceAccount:..., group:...) that publish events: roles/pubsub.publisher on the events topic, and roles/pubsub.subscriber on the control subscription."
  type        = list(string)
  default     = []
}

variable "control_publishers" {
  description = "Principals that send control messages to workers: roles/pubsub.publisher on the control topic."
  type        = list(string)
  default     = []
}

variable "api_invokers" {
  description = "Principals that call the Operations API (HTTP/JSON) or POST /v1/events: roles/run.invoker on the service."
  type        = list(string)
  default     = []
}

# ---- Cloud Run -------------------------------------------------------------------------

variable "ingress" {
  description = "Cloud Run ingress. INGRESS_TRAFFIC_INTERNAL_ONLY still admits Pub/Sub push from the same project."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"
}

variable "min_instances" {
  description = "Instances kept running. At least 1: the outbox dispatcher (and, with pull, the subscriber) work between requests."
  type        = number
  default     = 1

  validation {
    condition     = var.min_instances >= 1
    error_message = "min_instances: at least 1 (background work: outbox dispatcher, pull subscriber)."
  }
}

variable "max_instances" {
  description = "Most instances. WaitOperation wakes at once only for changes applied by its own instance (docs/api.md); with more than 1, a waiter on another instance sees the result when its wait ends."
  type        = number
  default     = 1
}

variable "cpu" {
  description = "CPU limit of an instance."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory limit of an instance."
  type        = string
  default     = "512Mi"
}

variable "concurrency" {
  description = "Requests one instance serves at once (waits and watches hold one each)."
  type        = number
  default     = 200
}

variable "request_timeout" {
  description = "Cloud Run request timeout; keep it above TRACKER_MAX_WAIT_SECONDS (300) so that long waits end on the tracker's terms."
  type        = string
  default     = "600s"
}

variable "extra_env" {
  description = "More TRACKER_* settings for `tracker serve` (e.g. TRACKER_STRICT = \"true\"). The settings the module manages win over these."
  type        = map(string)
  default     = {}
}

variable "labels" {
  description = "Labels put on every resource that takes them."
  type        = map(string)
  default     = {}
}
