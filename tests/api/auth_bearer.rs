//! Bearer tokens from a local OpenID Connect provider, Digest, and how every scheme's
//! refusals read.
//!
//! The provider is a small actix server on port 0 serving a discovery document and a JWKS
//! whose keys are generated here (ES256 and Ed25519 with aws-lc-rs; RS256 from a test-only
//! PEM in `keys/`). Tokens are signed with jsonwebtoken.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{HttpResponse, web};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cpm_nms::config::{IssuerSettings, Settings, StaticKeySettings};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::*;

const AUD: &str = "cpm-nms";
const RSA_PEM: &str = include_str!("keys/rsa-test.pem");
const RSA_PUB_PEM: &str = include_str!("keys/rsa-test.pub.pem");

// ---------------------------------------------------------------------------------------
// The local identity provider
// ---------------------------------------------------------------------------------------

struct IdpState {
    issuer: String,
    keys: Mutex<Vec<Value>>,
    jwks_hits: AtomicUsize,
}

pub(crate) struct Idp {
    pub(crate) url: String,
    state: Arc<IdpState>,
}

impl Idp {
    pub(crate) fn publish(&self, s: &Signer) {
        self.state.keys.lock().unwrap().push(s.jwk.clone());
    }

    fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }
}

async fn discovery(st: web::Data<IdpState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "issuer": st.issuer,
        "authorization_endpoint": format!("{}/authorize", st.issuer),
        "jwks_uri": format!("{}/jwks.json", st.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

async fn jwks(st: web::Data<IdpState>) -> HttpResponse {
    st.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let keys = st.keys.lock().unwrap().clone();
    HttpResponse::Ok().json(json!({ "keys": keys }))
}

/// A provider publishing `signers`.
pub(crate) async fn spawn_idp(signers: &[&Signer]) -> Idp {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let state = Arc::new(IdpState {
        issuer: url.clone(),
        keys: Mutex::new(signers.iter().map(|s| s.jwk.clone()).collect()),
        jwks_hits: AtomicUsize::new(0),
    });
    let data = web::Data::from(state.clone());
    serve_local(listener, move |cfg| {
        cfg.app_data(data.clone())
            .route("/.well-known/openid-configuration", web::get().to(discovery))
            .route("/jwks.json", web::get().to(jwks));
    });
    Idp { url, state }
}

// ---------------------------------------------------------------------------------------
// Keys and tokens
// ---------------------------------------------------------------------------------------

pub(crate) struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    /// The public JWK as published.
    jwk: Value,
    /// The public key as PEM (SubjectPublicKeyInfo).
    public_pem: String,
}

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
}

fn published(mut jwk: Jwk, kid: &str) -> Value {
    jwk.common.key_id = Some(kid.to_string());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    serde_json::to_value(jwk).unwrap()
}

pub(crate) fn es256(kid: &str) -> Signer {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let jwk = published(Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap(), kid);
    // SubjectPublicKeyInfo of id-ecPublicKey / prime256v1 with the uncompressed point.
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.extend_from_slice(pair.public_key().as_ref());
    Signer { kid: kid.into(), alg: Algorithm::ES256, key, jwk, public_pem: pem(&spki) }
}

fn ed25519(kid: &str) -> Signer {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&public), "kid": kid, "use": "sig", "alg": "EdDSA"});
    let mut spki = hex::decode("302a300506032b6570032100").unwrap();
    spki.extend_from_slice(&public);
    Signer {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        key: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk,
        public_pem: pem(&spki),
    }
}

fn rs256(kid: &str) -> Signer {
    let key = EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap();
    let jwk = published(Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap(), kid);
    Signer { kid: kid.into(), alg: Algorithm::RS256, key, jwk, public_pem: RSA_PUB_PEM.into() }
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

impl Signer {
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.key).unwrap()
    }
}

/// Claims of a subscriber token from `issuer` for `sub` with `scope`, valid now.
pub(crate) fn claims(issuer: &str, sub: &str, scope: &str) -> Value {
    json!({
        "iss": issuer, "aud": AUD, "sub": sub, "scope": scope,
        "iat": now(), "nbf": now(), "exp": now() + 300,
    })
}

/// A compact JWS with the given header and payload and an empty or junk signature.
fn unsigned(header: &Value, payload: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap())
    )
}

// ---------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------

/// The server trusting `idp` by discovery, with service principals recognised by client id
/// `cpm-pf` or by the role `cpm-participating-function`.
pub(crate) async fn app_trusting(idp: &Idp, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let issuer = idp.url.clone();
    spawn_app_with(move |s| {
        s.auth.bearer.issuers = vec![IssuerSettings { issuer, ..Default::default() }];
        s.auth.bearer.audiences = vec![AUD.into()];
        s.auth.bearer.min_refresh_interval_secs = 0;
        s.auth.bearer.service_clients = vec!["cpm-pf".into()];
        s.auth.bearer.service_claim = "roles".into();
        s.auth.bearer.service_values = vec!["cpm-participating-function".into()];
        tweak(s);
    })
    .await
}

impl TestApp {
    pub(crate) fn with_token(&self, method: Method, url: &str, token: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url).bearer_auth(token).header("Accept", "application/json")
    }

    pub(crate) async fn get_with(&self, url: &str, token: &str) -> Response {
        self.with_token(Method::GET, url, token).send().await.unwrap()
    }

    /// Deposit an empty object into `addr`'s box with `token`.
    pub(crate) async fn deposit_with(&self, addr: &str, token: &str) -> Response {
        self.with_token(Method::POST, &format!("{}/objects", self.base(addr)), token)
            .json(&json!({"object": {}}))
            .send()
            .await
            .unwrap()
    }

    pub(crate) fn root_lookup(&self, addr: &str) -> String {
        format!("{}/folders/operations/pathToId", self.base(addr))
    }
}

pub(crate) fn challenges(res: &Response) -> Vec<String> {
    res.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

/// A refused bearer token: 401, the Bearer challenge alone with `invalid_token` and a
/// description starting with `what`, and an OMA POL0001 body saying the same.
pub(crate) async fn assert_invalid_token(res: Response, what: &str) {
    let ch = challenges(&res);
    assert_eq!(ch.len(), 1, "{ch:?}");
    assert!(ch[0].starts_with("Bearer realm=\"cpm-nms\""), "{}", ch[0]);
    assert!(ch[0].contains("error=\"invalid_token\""), "{}", ch[0]);
    assert!(ch[0].contains(&format!("error_description=\"{what}")), "wanted {what}: {}", ch[0]);
    let exc = assert_error(res, 401, "POL0001").await;
    let var = exc["variables"][0].as_str().unwrap();
    assert!(var.starts_with("invalid bearer token: ") && var.contains(what), "{var}");
}

/// A 403 naming `what` in the policy exception.
pub(crate) async fn assert_forbidden(res: Response, what: &str) {
    // A missing scope also says so to the bearer client (RFC 6750 3.1); nothing else does.
    let challenge = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    match what.strip_prefix("missing scope ") {
        Some(scope) => assert_eq!(
            challenge.as_deref(),
            Some(format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"").as_str())
        ),
        None => assert_eq!(challenge, None),
    }
    let exc = assert_error(res, 403, "POL0001").await;
    assert!(exc["variables"][0].as_str().unwrap().contains(what), "wanted {what}: {exc}");
}

// ---------------------------------------------------------------------------------------
// Bearer: acceptance and every refusal
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn valid_tokens_of_each_algorithm_are_accepted() {
    let (ec, ed, rsa) = (es256("ec-1"), ed25519("ed-1"), rs256("rsa-1"));
    let idp = spawn_idp(&[&ec, &ed, &rsa]).await;
    let app = app_trusting(&idp, |_| {}).await;
    for s in [&ec, &ed, &rsa] {
        let token = s.sign(&claims(&idp.url, ALICE, "oma_rest_nms.all_v1"));
        let res = app.get_with(&app.root_lookup(ALICE), &token).await;
        assert_eq!(res.status(), 200, "{:?}", s.alg);
        let v: Value = res.json().await.unwrap();
        assert!(v["reference"]["resourceURL"].as_str().unwrap().contains(&enc(ALICE)));
    }
    // A bearer subscriber writes, and its object is the same one alice's Basic login sees.
    let token = ec.sign(&claims(&idp.url, ALICE, "oma_rest_nms.create oma_rest_nms.read"));
    let res = app.deposit_with(ALICE, &token).await;
    assert_eq!(res.status(), 201);
    let url = res.json::<Value>().await.unwrap()["reference"]["resourceURL"].as_str().unwrap().to_string();
    assert_eq!(app.get(&url).await.status(), 200);
    assert_eq!(idp.jwks_hits(), 1, "keys are fetched once and cached by kid");
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |s| s.auth.bearer.leeway_secs = 30).await;
    let url = app.root_lookup(ALICE);
    let mut c = claims(&idp.url, ALICE, "oma_rest_nms.read");
    c["exp"] = json!(now() - 120);
    assert_invalid_token(app.get_with(&url, &ec.sign(&c)).await, "token expired").await;
    // Within the leeway it is still good.
    c["exp"] = json!(now() - 10);
    assert_eq!(app.get_with(&url, &ec.sign(&c)).await.status(), 200);
    let mut c = claims(&idp.url, ALICE, "oma_rest_nms.read");
    c["nbf"] = json!(now() + 3600);
    assert_invalid_token(app.get_with(&url, &ec.sign(&c)).await, "token not yet valid").await;
    let mut c = claims(&idp.url, ALICE, "oma_rest_nms.read");
    c["iat"] = json!(now() + 3600);
    assert_invalid_token(app.get_with(&url, &ec.sign(&c)).await, "token not yet valid").await;
    let mut c = claims(&idp.url, ALICE, "oma_rest_nms.read");
    c.as_object_mut().unwrap().remove("exp");
    assert_invalid_token(app.get_with(&url, &ec.sign(&c)).await, "malformed token: missing claim exp").await;
}

#[tokio::test]
async fn wrong_issuer_and_wrong_audience_are_refused() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |_| {}).await;
    let url = app.root_lookup(ALICE);
    for iss in [json!("https://evil.example"), json!(format!("{}/", idp.url)), json!(null)] {
        let mut c = claims(&idp.url, ALICE, "oma_rest_nms.read");
        c["iss"] = iss;
        assert_invalid_token(app.get_with(&url, &ec.sign(&c)).await, "wrong issuer").await;
    }
    for aud in [json!("someone-else"), json!(["a", "b"]), json!(null)] {
        let mut c = claims(&idp.url, ALICE, "oma_rest_nms.read");
        c["aud"] = aud;
        if c["aud"].is_null() {
            c.as_object_mut().unwrap().remove("aud");
        }
        assert_invalid_token(app.get_with(&url, &ec.sign(&c)).await, "wrong audience").await;
    }
    // One of several audiences is enough.
    let mut c = claims(&idp.url, ALICE, "oma_rest_nms.read");
    c["aud"] = json!(["other", AUD]);
    assert_eq!(app.get_with(&url, &ec.sign(&c)).await.status(), 200);
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |_| {}).await;
    let url = app.root_lookup(ALICE);
    // Signed by another key under the published kid.
    let impostor = es256("k1");
    let token = impostor.sign(&claims(&idp.url, ALICE, "oma_rest_nms.all_v1"));
    assert_invalid_token(app.get_with(&url, &token).await, "bad signature").await;
    // A genuine token whose payload was swapped for another subscriber's.
    let genuine = ec.sign(&claims(&idp.url, ALICE, "oma_rest_nms.all_v1"));
    let parts: Vec<&str> = genuine.split('.').collect();
    let forged_payload =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&idp.url, BOB, "oma_rest_nms.all_v1")).unwrap());
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_invalid_token(app.get_with(&app.root_lookup(BOB), &forged).await, "bad signature").await;
    // Junk in place of a token.
    for junk in ["x", "a.b.c", "a.b.c.d.e", ""] {
        let res = app.client.get(&url).header("Authorization", format!("Bearer {junk}")).send().await.unwrap();
        assert_invalid_token(res, "malformed token").await;
    }
}

#[tokio::test]
async fn an_unknown_kid_makes_the_server_fetch_the_rotated_keys() {
    let (old, new) = (es256("2026-01"), rs256("2026-02"));
    let idp = spawn_idp(&[&old]).await;
    let app = app_trusting(&idp, |_| {}).await;
    let url = app.root_lookup(ALICE);
    assert_eq!(app.get_with(&url, &old.sign(&claims(&idp.url, ALICE, "oma_rest_nms.read"))).await.status(), 200);
    let hits = idp.jwks_hits();
    let token = new.sign(&claims(&idp.url, ALICE, "oma_rest_nms.read"));
    assert_invalid_token(app.get_with(&url, &token).await, "unknown signing key 2026-02").await;
    assert_eq!(idp.jwks_hits(), hits + 1, "an unknown kid triggered a fetch");
    // The provider rotates: the server fetches again and accepts the new key; the old one
    // (still published) keeps working.
    idp.publish(&new);
    assert_eq!(app.get_with(&url, &token).await.status(), 200);
    assert_eq!(idp.jwks_hits(), hits + 2);
    assert_eq!(app.get_with(&url, &old.sign(&claims(&idp.url, ALICE, "oma_rest_nms.read"))).await.status(), 200);
    assert_eq!(idp.jwks_hits(), hits + 2, "known kids need no fetch");
}

#[tokio::test]
async fn unknown_kid_fetches_are_rate_limited_per_issuer() {
    let (old, new) = (es256("a"), es256("b"));
    let idp = spawn_idp(&[&old]).await;
    let app = app_trusting(&idp, |s| s.auth.bearer.min_refresh_interval_secs = 3600).await;
    let url = app.root_lookup(ALICE);
    assert_eq!(app.get_with(&url, &old.sign(&claims(&idp.url, ALICE, "oma_rest_nms.read"))).await.status(), 200);
    assert_eq!(idp.jwks_hits(), 1);
    idp.publish(&new);
    let token = new.sign(&claims(&idp.url, ALICE, "oma_rest_nms.read"));
    for _ in 0..5 {
        assert_invalid_token(app.get_with(&url, &token).await, "unknown signing key b").await;
    }
    assert_eq!(idp.jwks_hits(), 1, "a flood of unknown kids does not hammer the provider");
    assert_eq!(app.auth.bearer().unwrap().key_fetches(), 1);
}

#[tokio::test]
async fn key_sets_are_refreshed_on_schedule_and_withdrawn_keys_stop_working() {
    let (old, new) = (es256("old"), es256("new"));
    let idp = spawn_idp(&[&old, &new]).await;
    let app = app_trusting(&idp, |s| {
        s.auth.bearer.refresh_interval_secs = 1;
        s.auth.bearer.min_refresh_interval_secs = 0;
    })
    .await;
    let url = app.root_lookup(ALICE);
    let token = old.sign(&claims(&idp.url, ALICE, "oma_rest_nms.read"));
    assert_eq!(app.get_with(&url, &token).await.status(), 200);
    assert_eq!(idp.jwks_hits(), 1);
    // The provider withdraws the old key; once the set is due, a request (still served
    // with the keys at hand) has it fetched in the background.
    idp.state.keys.lock().unwrap().retain(|k| k["kid"] != "old");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.get_with(&url, &token).await.status(), 200);
    for _ in 0..50 {
        if idp.jwks_hits() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(idp.jwks_hits(), 2, "one scheduled fetch");
    // (The fetched set replaces the old one just after the provider has answered.)
    let mut res = app.get_with(&url, &token).await;
    for _ in 0..50 {
        if res.status() == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        res = app.get_with(&url, &token).await;
    }
    assert_invalid_token(res, "unknown signing key old").await;
    let fresh = new.sign(&claims(&idp.url, ALICE, "oma_rest_nms.read"));
    assert_eq!(app.get_with(&url, &fresh).await.status(), 200);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |_| {}).await;
    let url = app.root_lookup(ALICE);
    let c = claims(&idp.url, ALICE, "oma_rest_nms.all_v1");
    for alg in ["none", "None", "NONE"] {
        for sig in ["", "AAAA"] {
            let token = unsigned(&json!({"alg": alg, "typ": "JWT", "kid": "k1"}), &c, sig);
            assert_invalid_token(app.get_with(&url, &token).await, "algorithm refused: none").await;
        }
    }
}

#[tokio::test]
async fn hs256_forged_with_the_public_key_as_secret_is_refused() {
    let (rsa, ec) = (rs256("rsa-1"), es256("ec-1"));
    let idp = spawn_idp(&[&rsa, &ec]).await;
    // Another issuer is trusted with a shared secret; the forgery still fails, because HS
    // tokens are verified only with the secret of the issuer they name.
    let secret = "a-shared-secret-of-at-least-32-bytes!";
    let app = app_trusting(&idp, |s| {
        s.auth.bearer.issuers.push(IssuerSettings {
            issuer: "urn:example:pf-issuer".into(),
            shared_secret: secret.into(),
            ..Default::default()
        });
        // Twelve forgeries from one address would be throttled (see hardening.rs).
        s.limits.auth_failures.address_per_sec = 0.0;
    })
    .await;
    let url = app.root_lookup(ALICE);
    let c = claims(&idp.url, ALICE, "oma_rest_nms.all_v1");
    let public_forms = [
        rsa.public_pem.clone(),
        rsa.public_pem.trim().to_string(),
        serde_json::to_string(&rsa.jwk).unwrap(),
        ec.public_pem.clone(),
    ];
    for (i, public) in public_forms.iter().enumerate() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut h = Header::new(alg);
            h.kid = Some(if i < 3 { "rsa-1".into() } else { "ec-1".into() });
            let forged = jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(public.as_bytes())).unwrap();
            assert_invalid_token(app.get_with(&url, &forged).await, "algorithm refused: HS").await;
        }
    }
    // The shared-secret issuer's own HS256 tokens are fine ...
    let mut pf = claims("urn:example:pf-issuer", ALICE, "oma_rest_nms.read");
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &pf, &EncodingKey::from_secret(secret.as_bytes()))
        .unwrap();
    assert_eq!(app.get_with(&url, &token).await.status(), 200);
    // ... but not its tokens signed with anything else, nor with an asymmetric alg.
    pf["sub"] = json!(BOB);
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &pf, &EncodingKey::from_secret(b"guess")).unwrap();
    assert_invalid_token(app.get_with(&app.root_lookup(BOB), &token).await, "bad signature").await;
    let token = es256("x").sign(&pf);
    assert_invalid_token(app.get_with(&app.root_lookup(BOB), &token).await, "unknown signing key").await;
}

// ---------------------------------------------------------------------------------------
// Bearer: claims to principals, scopes and boxes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn each_operation_needs_its_scope_and_the_refusal_names_it() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |_| {}).await;
    let obj = app.create_object(json!({})).await;
    let base = app.base(ALICE);
    let all = ["oma_rest_nms.create", "oma_rest_nms.read", "oma_rest_nms.modify", "oma_rest_nms.subscription"];
    let cases: Vec<(Method, String, Option<Value>, &str)> = vec![
        (Method::POST, format!("{base}/objects"), Some(json!({"object": {}})), "oma_rest_nms.create"),
        (Method::GET, obj.clone(), None, "oma_rest_nms.read"),
        (Method::GET, app.root_lookup(ALICE), None, "oma_rest_nms.read"),
        (
            Method::POST,
            format!("{base}/objects/operations/search"),
            Some(json!({"selectionCriteria": {"maxEntries": 5}})),
            "oma_rest_nms.read",
        ),
        (Method::PUT, format!("{obj}/flags/%5CSeen"), None, "oma_rest_nms.modify"),
        (
            Method::POST,
            format!("{base}/folders"),
            Some(json!({"folder": {"parentFolderPath": "/", "name": "x"}})),
            "oma_rest_nms.modify",
        ),
        (Method::DELETE, obj.clone(), None, "oma_rest_nms.modify"),
        (Method::GET, format!("{base}/subscriptions"), None, "oma_rest_nms.subscription"),
    ];
    for (method, url, body, needed) in &cases {
        // Every NMS scope but the needed one (plus ones the server does not know).
        let granted: Vec<&str> = all.iter().copied().filter(|s| s != needed).chain(["openid", "profile"]).collect();
        for scope in [json!(granted.join(" ")), json!(granted)] {
            let mut c = claims(&idp.url, ALICE, "");
            c["scope"] = scope;
            let mut req = app.with_token(method.clone(), url, &ec.sign(&c));
            if let Some(b) = body {
                req = req.json(b);
            }
            assert_forbidden(req.send().await.unwrap(), &format!("missing scope {needed}")).await;
        }
    }
    // With the scope (in the `scp` claim this time), each succeeds.
    for (method, url, body, needed) in &cases {
        let mut c = claims(&idp.url, ALICE, "");
        c.as_object_mut().unwrap().remove("scope");
        c["scp"] = json!([needed]);
        let mut req = app.with_token(method.clone(), url, &ec.sign(&c));
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.unwrap();
        assert!(res.status().is_success(), "{method} {url}: {}", res.status());
    }
    // No scope claim at all: nothing (default_scopes is empty).
    let mut c = claims(&idp.url, ALICE, "");
    c.as_object_mut().unwrap().remove("scope");
    assert_forbidden(app.get_with(&app.root_lookup(ALICE), &ec.sign(&c)).await, "missing scope oma_rest_nms.read")
        .await;
}

#[tokio::test]
async fn id_tokens_without_scopes_get_the_default_scopes() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |s| s.auth.bearer.default_scopes = vec!["oma_rest_nms.read".into()]).await;
    let mut c = claims(&idp.url, ALICE, "");
    c.as_object_mut().unwrap().remove("scope");
    assert_eq!(app.get_with(&app.root_lookup(ALICE), &ec.sign(&c)).await.status(), 200);
    assert_forbidden(app.deposit_with(ALICE, &ec.sign(&c)).await, "missing scope oma_rest_nms.create").await;
}

#[tokio::test]
async fn a_subscriber_token_cannot_reach_another_box() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |_| {}).await;
    let bob_obj = {
        let res = app
            .req_as("bob", Method::POST, &format!("{}/objects", app.base(BOB)))
            .json(&json!({"object": {}}))
            .send()
            .await
            .unwrap();
        res.json::<Value>().await.unwrap()["reference"]["resourceURL"].as_str().unwrap().to_string()
    };
    let token = ec.sign(&claims(&idp.url, ALICE, "oma_rest_nms.all_v1"));
    for (m, u) in [
        (Method::GET, app.root_lookup(BOB)),
        (Method::GET, bob_obj.clone()),
        (Method::DELETE, bob_obj.clone()),
        (Method::POST, format!("{}/objects", app.base(BOB))),
    ] {
        let res = app.with_token(m, &u, &token).json(&json!({"object": {}})).send().await.unwrap();
        assert_forbidden(res, &format!("no access to box {BOB}")).await;
    }
    // Nor by naming bob as its notification channel user.
    let res = app
        .with_token(Method::POST, &format!("{}/notificationchannel/v1/{}/channels", app.url, enc(BOB)), &token)
        .json(&json!({"notificationChannel": {"channelType": "LongPolling", "channelData": {}}}))
        .send()
        .await
        .unwrap();
    assert_forbidden(res, "no access").await;
    assert_eq!(app.req_as("bob", Method::GET, &bob_obj).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_service_principal_deposits_into_any_box() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |_| {}).await;
    // Recognised by client id (client credentials) and by role.
    let by_client = json!({
        "iss": idp.url, "aud": AUD, "sub": "cpm-pf", "azp": "cpm-pf",
        "scope": "oma_rest_nms.create oma_rest_nms.read", "exp": now() + 300,
    });
    let mut by_role = claims(&idp.url, "6a1f0c3e-5d4e-4b8a-9d1e-000000000001", "oma_rest_nms.all_v1");
    by_role["roles"] = json!(["operator", "cpm-participating-function"]);
    for c in [by_client, by_role] {
        let token = ec.sign(&c);
        for addr in [ALICE, BOB] {
            let res = app
                .with_token(Method::POST, &format!("{}/objects", app.base(addr)), &token)
                .json(&json!({"object": {"parentFolderPath": "/Default"}}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201, "{addr}");
        }
        // acr:auth means nothing for a principal without a box.
        let res =
            app.get_with(&format!("{}/nms/v1/base/acr%3Aauth/folders/operations/pathToId", app.url), &token).await;
        assert_error(res, 400, "SVC0002").await;
        // Service principals do not create boxes: an unknown address stays unknown.
        let res = app.get_with(&app.root_lookup("tel:+19999999999"), &token).await;
        assert_error(res, 404, "SVC0004").await;
    }
    assert!(app.nms.find_box("base", "tel:+19999999999").await.unwrap().is_none());
    // Alice sees both deposits under /Default.
    let v: Value = app
        .get(&format!("{}/folders/operations/pathToId?path=%2FDefault", app.base(ALICE)))
        .await
        .json()
        .await
        .unwrap();
    assert!(v["reference"]["resourceURL"].is_string());
}

#[tokio::test]
async fn acr_auth_names_the_bearer_subscribers_box() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |_| {}).await;
    let obj = app.create_object(json!({})).await;
    let id = last_segment(&obj);
    // By `sub` as a tel URI with visual separators, and by a verified `phone_number` claim
    // beside a subject that is no address.
    let mut by_phone = claims(&idp.url, "248289761001", "oma_rest_nms.read");
    by_phone["phone_number"] = json!("+1 (212) 555-1212");
    by_phone["phone_number_verified"] = json!(true);
    for c in [claims(&idp.url, "tel:+1-212-555-1212", "oma_rest_nms.read"), by_phone] {
        let res = app.get_with(&format!("{}/nms/v1/base/acr%3Aauth/objects/{id}", app.url), &ec.sign(&c)).await;
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["object"]["resourceURL"], obj, "answers name the real box");
    }
    // A token naming no address, or an unverified phone number, has no acr:auth box.
    let mut unverified = claims(&idp.url, "248289761001", "oma_rest_nms.read");
    unverified["phone_number"] = json!("+1 (212) 555-1212");
    let res = app.get_with(&format!("{}/nms/v1/base/acr%3Aauth/objects/{id}", app.url), &ec.sign(&unverified)).await;
    assert_error(res, 400, "SVC0002").await;
    let c = claims(&idp.url, "248289761001", "oma_rest_nms.read");
    let res = app.get_with(&format!("{}/nms/v1/base/acr%3Aauth/objects/{id}", app.url), &ec.sign(&c)).await;
    assert_error(res, 400, "SVC0002").await;
    // The notification channel API takes acr:auth too.
    let res = app
        .with_token(
            Method::POST,
            &format!("{}/notificationchannel/v1/acr%3Aauth/channels", app.url),
            &ec.sign(&claims(&idp.url, ALICE, "oma_rest_nms.all_v1")),
        )
        .json(&json!({"notificationChannel": {"channelType": "LongPolling", "channelData": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn a_bearer_subscribers_box_is_provisioned_on_first_access() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let carol = "tel:+14155550100";
    let app = app_trusting(&idp, |_| {}).await;
    assert!(app.nms.find_box("base", carol).await.unwrap().is_none());
    let token = ec.sign(&claims(&idp.url, carol, "oma_rest_nms.all_v1"));
    let res = app.get_with(&app.root_lookup(carol), &token).await;
    assert_eq!(res.status(), 200);
    assert!(app.nms.find_box("base", carol).await.unwrap().is_some());
    // Not so when provisioning is off.
    let app = app_trusting(&idp, |s| s.auth.bearer.provision_boxes = false).await;
    let res = app.get_with(&app.root_lookup(carol), &token).await;
    assert_error(res, 404, "SVC0004").await;
}

#[tokio::test]
async fn static_keys_work_offline() {
    let (ec, ed, rsa) = (es256("ec-static"), ed25519("ed-static"), rs256("rsa-static"));
    let dir = tempfile::tempdir().unwrap();
    let rsa_file = dir.path().join("rsa.pub.pem");
    std::fs::write(&rsa_file, &rsa.public_pem).unwrap();
    // An https issuer that does not exist: with static keys nothing is fetched.
    let issuer = "https://idp.invalid/realms/cpm";
    let (ec_pem, ed_jwk) = (ec.public_pem.clone(), ed.jwk.clone());
    let app = spawn_app_with(move |s| {
        s.auth.bearer.audiences = vec![AUD.into()];
        s.auth.bearer.issuers = vec![IssuerSettings {
            issuer: issuer.into(),
            keys: vec![
                StaticKeySettings { kid: "ec-static".into(), pem: ec_pem, ..Default::default() },
                StaticKeySettings { jwk: Some(ed_jwk), ..Default::default() },
                StaticKeySettings {
                    kid: "rsa-static".into(),
                    alg: "RS256".into(),
                    pem_file: rsa_file.to_str().unwrap().into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }];
    })
    .await;
    for s in [&ec, &ed, &rsa] {
        let res = app.get_with(&app.root_lookup(ALICE), &s.sign(&claims(issuer, ALICE, "oma_rest_nms.read"))).await;
        assert_eq!(res.status(), 200, "{:?}", s.alg);
    }
    let stranger = es256("elsewhere");
    let res = app.get_with(&app.root_lookup(ALICE), &stranger.sign(&claims(issuer, ALICE, "oma_rest_nms.read"))).await;
    assert_invalid_token(res, "unknown signing key elsewhere").await;
    assert_eq!(app.auth.bearer().unwrap().key_fetches(), 0);
}

// ---------------------------------------------------------------------------------------
// Digest (RFC 7616) and the challenge set
// ---------------------------------------------------------------------------------------

/// The parameters of a `Digest` challenge.
fn params(challenge: &str) -> std::collections::HashMap<String, String> {
    let rest = challenge.strip_prefix("Digest ").unwrap();
    let mut out = std::collections::HashMap::new();
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=').unwrap();
        out.insert(k.to_string(), v.trim_matches('"').to_string());
    }
    out
}

fn hex_hash(alg: &str, data: &str) -> String {
    use md5::Digest as _;
    use sha2::Digest as _;
    match alg {
        "SHA-256" => hex::encode(sha2::Sha256::digest(data.as_bytes())),
        "MD5" => hex::encode(md5::Md5::digest(data.as_bytes())),
        other => panic!("{other}"),
    }
}

/// The `Authorization` value answering `challenge` for GET `uri` (RFC 7616 §3.4).
pub(crate) fn digest_answer(challenge: &str, user: &str, password: &str, method: &str, uri: &str, nc: u32) -> String {
    let p = params(challenge);
    let alg = p["algorithm"].as_str();
    let cnonce = "0a4f113b";
    let nc = format!("{nc:08x}");
    let ha1 = hex_hash(alg, &format!("{user}:{}:{password}", p["realm"]));
    let ha2 = hex_hash(alg, &format!("{method}:{uri}"));
    let response = hex_hash(alg, &format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", p["nonce"]));
    format!(
        "Digest username=\"{user}\", realm=\"{}\", uri=\"{uri}\", algorithm={alg}, nonce=\"{}\", nc={nc}, \
         cnonce=\"{cnonce}\", qop=auth, response=\"{response}\", opaque=\"{}\"",
        p["realm"], p["nonce"], p["opaque"]
    )
}

/// The Digest challenge for `alg` among a 401's challenges.
pub(crate) fn digest_challenge(res: &Response, alg: &str) -> String {
    challenges(res)
        .into_iter()
        .find(|c| c.starts_with("Digest ") && c.contains(&format!("algorithm={alg},")))
        .unwrap_or_else(|| panic!("no Digest {alg} challenge in {:?}", challenges(res)))
}

/// The server with Digest on and an account `carol` (box `tel:+14155550100`) whose Digest
/// values are stored.
pub(crate) async fn digest_app(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let app = spawn_app_with(move |s| {
        s.auth.digest.enabled = true;
        tweak(s);
    })
    .await;
    let boxes = vec![("base".to_string(), "tel:+14155550100".to_string())];
    app.nms.provision_box("base", "tel:+14155550100").await.unwrap();
    app.nms
        .store()
        .create_account("carol", &cpm_nms::auth::hash_password("s3cret").unwrap(), false, &boxes)
        .await
        .unwrap();
    let algs = [cpm_nms::auth::digest::Algorithm::Sha256, cpm_nms::auth::digest::Algorithm::Md5];
    let secrets = cpm_nms::auth::digest::secrets("carol", "cpm-nms", "s3cret", &algs);
    assert!(app.nms.store().set_account_digest("carol", Some(&secrets)).await.unwrap());
    app
}

#[tokio::test]
async fn the_challenge_offers_every_enabled_scheme_basic_first() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |s| s.auth.digest.enabled = true).await;
    let res = app.client.get(app.root_lookup(ALICE)).send().await.unwrap();
    let ch = challenges(&res);
    assert_eq!(ch.len(), 4, "{ch:?}");
    assert!(ch[0].starts_with("Basic realm=\"cpm-nms\""), "clients reading only the first get Basic");
    assert!(ch[1].starts_with("Digest realm=\"cpm-nms\", qop=\"auth\", algorithm=SHA-256,"), "{}", ch[1]);
    assert!(ch[2].starts_with("Digest realm=\"cpm-nms\", qop=\"auth\", algorithm=MD5,"), "{}", ch[2]);
    assert_eq!(ch[3], "Bearer realm=\"cpm-nms\"", "no error code without a token (RFC 6750 3.1)");
    assert!(!ch[1].contains("stale"));
    assert_error(res, 401, "POL0001").await;
    // Basic still round-trips beside the others.
    assert_eq!(app.get(&app.root_lookup(ALICE)).await.status(), 200);
    // Basic off: Digest comes first.
    let app = app_trusting(&idp, |s| {
        s.auth.basic = false;
        s.auth.digest.enabled = true;
        s.auth.digest.algorithms = vec!["SHA-256".into()];
    })
    .await;
    let res = app.client.get(app.root_lookup(ALICE)).send().await.unwrap();
    let ch = challenges(&res);
    assert_eq!(ch.len(), 2, "{ch:?}");
    assert!(ch[0].starts_with("Digest ") && ch[1].starts_with("Bearer "));
    assert_error(res, 401, "POL0001").await;
    let res = app.get(&app.root_lookup(ALICE)).await;
    assert_eq!(challenges(&res).len(), 2);
    let exc = assert_error(res, 401, "POL0001").await;
    assert!(exc["variables"][0].as_str().unwrap().contains("unsupported authorization scheme Basic"));
}

#[tokio::test]
async fn digest_sha256_and_md5_round_trip() {
    let app = digest_app(|_| {}).await;
    let carol = "tel:+14155550100";
    let url = app.root_lookup(carol);
    let uri = url.strip_prefix(&app.url).unwrap().to_string();
    for alg in ["SHA-256", "MD5"] {
        let res = app.client.get(&url).send().await.unwrap();
        let challenge = digest_challenge(&res, alg);
        assert_error(res, 401, "POL0001").await;
        for nc in 1..=3 {
            let auth = digest_answer(&challenge, "carol", "s3cret", "GET", &uri, nc);
            let res = app.client.get(&url).header("Authorization", auth).send().await.unwrap();
            assert_eq!(res.status(), 200, "{alg} nc={nc}");
        }
        // A write too (the method is part of the response).
        let objects = format!("{}/objects", app.base(carol));
        let auth = digest_answer(&challenge, "carol", "s3cret", "POST", objects.strip_prefix(&app.url).unwrap(), 9);
        let res =
            app.client.post(&objects).header("Authorization", auth).json(&json!({"object": {}})).send().await.unwrap();
        assert_eq!(res.status(), 201, "{alg}");
    }
    // carol reaches only her own box.
    let res = app.client.get(app.root_lookup(ALICE)).send().await.unwrap();
    let challenge = digest_challenge(&res, "SHA-256");
    let other_uri = app.root_lookup(ALICE).strip_prefix(&app.url).unwrap().to_string();
    let auth = digest_answer(&challenge, "carol", "s3cret", "GET", &other_uri, 1);
    let res = app.client.get(app.root_lookup(ALICE)).header("Authorization", auth).send().await.unwrap();
    assert_forbidden(res, "no access to box").await;
}

#[tokio::test]
async fn digest_refusals() {
    let app = digest_app(|_| {}).await;
    let url = app.root_lookup("tel:+14155550100");
    let uri = url.strip_prefix(&app.url).unwrap().to_string();
    let res = app.client.get(&url).send().await.unwrap();
    let challenge = digest_challenge(&res, "SHA-256");
    let send = |auth: String| app.client.get(&url).header("Authorization", auth).send();
    let refused = |res: Response, what: &'static str, stale: bool| async move {
        let ch = challenges(&res);
        assert!(ch[0].starts_with("Basic "), "{ch:?}");
        let digests: Vec<&String> = ch.iter().filter(|c| c.starts_with("Digest ")).collect();
        assert_eq!(digests.len(), 2, "{ch:?}");
        for d in digests {
            assert_eq!(d.ends_with(", stale=true"), stale, "{d}");
        }
        let exc = assert_error(res, 401, "POL0001").await;
        assert!(exc["variables"][0].as_str().unwrap().contains(what), "wanted {what}: {exc}");
    };
    // Wrong password, unknown user, an account without Digest values (alice).
    for (user, pw) in [("carol", "wrong"), ("nobody", "s3cret"), ("alice", PW)] {
        let res = send(digest_answer(&challenge, user, pw, "GET", &uri, 1)).await.unwrap();
        refused(res, "invalid user name or password", false).await;
    }
    // The response computed for another URI or method.
    let res = send(digest_answer(&challenge, "carol", "s3cret", "GET", "/elsewhere", 1)).await.unwrap();
    refused(res, "uri does not match", false).await;
    let res = send(digest_answer(&challenge, "carol", "s3cret", "DELETE", &uri, 1)).await.unwrap();
    refused(res, "invalid user name or password", false).await;
    // A nonce the server never made.
    let forged = challenge.replace(&params(&challenge)["nonce"], "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let res = send(digest_answer(&forged, "carol", "s3cret", "GET", &uri, 1)).await.unwrap();
    refused(res, "invalid Digest nonce", false).await;
    // A replayed request (same nonce, nc and cnonce) is refused as stale.
    let auth = digest_answer(&challenge, "carol", "s3cret", "GET", &uri, 7);
    assert_eq!(send(auth.clone()).await.unwrap().status(), 200);
    refused(send(auth).await.unwrap(), "nonce count reused", true).await;
    // nc zero, qop missing, junk.
    let zero = digest_answer(&challenge, "carol", "s3cret", "GET", &uri, 0);
    refused(send(zero).await.unwrap(), "malformed Digest nc", false).await;
    let no_qop = digest_answer(&challenge, "carol", "s3cret", "GET", &uri, 1).replace(", qop=auth", "");
    refused(send(no_qop).await.unwrap(), "qop=auth", false).await;
    refused(send("Digest \"".into()).await.unwrap(), "malformed Digest credentials", false).await;
    // SHA-512-256 is not offered.
    let other = digest_answer(&challenge, "carol", "s3cret", "GET", &uri, 1)
        .replace("algorithm=SHA-256", "algorithm=SHA-512-256");
    refused(send(other).await.unwrap(), "unsupported Digest algorithm", false).await;
}

#[tokio::test]
async fn a_stale_digest_nonce_is_answered_with_stale_true() {
    let app = digest_app(|s| s.auth.digest.nonce_ttl_secs = 1).await;
    let url = app.root_lookup("tel:+14155550100");
    let uri = url.strip_prefix(&app.url).unwrap().to_string();
    let res = app.client.get(&url).send().await.unwrap();
    let challenge = digest_challenge(&res, "MD5");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let res = app
        .client
        .get(&url)
        .header("Authorization", digest_answer(&challenge, "carol", "s3cret", "GET", &uri, 1))
        .send()
        .await
        .unwrap();
    let fresh = digest_challenge(&res, "MD5");
    assert!(fresh.ends_with(", stale=true"), "{fresh}");
    assert!(challenges(&res)[0].starts_with("Basic "));
    let exc = assert_error(res, 401, "POL0001").await;
    assert!(exc["variables"][0].as_str().unwrap().contains("stale Digest nonce"));
    // The client retries with the new nonce, without asking the user again.
    let res = app
        .client
        .get(&url)
        .header("Authorization", digest_answer(&fresh, "carol", "s3cret", "GET", &uri, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A wrong password with a stale nonce is not told stale=true.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let res = app
        .client
        .get(&url)
        .header("Authorization", digest_answer(&fresh, "carol", "nope", "GET", &uri, 2))
        .send()
        .await
        .unwrap();
    assert!(!digest_challenge(&res, "MD5").contains("stale"));
    assert_error(res, 401, "POL0001").await;
}

#[tokio::test]
async fn account_add_stores_digest_values_when_digest_is_on() {
    let app = spawn_app_with(|s| s.auth.digest.enabled = true).await;
    let run = |name: &str, extra: &[&str], digest_on: bool| {
        let mut cmd = app.cli(&["account", "add", "--name", name]);
        cmd.args(["--box", "tel:+14155550101", "--password", "pa ss"]).args(extra);
        if digest_on {
            cmd.env("NMS__AUTH__DIGEST__ENABLED", "true");
        } else {
            cmd.env_remove("NMS__AUTH__DIGEST__ENABLED");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run("dave", &[], true).contains("Digest enabled"));
    assert!(!run("erin", &[], false).contains("Digest"), "Digest off: no H(A1) stored");
    assert!(run("frank", &["--digest"], false).contains("Digest enabled"));
    assert!(!run("grace", &["--no-digest"], true).contains("Digest"));
    let url = app.root_lookup("tel:+14155550101");
    let uri = url.strip_prefix(&app.url).unwrap().to_string();
    for (user, ok) in [("dave", true), ("erin", false), ("frank", true), ("grace", false)] {
        for alg in ["SHA-256", "MD5"] {
            let res = app.client.get(&url).send().await.unwrap();
            let challenge = digest_challenge(&res, alg);
            let auth = digest_answer(&challenge, user, "pa ss", "GET", &uri, 1);
            let res = app.client.get(&url).header("Authorization", auth).send().await.unwrap();
            if ok {
                assert_eq!(res.status(), 200, "{user} {alg}");
            } else {
                assert!(challenges(&res)[0].starts_with("Basic "));
                digest_challenge(&res, alg);
                let exc = assert_error(res, 401, "POL0001").await;
                assert!(exc["variables"][0].as_str().unwrap().contains("invalid user name or password"));
            }
        }
        // Basic works for every one of them.
        let res = app.client.get(&url).basic_auth(user, Some("pa ss")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{user} Basic");
    }
}

/// Every route of the box API, from the operation table (so none is forgotten): a concrete
/// URL for each, with placeholder ids (authorisation comes before any lookup).
fn every_route(app: &TestApp, addr: &str) -> Vec<(cpm_nms::auth::Operation, Method, String)> {
    cpm_nms::auth::Operation::ALL
        .iter()
        .map(|op| {
            let path = op
                .pattern()
                .replace("{store}", "base")
                .replace("{box}", &enc(addr))
                .replace("{userId}", &enc(addr))
                .replace("{objectId}", "o1")
                .replace("{folderId}", "f1")
                .replace("{flagName}", "%5CSeen")
                .replace("{partId}", "1")
                .replace("{subscriptionId}", "s1")
                .replace("{channelId}", "c1");
            (*op, Method::from_bytes(op.method().as_bytes()).unwrap(), format!("{}{path}", app.url))
        })
        .collect()
}

#[tokio::test]
async fn every_route_refuses_another_box_and_a_missing_scope() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |_| {}).await;
    let all_scopes = ec.sign(&claims(&idp.url, ALICE, "oma_rest_nms.all_v1"));
    let scopes = ["oma_rest_nms.create", "oma_rest_nms.read", "oma_rest_nms.modify", "oma_rest_nms.subscription"];
    for (op, method, url) in every_route(&app, BOB) {
        let res = app.with_token(method.clone(), &url, &all_scopes).json(&json!({})).send().await.unwrap();
        let refused = match op.family() {
            cpm_nms::auth::Family::Box => format!("no access to box {BOB}"),
            cpm_nms::auth::Family::Channel => format!("no access to {BOB}"),
        };
        assert_forbidden(res, &refused).await;
    }
    for (op, method, url) in every_route(&app, ALICE) {
        let needed = op.scope().as_str();
        let others: Vec<&str> = scopes.iter().copied().filter(|s| *s != needed).collect();
        let token = ec.sign(&claims(&idp.url, ALICE, &others.join(" ")));
        let res = app.with_token(method.clone(), &url, &token).json(&json!({})).send().await.unwrap();
        assert_forbidden(res, &format!("missing scope {needed}")).await;
    }
    // Basic subscribers are held to the same decision on every route.
    for (_, method, url) in every_route(&app, BOB) {
        let res = app.req(method, &url).json(&json!({})).send().await.unwrap();
        assert_eq!(res.status(), 403, "{url}");
    }
}

#[tokio::test]
async fn the_conformance_runner_passes_with_a_bearer_token() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |_| {}).await;
    let mut c = claims(&idp.url, ALICE, "oma_rest_nms.all_v1");
    c["exp"] = json!(now() + 3600);
    let opts = nms_conformance::Options {
        base_url: app.url.clone(),
        user: "alice".into(),
        password: "not-used".into(),
        bearer: Some(ec.sign(&c)),
        box_id: ALICE.into(),
        store: "base".into(),
        timeout: std::time::Duration::from_secs(60),
        channel_root: None,
        format: Default::default(),
    };
    let cases = nms_conformance::select(&[]);
    let report = nms_conformance::run(&opts, &cases, std::future::pending(), |_| {}).await;
    assert_eq!(report.setup_error, None);
    let failed: Vec<String> = report.outcomes.iter().filter(|o| o.result.is_err()).map(|o| o.line()).collect();
    assert!(failed.is_empty(), "failed items with a bearer token:\n{}", failed.join("\n"));
}

#[tokio::test]
async fn notification_channels_need_the_subscription_scope() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |_| {}).await;
    let channels = format!("{}/notificationchannel/v1/{}/channels", app.url, enc(ALICE));
    let body = json!({"notificationChannel": {"channelType": "LongPolling", "channelData": {}}});
    let read_only = ec.sign(&claims(&idp.url, ALICE, "oma_rest_nms.read"));
    let res = app.with_token(Method::POST, &channels, &read_only).json(&body).send().await.unwrap();
    assert_forbidden(res, "missing scope oma_rest_nms.subscription").await;
    let res = app.with_token(Method::GET, &channels, &read_only).send().await.unwrap();
    assert_forbidden(res, "missing scope oma_rest_nms.subscription").await;
    let subscriber = ec.sign(&claims(&idp.url, ALICE, "oma_rest_nms.subscription"));
    let res = app.with_token(Method::POST, &channels, &subscriber).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn service_principals_act_in_their_stores_only() {
    let ec = es256("k1");
    let idp = spawn_idp(&[&ec]).await;
    let app = app_trusting(&idp, |s| {
        s.nms.stores = vec!["base".into(), "other".into()];
        s.auth.bearer.stores = vec!["base".into()];
    })
    .await;
    app.nms.provision_box("other", BOB).await.unwrap();
    let mut c = claims(&idp.url, "6a1f0c3e-5d4e-4b8a-9d1e-000000000002", "oma_rest_nms.all_v1");
    c["roles"] = json!(["cpm-participating-function"]);
    let token = ec.sign(&c);
    let deposit = |store: &str| format!("{}/nms/v1/{store}/{}/objects", app.url, enc(BOB));
    let res = app.with_token(Method::POST, &deposit("base"), &token).json(&json!({"object": {}})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let res =
        app.with_token(Method::POST, &deposit("other"), &token).json(&json!({"object": {}})).send().await.unwrap();
    assert_forbidden(res, &format!("no access to box {BOB}")).await;
}
