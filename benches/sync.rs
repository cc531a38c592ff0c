//! Notification latency and replay throughput of subscriptions delivered through
//! long-polling notification channels, over real HTTP.
//!
//! Starts the server in-process (loopback, port 0, data dir in a tempdir) and measures:
//!
//! - **replay**: a box with `NMS_BENCH_CHANGES` changes (default 100,000: objects created
//!   through the store in transactions of 100, then one in ten of them deleted, also 100 a
//!   transaction) made after a restart token was taken. A subscription created with that
//!   token, on a channel with `maxNotifications` at its maximum (100), is drained with long
//!   polls until a list carries the box's current token; every change must arrive exactly
//!   once (each surviving object as `changedObject`, each deleted one as `deletedObject`,
//!   each folder as `changedFolder`). The same replay is also timed below HTTP: through the
//!   domain's long poll (`Nms::poll`: replay, filter, index compare-and-set) and through the
//!   store alone (`changes_since`, 100 at a time), to show where the time goes.
//! - **latency**: with a long poll already waiting (sent 10 ms before), one JSON deposit;
//!   the time from the deposit's `201` to the poll's answer carrying it (and from sending the
//!   deposit), over `NMS_BENCH_DEPOSITS` deposits (default 500) into the seeded box.
//!
//! Run with `cargo bench --bench sync` (release build). `NMS_BENCH_ATTRIBUTES` (0-5, default
//! 5) sets the attributes per seeded object, which the replay loads although no event
//! renders them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::error::Error;
use std::time::{Duration, Instant};

use cpm_nms::auth::hash_password;
use cpm_nms::config::Settings;
use cpm_nms::ids::{new_id, now_ms};
use cpm_nms::model::{Attribute, BoxRow, NewObject, ParentRef, Targets};
use cpm_nms::nms::subscriptions::{ChannelInput, PollOutcome, SubscriptionInput};
use cpm_nms::nms::sync::RestartPoint;
use cpm_nms::startup::Application;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const ADDRESS: &str = "tel:+12125551212";
const BOX: &str = "tel%3A%2B12125551212";
const USER: &str = "bench";
const PASSWORD: &str = "pw";
/// Objects per seeding transaction: one modseq group each, the size of a replay page.
const BATCH: usize = 100;
const FOLDERS: usize = 20;
/// The folders made by the seeding: `/RCSMessageStore` and its `FOLDERS` children.
const NEW_FOLDERS: usize = FOLDERS + 1;
/// One seeded object in this many is deleted afterwards.
const DELETE_EVERY: usize = 10;
/// A channel's maximum `maxNotifications`.
const MAX_NOTIFICATIONS: u64 = 100;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fail(msg: String) -> Box<dyn Error + Send + Sync> {
    msg.into()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    sorted[((n as f64 * p).ceil() as usize).clamp(1, n) - 1]
}

fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

struct Http {
    client: reqwest::Client,
    url: String,
    base: String,
}

impl Http {
    async fn send(&self, method: reqwest::Method, url: &str, body: &Value) -> Res<(u16, Value)> {
        let res = self.client.request(method, url).basic_auth(USER, Some(PASSWORD)).json(body).send().await?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// A long-polling channel: (channelURL, callbackURL).
    async fn channel(&self, max_notifications: u64) -> Res<(String, String)> {
        let body = json!({"notificationChannel": {"channelType": "LongPolling", "channelLifetime": 3600,
            "channelData": {"maxNotifications": max_notifications}}});
        let url = format!("{}/notificationchannel/v1/{BOX}/channels", self.url);
        let (status, v) = self.send(reqwest::Method::POST, &url, &body).await?;
        if status != 201 {
            return Err(fail(format!("channel: {status} {v}")));
        }
        let c = &v["notificationChannel"];
        if c["channelData"]["maxNotifications"] != max_notifications {
            return Err(fail(format!("maxNotifications not granted: {v}")));
        }
        Ok((c["channelData"]["channelURL"].as_str().unwrap().into(), c["callbackURL"].as_str().unwrap().into()))
    }

    /// A subscription delivering into `callback`, from `token` if given: (resourceURL, restartToken).
    async fn subscribe(&self, callback: &str, token: Option<&str>) -> Res<(String, String)> {
        let mut sub = json!({"callbackReference": {"notifyURL": callback}, "duration": 3600});
        if let Some(t) = token {
            sub["restartToken"] = json!(t);
        }
        let url = format!("{}/subscriptions", self.base);
        let (status, v) = self.send(reqwest::Method::POST, &url, &json!({ "nmsSubscription": sub })).await?;
        if status != 201 {
            return Err(fail(format!("subscription: {status} {v}")));
        }
        let s = &v["nmsSubscription"];
        Ok((s["resourceURL"].as_str().unwrap().into(), s["restartToken"].as_str().unwrap().into()))
    }
}

/// One long poll: the instant its answer was read completely, the bytes, the JSON and the
/// time the client took to parse it.
async fn poll(client: reqwest::Client, channel_url: String) -> Res<(Instant, usize, Value, Duration)> {
    let res = client
        .post(&channel_url)
        .basic_auth(USER, Some(PASSWORD))
        .json(&json!({"longPollingRequestParameters": null}))
        .send()
        .await?;
    let status = res.status().as_u16();
    let bytes = res.bytes().await?;
    let at = Instant::now();
    if status != 200 {
        return Err(fail(format!("poll: {status} {}", String::from_utf8_lossy(&bytes))));
    }
    let v = serde_json::from_slice(&bytes)?;
    Ok((at, bytes.len(), v, at.elapsed()))
}

/// What the seeding left: the ids expected as changed and as deleted objects.
struct Seeded {
    alive: HashSet<String>,
    deleted: HashSet<String>,
}

/// `n` objects through the store (transactions of `BATCH`, folders `/RCSMessageStore/convK`
/// made on the way; the first `attributes` of Message-Context, Direction, From, To,
/// Subject), then every `DELETE_EVERY`-th deleted (transactions of `BATCH`).
async fn seed(nms: &cpm_nms::nms::Nms, b: &BoxRow, n: usize, attributes: usize) -> Res<Seeded> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut alive = HashSet::with_capacity(n);
    let mut order = Vec::with_capacity(n);
    for start in (0..n).step_by(BATCH) {
        let now = now_ms();
        let batch: Vec<_> = (start..(start + BATCH).min(n))
            .map(|i| {
                let subject = format!("message {i} about the meeting tomorrow");
                Ok(NewObject {
                    public_id: new_id(),
                    parent: ParentRef::Path {
                        path: format!("/RCSMessageStore/conv{}", i % FOLDERS),
                        create_missing: true,
                    },
                    attributes: [
                        ("Message-Context", "chat-message".to_string()),
                        ("Direction", "In".into()),
                        ("From", format!("tel:+1555000{:04}", i % 100)),
                        ("To", ADDRESS.into()),
                        ("Subject", subject.clone()),
                    ]
                    .into_iter()
                    .take(attributes)
                    .map(|(name, value)| Attribute { name: name.into(), values: vec![value] })
                    .collect(),
                    flags: if rng.gen_range(0..3) == 0 { vec!["\\Seen".into()] } else { Vec::new() },
                    correlation_id: None,
                    correlation_tag: Some(format!("{:016x}", rng.r#gen::<u64>())),
                    payload_type: None,
                    parts: Vec::new(),
                    text: subject,
                    now_ms: now,
                })
            })
            .collect();
        for r in nms.published(nms.store().create_objects(b, batch).await?) {
            let o = r?;
            alive.insert(o.public_id.clone());
            order.push(o.public_id);
        }
    }
    let doomed: Vec<String> = order.iter().step_by(DELETE_EVERY).cloned().collect();
    let mut deleted = HashSet::with_capacity(doomed.len());
    for chunk in doomed.chunks(BATCH) {
        let deleted_now =
            nms.store().bulk_delete(b, &Targets::Ids(chunk.to_vec()), now_ms(), &cpm_nms::cpm::Departures).await?;
        let (items, _) = nms.published(deleted_now);
        for item in items {
            if item.outcome.is_none() {
                return Err(fail(format!("could not delete {}", item.public_id)));
            }
            alive.remove(&item.public_id);
            deleted.insert(item.public_id);
        }
    }
    Ok(Seeded { alive, deleted })
}

/// Tally of a drain: every change exactly once.
#[derive(Default)]
struct Drain {
    changed: HashSet<String>,
    deleted: HashSet<String>,
    folders: usize,
    events: usize,
    lists: usize,
    polls: usize,
    bytes: usize,
    poll_ms: Vec<f64>,
    /// The client's JSON parsing (HTTP only).
    parse: Duration,
}

impl Drain {
    fn check(&self, seeded: &Seeded, what: &str) -> Res<()> {
        let expected = seeded.alive.len() + seeded.deleted.len() + NEW_FOLDERS;
        if self.events != expected
            || self.changed != seeded.alive
            || self.deleted != seeded.deleted
            || self.folders != NEW_FOLDERS
        {
            return Err(fail(format!(
                "{what}: {} events ({} changed objects, {} deleted, {} folders), expected {expected}",
                self.events,
                self.changed.len(),
                self.deleted.len(),
                self.folders
            )));
        }
        Ok(())
    }
}

/// Drain the subscription over HTTP until a list carries `current`.
async fn drain_http(http: &Http, channel_url: &str, current: &str) -> Res<Drain> {
    let mut d = Drain::default();
    let mut expected_index = 1;
    loop {
        let t = Instant::now();
        let (_, bytes, v, parse) = poll(http.client.clone(), channel_url.to_string()).await?;
        d.poll_ms.push(ms(t.elapsed()));
        d.parse += parse;
        d.polls += 1;
        d.bytes += bytes;
        let lists = v["notificationList"].as_array().ok_or_else(|| fail(format!("no notificationList: {v}")))?;
        if lists.is_empty() {
            return Err(fail("an empty poll before the current token".into()));
        }
        let mut last_token = "";
        for l in lists {
            let l = &l["nmsEventList"];
            if l["index"] != expected_index {
                return Err(fail(format!("index {} where {expected_index} was due", l["index"])));
            }
            expected_index += 1;
            d.lists += 1;
            for e in l["nmsEvent"].as_array().ok_or_else(|| fail("no nmsEvent".into()))? {
                d.events += 1;
                if let Some(o) = e.get("changedObject") {
                    d.changed.insert(last_segment(o["resourceURL"].as_str().unwrap()).to_string());
                } else if let Some(o) = e.get("deletedObject") {
                    d.deleted.insert(last_segment(o["resourceURL"].as_str().unwrap()).to_string());
                } else if e.get("changedFolder").is_some() {
                    d.folders += 1;
                } else {
                    return Err(fail(format!("unexpected event {e}")));
                }
            }
            last_token = l["restartToken"].as_str().unwrap_or_default();
        }
        if last_token == current {
            return Ok(d);
        }
    }
}

/// Drain through the domain's long poll (no HTTP, no JSON).
async fn drain_domain(nms: &cpm_nms::nms::Nms, channel: &str, current: &str) -> Res<Drain> {
    use cpm_nms::model::Change;
    use cpm_nms::nms::sync::SyncEvent;
    let mut d = Drain::default();
    loop {
        let t = Instant::now();
        let PollOutcome::Lists(lists) = nms.poll(USER, channel, Duration::from_secs(5)).await? else {
            return Err(fail("superseded".into()));
        };
        d.poll_ms.push(ms(t.elapsed()));
        d.polls += 1;
        if lists.is_empty() {
            return Err(fail("an empty domain poll before the current token".into()));
        }
        for l in &lists {
            d.lists += 1;
            for e in &l.events {
                d.events += 1;
                match e {
                    SyncEvent::Change(Change::Object(o)) => {
                        d.changed.insert(o.public_id.clone());
                    }
                    SyncEvent::Change(Change::Gone(t)) if t.kind == "object" => {
                        d.deleted.insert(t.public_id.clone());
                    }
                    SyncEvent::Change(Change::Folder(_)) => d.folders += 1,
                    other => return Err(fail(format!("unexpected event {other:?}"))),
                }
            }
        }
        if lists.last().map(|l| l.restart_token.as_str()) == Some(current) {
            return Ok(d);
        }
    }
}

/// The store alone: `changes_since`, 100 at a time, from `after` to the end.
async fn drain_store(nms: &cpm_nms::nms::Nms, b: &BoxRow, after: i64) -> Res<(usize, usize, Duration)> {
    let t = Instant::now();
    let (mut events, mut pages, mut at, mut within) = (0, 0, after, None);
    loop {
        let page = nms.store().changes_since(b, at, within, 100, false).await?;
        events += page.changes.len();
        pages += 1;
        if !page.more {
            return Ok((events, pages, t.elapsed()));
        }
        (at, within) = (page.through, page.through_within);
    }
}

fn report_drain(name: &str, d: &Drain, took: Duration) {
    let mut p = d.poll_ms.clone();
    p.sort_by(f64::total_cmp);
    println!(
        "{name:<34} {:>8} {:>6} {:>6} {:>8.2} {:>10.0} {:>9.1} {:>9.1} {:>8.1} {:>9.2}",
        d.events,
        d.lists,
        d.polls,
        took.as_secs_f64(),
        d.events as f64 / took.as_secs_f64(),
        pct(&p, 0.5),
        pct(&p, 1.0),
        d.bytes as f64 / 1e6,
        d.parse.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() -> Res<()> {
    let n = env("NMS_BENCH_CHANGES", 100_000);
    let deposits = env("NMS_BENCH_DEPOSITS", 500);
    let attributes = env("NMS_BENCH_ATTRIBUTES", 5).min(5);
    let tmp = tempfile::tempdir()?;
    let mut s = Settings { data_dir: tmp.path().to_path_buf(), ..Default::default() };
    // `NMS_BENCH_DATABASE_URL` (a fresh, empty database, e.g. `postgres://...`) runs the
    // bench on that engine; the default is SQLite in the data dir.
    if let Ok(url) = std::env::var("NMS_BENCH_DATABASE_URL") {
        s.storage.database_url = url;
        s.auth.cursor_secret = "bench".into();
    }
    s.server.listen = "127.0.0.1:0".into();
    // Measure notifications, not the periodic argon2 re-verification of the Basic credential.
    s.auth.cache_ttl_secs = 3600;
    let app = Application::build(s).await?;
    let url = app.public_url().to_string();
    let nms = app.nms().clone();
    let b = nms.provision_box("base", ADDRESS).await?;
    let hash = hash_password(PASSWORD)?;
    nms.store().create_account(USER, &hash, false, &[("base".into(), ADDRESS.into())]).await?;
    tokio::spawn(app.run_until_stopped());
    let http = Http { client: reqwest::Client::new(), base: format!("{url}/nms/v1/base/{BOX}"), url };
    println!(
        "cpm-nms sync bench: replay of {n} changes ({attributes} attributes per object), latency over {deposits} deposits"
    );

    // ---- replay throughput
    let before = nms.current_token(&b).await?;
    let from: RestartPoint = nms.open_restart_token(&b, &before)?;
    let t = Instant::now();
    let seeded = seed(&nms, &b, n, attributes).await?;
    let seeding = t.elapsed();
    let current = nms.current_token(&b).await?;
    let total = seeded.alive.len() + seeded.deleted.len() + NEW_FOLDERS;
    println!(
        "seeded {n} objects and deleted {} through the store in {:.1} s ({:.0} objects/s, transactions of {BATCH}): \
         {total} changes to replay ({} changedObject, {} deletedObject, {NEW_FOLDERS} changedFolder)",
        seeded.deleted.len(),
        seeding.as_secs_f64(),
        n as f64 / seeding.as_secs_f64(),
        seeded.alive.len(),
        seeded.deleted.len(),
    );

    println!();
    println!(
        "{:<34} {:>8} {:>6} {:>6} {:>8} {:>10} {:>9} {:>9} {:>8} {:>9}",
        "replay (maxNotifications 100)",
        "events",
        "lists",
        "polls",
        "time s",
        "events/s",
        "poll p50",
        "poll max",
        "MB",
        "parse s"
    );
    let mut rates = Vec::new();
    for round in 0..2 {
        // End to end: a new subscription from the old token, drained with long polls.
        let (channel_url, callback) = http.channel(MAX_NOTIFICATIONS).await?;
        http.subscribe(&callback, Some(&before)).await?;
        let t = Instant::now();
        let d = drain_http(&http, &channel_url, &current).await?;
        let took = t.elapsed();
        d.check(&seeded, "HTTP drain")?;
        report_drain(&format!("HTTP long polls (run {})", round + 1), &d, took);
        rates.push(d.events as f64 / took.as_secs_f64());

        // The domain's long poll, without HTTP and JSON.
        let c = nms
            .create_channel(
                USER,
                ADDRESS,
                ChannelInput {
                    channel_type: "LongPolling".into(),
                    max_notifications: Some(MAX_NOTIFICATIONS),
                    ..Default::default()
                },
            )
            .await?;
        nms.create_subscription(
            &b,
            USER,
            SubscriptionInput {
                notify_url: "domain".into(),
                channel: Some(c.public_id.clone()),
                restart_token: Some(before.clone()),
                ..Default::default()
            },
        )
        .await?;
        let t = Instant::now();
        let d = drain_domain(&nms, &c.public_id, &current).await?;
        let took = t.elapsed();
        d.check(&seeded, "domain drain")?;
        report_drain(&format!("domain Nms::poll (run {})", round + 1), &d, took);

        // The store's replay alone.
        let (events, pages, took) = drain_store(&nms, &b, from.modseq).await?;
        if events != total {
            return Err(fail(format!("store replay: {events} changes, expected {total}")));
        }
        println!(
            "{:<34} {:>8} {:>6} {:>6} {:>8.2} {:>10.0}",
            format!("store changes_since (run {})", round + 1),
            events,
            pages,
            "-",
            took.as_secs_f64(),
            events as f64 / took.as_secs_f64()
        );
    }
    println!("(every drain delivered each change exactly once, with gapless indexes)");

    // ---- latency: deposit 201 -> the waiting poll's answer
    let (channel_url, callback) = http.channel(10).await?;
    let (sub_url, _) = http.subscribe(&callback, None).await?;
    let _ = sub_url;
    let objects = format!("{}/objects", http.base);
    let warmup = 20;
    let (mut after_201, mut after_send, mut rtt) = (Vec::new(), Vec::new(), Vec::new());
    let mut early = 0;
    for i in 0..warmup + deposits {
        let index = i + 1;
        let waiting = tokio::spawn(poll(http.client.clone(), channel_url.clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Into an existing folder: the answer carries exactly the one changedObject.
        let body = json!({"object": {"parentFolderPath": format!("/RCSMessageStore/conv{}", i % FOLDERS),
            "attributes": {"attribute": [{"name": "Message-Context", "value": ["chat-message"]},
                                         {"name": "From", "value": ["tel:+13105550000"]}]}}});
        let sent = Instant::now();
        let (status, v) = http.send(reqwest::Method::POST, &objects, &body).await?;
        let created = Instant::now();
        if status != 201 {
            return Err(fail(format!("deposit: {status} {v}")));
        }
        let (notified, _, answer, _) = waiting.await??;
        let list = &answer["notificationList"];
        let event = &list[0]["nmsEventList"]["nmsEvent"][0]["changedObject"];
        if list.as_array().map(Vec::len) != Some(1)
            || list[0]["nmsEventList"]["nmsEvent"].as_array().map(Vec::len) != Some(1)
            || list[0]["nmsEventList"]["index"] != index
            || event["resourceURL"] != v["reference"]["resourceURL"]
        {
            return Err(fail(format!("deposit {i}: the poll answered {answer}")));
        }
        if i < warmup {
            continue;
        }
        let signed = if notified >= created { ms(notified - created) } else { -ms(created - notified) };
        if notified < created {
            early += 1;
        }
        after_201.push(signed);
        after_send.push(ms(notified - sent));
        rtt.push(ms(created - sent));
    }
    for v in [&mut after_201, &mut after_send, &mut rtt] {
        v.sort_by(f64::total_cmp);
    }
    println!();
    println!("{:<44} {:>8} {:>8} {:>8} {:>8}", "latency, poll waiting (ms)", "p50", "p99", "max", "min");
    for (name, v) in [
        ("deposit 201 -> poll answer carrying it", &after_201),
        ("deposit sent -> poll answer carrying it", &after_send),
        ("deposit round trip (sent -> 201)", &rtt),
    ] {
        println!("{name:<44} {:>8.2} {:>8.2} {:>8.2} {:>8.2}", pct(v, 0.5), pct(v, 0.99), pct(v, 1.0), pct(v, 0.0));
    }
    println!("({early} of {deposits} answers were read before the deposit's 201; they count as negative)");

    println!();
    let p99 = pct(&after_201, 0.99);
    println!(
        "target: deposit 201 -> notification p99 < 50 ms ({p99:.2}): {}",
        if p99 < 50.0 { "met" } else { "MISSED" }
    );
    let worst = rates.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "target: replay > 50000 events/s end to end ({worst:.0}, slower run): {}",
        if worst > 50_000.0 { "met" } else { "MISSED" }
    );
    Ok(())
}
