//! Opaque bearer tokens by OAuth 2.0 token introspection (RFC 7662), against a local
//! authorization server: a small actix server on port 0 that answers from a table of
//! tokens and records every call (its `Authorization` header, content type and form).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use cpm_nms::config::{IntrospectionSettings, IssuerSettings, Settings};
use serde_json::{Value, json};

use crate::auth_bearer::{app_trusting, assert_forbidden, assert_invalid_token, challenges, claims, es256, spawn_idp};
use crate::helpers::*;

const CLIENT_ID: &str = "cpm-nms";
const CLIENT_SECRET: &str = "s3cret";

/// One introspection request as the authorization server got it.
#[derive(Clone, Debug)]
struct Call {
    authorization: String,
    content_type: String,
    form: HashMap<String, String>,
}

/// How the authorization server behaves.
const ANSWER: u8 = 0;
const HANG: u8 = 1;
const FAIL: u8 = 2;

#[derive(Default)]
struct AsState {
    answers: Mutex<HashMap<String, Value>>,
    calls: Mutex<Vec<Call>>,
    mode: AtomicU8,
    /// Held by a test to keep introspections waiting.
    gate: tokio::sync::RwLock<()>,
}

struct AuthServer {
    url: String,
    state: Arc<AsState>,
}

impl AuthServer {
    /// The answer for `token` (any other token is not active).
    fn answer(&self, token: &str, answer: Value) {
        self.state.answers.lock().unwrap().insert(token.into(), answer);
    }

    fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The tokens asked about, in order.
    fn seen(&self) -> Vec<String> {
        self.calls().iter().filter_map(|c| c.form.get("token").cloned()).collect()
    }

    fn set_mode(&self, mode: u8) {
        self.state.mode.store(mode, Ordering::SeqCst);
    }

    /// The endpoint's settings, for tokens starting with `prefix`.
    fn endpoint(&self, prefix: &str) -> IntrospectionSettings {
        IntrospectionSettings {
            url: format!("{}/introspect", self.url),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            token_prefix: prefix.into(),
            ..Default::default()
        }
    }
}

async fn introspect(req: HttpRequest, body: web::Bytes, st: web::Data<AsState>) -> HttpResponse {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let token = form.get("token").cloned().unwrap_or_default();
    st.calls.lock().unwrap().push(Call {
        authorization: header("authorization"),
        content_type: header("content-type"),
        form,
    });
    let _open = st.gate.read().await;
    match st.mode.load(Ordering::SeqCst) {
        HANG => std::future::pending().await,
        FAIL => HttpResponse::InternalServerError().body("down"),
        _ => {
            let answer = st.answers.lock().unwrap().get(&token).cloned().unwrap_or(json!({"active": false}));
            HttpResponse::Ok().json(answer)
        }
    }
}

async fn spawn_auth_server() -> AuthServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let state = Arc::new(AsState::default());
    let data = web::Data::from(state.clone());
    serve_local(listener, move |cfg| {
        cfg.app_data(data.clone()).route("/introspect", web::post().to(introspect));
    });
    AuthServer { url, state }
}

/// The server asking `endpoints`, with `cpm-pf` a service client and `username` an address
/// claim too.
async fn app_asking(endpoints: Vec<IntrospectionSettings>, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(move |s| {
        s.auth.bearer.introspection = endpoints;
        s.auth.bearer.service_clients = vec!["cpm-pf".into()];
        s.auth.bearer.address_claims = vec!["sub".into(), "username".into(), "phone_number".into()];
        tweak(s);
    })
    .await
}

/// The server asking `endpoints` and trusting the identity provider at `issuer` (for
/// audience `cpm-nms`).
async fn app_asking_trusting(endpoints: Vec<IntrospectionSettings>, issuer: &str) -> TestApp {
    let issuer = issuer.to_string();
    app_asking(endpoints, move |s| {
        s.auth.bearer.issuers = vec![IssuerSettings { issuer, ..Default::default() }];
        s.auth.bearer.audiences = vec!["cpm-nms".into()];
    })
    .await
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// An active answer for `sub` with `scope`, expiring in five minutes.
fn active(sub: &str, scope: &str) -> Value {
    json!({"active": true, "sub": sub, "scope": scope, "client_id": "rcs-app", "exp": now() + 300})
}

#[tokio::test]
async fn an_active_token_is_its_subscriber_with_its_scopes() {
    let auth = spawn_auth_server().await;
    auth.answer("PAT_alice", active(ALICE, "oma_rest_nms.read oma_rest_nms.create"));
    let app = app_asking(vec![auth.endpoint("")], |_| {}).await;
    let res = app.get_with(&app.root_lookup(ALICE), "PAT_alice").await;
    assert_eq!(res.status(), 200);
    // Another subscriber's box is not its own.
    assert_forbidden(app.get_with(&app.root_lookup(BOB), "PAT_alice").await, "no access to box").await;
    // It writes, and the object is the one alice's Basic login sees.
    let res = app.deposit_with(ALICE, "PAT_alice").await;
    assert_eq!(res.status(), 201);
    let url = res.json::<Value>().await.unwrap()["reference"]["resourceURL"].as_str().unwrap().to_string();
    assert_eq!(app.get(&url).await.status(), 200);
    // The server authenticated as its client and sent the token as a form.
    let calls = auth.calls();
    assert_eq!(calls.len(), 1, "one introspection, then the cached verdict: {calls:?}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    assert_eq!(calls[0].authorization, format!("Basic {basic}"));
    assert!(calls[0].content_type.starts_with("application/x-www-form-urlencoded"), "{:?}", calls[0]);
    assert_eq!(calls[0].form.get("token").map(String::as_str), Some("PAT_alice"));
    assert_eq!(calls[0].form.get("token_type_hint").map(String::as_str), Some("access_token"));
}

#[tokio::test]
async fn inactive_and_expired_tokens_are_invalid_and_a_missing_scope_insufficient() {
    let auth = spawn_auth_server().await;
    auth.answer("revoked", json!({"active": false}));
    let mut expired = active(ALICE, "oma_rest_nms.all_v1");
    expired["exp"] = json!(now() - 600);
    auth.answer("expired", expired);
    auth.answer("reader", active(ALICE, "oma_rest_nms.read"));
    let mut elsewhere = active(ALICE, "oma_rest_nms.all_v1");
    elsewhere["aud"] = json!(["another-service"]);
    auth.answer("elsewhere", elsewhere);
    let app = app_asking(vec![auth.endpoint("")], |s| s.auth.bearer.audiences = vec!["cpm-nms".into()]).await;
    let url = app.root_lookup(ALICE);
    assert_invalid_token(app.get_with(&url, "revoked").await, "token not active").await;
    assert_invalid_token(app.get_with(&url, "never-issued").await, "token not active").await;
    assert_invalid_token(app.get_with(&url, "expired").await, "token expired").await;
    assert_invalid_token(app.get_with(&url, "elsewhere").await, "wrong audience").await;
    assert_eq!(app.get_with(&url, "reader").await.status(), 200);
    assert_forbidden(app.deposit_with(ALICE, "reader").await, "missing scope oma_rest_nms.create").await;
}

#[tokio::test]
async fn usernames_and_verified_phone_numbers_are_addresses_and_service_clients_service_principals() {
    let auth = spawn_auth_server().await;
    auth.answer("bob", json!({"active": true, "username": "+1 310 555 0000", "scope": "oma_rest_nms.read"}));
    auth.answer("pf", json!({"active": true, "client_id": "cpm-pf", "scope": "oma_rest_nms.all_v1"}));
    auth.answer("app", json!({"active": true, "client_id": "rcs-app", "scope": "oma_rest_nms.all_v1"}));
    // A phone number is an address only when the authorization server has verified it.
    let phone = |verified: bool| {
        json!({"active": true, "sub": "user-77", "phone_number": "+1 310 555 0000",
               "phone_number_verified": verified, "scope": "oma_rest_nms.read"})
    };
    auth.answer("verified", phone(true));
    auth.answer("unverified", phone(false));
    let app = app_asking(vec![auth.endpoint("")], |_| {}).await;
    assert_eq!(app.get_with(&app.root_lookup(BOB), "bob").await.status(), 200);
    assert_eq!(app.get_with(&app.root_lookup(BOB), "verified").await.status(), 200);
    assert_forbidden(app.get_with(&app.root_lookup(BOB), "unverified").await, "no access to box").await;
    // The service client acts on any box; another client without an address on none.
    assert_eq!(app.deposit_with(BOB, "pf").await.status(), 201);
    assert_forbidden(app.deposit_with(BOB, "app").await, "no access to box").await;
}

#[tokio::test]
async fn concurrent_requests_share_one_introspection_and_then_the_cache() {
    let auth = spawn_auth_server().await;
    auth.answer("PAT_busy", active(ALICE, "oma_rest_nms.read"));
    let app = Arc::new(app_asking(vec![auth.endpoint("")], |_| {}).await);
    // The authorization server holds its answer while twenty requests come in.
    let gate = auth.state.gate.write().await;
    let mut requests = Vec::new();
    for _ in 0..20 {
        let app = app.clone();
        requests.push(tokio::spawn(async move { app.get_with(&app.root_lookup(ALICE), "PAT_busy").await.status() }));
    }
    while auth.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    // Not a timing assertion: one call is the outcome whatever this wait; it lets a server
    // without single flight show its extra calls.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(gate);
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    for _ in 0..20 {
        assert_eq!(app.get_with(&app.root_lookup(ALICE), "PAT_busy").await.status(), 200);
    }
    assert_eq!(auth.calls().len(), 1, "forty requests, one introspection");
    assert_eq!(app.auth.bearer().unwrap().introspections(), 1);
}

#[tokio::test]
async fn nothing_is_cached_with_cache_secs_0_so_a_revoked_token_fails_at_once() {
    let auth = spawn_auth_server().await;
    auth.answer("t", active(ALICE, "oma_rest_nms.read"));
    let mut endpoint = auth.endpoint("");
    endpoint.cache_secs = 0;
    let app = app_asking(vec![endpoint], |_| {}).await;
    for _ in 0..3 {
        assert_eq!(app.get_with(&app.root_lookup(ALICE), "t").await.status(), 200);
    }
    assert_eq!(auth.calls().len(), 3);
    // A token revoked since is refused at once.
    auth.answer("t", json!({"active": false}));
    assert_invalid_token(app.get_with(&app.root_lookup(ALICE), "t").await, "token not active").await;
}

#[tokio::test]
async fn tokens_go_to_the_endpoint_of_their_prefix_and_trusted_jwts_to_none() {
    let (pat, other) = (spawn_auth_server().await, spawn_auth_server().await);
    pat.answer("PAT_1", active(ALICE, "oma_rest_nms.read"));
    other.answer("sit-1", active(BOB, "oma_rest_nms.read"));
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_asking_trusting(vec![pat.endpoint("PAT_"), other.endpoint("")], &idp.url).await;
    assert_eq!(app.get_with(&app.root_lookup(ALICE), "PAT_1").await.status(), 200);
    assert_eq!(app.get_with(&app.root_lookup(BOB), "sit-1").await.status(), 200);
    assert_eq!((pat.seen(), other.seen()), (vec!["PAT_1".to_string()], vec!["sit-1".to_string()]));
    // A JWT of the trusted issuer is verified by its signature, never sent anywhere...
    let jwt = ec.sign(&claims(&idp.url, ALICE, "oma_rest_nms.read"));
    assert_eq!(app.get_with(&app.root_lookup(ALICE), &jwt).await.status(), 200);
    // ... even when it is refused; a JWT of another issuer is the catch-all endpoint's.
    let mut c = claims(&idp.url, ALICE, "oma_rest_nms.read");
    c["exp"] = json!(now() - 3600);
    assert_invalid_token(app.get_with(&app.root_lookup(ALICE), &ec.sign(&c)).await, "token expired").await;
    assert_eq!(other.calls().len(), 1);
    let foreign = ec.sign(&claims("https://as.example", ALICE, "oma_rest_nms.read"));
    assert_invalid_token(app.get_with(&app.root_lookup(ALICE), &foreign).await, "token not active").await;
    assert_eq!(other.seen().last(), Some(&foreign));
    assert_eq!(pat.calls().len(), 1);
}

#[tokio::test]
async fn a_hanging_endpoint_is_503_within_its_timeout_while_basic_users_are_served() {
    let auth = spawn_auth_server().await;
    auth.answer("t", active(ALICE, "oma_rest_nms.read"));
    auth.set_mode(HANG);
    let mut endpoint = auth.endpoint("");
    endpoint.http_timeout_secs = Some(1);
    let app = Arc::new(app_asking(vec![endpoint], |_| {}).await);
    // (The endpoint never answers: without the time limit this request would never end.)
    let waiting = {
        let app = app.clone();
        tokio::spawn(async move { app.get_with(&app.root_lookup(ALICE), "t").await })
    };
    while auth.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    assert_eq!(app.get(&app.root_lookup(ALICE)).await.status(), 200, "Basic while the endpoint hangs");
    let res = waiting.await.unwrap();
    assert!(res.headers().get("retry-after").is_some());
    let exc = assert_error(res, 503, "SVC0001").await;
    assert_eq!(exc["variables"][0], "service unavailable");
    // An endpoint failing is the same; a failure is not remembered.
    auth.set_mode(FAIL);
    assert_error(app.get_with(&app.root_lookup(ALICE), "t").await, 503, "SVC0001").await;
    auth.set_mode(ANSWER);
    assert_eq!(app.get_with(&app.root_lookup(ALICE), "t").await.status(), 200);
}

#[tokio::test]
async fn inactive_tokens_count_as_failed_logins_of_their_address() {
    let auth = spawn_auth_server().await;
    auth.answer("good", active(ALICE, "oma_rest_nms.read"));
    let app = app_asking(vec![auth.endpoint("")], |s| {
        s.limits.auth_failures.address_burst = 2;
        s.limits.auth_failures.address_per_sec = 0.001;
    })
    .await;
    let url = app.root_lookup(ALICE);
    for junk in ["junk-1", "junk-2"] {
        assert_invalid_token(app.get_with(&url, junk).await, "token not active").await;
    }
    assert_error(app.get_with(&url, "junk-3").await, 429, "POL0001").await;
    // A good token is still let in.
    assert_eq!(app.get_with(&url, "good").await.status(), 200);
}

/// A request with `Authorization: {authorization}` (a whole header value, `SIT <token>`).
async fn send_as(app: &TestApp, method: reqwest::Method, url: &str, authorization: &str) -> reqwest::Response {
    let req = app.client.request(method.clone(), url).header("Authorization", authorization);
    let req = if method == reqwest::Method::POST { req.json(&json!({"object": {}})) } else { req };
    req.header("Accept", "application/json").send().await.unwrap()
}

/// `GET` the root folder lookup of `addr`'s box with `Authorization: {authorization}`.
async fn lookup_as(app: &TestApp, addr: &str, authorization: &str) -> reqwest::Response {
    send_as(app, reqwest::Method::GET, &app.root_lookup(addr), authorization).await
}

#[tokio::test]
async fn a_sit_token_is_introspected_and_authorized_like_a_bearer_token() {
    let auth = spawn_auth_server().await;
    auth.answer("tmo-alice", active(ALICE, "oma_rest_nms.read oma_rest_nms.create"));
    auth.answer("tmo-reader", active(ALICE, "oma_rest_nms.read"));
    let app = app_asking(vec![auth.endpoint("")], |_| {}).await;
    // The scheme name in any case (RFC 7235), extra spaces before the token tolerated.
    for header in ["SIT tmo-alice", "sit tmo-alice", "Sit  tmo-alice"] {
        assert_eq!(lookup_as(&app, ALICE, header).await.status(), 200, "{header}");
    }
    // It writes into its own box, and the object is the one alice's Basic login sees.
    let res = send_as(&app, reqwest::Method::POST, &format!("{}/objects", app.base(ALICE)), "SIT tmo-alice").await;
    assert_eq!(res.status(), 201);
    let url = res.json::<Value>().await.unwrap()["reference"]["resourceURL"].as_str().unwrap().to_string();
    assert_eq!(app.get(&url).await.status(), 200);
    // The same decision as for a bearer token: another box is not its own, a scope it
    // lacks is named.
    assert_forbidden(lookup_as(&app, BOB, "SIT tmo-alice").await, "no access to box").await;
    let res = send_as(&app, reqwest::Method::POST, &format!("{}/objects", app.base(ALICE)), "SIT tmo-reader").await;
    assert_forbidden(res, "missing scope oma_rest_nms.create").await;
    // One introspection per token, as for `Bearer`, whose verdicts it shares.
    assert_eq!(app.get_with(&app.root_lookup(ALICE), "tmo-alice").await.status(), 200);
    assert_eq!(auth.seen(), ["tmo-alice", "tmo-reader"]);
}

#[tokio::test]
async fn a_refused_sit_token_is_401_invalid_token_so_the_client_refreshes_it() {
    let auth = spawn_auth_server().await;
    auth.answer("revoked", json!({"active": false}));
    let mut expired = active(ALICE, "oma_rest_nms.all_v1");
    expired["exp"] = json!(now() - 600);
    auth.answer("expired", expired);
    let app = app_asking(vec![auth.endpoint("")], |_| {}).await;
    assert_invalid_token(lookup_as(&app, ALICE, "SIT revoked").await, "token not active").await;
    assert_invalid_token(lookup_as(&app, ALICE, "SIT never-issued").await, "token not active").await;
    assert_invalid_token(lookup_as(&app, ALICE, "SIT expired").await, "token expired").await;
    // An authorization server that cannot answer is 503, not a 401 that would make the
    // client throw a good token away.
    auth.set_mode(FAIL);
    assert_error(lookup_as(&app, ALICE, "SIT fresh").await, 503, "SVC0001").await;
}

#[tokio::test]
async fn sit_tokens_follow_prefix_routing_and_are_never_verified_as_jwts() {
    let (pat, tmo) = (spawn_auth_server().await, spawn_auth_server().await);
    pat.answer("PAT_1", active(ALICE, "oma_rest_nms.read"));
    tmo.answer("TMO_1", active(BOB, "oma_rest_nms.read"));
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_asking_trusting(vec![pat.endpoint("PAT_"), tmo.endpoint("TMO_")], &idp.url).await;
    assert_eq!(lookup_as(&app, ALICE, "SIT PAT_1").await.status(), 200);
    assert_eq!(lookup_as(&app, BOB, "SIT TMO_1").await.status(), 200);
    // A token no endpoint takes has nobody to vouch for it; a JWT of the trusted issuer
    // sent as SIT is an opaque token too: the issuer's signature does not let it in.
    assert_invalid_token(lookup_as(&app, ALICE, "SIT other-1").await, "wrong issuer").await;
    let jwt = ec.sign(&claims(&idp.url, ALICE, "oma_rest_nms.read"));
    assert_eq!(app.get_with(&app.root_lookup(ALICE), &jwt).await.status(), 200, "as Bearer it is good");
    assert_invalid_token(lookup_as(&app, ALICE, &format!("SIT {jwt}")).await, "wrong issuer").await;
    assert_eq!((pat.seen(), tmo.seen()), (vec!["PAT_1".to_string()], vec!["TMO_1".to_string()]));
    // With a catch-all endpoint, the JWT sent as SIT is introspected like any token.
    let auth = spawn_auth_server().await;
    let app = app_asking_trusting(vec![auth.endpoint("")], &idp.url).await;
    assert_invalid_token(lookup_as(&app, ALICE, &format!("SIT {jwt}")).await, "token not active").await;
    assert_eq!(auth.seen(), [jwt]);
}

/// A 401 for an unsupported scheme: the OMA body says so, the challenges offer what is on.
async fn assert_unsupported_sit(res: reqwest::Response, wanted: &str) {
    let ch = challenges(&res);
    assert!(ch.iter().any(|c| c == wanted), "{ch:?}");
    assert!(ch.iter().all(|c| !c.contains("error=")), "{ch:?}");
    let exc = assert_error(res, 401, "POL0001").await;
    assert_eq!(exc["variables"][0], "unsupported authorization scheme SIT");
}

#[tokio::test]
async fn sit_is_an_unsupported_scheme_without_introspection_or_when_off() {
    // JWTs only: nothing could vouch for an opaque token, not even a good JWT.
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |_| {}).await;
    let jwt = ec.sign(&claims(&idp.url, ALICE, "oma_rest_nms.read"));
    assert_eq!(app.get_with(&app.root_lookup(ALICE), &jwt).await.status(), 200);
    assert_unsupported_sit(lookup_as(&app, ALICE, &format!("SIT {jwt}")).await, "Bearer realm=\"cpm-nms\"").await;
    // Switched off: not introspected.
    let auth = spawn_auth_server().await;
    auth.answer("tmo-alice", active(ALICE, "oma_rest_nms.read"));
    let app = app_asking(vec![auth.endpoint("")], |s| s.auth.bearer.sit_scheme = false).await;
    assert_unsupported_sit(lookup_as(&app, ALICE, "SIT tmo-alice").await, "Bearer realm=\"cpm-nms\"").await;
    assert!(auth.calls().is_empty(), "{:?}", auth.calls());
    assert_eq!(app.get_with(&app.root_lookup(ALICE), "tmo-alice").await.status(), 200, "Bearer still is on");
}

#[tokio::test]
async fn malformed_sit_headers_are_401_with_an_oma_body_and_never_introspected() {
    let auth = spawn_auth_server().await;
    auth.answer("a", active(ALICE, "oma_rest_nms.read"));
    let app = app_asking(vec![auth.endpoint("")], |_| {}).await;
    for (header, what) in [
        ("SIT", "malformed token: no token"),
        ("SIT   ", "malformed token: no token"),
        ("SIT a b", "malformed token: not one word"),
        ("SIT a a", "malformed token: not one word"),
    ] {
        assert_invalid_token(lookup_as(&app, ALICE, header).await, what).await;
    }
    assert!(auth.calls().is_empty(), "{:?}", auth.calls());
    assert_eq!(lookup_as(&app, ALICE, "SIT a").await.status(), 200);
}

#[test]
fn endpoints_come_from_the_environment_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cpm-nms"))
        .args(["--data-dir", dir.path().to_str().unwrap(), "config"])
        .env_remove("NMS__AUTH__CURSOR_SECRET")
        .env(
            "NMS__AUTH__BEARER__INTROSPECTION",
            r#"[{url="https://as.example/introspect", client_id="cpm-nms", client_secret="env-secret", token_prefix="PAT_"}]"#,
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(!s.contains("env-secret"), "{s}");
    for want in [
        "[[auth.bearer.introspection]]",
        "url = \"https://as.example/introspect\"",
        "token_prefix = \"PAT_\"",
        "client_secret = \"<redacted>\"",
        "cache_secs = 60",
        "sit_scheme = true",
    ] {
        assert!(s.contains(want), "{want} in {s}");
    }
}
