//! Search latency and paged-walk throughput over real HTTP against one large box.
//!
//! Starts the server in-process (loopback, port 0, data dir in a tempdir), seeds one box
//! through `objects/operations/bulkCreation` (1000 objects a request), then measures, one
//! request at a time:
//!
//! - the first page (`maxEntries` 100) of Attribute-equality, Flag and substring
//!   (AllTextAttributes, a selective and a common needle) searches: median and p95;
//! - the full walk of the box (no criteria, `maxEntries` 100, following cursors): objects,
//!   time, objects per second, checked to return every object exactly once.
//!
//! Run with `cargo bench --bench search` (release build). `NMS_BENCH_OBJECTS` sets the
//! number of objects (default 100000), `NMS_BENCH_REQUESTS` the requests per latency
//! case (default 200); with `NMS_BENCH_KEEP` set the data directory is kept (for
//! `sqlite3 .../nms.db`) and its path printed. `NMS_BENCH_DATABASE_URL` (a fresh, empty
//! database) runs it on that engine, e.g. PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::time::{Duration, Instant};

use cpm_nms::auth::hash_password;
use cpm_nms::config::Settings;
use cpm_nms::startup::Application;
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn Error>>;

const ADDRESS: &str = "tel:+12125551212";
const BOX: &str = "tel%3A%2B12125551212";
const USER: &str = "bench";
const PASSWORD: &str = "pw";
/// Objects per bulkCreation request (the server's default `bulk_max_items`).
const BATCH: usize = 1000;
/// Seeding requests in flight (the server serialises writes; this overlaps parsing).
const SEED_CONCURRENCY: usize = 2;
const SENDERS: usize = 100;
const FOLDERS: usize = 20;
const PAGE: usize = 100;
/// Subject vocabulary: each word is in about a quarter of the subjects.
const WORDS: &[&str] = &[
    "meeting", "lunch", "tomorrow", "project", "call", "dinner", "weekend", "photo", "birthday", "train", "office",
    "report", "coffee", "holiday", "music", "football", "doctor", "party", "invoice", "ticket",
];
/// The common needle (a vocabulary word) and the selective one (part of a rare word).
const COMMON: &str = "meeting";
const RARE_WORD: &str = "zanzibar";
const RARE: &str = "zanzib";
/// One object in this many carries the rare word.
const RARE_EVERY: usize = 2000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fail(msg: String) -> Box<dyn Error> {
    msg.into()
}

fn sender(i: usize) -> String {
    format!("tel:+1555000{i:04}")
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
    let rank = ((n as f64 * p).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

/// What was seeded, to check search answers against.
#[derive(Default)]
struct Truth {
    urls: Vec<String>,
    per_sender: HashMap<String, usize>,
    /// Whether object i (in `urls` order) has `\Seen`.
    seen_flags: Vec<bool>,
    seen: usize,
    common: usize,
    rare: usize,
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, op: &str, body: &Value) -> Res<Value> {
        let res = self
            .http
            .post(format!("{}/objects/operations/{op}", self.base))
            .basic_auth(USER, Some(PASSWORD))
            .json(body)
            .send()
            .await?;
        let status = res.status();
        let text = res.text().await?;
        if status != 200 {
            return Err(fail(format!("{op}: {status}: {text}")));
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// One search page: the object URLs and the cursor.
    async fn search(&self, criteria: Option<&Value>, cursor: Option<&str>) -> Res<(Vec<String>, Option<String>)> {
        let mut sel = json!({ "maxEntries": PAGE });
        if let Some(c) = criteria {
            sel["searchCriteria"] = json!({ "criterion": [c] });
        }
        if let Some(c) = cursor {
            sel["fromCursor"] = json!(c);
        }
        let v = self.post("search", &json!({ "selectionCriteria": sel })).await?;
        let list = &v["objectList"];
        let objects = list["object"].as_array().ok_or_else(|| fail(format!("search: no objectList: {v}")))?;
        let urls = objects
            .iter()
            .map(|o| o["resourceURL"].as_str().map(str::to_string).ok_or_else(|| fail(format!("no resourceURL: {o}"))))
            .collect::<Res<Vec<_>>>()?;
        Ok((urls, list["cursor"].as_str().map(str::to_string)))
    }
}

/// One bulkCreation body of `n` objects starting at index `start`.
fn batch(rng: &mut StdRng, start: usize, n: usize, truth: &mut Truth) -> Value {
    let object: Vec<Value> = (start..start + n)
        .map(|i| {
            let from = sender(rng.gen_range(0..SENDERS));
            *truth.per_sender.entry(from.clone()).or_default() += 1;
            let mut words: Vec<&str> =
                (0..rng.gen_range(3..=7)).map(|_| WORDS[rng.gen_range(0..WORDS.len())]).collect();
            if i % RARE_EVERY == RARE_EVERY / 2 {
                words.insert(rng.gen_range(0..=words.len()), RARE_WORD);
                truth.rare += 1;
            }
            let subject = words.join(" ");
            if subject.contains(COMMON) {
                truth.common += 1;
            }
            let mut o = json!({
                "parentFolderPath": format!("/RCSMessageStore/conv{}", i % FOLDERS),
                "attributes": {"attribute": [
                    {"name": "Message-Context", "value": ["chat-message"]},
                    {"name": "Direction", "value": ["In"]},
                    {"name": "From", "value": [from]},
                    {"name": "To", "value": [ADDRESS]},
                    {"name": "Subject", "value": [subject]},
                ]},
            });
            let seen = rng.gen_range(0..3) == 0;
            if seen {
                o["flags"] = json!({ "flag": ["\\Seen"] });
                truth.seen += 1;
            }
            truth.seen_flags.push(seen);
            o
        })
        .collect();
    json!({ "objectList": { "object": object } })
}

async fn seed(client: &Client, n: usize) -> Res<Truth> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut truth = Truth::default();
    let bodies: Vec<Value> =
        (0..n).step_by(BATCH).map(|start| batch(&mut rng, start, BATCH.min(n - start), &mut truth)).collect();
    let answers: Vec<Res<Value>> = futures_util::stream::iter(bodies.iter())
        .map(|body| client.post("bulkCreation", body))
        .buffered(SEED_CONCURRENCY)
        .collect()
        .await;
    for answer in answers {
        let answer = answer?;
        let list = answer["bulkResponseList"]["response"]
            .as_array()
            .ok_or_else(|| fail(format!("bulkCreation: no bulkResponseList: {answer}")))?;
        for r in list {
            let s = &r["success"];
            let url = s["resourceURL"].as_str().or_else(|| s["reference"]["resourceURL"].as_str());
            truth.urls.push(url.map(str::to_string).ok_or_else(|| fail(format!("bulkCreation item failed: {r}")))?);
        }
    }
    if truth.urls.len() != n {
        return Err(fail(format!("seeded {} objects, wanted {n}", truth.urls.len())));
    }
    Ok(truth)
}

struct Latency {
    name: String,
    matches: usize,
    samples: Vec<Duration>,
}

/// Time `requests` first pages of the search `criteria(i)` (null: no criteria), each
/// expected to match `expected(i)` objects (so the page holds min(expected, 100) and has a cursor iff more).
async fn latency(
    client: &Client,
    name: &str,
    requests: usize,
    criteria: impl Fn(usize) -> Value,
    expected: impl Fn(usize) -> usize,
) -> Res<Latency> {
    for i in 0..5 {
        client.search(Some(&criteria(i)).filter(|c| !c.is_null()), None).await?;
    }
    let mut samples = Vec::with_capacity(requests);
    let mut matches = 0;
    for i in 0..requests {
        let c = criteria(i);
        let t = Instant::now();
        let (urls, cursor) = client.search(Some(&c).filter(|c| !c.is_null()), None).await?;
        samples.push(t.elapsed());
        let want = expected(i);
        if urls.len() != want.min(PAGE) || cursor.is_some() != (want > PAGE) {
            return Err(fail(format!(
                "{name} {c}: {} objects (cursor: {}), expected {want} matches",
                urls.len(),
                cursor.is_some()
            )));
        }
        matches += want;
    }
    samples.sort();
    Ok(Latency { name: name.to_string(), matches: matches / requests.max(1), samples })
}

#[tokio::main]
async fn main() -> Res<()> {
    let n = env("NMS_BENCH_OBJECTS", 100_000);
    let requests = env("NMS_BENCH_REQUESTS", 200);
    let tmp = tempfile::tempdir()?;
    let keep = std::env::var_os("NMS_BENCH_KEEP").is_some();
    // Kept: the directory outlives the run; otherwise it is removed when `_tmp` drops.
    let (data_dir, _tmp) = if keep { (tmp.keep(), None) } else { (tmp.path().to_path_buf(), Some(tmp)) };
    let mut s = Settings { data_dir: data_dir.clone(), ..Default::default() };
    // `NMS_BENCH_DATABASE_URL` (a fresh, empty database, e.g. `postgres://...`) runs the
    // bench on that engine; the default is SQLite in the data dir.
    if let Ok(url) = std::env::var("NMS_BENCH_DATABASE_URL") {
        s.storage.database_url = url;
        s.auth.cursor_secret = "bench".into();
    }
    s.server.listen = "127.0.0.1:0".into();
    // Measure search, not the periodic argon2 re-verification of the Basic credential.
    s.auth.cache_ttl_secs = 3600;
    let app = Application::build(s).await?;
    let url = app.public_url().to_string();
    let nms = app.nms().clone();
    nms.provision_box("base", ADDRESS).await?;
    let hash = hash_password(PASSWORD)?;
    nms.store().create_account(USER, &hash, false, &[("base".into(), ADDRESS.into())]).await?;
    tokio::spawn(app.run_until_stopped());
    let client = Client { http: reqwest::Client::new(), base: format!("{url}/nms/v1/base/{BOX}") };
    println!("cpm-nms search bench: {n} objects in one box, {requests} requests per latency case");

    let t = Instant::now();
    let truth = seed(&client, n).await?;
    let seeding = t.elapsed();
    println!(
        "seeded {n} objects ({} senders, {FOLDERS} folders, {} \\Seen, {} with {COMMON:?}, {} with {RARE:?}) \
         in {:.1} s ({:.0} objects/s, bulkCreation x{BATCH}, {SEED_CONCURRENCY} in flight)",
        truth.per_sender.len(),
        truth.seen,
        truth.common,
        truth.rare,
        seeding.as_secs_f64(),
        n as f64 / seeding.as_secs_f64()
    );
    if keep {
        println!("data directory kept: {}", data_dir.display());
    }

    let senders: Vec<(String, usize)> = {
        let mut v: Vec<_> = truth.per_sender.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort();
        v
    };
    // Baseline: the first page without criteria (HTTP, page load and rendering only).
    let mut cases = vec![latency(&client, "no criteria (baseline)", requests, |_| Value::Null, |_| n).await?];
    cases.push(
        latency(
            &client,
            "Attribute From = x",
            requests,
            |i| json!({"type": "Attribute", "name": "From", "value": senders[i % senders.len()].0}),
            |i| senders[i % senders.len()].1,
        )
        .await?,
    );
    cases.push(
        latency(
            &client,
            "Flag \\Seen true",
            requests,
            |_| json!({"type": "Flag", "name": "\\Seen", "value": "true"}),
            |_| truth.seen,
        )
        .await?,
    );
    cases.push(
        latency(
            &client,
            "Flag \\Seen false",
            requests,
            |_| json!({"type": "Flag", "name": "\\Seen", "value": "false"}),
            |_| n - truth.seen,
        )
        .await?,
    );
    cases.push(
        latency(
            &client,
            &format!("Text {RARE:?} (selective)"),
            requests,
            |_| json!({"type": "AllTextAttributes", "value": RARE}),
            |_| truth.rare,
        )
        .await?,
    );
    cases.push(
        latency(
            &client,
            &format!("Text {COMMON:?} (common)"),
            requests,
            |_| json!({"type": "AllTextAttributes", "value": COMMON}),
            |_| truth.common,
        )
        .await?,
    );

    // The full walk, then a filtered one (every \Seen object, cursors and all).
    let all: HashSet<String> = truth.urls.iter().cloned().collect();
    let full = walk(&client, "full walk, no criteria", None, &all).await?;
    let seen_urls: HashSet<String> =
        truth.urls.iter().zip(&truth.seen_flags).filter(|(_, s)| **s).map(|(u, _)| u.clone()).collect();
    let seen_walk = walk(
        &client,
        "walk of Flag \\Seen true",
        Some(json!({"type": "Flag", "name": "\\Seen", "value": "true"})),
        &seen_urls,
    )
    .await?;

    println!();
    println!("{:<30} {:>8} {:>9} {:>9} {:>9}", "first page (maxEntries 100)", "matches", "p50 ms", "p95 ms", "max ms");
    for c in &cases {
        println!(
            "{:<30} {:>8} {:>9.2} {:>9.2} {:>9.2}",
            c.name,
            c.matches,
            ms(pct(&c.samples, 0.50)),
            ms(pct(&c.samples, 0.95)),
            ms(pct(&c.samples, 1.0))
        );
    }
    println!();
    println!(
        "{:<30} {:>8} {:>6} {:>8} {:>10} {:>9} {:>9} {:>10} {:>10}",
        "walk (maxEntries 100)", "objects", "pages", "time s", "objects/s", "p50 ms", "p95 ms", "first ms", "last ms"
    );
    for w in [&full, &seen_walk] {
        w.report();
    }
    println!("(each walk returned every expected object exactly once)");
    println!();
    for c in cases.iter().skip(1) {
        let p95 = ms(pct(&c.samples, 0.95));
        println!("target: {:<30} p95 < 10 ms: {}", c.name, if p95 < 10.0 { "met" } else { "MISSED" });
    }
    let rate = full.rate();
    println!("target: full walk >= 20000 objects/s ({rate:.0}): {}", if rate >= 20_000.0 { "met" } else { "MISSED" });
    Ok(())
}

struct Walk {
    name: &'static str,
    objects: usize,
    pages: Vec<Duration>,
    total: Duration,
}

impl Walk {
    fn rate(&self) -> f64 {
        self.objects as f64 / self.total.as_secs_f64()
    }

    fn report(&self) {
        let mut sorted = self.pages.clone();
        sorted.sort();
        let first = self.pages.first().copied().unwrap_or_default();
        let last = self.pages.last().copied().unwrap_or_default();
        println!(
            "{:<30} {:>8} {:>6} {:>8.2} {:>10.0} {:>9.2} {:>9.2} {:>10.2} {:>10.2}",
            self.name,
            self.objects,
            self.pages.len(),
            self.total.as_secs_f64(),
            self.rate(),
            ms(pct(&sorted, 0.50)),
            ms(pct(&sorted, 0.95)),
            ms(first),
            ms(last)
        );
    }
}

/// Follow cursors from the first page to the last; every object of `expected` must come
/// back exactly once, and nothing else.
async fn walk(client: &Client, name: &'static str, criteria: Option<Value>, expected: &HashSet<String>) -> Res<Walk> {
    let t = Instant::now();
    let mut pages = Vec::with_capacity(expected.len() / PAGE + 1);
    let mut got: HashSet<String> = HashSet::with_capacity(expected.len());
    let mut returned = 0usize;
    let mut cursor: Option<String> = None;
    loop {
        let p = Instant::now();
        let (urls, next) = client.search(criteria.as_ref(), cursor.as_deref()).await?;
        pages.push(p.elapsed());
        returned += urls.len();
        got.extend(urls);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let total = t.elapsed();
    if returned != expected.len() || got != *expected {
        return Err(fail(format!(
            "{name}: {returned} objects returned, {} distinct, {} of the {} expected",
            got.len(),
            got.intersection(expected).count(),
            expected.len()
        )));
    }
    Ok(Walk { name, objects: returned, pages, total })
}
