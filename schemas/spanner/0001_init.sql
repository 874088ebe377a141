-- tracker Cloud Spanner schema, version 1 (GoogleSQL). Applied by `tracker schema apply`.
-- Statements end with ";" at the end of a line. The emulator variant used by tests is
-- generated from this file by tracker/stores/spanner_schema.py (emulator_variant).

-- The descriptors sent with this statement also carry the types Operation refers to.
CREATE PROTO BUNDLE (
  google.longrunning.Operation
);

-- The seed's shape: `key` computed from Operation.name, the Operation as a proto column,
-- Checkpoint bytes beside it; then what the tracker needs to apply and query.
CREATE TABLE Operations (
  Operation google.longrunning.Operation NOT NULL,
  key STRING(1024) NOT NULL AS (Operation.name) STORED,
  Checkpoint BYTES(MAX),
  State BYTES(MAX) NOT NULL,
  Done BOOL NOT NULL,
  OperationType STRING(256) NOT NULL,
  Parent STRING(1024) NOT NULL,
  Labels JSON,
  CreateTime TIMESTAMP NOT NULL,
  UpdateTime TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp = true),
  EndTime TIMESTAMP,
  DueTime TIMESTAMP,
  ExpireTime TIMESTAMP,
) PRIMARY KEY (key),
  ROW DELETION POLICY (OLDER_THAN(ExpireTime, INTERVAL 0 DAY));

CREATE INDEX OperationsByDone ON Operations (Done, key);

-- Not-done operations by when their deadline or heartbeat timeout expires them.
CREATE NULL_FILTERED INDEX OperationsDue ON Operations (DueTime);

-- Identities of applied events (rule 1). Not interleaved: they outlive a deleted
-- operation so that a redelivered old event cannot bring it back.
CREATE TABLE AppliedEvents (
  OperationKey STRING(1024) NOT NULL,
  Source STRING(MAX) NOT NULL,
  EventId STRING(256) NOT NULL,
  Outcome STRING(16) NOT NULL,
  AppliedAt TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp = true),
) PRIMARY KEY (OperationKey, Source, EventId),
  ROW DELETION POLICY (OLDER_THAN(AppliedAt, INTERVAL 30 DAY));

-- Done-notifications written in the apply transaction (rule 7).
CREATE TABLE Outbox (
  Id STRING(64) NOT NULL,
  OperationKey STRING(1024) NOT NULL,
  Payload BYTES(MAX) NOT NULL,
  State BYTES(MAX) NOT NULL,
  CreatedAt TIMESTAMP NOT NULL,
  Attempts INT64 NOT NULL,
  SentAt TIMESTAMP,
) PRIMARY KEY (Id),
  ROW DELETION POLICY (OLDER_THAN(SentAt, INTERVAL 7 DAY));

CREATE INDEX OutboxPending ON Outbox (SentAt, CreatedAt);

-- Events that can never apply, for an operator to see and replay (rule 6).
CREATE TABLE DeadLetters (
  Id STRING(64) NOT NULL,
  ReceivedAt TIMESTAMP NOT NULL,
  Route STRING(16) NOT NULL,
  Reason STRING(64) NOT NULL,
  Detail STRING(MAX) NOT NULL,
  MessageId STRING(256) NOT NULL,
  Attributes JSON,
  Body BYTES(MAX) NOT NULL,
) PRIMARY KEY (Id);

-- Which schema versions were applied, and in which variant.
CREATE TABLE TrackerSchema (
  Version INT64 NOT NULL,
  Variant STRING(32) NOT NULL,
  AppliedAt TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp = true),
) PRIMARY KEY (Version);
