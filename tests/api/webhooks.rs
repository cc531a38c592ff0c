//! Webhook delivery against a local HTTP receiver: lists in index order, retries with the
//! same body after 5xx, timeouts and refused connections, the subscription ending on
//! 404/410, refused notifyURLs, and lists in XML for subscriptions that ask for it.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use nms_conformance::xml::to_json;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ops::{metrics, value};

/// What the receiver answers to one attempt.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    /// Answer 204, but only after this long.
    Slow(Duration),
    /// 503 with `Retry-After` (seconds).
    RetryAfter(u64),
}

/// One attempt as the receiver saw it: the body (XML read back into the JSON shape), as
/// sent and its `Content-Type`, and what it answered.
#[derive(Clone, Debug)]
struct Attempt {
    body: Value,
    raw: String,
    content_type: String,
    status: u16,
    at: Instant,
}

#[derive(Clone, Default)]
struct Receiver {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Receiver {
    fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }

    /// The delivered (2xx) lists.
    fn delivered(&self) -> Vec<Value> {
        self.attempts().into_iter().filter(|a| a.status < 300).map(|a| a.body).collect()
    }
}

async fn hook(rx: web::Data<Receiver>, req: HttpRequest, raw: web::Bytes) -> HttpResponse {
    let reply = rx.script.lock().unwrap().pop_front().unwrap_or(Reply::Status(204));
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let body: Value = if content_type == "application/xml" {
        to_json(&raw).unwrap_or(Value::Null)
    } else {
        serde_json::from_slice(&raw).unwrap_or(Value::Null)
    };
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let at = Instant::now();
    let (status, retry_after) = match reply {
        Reply::Status(s) => (s, None),
        Reply::Slow(d) => {
            tokio::time::sleep(d).await;
            (204, None)
        }
        Reply::RetryAfter(secs) => (503, Some(secs)),
    };
    rx.attempts.lock().unwrap().push(Attempt { body, raw, content_type, status, at });
    let mut res = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    if let Some(secs) = retry_after {
        res.insert_header(("Retry-After", secs.to_string()));
    }
    res.finish()
}

/// A receiver listening on `listener`, answering by `script` and then 204.
fn serve(listener: TcpListener, script: Vec<Reply>) -> Receiver {
    let rx = Receiver { script: Arc::new(Mutex::new(script.into())), ..Default::default() };
    let data = web::Data::new(rx.clone());
    serve_local(listener, move |cfg| {
        cfg.app_data(data.clone()).route("/hook", web::post().to(hook));
    });
    rx
}

/// A receiver on a fresh port: it and its hook URL.
fn receiver(script: Vec<Reply>) -> (Receiver, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    (serve(listener, script), url)
}

async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.sync.webhook_retry_initial_ms = 50;
        s.sync.webhook_retry_max_secs = 1;
        s.sync.webhook_timeout_secs = 1;
        // The receivers listen on the loopback interface.
        s.sync.webhook_private_networks = true;
    })
    .await
}

async fn subscribe(app: &TestApp, notify_url: &str) -> (u16, Value) {
    subscribe_with(app, json!({"callbackReference": {"notifyURL": notify_url, "callbackData": "hook-1"}})).await
}

/// Subscribe with these members of `nmsSubscription` (and a 600 s duration).
async fn subscribe_with(app: &TestApp, mut subscription: Value) -> (u16, Value) {
    subscription["duration"] = json!(600);
    let res = app
        .req(Method::POST, &format!("{}/subscriptions", app.base(ALICE)))
        .json(&json!({ "nmsSubscription": subscription }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Wait (up to 10 s) until `done` holds for the receiver.
async fn until(rx: &Receiver, what: &str, done: impl Fn(&Receiver) -> bool) {
    let start = Instant::now();
    while !done(rx) {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}: {:?}", rx.attempts());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The changedObject resource URLs of delivered lists, in order.
fn changed_objects(lists: &[Value]) -> Vec<String> {
    lists
        .iter()
        .flat_map(|l| l["nmsEventList"]["nmsEvent"].as_array().unwrap().clone())
        .filter_map(|e| e["changedObject"]["resourceURL"].as_str().map(str::to_string))
        .collect()
}

fn index(body: &Value) -> i64 {
    body["nmsEventList"]["index"].as_i64().unwrap()
}

#[tokio::test]
async fn webhooks_get_every_list_in_index_order_and_retries_resend_the_same_list() {
    let app = app().await;
    let before = metrics(&app).await;
    let (rx, url) = receiver(vec![Reply::Status(503), Reply::Status(500), Reply::Status(429)]);
    let (status, v) = subscribe(&app, &url).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["nmsSubscription"]["callbackReference"]["notifyURL"], url.as_str());
    let subscription = v["nmsSubscription"]["resourceURL"].as_str().unwrap().to_string();

    let mut made = Vec::new();
    for i in 0..5 {
        made.push(
            app.create_object(json!({"attributes": {"attribute": [{"name": "Subject", "value": [format!("m{i}")]}]}}))
                .await,
        );
    }
    until(&rx, "all five objects", |rx| changed_objects(&rx.delivered()).len() >= 5).await;
    let b = app.nms.find_box("base", ALICE).await.unwrap().unwrap();
    let token = app.nms.current_token(&b).await.unwrap();
    until(&rx, "the current token", |rx| {
        rx.delivered().last().is_some_and(|l| l["nmsEventList"]["restartToken"] == token.as_str())
    })
    .await;

    let attempts = rx.attempts();
    // Three failures, all of list 1 and with the same body as its delivery.
    let delivered = rx.delivered();
    assert_eq!(attempts.iter().filter(|a| a.status >= 300).count(), 3, "{attempts:?}");
    for a in attempts.iter().take(3) {
        assert_eq!(a.body, delivered[0], "a retry resends the list as it was");
    }
    // Never out of index order; every index delivered once, from 1 up without gaps.
    let seen: Vec<i64> = attempts.iter().map(|a| index(&a.body)).collect();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "attempts out of order: {seen:?}");
    let indexes: Vec<i64> = delivered.iter().map(index).collect();
    assert_eq!(indexes, (1..=delivered.len() as i64).collect::<Vec<_>>());
    assert_eq!(changed_objects(&delivered), made, "each object once, in order");
    let list = &delivered[0]["nmsEventList"];
    assert_eq!(list["callbackData"], "hook-1");
    assert_eq!(list["link"][0]["rel"], "NmsSubscription");
    assert_eq!(list["link"][0]["href"], subscription.as_str());
    // The subscription lives on, its index past the last list.
    let v: Value = app.get(&subscription).await.json().await.unwrap();
    assert_eq!(v["nmsSubscription"]["index"], delivered.len() as i64 + 1);
    // The metrics count the failures, the retries and the deliveries (at least this test's:
    // other tests' servers share the process's recorder).
    let after = metrics(&app).await;
    let grew = |series: &str| value(&after, series) - value(&before, series);
    assert!(grew("nms_webhook_deliveries_total{outcome=\"failed\"}") >= 3.0);
    assert!(grew("nms_webhook_retries_total") >= 3.0);
    let n = delivered.len() as f64;
    assert!(grew("nms_webhook_deliveries_total{outcome=\"delivered\"}") >= n);
    assert!(grew("nms_notifications_delivered_total{way=\"webhook\"}") >= n);
    assert!(after.contains("nms_webhook_queue_depth "), "{after}");
}

#[tokio::test]
async fn a_webhook_that_times_out_or_refuses_connections_is_retried() {
    let app = app().await;
    // Slower than the 1 s delivery timeout: a failure, then delivered on the next attempt.
    let (rx, url) = receiver(vec![Reply::Slow(Duration::from_millis(1500))]);
    assert_eq!(subscribe(&app, &url).await.0, 201);
    let id = app.create_object(json!({})).await;
    until(&rx, "a delivery", |rx| !rx.delivered().is_empty() && rx.attempts().len() >= 2).await;
    let lists = rx.delivered();
    assert!(lists.iter().all(|l| index(l) == 1), "list 1 again, never list 2 before it: {lists:?}");
    assert_eq!(changed_objects(&lists[..1]), [id]);

    // Nobody listening at first: refused connections are retried until a receiver is there.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/hook");
    assert_eq!(subscribe(&app, &url).await.0, 201);
    let id = app.create_object(json!({})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let rx = serve(TcpListener::bind(addr).unwrap(), vec![]);
    until(&rx, "a delivery after the receiver came up", |rx| !rx.delivered().is_empty()).await;
    let first = &rx.delivered()[0];
    assert_eq!(index(first), 1);
    assert_eq!(changed_objects(std::slice::from_ref(first)), [id]);
}

#[tokio::test]
async fn a_retry_after_from_the_receiver_replaces_the_backoff() {
    let app = app().await;
    let (rx, url) = receiver(vec![Reply::RetryAfter(1)]);
    assert_eq!(subscribe(&app, &url).await.0, 201);
    app.create_object(json!({})).await;
    until(&rx, "a delivery", |rx| !rx.delivered().is_empty()).await;
    let attempts = rx.attempts();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let waited = attempts[1].at - attempts[0].at;
    assert!(waited >= Duration::from_millis(900), "retried after {waited:?}, not after Retry-After: 1");
}

#[tokio::test]
async fn a_webhook_answering_404_or_410_ends_its_subscription() {
    let app = app().await;
    for gone in [404, 410] {
        let (rx, url) = receiver(vec![Reply::Status(gone)]);
        let (_, v) = subscribe(&app, &url).await;
        let subscription = v["nmsSubscription"]["resourceURL"].as_str().unwrap().to_string();
        app.create_object(json!({})).await;
        until(&rx, "the first attempt", |rx| !rx.attempts().is_empty()).await;
        let start = Instant::now();
        loop {
            let res = app.get(&subscription).await;
            if res.status() == 404 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "subscription still there after {gone}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.create_object(json!({})).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rx.attempts().len(), 1, "nothing more is sent after {gone}");
    }
}

#[tokio::test]
async fn notify_urls_that_cannot_be_delivered_to_are_refused() {
    let app = app().await;
    for bad in ["ftp://example.com/hook", "not a url", "/relative/hook", "mailto:hook@example.com"] {
        let (status, v) = subscribe(&app, bad).await;
        assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{bad}: {v}");
    }
    // A path on this server that is not a channel's callbackURL.
    let (status, v) = subscribe(&app, &format!("{}/notificationchannel/v1/x/channels/nope", app.url)).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{v}");
    let (status, v) = subscribe(&app, &format!("{}/notificationchannel/v1/x/channels/nope/callback", app.url)).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"), "no such channel: {v}");

    // By default the server's own networks are out of reach: literal addresses are refused,
    // names resolving to them are never called.
    let app = spawn_app().await;
    let (rx, url) = receiver(vec![]);
    let (status, v) = subscribe(&app, &url).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{v}");
    let by_name = url.replace("127.0.0.1", "localhost");
    let (status, v) = subscribe(&app, &by_name).await;
    assert_eq!(status, 201, "{v}");
    app.create_object(json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.attempts().is_empty(), "a name resolving to loopback was called");

    // With webhooks turned off, only channels remain.
    let app = spawn_app_with(|s| s.sync.webhooks = false).await;
    let (status, v) = subscribe(&app, "http://127.0.0.1:9/hook").await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{v}");
}

#[tokio::test]
async fn a_subscription_in_xml_gets_its_lists_in_xml() {
    let app = app().await;
    let b = app.nms.find_box("base", ALICE).await.unwrap().unwrap();
    let from = app.nms.current_token(&b).await.unwrap();
    let folder = app.create_folder(json!({"parentFolderPath": "/", "name": "f & g"})).await;
    let object = app.create_object(json!({"parentFolder": folder, "flags": {"flag": ["\\Seen"]}})).await;
    assert_eq!(app.delete(&object).await.status(), 204);
    // The same changes, to a JSON and an XML subscriber, from the same token: the same list.
    let (json_rx, json_url) = receiver(vec![]);
    let (xml_rx, xml_url) = receiver(vec![Reply::Status(503)]);
    let (status, v) = subscribe_with(
        &app,
        json!({"callbackReference": {"notifyURL": json_url, "callbackData": "cb"}, "restartToken": from}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = subscribe_with(
        &app,
        json!({"callbackReference": {"notifyURL": xml_url, "callbackData": "cb", "notificationFormat": "xml"},
            "restartToken": from}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        v["nmsSubscription"]["callbackReference"]["notificationFormat"], "XML",
        "echoed as the schema spells it"
    );
    let xml_subscription = v["nmsSubscription"]["resourceURL"].as_str().unwrap().to_string();
    until(&json_rx, "the JSON list", |rx| !rx.delivered().is_empty()).await;
    until(&xml_rx, "the XML list", |rx| !rx.delivered().is_empty()).await;

    let json_list = &json_rx.attempts()[0];
    assert_eq!(json_list.content_type, "application/json");
    let attempts = xml_rx.attempts();
    assert_eq!(attempts.len(), 2, "one retry: {attempts:?}");
    assert_eq!(attempts[0].raw, attempts[1].raw, "a retry resends the same document");
    let xml_list = &attempts[1];
    assert_eq!(xml_list.content_type, "application/xml");
    assert!(
        xml_list.raw.contains("<nms:nmsEventList xmlns:nms=\"urn:oma:xml:rest:netapi:nms:1\">"),
        "{}",
        xml_list.raw
    );
    crate::xml::assert_valid(&xml_list.raw);
    // The same data: the events, index, restart token and callbackData; the link names each
    // its own subscription.
    assert_eq!(xml_list.body["nmsEventList"]["link"][0]["href"], xml_subscription.as_str());
    let unlinked = |v: &Value| {
        let mut v = v.clone();
        v["nmsEventList"]["link"] = Value::Null;
        v
    };
    assert_eq!(unlinked(&xml_list.body), unlinked(&json_list.body), "XML:\n{}", xml_list.raw);
    assert_eq!(index(&xml_list.body), 1);
    let events = json_list.body["nmsEventList"]["nmsEvent"].as_array().unwrap();
    assert!(events.iter().any(|e| e["changedFolder"]["resourceURL"] == folder.as_str()), "{events:?}");
    assert!(events.iter().any(|e| e["deletedObject"]["resourceURL"] == object.as_str()), "{events:?}");

    // Neither XML nor JSON: refused.
    let (status, v) =
        subscribe_with(&app, json!({"callbackReference": {"notifyURL": xml_url, "notificationFormat": "YAML"}})).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0003"), "{v}");
}
