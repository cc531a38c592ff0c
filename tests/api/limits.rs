//! Limits against abuse: sizes (body, JSON, payload part), counts (parts per object, objects
//! per bulk request, criteria per search, maxEntries, subscriptions per box, open long polls
//! per principal), the per-principal rate limit, and TLS termination. Each refusal is an
//! OMA policy exception naming the setting and its value, and leaves nothing behind.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const SEARCH: &str = "/objects/operations/search";

/// The objects of alice's box (counted by the service account, which no rate limit slows).
pub(crate) async fn objects(app: &TestApp) -> usize {
    app.object_count().await
}

/// Assert a policy exception whose variable names `key` and `value`.
async fn assert_limit(res: reqwest::Response, status: u16, key: &str, value: &str) -> Value {
    let exc = assert_error(res, status, "POL0001").await;
    let variable = exc["variables"][0].as_str().unwrap_or_default().to_string();
    assert!(variable.contains(key) && variable.contains(value), "{variable} should name {key} = {value}");
    exc
}

/// Nothing stored: no object in alice's box, no blob or temporary on disk.
pub(crate) async fn assert_nothing_left(app: &TestApp) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(objects(app).await, 0, "no object was created");
    assert!(app.blob_files().is_empty(), "stray blobs: {:?}", app.blob_files());
}

fn attachments(content_type: &str) -> [(&'static str, String); 2] {
    [("Content-Disposition", "form-data; name=\"attachments\"".to_string()), ("Content-Type", content_type.to_string())]
}

/// A deposit whose payload is a `multipart/mixed` of `parts` (each an image of that size).
fn mixed_deposit(sizes: &[usize]) -> (String, Vec<u8>) {
    let contents: Vec<Vec<u8>> = sizes.iter().map(|n| (0..*n).map(|i| (i % 251) as u8).collect()).collect();
    let headers: &[(&str, &str)] = &[("Content-Type", "image/png")];
    let parts: Vec<InnerPart<'_>> = contents.iter().map(|c| (headers, c.as_slice())).collect();
    let (inner_type, inner) = nested("multipart/mixed", "inner-b", &parts);
    let h = attachments(&inner_type);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    form().root_fields(&json!({})).part(&h, &inner).finish("multipart/form-data")
}

#[tokio::test]
async fn body_and_json_sizes_are_413_naming_their_limit() {
    let app = spawn_app_with(|s| {
        s.limits.max_body_bytes = 10_000;
        s.limits.max_json_bytes = 200;
    })
    .await;
    let (ct, body) = mixed_deposit(&[20_000]);
    assert_limit(app.deposit(&ct, body).await, 413, "limits.max_body_bytes", "10000").await;
    let res = app
        .post_json(
            &format!("{}/objects", app.base(ALICE)),
            json!({"object": {"attributes": {"attribute": [{"name": "Subject", "value": ["x".repeat(300)]}]}}}),
        )
        .await;
    assert_limit(res, 413, "limits.max_json_bytes", "200").await;
    assert_nothing_left(&app).await;
}

#[tokio::test]
async fn an_oversized_payload_part_is_refused_while_streaming_and_leaves_no_blob() {
    let app = spawn_app_with(|s| {
        s.limits.max_part_bytes = 4096;
        // Parts over 1 KiB go to blob storage, so the refused deposits did write blobs.
        s.storage.inline_max_bytes = 1024;
    })
    .await;
    // A single part over the limit.
    let (ct, body) = mixed_deposit(&[4097]);
    assert_limit(app.deposit(&ct, body).await, 413, "limits.max_part_bytes", "4096").await;
    // A first part stored as a blob, then one over the limit: the whole deposit goes.
    let (ct, body) = mixed_deposit(&[3000, 10_000]);
    assert_limit(app.deposit(&ct, body).await, 413, "limits.max_part_bytes", "4096").await;
    // Streamed without Content-Length, in small chunks: the limit trips mid-part.
    let (ct, body) = mixed_deposit(&[2000, 3000, 50_000]);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let res = app
        .req(Method::POST, &format!("{}/objects", app.base(ALICE)))
        .header("Content-Type", ct)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_limit(res, 413, "limits.max_part_bytes", "4096").await;
    // A leaf (not multipart) payload, and a bulkCreation: the same limit.
    let big = vec![7u8; 5000];
    let h = attachments("image/png");
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ct, body) = form().root_fields(&json!({})).part(&h, &big).finish("multipart/form-data");
    assert_limit(app.deposit(&ct, body).await, 413, "limits.max_part_bytes", "4096").await;
    let roots = serde_json::to_vec(&json!({"objectList": {"object": [{}, {}]}})).unwrap();
    let (ct, body) = form()
        .part(
            &[("Content-Disposition", "form-data; name=\"root-fields\""), ("Content-Type", "application/json")],
            &roots,
        )
        .part(&h, &[1u8; 3000])
        .part(&h, &big)
        .finish("multipart/form-data");
    let res = app
        .req(Method::POST, &format!("{}/objects/operations/bulkCreation", app.base(ALICE)))
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_limit(res, 413, "limits.max_part_bytes", "4096").await;
    assert_nothing_left(&app).await;
    // At the limit exactly: stored.
    let (ct, body) = mixed_deposit(&[4096, 4096]);
    assert_eq!(app.deposit(&ct, body).await.status(), 201);
    assert_eq!(objects(&app).await, 1);
}

#[tokio::test]
async fn large_parts_aborted_mid_upload_leave_no_temporary() {
    // Parts large enough to be streaming into blob storage (past its write buffer) when
    // the limit trips.
    let app = spawn_app_with(|s| s.limits.max_part_bytes = 700_000).await;
    let (ct, body) = mixed_deposit(&[300_000, 900_000]);
    assert_limit(app.deposit(&ct, body).await, 413, "limits.max_part_bytes", "700000").await;
    assert_nothing_left(&app).await;
}

#[tokio::test]
async fn parts_per_object_are_limited() {
    let app = spawn_app_with(|s| {
        s.limits.max_parts_per_object = 2;
        s.storage.inline_max_bytes = 100;
    })
    .await;
    let (ct, body) = mixed_deposit(&[500, 500, 500]);
    assert_limit(app.deposit(&ct, body).await, 403, "limits.max_parts_per_object", "2").await;
    // A CPIM message whose body is a multipart of three parts: the same.
    let cpim = "From: <tel:+13105550000>\r\nTo: <tel:+12125551212>\r\nDateTime: 2024-01-01T00:00:00Z\r\n\r\n\
                Content-Type: multipart/mixed; boundary=\"c\"\r\n\r\n\
                --c\r\nContent-Type: text/plain\r\n\r\none\r\n\
                --c\r\nContent-Type: text/plain\r\n\r\ntwo\r\n\
                --c\r\nContent-Type: text/plain\r\n\r\nthree\r\n--c--\r\n";
    let h = attachments("message/cpim");
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ct, body) = form().root_fields(&json!({})).part(&h, cpim.as_bytes()).finish("multipart/form-data");
    assert_limit(app.deposit(&ct, body).await, 403, "limits.max_parts_per_object", "2").await;
    assert_nothing_left(&app).await;
    let (ct, body) = mixed_deposit(&[500, 500]);
    assert_eq!(app.deposit(&ct, body).await.status(), 201);
}

#[tokio::test]
async fn objects_per_bulk_request_are_limited_before_any_payload_is_stored() {
    let app = spawn_app_with(|s| {
        s.nms.bulk_max_items = 2;
        s.storage.inline_max_bytes = 100;
    })
    .await;
    let roots = serde_json::to_vec(&json!({"objectList": {"object": [{}, {}, {}]}})).unwrap();
    let h = attachments("image/png");
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ct, body) = form()
        .part(
            &[("Content-Disposition", "form-data; name=\"root-fields\""), ("Content-Type", "application/json")],
            &roots,
        )
        .part(&h, &[1u8; 500])
        .part(&h, &[2u8; 500])
        .part(&h, &[3u8; 500])
        .finish("multipart/form-data");
    let res = app
        .req(Method::POST, &format!("{}/objects/operations/bulkCreation", app.base(ALICE)))
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_limit(res, 403, "nms.bulk_max_items", "2").await;
    let res = app
        .post_json(
            &format!("{}/objects/operations/bulkCreation", app.base(ALICE)),
            json!({"objectList": {"object": [{}, {}, {}]}}),
        )
        .await;
    assert_limit(res, 403, "nms.bulk_max_items", "2").await;
    assert_nothing_left(&app).await;
}

#[tokio::test]
async fn criteria_per_search_and_per_filter_are_limited() {
    let app = spawn_app_with(|s| s.limits.max_search_criteria = 3).await;
    let flag = |f: &str| json!({"type": "Flag", "name": f, "value": "true"});
    // Criteria in nested groups count too.
    let four = json!({"operator": "Or", "criterion": [flag("\\Seen"), flag("\\Flagged"), {"searchCriteria": {"criterion": [flag("a"), flag("b")]}}]});
    let three = json!({"operator": "Or", "criterion": [flag("\\Seen"), {"searchCriteria": {"criterion": [flag("a"), flag("b")]}}]});
    let search = |c: &Value| json!({"selectionCriteria": {"maxEntries": 10, "searchCriteria": c}});
    let res = app.post_json(&format!("{}{SEARCH}", app.base(ALICE)), search(&four)).await;
    assert_limit(res, 403, "limits.max_search_criteria", "3").await;
    let res = app.post_json(&format!("{}/folders/operations/search", app.base(ALICE)), search(&four)).await;
    assert_limit(res, 403, "limits.max_search_criteria", "3").await;
    assert_eq!(app.post_json(&format!("{}{SEARCH}", app.base(ALICE)), search(&three)).await.status(), 200);
    // A subscription filter: refused, and no subscription made.
    let (_, callback) = channel(&app, "alice", ALICE).await;
    let sub =
        |filter: &Value| json!({"nmsSubscription": {"callbackReference": {"notifyURL": callback}, "filter": filter}});
    let res = app.post_json(&format!("{}/subscriptions", app.base(ALICE)), sub(&four)).await;
    assert_limit(res, 403, "limits.max_search_criteria", "3").await;
    let v: Value = app.get(&format!("{}/subscriptions", app.base(ALICE))).await.json().await.unwrap();
    assert_eq!(v["nmsSubscriptionList"]["subscription"], json!([]), "{v}");
    assert_eq!(app.post_json(&format!("{}/subscriptions", app.base(ALICE)), sub(&three)).await.status(), 201);
}

#[tokio::test]
async fn max_entries_above_the_ceiling_is_clamped_or_refused() {
    let app = spawn_app_with(|s| s.nms.search_page_max = 2).await;
    for _ in 0..3 {
        app.create_object(json!({})).await;
    }
    let (status, v) = app.post_rel(SEARCH, json!({"selectionCriteria": {"maxEntries": 1000}})).await;
    assert_eq!(status, 200);
    assert_eq!(v["objectList"]["object"].as_array().unwrap().len(), 2);
    assert!(v["objectList"]["cursor"].is_string(), "the rest is a page away: {v}");
    // Or refused, when the policy says so.
    let app = spawn_app_with(|s| {
        s.nms.search_page_max = 2;
        s.nms.search_page_max_refuse = true;
    })
    .await;
    let (status, v) = app.post_rel(SEARCH, json!({"selectionCriteria": {"maxEntries": 3}})).await;
    assert_eq!((status, message_id(&v)), (403, "POL0001"), "{v}");
    assert!(v.to_string().contains("nms.search_page_max"), "{v}");
    let (status, _) = app.post_rel(SEARCH, json!({"selectionCriteria": {"maxEntries": 2}})).await;
    assert_eq!(status, 200);
}

/// A channel of `user` under `{userId}` `address`: (channelURL, callbackURL).
async fn channel(app: &TestApp, user: &str, address: &str) -> (String, String) {
    let res = app
        .req_as(user, Method::POST, &format!("{}/notificationchannel/v1/{}/channels", app.url, enc(address)))
        .json(&json!({"notificationChannel": {"channelType": "LongPolling", "channelData": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    let c = &v["notificationChannel"];
    (c["channelData"]["channelURL"].as_str().unwrap().to_string(), c["callbackURL"].as_str().unwrap().to_string())
}

async fn subscribe(app: &TestApp, user: &str, callback: &str, correlator: &str) -> reqwest::Response {
    app.req_as(user, Method::POST, &format!("{}/subscriptions", app.base(ALICE)))
        .json(
            &json!({"nmsSubscription": {"callbackReference": {"notifyURL": callback}, "clientCorrelator": correlator}}),
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn subscriptions_per_box_are_limited_whoever_makes_them() {
    let app = spawn_app_with(|s| s.limits.max_subscriptions_per_box = 2).await;
    let (_, mine) = channel(&app, "alice", ALICE).await;
    let (_, service) = channel(&app, "pf", ALICE).await;
    assert_eq!(subscribe(&app, "alice", &mine, "one").await.status(), 201);
    let res = subscribe(&app, "pf", &service, "two").await;
    assert_eq!(res.status(), 201);
    let second: Value = res.json().await.unwrap();
    // Full: a third is refused, for either principal.
    assert_limit(subscribe(&app, "alice", &mine, "three").await, 403, "limits.max_subscriptions_per_box", "2").await;
    assert_limit(subscribe(&app, "pf", &service, "three").await, 403, "limits.max_subscriptions_per_box", "2").await;
    // Repeating a clientCorrelator answers the existing subscription, as always.
    assert_eq!(subscribe(&app, "alice", &mine, "one").await.status(), 201);
    let v: Value = app.get(&format!("{}/subscriptions", app.base(ALICE))).await.json().await.unwrap();
    assert_eq!(v["nmsSubscriptionList"]["subscription"].as_array().unwrap().len(), 1, "{v}");
    // Room again once one goes.
    let url = second["nmsSubscription"]["resourceURL"].as_str().unwrap();
    assert_eq!(app.req_as("pf", Method::DELETE, url).send().await.unwrap().status(), 204);
    assert_eq!(subscribe(&app, "alice", &mine, "three").await.status(), 201);
}

/// A long poll by `user` running in the background: its status when it ends.
fn spawn_poll(app: &TestApp, user: &str, channel_url: &str) -> tokio::task::JoinHandle<u16> {
    let req = app.req_as(user, Method::POST, channel_url).json(&json!({"longPollingRequestParameters": null}));
    tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
}

async fn poll_now(app: &TestApp, user: &str, channel_url: &str) -> reqwest::Response {
    app.req_as(user, Method::POST, channel_url)
        .json(&json!({"longPollingRequestParameters": null}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn open_long_polls_per_principal_are_limited() {
    let app = spawn_app_with(|s| {
        s.limits.max_polls_per_principal = 2;
        s.sync.long_poll_secs = 2;
    })
    .await;
    let (c1, _) = channel(&app, "alice", ALICE).await;
    let (c2, _) = channel(&app, "alice", ALICE).await;
    let (c3, _) = channel(&app, "alice", ALICE).await;
    let (bobs, _) = channel(&app, "bob", BOB).await;
    let p1 = spawn_poll(&app, "alice", &c1);
    let p2 = spawn_poll(&app, "alice", &c2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A third channel: 429, retry once the open polls have answered (the poll timeout).
    let res = poll_now(&app, "alice", &c3).await;
    assert_eq!(res.headers()["retry-after"], "2");
    assert_limit(res, 429, "limits.max_polls_per_principal", "2").await;
    // Polling a polled channel again replaces the older poll: let in.
    let p1b = spawn_poll(&app, "alice", &c1);
    assert_eq!(p1.await.unwrap(), 409, "the older poll of c1 ends with SVC1012");
    // Others have their own count.
    let b = spawn_poll(&app, "bob", &bobs);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(poll_now(&app, "alice", &c3).await.status(), 429);
    assert_eq!((p2.await.unwrap(), p1b.await.unwrap(), b.await.unwrap()), (200, 200, 200));
    // All answered: room again.
    assert_eq!(poll_now(&app, "alice", &c3).await.status(), 200);

    // A client that goes away frees its slot at once.
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let held = spawn_poll(&app, "alice", &c1);
    let gone = impatient
        .post(&c2)
        .basic_auth("alice", Some(PW))
        .json(&json!({"longPollingRequestParameters": null}))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = poll_now(&app, "alice", &c3).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    assert_eq!(held.await.unwrap(), 200);
}

#[tokio::test]
async fn requests_are_rate_limited_per_principal_with_retry_after() {
    let app = spawn_app_with(|s| {
        s.limits.rate_per_sec = 0.5;
        s.limits.rate_burst = 3;
    })
    .await;
    let root = format!("{}/folders/operations/pathToId", app.base(ALICE));
    let (channel_url, _) = channel(&app, "alice", ALICE).await;
    // Others have their own buckets (bob), or none (the service account, unless configured),
    // and failed logins take nothing.
    for _ in 0..3 {
        let res = app.req_as("bob", Method::GET, &format!("{}/folders/operations/pathToId", app.base(BOB)));
        assert_eq!(res.send().await.unwrap().status(), 200);
    }
    assert_eq!(objects(&app).await, 0);
    let wrong = app.client.get(&root).basic_auth("alice", Some("wrong")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    // Alice's burst (the channel creation took one token of it).
    let mut admitted = 1;
    let res = loop {
        let res = app.get(&root).await;
        if res.status() != 200 {
            break res;
        }
        admitted += 1;
        assert!(admitted <= 4, "the burst is 3 (plus what refilled meanwhile)");
    };
    assert!(admitted >= 3, "{admitted}");
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().expect("integer seconds");
    assert!((1..=2).contains(&retry), "a token comes back within 2 s at 0.5/s: {retry}");
    assert_limit(res, 429, "limits.rate_per_sec", "0.5").await;
    // Refused requests do nothing; channel requests (a long poll too) count as well.
    let res = app.post_json(&format!("{}/objects", app.base(ALICE)), json!({"object": {}})).await;
    assert_error(res, 429, "POL0001").await;
    assert_eq!(poll_now(&app, "alice", &channel_url).await.status(), 429);
    assert_eq!(objects(&app).await, 0);
    // After waiting as told: admitted again, once.
    tokio::time::sleep(Duration::from_secs(retry) + Duration::from_millis(100)).await;
    assert_eq!(app.get(&root).await.status(), 200);
    assert_eq!(app.get(&root).await.status(), 429);
}

#[tokio::test]
async fn service_accounts_are_rate_limited_only_when_configured() {
    let app = spawn_app_with(|s| {
        s.limits.rate_per_sec = 0.5;
        s.limits.rate_burst = 1;
        s.limits.rate_limit_services = true;
    })
    .await;
    let root = format!("{}/folders/operations/pathToId", app.base(ALICE));
    assert_eq!(app.req_as("pf", Method::GET, &root).send().await.unwrap().status(), 200);
    let res = app.req_as("pf", Method::GET, &root).send().await.unwrap();
    assert_eq!(res.headers()["retry-after"], "2");
    assert_limit(res, 429, "limits.rate_per_sec", "0.5").await;
}

fn tls_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tls").join(name)
}

#[tokio::test]
async fn tls_terminates_in_the_server_and_urls_are_https() {
    let app = spawn_app_with(|s| {
        s.server.tls_cert = Some(tls_file("server-chain.pem"));
        s.server.tls_key = Some(tls_file("server.key"));
    })
    .await;
    assert!(app.url.starts_with("https://127.0.0.1:"), "{}", app.url);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls_file("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let res = client
        .get(format!("{}/folders/operations/pathToId", app.base(ALICE)))
        .basic_auth("alice", Some(PW))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let url = v["reference"]["resourceURL"].as_str().unwrap();
    assert!(url.starts_with(&app.url), "{url}");
    // A deposit and its payload round-trip over TLS.
    let (ct, body) = mixed_deposit(&[20_000]);
    let res = client
        .post(format!("{}/objects", app.base(ALICE)))
        .basic_auth("alice", Some(PW))
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // Plain HTTP to the TLS port, and a client that does not trust the CA, get nowhere.
    let plain = app.url.replacen("https://", "http://", 1);
    let res = reqwest::Client::new().get(format!("{plain}/health")).send().await;
    assert!(res.is_err() || !res.unwrap().status().is_success());
    assert!(reqwest::Client::new().get(format!("{}/health", app.url)).send().await.is_err());
}

#[tokio::test]
async fn tls_misconfiguration_stops_the_start() {
    let build = |cert: Option<PathBuf>, key: Option<PathBuf>| async move {
        let data = tempfile::tempdir().unwrap();
        let mut s = cpm_nms::config::Settings { data_dir: data.path().to_path_buf(), ..Default::default() };
        s.server.listen = "127.0.0.1:0".into();
        s.server.tls_cert = cert;
        s.server.tls_key = key;
        cpm_nms::startup::Application::build(s).await.err().map(|e| e.to_string())
    };
    let e = build(Some(tls_file("server-chain.pem")), None).await.expect("a cert without a key");
    assert!(e.contains("tls_key"), "{e}");
    let e = build(Some(tls_file("server-chain.pem")), Some(tls_file("missing.key"))).await.expect("no key file");
    assert!(e.contains("server.tls_key"), "{e}");
    let e = build(Some(tls_file("server.key")), Some(tls_file("server.key"))).await.expect("a key is no certificate");
    assert!(e.contains("server.tls_cert"), "{e}");
}

#[tokio::test]
async fn channels_per_principal_are_limited() {
    let app = spawn_app_with(|s| s.limits.max_channels_per_principal = 2).await;
    let create = |user: &'static str, address: &'static str| {
        let app = &app;
        async move {
            app.req_as(user, Method::POST, &format!("{}/notificationchannel/v1/{}/channels", app.url, enc(address)))
                .json(&json!({"notificationChannel": {"channelType": "LongPolling", "channelData": {}}}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(create("alice", ALICE).await.status(), 201);
    assert_eq!(create("alice", ALICE).await.status(), 201);
    assert_limit(create("alice", ALICE).await, 403, "limits.max_channels_per_principal", "2").await;
    assert_eq!(create("bob", BOB).await.status(), 201, "per principal");
}
