-- A subscription's delivery position may stand inside a modseq group that was too large
-- for one notification list: the last item delivered, as (part, internal id) with part
-- 0 folders, 1 objects, 2 tombstones; part 3 means after the whole group.
ALTER TABLE subscriptions ADD COLUMN position_part INTEGER NOT NULL DEFAULT 3;
ALTER TABLE subscriptions ADD COLUMN position_id INTEGER NOT NULL DEFAULT 0;
