-- tracker Cloud Spanner schema, version 7 (issue #13, fast List): the shapes of a List
-- page that version 5's indexes do not read in the query's own direction. Each index's
-- keys are in the order the query asks for, so a page is the index's first entries
-- (an index in the opposite direction may not be scanned backwards). The store names
-- them in FORCE_INDEX hints (tracker/stores/spanner_queries.py, `index_for`).

-- No filter, newest first (the console's default view).
CREATE INDEX OperationsByCreateTimeDesc ON Operations (CreateTime DESC, key DESC);

-- `done = false`, newest first: the running operations' key range, in order.
CREATE INDEX OperationsByDoneCreateTimeDesc ON Operations (Done, CreateTime DESC, key DESC);
