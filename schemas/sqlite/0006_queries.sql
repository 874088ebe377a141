-- tracker SQLite schema, version 6 (issue #12, queries): what List filters and sorts on
-- beyond version 1's columns. Rows written before stay NULL in the new columns until
-- their next change; a NULL never hides a row (the list reads it and checks it from the
-- state blob), so the answer is the same, only slower for such rows.
ALTER TABLE operations ADD COLUMN result TEXT;
ALTER TABLE operations ADD COLUMN error_code INTEGER;
ALTER TABLE operations ADD COLUMN percent REAL;
ALTER TABLE operations ADD COLUMN attempt INTEGER;
-- order_by: each sort key with the name as its tiebreak (read forwards or backwards).
CREATE INDEX operations_create_time ON operations (create_time, name);
CREATE INDEX operations_update_time ON operations (update_time, name);
CREATE INDEX operations_end_time ON operations (end_time, name);
-- "the failed ones, latest first": how they ended, then by end time, read without a sort.
CREATE INDEX operations_result ON operations (result, end_time, name);
