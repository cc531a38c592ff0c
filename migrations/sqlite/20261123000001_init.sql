-- Core store: accounts, boxes, folders, objects, attributes, flags, payload parts,
-- tombstones and blob bookkeeping. See docs/storage.md for the model.

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_service    INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE account_boxes (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    store      TEXT NOT NULL,
    address    TEXT NOT NULL,
    PRIMARY KEY (account_id, store, address)
);

CREATE TABLE boxes (
    id            INTEGER PRIMARY KEY,
    store         TEXT NOT NULL,
    address       TEXT NOT NULL,
    -- change counter: bumped first by every mutating transaction
    modseq        INTEGER NOT NULL DEFAULT 0,
    -- changes when the box is reset
    validity      INTEGER NOT NULL,
    -- oldest modseq that can still be replayed from tombstones
    replay_floor  INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (store, address)
);

CREATE TABLE folders (
    id            INTEGER PRIMARY KEY,
    box_id        INTEGER NOT NULL REFERENCES boxes(id) ON DELETE CASCADE,
    public_id     TEXT NOT NULL,
    parent_id     INTEGER REFERENCES folders(id),
    name          TEXT NOT NULL,
    is_root       INTEGER NOT NULL DEFAULT 0,
    -- materialized ancestry of internal ids, '/1/7/12/' (self included): subtree = prefix range
    ancestry      TEXT NOT NULL,
    -- materialized name path, '' for the root, '/a/b' below it
    path          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    last_mod_seq  INTEGER NOT NULL,
    UNIQUE (box_id, public_id),
    UNIQUE (box_id, path)
);
CREATE UNIQUE INDEX folders_one_root ON folders(box_id) WHERE is_root = 1;
CREATE UNIQUE INDEX folders_name_under_parent ON folders(parent_id, name);
CREATE INDEX folders_ancestry ON folders(box_id, ancestry);
CREATE INDEX folders_box_seq ON folders(box_id, last_mod_seq);

CREATE TABLE folder_attributes (
    folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    name_lc   TEXT NOT NULL,
    name      TEXT NOT NULL,
    position  INTEGER NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (folder_id, name_lc, position)
);

CREATE TABLE folder_flags (
    folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    flag_lc   TEXT NOT NULL,
    flag      TEXT NOT NULL,
    PRIMARY KEY (folder_id, flag_lc)
);

CREATE TABLE objects (
    id              INTEGER PRIMARY KEY,
    box_id          INTEGER NOT NULL REFERENCES boxes(id) ON DELETE CASCADE,
    public_id       TEXT NOT NULL,
    folder_id       INTEGER NOT NULL REFERENCES folders(id),
    stored_at_ms    INTEGER NOT NULL,
    correlation_id  TEXT,
    correlation_tag TEXT,
    payload_type    TEXT,
    last_mod_seq    INTEGER NOT NULL,
    -- modseq at creation: the creation order used by CreatedObjects searches
    creation_seq    INTEGER NOT NULL,
    UNIQUE (box_id, public_id)
);
CREATE INDEX objects_folder ON objects(folder_id, id);
CREATE INDEX objects_box_seq ON objects(box_id, last_mod_seq);
CREATE INDEX objects_correlation_id ON objects(box_id, correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX objects_correlation_tag ON objects(box_id, correlation_tag) WHERE correlation_tag IS NOT NULL;

CREATE TABLE object_attributes (
    object_id INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    name_lc   TEXT NOT NULL,
    name      TEXT NOT NULL,
    position  INTEGER NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (object_id, name_lc, position)
);
CREATE INDEX object_attributes_lookup ON object_attributes(name_lc, value);

CREATE TABLE object_flags (
    object_id INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    flag_lc   TEXT NOT NULL,
    flag      TEXT NOT NULL,
    PRIMARY KEY (object_id, flag_lc)
);
CREATE INDEX object_flags_lookup ON object_flags(flag_lc, object_id);

CREATE TABLE payload_parts (
    object_id           INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    ordinal             INTEGER NOT NULL,
    part_id             TEXT NOT NULL,
    content_type        TEXT NOT NULL,
    content_disposition TEXT,
    content_id          TEXT,
    content_location    TEXT,
    content_encoding    TEXT,
    file_icon           TEXT,
    size                INTEGER NOT NULL,
    inline_data         BLOB,
    blob_key            TEXT,
    PRIMARY KEY (object_id, ordinal)
);
CREATE UNIQUE INDEX payload_parts_id ON payload_parts(object_id, part_id);
CREATE INDEX payload_parts_blob ON payload_parts(blob_key) WHERE blob_key IS NOT NULL;

-- Deleted and expired items, replayable by the sync layer.
CREATE TABLE tombstones (
    id              INTEGER PRIMARY KEY,
    box_id          INTEGER NOT NULL REFERENCES boxes(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('object', 'folder')),
    public_id       TEXT NOT NULL,
    reason          TEXT NOT NULL CHECK (reason IN ('deleted', 'expired')),
    last_mod_seq    INTEGER NOT NULL,
    correlation_id  TEXT,
    correlation_tag TEXT,
    deleted_at_ms   INTEGER NOT NULL
);
CREATE INDEX tombstones_box_seq ON tombstones(box_id, last_mod_seq);

-- Uploads in flight hold a pin on their blob key so that garbage collection leaves it alone.
CREATE TABLE blob_pins (
    blob_key      TEXT NOT NULL,
    token         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (blob_key, token)
);

-- A blob being deleted; an upload of the same content waits until the mark is gone.
CREATE TABLE blob_deleting (
    blob_key      TEXT PRIMARY KEY,
    started_at_ms INTEGER NOT NULL
);
