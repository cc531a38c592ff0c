//! The SQLite writer's connection, run on the calling thread.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands it every statement
//! and every row: two thread wake-ups per statement, a dozen statements per write, and
//! each wake-up of an idle CPU costs more than the statement. The one connection that
//! writes (see [`group`](super::group)) runs instead on the thread of the write that
//! holds it: a statement is a call, as in any embedded database. Only the writer's
//! connection does so; reads keep sqlx's pool, whose long pages would otherwise hold up
//! the threads that serve requests.
//!
//! The store's statements reach it through the same `sqlx` calls as everywhere else
//! (`query(..).bind(..).execute(..)`): [`Direct`] answers with sqlx's own `Any` rows, typed
//! as sqlx's SQLite driver types them (by the value's storage class), and with errors
//! that carry the same codes and kinds, so no rule of the store sees which one ran it.
//! Where it differs, it differs where the store never looks: a statement that changes no
//! row counts none (sqlx's driver shows the connection's last count), a NULL comes typed
//! as NULL (not as its column's declared type), text that is not UTF-8 is read lossily
//! (the store writes only UTF-8), and a placeholder with no value is an error (sqlx's
//! driver binds NULL there).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use either::Either;
use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags, Statement, ffi};
use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::ext::ustr::UStr;

/// Statements kept prepared, least recently used dropped first: the write paths' fixed
/// statements, with room for those whose text varies (lists of ids written into them).
const CACHED_STATEMENTS: usize = 256;

/// The write-ahead log's pages past which a commit on this connection checkpoints it
/// itself, on the thread of the write. Checkpoints are a task's of their own (see
/// [`group`](super::group)); this is only the bound should that task fall behind, or
/// readers keep it from finishing (64 MiB of log at 4 KiB pages).
const BACKSTOP_CHECKPOINT_PAGES: i64 = 16_384;

/// What one statement gives: its rows, then its result.
pub(super) type Step = Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>;

/// A SQLite connection that runs statements on the calling thread.
pub(super) struct Direct {
    conn: Connection,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct").field("path", &self.conn.path()).finish()
    }
}

impl Direct {
    /// Open the database at `url` (`sqlite://path`, as the pool's) with the pool's
    /// settings (see [`crate::store::sqlite::connect`]).
    pub(super) fn open(url: &str) -> Result<Self, sqlx::Error> {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(options.get_filename(), flags).map_err(database)?;
        conn.set_prepared_statement_cache_capacity(CACHED_STATEMENTS);
        conn.busy_timeout(crate::store::sqlite::BUSY_TIMEOUT).map_err(database)?;
        conn.execute_batch(crate::store::sqlite::PRAGMAS).map_err(database)?;
        conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_CHECKPOINT_PAGES).map_err(database)?;
        Ok(Self { conn })
    }

    /// Run `sql` with `arguments` (numbered `$1, $2, ...`): every row (at most `limit`),
    /// then the result. Without arguments `sql` may hold several statements. A statement
    /// that is not `persistent` is planned for this run only (as sqlx does), not kept.
    pub(super) fn run(
        &mut self,
        sql: &str,
        arguments: Option<AnyArguments>,
        persistent: bool,
        limit: Option<usize>,
    ) -> Vec<Step> {
        let started = Instant::now();
        let values = arguments.map(|a| a.values.0).unwrap_or_default();
        let mut steps = Vec::new();
        let ran = match several(sql) {
            false => self.one(sql, &values, persistent, limit, &mut steps),
            true => Err(rusqlite::Error::MultipleStatement),
        };
        let ran = match ran {
            Err(rusqlite::Error::MultipleStatement) => self.each(sql, &values, limit, &mut steps),
            ran => ran,
        };
        if let Err(e) = ran {
            steps.push(Err(database(e)));
        }
        log(sql, &steps, started.elapsed());
        steps
    }

    /// Run the one statement `sql`, kept prepared if `persistent`.
    fn one(
        &mut self,
        sql: &str,
        values: &[AnyValueKind],
        persistent: bool,
        limit: Option<usize>,
        steps: &mut Vec<Step>,
    ) -> rusqlite::Result<()> {
        if persistent {
            step(&self.conn, &mut *self.conn.prepare_cached(sql)?, values, limit, steps)
        } else {
            step(&self.conn, &mut self.conn.prepare(sql)?, values, limit, steps)
        }
    }

    /// Run the statements of `sql` one after the other, each prepared once the one before
    /// it has run (it may create what the next one uses).
    fn each(
        &mut self,
        sql: &str,
        values: &[AnyValueKind],
        limit: Option<usize>,
        steps: &mut Vec<Step>,
    ) -> rusqlite::Result<()> {
        let mut batch = rusqlite::Batch::new(&self.conn, sql);
        while let Some(mut stmt) = batch.next()? {
            step(&self.conn, &mut stmt, values, limit, steps)?;
            let returned = rows_in(steps);
            if limit.is_some_and(|l| returned >= l) {
                // As sqlx's driver: the statements after the last row asked for do not run.
                break;
            }
        }
        Ok(())
    }
}

/// Whether `sql` holds more than one statement: a `;` outside quotes with more after it.
/// A single statement taken for several still runs right (one by one); several taken for
/// one are refused by SQLite's check of the rest when preparing the first, and then run
/// one by one, unless that check fails on what the first would create (the store's
/// statements hold no `;` in comments, where this could happen).
fn several(sql: &str) -> bool {
    let mut quote = None;
    for (i, c) in sql.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, ';') => return !sql[i + 1..].trim().is_empty(),
            _ => {}
        }
    }
    false
}

/// The rows among `steps`.
fn rows_in(steps: &[Step]) -> usize {
    steps.iter().filter(|s| matches!(s, Ok(Either::Right(_)))).count()
}

/// Bind `values` to `stmt` (`$N` takes the N-th), run it, and add its rows (at most
/// `limit` in all) and its result to `steps`.
fn step(
    conn: &Connection,
    stmt: &mut Statement<'_>,
    values: &[AnyValueKind],
    limit: Option<usize>,
    steps: &mut Vec<Step>,
) -> rusqlite::Result<()> {
    for i in 1..=stmt.parameter_count() {
        let n = stmt.parameter_name(i).and_then(|name| name[1..].parse::<usize>().ok()).unwrap_or(i);
        let value = values.get(n - 1).ok_or(rusqlite::Error::InvalidParameterCount(n, values.len()))?;
        stmt.raw_bind_parameter(i, Bound(value))?;
    }
    // Rows changed by this statement itself: by an INSERT, UPDATE or DELETE, not by the
    // triggers it set off. Other statements leave the connection's count as it was (sqlx's
    // driver gives that stale count; the store reads counts of changes only).
    let before = conn.total_changes();
    let columns: Vec<AnyColumn> = (0..stmt.column_count())
        .map(|ordinal| AnyColumn {
            ordinal,
            name: UStr::new(stmt.column_name(ordinal).unwrap_or_default()),
            type_info: AnyTypeInfo { kind: AnyTypeInfoKind::Null },
        })
        .collect();
    let names: Arc<sqlx_core::HashMap<UStr, usize>> =
        Arc::new(columns.iter().map(|c| (c.name.clone(), c.ordinal)).collect());
    let mut returned = rows_in(steps);
    let mut rows = stmt.raw_query();
    while limit.is_none_or(|l| returned < l) {
        let Some(row) = rows.next()? else { break };
        let mut values = Vec::with_capacity(columns.len());
        let mut cols = columns.clone();
        for (i, col) in cols.iter_mut().enumerate() {
            let kind = value(row.get_ref(i)?);
            col.type_info = AnyTypeInfo { kind: type_of(&kind) };
            values.push(AnyValue { kind });
        }
        steps.push(Ok(Either::Right(AnyRow { column_names: names.clone(), columns: cols, values })));
        returned += 1;
    }
    drop(rows);
    let changed = if conn.total_changes() == before { 0 } else { conn.changes() };
    steps.push(Ok(Either::Left(result(changed))));
    Ok(())
}

/// Statements slower than this are logged as warnings, as sqlx logs its own.
const SLOW: Duration = Duration::from_secs(1);

/// Log a statement as sqlx logs the statements of its connections (target `sqlx::query`,
/// field `db.statement`): one setting (`RUST_LOG=sqlx::query=debug`) shows every statement
/// the store runs, whichever connection ran it.
fn log(sql: &str, steps: &[Step], elapsed: Duration) {
    use tracing::Level;
    let slow = elapsed >= SLOW;
    if !slow && !tracing::enabled!(target: "sqlx::query", Level::DEBUG) {
        return;
    }
    let rows_returned = rows_in(steps);
    let rows_affected = match steps.last() {
        Some(Ok(Either::Left(r))) => r.rows_affected,
        _ => 0,
    };
    let summary = sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
    let summary = summary.as_str();
    let elapsed_secs = elapsed.as_secs_f64();
    if slow {
        tracing::event!(target: "sqlx::query", Level::WARN, summary, db.statement = sql, rows_affected,
            rows_returned, ?elapsed, elapsed_secs, slow_threshold = ?SLOW);
    } else {
        tracing::event!(target: "sqlx::query", Level::DEBUG, summary, db.statement = sql, rows_affected,
            rows_returned, ?elapsed, elapsed_secs);
    }
}

fn result(rows_affected: u64) -> AnyQueryResult {
    AnyQueryResult { rows_affected, last_insert_id: None }
}

/// A value read, as sqlx's SQLite driver gives it to the `Any` driver: by its storage class.
fn value(v: ValueRef<'_>) -> AnyValueKind {
    match v {
        ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        ValueRef::Integer(i) => AnyValueKind::BigInt(i),
        ValueRef::Real(f) => AnyValueKind::Double(f),
        ValueRef::Text(t) => AnyValueKind::Text(Arc::new(String::from_utf8_lossy(t).into_owned())),
        ValueRef::Blob(b) => AnyValueKind::Blob(Arc::new(b.to_vec())),
    }
}

fn type_of(v: &AnyValueKind) -> AnyTypeInfoKind {
    match v {
        AnyValueKind::BigInt(_) => AnyTypeInfoKind::BigInt,
        AnyValueKind::Double(_) => AnyTypeInfoKind::Double,
        AnyValueKind::Text(_) => AnyTypeInfoKind::Text,
        AnyValueKind::Blob(_) => AnyTypeInfoKind::Blob,
        _ => AnyTypeInfoKind::Null,
    }
}

/// A bound value, as sqlx's SQLite driver binds it.
struct Bound<'a>(&'a AnyValueKind);

impl rusqlite::ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            AnyValueKind::Null(_) => ToSqlOutput::Owned(Value::Null),
            AnyValueKind::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
            AnyValueKind::SmallInt(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
            AnyValueKind::Integer(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
            AnyValueKind::BigInt(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            AnyValueKind::Real(r) => ToSqlOutput::Owned(Value::Real(f64::from(*r))),
            AnyValueKind::Double(d) => ToSqlOutput::Owned(Value::Real(*d)),
            AnyValueKind::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            AnyValueKind::TextSlice(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            AnyValueKind::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            other => {
                let e = format!("a value of a kind SQLite does not take: {other:?}");
                return Err(rusqlite::Error::ToSqlConversionFailure(e.into()));
            }
        })
    }
}

/// An error of the database, as sqlx's SQLite driver tells it: the extended result code.
#[derive(Debug)]
struct SqliteFailure {
    code: i32,
    message: String,
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => ErrorKind::UniqueViolation,
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn database(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(f, message) => sqlx::Error::Database(Box::new(SqliteFailure {
            code: f.extended_code,
            message: message.unwrap_or_else(|| f.to_string()),
        })),
        // A statement SQLite could not prepare, with where in it.
        rusqlite::Error::SqlInputError { error, msg, .. } => {
            sqlx::Error::Database(Box::new(SqliteFailure { code: error.extended_code, message: msg }))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sqlx::{AnyPool, Executor, Row};

    use super::*;

    /// What the store can read of a row: each column as each type it decodes.
    fn decoded(row: &AnyRow) -> Vec<String> {
        (0..row.len())
            .map(|i| {
                format!(
                    "{:?} {:?} {:?} {:?} {:?}",
                    row.try_get::<Option<i64>, _>(i).map_err(|_| ()),
                    row.try_get::<Option<i32>, _>(i).map_err(|_| ()),
                    row.try_get::<Option<String>, _>(i).map_err(|_| ()),
                    row.try_get::<Option<f64>, _>(i).map_err(|_| ()),
                    row.try_get::<Option<Vec<u8>>, _>(i).map_err(|_| ()),
                )
            })
            .collect()
    }

    /// What a run gives: its rows as decoded, its count of changed rows, or its error's
    /// code and kind.
    fn outcome(steps: Vec<std::result::Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>) -> String {
        let mut out = Vec::new();
        for step in steps {
            match step {
                Ok(Either::Left(r)) => out.push(format!("changed {}", r.rows_affected)),
                Ok(Either::Right(row)) => out.push(format!("row {:?}", decoded(&row))),
                Err(sqlx::Error::Database(d)) => out.push(format!("error {:?} {:?}", d.code(), d.kind())),
                Err(e) => out.push(format!("error {e}")),
            }
        }
        out.join("\n")
    }

    async fn via_pool(pool: &AnyPool, sql: &str, binds: &[AnyValueKind]) -> String {
        let mut q = super::super::query(sql);
        for b in binds {
            q = match b {
                AnyValueKind::BigInt(i) => q.bind(*i),
                AnyValueKind::Text(t) => q.bind(t.to_string()),
                AnyValueKind::Double(d) => q.bind(*d),
                AnyValueKind::Blob(b) => q.bind(b.to_vec()),
                _ => q.bind(None::<i64>),
            };
        }
        let mut conn = pool.acquire().await.unwrap();
        let steps: Vec<_> = futures_util::StreamExt::collect(conn.fetch_many(q)).await;
        // sqlx gives one result per statement: the store reads the last.
        outcome(steps)
    }

    fn via_direct(direct: &mut Direct, sql: &str, binds: &[AnyValueKind]) -> String {
        let mut args = AnyArguments::default();
        args.values.0.extend(binds.iter().cloned());
        outcome(direct.run(&super::super::numbered(sql), Some(args), true, None))
    }

    #[tokio::test]
    async fn statements_answer_as_sqlx_s_own_sqlite_driver_answers_them() {
        sqlx::any::install_default_drivers();
        // Two databases alike: the cases run on one through sqlx, on the other directly.
        let dir = tempfile::tempdir().unwrap();
        let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
        let schema = "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE); \
             CREATE TABLE t (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p (id), n INTEGER, s TEXT, \
             r REAL, b BLOB, flag INTEGER, c INTEGER CHECK (c >= 0)); \
             CREATE TABLE k (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p (id) ON DELETE CASCADE); \
             CREATE TABLE seen (v INTEGER); \
             CREATE TRIGGER t_seen AFTER UPDATE ON t BEGIN INSERT INTO seen VALUES (new.id); END";
        let pool = crate::store::sqlite::connect(&url("a.db")).await.unwrap();
        pool.execute(schema).await.unwrap();
        crate::store::sqlite::connect(&url("b.db")).await.unwrap().execute(schema).await.unwrap();
        let mut direct = Direct::open(&url("b.db")).unwrap();
        let int = AnyValueKind::BigInt;
        let text = |s: &str| AnyValueKind::Text(Arc::new(s.to_string()));
        let cases: Vec<(&str, Vec<AnyValueKind>)> = vec![
            ("INSERT INTO p (id, name) VALUES (?, ?)", vec![int(1), text("one")]),
            // A unique name, a primary key, a NOT NULL, a foreign key, a CHECK.
            ("INSERT INTO p (id, name) VALUES (?, ?)", vec![int(2), text("one")]),
            ("INSERT INTO p (id, name) VALUES (?, ?)", vec![int(1), text("uno")]),
            ("INSERT INTO p (id, name) VALUES (?, ?)", vec![int(3), AnyValueKind::Null(AnyTypeInfoKind::Text)]),
            ("INSERT INTO t (id, p) VALUES (?, ?)", vec![int(1), int(99)]),
            ("INSERT INTO t (id, c) VALUES (?, ?)", vec![int(1), int(-1)]),
            (
                "INSERT INTO t (id, p, n, s, r, b, flag) VALUES (?, 1, ?, ?, ?, ?, 1) RETURNING id, n, s, r, b, flag, p",
                vec![
                    int(10),
                    int(i64::MAX),
                    text("é \"x\""),
                    AnyValueKind::Double(1.5),
                    AnyValueKind::Blob(Arc::new(vec![0, 1, 255])),
                ],
            ),
            (
                "INSERT INTO t (id, n, c) VALUES (?, ?, 0), (?, ?, 1)",
                vec![int(11), int(-3), int(12), int(2_147_483_648)],
            ),
            ("SELECT n, s, r, b, flag, NULL, 1 + 1, 'a' || s, json_array(n, s), c FROM t ORDER BY id", vec![]),
            // Numbered out of order, and used twice.
            ("SELECT ?2, ?1, ?2 || ?1", vec![text("a"), text("b")]),
            ("UPDATE t SET n = n - 1 WHERE id >= ?", vec![int(0)]),
            ("SELECT id FROM t WHERE id > ?", vec![int(100)]),
            ("DELETE FROM t WHERE id = ?", vec![int(10)]),
            ("SELECT count(*), sum(r), group_concat(s) FROM t", vec![]),
            // Counts of the statement's own rows: not a cascade's, a trigger's or a
            // conflict's.
            ("INSERT INTO p (id, name) VALUES (5, 'five'), (6, 'six')", vec![]),
            ("INSERT INTO k (id, p) VALUES (1, 5), (2, 5), (3, 6)", vec![]),
            ("DELETE FROM p WHERE id = ?", vec![int(5)]),
            ("SELECT count(*) FROM k", vec![]),
            ("INSERT INTO p (id, name) VALUES (?, ?) ON CONFLICT DO NOTHING", vec![int(6), text("six")]),
            ("INSERT OR REPLACE INTO p (id, name) VALUES (?, ?)", vec![int(7), text("six")]),
            ("UPDATE t SET n = 7 WHERE id >= ?", vec![int(0)]),
            ("SELECT count(*) FROM seen", vec![]),
            // Several statements, each using what the one before made; a `;` in a literal.
            ("CREATE TABLE u (v TEXT); INSERT INTO u VALUES ('a;b'); SELECT v FROM u", vec![]),
            ("INSERT INTO u VALUES (?); SELECT count(*) FROM u WHERE v <> ?1", vec![text("c")]),
            ("SELECT nope FROM t", vec![]),
        ];
        // Counted directly: rows changed by the statement itself, none by any other.
        assert_eq!(
            via_direct(&mut direct, "CREATE TABLE w (v); INSERT INTO w VALUES (1), (2); SELECT count(*) FROM w", &[]),
            "changed 0\nchanged 2\nrow [\"Ok(Some(2)) Ok(Some(2)) Err(()) Err(()) Err(())\"]\nchanged 0"
        );
        for (sql, binds) in cases {
            let mut sqlx_says = via_pool(&pool, sql, &binds).await;
            let mut direct_says = via_direct(&mut direct, sql, &binds);
            if sql.starts_with("SELECT") || sql.contains(';') {
                // What sqlx counts after a statement that changes no row is the count of
                // whichever statement its connection ran last that did: rows are compared.
                for says in [&mut sqlx_says, &mut direct_says] {
                    *says = says.lines().filter(|l| !l.starts_with("changed")).collect::<Vec<_>>().join("\n");
                }
            }
            assert_eq!(direct_says, sqlx_says, "{sql}");
        }
        // The first row only (sqlx's `fetch_optional`): of a change with RETURNING, which
        // changes every row all the same, and of a query.
        for (sql, binds) in [
            ("UPDATE t SET n = n + 1 WHERE id >= ? RETURNING id, n", vec![int(0)]),
            ("SELECT id FROM t WHERE id >= ? ORDER BY id", vec![int(0)]),
            ("SELECT n FROM t ORDER BY id", vec![]),
        ] {
            let mut q = super::super::query(sql);
            for b in &binds {
                q = q.bind(match b {
                    AnyValueKind::BigInt(i) => *i,
                    _ => unreachable!(),
                });
            }
            let sqlx_says = q.fetch_optional(&pool).await.unwrap().map(|r| decoded(&r));
            let mut args = AnyArguments::default();
            args.values.0.extend(binds.iter().cloned());
            let direct_says =
                direct.run(&super::super::numbered(sql), Some(args), true, Some(1)).into_iter().find_map(|s| match s {
                    Ok(Either::Right(row)) => Some(decoded(&row)),
                    _ => None,
                });
            assert_eq!(direct_says, sqlx_says, "{sql}");
        }
    }
}
