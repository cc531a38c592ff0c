-- The text indexes are brought up to date once per write transaction, just before it
-- commits, instead of by every statement that changes `object_search`.
--
-- FTS5 writes its pending entries to disk as a new segment whenever a savepoint of the
-- transaction is begun or released. Concurrent writes share one transaction, each in a
-- savepoint of its own (src/store/sql/group.rs), so indexing row by row wrote one segment
-- per write and journalled its pages again for each savepoint; the shared commit saved
-- nothing on the text indexes. Now the rows to add and remove queue here, in order, and
-- `Engine::before_commit` applies the queue to both indexes in one pass and empties it,
-- inside the same transaction: a committed state always has its indexes complete.
--
-- The removed row's text travels with it: FTS5 with external content removes an entry by
-- re-reading the text it was indexed from, which by then is gone from `object_search`.
CREATE TABLE object_search_queue (
    seq  INTEGER PRIMARY KEY,
    id   INTEGER NOT NULL,
    body TEXT NOT NULL,
    -- 1: remove `id`'s entries, 0: add them.
    gone INTEGER NOT NULL
);

DROP TRIGGER object_search_ai;
DROP TRIGGER object_search_ad;

CREATE TRIGGER object_search_ai AFTER INSERT ON object_search BEGIN
    INSERT INTO object_search_queue (id, body, gone) VALUES (new.id, new.body, 0);
END;
-- Also runs when deleting an object cascades here.
CREATE TRIGGER object_search_ad AFTER DELETE ON object_search BEGIN
    INSERT INTO object_search_queue (id, body, gone) VALUES (old.id, old.body, 1);
END;
