-- tracker SQLite schema, version 4: each operation's event history (tracker.stores.history).
-- Statements end with ";" at the end of a line.
-- One row per event that reached the operation (applied, duplicate, stale or late) and per
-- action of the tracker's own (cancel, expiry, retry start, children policy), numbered per
-- operation from 1 in commit order: reading one operation's history is one range of the
-- primary key, whose end is the last number given. Deleted with the operation
-- (DeleteOperation, retention): the store turns foreign keys on.
CREATE TABLE operation_events (
  operation TEXT NOT NULL REFERENCES operations (name) ON DELETE CASCADE,
  ordinal INTEGER NOT NULL,
  type TEXT NOT NULL,             -- the CloudEvents type, or tracker.<action>
  event_id TEXT NOT NULL,
  source TEXT NOT NULL,           -- the producer, or "tracker"
  event_time TEXT NOT NULL,
  sequence INTEGER,
  attempt INTEGER NOT NULL,
  outcome TEXT NOT NULL,          -- applied | duplicate | stale | late, or the action's reason
  received_at TEXT NOT NULL,
  data BLOB NOT NULL,             -- the data message, serialized, at most 8 KiB
  truncated INTEGER NOT NULL,
  PRIMARY KEY (operation, ordinal)
) WITHOUT ROWID;
