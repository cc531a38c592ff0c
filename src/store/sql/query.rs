//! Search SQL, the same on both engines: filters compiled to `WHERE` expressions over
//! `objects o` or `folders f`, keyset paging on (sort value, id), and batched loading of
//! result pages.
//!
//! Every criterion is an index lookup: attributes through `object_attributes(name_lc,
//! value)`, flags through `object_flags(flag_lc, object_id)`, text through the engine's text
//! indexes over `object_search`, fed at deposit time (asked of [`Engine`]: FTS5 on SQLite,
//! trigram indexes on PostgreSQL), dates and creation order through `objects(box_id, stored_at_ms | creation_seq)`.
//! Only constant fragments are spliced into the SQL; every value is bound.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Conn, query};
use crate::store::engine::Engine;

use super::{FOLDER_COLUMNS, group_attributes, stored_rows};
use crate::error::{Error, Result};
use crate::model::*;

/// A bound value.
#[derive(Clone, Debug)]
pub enum Bind {
    Int(i64),
    Text(String),
}

/// SQL text with its bound values, in order.
#[derive(Default, Debug)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Sql {
    /// Append constant SQL.
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Append a placeholder bound to `v`.
    pub fn int(&mut self, v: i64) -> &mut Self {
        self.text.push('?');
        self.binds.push(Bind::Int(v));
        self
    }

    /// Append a placeholder bound to `v`.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.text.push('?');
        self.binds.push(Bind::Text(v.to_string()));
        self
    }

    /// The statement with its values bound.
    fn bound(&self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let mut q = query(self.text.as_str());
        for b in &self.binds {
            q = match b {
                Bind::Int(v) => q.bind(*v),
                Bind::Text(v) => q.bind(v.clone()),
            };
        }
        q
    }

    /// Run as a statement; how many rows it changed.
    pub async fn execute(&self, conn: &mut impl Conn) -> Result<u64> {
        Ok(self.bound().execute(conn.ex()).await?.rows_affected())
    }

    /// Run as a query returning rows.
    pub async fn fetch_all(&self, conn: &mut impl Conn) -> Result<Vec<AnyRow>> {
        self.fetch_all_planned(conn, true).await
    }

    /// Run as a query returning rows; with `cache_plan` false the statement is planned for
    /// these very values (not kept prepared with a plan for any value).
    pub async fn fetch_all_planned(&self, conn: &mut impl Conn, cache_plan: bool) -> Result<Vec<AnyRow>> {
        Ok(self.bound().persistent(cache_plan).fetch_all(conn.ex()).await?)
    }
}

/// `%needle%` for LIKE, with `\` escaping the wildcards.
pub fn like_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Which table a search runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    Objects,
    Folders,
}

/// How a filter is compiled: over which table, for which box, and whether attribute and
/// flag leaves probe per row (`EXISTS`, for rows another index already narrowed) or list
/// their matches once (`IN`, box-scoped index range).
#[derive(Clone, Copy)]
struct Mode {
    engine: Engine,
    over: Over,
    box_id: i64,
    probe: bool,
}

/// Append the boolean expression of `f` (over `o` or `f`).
fn filter_sql(sql: &mut Sql, m: Mode, f: &Filter) -> Result<()> {
    let over = m.over;
    match f {
        Filter::All(list) | Filter::Any(list) if list.is_empty() => {
            sql.push(if matches!(f, Filter::All(_)) { "TRUE" } else { "FALSE" });
        }
        Filter::All(list) | Filter::Any(list) => {
            let op = if matches!(f, Filter::All(_)) { " AND " } else { " OR " };
            sql.push("(");
            for (i, sub) in list.iter().enumerate() {
                if i > 0 {
                    sql.push(op);
                }
                filter_sql(sql, m, sub)?;
            }
            sql.push(")");
        }
        Filter::Not(sub) => {
            sql.push("NOT (");
            filter_sql(sql, m, sub)?;
            sql.push(")");
        }
        Filter::Stored { min_ms, max_ms } => {
            let col = if over == Over::Objects { "o.stored_at_ms" } else { "f.created_at_ms" };
            sql.push("(TRUE");
            if let Some(min) = min_ms {
                sql.push(" AND ").push(col).push(" >= ").int(*min);
            }
            if let Some(max) = max_ms {
                sql.push(" AND ").push(col).push(" < ").int(*max);
            }
            sql.push(")");
        }
        Filter::Attribute { name_lc, value } => match over {
            // The object fields searched by name (CPM binding 7.4: fetch by reference).
            Over::Objects if name_lc == "correlationid" => {
                sql.push("o.correlation_id = ").str(value);
            }
            Over::Objects if name_lc == "correlationtag" => {
                sql.push("o.correlation_tag = ").str(value);
            }
            Over::Objects if m.probe => {
                sql.push("EXISTS (SELECT 1 FROM object_attributes a WHERE a.object_id = o.id AND a.name_lc = ")
                    .str(name_lc)
                    .push(" AND a.value = ")
                    .str(value)
                    .push(")");
            }
            Over::Objects => {
                sql.push("o.id IN (SELECT object_id FROM object_attributes WHERE box_id = ")
                    .int(m.box_id)
                    .push(" AND name_lc = ")
                    .str(name_lc)
                    .push(" AND value = ")
                    .str(value)
                    .push(")");
            }
            Over::Folders => match name_lc.as_str() {
                // Derived attributes of folders.
                "root" => {
                    sql.push(if value.eq_ignore_ascii_case("yes") { "f.is_root = 1" } else { "FALSE" });
                }
                "name" => {
                    sql.push("f.name = ").str(value);
                }
                _ => {
                    sql.push("f.id IN (SELECT folder_id FROM folder_attributes WHERE name_lc = ")
                        .str(name_lc)
                        .push(" AND value = ")
                        .str(value)
                        .push(")");
                }
            },
        },
        Filter::Text { needle } => match over {
            Over::Objects => m.engine.text_filter(sql, needle),
            Over::Folders => {
                let p = like_pattern(needle);
                let like = m.engine.like_ascii_ci();
                sql.push("(f.name ").push(like).push(" ").str(&p).push(" ESCAPE '\\'");
                // Per folder of the scope, by its key: never the folder attributes of the
                // whole store.
                sql.push(" OR EXISTS (SELECT 1 FROM folder_attributes fa WHERE fa.folder_id = f.id AND fa.value ")
                    .push(like)
                    .push(" ");
                sql.str(&p).push(" ESCAPE '\\'))");
            }
        },
        Filter::Word { word } if over == Over::Objects => m.engine.word_filter(sql, word),
        Filter::Flag { flag_lc, set: true } if over == Over::Objects && !m.probe => {
            sql.push("o.id IN (SELECT object_id FROM object_flags WHERE box_id = ")
                .int(m.box_id)
                .push(" AND flag_lc = ")
                .str(flag_lc)
                .push(")");
        }
        Filter::Flag { flag_lc, set } => {
            // A per-row probe of the (item, flag) primary key.
            let (item, table, col) = match over {
                Over::Objects => ("o.id", "object_flags", "object_id"),
                Over::Folders => ("f.id", "folder_flags", "folder_id"),
            };
            sql.push(if *set { "EXISTS" } else { "NOT EXISTS" });
            sql.push(" (SELECT 1 FROM ").push(table).push(" g WHERE g.").push(col).push(" = ").push(item);
            sql.push(" AND g.flag_lc = ").str(flag_lc).push(")");
        }
        Filter::CreatedAfter { seq } if over == Over::Objects => {
            sql.push("o.creation_seq > ").int(*seq);
        }
        Filter::Vanished => {
            sql.push("FALSE");
        }
        other => return Err(Error::internal(format!("filter {other:?} does not apply to folders"))),
    }
    Ok(())
}

/// The sort value expression, and whether it is an integer.
fn sort_sql(sql: &mut Sql, over: Over, key: &SortKey) -> bool {
    match (over, key) {
        (Over::Objects, SortKey::Id) | (Over::Folders, SortKey::Id | SortKey::Creation) => {
            sql.push(if over == Over::Objects { "o.id" } else { "f.id" });
            true
        }
        (Over::Objects, SortKey::Date) => {
            sql.push("o.stored_at_ms");
            true
        }
        (Over::Folders, SortKey::Date) => {
            sql.push("f.created_at_ms");
            true
        }
        (Over::Objects, SortKey::Creation) => {
            sql.push("o.creation_seq");
            true
        }
        (Over::Folders, SortKey::Attribute(n)) if n == "name" => {
            sql.push("f.name");
            false
        }
        (Over::Objects, SortKey::Attribute(n)) => {
            sql.push("coalesce((SELECT a.value FROM object_attributes a WHERE a.object_id = o.id AND a.name_lc = ")
                .str(n)
                .push(" ORDER BY a.position LIMIT 1), '')");
            false
        }
        (Over::Folders, SortKey::Attribute(n)) => {
            sql.push("coalesce((SELECT a.value FROM folder_attributes a WHERE a.folder_id = f.id AND a.name_lc = ")
                .str(n)
                .push(" ORDER BY a.position LIMIT 1), '')");
            false
        }
    }
}

/// A leaf whose own index can produce matches in object-id order.
fn drives(engine: Engine, f: &Filter) -> bool {
    match f {
        Filter::Attribute { name_lc, .. } => !matches!(name_lc.as_str(), "correlationid" | "correlationtag"),
        Filter::Flag { set: true, .. } | Filter::Word { .. } => true,
        Filter::Text { needle } => needle.chars().count() >= engine.text_index_min_chars(),
        _ => false,
    }
}

/// For a page in id order: the leaf to read matches from (in id order, so the page stops
/// after `limit + 1` rows instead of gathering every match) and the rest of the filter.
fn pick_driver(engine: Engine, f: &Filter) -> Option<(&Filter, Option<Filter>)> {
    match f {
        f if drives(engine, f) => Some((f, None)),
        Filter::All(list) => {
            let i = list.iter().position(|f| drives(engine, f))?;
            let rest: Vec<Filter> = list.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, x)| x.clone()).collect();
            Some((&list[i], (!rest.is_empty()).then_some(Filter::All(rest))))
        }
        _ => None,
    }
}

/// The scope condition on `folder_col`.
fn scope_sql(sql: &mut Sql, over: Over, folder_col: &str, scope: &Scope) {
    if scope.recursive {
        sql.push(" AND ").push(folder_col).push(" IN (SELECT s.id FROM folders s, folders t WHERE t.id = ");
        sql.int(scope.folder_id);
        sql.push(
            " AND s.box_id = t.box_id AND s.ancestry >= t.ancestry \
             AND s.ancestry < substr(t.ancestry, 1, length(t.ancestry) - 1) || '0')",
        );
    } else if over == Over::Objects {
        sql.push(" AND o.folder_id = ").int(scope.folder_id);
    } else {
        sql.push(" AND f.parent_id = ").int(scope.folder_id);
    }
}

/// A page in id order read from the driving leaf's index (`CROSS JOIN` keeps that order).
fn driven_page_sql(
    engine: Engine,
    b: &BoxRow,
    q: &SearchQuery,
    driver: &Filter,
    rest: Option<&Filter>,
    limit: u32,
) -> Result<Sql> {
    let mut sql = Sql::default();
    let (cmp, dir) = if q.sort.descending { ("<", "DESC") } else { (">", "ASC") };
    let key = match driver {
        Filter::Attribute { name_lc, value } => {
            sql.push("SELECT DISTINCT d.object_id AS id, d.object_id AS k FROM object_attributes d ");
            sql.push(engine.ordered_join());
            sql.push(" objects o ON o.id = d.object_id");
            sql.push(" WHERE d.box_id = ").int(b.id).push(" AND d.name_lc = ").str(name_lc);
            sql.push(" AND d.value = ").str(value);
            "d.object_id"
        }
        Filter::Flag { flag_lc, .. } => {
            sql.push("SELECT o.id AS id, o.id AS k FROM object_flags d ").push(engine.ordered_join());
            sql.push(" objects o ON o.id = d.object_id");
            sql.push(" WHERE d.box_id = ").int(b.id).push(" AND d.flag_lc = ").str(flag_lc);
            "d.object_id"
        }
        Filter::Text { needle } => engine.text_source(&mut sql, needle),
        Filter::Word { word } => engine.word_source(&mut sql, word),
        other => return Err(Error::internal(format!("{other:?} cannot drive a page"))),
    };
    if let Some(after) = &q.after {
        sql.push(" AND ").push(key).push(" ").push(cmp).push(" ").int(after.id);
    }
    sql.push(" AND o.box_id = ").int(b.id);
    if let Some(scope) = &q.scope {
        scope_sql(&mut sql, Over::Objects, "o.folder_id", scope);
    }
    if let Some(rest) = rest {
        sql.push(" AND ");
        filter_sql(&mut sql, Mode { engine, over: Over::Objects, box_id: b.id, probe: true }, rest)?;
    }
    sql.push(" ORDER BY ").push(key).push(" ").push(dir).push(" LIMIT ").int(i64::from(limit) + 1);
    Ok(sql)
}

/// `SELECT id, k FROM ... WHERE <box, scope, filter> [AND (k, id) after] ORDER BY k, id LIMIT n`:
/// the ids (and sort values) of one page plus one row to tell whether more follow.
pub fn page_sql(engine: Engine, b: &BoxRow, over: Over, q: &SearchQuery, limit: u32) -> Result<(Sql, bool)> {
    if over == Over::Objects
        && q.sort.key == SortKey::Id
        && let Some((driver, rest)) = q.filter.as_ref().and_then(|f| pick_driver(engine, f))
    {
        return Ok((driven_page_sql(engine, b, q, driver, rest.as_ref(), limit)?, true));
    }
    let (table, alias, folder_col) = match over {
        Over::Objects => ("objects", "o", "o.folder_id"),
        Over::Folders => ("folders", "f", "f.id"),
    };
    let mut sql = Sql::default();
    sql.push("SELECT id, k FROM (SELECT ").push(alias).push(".id AS id, ");
    let int_key = sort_sql(&mut sql, over, &q.sort.key);
    sql.push(" AS k FROM ").push(table).push(" ").push(alias).push(" WHERE ").push(alias).push(".box_id = ").int(b.id);
    if let Some(scope) = &q.scope {
        scope_sql(&mut sql, over, folder_col, scope);
    }
    if let Some(f) = &q.filter {
        sql.push(" AND ");
        filter_sql(&mut sql, Mode { engine, over, box_id: b.id, probe: false }, f)?;
    }
    sql.push(") page");
    let (cmp, dir) = if q.sort.descending { ("<", "DESC") } else { (">", "ASC") };
    if let Some(after) = &q.after {
        if q.sort.key == SortKey::Id {
            // Storage order: the id alone is the key (a plain range on the box index).
            sql.push(" WHERE id ").push(cmp).push(" ").int(after.id);
        } else {
            sql.push(" WHERE (k, id) ").push(cmp).push(" (");
            match &after.value {
                SortValue::Int(v) => sql.int(*v),
                SortValue::Text(v) => sql.str(v),
            };
            sql.push(", ").int(after.id).push(")");
        }
    }
    sql.push(" ORDER BY k ").push(dir).push(", id ").push(dir).push(" LIMIT ").int(i64::from(limit) + 1);
    Ok((sql, int_key))
}

/// Run a page query: the (id, sort value) rows, at most `limit`, and the position after the
/// last one if more rows follow.
pub async fn page_ids(
    engine: Engine,
    conn: &mut impl Conn,
    b: &BoxRow,
    over: Over,
    q: &SearchQuery,
) -> Result<(Vec<i64>, Option<SearchPosition>)> {
    let (sql, int_key) = page_sql(engine, b, over, q, q.limit)?;
    let rows = sql.fetch_all_planned(conn, engine.cache_search_plans()).await?;
    let more = rows.len() > q.limit as usize;
    let mut ids = Vec::with_capacity(rows.len().min(q.limit as usize));
    let mut last = None;
    for row in rows.into_iter().take(q.limit as usize) {
        let id: i64 = row.try_get(0)?;
        let value = if int_key { SortValue::Int(row.try_get(1)?) } else { SortValue::Text(row.try_get(1)?) };
        ids.push(id);
        last = Some(SearchPosition { value, id });
    }
    Ok((ids, if more { last } else { None }))
}

/// `?, ?, ?` with the ids bound.
pub(super) fn in_list(sql: &mut Sql, ids: &[i64]) {
    sql.push("(");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.int(*id);
    }
    sql.push(")");
}

/// `ids` as `open` id, id, ... `close`.
pub fn joined(ids: &[i64], open: char, close: char) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(ids.len() * 8 + 2);
    out.push(open);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{id}");
    }
    out.push(close);
    out
}

/// Ids per batched load: a bounded answer per query (and, for the loads that bind each id,
/// well inside SQLite's bound-variable limit).
const LOAD_CHUNK: usize = 500;

/// Load objects by internal id, in the order given, with one query per 500.
pub async fn load_objects(engine: Engine, conn: &mut impl Conn, ids: &[i64]) -> Result<Vec<Object>> {
    load_objects_with(engine, conn, ids, true, true).await
}

/// Load objects by internal id, in the order given, leaving out their attributes and/or
/// part metadata when they are not wanted (sync events carry neither).
pub async fn load_objects_with(
    engine: Engine,
    conn: &mut impl Conn,
    ids: &[i64],
    attributes: bool,
    parts: bool,
) -> Result<Vec<Object>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(LOAD_CHUNK) {
        out.extend(load_object_chunk(engine, conn, chunk, attributes, parts).await?);
    }
    Ok(out)
}

/// A part's metadata as [`load_object_chunk`] reads it: part id, content type,
/// disposition, id, location, encoding, file icon, size, blob key.
type PartColumns = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
);

/// An object as [`load_object_chunk`] reads it: id, public id, folder public id, folder
/// path, correlation id and tag, payload type, stored at, modseq, creation modseq,
/// attributes (name, value; `None` when not asked for), flags, parts (`None` when not
/// asked for).
type ObjectColumns = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    Option<Vec<(String, String)>>,
    Option<Vec<String>>,
    Option<Vec<PartColumns>>,
);

/// The objects of `ids` (at most [`LOAD_CHUNK`]) in one row: one JSON array with an item
/// per object, each with its attributes, flags and parts nested. On a pooled connection
/// every row a query returns is handed from the database's thread to the request's, so a
/// chunk of 500 objects is one hand-off instead of 500.
async fn load_object_chunk(
    engine: Engine,
    conn: &mut impl Conn,
    ids: &[i64],
    with_attributes: bool,
    with_parts: bool,
) -> Result<Vec<Object>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let nested = |columns: &[&str], table: &str, order: &str| {
        engine.json_rows(columns, &format!("{table} WHERE object_id = o.id"), order)
    };
    let attributes =
        if with_attributes { nested(&["name", "value"], "object_attributes", "rowid") } else { "NULL".into() };
    let flags = nested(&["flag"], "object_flags", "rowid");
    let parts = if with_parts {
        nested(
            &[
                "part_id",
                "content_type",
                "content_disposition",
                "content_id",
                "content_location",
                "content_encoding",
                "file_icon",
                "size",
                "blob_key",
            ],
            "payload_parts",
            "ordinal",
        )
    } else {
        "NULL".into()
    };
    let mut from = Sql::default();
    from.push("objects o JOIN folders f ON f.id = o.folder_id WHERE o.id IN ");
    engine.id_set(&mut from, ids);
    let items = engine.json_items(
        &[
            "o.id",
            "o.public_id",
            "f.public_id",
            "f.path",
            "o.correlation_id",
            "o.correlation_tag",
            "o.payload_type",
            "o.stored_at_ms",
            "o.last_mod_seq",
            "o.creation_seq",
            &attributes,
            &flags,
            &parts,
        ],
        &from.text,
    );
    let mut sql = Sql::default();
    sql.push("SELECT CAST(").push(&items).push(" AS TEXT)");
    sql.binds = from.binds;
    let rows = sql.fetch_all(conn).await?;
    let json: String = match rows.first() {
        Some(row) => row.try_get(0)?,
        None => return Ok(Vec::new()),
    };
    let mut by_id: HashMap<i64, Object> = HashMap::with_capacity(ids.len());
    for (
        id,
        public_id,
        folder_public_id,
        folder_path,
        correlation_id,
        correlation_tag,
        payload_type,
        stored_at_ms,
        last_mod_seq,
        creation_seq,
        attributes,
        flags,
        parts,
    ) in stored_rows::<ObjectColumns>(&json)?
    {
        by_id.insert(
            id,
            Object {
                id,
                public_id,
                folder_public_id,
                folder_path,
                attributes: group_attributes(attributes.unwrap_or_default()),
                flags: flags.unwrap_or_default(),
                correlation_id,
                correlation_tag,
                payload_type,
                parts: parts.unwrap_or_default().into_iter().map(part_of).collect(),
                stored_at_ms,
                last_mod_seq,
                creation_seq,
            },
        );
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// The rows of a nested JSON array the database built.
fn part_of(
    (part_id, content_type, content_disposition, content_id, content_location, content_encoding, file_icon, size, key): PartColumns,
) -> PayloadPart {
    PayloadPart {
        part_id,
        content_type,
        content_disposition,
        content_id,
        content_location,
        content_encoding,
        file_icon,
        size: size.max(0) as u64,
        data: match key {
            Some(key) => PartData::Blob { key },
            None => PartData::Inline(Vec::new()),
        },
    }
}

/// Load folders by internal id, in the order given, with two queries per 500.
pub async fn load_folders(conn: &mut impl Conn, ids: &[i64]) -> Result<Vec<Folder>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(LOAD_CHUNK) {
        out.extend(load_folder_chunk(conn, chunk).await?);
    }
    Ok(out)
}

async fn load_folder_chunk(conn: &mut impl Conn, ids: &[i64]) -> Result<Vec<Folder>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::default();
    sql.push("SELECT ")
        .push(FOLDER_COLUMNS)
        .push(" FROM folders f LEFT JOIN folders p ON p.id = f.parent_id WHERE f.id IN ");
    in_list(&mut sql, ids);
    let mut by_id: HashMap<i64, Folder> = HashMap::with_capacity(ids.len());
    for row in sql.fetch_all(conn).await? {
        let id: i64 = row.try_get("id")?;
        by_id.insert(
            id,
            Folder {
                id,
                public_id: row.try_get("public_id")?,
                parent_public_id: row.try_get("parent_public_id")?,
                name: row.try_get("name")?,
                is_root: row.try_get::<i64, _>("is_root")? != 0,
                path: row.try_get("path")?,
                attributes: Vec::new(),
                created_at_ms: row.try_get("created_at_ms")?,
                last_mod_seq: row.try_get("last_mod_seq")?,
            },
        );
    }
    let mut sql = Sql::default();
    sql.push("SELECT folder_id, name, value FROM folder_attributes WHERE folder_id IN ");
    in_list(&mut sql, ids);
    sql.push(" ORDER BY folder_id, name_lc, position");
    let mut grouped: HashMap<i64, Vec<(String, String)>> = HashMap::new();
    for row in sql.fetch_all(conn).await? {
        grouped.entry(row.try_get(0)?).or_default().push((row.try_get(1)?, row.try_get(2)?));
    }
    for (id, rows) in grouped {
        if let Some(f) = by_id.get_mut(&id) {
            f.attributes = group_attributes(rows);
        }
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }

    #[test]
    fn pages_bind_every_value() {
        let b = BoxRow { id: 7, store: "base".into(), address: "a".into(), modseq: 0, validity: 1 };
        let q = SearchQuery {
            filter: Some(Filter::All(vec![
                Filter::Attribute { name_lc: "from".into(), value: "x'; DROP TABLE objects; --".into() },
                Filter::Not(Box::new(Filter::Flag { flag_lc: "\\seen".into(), set: true })),
            ])),
            scope: None,
            sort: Sort { key: SortKey::Date, descending: true },
            after: Some(SearchPosition { value: SortValue::Int(5), id: 9 }),
            limit: 10,
        };
        let (sql, int_key) = page_sql(Engine::Sqlite, &b, Over::Objects, &q, 10).unwrap();
        assert!(int_key);
        assert!(!sql.text.contains("DROP"), "{}", sql.text);
        assert_eq!(sql.text.matches('?').count(), sql.binds.len());
        assert!(sql.text.contains("(k, id) < (?, ?)"), "{}", sql.text);
    }

    #[test]
    fn id_ordered_pages_are_read_from_the_driving_index() {
        let b = BoxRow { id: 7, store: "base".into(), address: "a".into(), modseq: 0, validity: 1 };
        let mut q = SearchQuery {
            filter: Some(Filter::All(vec![
                Filter::Stored { min_ms: Some(1), max_ms: None },
                Filter::Flag { flag_lc: "\\seen".into(), set: true },
                Filter::Attribute { name_lc: "from".into(), value: "x".into() },
            ])),
            scope: None,
            sort: Sort { key: SortKey::Id, descending: false },
            after: Some(SearchPosition { value: SortValue::Int(42), id: 42 }),
            limit: 10,
        };
        let (sql, _) = page_sql(Engine::Sqlite, &b, Over::Objects, &q, 10).unwrap();
        assert!(sql.text.contains("FROM object_flags d CROSS JOIN objects o"), "{}", sql.text);
        assert!(sql.text.contains("d.object_id > ?"), "{}", sql.text);
        assert!(
            sql.text.contains("EXISTS (SELECT 1 FROM object_attributes a WHERE a.object_id = o.id"),
            "{}",
            sql.text
        );
        assert_eq!(sql.text.matches('?').count(), sql.binds.len());
        // Short substrings, negations and other sorts use the box's own order instead.
        q.filter = Some(Filter::Text { needle: "ab".into() });
        assert!(!page_sql(Engine::Sqlite, &b, Over::Objects, &q, 10).unwrap().0.text.contains("CROSS JOIN"));
        q.filter = Some(Filter::Not(Box::new(Filter::Flag { flag_lc: "\\seen".into(), set: true })));
        assert!(!page_sql(Engine::Sqlite, &b, Over::Objects, &q, 10).unwrap().0.text.contains("CROSS JOIN"));
        q.filter = Some(Filter::Flag { flag_lc: "\\seen".into(), set: true });
        q.sort = Sort { key: SortKey::Date, descending: true };
        assert!(!page_sql(Engine::Sqlite, &b, Over::Objects, &q, 10).unwrap().0.text.contains("CROSS JOIN"));
    }
}
