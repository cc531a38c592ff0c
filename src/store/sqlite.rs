//! The SQLite engine: the embedded default, one database file under the data dir.
//!
//! WAL journal, full fsync, a busy timeout so writers of other processes (the command
//! line) queue instead of failing, foreign keys on so deleting an object or folder cascades
//! to its attributes, flags and parts. Text search runs on FTS5 tables fed from
//! `object_search`: `object_text` (trigram) for substrings, `object_words` (unicode61,
//! diacritics removed) for whole words. They take in a write's text when its transaction
//! commits ([`APPLY_TEXT_QUEUE`]).

use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use super::sql::{Sql, joined, like_pattern};
use crate::error::Result;

/// How long a write waits for another process's (the command line's) to end.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Every connection's settings, besides [`BUSY_TIMEOUT`].
pub const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON";

/// Open a pool on `url` (`sqlite://path`), creating the file if needed.
pub async fn connect(url: &str) -> Result<AnyPool> {
    let url = if url.contains("mode=") {
        url.to_string()
    } else {
        format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
    };
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        // A connection to a local file does not go stale between uses: checking it before
        // every use would only add a round trip to the connection's thread.
        .test_before_acquire(false)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                let busy = format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis());
                sqlx::Executor::execute(&mut *conn, sqlx::AssertSqlSafe(format!("{PRAGMAS}; {busy}"))).await?;
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    Ok(pool)
}

/// See [`super::engine::Engine::text_catch_up`]: the rows queued in `object_search_queue`
/// by the transaction's writes go into both text indexes in the order they were queued (an
/// id removed and then used again ends indexed once, with its new text), and the queue is
/// emptied. FTS5 reads a NULL in its command column as a plain insert. Writing the indexes
/// once per transaction, rather than in each write's savepoint, lets a group of writes
/// share one new index segment (see the migration `search_deferred`).
pub const APPLY_TEXT_QUEUE: &str = "\
    INSERT INTO object_text (object_text, rowid, body) \
    SELECT CASE WHEN gone = 1 THEN 'delete' END, id, body FROM object_search_queue ORDER BY seq; \
    INSERT INTO object_words (object_words, rowid, body) \
    SELECT CASE WHEN gone = 1 THEN 'delete' END, id, body FROM object_search_queue ORDER BY seq; \
    DELETE FROM object_search_queue";

/// See [`super::engine::Engine::json_object`]: `pairs` are `'name', expr, ...`.
pub fn json_object(pairs: &str) -> String {
    format!("json_object({pairs})")
}

/// See [`super::engine::Engine::json_rows`]. The array stays JSON where it is nested in
/// another JSON function (the bundled SQLite keeps a value's JSON subtype through a scalar
/// subquery), so it is neither parsed again nor quoted as a string there.
pub fn json_rows(columns: &[&str], from_where: &str, order: &str) -> String {
    let list = columns.join(", ");
    let item = if columns.len() == 1 { list.clone() } else { format!("json_array({list})") };
    format!("(SELECT json_group_array({item}) FROM (SELECT {list} FROM {from_where} ORDER BY {order}))")
}

/// See [`super::engine::Engine::id_set`]: the ids as a JSON array, read by `json_each`.
pub fn id_set(sql: &mut Sql, ids: &[i64]) {
    sql.push("(SELECT value FROM json_each(").str(&joined(ids, '[', ']')).push("))");
}

/// An FTS5 phrase query matching `text` literally.
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// See [`super::engine::Engine::text_source`].
pub fn text_source(sql: &mut Sql, needle: &str) -> &'static str {
    sql.push("SELECT o.id AS id, o.id AS k FROM object_text d CROSS JOIN objects o ON o.id = d.rowid");
    sql.push(" WHERE object_text MATCH ").str(&fts_phrase(needle));
    "d.rowid"
}

/// See [`super::engine::Engine::word_source`].
pub fn word_source(sql: &mut Sql, word: &str) -> &'static str {
    sql.push("SELECT o.id AS id, o.id AS k FROM object_words d CROSS JOIN objects o ON o.id = d.rowid");
    sql.push(" WHERE object_words MATCH ").str(&fts_phrase(word));
    "d.rowid"
}

/// See [`super::engine::Engine::text_filter`].
pub fn text_filter(sql: &mut Sql, needle: &str) {
    if needle.chars().count() >= 3 {
        // The trigram index answers needles of three characters or more.
        sql.push("o.id IN (SELECT rowid FROM object_text WHERE object_text MATCH ").str(&fts_phrase(needle));
        sql.push(")");
    } else {
        // Shorter ones are rare and scan the (indexed) text table.
        sql.push("o.id IN (SELECT id FROM object_search WHERE body LIKE ")
            .str(&like_pattern(needle))
            .push(" ESCAPE '\\')");
    }
}

/// See [`super::engine::Engine::word_filter`].
pub fn word_filter(sql: &mut Sql, word: &str) {
    sql.push("o.id IN (SELECT rowid FROM object_words WHERE object_words MATCH ").str(&fts_phrase(word));
    sql.push(")");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_double_quotes() {
        assert_eq!(fts_phrase("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
