//! Every statement the server runs while the conformance suite drives it (deposits, flags,
//! folders, copy and move, bulk, search, pathToId, subscriptions, long polls and the CPM
//! cases) reads the large tables through an index: the database's plan of each shows no
//! full scan of objects, attributes, flags, parts, search text, tombstones or folders. A
//! statement that scans one of them costs time in proportion to the box or the store, as
//! the session-rule check once did on every DELETE.
//!
//! The server runs as a child process logging each statement it executes; after the run,
//! each distinct statement is planned (`EXPLAIN QUERY PLAN` on SQLite; on PostgreSQL, when
//! `NMS_TEST_DATABASE_URL` names one, `EXPLAIN` with sequential scans priced out, so that
//! a sequential scan in the plan means no index can answer).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/database.rs"]
mod database;
#[path = "support/serve.rs"]
mod serve;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use database::TestDatabase;
use nms_conformance::{Options, run, select};
use serve::Served;
use sqlx::{Connection, Row};

const ALICE: &str = "tel:+12125551212";
const PW: &str = "pw";

/// Tables that grow with the boxes and the store.
const LARGE: &[&str] = &[
    "objects",
    "object_attributes",
    "object_flags",
    "payload_parts",
    "object_search",
    "tombstones",
    "folders",
    "folder_attributes",
    "folder_flags",
];

/// `cpm-nms` with the data dir `data` (and the database `db`, when given), nothing else
/// from the environment.
fn cpm_nms(data: &std::path::Path, db: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cpm-nms"));
    for (k, _) in std::env::vars() {
        if k.starts_with("NMS__") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--data-dir").arg(data);
    if let Some(url) = db {
        cmd.env("NMS__STORAGE__DATABASE_URL", url)
            .env("NMS__AUTH__CURSOR_SECRET", "query-plan-test-secret-of-32-bytes!!");
    }
    cmd
}

/// Run the conformance suite against a server over `data` (and `db`); every distinct
/// statement the server executed meanwhile.
async fn statements_of_a_conformance_run(data: &std::path::Path, db: Option<&str>) -> BTreeSet<String> {
    for args in [
        ["account", "add", "--name", "alice", "--box", ALICE, "--password", PW].as_slice(),
        ["account", "add", "--name", "pf", "--service", "--box", ALICE, "--password", PW].as_slice(),
    ] {
        let out = cpm_nms(data, db).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut served = Served::start_logging(cpm_nms(data, db), "info,sqlx::query=debug");
    let opts = Options {
        bearer: None,
        base_url: served.url.clone(),
        user: "alice".into(),
        password: PW.into(),
        box_id: ALICE.into(),
        store: "base".into(),
        timeout: Duration::from_secs(60),
        channel_root: None,
        format: Default::default(),
    };
    let report = run(&opts, &select(&[]), std::future::pending(), |_| {}).await;
    assert_eq!(report.setup_error, None);
    let failed: Vec<String> = report.outcomes.iter().filter(|o| o.result.is_err()).map(|o| o.line()).collect();
    assert!(failed.is_empty(), "the run must pass to mean anything:\n{}", failed.join("\n"));
    // The last statements reach the log shortly after the last answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let statements: BTreeSet<String> = served
        .take_log()
        .into_iter()
        .filter_map(|(_, fields)| fields["db.statement"].as_str().map(str::to_string))
        .flat_map(|s| one_by_one(&s))
        .filter(|s| !s.is_empty())
        .collect();
    served.kill();
    assert!(statements.len() > 100, "too few statements logged: {}", statements.len());
    // Writes' statements are logged too, whichever connection runs them (on SQLite the
    // writer's own, `src/store/sql/direct.rs`).
    assert!(
        statements.iter().any(|s| s.starts_with("UPDATE boxes SET modseq = modseq + 1")),
        "no write statement logged"
    );
    statements
}

/// The statements of `sql`, which may run several at once (separated by `;` outside quotes),
/// each trimmed: each is planned on its own.
fn one_by_one(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    for (i, c) in sql.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, ';') => {
                out.push(sql[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(sql[start..].trim().to_string());
    out
}

/// Whether the planner must be asked: statements that read rows (a plain `INSERT ..
/// VALUES` reads none; transaction control and settings plan nothing).
fn plans_something(sql: &str) -> bool {
    let head = sql.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
    match head.as_str() {
        "SELECT" | "UPDATE" | "DELETE" | "WITH" => true,
        "INSERT" => sql.to_ascii_uppercase().contains("SELECT"),
        _ => false,
    }
}

/// The highest `$n` placeholder of `sql`.
fn placeholders(sql: &str) -> usize {
    let mut max = 0;
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        let digits: String = rest[i + 1..].chars().take_while(char::is_ascii_digit).collect();
        max = max.max(digits.parse().unwrap_or(0));
        rest = &rest[i + 1..];
    }
    max
}

/// The tables of `sql` by the name they go by in it (alias or own name).
fn tables_by_alias(sql: &str) -> BTreeMap<String, String> {
    const KEYWORDS: &[&str] = &[
        "WHERE",
        "JOIN",
        "LEFT",
        "INNER",
        "CROSS",
        "ON",
        "ORDER",
        "GROUP",
        "LIMIT",
        "SET",
        "USING",
        "AND",
        "OR",
        "UNION",
        "RETURNING",
        "WINDOW",
        "HAVING",
        "NATURAL",
        "OUTER",
        "VALUES",
        "SELECT",
    ];
    let tokens: Vec<&str> = sql
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';'))
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = BTreeMap::new();
    for (i, t) in tokens.iter().enumerate() {
        let t = t.to_ascii_uppercase();
        if t != "FROM" && t != "JOIN" && t != "INTO" && t != "UPDATE" {
            continue;
        }
        let Some(table) = tokens.get(i + 1) else { continue };
        let table = table.to_ascii_lowercase();
        out.insert(table.clone(), table.clone());
        let mut j = i + 2;
        if tokens.get(j).is_some_and(|a| a.eq_ignore_ascii_case("AS")) {
            j += 1;
        }
        if let Some(alias) = tokens.get(j)
            && !KEYWORDS.contains(&alias.to_ascii_uppercase().as_str())
            && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            out.insert(alias.to_ascii_lowercase(), table);
        }
    }
    out
}

/// The large table a plan line scans in full, if any: SQLite says `SCAN x` (or `SCAN x
/// USING [COVERING] INDEX i`, a walk of the whole index); PostgreSQL `Seq Scan on x`.
fn full_scan(line: &str, tables: &BTreeMap<String, String>) -> Option<String> {
    let name = if let Some(rest) = line.trim_start().strip_prefix("SCAN ") {
        if rest.contains("VIRTUAL TABLE") {
            return None;
        }
        rest.split_whitespace().next()?
    } else {
        let at = line.find("Seq Scan on ")?;
        line[at + "Seq Scan on ".len()..].split_whitespace().next()?
    };
    let table = tables.get(&name.to_ascii_lowercase()).cloned().unwrap_or_else(|| name.to_ascii_lowercase());
    LARGE.contains(&table.as_str()).then_some(table)
}

/// Fail, listing them, if any statement scans a large table.
fn assert_no_full_scans(found: Vec<(String, String)>) {
    let listed: Vec<String> = found.iter().map(|(sql, line)| format!("{line}\n    in: {sql}")).collect();
    assert!(found.is_empty(), "{} statements scan a large table in full:\n{}", found.len(), listed.join("\n"));
}

#[tokio::test]
async fn no_statement_on_the_write_sync_and_search_paths_scans_a_large_table_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let statements = statements_of_a_conformance_run(dir.path(), None).await;
    let url = format!("sqlite://{}?mode=ro", dir.path().join("nms.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut found = Vec::new();
    let mut planned = 0;
    for sql in statements.iter().filter(|s| plans_something(s)) {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(explain));
        for _ in 0..placeholders(sql) {
            q = q.bind(None::<i64>);
        }
        let rows = q.fetch_all(&mut conn).await.unwrap_or_else(|e| panic!("planning {sql}: {e}"));
        planned += 1;
        let tables = tables_by_alias(sql);
        for row in rows {
            let line: String = row.get("detail");
            if let Some(table) = full_scan(&line, &tables) {
                found.push((sql.clone(), format!("{line} ({table})")));
            }
        }
    }
    assert!(planned > 50, "only {planned} statements planned");
    assert_no_full_scans(found);
}

#[tokio::test]
async fn no_statement_on_the_write_sync_and_search_paths_scans_a_large_table_on_postgresql() {
    let Some(db) = TestDatabase::create("plans").await else {
        eprintln!("NMS_TEST_DATABASE_URL is not set: the PostgreSQL plans are not checked");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let statements = statements_of_a_conformance_run(dir.path(), Some(&db.url)).await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    // A sequential scan is chosen then only where no index can answer; a generic plan is
    // the one a prepared statement keeps for any value.
    sqlx::query("SET enable_seqscan = off").execute(&mut conn).await.unwrap();
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut conn).await.unwrap();
    let mut found = Vec::new();
    let mut planned = 0;
    for (i, sql) in statements.iter().filter(|s| plans_something(s)).enumerate() {
        let n = placeholders(sql);
        let prepare = format!("PREPARE plan_{i} AS {sql}");
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(prepare)).execute(&mut conn).await {
            panic!("preparing {sql}: {e}");
        }
        let args = vec!["NULL"; n].join(", ");
        let explain =
            if n == 0 { format!("EXPLAIN EXECUTE plan_{i}") } else { format!("EXPLAIN EXECUTE plan_{i}({args})") };
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(explain)).fetch_all(&mut conn).await;
        let rows = rows.unwrap_or_else(|e| panic!("planning {sql}: {e}"));
        planned += 1;
        let tables = tables_by_alias(sql);
        for row in rows {
            let line: String = row.get(0);
            if let Some(table) = full_scan(&line, &tables) {
                found.push((sql.clone(), format!("{} ({table})", line.trim())));
            }
        }
    }
    assert!(planned > 50, "only {planned} statements planned");
    assert_no_full_scans(found);
}

#[test]
fn aliases_and_scans_are_read_as_the_planners_write_them() {
    let sql = "SELECT o.id FROM objects o JOIN folders AS f ON f.id = o.folder_id WHERE o.box_id = $1 AND o.id > $12";
    let t = tables_by_alias(sql);
    assert_eq!(t["o"], "objects");
    assert_eq!(t["f"], "folders");
    assert_eq!(placeholders(sql), 12);
    assert_eq!(full_scan("SCAN o", &t).as_deref(), Some("objects"));
    assert_eq!(full_scan("SCAN f USING COVERING INDEX folders_box_seq", &t).as_deref(), Some("folders"));
    assert_eq!(full_scan("SEARCH o USING INDEX objects_box (box_id=?)", &t), None);
    assert_eq!(full_scan("SCAN d VIRTUAL TABLE INDEX 0:M1", &t), None);
    assert_eq!(
        full_scan("  ->  Seq Scan on objects o  (cost=0.00..1.00 rows=1 width=8)", &t).as_deref(),
        Some("objects")
    );
    assert_eq!(full_scan("SCAN subscriptions", &t), None);
    assert!(plans_something("INSERT INTO tombstones (a) SELECT 1 FROM objects"));
    assert!(!plans_something("INSERT INTO objects (a) VALUES ($1)"));
}
