//! A 20 MiB payload part round-trips byte-exact through object storage while the process's
//! peak memory grows far less than the payload: uploads and downloads stream; and a huge
//! header inside a nested part is refused without being held.
//!
//! Its own test binary, so no other test shares the process whose peak RSS is measured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/database.rs"]
mod database;
#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use helpers::*;

const SIZE: usize = 20 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("status");
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("field")
}

/// Deterministic pseudo-random bytes (xorshift), so the payload does not compress or dedupe.
fn chunk(seed: &mut u64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(n);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_mib_part_streams_through_object_storage() {
    let app = spawn_app().await;
    // Warm up every code path once with a small blob-sized deposit.
    let (ct, body) = form()
        .root_fields(&json!({}))
        .part(
            &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")],
            &vec![1u8; 100_000],
        )
        .finish("multipart/form-data");
    let warm = app.deposit_and_get(&ct, body).await;
    app.get(warm["payloadPart"][0]["href"].as_str().expect("href")).await.bytes().await.expect("bytes");

    let rss_before = status_kib("VmRSS:");
    // Reset the peak-RSS counter to the current RSS (Linux clear_refs, value 5).
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");

    let boundary = "mem-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"root-fields\"\r\nContent-Type: application/json\r\n\r\n{}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"attachments\"; filename=\"video.mp4\"\r\nContent-Type: video/mp4\r\n\r\n",
        json!({"object": {"parentFolderPath": "/media"}})
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let mut tx = Some(tx);
    let mut hasher = Sha256::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut sent = 0usize;
    let body = futures_util::stream::iter(0..SIZE / CHUNK).map(move |_| {
        let c = chunk(&mut seed, CHUNK);
        hasher.update(&c);
        sent += c.len();
        if sent == SIZE
            && let Some(tx) = tx.take()
        {
            let _ = tx.send(hasher.clone().finalize().to_vec());
        }
        Ok::<_, std::io::Error>(c)
    });
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(head.into_bytes()) })
        .chain(body)
        .chain(futures_util::stream::once(async move { Ok(tail.into_bytes()) }));
    let res = app
        .req(Method::POST, &format!("{}/objects", app.base(ALICE)))
        .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 201);
    let sent_hash = rx.await.expect("hash");
    let url = res.json::<Value>().await.expect("json")["reference"]["resourceURL"].as_str().expect("u").to_string();
    let o: Value = app.get(&url).await.json().await.expect("json");
    let part = &o["object"]["payloadPart"][0];
    assert_eq!(part["size"], SIZE as u64);

    let res = app.get(part["href"].as_str().expect("href")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get("content-length").expect("len").to_str().expect("s"), SIZE.to_string());
    let mut stream = res.bytes_stream();
    let mut got = Sha256::new();
    let mut n = 0usize;
    while let Some(c) = stream.next().await {
        let c = c.expect("chunk");
        n += c.len();
        got.update(&c);
    }
    assert_eq!(n, SIZE);
    assert_eq!(got.finalize().to_vec(), sent_hash, "byte-exact");

    let peak = status_kib("VmHWM:");
    let growth_mib = peak.saturating_sub(rss_before) as f64 / 1024.0;
    eprintln!("peak RSS growth during a 20 MiB round trip: {growth_mib:.1} MiB");
    assert!(growth_mib < 8.0, "peak RSS grew by {growth_mib:.1} MiB for a 20 MiB payload");

    // The blob is in object storage, and goes when its last object does.
    let before = app.blob_files().len();
    assert!(before >= 2);
    assert_eq!(app.delete(&url).await.status(), 204);
    assert_eq!(app.blob_files().len(), before - 1);

    huge_nested_header_is_not_held(&app).await;
}

/// A 48 MiB header line inside a nested multipart part is refused after
/// `limits.max_part_head_bytes`, without the process holding it (it once cost 111 MiB).
/// Run after the round trip, in the same test, so the peak measured is this request's.
async fn huge_nested_header_is_not_held(app: &TestApp) {
    const HUGE: usize = 48 * 1024 * 1024;
    let rss_before = status_kib("VmRSS:");
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
    let head = "--o\r\nContent-Disposition: form-data; name=\"root-fields\"\r\nContent-Type: application/json\r\n\r\n{\"object\":{}}\r\n\
         --o\r\nContent-Disposition: form-data; name=\"attachments\"\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n\
         --i\r\nContent-Type: text/plain\r\nX-Huge: "
        .to_string();
    let filler = futures_util::stream::iter(0..HUGE / CHUNK).map(|_| Ok::<_, std::io::Error>(vec![b'h'; CHUNK]));
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(head.into_bytes()) })
        .chain(filler)
        .chain(futures_util::stream::once(async { Ok(b"\r\n\r\nx\r\n--i--\r\n--o--\r\n".to_vec()) }));
    let res = app
        .req(Method::POST, &format!("{}/objects", app.base(ALICE)))
        .header("Content-Type", "multipart/form-data; boundary=o")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    // The server may answer before the client finished sending; either way no 201.
    if let Ok(res) = res {
        assert_eq!(res.status(), 400);
    }
    let peak = status_kib("VmHWM:");
    let growth_mib = peak.saturating_sub(rss_before) as f64 / 1024.0;
    eprintln!("peak RSS growth during a 48 MiB nested header: {growth_mib:.1} MiB");
    assert!(growth_mib < 8.0, "peak RSS grew by {growth_mib:.1} MiB for a 48 MiB header");
}
