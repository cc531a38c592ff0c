//! The PostgreSQL engine's own guarantees: writers of different boxes do not wait for each
//! other, writers of one box queue on its row and its lastModSeq values stay unique across
//! servers; a server that cannot be reached stops the start with an error that says so; one
//! that goes away while the server runs makes requests fail quickly with 503 and an OMA
//! body, and the server recovers by itself when it returns. And the command line works on
//! PostgreSQL as on SQLite.
//!
//! The outage tests need their own PostgreSQL cluster (they stop it): they run when
//! `NMS_TEST_DATABASE_URL` is set (the suite's PostgreSQL pass) and make one with
//! `.ci/postgres`; without it they print a note and pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cpm_nms::auth::hash_password;
use cpm_nms::config::Settings;
use cpm_nms::startup::Application;
use serde_json::{Value, json};

#[path = "support/database.rs"]
mod database;
use database::TestDatabase;

const ALICE: &str = "tel:+12125551212";
const BOB: &str = "tel:+13105550000";
/// The cursor secret every node of one database shares.
const SECRET: &str = "a secret the nodes of one database share";

/// A private PostgreSQL cluster made by `.ci/postgres`, removed when dropped.
struct Cluster {
    dir: String,
    url: String,
}

impl Cluster {
    /// `None` (with a note) when the suite does not run on PostgreSQL.
    fn start() -> Option<Self> {
        if std::env::var("NMS_TEST_DATABASE_URL").map_or(true, |u| u.is_empty()) {
            eprintln!("note: NMS_TEST_DATABASE_URL is not set; PostgreSQL outage test skipped");
            return None;
        }
        let out = script(&[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let exports = String::from_utf8_lossy(&out.stdout).into_owned();
        let var = |name: &str| {
            exports
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{name} in {exports}"))
                .to_string()
        };
        Some(Self { dir: var("NMS_TEST_PG_DIR"), url: var("NMS_TEST_DATABASE_URL") })
    }

    fn pause(&self) {
        assert!(script(&["pause", &self.dir]).status.success());
    }

    fn resume(&self) {
        assert!(script(&["resume", &self.dir]).status.success());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = script(&["stop", &self.dir]);
    }
}

/// A server on `database_url` with alice (her box) and bob (his), in this process: its base
/// URL for each box.
async fn serve(database_url: &str, accounts: bool) -> (String, tempfile::TempDir) {
    serve_with(database_url, accounts, |_| {}).await
}

async fn serve_with(
    database_url: &str,
    accounts: bool,
    tweak: impl FnOnce(&mut Settings),
) -> (String, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut s = Settings { data_dir: data.path().to_path_buf(), ..Default::default() };
    tweak(&mut s);
    s.storage.database_url = database_url.to_string();
    s.auth.cursor_secret = SECRET.into();
    s.server.listen = "127.0.0.1:0".into();
    s.server.workers = 2;
    let app = Application::build(s).await.unwrap();
    let url = app.public_url().to_string();
    if accounts {
        let nms = app.nms().clone();
        for (name, addr) in [("alice", ALICE), ("bob", BOB)] {
            nms.provision_box("base", addr).await.unwrap();
            let boxes = vec![("base".to_string(), addr.to_string())];
            nms.store().create_account(name, &hash_password("pw").unwrap(), false, &boxes).await.unwrap();
        }
    }
    tokio::spawn(app.run_until_stopped());
    (url, data)
}

fn box_url(server: &str, addr: &str) -> String {
    format!("{server}/nms/v1/base/{}", percent_encoding::utf8_percent_encode(addr, percent_encoding::NON_ALPHANUMERIC))
}

async fn deposit_into(client: &reqwest::Client, base: &str, user: &str) -> reqwest::Response {
    client
        .post(format!("{base}/objects"))
        .basic_auth(user, Some("pw"))
        .json(&json!({"object": {"parentFolderPath": "/p"}}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn writers_of_one_box_queue_on_its_row_while_other_boxes_go_on() {
    use sqlx::{Connection, Executor};
    let Some(db) = TestDatabase::create("nms_pg").await else { return };
    let (server, _data) = serve(&db.url, true).await;
    let client = reqwest::Client::new();
    // Warm the login cache and make the folder, so the writes below only wait for rows.
    for (user, addr) in [("alice", ALICE), ("bob", BOB)] {
        assert_eq!(deposit_into(&client, &box_url(&server, addr), user).await.status(), 201);
    }
    // Another session holds alice's box row, as a long write to her box would.
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    holder.execute("BEGIN").await.unwrap();
    let address: String = sqlx::query_scalar("SELECT address FROM boxes WHERE address = $1 FOR UPDATE")
        .bind(ALICE)
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(address, ALICE);
    let alice = tokio::spawn({
        let (client, base) = (client.clone(), box_url(&server, ALICE));
        async move { deposit_into(&client, &base, "alice").await.status() }
    });
    // Bob's deposits do not wait for alice's box.
    for _ in 0..3 {
        assert_eq!(deposit_into(&client, &box_url(&server, BOB), "bob").await.status(), 201);
    }
    assert!(!alice.is_finished(), "alice's deposit waits for her box row");
    holder.execute("COMMIT").await.unwrap();
    assert_eq!(alice.await.unwrap(), 201);
}

#[tokio::test]
async fn a_statement_past_its_timeout_is_503_and_the_box_serves_again() {
    use sqlx::{Connection, Executor};
    let Some(db) = TestDatabase::create("nms_pg").await else { return };
    let (server, _data) = serve_with(&db.url, true, |s| s.storage.postgres.statement_timeout_ms = 300).await;
    let client = reqwest::Client::new();
    let base = box_url(&server, ALICE);
    assert_eq!(deposit_into(&client, &base, "alice").await.status(), 201);
    // A long write to alice's box holds its row past the statement timeout.
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    holder.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT id FROM boxes WHERE address = $1 FOR UPDATE").bind(ALICE).execute(&mut holder).await.unwrap();
    let res = deposit_into(&client, &base, "alice").await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["requestError"]["serviceException"]["messageId"], "SVC0001", "{body}");
    holder.execute("COMMIT").await.unwrap();
    assert_eq!(deposit_into(&client, &base, "alice").await.status(), 201);
}

#[tokio::test]
async fn concurrent_writers_on_two_servers_get_unique_increasing_modseqs() {
    let Some(db) = TestDatabase::create("nms_pg").await else { return };
    let (a, _da) = serve(&db.url, true).await;
    let (b, _datab) = serve(&db.url, false).await;
    let client = reqwest::Client::new();
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let (client, base) = (client.clone(), box_url(if i % 2 == 0 { &a } else { &b }, ALICE));
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for _ in 0..10 {
                    let res = deposit_into(&client, &base, "alice").await;
                    assert_eq!(res.status(), 201);
                    let url =
                        res.json::<Value>().await.unwrap()["reference"]["resourceURL"].as_str().unwrap().to_string();
                    let obj: Value =
                        client.get(&url).basic_auth("alice", Some("pw")).send().await.unwrap().json().await.unwrap();
                    seqs.push(obj["object"]["lastModSeq"].as_i64().unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in writers {
        let seqs = w.await.unwrap();
        assert!(seqs.windows(2).all(|p| p[0] < p[1]), "one writer's deposits in order: {seqs:?}");
        all.extend(seqs);
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "every deposit its own lastModSeq");
}

fn script(args: &[&str]) -> Output {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/postgres");
    Command::new(path).args(args).output().expect("run .ci/postgres")
}

fn cpm(dir: &Path, database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpm-nms"))
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(args)
        // The command line's administration seals nothing: it needs no shared secret.
        .env_remove("NMS__AUTH__CURSOR_SECRET")
        .env("NMS__STORAGE__DATABASE_URL", database_url)
        .env("NMS__STORAGE__POSTGRES__ACQUIRE_TIMEOUT_SECS", "2")
        .output()
        .expect("run cpm-nms")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn a_database_that_cannot_be_reached_stops_the_start_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1; the password stays out of the message.
    let out = Command::new(env!("CARGO_BIN_EXE_cpm-nms"))
        .args(["--data-dir", dir.path().to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"])
        .env("NMS__AUTH__CURSOR_SECRET", SECRET)
        .env("NMS__STORAGE__DATABASE_URL", "postgres://nms:hunter2@127.0.0.1:1/nms")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("storage.database_url") && msg.contains("Connection refused"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
}

#[test]
fn the_command_line_works_on_postgresql() {
    let Some(pg) = Cluster::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = cpm(dir.path(), &pg.url, &["migrate"]);
        assert!(out.status.success(), "migrations apply, then again as a no-op: {}", text(&out));
    }
    let add = ["account", "add", "--name", "alice", "--box", ALICE, "--password", "pw"];
    let out = cpm(dir.path(), &pg.url, &add);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&cpm(dir.path(), &pg.url, &["account", "list"])).contains("alice"));
    let out = cpm(dir.path(), &pg.url, &["box", "reset", ALICE]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cpm(dir.path(), &pg.url, &["sweep"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cpm(dir.path(), &pg.url, &["account", "remove", "--name", "alice"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&cpm(dir.path(), &pg.url, &["account", "list"])).contains("alice"));
}

#[tokio::test]
async fn a_database_lost_mid_run_is_503_and_recovered_without_a_restart() {
    let Some(pg) = Cluster::start() else { return };
    let data = tempfile::tempdir().unwrap();
    let mut s = Settings { data_dir: data.path().to_path_buf(), ..Default::default() };
    s.storage.database_url = pg.url.clone();
    s.auth.cursor_secret = SECRET.into();
    s.storage.postgres.acquire_timeout_secs = 2;
    s.server.listen = "127.0.0.1:0".into();
    s.server.workers = 2;
    let app = Application::build(s).await.unwrap();
    let url = app.public_url().to_string();
    let nms = app.nms().clone();
    nms.provision_box("base", ALICE).await.unwrap();
    let boxes = vec![("base".to_string(), ALICE.to_string())];
    nms.store().create_account("alice", &hash_password("pw").unwrap(), false, &boxes).await.unwrap();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let base = format!(
        "{url}/nms/v1/base/{}",
        percent_encoding::utf8_percent_encode(ALICE, percent_encoding::NON_ALPHANUMERIC)
    );
    let deposit = || async {
        client
            .post(format!("{base}/objects"))
            .basic_auth("alice", Some("pw"))
            .json(&json!({"object": {"parentFolderPath": "/outage",
                "attributes": {"attribute": [{"name": "Subject", "value": ["kept"]}]}}}))
            .send()
            .await
    };
    let search = || async {
        client
            .post(format!("{base}/objects/operations/search"))
            .basic_auth("alice", Some("pw"))
            .json(&json!({"selectionCriteria": {"maxEntries": 10}}))
            .send()
            .await
    };
    let before = deposit().await.unwrap();
    assert_eq!(before.status(), 201);
    let kept = before.json::<Value>().await.unwrap()["reference"]["resourceURL"].as_str().unwrap().to_string();

    pg.pause();
    // Logins are cached, so these reach the store: each is answered (no hang) with 503 and
    // an OMA body, and says when to retry.
    for res in [deposit().await.unwrap(), search().await.unwrap()] {
        assert_eq!(res.status(), 503);
        assert!(res.headers().contains_key("retry-after"));
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["requestError"]["serviceException"]["messageId"], "SVC0001", "{body}");
    }
    // Readiness says which dependency is down; liveness does not look.
    let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["failed"], json!(["database"]), "{body}");
    assert_eq!(body["checks"]["payload_store"], "ok", "{body}");
    assert_eq!(client.get(format!("{url}/healthz")).send().await.unwrap().status(), 200);

    pg.resume();
    // The pool reconnects on its own: the same process serves again, with what it had.
    let started = Instant::now();
    let after = loop {
        let res = deposit().await.unwrap();
        if res.status() == 201 || started.elapsed() > Duration::from_secs(30) {
            break res;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(after.status(), 201, "recovered without a restart");
    assert_eq!(client.get(format!("{url}/readyz")).send().await.unwrap().status(), 200, "ready again");
    let res = client.get(&kept).basic_auth("alice", Some("pw")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the object deposited before the outage");
    let found: Value = search().await.unwrap().json().await.unwrap();
    assert_eq!(found["objectList"]["object"].as_array().unwrap().len(), 2, "{found}");
}

/// The store of a server on `database_url`, as a second node would open it.
async fn node_store(database_url: &str) -> (std::sync::Arc<dyn cpm_nms::store::Store>, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut s = Settings { data_dir: data.path().to_path_buf(), ..Default::default() };
    s.storage.database_url = database_url.to_string();
    s.auth.cursor_secret = SECRET.into();
    (cpm_nms::startup::open_store(&s).await.unwrap(), data)
}

#[tokio::test]
async fn nodes_provisioning_one_box_at_once_get_the_same_box() {
    let Some(db) = TestDatabase::create("nms_pg").await else { return };
    let (a, _da) = node_store(&db.url).await;
    let (b, _datab) = node_store(&db.url).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.provision_box("base", "tel:+15550001", &format!("root{i}"), 1).await })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().expect("every provisioning succeeds").id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one box: {ids:?}");
}

#[tokio::test]
async fn the_subscription_limit_holds_against_creators_on_two_nodes() {
    use cpm_nms::model::Subscription;
    let Some(db) = TestDatabase::create("nms_pg").await else { return };
    let (a, _da) = node_store(&db.url).await;
    let (b, _datab) = node_store(&db.url).await;
    let bx = a.provision_box("base", ALICE, "root", 1).await.unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let s = Subscription {
                id: 0,
                box_id: bx.id,
                public_id: format!("sub{i}"),
                principal: "alice".into(),
                channel_id: None,
                notify_url: "https://example.com/hook".into(),
                callback_data: None,
                notification_format: None,
                filter: None,
                client_correlator: None,
                duration_secs: 3600,
                expires_at_ms: i64::MAX / 2,
                restart_token: String::new(),
                position_validity: bx.validity,
                position_modseq: bx.modseq,
                position_within: None,
                next_index: 1,
            };
            tokio::spawn(async move { store.create_subscription(&s, 3).await.unwrap() })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        created += usize::from(t.await.unwrap().value.is_some());
    }
    assert_eq!(created, 3, "max_per_box holds across nodes");
}
