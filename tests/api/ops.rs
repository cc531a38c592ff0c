//! What operators use: liveness and readiness without credentials, the request id, and
//! Prometheus metrics (on the public listener for service principals only, or on
//! `server.metrics_listen` for anyone who reaches it) that move with the traffic.
//!
//! The metrics recorder is one per process, shared by every server of this test binary, so
//! the tests read counters before and after what they do and expect at least their own
//! share of the difference.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// `/metrics` as the service principal reads it.
pub(crate) async fn metrics(app: &TestApp) -> String {
    let res = app.req_as("pf", Method::GET, &format!("{}/metrics", app.url)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    res.text().await.unwrap()
}

/// The value of one series (`name{labels}` exactly as exported), 0 when absent.
pub(crate) fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn liveness_and_readiness_need_no_credentials() {
    let app = spawn_app().await;
    for path in ["/healthz", "/health"] {
        let res = app.client.get(format!("{}{path}", app.url)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    }
    let res = app.client.get(format!("{}/readyz", app.url)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({"status": "ready", "checks": {"database": "ok", "payload_store": "ok"}}));
}

#[tokio::test]
async fn readiness_names_the_payload_store_when_it_fails_and_recovers_with_it() {
    let app = spawn_app().await;
    let blobs = app.data.path().join("blobs");
    let aside = app.data.path().join("blobs.aside");
    // The blob directory's place taken by a file: every look-up in it fails.
    std::fs::rename(&blobs, &aside).unwrap();
    std::fs::write(&blobs, b"not a directory").unwrap();
    let res = app.client.get(format!("{}/readyz", app.url)).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["failed"], json!(["payload_store"]));
    assert_eq!(body["checks"], json!({"database": "ok", "payload_store": "failed"}));
    // Liveness does not look at storage.
    assert_eq!(app.client.get(format!("{}/healthz", app.url)).send().await.unwrap().status(), 200);

    std::fs::remove_file(&blobs).unwrap();
    std::fs::rename(&aside, &blobs).unwrap();
    assert_eq!(app.client.get(format!("{}/readyz", app.url)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_request_id_is_kept_when_sent_and_made_when_not() {
    let app = spawn_app().await;
    let root = format!("{}/folders/operations/pathToId", app.base(ALICE));
    let res = app.req(Method::GET, &root).header("X-Request-Id", "lb-42:a").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "lb-42:a");

    let made = |res: &reqwest::Response| res.headers()["x-request-id"].to_str().unwrap().to_string();
    let a = made(&app.get(&root).await);
    let b = made(&app.client.get(format!("{}/nowhere", app.url)).send().await.unwrap());
    assert_eq!((a.len(), b.len()), (32, 32), "{a} {b}");
    assert_ne!(a, b);
    // One that could forge a log line is replaced.
    let res = app.req(Method::GET, &root).header("X-Request-Id", "a\"b").send().await.unwrap();
    assert_ne!(res.headers()["x-request-id"], "a\"b");
}

#[tokio::test]
async fn metrics_on_the_public_listener_are_for_service_principals_only() {
    let app = spawn_app().await;
    let url = format!("{}/metrics", app.url);
    let anonymous = app.client.get(&url).send().await.unwrap();
    assert_error(anonymous, 401, "POL0001").await;
    let subscriber = app.req_as("alice", Method::GET, &url).send().await.unwrap();
    assert_error(subscriber, 403, "POL0001").await;
    let text = metrics(&app).await;
    assert!(text.contains("# TYPE nms_http_requests_total counter"), "{text}");
    let build = format!("nms_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(value(&text, &build), 1.0);
}

#[tokio::test]
async fn a_metrics_listener_serves_metrics_without_credentials_and_the_public_one_does_not() {
    let app = spawn_app_with(|s| s.server.metrics_listen = Some("127.0.0.1:0".into())).await;
    let private = app.metrics_url.clone().unwrap();
    let res = app.client.get(format!("{private}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("nms_build_info"));
    for path in ["/healthz", "/readyz"] {
        assert_eq!(app.client.get(format!("{private}{path}")).send().await.unwrap().status(), 200, "{path}");
    }
    // The API is not on the metrics listener, and metrics are not on the public one.
    let api = app.client.get(format!("{private}/nms/v1/base/{}/objects", enc(ALICE))).send().await.unwrap();
    assert_eq!(api.status(), 404);
    let public = app.req_as("pf", Method::GET, &format!("{}/metrics", app.url)).send().await.unwrap();
    assert_error(public, 404, "SVC0004").await;
}

#[tokio::test]
async fn requests_deposits_searches_and_storage_calls_are_counted() {
    let app = spawn_app().await;
    let before = metrics(&app).await;
    let created = "nms_http_requests_total{operation=\"ObjectCreate\",status=\"2xx\"}";
    let created_timed = "nms_http_request_duration_seconds_count{operation=\"ObjectCreate\",status=\"2xx\"}";
    let refused = "nms_http_requests_total{operation=\"ObjectGet\",status=\"4xx\"}";

    // A deposit with a small (inline) part, and one with a large (blob) part.
    for (content_type, content) in [("text/plain", vec![b's'; 100]), ("image/png", vec![b'L'; 20_000])] {
        let (ct, body) = form()
            .root_fields(&json!({"parentFolderPath": "/"}))
            .part(
                &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", content_type)],
                &content,
            )
            .finish("multipart/form-data");
        let res = app.req(Method::POST, &format!("{}/objects", app.base(ALICE))).header("Content-Type", ct).body(body);
        let res = res.send().await.unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }
    let missing = app.get(&format!("{}/objects/nothing-here", app.base(ALICE))).await;
    assert_eq!(missing.status(), 404);
    let search = json!({"selectionCriteria": {"maxEntries": 10}});
    let res = app.post_json(&format!("{}/objects/operations/search", app.base(ALICE)), search).await;
    assert_eq!(res.status(), 200);

    let after = metrics(&app).await;
    let grew = |series: &str| value(&after, series) - value(&before, series);
    assert!(grew(created) >= 2.0, "{created}");
    assert!(grew(created_timed) >= 1.0, "{created_timed}");
    assert!(grew(refused) >= 1.0, "{refused}");
    assert!(grew("nms_deposits_total") >= 2.0);
    assert!(grew("nms_stored_parts_total{storage=\"inline\"}") >= 1.0);
    assert!(grew("nms_stored_bytes_total{storage=\"inline\"}") >= 100.0);
    assert!(grew("nms_stored_parts_total{storage=\"blob\"}") >= 1.0);
    assert!(grew("nms_stored_bytes_total{storage=\"blob\"}") >= 20_000.0);
    assert!(grew("nms_search_duration_seconds_count{target=\"objects\"}") >= 1.0);
    assert!(grew("nms_blob_operation_duration_seconds_count{operation=\"put\"}") >= 1.0);
    assert!(grew("nms_db_write_transaction_duration_seconds_count") >= 1.0);
    // The latency histograms have buckets, in seconds.
    let bucket = "nms_http_request_duration_seconds_bucket{operation=\"ObjectCreate\",status=\"2xx\",le=\"+Inf\"}";
    assert!(value(&after, bucket) >= 1.0, "{bucket}");
    // Sampled when read.
    assert!(after.contains("nms_db_connections{state=\"idle\"}"), "{after}");
    assert!(after.contains("nms_webhook_queue_depth "), "{after}");
    // No box, user or URL is a label.
    assert!(!after.contains(ALICE) && !after.contains("alice") && !after.contains(&app.url));
}

#[tokio::test]
async fn authentication_failures_and_rate_limit_refusals_are_counted() {
    let app = spawn_app_with(|s| {
        s.limits.rate_per_sec = 0.5;
        s.limits.rate_burst = 1;
    })
    .await;
    let before = metrics(&app).await;
    let root = format!("{}/folders/operations/pathToId", app.base(ALICE));
    let wrong = app.client.get(&root).basic_auth("alice", Some("wrong")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let none = app.client.get(&root).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(app.get(&root).await.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let after = metrics(&app).await;
    let grew = |series: &str| value(&after, series) - value(&before, series);
    assert!(grew("nms_auth_failures_total{scheme=\"basic\"}") >= 1.0);
    assert!(grew("nms_auth_failures_total{scheme=\"none\"}") >= 1.0);
    assert!(grew("nms_rate_limit_refusals_total{limit=\"limits.rate_per_sec\"}") >= 1.0);
    let limited = "nms_http_requests_total{operation=\"FolderPathToIdGet\",status=\"4xx\"}";
    assert!(grew(limited) >= 3.0, "{limited}");
}

#[tokio::test]
async fn open_long_polls_and_the_notifications_they_deliver_are_counted() {
    let app = spawn_app().await;
    let nc = format!("{}/notificationchannel/v1/{}/channels", app.url, enc(ALICE));
    let body = json!({"notificationChannel": {"channelType": "LongPolling", "channelData": {"maxNotifications": 5}, "channelLifetime": 3600}});
    let res = app.post_json(&nc, body).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    let channel_url = v["notificationChannel"]["channelData"]["channelURL"].as_str().unwrap().to_string();
    let callback = v["notificationChannel"]["callbackURL"].as_str().unwrap().to_string();
    let sub = json!({"nmsSubscription": {"callbackReference": {"notifyURL": callback}, "duration": 600}});
    assert_eq!(app.post_json(&format!("{}/subscriptions", app.base(ALICE)), sub).await.status(), 201);
    let before = metrics(&app).await;
    let delivered = "nms_notifications_delivered_total{way=\"long_poll\"}";

    let client = app.client.clone();
    let poll = tokio::spawn(async move {
        let res = client
            .post(&channel_url)
            .basic_auth("alice", Some(PW))
            .json(&json!({"longPollingRequestParameters": null}))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json::<Value>().await.unwrap())
    });
    // The poll is open (this test's or another's) ...
    let mut open = 0.0;
    for _ in 0..200 {
        open = value(&metrics(&app).await, "nms_long_polls_open");
        if open >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(open >= 1.0, "no long poll was counted open");
    // ... and a change answers it.
    app.create_object(json!({"parentFolderPath": "/", "attributes": {"attribute": []}})).await;
    let (status, body) = poll.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(!body["notificationList"].as_array().unwrap().is_empty(), "{body}");
    let after = metrics(&app).await;
    assert!(value(&after, delivered) - value(&before, delivered) >= 1.0, "{delivered}");
    let channel = "nms_http_requests_total{operation=\"ChannelPoll\",status=\"2xx\"}";
    assert!(value(&after, channel) - value(&before, channel) >= 1.0, "{channel}");
}

#[tokio::test]
async fn the_api_description_and_its_docs_page_are_counted_under_their_own_labels() {
    let app = spawn_app().await;
    let before = metrics(&app).await;
    let get = |path: &'static str| app.client.get(format!("{}{path}", app.url)).send();
    assert_eq!(get("/openapi.json").await.unwrap().status(), 200);
    assert_eq!(get("/docs").await.unwrap().status(), 308);
    for asset in ["/docs/", "/docs/swagger-ui.css"] {
        assert_eq!(get(asset).await.unwrap().status(), 200, "{asset}");
    }
    let after = metrics(&app).await;
    let grew = |series: &str| value(&after, series) - value(&before, series);
    let description = "nms_http_requests_total{operation=\"ApiDescription\",status=\"2xx\"}";
    assert!(grew(description) >= 1.0, "{description}");
    let docs = "nms_http_requests_total{operation=\"ApiDocs\",status=\"2xx\"}";
    assert!(grew(docs) >= 2.0, "{docs}");
    let redirect = "nms_http_requests_total{operation=\"ApiDocs\",status=\"3xx\"}";
    assert!(grew(redirect) >= 1.0, "{redirect}");
    // A request a route answered is never Unmatched (other tests' 404s may be counted there
    // meanwhile, but nothing answers one with 2xx or 3xx).
    for st in ["2xx", "3xx"] {
        let unmatched = format!("nms_http_requests_total{{operation=\"Unmatched\",status=\"{st}\"}}");
        assert_eq!(grew(&unmatched), 0.0, "{unmatched}");
    }
    // No file path is a label.
    assert!(!after.contains("swagger-ui.css") && !after.contains("openapi.json"));
}

/// Every metric the Grafana dashboard charts is one the server records.
#[test]
fn the_dashboard_charts_only_metrics_the_server_records() {
    let dashboard: Value = serde_json::from_str(include_str!("../../docker/grafana-dashboard.json")).unwrap();
    let recorded = include_str!("../../src/metrics.rs");
    let mut charted = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("nms_") {
                let name: String = expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                charted.push(name);
            }
        }
    }
    assert!(charted.len() >= 15, "{charted:?}");
    for name in charted {
        let base = ["_bucket", "_count", "_sum"].iter().fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(recorded.contains(&format!("\"{base}\"")), "the dashboard charts {name}, which nothing records");
    }
}

/// Send `GET /healthz` on `stream` and read its whole answer (the body is small and sized).
async fn health_on(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: nms\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\"ok\"}") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the answer: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn idle_connections_are_kept_for_the_next_request_as_long_as_configured() {
    use tokio::io::AsyncReadExt;
    // The default keeps a client's connection well past a pause between synchronisations.
    assert_eq!(cpm_nms::config::Settings::default().server.keep_alive_secs, 75);
    let app = spawn_app_with(|s| s.server.keep_alive_secs = 1).await;
    let addr = app.url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert!(health_on(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Idle past the setting: the server closes its side (the read sees the end), well
    // before the HTTP library's own default of 5 s would.
    let mut rest = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(4), stream.read(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    // With 0, each answer closes its connection.
    let app = spawn_app_with(|s| s.server.keep_alive_secs = 0).await;
    let mut stream = tokio::net::TcpStream::connect(app.url.trim_start_matches("http://")).await.unwrap();
    let answer = health_on(&mut stream).await;
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
}
