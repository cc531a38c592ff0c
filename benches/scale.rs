//! Per-operation cost as a box and a store grow, over real HTTP.
//!
//! Starts the server in-process (loopback, port 0, data dir in a tempdir) and grows one box
//! through the store (transactions of `BATCH` objects shaped like the deposits below: a
//! pager-message with Direction, From one of `SENDERS`, To, Date and Subject, one small
//! inline text part, searchable text filled) to each size of `NMS_BENCH_SIZES` (default
//! 10000,100000,1000000). At each size it measures, one request at a time,
//! `NMS_BENCH_REQUESTS` (default 200) of each operation:
//!
//! - **deposit**: `POST objects`, multipart/form-data (root fields and one text/plain part), 201;
//! - **flag update**: `PUT objects/{id}/flags/%5CSeen` on a random object without it, 201;
//! - **delete**: `DELETE objects/{id}` of a random object, 204;
//! - **search**: the first page (`maxEntries` 100) of `Attribute From = sender`, checked
//!   against the number of the sender's objects (the page size and whether a cursor follows);
//! - **catch-up**: a long-polling channel with a subscription; in rounds of `CATCH_UP`
//!   flag changes (not timed), long polls until a list carries the box's current token,
//!   every change arriving as a `changedObject`: time per change.
//!
//! Then a fresh store with `NMS_BENCH_BOXES` (default 1000x1000: boxes x objects) and the
//! same measurements in one of its boxes. It prints median and p95 per operation and size,
//! with the ratio of the largest to the smallest single-box size.
//!
//! Run with `cargo bench --bench scale` (release build); `NMS_BENCH_SIZES=10000,100000` and
//! `NMS_BENCH_BOXES=100x1000` make a quick run; an empty `NMS_BENCH_SIZES` or
//! `NMS_BENCH_BOXES=0x0` skips that part (run them one after the other where the disk is
//! small: SQLite takes about 7 kB an object). `NMS_BENCH_DATABASE_URL`
//! (a fresh, empty database, e.g. PostgreSQL) runs the single box on that engine, and
//! `NMS_BENCH_BOXES_DATABASE_URL` (another one) the many boxes; without the latter the many
//! boxes are skipped when the former is set. With `NMS_BENCH_KEEP` set the SQLite data
//! directories are kept (for `sqlite3 .../nms.db`) and their paths printed.

use std::error::Error;
use std::time::{Duration, Instant};

use cpm_nms::auth::hash_password;
use cpm_nms::config::Settings;
use cpm_nms::ids::{new_id, nms_date, now_ms};
use cpm_nms::model::{Attribute, BoxRow, NewObject, ParentRef, PartData, PayloadPart};
use cpm_nms::nms::Nms;
use cpm_nms::startup::Application;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const USER: &str = "bench";
const PASSWORD: &str = "pw";
const FOLDER: &str = "/RCSMessageStore";
/// Objects per seeding transaction.
const BATCH: usize = 5000;
const SENDERS: usize = 100;
const PAGE: usize = 100;
/// Flag changes per catch-up round.
const CATCH_UP: usize = 10;
/// Untimed requests of each operation before the timed ones.
const WARMUP: usize = 5;
const BOUNDARY: &str = "scale-bench-boundary";
const OPERATIONS: [&str; 5] = ["deposit", "flag update", "delete", "search first page", "catch-up per change"];

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
fn pct(sorted: &[Duration], p: f64) -> Duration {
    let n = sorted.len();
    if n == 0 {
        return Duration::ZERO;
    }
    sorted[((n as f64 * p).ceil() as usize).clamp(1, n) - 1]
}

fn sender(i: usize) -> String {
    format!("tel:+1555000{:04}", i % SENDERS)
}

fn subject(i: usize) -> String {
    format!("Benchmark message {i}")
}

fn body_text(i: usize) -> String {
    let line = format!("Lorem ipsum dolor sit amet, message {i}. ");
    line.repeat(4)
}

fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

/// An object of the box as the bench knows it.
struct Obj {
    id: String,
    sender: usize,
    seen: bool,
}

/// One box under measurement: its objects (any order) and their count per sender.
struct Subject {
    b: BoxRow,
    address: String,
    objects: Vec<Obj>,
    per_sender: Vec<usize>,
    /// Index of the next object to make (its sender, subject and text).
    next: usize,
}

impl Subject {
    fn new(b: BoxRow, address: &str) -> Self {
        Subject { b, address: address.into(), objects: Vec::new(), per_sender: vec![0; SENDERS], next: 0 }
    }

    fn add(&mut self, id: String, i: usize) {
        self.per_sender[i % SENDERS] += 1;
        self.objects.push(Obj { id, sender: i % SENDERS, seen: false });
    }

    /// Remove the object at `k` (swap-remove).
    fn remove(&mut self, k: usize) -> Obj {
        let o = self.objects.swap_remove(k);
        self.per_sender[o.sender] -= 1;
        o
    }

    /// A random object without `\Seen`.
    fn unseen(&self, rng: &mut StdRng) -> Res<usize> {
        for _ in 0..10_000 {
            let k = rng.gen_range(0..self.objects.len());
            if !self.objects[k].seen {
                return Ok(k);
            }
        }
        Err(fail("no object without \\Seen found".into()))
    }
}

/// Object `i` as a deposit of the benchmark makes it (its attributes, part and text).
fn new_object(address: &str, i: usize, now: i64) -> NewObject {
    let attributes: Vec<Attribute> = [
        ("Message-Context", "pager-message".to_string()),
        ("Direction", "In".into()),
        ("From", sender(i)),
        ("To", address.into()),
        ("Date", nms_date(now)),
        ("Subject", subject(i)),
    ]
    .into_iter()
    .map(|(name, value)| Attribute { name: name.into(), values: vec![value] })
    .collect();
    let body = body_text(i);
    // The searchable text as a deposit gathers it: text attribute values, then the part.
    let text = format!("{}\n{address}\n{}\n{body}\n", sender(i), subject(i));
    NewObject {
        public_id: new_id(),
        parent: ParentRef::Path { path: FOLDER.into(), create_missing: true },
        attributes,
        flags: Vec::new(),
        correlation_id: Some(format!("{i}.{now}@scale-bench.example")),
        correlation_tag: None,
        payload_type: Some("multipart/form-data".into()),
        parts: vec![PayloadPart {
            part_id: "1".into(),
            content_type: "text/plain; charset=utf-8".into(),
            content_disposition: Some("form-data; name=\"attachments\"; filename=\"sms.txt\"".into()),
            content_id: None,
            content_location: None,
            content_encoding: None,
            file_icon: None,
            size: body.len() as u64,
            data: PartData::Inline(body.into_bytes()),
        }],
        text,
        now_ms: now,
    }
}

/// Grow the box through the store to `target` objects, `BATCH` a transaction.
async fn grow(nms: &Nms, s: &mut Subject, target: usize) -> Res<()> {
    while s.objects.len() < target {
        let n = BATCH.min(target - s.objects.len());
        let now = now_ms();
        let first = s.next;
        let batch = (first..first + n).map(|i| Ok(new_object(&s.address, i, now))).collect();
        let created = nms.published(nms.store().create_objects(&s.b, batch).await?);
        for (i, r) in (first..).zip(created) {
            s.add(r?.public_id, i);
        }
        s.next += n;
    }
    Ok(())
}

struct Http {
    client: reqwest::Client,
    /// `{server}/nms/v1/base/{box}`.
    base: String,
    /// `{server}/notificationchannel/v1/{box}`.
    channels: String,
}

impl Http {
    fn new(url: &str, address: &str) -> Self {
        let b = percent_encoding::utf8_percent_encode(address, percent_encoding::NON_ALPHANUMERIC).to_string();
        Http {
            client: reqwest::Client::new(),
            base: format!("{url}/nms/v1/base/{b}"),
            channels: format!("{url}/notificationchannel/v1/{b}/channels"),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Res<(u16, Value)> {
        let res = req.basic_auth(USER, Some(PASSWORD)).send().await?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    fn expect(what: &str, want: u16, (status, v): (u16, Value)) -> Res<Value> {
        if status != want {
            return Err(fail(format!("{what}: {status} (wanted {want}): {v}")));
        }
        Ok(v)
    }

    /// Deposit object `i` as multipart/form-data; its id.
    async fn deposit(&self, address: &str, i: usize) -> Res<String> {
        let root = json!({"object": {
            "parentFolderPath": FOLDER,
            "attributes": {"attribute": [
                {"name": "Message-Context", "value": ["pager-message"]},
                {"name": "Direction", "value": ["In"]},
                {"name": "From", "value": [sender(i)]},
                {"name": "To", "value": [address]},
                {"name": "Date", "value": [nms_date(now_ms())]},
                {"name": "Subject", "value": [subject(i)]},
            ]},
            "flags": {"flag": []},
            "correlationId": format!("{i}.{}@scale-bench.example", now_ms()),
        }});
        let body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"root-fields\"\r\n\
             Content-Type: application/json\r\n\r\n{root}\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"attachments\"; filename=\"sms.txt\"\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n--{BOUNDARY}--\r\n",
            body_text(i)
        );
        let req = self
            .client
            .post(format!("{}/objects", self.base))
            .header("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(body);
        let v = Self::expect("deposit", 201, self.send(req).await?)?;
        let url = v["reference"]["resourceURL"].as_str().ok_or_else(|| fail(format!("deposit: {v}")))?;
        Ok(last_segment(url).to_string())
    }

    async fn set_seen(&self, id: &str) -> Res<()> {
        let req = self.client.put(format!("{}/objects/{id}/flags/%5CSeen", self.base));
        Self::expect("flag update", 201, self.send(req).await?).map(drop)
    }

    async fn delete(&self, id: &str) -> Res<()> {
        let req = self.client.delete(format!("{}/objects/{id}", self.base));
        Self::expect("delete", 204, self.send(req).await?).map(drop)
    }

    /// The first page of `From = from`: objects on it and whether a cursor follows.
    async fn search_from(&self, from: &str) -> Res<(usize, bool)> {
        let body = json!({"selectionCriteria": {"maxEntries": PAGE,
            "searchCriteria": {"criterion": [{"type": "Attribute", "name": "From", "value": from}]}}});
        let req = self.client.post(format!("{}/objects/operations/search", self.base)).json(&body);
        let v = Self::expect("search", 200, self.send(req).await?)?;
        let list = &v["objectList"];
        let n = list["object"].as_array().ok_or_else(|| fail(format!("search: no objectList: {v}")))?.len();
        Ok((n, list["cursor"].is_string()))
    }

    /// A long-polling channel and a subscription delivering into it:
    /// (channel resource, channel URL to poll, subscription resource).
    async fn watch(&self) -> Res<(String, String, String)> {
        let body = json!({"notificationChannel": {"channelType": "LongPolling", "channelLifetime": 3600,
            "channelData": {"maxNotifications": 100}}});
        let v = Self::expect("channel", 201, self.send(self.client.post(&self.channels).json(&body)).await?)?;
        let c = &v["notificationChannel"];
        let (Some(resource), Some(poll), Some(callback)) =
            (c["resourceURL"].as_str(), c["channelData"]["channelURL"].as_str(), c["callbackURL"].as_str())
        else {
            return Err(fail(format!("channel: {v}")));
        };
        let sub = json!({"nmsSubscription": {"callbackReference": {"notifyURL": callback}, "duration": 3600}});
        let req = self.client.post(format!("{}/subscriptions", self.base)).json(&sub);
        let v = Self::expect("subscription", 201, self.send(req).await?)?;
        let s = &v["nmsSubscription"];
        if !s["restartToken"].is_string() {
            return Err(fail(format!("subscription without a restart token: {v}")));
        }
        let sub = s["resourceURL"].as_str().ok_or_else(|| fail(format!("subscription: {v}")))?;
        Ok((resource.into(), poll.into(), sub.into()))
    }

    /// Long polls until a list carries `current`; the changed objects' ids.
    async fn catch_up(&self, channel_url: &str, current: &str) -> Res<Vec<String>> {
        let mut changed = Vec::new();
        loop {
            let req = self.client.post(channel_url).json(&json!({"longPollingRequestParameters": null}));
            let v = Self::expect("poll", 200, self.send(req).await?)?;
            let lists = v["notificationList"].as_array().ok_or_else(|| fail(format!("poll: {v}")))?;
            if lists.is_empty() {
                return Err(fail("an empty poll before the current token".into()));
            }
            let mut last = "";
            for l in lists {
                let l = &l["nmsEventList"];
                for e in l["nmsEvent"].as_array().ok_or_else(|| fail(format!("poll: {l}")))? {
                    let url = e["changedObject"]["resourceURL"]
                        .as_str()
                        .ok_or_else(|| fail(format!("unexpected event {e}")))?;
                    changed.push(last_segment(url).to_string());
                }
                last = l["restartToken"].as_str().unwrap_or_default();
            }
            if last == current {
                return Ok(changed);
            }
        }
    }
}

/// Samples of each operation at one size.
struct Point {
    label: String,
    samples: [Vec<Duration>; 5],
}

/// Time `requests` of each operation against the box.
async fn measure(nms: &Nms, http: &Http, s: &mut Subject, label: &str, requests: usize) -> Res<Point> {
    let mut rng = StdRng::seed_from_u64(s.objects.len() as u64);
    let mut samples: [Vec<Duration>; 5] = Default::default();

    for r in 0..WARMUP + requests {
        let i = s.next;
        s.next += 1;
        let t = Instant::now();
        let id = http.deposit(&s.address, i).await?;
        if r >= WARMUP {
            samples[0].push(t.elapsed());
        }
        s.add(id, i);
    }
    for r in 0..WARMUP + requests {
        let k = s.unseen(&mut rng)?;
        let t = Instant::now();
        http.set_seen(&s.objects[k].id).await?;
        if r >= WARMUP {
            samples[1].push(t.elapsed());
        }
        s.objects[k].seen = true;
    }
    for r in 0..WARMUP + requests {
        let k = rng.gen_range(0..s.objects.len());
        let t = Instant::now();
        http.delete(&s.objects[k].id).await?;
        if r >= WARMUP {
            samples[2].push(t.elapsed());
        }
        s.remove(k);
    }
    for r in 0..WARMUP + requests {
        let who = r % SENDERS;
        let t = Instant::now();
        let (n, cursor) = http.search_from(&sender(who)).await?;
        if r >= WARMUP {
            samples[3].push(t.elapsed());
        }
        let want = s.per_sender[who];
        if n != want.min(PAGE) || cursor != (want > PAGE) {
            return Err(fail(format!("search {}: {n} objects (cursor: {cursor}), {want} expected", sender(who))));
        }
    }
    let (channel, channel_url, subscription) = http.watch().await?;
    for r in 0..WARMUP + requests.div_ceil(CATCH_UP) {
        let mut ids = Vec::with_capacity(CATCH_UP);
        for _ in 0..CATCH_UP {
            let k = s.unseen(&mut rng)?;
            http.set_seen(&s.objects[k].id).await?;
            s.objects[k].seen = true;
            ids.push(s.objects[k].id.clone());
        }
        let current = nms.current_token(&s.b).await?;
        let t = Instant::now();
        let mut changed = http.catch_up(&channel_url, &current).await?;
        let took = t.elapsed();
        if r >= WARMUP {
            samples[4].push(took / CATCH_UP as u32);
        }
        changed.sort();
        ids.sort();
        if changed != ids {
            return Err(fail(format!("catch-up: {} changes arrived, {CATCH_UP} made", changed.len())));
        }
    }
    Http::expect("unsubscribe", 204, http.send(http.client.delete(&subscription)).await?)?;
    Http::expect("channel deletion", 204, http.send(http.client.delete(&channel)).await?)?;

    for v in &mut samples {
        v.sort();
    }
    let p = Point { label: label.into(), samples };
    let line: Vec<String> = OPERATIONS
        .iter()
        .zip(&p.samples)
        .map(|(op, v)| format!("{op} {:.2}/{:.2}", ms(pct(v, 0.5)), ms(pct(v, 0.95))))
        .collect();
    println!("  {label}: {} (p50/p95 ms)", line.join(", "));
    Ok(p)
}

/// A server on a fresh store (`database_url`, else SQLite in a tempdir).
async fn start(
    database_url: Option<String>,
) -> Res<(Nms, String, Option<tempfile::TempDir>, tokio::task::JoinHandle<()>)> {
    let tmp = tempfile::tempdir()?;
    // Kept: the directory outlives the run; otherwise it is removed when the TempDir drops.
    let (data_dir, tmp) = if std::env::var_os("NMS_BENCH_KEEP").is_some() {
        let dir = tmp.keep();
        println!("data directory kept: {}", dir.display());
        (dir, None)
    } else {
        (tmp.path().to_path_buf(), Some(tmp))
    };
    let mut s = Settings { data_dir, ..Default::default() };
    if let Some(url) = database_url {
        s.storage.database_url = url;
        s.auth.cursor_secret = "bench".into();
    }
    s.server.listen = "127.0.0.1:0".into();
    // Measure the operations, not the periodic argon2 re-verification of the Basic credential.
    s.auth.cache_ttl_secs = 3600;
    let app = Application::build(s).await?;
    let url = app.public_url().to_string();
    let nms = app.nms().clone();
    let server = tokio::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    Ok((nms, url, tmp, server))
}

async fn account(nms: &Nms, address: &str) -> Res<()> {
    let hash = hash_password(PASSWORD)?;
    nms.store().create_account(USER, &hash, false, &[("base".into(), address.into())]).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let requests = env("NMS_BENCH_REQUESTS", 200).max(CATCH_UP);
    let mut sizes: Vec<usize> = std::env::var("NMS_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .collect();
    sizes.sort();
    let boxes_spec = std::env::var("NMS_BENCH_BOXES").unwrap_or_else(|_| "1000x1000".into());
    let (boxes, per_box) = boxes_spec
        .split_once('x')
        .and_then(|(b, o)| Some((b.trim().parse::<usize>().ok()?, o.trim().parse::<usize>().ok()?)))
        .ok_or_else(|| fail(format!("NMS_BENCH_BOXES={boxes_spec}: want BOXESxOBJECTS")))?;
    let single_url = std::env::var("NMS_BENCH_DATABASE_URL").ok();
    let boxes_url = std::env::var("NMS_BENCH_BOXES_DATABASE_URL").ok();
    let boxes = if single_url.is_some() && boxes_url.is_none() { 0 } else { boxes };
    let engine = if single_url.as_deref().is_some_and(|u| u.starts_with("postgres")) { "PostgreSQL" } else { "SQLite" };
    println!(
        "cpm-nms scale bench on {engine}: one box at {sizes:?} objects, then {boxes} boxes x {per_box}; \
         {requests} requests per operation and size"
    );
    let mut points = Vec::new();

    // ---- one box, growing (`NMS_BENCH_SIZES=` skips it)
    if !sizes.is_empty() {
        let address = "tel:+12125551212";
        let (nms, url, _tmp, server) = start(single_url).await?;
        let b = nms.provision_box("base", address).await?;
        account(&nms, address).await?;
        let http = Http::new(&url, address);
        let mut s = Subject::new(b, address);
        for &n in &sizes {
            let t = Instant::now();
            let had = s.objects.len();
            grow(&nms, &mut s, n).await?;
            println!(
                "grew the box from {had} to {n} objects in {:.1} s ({:.0} objects/s)",
                t.elapsed().as_secs_f64(),
                (n - had) as f64 / t.elapsed().as_secs_f64()
            );
            points.push(measure(&nms, &http, &mut s, &n.to_string(), requests).await?);
        }
        server.abort();
    }

    // ---- many boxes, a fresh store
    if boxes > 0 && per_box > 0 {
        let (nms, url, _tmp, server) = start(boxes_url).await?;
        let measured = boxes / 2;
        let t = Instant::now();
        let mut subject = None;
        for k in 0..boxes {
            let address = format!("tel:+1212{k:07}");
            let b = nms.provision_box("base", &address).await?;
            let mut s = Subject::new(b, &address);
            grow(&nms, &mut s, per_box).await?;
            if k == measured {
                account(&nms, &address).await?;
                subject = Some(s);
            }
        }
        println!(
            "seeded {boxes} boxes x {per_box} objects in {:.1} s ({:.0} objects/s)",
            t.elapsed().as_secs_f64(),
            (boxes * per_box) as f64 / t.elapsed().as_secs_f64()
        );
        let mut s = subject.ok_or_else(|| fail("no measured box".into()))?;
        let http = Http::new(&url, &s.address);
        points.push(measure(&nms, &http, &mut s, &format!("{boxes}x{per_box}"), requests).await?);
        server.abort();
    }

    // ---- the table (Markdown)
    println!();
    let mut head = String::from("| operation |");
    let mut rule = String::from("|---|");
    for p in &points {
        head.push_str(&format!(" {} p50 | {} p95 |", p.label, p.label));
        rule.push_str("---:|---:|");
    }
    let singles = sizes.len().min(points.len());
    if singles > 1 {
        head.push_str(&format!(" p50 {}/{} |", sizes[singles - 1], sizes[0]));
        rule.push_str("---:|");
    }
    println!("{head}\n{rule}");
    for (o, op) in OPERATIONS.iter().enumerate() {
        let mut row = format!("| {op} |");
        for p in &points {
            row.push_str(&format!(" {:.2} | {:.2} |", ms(pct(&p.samples[o], 0.5)), ms(pct(&p.samples[o], 0.95))));
        }
        if singles > 1 {
            let ratio = pct(&points[singles - 1].samples[o], 0.5).as_secs_f64()
                / pct(&points[0].samples[o], 0.5).as_secs_f64().max(1e-9);
            row.push_str(&format!(" {ratio:.2} |"));
        }
        println!("{row}");
    }
    println!("(ms; one request at a time over loopback HTTP; every answer checked)");
    Ok(())
}
