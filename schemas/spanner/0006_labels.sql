-- tracker Cloud Spanner schema, version 6 (issue #13, fast List): labels in an index.
-- One row per label of each operation, interleaved in Operations: written beside the
-- row, and deleted with it (DeleteOperation, and the row deletion policy of done
-- operations, which deletes interleaved rows too). The index finds the operations with
-- `labels.k = "v"` without reading the table: its entries are in name order. Rows
-- written before this version get theirs from `tracker schema apply` (a backfill from
-- the Labels column, after the DDL); a new table, not a column: handy-spanner takes it.

CREATE TABLE OperationLabels (
  key STRING(1024) NOT NULL,
  LabelKey STRING(250) NOT NULL,
  Value STRING(1024) NOT NULL,
) PRIMARY KEY (key, LabelKey),
  INTERLEAVE IN PARENT Operations ON DELETE CASCADE;

CREATE INDEX OperationLabelsByValue ON OperationLabels (LabelKey, Value);
