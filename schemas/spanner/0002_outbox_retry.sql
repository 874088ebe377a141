-- tracker Cloud Spanner schema, version 2: each done-notification's own retry schedule,
-- and the ones the dispatcher gave up on (rule 7). An Outbox row is pending while it has
-- an OutboxDue row, sent when SentAt is set, and a failed notification while it has a
-- FailedNotifications row. New tables rather than new Outbox columns: handy-spanner has
-- no ALTER TABLE. Rows a version-1 tracker left pending get their OutboxDue row from the
-- store (SpannerStore, once per process, through OutboxPending): DDL cannot copy rows.

-- Pending notifications only, with the earliest time of the next delivery attempt and why
-- the latest one failed. Small: a row goes when its notification is sent or given up. The
-- index stores LastError so that the dispatcher's query needs no read of the table.
CREATE TABLE OutboxDue (
  Id STRING(64) NOT NULL,
  NextAttemptAt TIMESTAMP NOT NULL,
  LastError STRING(MAX),
) PRIMARY KEY (Id);

CREATE INDEX OutboxDueByNextAttempt ON OutboxDue (NextAttemptAt) STORING (LastError);

-- Notifications no longer retried, for an operator to see and requeue. Kept until then:
-- their Outbox row is not sent, so its row deletion policy does not apply.
CREATE TABLE FailedNotifications (
  Id STRING(64) NOT NULL,
  OperationKey STRING(1024) NOT NULL,
  GaveUpAt TIMESTAMP NOT NULL,
  Attempts INT64 NOT NULL,
  LastError STRING(MAX) NOT NULL,
) PRIMARY KEY (Id);

CREATE INDEX FailedNotificationsByGaveUp ON FailedNotifications (GaveUpAt);
