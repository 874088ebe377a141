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
  description = "Consumers and operators that call the Operations API (HTTP/JSON): roles/run.invoker on the service, one grant per principal (serviceAccount:..., user:..., group:..., domain:...). Never allUsers or allAuthenticatedUsers."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.api_invokers : can(regex("^(serviceAccount|user|group|domain|principal|principalSet):[^\\s]+$", m))])
    error_message = "api_invokers: IAM principals only (serviceAccount:, user:, group:, domain:, principal:, principalSet:); allUsers and allAuthenticatedUsers would open the service to anyone."
  }
}

variable "event_invokers" {
  description = "Workers that POST CloudEvents to /v1/events instead of publishing to the events topic: roles/run.invoker on the service, one grant per principal. Never allUsers or allAuthenticatedUsers."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.event_invokers : can(regex("^(serviceAccount|user|group|domain|principal|principalSet):[^\\s]+$", m))])
    error_message = "event_invokers: IAM principals only (serviceAccount:, user:, group:, domain:, principal:, principalSet:); allUsers and allAuthenticatedUsers would open the service to anyone."
  }
}

# ---- the tracker's own authentication (docs/auth.md) -----------------------------------

variable "allow_unauthenticated" {
  description = "Set TRACKER_ALLOW_UNAUTHENTICATED=true: the tracker lets every request that reaches it do everything. Right on Cloud Run, and the default: Cloud Run IAM lets in only the principals with roles/run.invoker (the push account, api_invokers, event_invokers) and strips the signature of the ID token it checked, so the tracker could not check that token again. Without it the tracker refuses to listen on 0.0.0.0 with no authentication configured. Set false (with tracker_auth, and delivery = \"pull\") for the tracker's own checks behind Cloud Run's: docs/auth.md."
  type        = bool
  default     = true
  nullable    = false
}

variable "tracker_auth" {
  description = "The tracker's own authentication, with allow_unauthenticated = false (docs/auth.md): audiences of Google ID tokens it verifies (TRACKER_AUTH_AUDIENCE), grants permission => members (TRACKER_GRANT; permissions events.publish, pubsub.push, operations.read, operations.write; members serviceAccount:EMAIL, user:EMAIL, domain:DOMAIN, token:NAME, allAuthenticatedUsers, allUsers), and a Secret Manager secret (name or projects/P/secrets/S) holding a static tokens file of SHA-256 digests, mounted for TRACKER_AUTH_TOKENS_FILE. Behind Cloud Run, callers send Cloud Run's ID token in X-Serverless-Authorization and the tracker's token in Authorization."
  type = object({
    audiences             = optional(list(string), [])
    grants                = optional(map(list(string)), {})
    tokens_secret         = optional(string)
    tokens_secret_version = optional(string, "latest")
  })
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for a in var.tracker_auth.audiences : can(regex("^[^\\s]+$", a))])
    error_message = "tracker_auth.audiences: each audience is one word (the URL or name callers request ID tokens for)."
  }
  validation {
    condition     = alltrue([for p in keys(var.tracker_auth.grants) : contains(["events.publish", "pubsub.push", "operations.read", "operations.write"], p)])
    error_message = "tracker_auth.grants: permissions are events.publish, pubsub.push, operations.read and operations.write."
  }
  validation {
    condition = alltrue(flatten([
      for members in values(var.tracker_auth.grants) : [
        for m in members : can(regex("^(allUsers|allAuthenticatedUsers|(serviceAccount|user):[^@\\s]+@[^@\\s]+|domain:[^@\\s:]+|token:[A-Za-z0-9._-]+)$", m))
      ]
    ]))
    error_message = "tracker_auth.grants: members are serviceAccount:EMAIL, user:EMAIL, domain:DOMAIN, token:NAME, allAuthenticatedUsers or allUsers (behind Cloud Run: anyone Cloud Run let in)."
  }
  validation {
    condition     = var.tracker_auth.tokens_secret == null || can(regex("^(projects/[^/]+/secrets/)?[A-Za-z0-9_-]+$", var.tracker_auth.tokens_secret))
    error_message = "tracker_auth.tokens_secret: a secret name, or projects/P/secrets/S."
  }
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
  description = "Most instances Cloud Run scales out to, at least min_instances. Every instance applies events, serves the API and sweeps deadlines on the one database; a waiter wakes at once for changes its own instance applies and within --wake-poll-seconds (0.1 s) for another instance's (docs/api.md, Waiting)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances: 1 to 1000 (Cloud Run's limit)."
  }
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
  description = "More TRACKER_* settings for `tracker serve` (e.g. TRACKER_STRICT = \"true\"). The settings the module manages win over these; authentication is set with allow_unauthenticated and tracker_auth only."
  type        = map(string)
  default     = {}

  validation {
    condition     = length(setintersection(keys(var.extra_env), ["TRACKER_ALLOW_UNAUTHENTICATED", "TRACKER_AUTH_AUDIENCE", "TRACKER_AUTH_TOKENS_FILE", "TRACKER_AUTH_POLICY", "TRACKER_GRANT", "TRACKER_PUSH_AUDIENCE", "TRACKER_PUSH_SERVICE_ACCOUNT"])) == 0
    error_message = "extra_env: set authentication with allow_unauthenticated and tracker_auth (docs/auth.md), not TRACKER_ALLOW_UNAUTHENTICATED, TRACKER_AUTH_AUDIENCE, TRACKER_AUTH_TOKENS_FILE, TRACKER_AUTH_POLICY, TRACKER_GRANT, TRACKER_PUSH_AUDIENCE or TRACKER_PUSH_SERVICE_ACCOUNT."
  }
}

variable "labels" {
  description = "Labels put on every resource that takes them."
  type        = map(string)
  default     = {}
}
