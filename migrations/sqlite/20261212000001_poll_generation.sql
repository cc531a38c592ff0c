-- A channel's poll generation: every poll that begins raises it, and an older poll that
-- finds it raised ends (409 SVC1012). It lives in the database, so a poll begun on one
-- node ends the channel's poll open on another.
ALTER TABLE channels ADD COLUMN poll_generation INTEGER NOT NULL DEFAULT 0;
