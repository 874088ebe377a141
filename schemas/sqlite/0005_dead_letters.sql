-- tracker SQLite schema, version 5: dead letters listed, filtered and paged by time
-- (newest first) and by reason, and removed by the retention sweep in bounded rounds
-- (--dead-letter-retention-days), each found by an index instead of a full scan.
CREATE INDEX dead_letters_received ON dead_letters (received_at, id);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at, id);
