//! The PostgreSQL engine: one database shared by several nodes.
//!
//! Writers of different boxes run in parallel; writers of one box queue on the box row,
//! which the modseq bump (the first statement of every write) locks until the commit, so
//! the box's lastModSeq stays unique and increasing across every node. Text columns use the
//! "C" collation, so ordering and `lower()` are byte- and ASCII-based as on SQLite. Text
//! search runs on `object_search`'s generated columns: `folded` (lower-cased, Unicode) for
//! substrings and `words` (folded, accents removed, words separated by one space) for whole
//! words, both under trigram (`pg_trgm`) indexes.

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection};

use super::sql::{Sql, joined, like_pattern};
use crate::config::StorageSettings;
use crate::error::{Error, Result};

/// Open a pool on `url` with the configured size, statement timeout and connect timeout.
/// One connection is made first, so that a server that cannot be reached (or refuses the
/// credentials) stops the start with its own error; later connections are made as needed,
/// and a database that went away is reconnected to without a restart.
pub async fn connect(url: &str, settings: &StorageSettings) -> Result<AnyPool> {
    let pg = &settings.postgres;
    let acquire = Duration::from_secs(pg.acquire_timeout_secs.max(1));
    let unreachable = |e: String| Error::Unavailable {
        what: format!("storage.database_url: PostgreSQL at {} cannot be used: {e}", crate::config::redact_url(url)),
    };
    match tokio::time::timeout(acquire, sqlx::AnyConnection::connect(url)).await {
        Ok(Ok(conn)) => conn.close().await.map_err(|e| unreachable(e.to_string()))?,
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable(format!("no answer within {} s", acquire.as_secs()))),
    }
    let timeout_ms = pg.statement_timeout_ms;
    let pool = AnyPoolOptions::new()
        .max_connections(pg.max_connections.max(1))
        .min_connections(0)
        .acquire_timeout(acquire)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                let set = format!("SET statement_timeout = {timeout_ms}");
                sqlx::Executor::execute(&mut *conn, sqlx::AssertSqlSafe(set)).await?;
                Ok(())
            })
        })
        .connect_lazy(url)
        .map_err(|e| unreachable(e.to_string()))?;
    Ok(pool)
}

/// See [`super::engine::Engine::json_object`]: `pairs` are `'name', expr, ...`.
pub fn json_object(pairs: &str) -> String {
    format!("CAST(json_build_object({pairs}) AS TEXT)")
}

/// See [`super::engine::Engine::json_rows`].
pub fn json_rows(columns: &[&str], from_where: &str, order: &str) -> String {
    let list = columns.join(", ");
    let item = if columns.len() == 1 { list } else { format!("json_build_array({list})") };
    format!("(SELECT coalesce(json_agg({item} ORDER BY {order}), '[]'::json) FROM {from_where})")
}

/// See [`super::engine::Engine::id_set`]: the ids as an array literal, cast and unnested.
pub fn id_set(sql: &mut Sql, ids: &[i64]) {
    sql.push("(SELECT unnest(CAST(").str(&joined(ids, '{', '}')).push(" AS bigint[])))");
}

/// `LIKE` pattern for text containing `needle`, folded as `object_search.folded` is.
fn text_pattern(sql: &mut Sql, needle: &str) {
    sql.push("nms_fold(").str(&like_pattern(needle)).push(") ESCAPE '\\'");
}

/// `LIKE` pattern for text holding the words of `word` in sequence, normalized as
/// `object_search.words` is.
fn word_pattern(sql: &mut Sql, word: &str) {
    sql.push("'%' || nms_words(").str(word).push(") || '%'");
}

/// See [`super::engine::Engine::text_source`].
pub fn text_source(sql: &mut Sql, needle: &str) -> &'static str {
    sql.push("SELECT o.id AS id, o.id AS k FROM object_search d JOIN objects o ON o.id = d.id");
    sql.push(" WHERE d.folded LIKE ");
    text_pattern(sql, needle);
    "d.id"
}

/// See [`super::engine::Engine::word_source`].
pub fn word_source(sql: &mut Sql, word: &str) -> &'static str {
    sql.push("SELECT o.id AS id, o.id AS k FROM object_search d JOIN objects o ON o.id = d.id");
    sql.push(" WHERE d.words LIKE ");
    word_pattern(sql, word);
    "d.id"
}

/// See [`super::engine::Engine::text_filter`].
pub fn text_filter(sql: &mut Sql, needle: &str) {
    sql.push("o.id IN (SELECT id FROM object_search WHERE folded LIKE ");
    text_pattern(sql, needle);
    sql.push(")");
}

/// See [`super::engine::Engine::word_filter`].
pub fn word_filter(sql: &mut Sql, word: &str) {
    sql.push("o.id IN (SELECT id FROM object_search WHERE words LIKE ");
    word_pattern(sql, word);
    sql.push(")");
}
