//! A crash: the server (the real binary, a child process) is killed with SIGKILL while
//! writers deposit objects (inline and blob parts) and delete some, and while one deposit
//! is stalled mid-stream with a blob already stored and a multipart upload staged. Then it
//! is restarted on the same data directory. Every acknowledged object is intact, every
//! acknowledged deletion stays done, lastModSeq keeps increasing, the dead process's
//! temporaries are gone at start-up, and after `cpm-nms sweep --grace-secs 0` the blobs on
//! disk are exactly the ones the objects reference.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/serve.rs"]
mod serve;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use nms_conformance::http::Multipart;
use reqwest::{Client, Method};
use serde_json::{Value, json};
use serve::Served;
use sha2::{Digest, Sha256};

const BOX: &str = "tel%3A%2B12125551212";
/// `storage.inline_max_bytes` by default: larger parts are blobs.
const INLINE_MAX: u64 = 8 * 1024;
/// Writers depositing at once.
const WRITERS: usize = 4;
/// Objects acknowledged before the kill.
const ACKNOWLEDGED_BEFORE_KILL: usize = 24;

fn cpm(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cpm-nms"))
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(args)
        .env_remove("NMS__AUTH__CURSOR_SECRET")
        .output()
        .unwrap()
}

/// `cpm-nms serve` over `dir` on a free port, as a child process.
struct Server(Served);

impl Server {
    fn start(dir: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cpm-nms"));
        cmd.args(["--data-dir", dir.to_str().unwrap()]).env_remove("NMS__AUTH__CURSOR_SECRET");
        Self(Served::start(cmd))
    }

    fn url(&self) -> &str {
        &self.0.url
    }

    fn base(&self) -> String {
        format!("{}/nms/v1/base/{BOX}", self.url())
    }

    fn kill(&mut self) {
        self.0.kill();
    }
}

fn client() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn req(client: &Client, method: Method, url: &str) -> reqwest::RequestBuilder {
    client.request(method, url).basic_auth("alice", Some("pw")).header("Accept", "application/json")
}

/// Distinct content for each (writer, deposit).
fn content(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn attachments(content_type: &str) -> [(&'static str, &str); 2] {
    [("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", content_type)]
}

/// POST a deposit of `content` into folder `path` of the box at `base`.
async fn deposit(client: &Client, base: &str, path: &str, content: &[u8]) -> reqwest::Result<reqwest::Response> {
    let (ct, body) = Multipart::new("crash-outer")
        .root_fields(&json!({ "parentFolderPath": path }))
        .part(&attachments("image/png"), content)
        .finish("multipart/form-data");
    req(client, Method::POST, &format!("{base}/objects")).header("Content-Type", ct).body(body).send().await
}

/// What the writers were told: objects acknowledged (URL, SHA-256 of the payload) and not
/// deleted since, acknowledged deletions, and the highest lastModSeq they read.
#[derive(Default)]
struct Ledger {
    kept: Vec<(String, String)>,
    deleted: Vec<String>,
    max_seq: i64,
}

/// Deposit and delete until the server goes away.
async fn writer(client: Client, base: String, id: u64, ledger: Arc<Mutex<Ledger>>, acked: Arc<AtomicUsize>) {
    let mut mine: Vec<(String, String)> = Vec::new();
    for i in 0u64.. {
        let size = [2_000, 30_000, 400_000][(i % 3) as usize];
        let c = content(size, id * 1_000_000 + i);
        let Ok(res) = deposit(&client, &base, &format!("/crash/w{id}"), &c).await else { return };
        assert_eq!(res.status(), 201, "deposit before the kill");
        let Ok(v) = res.json::<Value>().await else { return };
        let url = v["reference"]["resourceURL"].as_str().unwrap().to_string();
        ledger.lock().unwrap().kept.push((url.clone(), sha(&c)));
        mine.push((url.clone(), sha(&c)));
        acked.fetch_add(1, Ordering::SeqCst);
        let Ok(res) = req(&client, Method::GET, &url).send().await else { return };
        let Ok(o) = res.json::<Value>().await else { return };
        let seq = o["object"]["lastModSeq"].as_i64().unwrap();
        {
            let mut l = ledger.lock().unwrap();
            l.max_seq = l.max_seq.max(seq);
        }
        if i % 3 == 2 {
            // Delete an earlier one. Until the answer comes its fate is unknown, so it
            // leaves the ledger first.
            let (victim, _) = mine.remove(0);
            ledger.lock().unwrap().kept.retain(|(u, _)| *u != victim);
            let Ok(res) = req(&client, Method::DELETE, &victim).send().await else { return };
            assert_eq!(res.status(), 204, "delete before the kill");
            ledger.lock().unwrap().deleted.push(victim);
        }
    }
}

/// Wait (polling) until `ready` holds; a bound so that a regression fails instead of hanging.
async fn until(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..3000 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(files_under(&p)) } else { out.push(p) }
        }
    }
    out
}

fn names(paths: &[PathBuf]) -> BTreeSet<String> {
    paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

/// The lock files of processes' temporary directories.
fn locks(tmp: &Path) -> BTreeSet<String> {
    names(&files_under(tmp)).into_iter().filter(|n| n.ends_with(".lock")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_deposit_restarts_with_every_acknowledged_change() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let out = cpm(dir, &["account", "add", "--name", "alice", "--box", "tel:+12125551212", "--password", "pw"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let blobs = dir.join("blobs/blobs");
    let tmp = dir.join("blobs/tmp");

    let mut server = Server::start(dir);
    let client = client();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let acked = Arc::new(AtomicUsize::new(0));

    // One deposit stalls mid-stream: its first part (a blob) is stored and pinned, its
    // second is a multipart upload in progress, staged in the process's temporaries.
    let first = content(100_000, 1);
    let (inner_type, inner) = Multipart::new("crash-inner")
        .part(&[("Content-Type", "image/png")], &first)
        .part(&[("Content-Type", "image/png")], &content(900_000, 2))
        .finish("multipart/mixed");
    let (ct, body) = Multipart::new("crash-outer")
        .root_fields(&json!({"parentFolderPath": "/crash/stalled"}))
        .part(&attachments(&inner_type), &inner)
        .finish("multipart/form-data");
    let sent = Bytes::copy_from_slice(&body[..body.len() - 400_000]);
    let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(sent)]).chain(futures_util::stream::pending());
    let stalled = req(&client, Method::POST, &format!("{}/objects", server.base()))
        .header("Content-Type", ct)
        .body(reqwest::Body::wrap_stream(stream));
    let stalled = tokio::spawn(stalled.send());
    let orphan = blobs.join(&sha(&first)[..2]).join(sha(&first));
    until("the stalled deposit's first blob is stored", || orphan.exists()).await;
    until("the stalled deposit's second part is staged", || {
        files_under(&tmp).iter().any(|p| p.file_name().unwrap().to_string_lossy().contains('#'))
    })
    .await;

    let writers: Vec<_> = (0..WRITERS as u64)
        .map(|id| tokio::spawn(writer(client.clone(), server.base(), id, ledger.clone(), acked.clone())))
        .collect();
    until("the writers have deposits acknowledged", || acked.load(Ordering::SeqCst) >= ACKNOWLEDGED_BEFORE_KILL).await;
    server.kill();
    let before = server.url().to_string();
    for w in writers {
        w.await.unwrap();
    }
    stalled.abort();
    let dead_locks = locks(&tmp);
    assert_eq!(dead_locks.len(), 1, "the killed process's lock file stays");
    assert!(files_under(&tmp).len() > 1, "and its temporaries: {:?}", files_under(&tmp));

    // Restarted on the same data: the dead process's temporaries are gone at once; the
    // orphan blob stays for the grace period (a live upload could still reference it).
    let server = Server::start(dir);
    let live_locks = locks(&tmp);
    assert_eq!(live_locks.len(), 1);
    assert!(live_locks.is_disjoint(&dead_locks), "{live_locks:?} {dead_locks:?}");
    assert_eq!(files_under(&tmp).len(), 1, "only the new process's lock: {:?}", files_under(&tmp));
    assert!(orphan.exists());

    // lastModSeq keeps increasing across the restart.
    let res = deposit(&client, &server.base(), "/crash/after", &content(50_000, 3)).await.unwrap();
    assert_eq!(res.status(), 201);
    let after = res.json::<Value>().await.unwrap()["reference"]["resourceURL"].as_str().unwrap().to_string();
    let after_seq =
        req(&client, Method::GET, &after).send().await.unwrap().json::<Value>().await.unwrap()["object"]["lastModSeq"]
            .as_i64()
            .unwrap();
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(after_seq > ledger.max_seq, "{after_seq} after the restart, {} before", ledger.max_seq);

    // A sweep with no grace (the server is idle) removes the orphan blob and its pin.
    let out = cpm(dir, &["sweep", "--grace-secs", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!orphan.exists(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(locks(&tmp), live_locks, "the running server's temporaries are not the sweep's");

    // Every acknowledged object is intact, every acknowledged deletion stays done.
    // (Deletions in flight at the kill, one per writer at most, are in neither list.)
    assert!(ledger.kept.len() + ledger.deleted.len() + WRITERS >= ACKNOWLEDGED_BEFORE_KILL);
    assert!(!ledger.deleted.is_empty());
    // (The server listens on another port now.)
    let now = |url: &str| url.replacen(&before, server.url(), 1);
    for (url, want) in &ledger.kept {
        let url = &now(url);
        let o: Value = req(&client, Method::GET, url).send().await.unwrap().json().await.unwrap();
        let href = o["object"]["payloadPart"][0]["href"].as_str().unwrap_or_else(|| panic!("{url}: {o}"));
        let got = req(&client, Method::GET, href).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(&sha(&got), want, "{url}");
    }
    for url in &ledger.deleted {
        assert_eq!(req(&client, Method::GET, &now(url)).send().await.unwrap().status(), 404, "{url} stays deleted");
    }
    // Every object's parts are readable, and the blobs on disk are exactly the referenced ones.
    let res = req(&client, Method::POST, &format!("{}/objects/operations/search", server.base()))
        .json(&json!({"selectionCriteria": {"maxEntries": 1000}}))
        .send()
        .await
        .unwrap();
    let list: Value = res.json().await.unwrap();
    let objects = list["objectList"]["object"].as_array().unwrap();
    assert!(objects.len() > ledger.kept.len(), "the acknowledged objects and the one after the restart");
    let mut referenced = BTreeSet::new();
    for o in objects {
        assert!(o["lastModSeq"].as_i64().unwrap() <= after_seq);
        for part in o["payloadPart"].as_array().into_iter().flatten() {
            let got = req(&client, Method::GET, part["href"].as_str().unwrap()).send().await.unwrap();
            assert_eq!(got.status(), 200, "{part}");
            let got = got.bytes().await.unwrap();
            assert_eq!(got.len() as u64, part["size"].as_u64().unwrap(), "{part}");
            if got.len() as u64 > INLINE_MAX {
                referenced.insert(sha(&got));
            }
        }
    }
    assert_eq!(names(&files_under(&blobs)), referenced, "no orphan blob, no referenced blob missing");
    drop(server);
}
