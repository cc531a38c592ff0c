//! Hardening against clients that never authenticate well or never finish: failed logins
//! are throttled per source address and per login name (before any password check), and a
//! request body that arrives too slowly is cut off with 408.
//!
//! Other source addresses are other loopback addresses (all of 127.0.0.0/8 is loopback on
//! Linux): a client bound to 127.0.0.2 is another address to the server.

use std::time::Duration;

use cpm_nms::config::{AuthFailureSettings, IssuerSettings, Settings};
use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Client, Method, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth_bearer::{Signer, app_trusting, claims, digest_answer, digest_app, digest_challenge, es256, spawn_idp};
use crate::helpers::*;
use crate::limits::{assert_nothing_left, objects};

/// A client whose connections come from `ip`.
fn client_from(ip: &str) -> Client {
    Client::builder().local_address(ip.parse::<std::net::IpAddr>().unwrap()).build().unwrap()
}

/// Failed-login buckets of the given sizes that refill so slowly (one failure back in
/// 1000 s) that nothing comes back while a test runs.
fn failures(address_burst: u32, name_burst: u32) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.limits.auth_failures = AuthFailureSettings {
            address_per_sec: 0.001,
            address_burst,
            name_per_sec: 0.001,
            name_burst,
            known_address_secs: 3600,
        }
    }
}

/// A 429 for too many failed logins: an integer `Retry-After` and an OMA policy exception
/// naming the bucket's setting (`address_per_sec` or `name_per_sec`).
async fn assert_throttled(res: Response, setting: &str) {
    let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let retry: u64 = retry.as_deref().unwrap_or_default().parse().expect("Retry-After in whole seconds");
    assert!(retry >= 1, "{retry}");
    let exc = assert_error(res, 429, "POL0001").await;
    let variable = exc["variables"][0].as_str().unwrap();
    assert!(variable.contains(&format!("limits.auth_failures.{setting}")), "{variable}");
}

async fn lookup(app: &TestApp, client: &Client, user: &str, password: &str) -> Response {
    let url = format!("{}/folders/operations/pathToId", app.base(if user == "bob" { BOB } else { ALICE }));
    client.get(url).basic_auth(user, Some(password)).send().await.unwrap()
}

#[tokio::test]
async fn wrong_passwords_from_one_address_are_throttled_without_a_password_check() {
    let app = spawn_app_with(failures(3, 10)).await;
    let here = &app.client;
    for _ in 0..3 {
        assert_error(lookup(&app, here, "alice", "wrong").await, 401, "POL0001").await;
    }
    assert_eq!(app.auth.verifications(), 3);
    assert_throttled(lookup(&app, here, "alice", "wrong").await, "address_per_sec").await;
    // The right password from there is refused too (a guess that happens to be right must
    // not tell), and so is any other name from there.
    assert_throttled(lookup(&app, here, "alice", PW).await, "address_per_sec").await;
    assert_throttled(lookup(&app, here, "bob", PW).await, "address_per_sec").await;
    assert_eq!(app.auth.verifications(), 3, "no argon2 run while throttled");
    // Alice logs in from another address.
    assert_eq!(lookup(&app, &client_from("127.0.0.2"), "alice", PW).await.status(), 200);
}

#[tokio::test]
async fn guessing_one_name_from_many_addresses_is_bounded_by_the_name_but_not_where_it_logs_in() {
    let app = spawn_app_with(failures(2, 4)).await;
    // Alice's device logs in from 127.0.0.1: that address is known for her.
    assert_eq!(lookup(&app, &app.client, "alice", PW).await.status(), 200);
    for attacker in ["127.0.0.2", "127.0.0.3"] {
        let attacker = client_from(attacker);
        for _ in 0..2 {
            assert_eq!(lookup(&app, &attacker, "alice", "guess").await.status(), 401);
        }
    }
    let checked = app.auth.verifications();
    // Her name's failures are used up: from any new address, no guess is checked.
    let fresh = client_from("127.0.0.4");
    assert_throttled(lookup(&app, &fresh, "alice", "guess").await, "name_per_sec").await;
    assert_throttled(lookup(&app, &fresh, "alice", PW).await, "name_per_sec").await;
    assert_eq!(app.auth.verifications(), checked, "no argon2 run while throttled");
    // Her own device goes on working, and other names are not affected.
    assert_eq!(lookup(&app, &app.client, "alice", PW).await.status(), 200);
    assert_eq!(lookup(&app, &fresh, "bob", PW).await.status(), 200);
}

#[tokio::test]
async fn failed_logins_are_throttled_by_default_and_not_at_rate_zero() {
    let app = spawn_app().await;
    for _ in 0..10 {
        assert_eq!(lookup(&app, &app.client, "alice", "wrong").await.status(), 401);
    }
    assert_throttled(lookup(&app, &app.client, "alice", "wrong").await, "address_per_sec").await;
    let app = spawn_app_with(|s| {
        s.limits.auth_failures.address_per_sec = 0.0;
        s.limits.auth_failures.name_per_sec = 0.0;
    })
    .await;
    for _ in 0..12 {
        assert_eq!(lookup(&app, &app.client, "alice", "wrong").await.status(), 401);
    }
    assert_eq!(lookup(&app, &app.client, "alice", PW).await.status(), 200);
}

/// carol's root folder lookup (a Digest account's) and its `uri` as Digest signs it.
fn carol_lookup(app: &TestApp) -> (String, String) {
    let url = format!("{}/folders/operations/pathToId", app.base("tel:+14155550100"));
    let uri = url.strip_prefix(&app.url).unwrap().to_string();
    (url, uri)
}

/// carol's lookup from `client` with Digest: the `Authorization` answering a fresh
/// challenge with `password`.
async fn carol_answer(app: &TestApp, client: &Client, password: &str) -> String {
    let (url, uri) = carol_lookup(app);
    // Asking for a challenge (no credentials) is no failure.
    let challenge = digest_challenge(&client.get(&url).send().await.unwrap(), "SHA-256");
    digest_answer(&challenge, "carol", password, "GET", &uri, 1)
}

/// carol's lookup from `client` with `authorization`.
async fn carol_send(app: &TestApp, client: &Client, authorization: &str) -> Response {
    client.get(carol_lookup(app).0).header("Authorization", authorization).send().await.unwrap()
}

/// carol's lookup from `client` with Digest and `password`.
async fn carol_digest(app: &TestApp, client: &Client, password: &str) -> Response {
    carol_send(app, client, &carol_answer(app, client, password).await).await
}

#[tokio::test]
async fn wrong_digest_answers_are_throttled_like_wrong_passwords() {
    let app = digest_app(failures(2, 10)).await;
    for _ in 0..2 {
        assert_error(carol_digest(&app, &app.client, "wrong").await, 401, "POL0001").await;
    }
    assert_throttled(carol_digest(&app, &app.client, "wrong").await, "address_per_sec").await;
    assert_throttled(carol_digest(&app, &app.client, "s3cret").await, "address_per_sec").await;
    assert_eq!(carol_digest(&app, &client_from("127.0.0.2"), "s3cret").await.status(), 200);
}

#[tokio::test]
async fn a_replayed_digest_answer_neither_counts_nor_makes_its_address_known() {
    let app = digest_app(failures(2, 4)).await;
    // carol logs in from 127.0.0.1; someone who captured that request replays it from
    // 127.0.0.2 (more often than the address has failures to spend).
    let captured = carol_answer(&app, &app.client, "s3cret").await;
    assert_eq!(carol_send(&app, &app.client, &captured).await.status(), 200);
    let replayer = client_from("127.0.0.2");
    for _ in 0..3 {
        let res = carol_send(&app, &replayer, &captured).await;
        let stale =
            res.headers().get_all("www-authenticate").iter().any(|c| c.to_str().unwrap().contains("stale=true"));
        assert!(stale, "a right answer to a used nonce: retry with a new one");
        assert_error(res, 401, "POL0001").await;
    }
    // Guessers empty carol's name's bucket.
    for guesser in ["127.0.0.3", "127.0.0.4"] {
        for _ in 0..2 {
            assert_eq!(carol_digest(&app, &client_from(guesser), "guess").await.status(), 401);
        }
    }
    // The replayer's address is not known for carol: its guesses are refused by her name.
    assert_throttled(carol_digest(&app, &replayer, "guess").await, "name_per_sec").await;
    assert_eq!(carol_digest(&app, &app.client, "s3cret").await.status(), 200, "where she logged in");
}

#[tokio::test]
async fn forged_bearer_tokens_are_throttled_per_address_but_valid_and_expired_ones_are_not() {
    let secret = "a-shared-secret-of-at-least-32-bytes!";
    let app = spawn_app_with(|s| {
        failures(2, 10)(s);
        s.auth.bearer.issuers = vec![IssuerSettings {
            issuer: "urn:example:idp".into(),
            shared_secret: secret.into(),
            ..Default::default()
        }];
        s.auth.bearer.audiences = vec!["cpm-nms".into()];
    })
    .await;
    let url = format!("{}/folders/operations/pathToId", app.base(ALICE));
    let now = jsonwebtoken::get_current_timestamp();
    let token = |key: &[u8], exp: u64| {
        let claims = json!({"iss": "urn:example:idp", "aud": "cpm-nms", "sub": ALICE,
            "scope": "oma_rest_nms.all_v1", "iat": now - 600, "exp": exp});
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(key)).unwrap()
    };
    let (valid, forged, expired) =
        (token(secret.as_bytes(), now + 300), token(b"guess", now + 300), token(secret.as_bytes(), now - 300));
    let send = |client: &Client, token: &str| client.get(&url).bearer_auth(token).send();
    // Tokens that merely expired are not counted.
    for _ in 0..5 {
        assert_eq!(send(&app.client, &expired).await.unwrap().status(), 401);
    }
    for _ in 0..2 {
        assert_eq!(send(&app.client, &forged).await.unwrap().status(), 401);
    }
    assert_throttled(send(&app.client, &forged).await.unwrap(), "address_per_sec").await;
    // A valid token from the throttled address (another client behind the same carrier
    // NAT) is let in, and lets nothing else in: forgeries are still refused, and so are
    // passwords. An expired token is still told it expired, so its client refreshes it.
    assert_eq!(send(&app.client, &valid).await.unwrap().status(), 200);
    assert_throttled(send(&app.client, &forged).await.unwrap(), "address_per_sec").await;
    assert_eq!(send(&app.client, &expired).await.unwrap().status(), 401);
    assert_throttled(lookup(&app, &app.client, "alice", PW).await, "address_per_sec").await;
    assert_eq!(send(&client_from("127.0.0.2"), &valid).await.unwrap().status(), 200);
}

#[tokio::test]
async fn wrong_attempts_at_once_from_one_address_do_not_empty_the_names_bucket() {
    // Digest with a cold account cache: every attempt waits for the account lookup, so
    // all of them are under way at once.
    let app = digest_app(failures(2, 3)).await;
    let url = format!("{}/folders/operations/pathToId", app.base(ALICE));
    let uri = url.strip_prefix(&app.url).unwrap().to_string();
    let challenge = digest_challenge(&app.client.get(&url).send().await.unwrap(), "SHA-256");
    // Forty connections opened beforehand, so that the attempts arrive together.
    let health = (0..40).map(|_| app.client.get(format!("{}/health", app.url)).send());
    for res in futures_util::future::join_all(health).await {
        assert_eq!(res.unwrap().status(), 200);
    }
    let attempts = (1..=40).map(|nc| {
        let answer = digest_answer(&challenge, "alice", "guess", "GET", &uri, nc);
        app.client.get(&url).header("Authorization", answer).send()
    });
    let statuses: Vec<u16> =
        futures_util::future::join_all(attempts).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(checked, 2, "only as many checked as the address has failures to spend: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 38, "{statuses:?}");
    // Her name lost 2 of its 3: from an address not known for her, alice still logs in.
    assert_eq!(lookup(&app, &client_from("127.0.0.2"), "alice", PW).await.status(), 200);
}

#[tokio::test]
async fn tokens_naming_keys_the_provider_does_not_publish_are_counted_as_junk() {
    let (key, rotated, made_up) = (es256("2026-01"), es256("2026-02"), es256("made-up"));
    let idp = spawn_idp(&[&key]).await;
    // (Each unknown kid makes the server fetch the key set again: min_refresh_interval_secs
    // is 0 here.)
    let app = app_trusting(&idp, failures(2, 10)).await;
    let url = format!("{}/folders/operations/pathToId", app.base(ALICE));
    let send =
        |s: &Signer| app.client.get(&url).bearer_auth(s.sign(&claims(&idp.url, ALICE, "oma_rest_nms.read"))).send();
    assert_eq!(send(&key).await.unwrap().status(), 200);
    // The provider rotates to a new key: its first token makes the server fetch the set
    // again and is let in, nothing counted.
    idp.publish(&rotated);
    assert_eq!(send(&rotated).await.unwrap().status(), 200);
    // A kid still unknown in a set fetched again for it is junk.
    for _ in 0..2 {
        assert_eq!(send(&made_up).await.unwrap().status(), 401);
    }
    assert_throttled(send(&made_up).await.unwrap(), "address_per_sec").await;
    assert_eq!(send(&rotated).await.unwrap().status(), 200);
}

#[tokio::test]
async fn tokens_whose_keys_cannot_be_fetched_are_not_counted() {
    // A provider nobody answers for: the key set cannot be fetched.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let jwks_url = format!("http://{}/jwks.json", gone.local_addr().unwrap());
    drop(gone);
    let app = spawn_app_with(|s| {
        failures(2, 10)(s);
        s.auth.bearer.issuers =
            vec![IssuerSettings { issuer: "urn:example:idp".into(), jwks_url, ..Default::default() }];
        s.auth.bearer.audiences = vec!["cpm-nms".into()];
        s.auth.bearer.min_refresh_interval_secs = 0;
    })
    .await;
    let url = format!("{}/folders/operations/pathToId", app.base(ALICE));
    let token = es256("k1").sign(&claims("urn:example:idp", ALICE, "oma_rest_nms.read"));
    for _ in 0..4 {
        let res = app.client.get(&url).bearer_auth(&token).send().await.unwrap();
        let exc = assert_error(res, 401, "POL0001").await;
        assert!(exc["variables"][0].as_str().unwrap().contains("unknown signing key k1"), "{exc}");
    }
}

// ---------------------------------------------------------------------------------------
// Slow request bodies
// ---------------------------------------------------------------------------------------

/// Bodies must come within 1 s of waiting, plus 1 s per MB.
fn paced(s: &mut Settings) {
    s.server.body_timeout_secs = 1;
    s.server.body_min_rate_bytes_per_sec = 1_000_000;
}

/// What a raw client got: the server's whole answer, and whether the server closed the
/// connection (rather than leaving it open).
struct RawAnswer {
    text: String,
    closed: bool,
}

/// Send `head` and the first `at_once` bytes of `body` at once, then the rest a byte every
/// 100 ms (far slower than [`paced`] allows), while reading the answer until the server
/// closes the connection (given up after 30 s).
async fn trickle(app: &TestApp, head: &str, body: &[u8], at_once: usize) -> RawAnswer {
    let stream = tokio::net::TcpStream::connect(app.url.trim_start_matches("http://")).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let mut first = head.as_bytes().to_vec();
    first.extend_from_slice(&body[..at_once]);
    let rest = body[at_once..].to_vec();
    let writer = tokio::spawn(async move {
        if wr.write_all(&first).await.is_err() {
            return;
        }
        for b in rest {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
        }
        // Never finish: keep the connection open.
        std::future::pending::<()>().await;
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    };
    writer.abort();
    RawAnswer { text: String::from_utf8_lossy(&answer).into_owned(), closed }
}

/// A 408 with an OMA policy exception naming `setting`, on a connection the server closed.
fn assert_too_slow(answer: &RawAnswer, setting: &str) {
    let text = &answer.text;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or_default()).expect(text);
    assert_eq!(message_id(&body), "POL0001", "{body}");
    let variable = body["requestError"]["policyException"]["variables"][0].as_str().unwrap();
    assert!(variable.contains(setting), "{variable}");
    assert!(answer.closed, "the connection is closed");
}

/// A deposit of a 600 kB payload whose first 400 kB come at once, the rest a byte every
/// 100 ms: a payload part past the blob store's write buffer when the body stalls, so that
/// it was being written into a temporary blob.
async fn deposit_stalling_at_400_kb(app: &TestApp) -> RawAnswer {
    let payload: Vec<u8> = (0..600_000).map(|i| (i % 251) as u8).collect();
    let (content_type, body) = form()
        .root_fields(&json!({}))
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")], &payload)
        .finish("multipart/form-data");
    trickle(app, &raw_head(app, "POST", "/objects", &content_type, body.len()), &body, 400_000).await
}

#[tokio::test]
async fn a_deposit_trickling_in_is_cut_off_with_408_and_leaves_nothing() {
    let app = spawn_app_with(paced).await;
    assert_too_slow(&deposit_stalling_at_400_kb(&app).await, "server.body_timeout_secs");
    assert_nothing_left(&app).await;
}

#[tokio::test]
async fn a_json_body_trickling_in_is_cut_off_with_408() {
    let app = spawn_app_with(paced).await;
    let body = serde_json::to_vec(&json!({"object": {"attributes": {"attribute": [
        {"name": "Subject", "value": ["a subject long enough to take a while at a byte at a time"]}
    ]}}}))
    .unwrap();
    let answer = trickle(&app, &raw_head(&app, "POST", "/objects", "application/json", body.len()), &body, 10).await;
    assert_too_slow(&answer, "server.body_timeout_secs");
    assert_eq!(objects(&app).await, 0);
}

#[tokio::test]
async fn a_deposit_stalling_after_a_fast_start_is_cut_off_at_the_cap() {
    let app = spawn_app_with(|s| {
        // 400 kB at once earn 1 s + 40 s of waiting, more than the cap of 2 s.
        s.server.body_timeout_secs = 1;
        s.server.body_min_rate_bytes_per_sec = 10_000;
        s.server.body_max_secs = 2;
    })
    .await;
    let answer = deposit_stalling_at_400_kb(&app).await;
    assert_too_slow(&answer, "server.body_max_secs");
    assert!(answer.text.contains("waited for more than 2 s in all"), "{}", answer.text);
    assert_nothing_left(&app).await;
}

#[tokio::test]
async fn an_upload_taking_longer_than_the_timeout_at_a_good_rate_is_stored() {
    let app = spawn_app_with(paced).await;
    let payload: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let (content_type, body) = form()
        .root_fields(&json!({}))
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")], &payload)
        .finish("multipart/form-data");
    // Sixteen chunks 100 ms apart: 1.5 s in all, longer than the 1 s timeout, at about
    // 2.7 MB/s, above the minimum rate.
    let chunks: Vec<Vec<u8>> = body.chunks(body.len().div_ceil(16)).map(<[u8]>::to_vec).collect();
    let stream = futures_util::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(c)
    });
    let res = app
        .req(Method::POST, &format!("{}/objects", app.base(ALICE)))
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
}

#[tokio::test]
async fn a_request_head_trickling_in_is_answered_408() {
    let app = spawn_app_with(|s| s.server.header_timeout_secs = 1).await;
    let mut stream = tokio::net::TcpStream::connect(app.url.trim_start_matches("http://")).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    // Within 4 s, though the default timeout (5 s) would be later.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(4), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "answered and closed in time");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}
