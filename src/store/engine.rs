//! The SQL engines the store runs on, and what differs between them.
//!
//! The store's rules are written once ([`super::sql`]); an engine contributes only
//! primitives: how to connect and migrate, how a write transaction starts and whether
//! writers of one process queue for a single writer slot, a few statement fragments (JSON
//! snapshots, the greater of two values, case-insensitive matching) and text search.
//! Each engine's module ([`super::sqlite`], [`super::postgres`]) holds its part.

use sqlx::AnyPool;

use super::listen::Listener;
use super::sql::Sql;
use super::{postgres, sqlite};
use crate::config::StorageSettings;
use crate::error::{Error, Result};

/// What a lock of [`Engine::lock`] or [`Engine::try_lock`] keeps to one transaction at a
/// time, whichever node runs it.
#[derive(Clone, Copy, Debug)]
pub enum Lock<'a> {
    /// Tombstone pruning: one node prunes, the others skip the round.
    Pruning,
    /// Purging expired channels and subscriptions: one node purges, the others skip.
    Purging,
    /// The bookkeeping of one blob key: a pin for an upload and the start of a deletion
    /// must see each other, or an upload could land on a key being deleted.
    Blob(&'a str),
    /// The subscriptions of one box: counting them against the box's limit and adding one
    /// are one step.
    Subscriptions(i64),
}

impl Lock<'_> {
    /// The lock's number: its kind in the high half, for a blob a hash of its key in the
    /// low half (a shared hash only makes two keys wait for each other).
    pub fn key(self) -> i64 {
        match self {
            Self::Pruning => 1 << 32,
            Self::Blob(key) => {
                use sha2::Digest;
                let h = sha2::Sha256::digest(key.as_bytes());
                (2 << 32) | i64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]))
            }
            Self::Subscriptions(box_id) => (3 << 32) | (box_id & 0xffff_ffff),
            Self::Purging => 4 << 32,
        }
    }
}

/// An SQL engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// SQLite: one file, one writer at a time; the embedded default.
    Sqlite,
    /// PostgreSQL: many nodes, writers of different boxes in parallel.
    Postgres,
}

impl Engine {
    /// The engine a database URL names.
    pub fn of_url(url: &str) -> Result<Self> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            other => Err(Error::internal(format!(
                "storage.database_url: unsupported scheme {other:?} (use sqlite:// or postgres://)"
            ))),
        }
    }

    /// A pool of connections to `url`.
    pub async fn connect(self, url: &str, settings: &StorageSettings) -> Result<AnyPool> {
        sqlx::any::install_default_drivers();
        match self {
            Self::Sqlite => sqlite::connect(url).await,
            Self::Postgres => postgres::connect(url, settings).await,
        }
    }

    /// Apply the engine's pending migrations.
    pub async fn migrate(self, pool: &AnyPool) -> Result<()> {
        match self {
            Self::Sqlite => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Self::Postgres => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Whether several nodes may serve one database of this engine. What they must agree
    /// on (the key sealing cursors and tokens) then comes from the configuration every
    /// node reads, never from one node's data dir.
    pub fn shared_by_nodes(self) -> bool {
        self == Self::Postgres
    }

    /// The feed of what other processes commit to the database at `url`, for the engines
    /// that have one (PostgreSQL). `None`: nothing tells this process of other processes'
    /// writes (SQLite serves one node; the command line's writes are found by re-reading).
    pub fn listener(self, url: &str) -> Option<Listener> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some(Listener::new(url)),
        }
    }

    /// A statement answering a number that changes whenever another connection commits
    /// to the database, for engines without an announcement feed (SQLite's
    /// `PRAGMA data_version`); `None` where commits are announced instead.
    pub fn commit_counter(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => Some("PRAGMA data_version"),
            Self::Postgres => None,
        }
    }

    /// Whether the engine takes one writer at a time (writers of this process then queue
    /// in order instead of contending for the database's lock).
    pub fn single_writer(self) -> bool {
        self == Self::Sqlite
    }

    /// The statement that opens a write transaction. On SQLite it takes the write lock at
    /// once; on PostgreSQL the box row's lock, taken by the modseq bump, serializes writers
    /// of one box.
    pub fn begin_write(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            // Pinned, whatever the server's default: the box row's lock is what serializes
            // writers of a box, and stricter levels would fail them instead of queueing.
            Self::Postgres => "BEGIN ISOLATION LEVEL READ COMMITTED",
        }
    }

    /// What brings the text indexes up to date with the writes of the transaction it runs
    /// in, where they lag behind them: on SQLite they take in the rows queued for them
    /// ([`sqlite::APPLY_TEXT_QUEUE`]), which the group writer does just before every
    /// commit, and which must happen before a text search inside a write; on PostgreSQL
    /// they never lag.
    pub fn text_catch_up(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => Some(sqlite::APPLY_TEXT_QUEUE),
            Self::Postgres => None,
        }
    }

    /// The statement that, inside a write transaction, waits for the lock its one
    /// parameter names (a [`Lock`] key) and holds it until the transaction ends; `None`
    /// where a write transaction already excludes every other writer (SQLite).
    pub fn lock(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            // count(*) makes the lock be taken, and answers a value every driver reads.
            Self::Postgres => Some("SELECT count(*) FROM (SELECT pg_advisory_xact_lock(?)) l"),
        }
    }

    /// The same without waiting: it answers 1 when the lock is now held until the
    /// transaction ends, 0 when another transaction holds it.
    pub fn try_lock(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("SELECT CAST(CASE WHEN pg_try_advisory_xact_lock(?) THEN 1 ELSE 0 END AS BIGINT)"),
        }
    }

    /// The statement that opens a transaction of several reads that must see one state.
    pub fn begin_read(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN",
            Self::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        }
    }

    /// Whether a search page's statement may be kept prepared with one plan for every value.
    /// PostgreSQL's plan for a kept statement does not know how selective a value is (a rare
    /// word and a common one get the same plan), so its pages are planned per request.
    pub fn cache_search_plans(self) -> bool {
        self == Self::Sqlite
    }

    /// The function giving the greater of two values.
    pub fn greatest(self) -> &'static str {
        match self {
            Self::Sqlite => "max",
            Self::Postgres => "greatest",
        }
    }

    /// Appended to a `SELECT` over the table aliased `alias` that picks rows to claim: rows
    /// another transaction holds are skipped instead of waited for (SQLite has one writer,
    /// so nothing to add).
    pub fn skip_locked(self, alias: &str) -> String {
        match self {
            Self::Sqlite => String::new(),
            Self::Postgres => format!(" FOR UPDATE OF {alias} SKIP LOCKED"),
        }
    }

    /// The join that reads its left table first, in that table's index order (a page read
    /// from one index stops after `limit + 1` rows): SQLite's planner is told so with
    /// `CROSS JOIN`; PostgreSQL's follows the `ORDER BY`.
    pub fn ordered_join(self) -> &'static str {
        match self {
            Self::Sqlite => "CROSS JOIN",
            Self::Postgres => "JOIN",
        }
    }

    /// The operator matching a `LIKE` pattern with ASCII letters in either case.
    pub fn like_ascii_ci(self) -> &'static str {
        match self {
            Self::Sqlite => "LIKE",
            Self::Postgres => "ILIKE",
        }
    }

    /// SQL giving the JSON text of an object whose `fields` are (name, SQL expression: a
    /// scalar, or JSON from [`Engine::json_rows`]).
    pub fn json_object(self, fields: &[(&str, String)]) -> String {
        let pairs: Vec<String> = fields.iter().map(|(name, expr)| format!("'{name}', {expr}")).collect();
        match self {
            Self::Sqlite => sqlite::json_object(&pairs.join(", ")),
            Self::Postgres => postgres::json_object(&pairs.join(", ")),
        }
    }

    /// SQL giving a JSON array with one item per row of `SELECT columns FROM from_where ORDER
    /// BY order`: the value itself for one column, an array of the values for several; `[]`
    /// for no row.
    pub fn json_rows(self, columns: &[&str], from_where: &str, order: &str) -> String {
        match self {
            Self::Sqlite => sqlite::json_rows(columns, from_where, order),
            Self::Postgres => postgres::json_rows(columns, from_where, order),
        }
    }

    /// SQL giving a JSON array with one array of `items` per row of `FROM from_where`, in no
    /// particular order; `[]` for no row. An item that is itself JSON (from
    /// [`Engine::json_rows`]) is nested as JSON.
    pub fn json_items(self, items: &[&str], from_where: &str) -> String {
        let list = items.join(", ");
        match self {
            Self::Sqlite => format!("(SELECT json_group_array(json_array({list})) FROM {from_where})"),
            Self::Postgres => {
                format!("(SELECT coalesce(json_agg(json_build_array({list})), '[]'::json) FROM {from_where})")
            }
        }
    }

    /// The shortest substring the text index answers from the index itself (a trigram
    /// index needs three characters); a shorter one is not read in index order.
    pub fn text_index_min_chars(self) -> usize {
        3
    }

    /// Append to `sql` a source of `(id, k)` rows of box objects whose searchable text
    /// contains `needle` (any case), keyed in object-id order; returns the key column.
    pub fn text_source(self, sql: &mut Sql, needle: &str) -> &'static str {
        match self {
            Self::Sqlite => sqlite::text_source(sql, needle),
            Self::Postgres => postgres::text_source(sql, needle),
        }
    }

    /// The same for text holding `word` as whole words.
    pub fn word_source(self, sql: &mut Sql, word: &str) -> &'static str {
        match self {
            Self::Sqlite => sqlite::word_source(sql, word),
            Self::Postgres => postgres::word_source(sql, word),
        }
    }

    /// Append to `sql` the set of `ids`, for `x IN <set>`, as one bound value whatever their
    /// number: a statement's text (and its prepared plan) is the same for every count, and
    /// the driver binds one value rather than one per id.
    pub fn id_set(self, sql: &mut Sql, ids: &[i64]) {
        match self {
            Self::Sqlite => sqlite::id_set(sql, ids),
            Self::Postgres => postgres::id_set(sql, ids),
        }
    }

    /// Append to `sql` a predicate: object `o` has searchable text containing `needle`.
    pub fn text_filter(self, sql: &mut Sql, needle: &str) {
        match self {
            Self::Sqlite => sqlite::text_filter(sql, needle),
            Self::Postgres => postgres::text_filter(sql, needle),
        }
    }

    /// Append to `sql` a predicate: object `o` has searchable text holding `word` as whole
    /// words.
    pub fn word_filter(self, sql: &mut Sql, word: &str) {
        match self {
            Self::Sqlite => sqlite::word_filter(sql, word),
            Self::Postgres => postgres::word_filter(sql, word),
        }
    }
}
