//! The SQL store: every storage rule, written once over sqlx's `Any` driver, for each
//! engine ([`Engine`]: SQLite embedded, PostgreSQL for several nodes).
//!
//! What lives here is storage policy: the modseq bumped first in every write, tombstones
//! with their snapshot, subtree rewrites of copy, move and rename, huge-group slicing. The
//! domain's rules on objects leaving their folders come in as a
//! [`DeparturePolicy`](crate::store::DeparturePolicy), answered from [`facts`] inside the
//! write's transaction; no domain rule is written here. What differs between the engines
//! (connecting, locking, text search, JSON, byte lengths) is asked of [`Engine`], whose two
//! modules hold no rule. Statements are written with `?`
//! placeholders; [`numbered`] turns them into `$1, $2, ...`, which both engines read.
//! Runtime queries with `.bind()`: no database is needed to build.

use async_trait::async_trait;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, FromRow, Row, Transaction};

/// Dynamic SQL assembled only from constant fragments (table and column names chosen by
/// code, never by input); every value is bound.
macro_rules! sql {
    ($($t:tt)*) => { format!($($t)*) };
}

mod accounts;
mod blobs;
mod boxes;
mod changes;
mod direct;
mod facts;
mod flags;
mod folders;
mod group;
mod objects;
mod query;
mod search;
mod subscriptions;

use super::*;
use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::model::*;
use crate::store::departures::{Departing, Departure, DeparturePolicy};
use crate::store::engine::{Engine, Lock};
use facts::TxFacts;
use query::{Over, load_folders, load_objects, load_objects_with, page_ids};
pub(crate) use query::{Sql, joined, like_pattern};

/// Where the store's statements run: a transaction's connection, of reads or of a write.
pub trait Conn: Send {
    /// The executor of one statement.
    fn ex(&mut self) -> impl sqlx::Executor<'_, Database = Any>;
}

impl Conn for AnyConnection {
    fn ex(&mut self) -> impl sqlx::Executor<'_, Database = Any> {
        self
    }
}

impl Conn for Transaction<'_, Any> {
    fn ex(&mut self) -> impl sqlx::Executor<'_, Database = Any> {
        &mut **self
    }
}

impl Conn for sqlx::pool::PoolConnection<Any> {
    fn ex(&mut self) -> impl sqlx::Executor<'_, Database = Any> {
        &mut **self
    }
}

impl Conn for Tx<'_> {
    fn ex(&mut self) -> impl sqlx::Executor<'_, Database = Any> {
        self
    }
}

/// A transaction of reads that see one state.
type ReadTx<'a> = Transaction<'a, Any>;
use group::{Tx, Writer};

/// SQL text: the store's statements, constant or assembled from constant fragments.
trait SqlText {
    fn text(&self) -> &str;
}

impl SqlText for &str {
    fn text(&self) -> &str {
        self
    }
}

impl SqlText for String {
    fn text(&self) -> &str {
        self
    }
}

/// `sql` with its `?` placeholders numbered `$1, $2, ...` (`?N` keeps its number), outside
/// quoted strings and identifiers.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut next = 0u32;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                let n = match digits.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => next + 1,
                };
                next = next.max(n);
                out.push('$');
                out.push_str(&n.to_string());
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

fn query(sql: impl SqlText) -> Query<'static, Any, AnyArguments> {
    sqlx::query(AssertSqlSafe(numbered(sql.text())))
}

fn query_as<O>(sql: impl SqlText) -> QueryAs<'static, Any, O, AnyArguments>
where
    O: for<'r> FromRow<'r, AnyRow>,
{
    sqlx::query_as(AssertSqlSafe(numbered(sql.text())))
}

fn query_scalar<O>(sql: impl SqlText) -> QueryScalar<'static, Any, O, AnyArguments>
where
    (O,): for<'r> FromRow<'r, AnyRow>,
{
    sqlx::query_scalar(AssertSqlSafe(numbered(sql.text())))
}

/// The metadata store over one SQL database.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    engine: Engine,
    /// Where the engine has one writer at a time (SQLite), the writes of this process
    /// queue for it in order and are committed in groups (see [`group`]), instead of
    /// polling the file lock; other processes (the CLI) still meet the busy timeout.
    writer: Option<std::sync::Arc<Writer>>,
    /// Every folder path this store computes is checked against these, inside the write.
    folder_limits: FolderLimits,
    /// The connection [`Boxes::committed_elsewhere`] asks, and its last answer.
    watch: std::sync::Arc<tokio::sync::Mutex<Option<(AnyConnection, i64)>>>,
}

/// Internal view of a folder used while resolving parents.
#[derive(Clone, Debug)]
struct FolderKey {
    id: i64,
    public_id: String,
    ancestry: String,
    path: String,
    is_root: bool,
}

impl<'r> FromRow<'r, AnyRow> for FolderKey {
    fn from_row(r: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            public_id: r.try_get("public_id")?,
            ancestry: r.try_get("ancestry")?,
            path: r.try_get("path")?,
            is_root: r.try_get::<i64, _>("is_root")? != 0,
        })
    }
}

const FOLDER_COLUMNS: &str = "f.id, f.public_id, p.public_id AS parent_public_id, f.name, f.is_root, \
     f.path, f.created_at_ms, f.last_mod_seq";

impl SqlStore {
    /// Open the database at `url` (`sqlite://path`, created if needed, or
    /// `postgres://...`), with `settings` for the engines that take them.
    pub async fn connect(url: &str, settings: &crate::config::StorageSettings) -> Result<Self> {
        let engine = Engine::of_url(url)?;
        let pool = engine.connect(url, settings).await?;
        let writer = engine
            .single_writer()
            .then(|| Writer::new(url, pool.clone(), engine.begin_write(), engine.text_catch_up()));
        Ok(Self { pool, engine, writer, folder_limits: FolderLimits::default(), watch: Default::default() })
    }

    /// Bound the folder paths the store makes (none by default).
    pub fn with_folder_limits(mut self, limits: FolderLimits) -> Self {
        self.folder_limits = limits;
        self
    }

    /// A write transaction: a member of the writer's group where the engine has one writer
    /// at a time, a transaction of its own otherwise.
    async fn begin_write(&self) -> Result<Tx<'static>> {
        match &self.writer {
            Some(writer) => writer.join().await,
            None => Tx::own(&self.pool, self.engine.begin_write()).await,
        }
    }

    /// `f` as one write transaction of its own (see [`SqlStore::begin_write`]), committed
    /// when it succeeds.
    async fn write<T>(&self, f: impl AsyncFnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let mut tx = self.begin_write().await?;
        let value = f(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }

    /// A transaction of several reads that see one state.
    async fn begin_read(&self) -> Result<ReadTx<'static>> {
        begin(&self.pool, self.engine.begin_read()).await
    }
}

/// Open a transaction with `statement`, whatever happens to the caller: a request that goes
/// away while `BEGIN` is under way must not leave its connection in the pool inside a
/// transaction nobody owns (the next user's statements would run in it). The opening runs
/// in its own task; if the caller is gone by then, the transaction is dropped there, which
/// rolls it back before the connection is reused.
pub(super) async fn begin(pool: &AnyPool, statement: &'static str) -> Result<ReadTx<'static>> {
    let pool = pool.clone();
    let opening = tokio::spawn(async move { pool.begin_with(statement).await });
    match opening.await {
        Ok(tx) => Ok(tx?),
        Err(e) => Err(Error::internal(format!("opening a transaction: {e}"))),
    }
}

/// Hold `lock` until the transaction ends, waiting for it (engines whose write
/// transactions exclude every other writer need nothing).
async fn lock(engine: Engine, tx: &mut Tx<'_>, lock: Lock<'_>) -> Result<()> {
    if let Some(sql) = engine.lock() {
        query(sql).bind(lock.key()).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Hold `lock` until the transaction ends if nobody else holds it; `false`: someone does.
async fn try_lock(engine: Engine, tx: &mut Tx<'_>, lock: Lock<'_>) -> Result<bool> {
    match engine.try_lock() {
        Some(sql) => Ok(query_scalar::<i64>(sql).bind(lock.key()).fetch_one(&mut *tx).await? == 1),
        None => Ok(true),
    }
}

/// The box's modseq as it stands (what a write that moves none, but changes what the box's
/// waiters would find, commits at; what a read's snapshot is at).
async fn current_modseq<'e>(conn: impl sqlx::Executor<'e, Database = sqlx::Any>, box_id: i64) -> Result<i64> {
    Ok(query_scalar("SELECT modseq FROM boxes WHERE id = ?").bind(box_id).fetch_one(conn).await?)
}

/// First statement of every mutating transaction: bump and return the box modseq.
async fn bump(tx: &mut Tx<'_>, b: &BoxRow) -> Result<i64> {
    let seq: i64 = query_scalar("UPDATE boxes SET modseq = modseq + 1 WHERE id = ? RETURNING modseq")
        .bind(b.id)
        .fetch_one(&mut *tx)
        .await?;
    Ok(seq)
}

/// End a write whose modseq is `seq`: commit it when it `changed` something, else roll it
/// back (the modseq bump with it); `value` is its answer.
async fn settle<T>(tx: Tx<'_>, b: &BoxRow, seq: i64, changed: bool, value: T) -> Result<Written<T>> {
    if changed {
        tx.commit().await?;
        Ok(Written::committed(value, b.id, seq))
    } else {
        tx.rollback().await?;
        Ok(Written::unchanged(value))
    }
}

/// The exclusive upper bound of an ancestry prefix range (`'/1/7/'` -> `'/1/70'`).
fn ancestry_end(prefix: &str) -> String {
    // '/' + 1 == '0', so every string starting with `prefix` sorts below this bound.
    let mut s = prefix[..prefix.len() - 1].to_string();
    s.push('0');
    s
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

async fn folder_key_by_public(tx: &mut Tx<'_>, b: &BoxRow, public_id: &str) -> Result<Option<FolderKey>> {
    Ok(query_as::<FolderKey>(
        "SELECT id, public_id, ancestry, path, is_root FROM folders WHERE box_id = ? AND public_id = ?",
    )
    .bind(b.id)
    .bind(public_id)
    .fetch_optional(&mut *tx)
    .await?)
}

async fn root_key(tx: &mut Tx<'_>, b: &BoxRow) -> Result<FolderKey> {
    query_as::<FolderKey>("SELECT id, public_id, ancestry, path, is_root FROM folders WHERE box_id = ? AND is_root = 1")
        .bind(b.id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::internal(format!("box {} has no root folder", b.address)))
}

/// Insert a folder row under `parent`, stamped with `seq`, if its path fits `limits`.
#[allow(clippy::too_many_arguments)]
async fn insert_folder(
    tx: &mut Tx<'_>,
    b: &BoxRow,
    limits: FolderLimits,
    parent: &FolderKey,
    public_id: &str,
    name: &str,
    seq: i64,
    now_ms: i64,
) -> Result<FolderKey> {
    let path = format!("{}/{}", parent.path, name);
    limits.check(&path)?;
    let res = query(
        "INSERT INTO folders (box_id, public_id, parent_id, name, is_root, ancestry, path, created_at_ms, last_mod_seq) \
         VALUES (?, ?, ?, ?, 0, '', ?, ?, ?) RETURNING id",
    )
    .bind(b.id)
    .bind(public_id)
    .bind(parent.id)
    .bind(name)
    .bind(&path)
    .bind(now_ms)
    .bind(seq)
    .fetch_one(&mut *tx)
    .await;
    let id: i64 = match res {
        Ok(row) => row.try_get(0)?,
        Err(e) if is_unique_violation(&e) => return Err(Error::DuplicateName { name: name.to_string() }),
        Err(e) => return Err(e.into()),
    };
    let ancestry = format!("{}{}/", parent.ancestry, id);
    query("UPDATE folders SET ancestry = ? WHERE id = ?").bind(&ancestry).bind(id).execute(&mut *tx).await?;
    Ok(FolderKey { id, public_id: public_id.to_string(), ancestry, path, is_root: false })
}

/// The deepest level (segments) and the longest path (bytes) of the subtree whose
/// ancestry starts with `ancestry`, checked against `limits` (after a rename or a move
/// rewrote its paths; an error rolls the write back).
async fn check_subtree(tx: &mut Tx<'_>, b: &BoxRow, limits: FolderLimits, ancestry: &str) -> Result<()> {
    if limits == FolderLimits::default() {
        return Ok(());
    }
    let (depth, bytes): (Option<i64>, Option<i64>) = query_as(
        "SELECT max(length(path) - length(replace(path, '/', ''))), max(octet_length(path)) \
         FROM folders WHERE box_id = ? AND ancestry >= ? AND ancestry < ?",
    )
    .bind(b.id)
    .bind(ancestry)
    .bind(ancestry_end(ancestry))
    .fetch_one(&mut *tx)
    .await?;
    limits.check_extent(depth.unwrap_or(0).max(0) as u64, bytes.unwrap_or(0).max(0) as u64)
}

/// Find the folder a new item goes into, creating missing path folders (within `limits`)
/// when asked.
async fn resolve_parent(
    tx: &mut Tx<'_>,
    b: &BoxRow,
    limits: FolderLimits,
    parent: &ParentRef,
    seq: i64,
    now_ms: i64,
) -> Result<FolderKey> {
    match parent {
        ParentRef::Root => root_key(tx, b).await,
        ParentRef::Id(id) => {
            folder_key_by_public(tx, b, id).await?.ok_or_else(|| Error::invalid(format!("parentFolder {id}")))
        }
        ParentRef::Path { path, create_missing } => {
            let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            if let Some(found) = folder_at(tx, b, &segs).await? {
                return Ok(found);
            }
            let mut cur = root_key(tx, b).await?;
            for &seg in &segs {
                let next = query_as::<FolderKey>(
                    "SELECT id, public_id, ancestry, path, is_root FROM folders WHERE parent_id = ? AND name = ?",
                )
                .bind(cur.id)
                .bind(seg)
                .fetch_optional(&mut *tx)
                .await?;
                cur = match next {
                    Some(f) => f,
                    None if *create_missing => insert_folder(tx, b, limits, &cur, &new_id(), seg, seq, now_ms).await?,
                    None => return Err(Error::invalid(format!("parentFolderPath {path}"))),
                };
            }
            Ok(cur)
        }
    }
}

/// The folder at path `segs` under the box's root, found in one statement (`None`: it is
/// not there, or too deep to look up at once).
async fn folder_at(tx: &mut Tx<'_>, b: &BoxRow, segs: &[&str]) -> Result<Option<FolderKey>> {
    /// Deeper paths are walked one folder at a time.
    const MAX_JOINED: usize = 8;
    if segs.is_empty() || segs.len() > MAX_JOINED {
        return Ok(None);
    }
    let last = segs.len();
    let mut sql = format!(
        "SELECT f{last}.id, f{last}.public_id, f{last}.ancestry, f{last}.path, f{last}.is_root FROM folders f0"
    );
    for i in 1..=last {
        sql.push_str(&format!(" JOIN folders f{i} ON f{i}.parent_id = f{}.id AND f{i}.name = ?", i - 1));
    }
    sql.push_str(" WHERE f0.box_id = ? AND f0.is_root = 1");
    let mut q = query_as::<FolderKey>(sql);
    for seg in segs {
        q = q.bind(*seg);
    }
    Ok(q.bind(b.id).fetch_optional(&mut *tx).await?)
}

/// Insert attributes of an object or folder (`table`); object rows also carry the box, so
/// that attribute lookups stay within one box.
async fn insert_attributes(tx: &mut Tx<'_>, table: &str, owner: i64, b: &BoxRow, attrs: &[Attribute]) -> Result<()> {
    /// Rows per statement: well inside both engines' limits on bound values.
    const CHUNK: usize = 100;
    let objects = table == "object_attributes";
    let (head, row) = if objects {
        (
            "INSERT INTO object_attributes (object_id, box_id, name_lc, name, position, value) VALUES ",
            "(?, ?, ?, ?, ?, ?)",
        )
    } else {
        ("INSERT INTO folder_attributes (folder_id, name_lc, name, position, value) VALUES ", "(?, ?, ?, ?, ?)")
    };
    let rows: Vec<(String, &str, i64, &str)> = attrs
        .iter()
        .flat_map(|a| {
            let lc = a.name.to_ascii_lowercase();
            a.values.iter().enumerate().map(move |(i, v)| (lc.clone(), a.name.as_str(), i as i64, v.as_str()))
        })
        .collect();
    // One statement for the lot: a round trip per value was most of a deposit's statements.
    for chunk in rows.chunks(CHUNK) {
        let mut sql = String::with_capacity(head.len() + chunk.len() * (row.len() + 2));
        sql.push_str(head);
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(row);
        }
        let mut q = query(sql);
        for (lc, name, position, value) in chunk {
            q = q.bind(owner);
            if objects {
                q = q.bind(b.id);
            }
            q = q.bind(lc.as_str()).bind(*name).bind(*position).bind(*value);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Group (name, value) rows (ordered by name, position) into attributes.
fn group_attributes(rows: Vec<(String, String)>) -> Vec<Attribute> {
    let mut out: Vec<Attribute> = Vec::new();
    for (name, value) in rows {
        match out.last_mut() {
            Some(last) if last.name.eq_ignore_ascii_case(&name) => last.values.push(value),
            _ => out.push(Attribute { name, values: vec![value] }),
        }
    }
    out
}

/// Deduplicate flags case-insensitively, keeping the first spelling and the order.
fn dedup_flags(flags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(flags.len());
    for f in flags {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(f)) {
            out.push(f.clone());
        }
    }
    out
}

/// Table, owner column and item table for a flag target.
fn flag_tables(t: FlagTarget<'_>) -> (&'static str, &'static str, &'static str, &str) {
    match t {
        FlagTarget::Object(id) => ("object_flags", "object_id", "objects", id),
        FlagTarget::Folder(id) => ("folder_flags", "folder_id", "folders", id),
    }
}

async fn item_id(tx: &mut Tx<'_>, b: &BoxRow, t: FlagTarget<'_>) -> Result<Option<i64>> {
    let (_, _, items, public_id) = flag_tables(t);
    Ok(query_scalar(sql!("SELECT id FROM {items} WHERE box_id = ? AND public_id = ?"))
        .bind(b.id)
        .bind(public_id)
        .fetch_optional(&mut *tx)
        .await?)
}

async fn read_flags<'e, E>(exec: E, t: FlagTarget<'_>, owner: i64) -> Result<Vec<String>>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let (table, col, _, _) = flag_tables(t);
    Ok(query_scalar(sql!("SELECT flag FROM {table} WHERE {col} = ? ORDER BY rowid"))
        .bind(owner)
        .fetch_all(exec)
        .await?)
}

/// Insert a flag of an object or folder; object rows also carry the box, so that flag
/// lookups stay within one box.
async fn insert_flag(tx: &mut Tx<'_>, b: &BoxRow, t: FlagTarget<'_>, owner: i64, flag: &str) -> Result<()> {
    let q = match t {
        FlagTarget::Object(_) => {
            query("INSERT INTO object_flags (object_id, box_id, flag_lc, flag) VALUES (?, ?, ?, ?)")
                .bind(owner)
                .bind(b.id)
        }
        FlagTarget::Folder(_) => {
            query("INSERT INTO folder_flags (folder_id, flag_lc, flag) VALUES (?, ?, ?)").bind(owner)
        }
    };
    q.bind(flag.to_ascii_lowercase()).bind(flag).execute(&mut *tx).await?;
    Ok(())
}

async fn stamp(tx: &mut Tx<'_>, t: FlagTarget<'_>, owner: i64, seq: i64) -> Result<()> {
    let (_, _, items, _) = flag_tables(t);
    query(sql!("UPDATE {items} SET last_mod_seq = ? WHERE id = ?")).bind(seq).bind(owner).execute(&mut *tx).await?;
    Ok(())
}

/// Insert a new object (parent resolved, attributes, flags, parts, searchable text) stamped
/// with `seq`.
async fn insert_object(tx: &mut Tx<'_>, b: &BoxRow, limits: FolderLimits, o: NewObject, seq: i64) -> Result<Object> {
    let folder = resolve_parent(tx, b, limits, &o.parent, seq, o.now_ms).await?;
    let id: i64 = query_scalar(
        "INSERT INTO objects (box_id, public_id, folder_id, stored_at_ms, correlation_id, correlation_tag, \
         payload_type, last_mod_seq, creation_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(b.id)
    .bind(&o.public_id)
    .bind(folder.id)
    .bind(o.now_ms)
    .bind(&o.correlation_id)
    .bind(&o.correlation_tag)
    .bind(&o.payload_type)
    .bind(seq)
    .bind(seq)
    .fetch_one(&mut *tx)
    .await?;
    insert_attributes(tx, "object_attributes", id, b, &o.attributes).await?;
    let flags = dedup_flags(&o.flags);
    for f in &flags {
        insert_flag(tx, b, FlagTarget::Object(""), id, f).await?;
    }
    for (ordinal, p) in o.parts.iter().enumerate() {
        let (inline, key): (Option<&[u8]>, Option<&str>) = match &p.data {
            PartData::Inline(bytes) => (Some(bytes.as_slice()), None),
            PartData::Blob { key } => (None, Some(key.as_str())),
        };
        query(
            "INSERT INTO payload_parts (object_id, ordinal, part_id, content_type, content_disposition, content_id, \
             content_location, content_encoding, file_icon, size, inline_data, blob_key) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(ordinal as i64)
        .bind(&p.part_id)
        .bind(&p.content_type)
        .bind(&p.content_disposition)
        .bind(&p.content_id)
        .bind(&p.content_location)
        .bind(&p.content_encoding)
        .bind(&p.file_icon)
        .bind(p.size as i64)
        .bind(inline)
        .bind(key)
        .execute(&mut *tx)
        .await?;
    }
    if !o.text.is_empty() {
        query("INSERT INTO object_search (id, body) VALUES (?, ?)").bind(id).bind(&o.text).execute(&mut *tx).await?;
    }
    Ok(Object {
        id,
        public_id: o.public_id,
        folder_public_id: folder.public_id,
        folder_path: folder.path,
        attributes: o.attributes,
        flags,
        correlation_id: o.correlation_id,
        correlation_tag: o.correlation_tag,
        payload_type: o.payload_type,
        parts: o
            .parts
            .into_iter()
            .map(|mut p| {
                if let PartData::Inline(_) = p.data {
                    p.data = PartData::Inline(Vec::new());
                }
                p
            })
            .collect(),
        stored_at_ms: o.now_ms,
        last_mod_seq: seq,
        creation_seq: seq,
    })
}

/// What removing an object needs of it: its id and correlation id, read once.
struct ObjectRow {
    id: i64,
    correlation_id: Option<String>,
}

impl ObjectRow {
    /// The object as a departure policy sees it.
    fn departing(&self) -> Departing {
        Departing { id: self.id, correlation_id: self.correlation_id.clone() }
    }
}

type ObjectRowTuple = (i64, Option<String>);

fn object_row_of((id, correlation_id): ObjectRowTuple) -> ObjectRow {
    ObjectRow { id, correlation_id }
}

async fn object_row(tx: &mut Tx<'_>, b: &BoxRow, public_id: &str) -> Result<Option<ObjectRow>> {
    let row: Option<ObjectRowTuple> =
        query_as("SELECT id, correlation_id FROM objects WHERE box_id = ? AND public_id = ?")
            .bind(b.id)
            .bind(public_id)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(row.map(object_row_of))
}

async fn object_row_by_id(tx: &mut Tx<'_>, id: i64) -> Result<Option<ObjectRow>> {
    let row: Option<ObjectRowTuple> =
        query_as("SELECT id, correlation_id FROM objects WHERE id = ?").bind(id).fetch_optional(&mut *tx).await?;
    Ok(row.map(object_row_of))
}

/// Delete one object (a row already read), leaving its tombstone stamped `seq` with
/// `reason` (`deleted` or `expired`); returns the blob keys its parts used (`None`: it went
/// meanwhile, earlier in the same request).
async fn remove_row(
    engine: Engine,
    tx: &mut Tx<'_>,
    b: &BoxRow,
    row: &ObjectRow,
    seq: i64,
    now_ms: i64,
    reason: &str,
) -> Result<Option<Vec<String>>> {
    let keys: Vec<String> =
        query_scalar("SELECT DISTINCT blob_key FROM payload_parts WHERE object_id = ? AND blob_key IS NOT NULL")
            .bind(row.id)
            .fetch_all(&mut *tx)
            .await?;
    let mut only = Sql::default();
    only.push("o.id = ").int(row.id);
    let marked = tombstone_objects(engine, tx, b, seq, now_ms, reason, only).await?;
    if marked == 0 {
        return Ok(None);
    }
    query("DELETE FROM objects WHERE id = ?").bind(row.id).execute(&mut *tx).await?;
    Ok(Some(keys))
}

/// Leave a tombstone stamped `seq` with `reason` (`deleted` or `expired`), with its snapshot,
/// for every object of box `b` that `filter` (over `objects o`) selects; how many. The one
/// place objects become tombstones.
#[allow(clippy::too_many_arguments)]
async fn tombstone_objects(
    engine: Engine,
    tx: &mut Tx<'_>,
    b: &BoxRow,
    seq: i64,
    now_ms: i64,
    reason: &str,
    filter: Sql,
) -> Result<u64> {
    let mut sql = Sql::default();
    sql.push(
        "INSERT INTO tombstones (box_id, kind, public_id, reason, last_mod_seq, correlation_id, correlation_tag, \
         deleted_at_ms, snapshot) SELECT ",
    );
    sql.int(b.id).push(", 'object', o.public_id, ").str(reason).push(", ").int(seq);
    sql.push(", o.correlation_id, o.correlation_tag, ").int(now_ms).push(", ").push(&object_snapshot(engine));
    sql.push(" FROM objects o WHERE ").push(&filter.text);
    sql.binds.extend(filter.binds);
    sql.execute(tx).await
}

/// An id list for SQL (integers only, so listed inline).
fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// An object a request takes out of its folder, with what the departure policy said of it.
struct Judged {
    row: ObjectRow,
    /// The objects that go with it.
    companions: Vec<i64>,
    /// Why it stays, if it does.
    refusal: Option<String>,
}

/// Ask `policy` about the objects a request removes `how` (`None`s stay `None`, the order
/// is kept): first each one's companions, then, with everything leaving known, the judge's
/// refusal of each. All inside the request's transaction.
async fn judge_removals(
    tx: &mut Tx<'_>,
    b: &BoxRow,
    rows: Vec<Option<ObjectRow>>,
    policy: &dyn DeparturePolicy,
    how: Departure,
) -> Result<Vec<Option<Judged>>> {
    let mut with = Vec::with_capacity(rows.len());
    for row in rows {
        with.push(match row {
            Some(row) => {
                let companions = policy.companions(&mut TxFacts::new(tx, b), &row.departing(), how).await?;
                Some((row, companions))
            }
            None => None,
        });
    }
    let leaving: Vec<i64> =
        with.iter().flatten().flat_map(|(row, companions)| std::iter::once(row.id).chain(companions.clone())).collect();
    let mut judge = policy.judge(how, &leaving);
    let mut out = Vec::with_capacity(with.len());
    for item in with {
        out.push(match item {
            Some((row, companions)) => {
                let refusal = judge.refusal(&mut TxFacts::new(tx, b), row.id).await?;
                Some(Judged { row, companions, refusal })
            }
            None => None,
        });
    }
    Ok(out)
}

/// Remove an object the policy let go and its companions, each leaving a tombstone stamped
/// `seq` with `reason`; the blob keys they used (`None`: the object was gone).
async fn remove_judged(
    engine: Engine,
    tx: &mut Tx<'_>,
    b: &BoxRow,
    j: &Judged,
    seq: i64,
    now_ms: i64,
    reason: &str,
) -> Result<Option<Vec<String>>> {
    let Some(mut keys) = remove_row(engine, tx, b, &j.row, seq, now_ms, reason).await? else { return Ok(None) };
    for id in &j.companions {
        // A companion another object of the request took along is gone already.
        if let Some(companion) = object_row_by_id(tx, *id).await? {
            keys.extend(remove_row(engine, tx, b, &companion, seq, now_ms, reason).await?.unwrap_or_default());
        }
    }
    Ok(Some(keys))
}

/// The objects a bulk operation names: (public id, internal id if it exists in this box), in
/// request order, or the matches of a query in its order.
async fn resolve_targets(
    engine: Engine,
    tx: &mut Tx<'_>,
    b: &BoxRow,
    targets: &Targets,
) -> Result<Vec<(String, Option<i64>)>> {
    match targets {
        Targets::Ids(list) => {
            let mut out = Vec::with_capacity(list.len());
            for public_id in list {
                let id: Option<i64> = query_scalar("SELECT id FROM objects WHERE box_id = ? AND public_id = ?")
                    .bind(b.id)
                    .bind(public_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                out.push((public_id.clone(), id));
            }
            Ok(out)
        }
        Targets::Matching { query: matching, refuse_beyond } => {
            // The earlier writes of this transaction (and of its group) must be found by
            // text as by everything else.
            if let Some(catch_up) = engine.text_catch_up() {
                query(catch_up).execute(&mut *tx).await?;
            }
            let (ids, next) = page_ids(engine, tx, b, Over::Objects, matching).await?;
            if *refuse_beyond && next.is_some() {
                return Err(Error::LimitExceeded {
                    what: "objects matching selectionCriteria".into(),
                    key: "nms.bulk_max_items",
                    limit: u64::from(matching.limit),
                });
            }
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let public_id: String =
                    query_scalar("SELECT public_id FROM objects WHERE id = ?").bind(id).fetch_one(&mut *tx).await?;
                out.push((public_id, Some(id)));
            }
            Ok(out)
        }
    }
}

/// Copy one object into `folder` as a new object stamped `seq` (attributes, flags, parts
/// sharing their blobs, searchable text); returns the new public id.
async fn copy_object(tx: &mut Tx<'_>, source: i64, folder: i64, seq: i64, now_ms: i64) -> Result<String> {
    let public_id = new_id();
    let id: i64 = query_scalar(
        "INSERT INTO objects (box_id, public_id, folder_id, stored_at_ms, correlation_id, correlation_tag, \
         payload_type, last_mod_seq, creation_seq) \
         SELECT box_id, ?, ?, ?, correlation_id, correlation_tag, payload_type, ?, ? FROM objects WHERE id = ? \
         RETURNING id",
    )
    .bind(&public_id)
    .bind(folder)
    .bind(now_ms)
    .bind(seq)
    .bind(seq)
    .bind(source)
    .fetch_one(&mut *tx)
    .await?;
    for stmt in [
        "INSERT INTO object_attributes (object_id, box_id, name_lc, name, position, value) \
         SELECT ?1, box_id, name_lc, name, position, value FROM object_attributes WHERE object_id = ?2 ORDER BY rowid",
        "INSERT INTO object_flags (object_id, box_id, flag_lc, flag) \
         SELECT ?1, box_id, flag_lc, flag FROM object_flags WHERE object_id = ?2 ORDER BY rowid",
        "INSERT INTO payload_parts (object_id, ordinal, part_id, content_type, content_disposition, content_id, \
         content_location, content_encoding, file_icon, size, inline_data, blob_key) \
         SELECT ?1, ordinal, part_id, content_type, content_disposition, content_id, content_location, \
         content_encoding, file_icon, size, inline_data, blob_key FROM payload_parts WHERE object_id = ?2",
        "INSERT INTO object_search (id, body) SELECT ?1, body FROM object_search WHERE id = ?2",
    ] {
        query(stmt).bind(id).bind(source).execute(&mut *tx).await?;
    }
    Ok(public_id)
}

/// Copy folder `source` (with its subtree) under `target`, stamped `seq`.
async fn copy_folder(
    tx: &mut Tx<'_>,
    b: &BoxRow,
    limits: FolderLimits,
    source: &FolderKey,
    target: &FolderKey,
    seq: i64,
    now_ms: i64,
) -> Result<FolderKey> {
    // Parents before children: ancestry strings grow with depth.
    let tree: Vec<(i64, Option<i64>, String)> = query_as(
        "SELECT id, parent_id, name FROM folders WHERE box_id = ? AND ancestry >= ? AND ancestry < ? \
         ORDER BY length(ancestry), id",
    )
    .bind(b.id)
    .bind(&source.ancestry)
    .bind(ancestry_end(&source.ancestry))
    .fetch_all(&mut *tx)
    .await?;
    let mut copies: std::collections::HashMap<i64, FolderKey> = std::collections::HashMap::new();
    let mut top = None;
    for (old_id, old_parent, name) in tree {
        let parent = if old_id == source.id {
            target.clone()
        } else {
            match old_parent.and_then(|p| copies.get(&p)) {
                Some(p) => p.clone(),
                None => return Err(Error::internal(format!("folder {old_id} copied before its parent"))),
            }
        };
        let copy = insert_folder(tx, b, limits, &parent, &new_id(), &name, seq, now_ms).await?;
        for stmt in [
            "INSERT INTO folder_attributes (folder_id, name_lc, name, position, value) \
             SELECT ?1, name_lc, name, position, value FROM folder_attributes WHERE folder_id = ?2",
            "INSERT INTO folder_flags (folder_id, flag_lc, flag) \
             SELECT ?1, flag_lc, flag FROM folder_flags WHERE folder_id = ?2 ORDER BY rowid",
        ] {
            query(stmt).bind(copy.id).bind(old_id).execute(&mut *tx).await?;
        }
        let objects: Vec<i64> = query_scalar("SELECT id FROM objects WHERE folder_id = ? ORDER BY id")
            .bind(old_id)
            .fetch_all(&mut *tx)
            .await?;
        for o in objects {
            copy_object(tx, o, copy.id, seq, now_ms).await?;
        }
        if old_id == source.id {
            top = Some(copy.clone());
        }
        copies.insert(old_id, copy);
    }
    top.ok_or_else(|| Error::internal("copied folder vanished"))
}

/// A folder to copy or move into `target`, or why it cannot be: it does not exist, or it
/// is the root, the target itself or one of the target's ancestors.
async fn folder_source(
    tx: &mut Tx<'_>,
    b: &BoxRow,
    public_id: &str,
    target: &FolderKey,
) -> Result<std::result::Result<FolderKey, Relocated>> {
    Ok(match folder_key_by_public(tx, b, public_id).await? {
        None => Err(Relocated::NoSource),
        Some(source) if source.is_root || within(target, &source) => Err(Relocated::Cycle),
        Some(source) => Ok(source),
    })
}

/// Whether `folder` is `ancestor` or lies below it.
fn within(folder: &FolderKey, ancestor: &FolderKey) -> bool {
    folder.ancestry.starts_with(&ancestor.ancestry)
}

/// A tombstone row: kind, public id, reason, lastModSeq, correlation id and tag.
type TombstoneRow = (String, String, String, i64, Option<String>, Option<String>, Option<String>);

/// A modseq group larger than this many pages' worth of changes is split across pages.
const GROUP_SLACK: i64 = 4;

/// Whether changes follow modseq `through`.
async fn changes_beyond(conn: &mut AnyConnection, b: &BoxRow, through: i64) -> Result<bool> {
    let beyond = |table: &str| format!("EXISTS (SELECT 1 FROM {table} WHERE box_id = ?1 AND last_mod_seq > ?2)");
    let beyond: i64 = query_scalar(sql!(
        "SELECT CASE WHEN {} OR {} OR {} THEN 1 ELSE 0 END",
        beyond("objects"),
        beyond("folders"),
        beyond("tombstones")
    ))
    .bind(b.id)
    .bind(through)
    .fetch_one(conn)
    .await?;
    Ok(beyond != 0)
}

/// Whether group `seq` holds more than `cap` changes (counted without loading them).
async fn group_size(conn: &mut AnyConnection, b: &BoxRow, seq: i64, cap: i64) -> Result<bool> {
    let count = |table: &str| {
        format!("(SELECT count(*) FROM (SELECT 1 FROM {table} WHERE box_id = ?1 AND last_mod_seq = ?2 LIMIT ?3) g)")
    };
    let n: i64 = query_scalar(sql!("SELECT {} + {} + {}", count("folders"), count("objects"), count("tombstones")))
        .bind(b.id)
        .bind(seq)
        .bind(cap + 1)
        .fetch_one(conn)
        .await?;
    Ok(n > cap)
}

/// Up to `limit` changes of group `seq` after `cursor` (in part, then id order), and the
/// position after them (`None`: the group is done).
async fn group_slice(
    engine: Engine,
    conn: &mut AnyConnection,
    b: &BoxRow,
    seq: i64,
    cursor: Within,
    limit: i64,
    with_attributes: bool,
) -> Result<(Vec<Change>, Within)> {
    let (from_part, from_id) = cursor.unwrap_or((0, i64::MIN));
    let mut picked: Vec<(u8, i64)> = Vec::new();
    for (part, table) in [(0u8, "folders"), (1, "objects"), (2, "tombstones")] {
        if part < from_part || picked.len() as i64 > limit {
            continue;
        }
        let after_id = if part == from_part && cursor.is_some() { from_id } else { i64::MIN };
        let ids: Vec<i64> = query_scalar(sql!(
            "SELECT id FROM {table} WHERE box_id = ? AND last_mod_seq = ? AND id > ? ORDER BY id LIMIT ?"
        ))
        .bind(b.id)
        .bind(seq)
        .bind(after_id)
        .bind(limit + 1 - picked.len() as i64)
        .fetch_all(&mut *conn)
        .await?;
        picked.extend(ids.into_iter().map(|id| (part, id)));
    }
    let rest = picked.len() as i64 > limit;
    picked.truncate(limit as usize);
    let within = if rest { picked.last().copied() } else { None };
    let of = |p: u8| picked.iter().filter(|(x, _)| *x == p).map(|(_, id)| *id).collect::<Vec<_>>();
    let mut changes: Vec<Change> = Vec::with_capacity(picked.len());
    changes.extend(load_folders(&mut *conn, &of(0)).await?.into_iter().map(Change::Folder));
    changes.extend(
        load_objects_with(engine, &mut *conn, &of(1), with_attributes, false).await?.into_iter().map(Change::Object),
    );
    changes.extend(tombstones_by_id(&mut *conn, &of(2), with_attributes).await?.into_iter().map(Change::Gone));
    Ok((changes, within))
}

/// Tombstones by internal id, in id order.
async fn tombstones_by_id(conn: &mut AnyConnection, ids: &[i64], with_snapshots: bool) -> Result<Vec<Tombstone>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let rows: Vec<TombstoneRow> = query_as(sql!(
            "SELECT kind, public_id, reason, last_mod_seq, correlation_id, correlation_tag, snapshot FROM tombstones \
             WHERE id IN ({list}) ORDER BY id"
        ))
        .fetch_all(&mut *conn)
        .await?;
        out.extend(rows.into_iter().map(|r| tombstone_from(r, with_snapshots)));
    }
    Ok(out)
}

fn tombstone_from(r: TombstoneRow, with_snapshots: bool) -> Tombstone {
    let (kind, public_id, reason, last_mod_seq, correlation_id, correlation_tag, snapshot) = r;
    Tombstone {
        kind,
        public_id,
        reason,
        last_mod_seq,
        correlation_id,
        correlation_tag,
        snapshot: if with_snapshots { parse_snapshot(snapshot) } else { None },
    }
}

/// What a tombstone of an object (`objects o`) keeps for subscription filters, as SQL giving
/// JSON text: `date`, `creation`, `flags` (in order) and `attributes` (`[name, value]` pairs
/// by name and position). Read back by [`parse_snapshot`].
fn object_snapshot(engine: Engine) -> String {
    engine.json_object(&[
        ("date", "o.stored_at_ms".into()),
        ("creation", "o.creation_seq".into()),
        ("flags", engine.json_rows(&["flag"], "object_flags WHERE object_id = o.id", "rowid")),
        (
            "attributes",
            engine.json_rows(&["name", "value"], "object_attributes WHERE object_id = o.id", "name_lc, position"),
        ),
    ])
}

/// The same for a folder (`folders f`): `date`, `name` and `attributes`.
fn folder_snapshot(engine: Engine) -> String {
    engine.json_object(&[
        ("date", "f.created_at_ms".into()),
        ("name", "f.name".into()),
        (
            "attributes",
            engine.json_rows(&["name", "value"], "folder_attributes WHERE folder_id = f.id", "name_lc, position"),
        ),
    ])
}

/// A tombstone's snapshot as stored (see [`object_snapshot`]).
#[derive(serde::Deserialize)]
struct SnapshotJson {
    date: i64,
    creation: Option<i64>,
    name: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    attributes: Vec<(String, String)>,
}

/// A stored snapshot; one that cannot be read counts as none (the deletion is then
/// delivered whatever the filter).
fn parse_snapshot(json: Option<String>) -> Option<Snapshot> {
    let s: SnapshotJson = serde_json::from_str(json.as_deref()?).ok()?;
    let attributes = group_attributes(s.attributes);
    Some(Snapshot { date_ms: s.date, creation_seq: s.creation, name: s.name, flags: s.flags, attributes })
}

/// Tombstones with `after < last_mod_seq <= through`, in modseq order, read as one JSON
/// array (one row however many there are).
async fn tombstones_between(
    engine: Engine,
    conn: &mut AnyConnection,
    b: &BoxRow,
    after: i64,
    through: i64,
    with_snapshots: bool,
) -> Result<Vec<Tombstone>> {
    let snapshot = if with_snapshots { "snapshot" } else { "CAST(NULL AS TEXT)" };
    let rows = engine.json_rows(
        &["kind", "public_id", "reason", "last_mod_seq", "correlation_id", "correlation_tag", snapshot],
        "tombstones WHERE box_id = ? AND last_mod_seq > ? AND last_mod_seq <= ?",
        "last_mod_seq, id",
    );
    let json: String =
        query_scalar(sql!("SELECT CAST({rows} AS TEXT)")).bind(b.id).bind(after).bind(through).fetch_one(conn).await?;
    let rows: Vec<TombstoneRow> = stored_rows(&json)?;
    Ok(rows.into_iter().map(|r| tombstone_from(r, with_snapshots)).collect())
}

/// Rows the database gave as one JSON array.
fn stored_rows<T: serde::de::DeserializeOwned>(json: &str) -> Result<Vec<T>> {
    serde_json::from_str(json).map_err(|e| Error::internal(format!("reading stored rows: {e}")))
}

/// The last modseq of a change with `after < modseq < below`, if any.
async fn last_change_below(conn: &mut AnyConnection, b: &BoxRow, after: i64, below: i64) -> Result<Option<i64>> {
    let last = |table: &str| {
        format!(
            "SELECT max(last_mod_seq) AS m FROM {table} WHERE box_id = ?1 AND last_mod_seq > ?2 AND last_mod_seq < ?3"
        )
    };
    Ok(query_scalar(sql!(
        "SELECT max(m) FROM ({} UNION ALL {} UNION ALL {}) below",
        last("objects"),
        last("folders"),
        last("tombstones")
    ))
    .bind(b.id)
    .bind(after)
    .bind(below)
    .fetch_one(conn)
    .await?)
}

impl SqlStore {
    /// The folder of box `b` matching `where_sql` (over `folders f`, one bound `arg`).
    async fn load_folder(&self, where_sql: &str, b: &BoxRow, arg: &str) -> Result<Option<Folder>> {
        let sql = format!("SELECT f.id FROM folders f WHERE f.box_id = ? AND {where_sql}");
        let id: Option<i64> = query_scalar(sql).bind(b.id).bind(arg).fetch_optional(&self.pool).await?;
        let Some(id) = id else { return Ok(None) };
        let mut conn = self.pool.acquire().await?;
        Ok(load_folders(&mut conn, &[id]).await?.pop())
    }

    /// The object of box `b` matching `where_sql` (over `objects o` joined to its folder
    /// `f`, with `args` bound in order).
    async fn load_object(&self, where_sql: &str, b: &BoxRow, args: &[&str]) -> Result<Option<Object>> {
        let sql = format!(
            "SELECT o.id FROM objects o JOIN folders f ON f.id = o.folder_id WHERE o.box_id = ? AND {where_sql}"
        );
        let mut q = query_scalar::<i64>(sql).bind(b.id);
        for a in args {
            q = q.bind(*a);
        }
        let Some(id) = q.fetch_optional(&self.pool).await? else { return Ok(None) };
        let mut conn = self.pool.acquire().await?;
        Ok(load_objects(self.engine, &mut conn, &[id]).await?.pop())
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<()> {
        self.engine.migrate(&self.pool).await
    }

    async fn ping(&self) -> Result<()> {
        query_scalar::<i64>("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        PoolStats { in_use: self.pool.size().saturating_sub(idle), idle }
    }

    async fn webhook_backlog(&self) -> Result<u64> {
        let n: i64 = query_scalar("SELECT COUNT(*) FROM webhook_outbox").fetch_one(&self.pool).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// A scratch store for unit tests: a fresh SQLite database in a temporary directory (kept
/// while the directory lives), with one box.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) async fn scratch() -> (tempfile::TempDir, SqlStore, BoxRow) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nms.db").display());
    let store = SqlStore::connect(&url, &Default::default()).await.unwrap();
    store.migrate().await.unwrap();
    let b = store.provision_box("base", "tel:+1", "root", 1).await.unwrap();
    (dir, store, b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order_outside_quotes() {
        assert_eq!(numbered("SELECT ? , ?"), "SELECT $1 , $2");
        assert_eq!(numbered("a = ?1 AND b = ?2 AND c = ?1"), "a = $1 AND b = $2 AND c = $1");
        assert_eq!(numbered("x = ?2 OR y = ?"), "x = $2 OR y = $3");
        assert_eq!(numbered("v = '?' AND \"w?\" = ?"), "v = '?' AND \"w?\" = $1");
        assert_eq!(numbered("'it''s?' || ?"), "'it''s?' || $1");
    }

    /// The plan SQLite chooses for `sql` (its parameters bound to `binds`), one line per
    /// step.
    async fn plan(store: &SqlStore, sql: &str, binds: (&str, i64)) -> Vec<String> {
        let rows: Vec<(i64, i64, i64, String)> = query_as(format!("EXPLAIN QUERY PLAN {sql}"))
            .bind(binds.0)
            .bind(binds.1)
            .fetch_all(&store.pool)
            .await
            .unwrap();
        rows.into_iter().map(|r| r.3).collect()
    }

    /// A bulk operation that selects its objects by text finds those written earlier in
    /// its transaction's group, though the text indexes take them in only at the commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bulk_operation_by_text_finds_what_its_group_wrote_before_it() {
        let (_dir, store, b) = scratch().await;
        let writer = store.writer.clone().unwrap();
        let committed = writer.commits();
        // The first write of a group: an object with the text, not yet committed.
        let mut first = store.begin_write().await.unwrap();
        let seq = bump(&mut first, &b).await.unwrap();
        let o = NewObject {
            public_id: "o-1".into(),
            parent: ParentRef::Root,
            attributes: Vec::new(),
            flags: Vec::new(),
            correlation_id: None,
            correlation_tag: None,
            payload_type: None,
            parts: Vec::new(),
            text: "invoice 42".into(),
            now_ms: 10,
        };
        insert_object(&mut first, &b, FolderLimits::default(), o, seq).await.unwrap();
        // A bulk flag change by text waits to join the group, and joins it once the first
        // write is done (the group commits when nobody else waits).
        let bulk = tokio::spawn({
            let (store, b) = (store.clone(), b.clone());
            async move {
                let query = SearchQuery {
                    filter: Some(Filter::Text { needle: "invoice".into() }),
                    scope: None,
                    sort: Sort { key: SortKey::Id, descending: false },
                    after: None,
                    limit: 100,
                };
                let targets = Targets::Matching { query, refuse_beyond: false };
                store.bulk_flags(&b, &targets, &["\\Seen".to_string()], true).await
            }
        });
        while writer.waiting() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let first = tokio::spawn(first.commit());
        let items = bulk.await.unwrap().unwrap().value;
        first.await.unwrap().unwrap();
        assert_eq!(items, vec![BulkItem { public_id: "o-1".into(), outcome: Some(true), refusal: None }]);
        assert_eq!(writer.commits(), committed + 1, "both writes were one group");
    }

    /// What a departure policy asks of each object (its folder, the first value of one
    /// attribute, its payload type) is one row by primary key, and the attribute by the
    /// attributes' primary key, never its folder: deleting or moving an ordinary message
    /// costs the same however full its folder is.
    #[tokio::test]
    async fn the_facts_of_an_object_are_read_by_primary_key() {
        let (_dir, store, _) = scratch().await;
        let steps = plan(&store, &facts::object_sql(), ("subject", 1)).await;
        assert!(!steps.is_empty());
        for step in steps.iter().filter(|s| s.starts_with("SEARCH") || s.starts_with("SCAN")) {
            let by_key = step.contains("INTEGER PRIMARY KEY") || step.contains("sqlite_autoindex_object_attributes_1");
            assert!(by_key, "every lookup is by a primary key: {steps:?}");
            assert!(!step.contains("folder"), "no folder probe: {steps:?}");
        }
    }
}
