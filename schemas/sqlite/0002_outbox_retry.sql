-- tracker SQLite schema, version 2: each done-notification's own retry schedule, and the
-- ones the dispatcher gave up on (rule 7). Statements end with ";" at the end of a line.
-- An outbox row is pending while it has an outbox_due row, sent when sent_at is set, and a
-- failed notification while it has a failed_notifications row.
CREATE TABLE outbox_due (
  id TEXT PRIMARY KEY,            -- outbox.id
  next_attempt_at TEXT NOT NULL,  -- the earliest time of the next delivery attempt
  last_error TEXT                 -- why the latest attempt failed
);
CREATE INDEX outbox_due_next ON outbox_due (next_attempt_at, id);
CREATE TABLE failed_notifications (
  id TEXT PRIMARY KEY,            -- outbox.id
  operation TEXT NOT NULL,
  gave_up_at TEXT NOT NULL,       -- when the dispatcher stopped retrying
  attempts INTEGER NOT NULL,
  last_error TEXT NOT NULL
);
CREATE INDEX failed_notifications_gave_up ON failed_notifications (gave_up_at, id);
-- Rows version 1 left pending are due at once.
INSERT INTO outbox_due (id, next_attempt_at) SELECT id, created_at FROM outbox WHERE sent_at IS NULL;
