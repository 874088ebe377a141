-- tracker Cloud Spanner schema, version 5 (issue #12, queries): what List filters and
-- sorts on beyond version 1's columns. Added columns, no new table: handy-spanner takes
-- ALTER TABLE ADD COLUMN. Rows written before stay NULL until their next change; a NULL
-- never hides a row (the store checks every row it reads from its State).

ALTER TABLE Operations ADD COLUMN Result STRING(16);

ALTER TABLE Operations ADD COLUMN ErrorCode INT64;

ALTER TABLE Operations ADD COLUMN Percent FLOAT64;

ALTER TABLE Operations ADD COLUMN Attempt INT64;

-- order_by: each sort key with the key as its tiebreak. UpdateTime is a commit timestamp:
-- on a busy Cloud Spanner instance an index on it concentrates writes on one split
-- (docs/api.md, "Ordering").
CREATE INDEX OperationsByCreateTime ON Operations (CreateTime, key);

CREATE INDEX OperationsByUpdateTime ON Operations (UpdateTime, key);

CREATE INDEX OperationsByEndTime ON Operations (EndTime, key);

-- "the failed ones, latest first": how they ended, then by end time.
CREATE INDEX OperationsByResult ON Operations (Result, EndTime, key);
