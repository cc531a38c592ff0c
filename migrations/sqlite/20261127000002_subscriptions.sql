-- Notification channels (OMA Notification Channel, long polling) and NMS subscriptions.
-- A subscription keeps its delivery position (box validity, modseq) and the index of its
-- next notification list, so notifications are computed from the database.

CREATE TABLE channels (
    id                INTEGER PRIMARY KEY,
    public_id         TEXT NOT NULL UNIQUE,
    principal         TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    client_correlator TEXT,
    application_tag   TEXT,
    lifetime_secs     INTEGER NOT NULL,
    expires_at_ms     INTEGER NOT NULL,
    max_notifications INTEGER NOT NULL,
    created_at_ms     INTEGER NOT NULL
);
CREATE INDEX channels_principal ON channels(principal, user_id);

CREATE TABLE subscriptions (
    id                  INTEGER PRIMARY KEY,
    box_id              INTEGER NOT NULL REFERENCES boxes(id) ON DELETE CASCADE,
    public_id           TEXT NOT NULL UNIQUE,
    principal           TEXT NOT NULL,
    channel_id          INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    notify_url          TEXT NOT NULL,
    callback_data       TEXT,
    notification_format TEXT,
    -- the compiled filter (JSON), NULL for none
    filter              TEXT,
    client_correlator   TEXT,
    duration_secs       INTEGER NOT NULL,
    expires_at_ms       INTEGER NOT NULL,
    -- the token set by the last create or update, echoed back
    restart_token       TEXT NOT NULL,
    position_validity   INTEGER NOT NULL,
    position_modseq     INTEGER NOT NULL,
    next_index          INTEGER NOT NULL DEFAULT 1,
    created_at_ms       INTEGER NOT NULL
);
CREATE UNIQUE INDEX subscriptions_correlator ON subscriptions(box_id, principal, client_correlator)
    WHERE client_correlator IS NOT NULL;
CREATE INDEX subscriptions_channel ON subscriptions(channel_id);
