-- Webhook delivery and filterable tombstones.
--
-- A subscription delivers either into one of this server's notification channels
-- (channel_id set) or to a webhook (channel_id NULL: notify_url is POSTed to). A webhook
-- subscription's next list is built, its index consumed and the rendered body stored in
-- webhook_outbox in one transaction; the row is delivered (retried with backoff) before the
-- next list is built, so lists arrive in index order and survive restarts.
--
-- Long-polling channels keep the client's maxWaitTime (0: answer as soon as anything is
-- pending).
--
-- Tombstones keep a snapshot of what subscription filters test (attributes, flags, dates),
-- so deletions are filtered like changes.

CREATE TABLE subscriptions_new (
    id                  INTEGER PRIMARY KEY,
    box_id              INTEGER NOT NULL REFERENCES boxes(id) ON DELETE CASCADE,
    public_id           TEXT NOT NULL UNIQUE,
    principal           TEXT NOT NULL,
    -- NULL: a webhook subscription
    channel_id          INTEGER REFERENCES channels(id) ON DELETE CASCADE,
    notify_url          TEXT NOT NULL,
    callback_data       TEXT,
    notification_format TEXT,
    filter              TEXT,
    client_correlator   TEXT,
    duration_secs       INTEGER NOT NULL,
    expires_at_ms       INTEGER NOT NULL,
    restart_token       TEXT NOT NULL,
    position_validity   INTEGER NOT NULL,
    position_modseq     INTEGER NOT NULL,
    -- inside group position_modseq when one too large for a list was split: the last item
    -- delivered as (part, internal id), part 0 folders, 1 objects, 2 tombstones; part 3:
    -- after the whole group
    position_part       INTEGER NOT NULL DEFAULT 3,
    position_id         INTEGER NOT NULL DEFAULT 0,
    next_index          INTEGER NOT NULL DEFAULT 1,
    created_at_ms       INTEGER NOT NULL
);
INSERT INTO subscriptions_new (id, box_id, public_id, principal, channel_id, notify_url, callback_data,
        notification_format, filter, client_correlator, duration_secs, expires_at_ms, restart_token,
        position_validity, position_modseq, next_index, created_at_ms)
    SELECT id, box_id, public_id, principal, channel_id, notify_url, callback_data, notification_format, filter,
           client_correlator, duration_secs, expires_at_ms, restart_token, position_validity, position_modseq,
           next_index, created_at_ms
    FROM subscriptions;
DROP TABLE subscriptions;
ALTER TABLE subscriptions_new RENAME TO subscriptions;
CREATE UNIQUE INDEX subscriptions_correlator ON subscriptions(box_id, principal, client_correlator)
    WHERE client_correlator IS NOT NULL;
CREATE INDEX subscriptions_channel ON subscriptions(channel_id);
CREATE INDEX subscriptions_webhooks ON subscriptions(box_id) WHERE channel_id IS NULL;
-- Counting a box's live subscriptions (limits.max_subscriptions_per_box) at each creation.
CREATE INDEX subscriptions_box ON subscriptions(box_id, expires_at_ms);

CREATE TABLE webhook_outbox (
    subscription_id INTEGER PRIMARY KEY REFERENCES subscriptions(id) ON DELETE CASCADE,
    list_index      INTEGER NOT NULL,
    -- the rendered nmsEventList (JSON), sent as is on every attempt
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    due_at_ms       INTEGER NOT NULL,
    -- a deliverer holds the row until then
    lease_until_ms  INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at_ms   INTEGER NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(due_at_ms);

-- JSON: {"date","creation","flags":[..],"attributes":[[name,value],..]} for objects,
-- {"date","name","attributes":[..]} for folders; NULL for tombstones made before this.
ALTER TABLE tombstones ADD COLUMN snapshot TEXT;

ALTER TABLE channels ADD COLUMN max_wait_secs INTEGER NOT NULL DEFAULT 0;
