//! Throughput and latency of the hot paths over real HTTP: deposit (JSON and multipart with
//! an inline SMS part), GET object, PUT flag. Run with `cargo bench --bench http`
//! (release build); `NMS_BENCH_N` sets the number of operations per phase (default 2000),
//! `NMS_BENCH_CONCURRENCY` the number of concurrent clients (default 16).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cpm_nms::auth::hash_password;
use cpm_nms::config::Settings;
use cpm_nms::startup::Application;
use futures_util::StreamExt;
use serde_json::{Value, json};

const BOX: &str = "tel%3A%2B12125551212";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Phase {
    name: &'static str,
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Phase {
    fn report(mut self) {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| self.latencies[((n as f64 * p) as usize).min(n - 1)];
        println!(
            "{:<22} {:>6} ops {:>9.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            self.name,
            n,
            n as f64 / self.wall.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3
        );
    }
}

async fn run<F, Fut>(name: &'static str, n: usize, conc: usize, f: F) -> Phase
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    let latencies: Vec<Duration> = futures_util::stream::iter(0..n)
        .map(|i| {
            let fut = f(i);
            async move {
                let t = Instant::now();
                fut.await;
                t.elapsed()
            }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    Phase { name, latencies, wall: start.elapsed() }
}

#[tokio::main]
async fn main() {
    let n = env("NMS_BENCH_N", 2000);
    let conc = env("NMS_BENCH_CONCURRENCY", 16);
    let data = tempfile::tempdir().expect("tempdir");
    let mut s = Settings { data_dir: data.path().to_path_buf(), ..Default::default() };
    s.server.listen = "127.0.0.1:0".into();
    let app = Application::build(s).await.expect("build");
    let url = app.public_url().to_string();
    let nms = app.nms().clone();
    nms.provision_box("base", "tel:+12125551212").await.expect("box");
    let hash = hash_password("pw").expect("hash");
    nms.store()
        .create_account("bench", &hash, false, &[("base".into(), "tel:+12125551212".into())])
        .await
        .expect("account");
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let base = Arc::new(format!("{url}/nms/v1/base/{BOX}"));
    println!("cpm-nms http bench: {n} operations per phase, {conc} concurrent clients");

    let urls = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let phase = run("deposit json", n, conc, |i| {
        let (client, base, urls) = (client.clone(), base.clone(), urls.clone());
        async move {
            let body = json!({"object": {"parentFolderPath": format!("/conv{}", i % 50),
                "attributes": {"attribute": [{"name": "Message-Context", "value": ["chat-message"]},
                                             {"name": "From", "value": ["tel:+13105550000"]}]}}});
            let res = client
                .post(format!("{base}/objects"))
                .basic_auth("bench", Some("pw"))
                .json(&body)
                .send()
                .await
                .expect("send");
            assert_eq!(res.status(), 201);
            let v: Value = res.json().await.expect("json");
            urls.lock().expect("lock").push(v["reference"]["resourceURL"].as_str().expect("url").to_string());
        }
    })
    .await;
    phase.report();

    let phase = run("deposit multipart sms", n, conc, |i| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let root = json!({"object": {"parentFolderPath": format!("/conv{}", i % 50)}}).to_string();
            let form = reqwest::multipart::Form::new()
                .part("root-fields", reqwest::multipart::Part::text(root).mime_str("application/json").expect("mime"))
                .part(
                    "attachments",
                    reqwest::multipart::Part::text("hello there, are you coming?")
                        .file_name("sms.txt")
                        .mime_str("text/plain")
                        .expect("mime"),
                );
            let res = client
                .post(format!("{base}/objects"))
                .basic_auth("bench", Some("pw"))
                .multipart(form)
                .send()
                .await
                .expect("send");
            assert_eq!(res.status(), 201);
        }
    })
    .await;
    phase.report();

    let urls = Arc::new(urls.lock().expect("lock").clone());
    let phase = run("get object", n, conc, |i| {
        let (client, urls) = (client.clone(), urls.clone());
        async move {
            let res = client.get(&urls[i % urls.len()]).basic_auth("bench", Some("pw")).send().await.expect("send");
            assert_eq!(res.status(), 200);
            res.bytes().await.expect("body");
        }
    })
    .await;
    phase.report();

    let phase = run("put flag", n, conc, |i| {
        let (client, urls) = (client.clone(), urls.clone());
        async move {
            let res = client
                .put(format!("{}/flags/%5CSeen", urls[i % urls.len()]))
                .basic_auth("bench", Some("pw"))
                .send()
                .await
                .expect("send");
            assert!(res.status() == 201 || res.status() == 204);
        }
    })
    .await;
    phase.report();
}
