-- tracker Cloud Spanner schema, version 3: each operation's event history
-- (tracker.stores.history). One row per event that reached the operation (applied,
-- duplicate, stale or late) and per action of the tracker's own, numbered per operation
-- from 1 in commit order. Interleaved in Operations: one operation's history is one key
-- range next to its row, and it goes with the row (DeleteOperation, and the row deletion
-- policy of done operations, which deletes interleaved rows too).

CREATE TABLE OperationEvents (
  key STRING(1024) NOT NULL,
  Ordinal INT64 NOT NULL,
  Type STRING(256) NOT NULL,
  EventId STRING(256) NOT NULL,
  Source STRING(MAX) NOT NULL,
  EventTime TIMESTAMP NOT NULL,
  Sequence INT64,
  Attempt INT64 NOT NULL,
  Outcome STRING(32) NOT NULL,
  ReceivedAt TIMESTAMP NOT NULL,
  Data BYTES(MAX) NOT NULL,
  Truncated BOOL NOT NULL,
) PRIMARY KEY (key, Ordinal),
  INTERLEAVE IN PARENT Operations ON DELETE CASCADE;

-- The last ordinal given per operation: the next row's number, and how many rows are past
-- the bound (--history-per-operation) without counting them.
CREATE TABLE HistoryHeads (
  key STRING(1024) NOT NULL,
  LastOrdinal INT64 NOT NULL,
) PRIMARY KEY (key),
  INTERLEAVE IN PARENT Operations ON DELETE CASCADE;
