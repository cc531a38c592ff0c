//! `spawn_app()`: a fresh data dir, the real application on port 0, and three logins:
//! `alice` (box tel:+12125551212), `bob` (box tel:+13105550000) and the service `pf`.

use std::path::PathBuf;

pub use crate::database::TestDatabase;
use cpm_nms::auth::hash_password;
use cpm_nms::config::Settings;
use cpm_nms::nms::Nms;
use cpm_nms::startup::Application;
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{Value, json};

pub const ALICE: &str = "tel:+12125551212";
pub const BOB: &str = "tel:+13105550000";
pub const PW: &str = "pw";
/// The cursor key of a run on PostgreSQL, which takes it from the configuration only.
const PG_CURSOR_SECRET: &str = "test-cursor-secret";

pub struct TestApp {
    pub url: String,
    pub client: Client,
    pub nms: Nms,
    pub auth: std::sync::Arc<cpm_nms::auth::Authenticator>,
    pub data: tempfile::TempDir,
    /// The test's own PostgreSQL database, when the suite runs on PostgreSQL.
    pub db: Option<TestDatabase>,
    /// The base URL of `server.metrics_listen`, when set.
    pub metrics_url: Option<String>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_over(tweak, |_| None).await
}

/// The application over the blob store `blobs` makes from the data directory's `blobs`
/// directory (`None`: the configured one).
pub async fn spawn_app_over(
    tweak: impl FnOnce(&mut Settings),
    blobs: impl FnOnce(&std::path::Path) -> Option<std::sync::Arc<dyn object_store::ObjectStore>>,
) -> TestApp {
    let data = tempfile::tempdir().expect("tempdir");
    let db = TestDatabase::create("nms_test").await;
    let mut s = Settings { data_dir: data.path().to_path_buf(), ..Default::default() };
    if let Some(db) = &db {
        s.storage.database_url = db.url.clone();
        s.auth.cursor_secret = PG_CURSOR_SECRET.into();
    }
    s.server.listen = "127.0.0.1:0".into();
    s.server.workers = 2;
    tweak(&mut s);
    let app = match blobs(&s.blob_dir()) {
        Some(store) => Application::build_with_blobs(s, store).await.expect("build app"),
        None => Application::build(s).await.expect("build app"),
    };
    let url = app.public_url().to_string();
    let nms = app.nms().clone();
    let auth = app.authenticator();
    let metrics_url = app.metrics_port().map(|p| format!("http://127.0.0.1:{p}"));
    let hash = hash_password(PW).expect("hash");
    for (name, addr, service) in [("alice", Some(ALICE), false), ("bob", Some(BOB), false), ("pf", None, true)] {
        let mut boxes = Vec::new();
        if let Some(a) = addr {
            nms.provision_box("base", a).await.expect("provision");
            boxes.push(("base".to_string(), a.to_string()));
        }
        nms.store().create_account(name, &hash, service, &boxes).await.expect("account");
    }
    tokio::spawn(app.run_until_stopped());
    let client = Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    TestApp { url, client, nms, auth, data, db, metrics_url }
}

/// Percent-encode a path segment the way the server emits it.
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl TestApp {
    /// `{url}/nms/v1/base/{encoded box}`
    pub fn base(&self, addr: &str) -> String {
        format!("{}/nms/v1/base/{}", self.url, enc(addr))
    }

    pub fn req(&self, method: Method, url: &str) -> RequestBuilder {
        self.client.request(method, url).basic_auth("alice", Some(PW)).header("Accept", "application/json")
    }

    pub fn req_as(&self, user: &str, method: Method, url: &str) -> RequestBuilder {
        self.client.request(method, url).basic_auth(user, Some(PW))
    }

    pub async fn get(&self, url: &str) -> Response {
        self.req(Method::GET, url).send().await.expect("send")
    }

    pub async fn delete(&self, url: &str) -> Response {
        self.req(Method::DELETE, url).send().await.expect("send")
    }

    pub async fn put_json(&self, url: &str, body: Value) -> Response {
        self.req(Method::PUT, url).json(&body).send().await.expect("send")
    }

    pub async fn post_json(&self, url: &str, body: Value) -> Response {
        self.req(Method::POST, url).json(&body).send().await.expect("send")
    }

    /// Create a JSON-only object in alice's box; returns its resourceURL.
    pub async fn create_object(&self, object: Value) -> String {
        let res = self.post_json(&format!("{}/objects", self.base(ALICE)), json!({ "object": object })).await;
        assert_eq!(res.status(), 201, "create object");
        let body: Value = res.json().await.expect("json");
        body["reference"]["resourceURL"].as_str().expect("resourceURL").to_string()
    }

    /// Create a folder in alice's box; returns its resourceURL.
    pub async fn create_folder(&self, folder: Value) -> String {
        let res = self.post_json(&format!("{}/folders", self.base(ALICE)), json!({ "folder": folder })).await;
        assert_eq!(res.status(), 201, "create folder");
        let body: Value = res.json().await.expect("json");
        body["reference"]["resourceURL"].as_str().expect("resourceURL").to_string()
    }

    /// The root folder URL of alice's box.
    pub async fn root(&self) -> String {
        let res = self.get(&format!("{}/folders/operations/pathToId", self.base(ALICE))).await;
        let body: Value = res.json().await.expect("json");
        body["reference"]["resourceURL"].as_str().expect("root").to_string()
    }

    /// The number of objects in alice's box (counted by the service account, which no rate
    /// limit slows).
    pub async fn object_count(&self) -> usize {
        let res = self
            .req_as("pf", Method::POST, &format!("{}/objects/operations/search", self.base(ALICE)))
            .json(&json!({"selectionCriteria": {"maxEntries": 1000}}))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.expect("json");
        v["objectList"]["object"].as_array().map_or(0, Vec::len)
    }

    /// Files currently under the blob directory (`blobs/..` and `tmp/..`), but for the lock
    /// files that say which process owns a directory of temporaries.
    pub fn blob_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, out)
                    } else if p.extension().is_none_or(|x| x != "lock") {
                        out.push(p)
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data.path().join("blobs"), &mut out);
        out
    }
}

/// Assert an OMA error body with the given status and messageId; returns the exception.
pub async fn assert_error(res: Response, status: u16, message_id: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(ct.starts_with("application/json"), "error content type {ct}");
    let body: Value = res.json().await.expect("json error body");
    let err = &body["requestError"];
    let exc = if err["serviceException"].is_object() { &err["serviceException"] } else { &err["policyException"] };
    assert_eq!(exc["messageId"], message_id, "messageId in {body}");
    assert!(exc["text"].is_string());
    exc.clone()
}

/// A multipart body built by hand (so tests control every byte): the conformance runner's.
pub use nms_conformance::http::Multipart;

/// An empty `multipart/form-data` deposit body.
pub fn form() -> Multipart {
    Multipart::new("outer-BOUNDARY-123")
}

/// A nested multipart payload (`multipart/mixed` etc.) with the given inner parts.
/// One inner part: its headers and content.
pub type InnerPart<'a> = (&'a [(&'a str, &'a str)], &'a [u8]);

pub fn nested(subtype_params: &str, boundary: &str, parts: &[InnerPart<'_>]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (headers, content) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        for (k, v) in *headers {
            body.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--").as_bytes());
    (format!("{subtype_params}; boundary=\"{boundary}\""), body)
}

impl TestApp {
    /// POST a multipart deposit to alice's box.
    pub async fn deposit(&self, content_type: &str, body: Vec<u8>) -> Response {
        self.req(Method::POST, &format!("{}/objects", self.base(ALICE)))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("send")
    }

    /// Deposit and return the created object's JSON (after GET).
    pub async fn deposit_and_get(&self, content_type: &str, body: Vec<u8>) -> Value {
        let res = self.deposit(content_type, body).await;
        assert_eq!(res.status(), 201, "deposit");
        let r: Value = res.json().await.expect("json");
        let url = r["reference"]["resourceURL"].as_str().expect("url").to_string();
        let o: Value = self.get(&url).await.json().await.expect("json");
        o["object"].clone()
    }
}

/// The id at the end of a resource URL.
pub fn last_segment(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_string()
}

impl TestApp {
    /// Default settings over this app's storage: its data directory, and its database
    /// when the suite runs on PostgreSQL.
    pub fn settings(&self) -> Settings {
        let mut s = Settings { data_dir: self.data.path().to_path_buf(), ..Default::default() };
        if let Some(db) = &self.db {
            s.storage.database_url = db.url.clone();
            s.auth.cursor_secret = PG_CURSOR_SECRET.into();
        }
        s
    }

    /// The command line (`cpm-nms --data-dir ... ARGS`) over this app's storage.
    pub fn cli(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cpm-nms"));
        cmd.args(["--data-dir", self.data.path().to_str().expect("utf-8 path")]).args(args);
        cmd.env_remove("NMS__AUTH__CURSOR_SECRET").env_remove("NMS__STORAGE__DATABASE_URL");
        if let Some(db) = &self.db {
            cmd.env("NMS__STORAGE__DATABASE_URL", &db.url).env("NMS__AUTH__CURSOR_SECRET", PG_CURSOR_SECRET);
        }
        cmd
    }

    /// Another server over the same data directory, as after a restart (fresh process state,
    /// same database and keys): its base URL.
    pub async fn restarted(&self) -> String {
        let mut s = self.settings();
        s.server.listen = "127.0.0.1:0".into();
        s.server.workers = 1;
        let app = Application::build(s).await.expect("build restarted app");
        let url = app.public_url().to_string();
        tokio::spawn(app.run_until_stopped());
        url
    }

    /// POST a JSON body to alice's box at `rel` (`/objects/operations/search`, ...):
    /// the status and the JSON body (`Null` when there is none).
    pub async fn post_rel(&self, rel: &str, body: Value) -> (u16, Value) {
        let res = self.post_json(&format!("{}{rel}", self.base(ALICE)), body).await;
        let status = res.status().as_u16();
        let bytes = res.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

/// The `messageId` of an OMA error body.
pub fn message_id(body: &Value) -> &str {
    let e = &body["requestError"];
    e["serviceException"]["messageId"].as_str().or_else(|| e["policyException"]["messageId"].as_str()).unwrap_or("")
}

/// The head of a raw HTTP/1.1 request from alice to `rel` under her box, for tests that
/// must control the socket itself.
pub fn raw_head(app: &TestApp, method: &str, rel: &str, content_type: &str, len: usize) -> String {
    let path = app.base(ALICE).trim_start_matches(&app.url).to_string();
    use base64::Engine;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("alice:{PW}"));
    format!(
        "{method} {path}{rel} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {credentials}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// A small HTTP server of the tests' own (an identity provider, an authorization server, a
/// webhook receiver) on `listener`, its routes and data set by `configure`, running until
/// the test ends.
pub fn serve_local(
    listener: std::net::TcpListener,
    configure: impl Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
) {
    let server = actix_web::HttpServer::new(move || actix_web::App::new().configure(configure.clone()))
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
    tokio::spawn(server);
}
