-- tracker SQLite schema, version 3: the retention sweep finds old de-duplication
-- records (and tombstones) by an index, in bounded rounds, instead of a full scan.
CREATE INDEX applied_events_applied_at ON applied_events (applied_at);
