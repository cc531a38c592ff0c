//! Payloads in real S3 object storage: the server with `storage.blob_url =
//! "s3://bucket/prefix"` against the S3 endpoint `NMS_TEST_S3_ENDPOINT` names (`.ci/moto`
//! starts one: moto's server, which keeps its state in memory and checks no signature).
//! Without that variable the tests that need an endpoint print a note and pass. What the
//! server left in the bucket is read back with object_store's own S3 client, and the
//! multipart uploads in progress with the S3 API itself.

use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;
use cpm_nms::config::S3Settings;

const MIB: usize = 1024 * 1024;
/// The S3 minimum part size: the server's write buffer on S3.
const PART: usize = 5 * MIB;

/// The S3 endpoint of the test run and its bucket.
#[derive(Clone)]
struct Endpoint {
    url: String,
    bucket: String,
}

impl Endpoint {
    fn from_env() -> Option<Self> {
        match std::env::var("NMS_TEST_S3_ENDPOINT") {
            Ok(url) if !url.is_empty() => {
                let bucket = std::env::var("NMS_TEST_S3_BUCKET").unwrap_or_else(|_| "nms-test".into());
                Some(Self { url, bucket })
            }
            _ => {
                eprintln!("note: NMS_TEST_S3_ENDPOINT is not set, S3 test skipped (eval \"$(.ci/moto)\" starts one)");
                None
            }
        }
    }

    /// `[storage.s3]` for this endpoint (moto takes any credentials).
    fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: self.url.clone(),
            region: "us-east-1".into(),
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            allow_http: Some(true),
            ..Default::default()
        }
    }

    fn client(&self, bucket: &str) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(&self.url)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_allow_http(true)
            .build()
            .unwrap()
    }

    /// An unsigned request (moto takes them), for what object_store does not offer:
    /// creating and deleting buckets, listing and aborting multipart uploads.
    async fn raw(&self, method: Method, path_and_query: &str) -> (u16, String) {
        let res = reqwest::Client::new().request(method, format!("{}{path_and_query}", self.url)).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }
}

/// A server whose blobs live under a fresh prefix of a bucket, and a client of that bucket.
struct S3App {
    app: TestApp,
    endpoint: Endpoint,
    bucket: String,
    prefix: String,
    store: AmazonS3,
}

async fn spawn_s3_app() -> Option<S3App> {
    let endpoint = Endpoint::from_env()?;
    let bucket = endpoint.bucket.clone();
    Some(spawn_on(endpoint, bucket).await)
}

async fn spawn_on(endpoint: Endpoint, bucket: String) -> S3App {
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    let (url, s3) = (format!("s3://{bucket}/{prefix}"), endpoint.settings());
    let app = spawn_app_with(|s| {
        s.storage.blob_url = url;
        s.storage.s3 = s3;
    })
    .await;
    let store = endpoint.client(&bucket);
    S3App { app, endpoint, bucket, prefix, store }
}

impl S3App {
    /// The keys under the server's prefix, relative to it, sorted.
    async fn keys(&self) -> Vec<String> {
        let prefix = Path::from(self.prefix.as_str());
        let mut keys: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location.as_ref()[self.prefix.len() + 1..].to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// The multipart uploads in progress under the prefix: (key, upload id).
    async fn uploads(&self) -> Vec<(String, String)> {
        let (status, xml) =
            self.endpoint.raw(Method::GET, &format!("/{}?uploads&prefix={}/", self.bucket, self.prefix)).await;
        assert_eq!(status, 200, "{xml}");
        elements(&xml, "Key").into_iter().zip(elements(&xml, "UploadId")).collect()
    }

    /// The sizes of the parts an upload in progress has received.
    async fn part_sizes(&self, key: &str, upload_id: &str) -> Vec<usize> {
        let (status, xml) =
            self.endpoint.raw(Method::GET, &format!("/{}/{key}?uploadId={upload_id}", self.bucket)).await;
        assert_eq!(status, 200, "{xml}");
        elements(&xml, "Size").iter().map(|s| s.parse().unwrap()).collect()
    }

    /// Wait until an upload under the prefix has received a part: (key, upload id).
    async fn upload_with_a_part(&self) -> (String, String) {
        for _ in 0..1200 {
            for (key, id) in self.uploads().await {
                if !self.part_sizes(&key, &id).await.is_empty() {
                    return (key, id);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no multipart upload under {} received a part", self.prefix);
    }

    /// The objects of alice's box and its modseq.
    async fn snapshot(&self) -> (usize, i64) {
        let b = self.app.nms.find_box("base", ALICE).await.unwrap().unwrap();
        (self.app.object_count().await, b.modseq)
    }
}

/// The texts of the elements `name` of an XML document, in order.
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(&open).skip(1).filter_map(|s| s.split_once(&close).map(|(text, _)| text.to_string())).collect()
}

/// `size` bytes that repeat nowhere within a few MiB (xorshift), so a payload can be found
/// in a request body and a misplaced part would show.
fn content(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where a payload part of `content` is stored.
fn blob_key(content: &[u8]) -> String {
    let hash = sha(content);
    format!("blobs/{}/{hash}", &hash[..2])
}

/// A deposit of one payload part.
fn deposit_of(content: &[u8]) -> (String, Vec<u8>) {
    form()
        .root_fields(&json!({"parentFolderPath": "/s3"}))
        .part(
            &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "application/octet-stream")],
            content,
        )
        .finish("multipart/form-data")
}

/// Deposit one part; the object's resourceURL.
async fn stored(app: &TestApp, content: &[u8]) -> String {
    let (ct, body) = deposit_of(content);
    let res = app.deposit(&ct, body).await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["reference"]["resourceURL"].as_str().unwrap().to_string()
}

/// The first payload part of the object at `url`, read whole, or its `range`.
async fn first_part(app: &TestApp, url: &str, range: Option<&str>) -> Response {
    let o: Value = app.get(url).await.json().await.unwrap();
    let href = o["object"]["payloadPart"][0]["href"].as_str().unwrap().to_string();
    let mut req = app.req(Method::GET, &href);
    if let Some(range) = range {
        req = req.header("Range", range);
    }
    req.send().await.unwrap()
}

/// A deposit whose body is sent up to `hold_at` bytes, the rest when `finish` is called.
struct HeldDeposit {
    rest: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    response: tokio::task::JoinHandle<Response>,
}

impl HeldDeposit {
    fn start(app: &TestApp, content_type: &str, mut body: Vec<u8>, hold_at: usize) -> Self {
        let rest = body.split_off(hold_at);
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tx.try_send(Ok(body)).unwrap();
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let req = app
            .req(Method::POST, &format!("{}/objects", app.base(ALICE)))
            .header("Content-Type", content_type)
            .body(reqwest::Body::wrap_stream(stream));
        let response = tokio::spawn(async move { req.send().await.unwrap() });
        Self { rest, tx, response }
    }

    async fn finish(self) -> Response {
        self.tx.send(Ok(self.rest)).await.unwrap();
        drop(self.tx);
        self.response.await.unwrap()
    }
}

/// Where the request body of `deposit_of(content)` has sent `n` bytes of the content.
fn offset_into(body: &[u8], content: &[u8], n: usize) -> usize {
    let start = body.windows(64).position(|w| w == &content[..64]).unwrap();
    start + n
}

#[tokio::test]
async fn parts_below_the_part_size_are_stored_whole_and_served_by_range() {
    let Some(s3) = spawn_s3_app().await else { return };
    let app = &s3.app;
    let inline = content(8 * 1024, 1);
    let below = content(PART - 1, 2);
    let (inner_type, inner) = nested(
        "multipart/mixed",
        "inner-b",
        &[(&[("Content-Type", "text/plain")], &inline), (&[("Content-Type", "application/octet-stream")], &below)],
    );
    let (ct, body) = form()
        .root_fields(&json!({}))
        .part(&[("Content-Type", &inner_type), ("Content-Disposition", "form-data; name=\"attachments\"")], &inner)
        .finish("multipart/form-data");
    let o = app.deposit_and_get(&ct, body).await;
    // The inline part is in the database; the other is one object named by its hash.
    assert_eq!(s3.keys().await, [blob_key(&below)]);
    assert!(s3.uploads().await.is_empty());
    let hrefs: Vec<&str> = o["payloadPart"].as_array().unwrap().iter().map(|p| p["href"].as_str().unwrap()).collect();
    for (href, want) in hrefs.iter().zip([&inline, &below]) {
        let res = app.get(href).await;
        assert_eq!(res.status(), 200);
        assert_eq!(sha(&res.bytes().await.unwrap()), sha(want));
    }
    let ranged = |range: &'static str| app.req(Method::GET, hrefs[1]).header("Range", range).send();
    let res = ranged("bytes=2-5").await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.headers()["content-range"], format!("bytes 2-5/{}", below.len()).as_str());
    assert_eq!(res.bytes().await.unwrap().as_ref(), &below[2..6]);
    let res = ranged("bytes=-10").await.unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), &below[below.len() - 10..]);
    let res = ranged("bytes=5000000-").await.unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), &below[5_000_000..]);
    let res = ranged("bytes=6000000-6000010").await.unwrap();
    assert_eq!(res.status(), 416);
    assert_eq!(res.headers()["content-range"], format!("bytes */{}", below.len()).as_str());
}

#[tokio::test]
async fn a_part_above_the_part_size_streams_to_s3_in_parts_of_5_mib() {
    let Some(s3) = spawn_s3_app().await else { return };
    let app = &s3.app;
    let above = content(2 * PART + 7, 3);
    let (ct, body) = deposit_of(&above);
    // Send a little more than one part size of the payload and hold the rest: the first
    // part is uploaded while the request is still coming in.
    let hold_at = offset_into(&body, &above, PART + 1024);
    let held = HeldDeposit::start(app, &ct, body, hold_at);
    let (key, upload_id) = s3.upload_with_a_part().await;
    assert!(key.starts_with(&format!("{}/tmp/", s3.prefix)), "the upload goes to a temporary: {key}");
    assert_eq!(s3.part_sizes(&key, &upload_id).await, [PART]);
    assert!(s3.keys().await.is_empty(), "an upload in progress is invisible: {:?}", s3.keys().await);
    let res = held.finish().await;
    assert_eq!(res.status(), 201);
    let url = res.json::<Value>().await.unwrap()["reference"]["resourceURL"].as_str().unwrap().to_string();
    assert!(s3.uploads().await.is_empty(), "the upload was completed");
    assert_eq!(s3.keys().await, [blob_key(&above)], "renamed to its hash, no temporary left");
    let res = first_part(app, &url, None).await;
    assert_eq!(res.headers()["content-length"], above.len().to_string().as_str());
    assert_eq!(sha(&res.bytes().await.unwrap()), sha(&above));
    // A range across the boundary between the first two parts.
    let res = first_part(app, &url, Some(&format!("bytes={}-{}", PART - 10, PART + 9))).await;
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &above[PART - 10..PART + 10]);
}

#[tokio::test]
async fn copies_share_one_blob_that_goes_with_the_last_reference() {
    let Some(s3) = spawn_s3_app().await else { return };
    let app = &s3.app;
    let c = content(100 * 1024, 4);
    let original = stored(app, &c).await;
    let target = app.create_folder(json!({"parentFolderPath": "/", "name": "copies"})).await;
    let body = json!({"targetSourceRef": {"targetRef": {"resourceURL": target},
        "sourceRefs": {"objects": {"objectReference": [{"resourceURL": original}]}}}});
    let (status, v) = app.post_rel("/folders/operations/copyToFolder", body).await;
    assert_eq!((status, &v["bulkResponseList"]["response"][0]["code"]), (200, &json!(200)), "{v}");
    let copy = v["bulkResponseList"]["response"][0]["success"]["resourceURL"].as_str().unwrap().to_string();
    assert_eq!(s3.keys().await, [blob_key(&c)], "one blob for both");
    assert_eq!(app.delete(&original).await.status(), 204);
    assert_eq!(s3.keys().await, [blob_key(&c)], "the copy still references it");
    assert_eq!(sha(&first_part(app, &copy, None).await.bytes().await.unwrap()), sha(&c));
    assert_eq!(app.delete(&copy).await.status(), 204);
    assert!(s3.keys().await.is_empty(), "released with the last reference: {:?}", s3.keys().await);
}

/// `cpm-nms` over the data directory and bucket prefix of `s3`, configured by environment
/// variables only: the blob URL and endpoint by `NMS__STORAGE__...`, the credentials and
/// region by the standard `AWS_*` variables.
fn cli(s3: &S3App, blob_url: &str, args: &[&str]) -> std::process::Output {
    s3.app
        .cli(args)
        .env("NMS__STORAGE__BLOB_URL", blob_url)
        .env("NMS__STORAGE__S3__ENDPOINT", &s3.endpoint.url)
        .env("NMS__STORAGE__S3__ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_sweep_removes_unreferenced_blobs_and_stale_temporaries_from_s3() {
    let Some(s3) = spawn_s3_app().await else { return };
    let app = &s3.app;
    let kept = content(100 * 1024, 5);
    let url = stored(app, &kept).await;
    // What a crash leaves: a blob renamed into place but never committed, and a temporary
    // of a process that is gone.
    let orphan = Path::from(format!("{}/blobs/ab/ab00", s3.prefix));
    s3.store.put(&orphan, b"orphan".to_vec().into()).await.unwrap();
    let stale = Path::from(format!("{}/tmp/gone-instance/upload", s3.prefix));
    s3.store.put(&stale, b"half an upload".to_vec().into()).await.unwrap();
    let blob_url = format!("s3://{}/{}", s3.bucket, s3.prefix);
    // Within the grace period (a day by default) both stay.
    let out = cli(&s3, &blob_url, &["sweep"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted 0 blobs and 0 temporaries"));
    assert_eq!(s3.keys().await.len(), 3);
    let out = cli(&s3, &blob_url, &["sweep", "--grace-secs", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("deleted 1 blobs and 1 temporaries"), "{said}");
    assert_eq!(s3.keys().await, [blob_key(&kept)], "the referenced blob stays");
    assert_eq!(sha(&first_part(app, &url, None).await.bytes().await.unwrap()), sha(&kept));
}

#[tokio::test]
async fn an_upload_s3_gives_up_on_is_an_oma_error_and_leaves_nothing() {
    let Some(s3) = spawn_s3_app().await else { return };
    let app = &s3.app;
    let before = s3.snapshot().await;
    let c = content(PART + MIB, 6);
    let (ct, body) = deposit_of(&c);
    let hold_at = offset_into(&body, &c, PART + 1024);
    let held = HeldDeposit::start(app, &ct, body, hold_at);
    // The multipart upload is aborted behind the server's back (a lifecycle rule, an
    // operator): its last part and its completion fail.
    let (key, upload_id) = s3.upload_with_a_part().await;
    let (status, text) = s3.endpoint.raw(Method::DELETE, &format!("/{}/{key}?uploadId={upload_id}", s3.bucket)).await;
    assert_eq!(status, 204, "{text}");
    let res = held.finish().await;
    assert_error(res, 500, "SVC0001").await;
    assert_eq!(s3.snapshot().await, before, "no object, box modseq unchanged");
    assert!(s3.keys().await.is_empty(), "no blob, no temporary: {:?}", s3.keys().await);
    assert!(s3.uploads().await.is_empty());
    // The server goes on storing payloads.
    let url = stored(app, &c).await;
    assert_eq!(sha(&first_part(app, &url, None).await.bytes().await.unwrap()), sha(&c));
}

#[tokio::test]
async fn deposits_into_a_bucket_deleted_under_the_server_fail_cleanly() {
    let Some(endpoint) = Endpoint::from_env() else { return };
    let bucket = format!("nms-gone-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(endpoint.raw(Method::PUT, &format!("/{bucket}")).await.0, 200);
    let s3 = spawn_on(endpoint.clone(), bucket.clone()).await;
    let app = &s3.app;
    let before = s3.snapshot().await;
    assert_eq!(endpoint.raw(Method::DELETE, &format!("/{bucket}")).await.0, 204);
    // One write (below the part size), and the start of a multipart upload (above it).
    for (size, seed) in [(100 * 1024, 7), (PART + MIB, 8)] {
        let (ct, body) = deposit_of(&content(size, seed));
        assert_error(app.deposit(&ct, body).await, 500, "SVC0001").await;
    }
    assert_eq!(s3.snapshot().await, before, "no object, box modseq unchanged");
    // Once the bucket is back, nothing is in it and deposits are stored again.
    assert_eq!(endpoint.raw(Method::PUT, &format!("/{bucket}")).await.0, 200);
    assert!(s3.keys().await.is_empty() && s3.uploads().await.is_empty());
    let c = content(100 * 1024, 9);
    stored(app, &c).await;
    assert_eq!(s3.keys().await, [blob_key(&c)]);
}

#[tokio::test]
async fn a_bucket_that_cannot_be_listed_stops_the_start() {
    let Some(s3) = spawn_s3_app().await else { return };
    let missing = format!("s3://nms-missing-{}/p", uuid::Uuid::new_v4().simple());
    let out = cli(&s3, &missing, &["sweep"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("blob store {missing} cannot be listed")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `cpm-nms` with these environment variables and nothing else from the environment
/// that configures it.
fn cpm_with(dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cpm-nms"));
    cmd.args(["--data-dir", dir.to_str().unwrap()]).args(args).env_remove("NMS__AUTH__CURSOR_SECRET");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn s3_settings_come_from_the_environment_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let out = cpm_with(
        dir.path(),
        &["config"],
        &[
            ("NMS__STORAGE__BLOB_URL", "s3://bucket/prefix"),
            ("NMS__STORAGE__S3__ENDPOINT", "http://127.0.0.1:9000"),
            ("NMS__STORAGE__S3__REGION", "eu-west-1"),
            ("NMS__STORAGE__S3__ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("NMS__STORAGE__S3__SECRET_ACCESS_KEY", "s3-secret"),
            ("NMS__STORAGE__S3__ALLOW_HTTP", "true"),
            ("NMS__STORAGE__S3__VIRTUAL_HOSTED_STYLE", "false"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    for want in [
        "[storage.s3]",
        "endpoint = \"http://127.0.0.1:9000\"",
        "region = \"eu-west-1\"",
        "access_key_id = \"AKIDEXAMPLE\"",
        "secret_access_key = \"<redacted>\"",
        "allow_http = true",
        "virtual_hosted_style = false",
    ] {
        assert!(s.contains(want), "{want} in {s}");
    }
    assert!(!s.contains("s3-secret"), "{s}");
}

#[test]
fn a_blob_configuration_that_cannot_work_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ["serve", "--listen", "127.0.0.1:0"];
    for (envs, says) in [
        (vec![("NMS__STORAGE__BLOB_URL", "s3:///no-bucket")], "names no bucket"),
        (vec![("NMS__STORAGE__BLOB_URL", "not a url")], "storage.blob_url not a url"),
        (vec![("NMS__STORAGE__BLOB_URL", "gs://bucket/p")], "not a file://, memory:// or s3:// URL"),
        (
            vec![("NMS__STORAGE__BLOB_URL", "s3://bucket/p"), ("NMS__STORAGE__S3__ACCESS_KEY_ID", "AKIDEXAMPLE")],
            "storage.s3.access_key_id and storage.s3.secret_access_key must be given together",
        ),
        (
            vec![("NMS__STORAGE__BLOB_URL", "s3://bucket/p"), ("NMS__STORAGE__S3__ENDPOINT", "http://127.0.0.1:9")],
            "set storage.s3.allow_http = true",
        ),
        (
            vec![("NMS__STORAGE__BLOB_URL", "s3://bucket/p"), ("NMS__STORAGE__WRITE_BUFFER_BYTES", "1048576")],
            "storage.write_buffer_bytes = 1048576 is below the S3 minimum part size",
        ),
    ] {
        let out = cpm_with(dir.path(), &serve, &envs);
        assert!(!out.status.success(), "{envs:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{envs:?}: {err}");
        assert!(!err.contains("panicked"), "{envs:?}: {err}");
    }
}
