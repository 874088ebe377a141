-- tracker Cloud Spanner schema, version 4: dead letters listed, filtered and paged by
-- time (newest first) and by reason through an index, and removed 30 days after they were
-- received by a row deletion policy. The tracker's retention sweep also removes them after
-- --dead-letter-retention-days in bounded rounds (DeadLettersByReceivedAt), which is what
-- enforces retention where the server has no row deletion policy (the emulator variant).

CREATE INDEX DeadLettersByReceivedAt ON DeadLetters (ReceivedAt, Id);

CREATE INDEX DeadLettersByReason ON DeadLetters (Reason, ReceivedAt, Id);

ALTER TABLE DeadLetters ADD ROW DELETION POLICY (OLDER_THAN(ReceivedAt, INTERVAL 30 DAY));
