-- tracker SQLite schema, version 1. Applied by `tracker schema apply` (and on start).
-- Statements are separated by ";" at the end of a line.
CREATE TABLE operations (
  name TEXT PRIMARY KEY,
  operation BLOB NOT NULL,        -- google.longrunning.Operation, as served
  state BLOB NOT NULL,            -- tracker.v1.OperationState, for the apply rules
  checkpoint BLOB,                -- latest checkpoint bytes (the seed's Checkpoint column)
  done INTEGER NOT NULL,
  operation_type TEXT NOT NULL DEFAULT '',
  parent TEXT NOT NULL DEFAULT '',
  labels TEXT NOT NULL DEFAULT '{}', -- JSON object
  create_time TEXT NOT NULL,
  update_time TEXT NOT NULL,
  end_time TEXT,
  due_time TEXT,                  -- not done: when the deadline or heartbeat timeout expires it
  expire_time TEXT                -- done: when retention deletes it
);
CREATE INDEX operations_done ON operations (done, name);
CREATE INDEX operations_type ON operations (operation_type, name);
CREATE INDEX operations_parent ON operations (parent, name);
CREATE INDEX operations_due ON operations (due_time) WHERE due_time IS NOT NULL;
CREATE INDEX operations_expire ON operations (expire_time) WHERE expire_time IS NOT NULL;
CREATE TABLE applied_events (
  operation TEXT NOT NULL,
  source TEXT NOT NULL,
  event_id TEXT NOT NULL,
  outcome TEXT NOT NULL,
  applied_at TEXT NOT NULL,
  PRIMARY KEY (operation, source, event_id)
) WITHOUT ROWID;
CREATE TABLE outbox (
  id TEXT PRIMARY KEY,
  operation TEXT NOT NULL,
  payload BLOB NOT NULL,          -- google.longrunning.Operation at the done transition
  state BLOB NOT NULL,
  created_at TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  sent_at TEXT
);
CREATE INDEX outbox_pending ON outbox (sent_at, created_at);
CREATE TABLE dead_letters (
  id TEXT PRIMARY KEY,
  received_at TEXT NOT NULL,
  route TEXT NOT NULL,
  reason TEXT NOT NULL,
  detail TEXT NOT NULL,
  message_id TEXT NOT NULL DEFAULT '',
  attributes TEXT NOT NULL DEFAULT '{}',
  body BLOB NOT NULL
);
