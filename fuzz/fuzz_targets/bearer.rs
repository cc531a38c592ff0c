//! Bearer tokens (`Authorization: Bearer ...`): JWS compact tokens verified by a verifier
//! configured with fixed keys (an HS256 shared secret, a static ES256 and an Ed25519 public
//! key; nothing is fetched), and the claims of verified tokens mapped onto principals.
//!
//! The first byte picks the mode. Raw: the rest is the token as a client sent it, so every
//! refusal on the way to the signature check (shape, algorithm, issuer, key) and the
//! signature failures themselves are reached. Signed: the rest is a JOSE header and a claims
//! set (split at the first NUL byte) that the target signs with the shared secret, so the
//! claim checks and the mapping to a principal are reached.
//!
//! What must hold: a token is accepted only with a right signature, a trusted issuer, an
//! accepted audience and an expiry; a principal's addresses are normalised; refusals
//! describe themselves in words safe for a header.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cpm_nms::auth::bearer::{BearerVerifier, TokenError, normalise_address};
use cpm_nms::auth::{Principal, Scope};
use cpm_nms::config::{BearerSettings, IssuerSettings, StaticKeySettings};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::{Sha256, Sha384, Sha512};

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "nms";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const EC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEW7D9RfG/lUfrsg8+lVbfaRRkBkoo
AMGk15+ewUdZDTJfPmVCE67z416gkuCqCfg/HYJAX5TITE7w7rL/OqJJYQ==
-----END PUBLIC KEY-----";
const ED_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAhvBhGTJW859Z3uywsW0o17dR+Rg4Jq14Qc5JrpI0G5s=
-----END PUBLIC KEY-----";

struct Fixture {
    rt: tokio::runtime::Runtime,
    verifier: BearerVerifier,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = |kid: &str, alg: &str, pem: &str| StaticKeySettings {
            kid: kid.into(),
            alg: alg.into(),
            pem: pem.into(),
            ..Default::default()
        };
        let settings = BearerSettings {
            issuers: vec![IssuerSettings {
                issuer: ISSUER.into(),
                shared_secret: String::from_utf8_lossy(SECRET).into_owned(),
                keys: vec![key("ec-1", "ES256", EC_KEY), key("", "", ED_KEY)],
                ..Default::default()
            }],
            audiences: vec![AUDIENCE.into()],
            service_claim: "roles".into(),
            service_values: vec!["cpm-pf".into()],
            service_clients: vec!["pf-client".into()],
            ..Default::default()
        };
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        let verifier = match BearerVerifier::new(&settings, &["base".into()]) {
            Ok(Some(v)) => v,
            other => panic!("verifier: {:?}", other.err()),
        };
        Fixture { rt, verifier }
    })
}

/// The HMAC of `input` for an `HS*` algorithm name (HS256 for any other).
fn hmac(alg: &str, input: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(input: &[u8]) -> Vec<u8> {
        let mut m = <M as Mac>::new_from_slice(SECRET).unwrap_or_else(|_| unreachable!());
        m.update(input);
        m.finalize().into_bytes().to_vec()
    }
    match alg {
        "HS384" => run::<Hmac<Sha384>>(input),
        "HS512" => run::<Hmac<Sha512>>(input),
        _ => run::<Hmac<Sha256>>(input),
    }
}

fn json_part(part: &str) -> Option<serde_json::Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// What must hold of an accepted token and its principal.
fn accepted(token: &str, p: &Principal) {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else { panic!("accepted a token of {} parts", parts.len()) };
    let alg = json_part(header).and_then(|h| h.get("alg")?.as_str().map(String::from)).unwrap_or_default();
    assert!(alg.starts_with("HS"), "accepted {alg} though no token here is signed by an asymmetric key");
    let expected = hmac(&alg, format!("{header}.{payload}").as_bytes());
    let got = URL_SAFE_NO_PAD.decode(signature.trim_end_matches('=')).unwrap_or_default();
    assert_eq!(got, expected, "accepted a token with a wrong signature");
    let Some(claims) = json_part(payload) else { panic!("accepted claims that are not a JSON object") };
    assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
    assert!(strings(claims.get("aud")).contains(&AUDIENCE), "accepted audience {:?}", claims.get("aud"));
    assert!(claims.get("exp").is_some_and(Value::is_number), "accepted without a numeric exp");
    assert!(p.name.starts_with(&format!("bearer:{ISSUER}#")) && p.name.len() > ISSUER.len() + 8, "{}", p.name);
    for (store, address) in &p.boxes {
        assert_eq!(store, "base");
        assert_eq!(normalise_address(address).as_deref(), Some(address.as_str()), "not normalised");
    }
    let mut scopes: Vec<Scope> = p.scopes.clone();
    scopes.dedup();
    assert_eq!(scopes.len(), p.scopes.len(), "repeated scopes {:?}", p.scopes);
    assert!(!(p.is_service && p.provision_boxes));
}

fn refused(e: &TokenError) {
    let d = e.description();
    assert!(d.len() <= 200 && d.chars().all(|c| (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\'), "{d:?}");
}

fn check(f: &Fixture, token: &str) {
    match f.rt.block_on(f.verifier.verify(token)) {
        Ok(p) => accepted(token, &p),
        Err(e) => refused(&e),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let f = fixture();
    if mode.is_multiple_of(2) {
        if let Ok(token) = std::str::from_utf8(rest) {
            check(f, token);
        }
        return;
    }
    let (header, claims) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b"{}"[..]),
    };
    let alg = serde_json::from_slice::<Value>(header)
        .ok()
        .and_then(|h| h.get("alg")?.as_str().map(String::from))
        .unwrap_or_default();
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let signature = URL_SAFE_NO_PAD.encode(hmac(&alg, signing_input.as_bytes()));
    check(f, &format!("{signing_input}.{signature}"));
});
