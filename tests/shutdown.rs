//! The real binary, as an orchestrator runs it: it logs one access line per request, and on
//! SIGTERM it answers its open long polls at once, lets requests in flight finish within
//! `server.shutdown_grace_secs`, and exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/serve.rs"]
mod serve;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use nms_conformance::http::Multipart;
use reqwest::Client;
use serde_json::{Value, json};
use serve::Served;

const BOX: &str = "tel%3A%2B12125551212";
const PATIENCE: Duration = Duration::from_secs(60);

/// A data directory with the login `alice` (password `pw`) on box tel:+12125551212.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cpm-nms"))
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["account", "add", "--name", "alice", "--box", "tel:+12125551212", "--password", "pw"])
        .env_remove("NMS__AUTH__CURSOR_SECRET")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// `cpm-nms serve` over `dir` with `env` set.
fn serve(dir: &Path, env: &[(&str, &str)]) -> Served {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cpm-nms"));
    cmd.args(["--data-dir", dir.to_str().unwrap()]).env_remove("NMS__AUTH__CURSOR_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Served::start(cmd)
}

/// Files the server has under its blob temporaries (lock files aside).
fn temporaries(dir: &Path) -> usize {
    fn walk(p: &Path, n: &mut usize) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, n);
            } else if p.extension().is_none_or(|x| x != "lock") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(&dir.join("blobs").join("tmp"), &mut n);
    n
}

/// A deposit whose body is sent in two halves: the first now, the second when the returned
/// sender is given it. Returns the pending response and the second half's sender.
async fn split_deposit(
    url: &str,
) -> (tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>, tokio::sync::mpsc::Sender<Bytes>, Bytes) {
    let content = vec![b'x'; 600 * 1024];
    let (ct, body) = Multipart::new("grace-outer")
        .root_fields(&json!({"parentFolderPath": "/"}))
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")], &content)
        .finish("multipart/form-data");
    let body = Bytes::from(body);
    let (first, rest) = (body.slice(..400 * 1024), body.slice(400 * 1024..));
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    tx.send(first).await.unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    let req = Client::new()
        .post(format!("{url}/nms/v1/base/{BOX}/objects"))
        .basic_auth("alice", Some("pw"))
        .header("Content-Type", ct)
        .header("Content-Length", body.len())
        .body(reqwest::Body::wrap_stream(stream));
    (tokio::spawn(req.send()), tx, rest)
}

/// Wait until the server has begun writing the deposit's payload (its request is in flight).
async fn wait_for_upload(dir: &Path) {
    for _ in 0..600 {
        if temporaries(dir) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the deposit never reached the server");
}

#[tokio::test]
async fn a_request_in_flight_at_sigterm_finishes_within_the_grace_period() {
    let dir = data_dir();
    let mut server = serve(
        dir.path(),
        &[("NMS__SERVER__SHUTDOWN_GRACE_SECS", "600"), ("NMS__SERVER__METRICS_LISTEN", "127.0.0.1:0")],
    );
    let ready = format!("http://127.0.0.1:{}/readyz", server.listening["metrics_port"]);
    assert_eq!(Client::new().get(&ready).send().await.unwrap().status(), 200);
    let (pending, tx, rest) = split_deposit(&server.url).await;
    wait_for_upload(dir.path()).await;
    server.terminate();
    server.wait_log("shutting down", PATIENCE);
    // While it drains, it is not ready (a load balancer sends nothing more).
    let mut answer = (0, Value::Null);
    for _ in 0..600 {
        let res = Client::new().get(&ready).send().await.unwrap();
        answer = (res.status().as_u16(), res.json::<Value>().await.unwrap());
        if answer.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer, (503, json!({"status": "stopping"})));
    tx.send(rest).await.unwrap();
    drop(tx);
    let res = pending.await.unwrap().unwrap();
    assert_eq!(res.status(), 201, "the request in flight is answered");
    assert!(server.wait().success(), "exit 0 after the grace");
}

#[tokio::test]
async fn with_no_grace_a_request_in_flight_at_sigterm_is_dropped() {
    let dir = data_dir();
    let mut server = serve(dir.path(), &[("NMS__SERVER__SHUTDOWN_GRACE_SECS", "0")]);
    let (pending, tx, rest) = split_deposit(&server.url).await;
    wait_for_upload(dir.path()).await;
    server.terminate();
    assert!(server.wait().success(), "exit 0 at once");
    let _ = tx.send(rest).await;
    drop(tx);
    let res = pending.await.unwrap();
    assert!(res.is_err(), "the request in flight was cut: {:?}", res.map(|r| r.status()));
}

#[tokio::test]
async fn an_open_long_poll_is_answered_at_sigterm() {
    let dir = data_dir();
    let mut server = serve(
        dir.path(),
        &[
            ("NMS__SERVER__SHUTDOWN_GRACE_SECS", "600"),
            ("NMS__SYNC__LONG_POLL_SECS", "3600"),
            ("NMS__SERVER__METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let client = Client::new();
    let nc = format!("{}/notificationchannel/v1/{BOX}/channels", server.url);
    let body =
        json!({"notificationChannel": {"channelType": "LongPolling", "channelData": {}, "channelLifetime": 7200}});
    let res = client.post(&nc).basic_auth("alice", Some("pw")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    let channel_url = v["notificationChannel"]["channelData"]["channelURL"].as_str().unwrap().to_string();
    let poll = tokio::spawn(
        client
            .post(channel_url)
            .basic_auth("alice", Some("pw"))
            .json(&json!({"longPollingRequestParameters": null}))
            .send(),
    );
    // The poll is open on the server ...
    let metrics = format!("http://127.0.0.1:{}/metrics", server.listening["metrics_port"]);
    let mut open = false;
    for _ in 0..600 {
        let text = client.get(&metrics).send().await.unwrap().text().await.unwrap();
        if text.lines().any(|l| l == "nms_long_polls_open 1") {
            open = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(open, "the long poll never opened");
    // ... and SIGTERM answers it (empty) long before its hour is up.
    server.terminate();
    let res = poll.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"notificationList": []}));
    assert!(server.wait().success(), "exit 0");
}

#[tokio::test]
async fn every_request_has_one_access_line_with_no_credentials_in_it() {
    let dir = data_dir();
    let mut server = serve(dir.path(), &[]);
    let res = Client::new()
        .get(format!("{}/nms/v1/base/{BOX}/folders/operations/pathToId?path=%2F", server.url))
        .basic_auth("alice", Some("pw"))
        .header("X-Request-Id", "probe-17")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "probe-17");
    let line = loop {
        let fields = server.wait_log("request", PATIENCE);
        if fields["request_id"] == "probe-17" {
            break fields;
        }
    };
    assert_eq!(line["operation"], "FolderPathToIdGet");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], format!("/nms/v1/base/{BOX}/folders/operations/pathToId"));
    assert_eq!(line["status"], 200);
    assert_eq!(line["principal"], "subscriber");
    assert!(line["duration_ms"].as_f64().unwrap() >= 0.0);
    let text = line.to_string();
    // Neither the password, nor the header carrying it, nor the query.
    assert!(!text.contains("YWxpY2U6cHc") && !text.contains("\"pw\"") && !text.contains("path=%2F"), "{text}");

    let res = Client::new().get(format!("{}/nowhere", server.url)).send().await.unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let line = loop {
        let fields = server.wait_log("request", PATIENCE);
        if fields["request_id"] == id.as_str() {
            break fields;
        }
    };
    assert_eq!((line["operation"].as_str(), line["status"].as_u64()), (Some("Unmatched"), Some(404)));
    assert_eq!(line["principal"], "anonymous");
}
