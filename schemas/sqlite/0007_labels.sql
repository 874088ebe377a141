-- tracker SQLite schema, version 7 (issue #13, fast List): labels in an index, and the
-- running operations in each sort order. Statements end with ";" at the end of a line.
-- One row per label of each operation, keyed by (key, value, name): `labels.k = "v"`
-- is one range of the primary key, in name order (a page by name reads only its rows);
-- `labels.k:*` and a prefix `labels.k = "v*"` are ranges too. Deleted with the
-- operation (DeleteOperation, bulk delete, retention): the store turns foreign keys on.
CREATE TABLE operation_labels (
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  name TEXT NOT NULL REFERENCES operations (name) ON DELETE CASCADE,
  PRIMARY KEY (key, value, name)
) WITHOUT ROWID;
-- An operation's own labels: what the delete cascade and a label change find them by.
CREATE INDEX operation_labels_name ON operation_labels (name, key);
-- The labels of every row written before this version, from its JSON column.
INSERT INTO operation_labels (key, value, name) SELECT j.key, j.value, o.name FROM operations AS o, json_each(o.labels) AS j;
-- `done = false` in each order_by, read in order from an index that holds only the
-- running operations (small, and rows leave it when they end); by name, operations_done.
CREATE INDEX operations_running_create_time ON operations (create_time, name) WHERE done = 0;
CREATE INDEX operations_running_update_time ON operations (update_time, name) WHERE done = 0;
CREATE INDEX operations_running_end_time ON operations (end_time, name) WHERE done = 0
