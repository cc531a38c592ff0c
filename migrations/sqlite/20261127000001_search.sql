-- Search: full-text indexes fed at deposit time, and the indexes that keep paged searches
-- keyset lookups. See docs/search.md.

-- The searchable text of an object (text attribute values and the start of its textual
-- payload parts), written at deposit time. Both full-text indexes read it as their content.
CREATE TABLE object_search (
    id   INTEGER PRIMARY KEY REFERENCES objects(id) ON DELETE CASCADE,
    body TEXT NOT NULL
);

-- Substring search (AllTextAttributes): trigram index. rowid = objects.id.
CREATE VIRTUAL TABLE object_text USING fts5(body, content = 'object_search', content_rowid = 'id',
    tokenize = 'trigram case_sensitive 0');

-- Whole-word search (WholeWord): word index. rowid = objects.id.
CREATE VIRTUAL TABLE object_words USING fts5(body, content = 'object_search', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2');

CREATE TRIGGER object_search_ai AFTER INSERT ON object_search BEGIN
    INSERT INTO object_text (rowid, body) VALUES (new.id, new.body);
    INSERT INTO object_words (rowid, body) VALUES (new.id, new.body);
END;
-- Also runs when deleting an object cascades here.
CREATE TRIGGER object_search_ad AFTER DELETE ON object_search BEGIN
    INSERT INTO object_text (object_text, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO object_words (object_words, rowid, body) VALUES ('delete', old.id, old.body);
END;

-- Objects stored before this migration: their text attributes (payload text is indexed
-- from deposits on).
INSERT INTO object_search (id, body)
SELECT object_id, group_concat(value, char(10)) FROM
    (SELECT object_id, value FROM object_attributes
     WHERE name_lc NOT IN ('date', 'content-type', 'message-context', 'direction') ORDER BY object_id, rowid)
GROUP BY object_id;

-- Keyset paging of searches within one box: by id, by stored date, by creation order.
CREATE INDEX objects_box_id ON objects(box_id, id);
CREATE INDEX objects_box_stored ON objects(box_id, stored_at_ms, id);
CREATE INDEX objects_box_creation ON objects(box_id, creation_seq, id);
CREATE INDEX tombstones_box_kind ON tombstones(box_id, kind, id);
-- Attribute and flag lookups are box-first, so one box's search never reads another's
-- entries, and end in the object id, so a page can be read from them in id order.
ALTER TABLE object_attributes ADD COLUMN box_id INTEGER NOT NULL DEFAULT 0;
UPDATE object_attributes SET box_id = (SELECT o.box_id FROM objects o WHERE o.id = object_attributes.object_id);
DROP INDEX object_attributes_lookup;
CREATE INDEX object_attributes_lookup ON object_attributes(box_id, name_lc, value, object_id);
ALTER TABLE object_flags ADD COLUMN box_id INTEGER NOT NULL DEFAULT 0;
UPDATE object_flags SET box_id = (SELECT o.box_id FROM objects o WHERE o.id = object_flags.object_id);
DROP INDEX object_flags_lookup;
CREATE INDEX object_flags_lookup ON object_flags(box_id, flag_lc, object_id);
CREATE INDEX folder_attributes_lookup ON folder_attributes(name_lc, value);
CREATE INDEX folder_flags_lookup ON folder_flags(flag_lc, folder_id);
