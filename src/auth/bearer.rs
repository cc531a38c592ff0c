//! Bearer tokens: signed JWTs (OIDC ID tokens or JWT access tokens) from trusted issuers.
//!
//! The CPM binding (5.2, 6.1, 7.1) has every call carry a token that must be valid in time
//! and signed by a trusted authority. Verification runs in this order, and the first failure
//! is what the client is told (`WWW-Authenticate: Bearer error="invalid_token",
//! error_description="..."` and the same words in the OMA body):
//!
//! 1. Shape: three base64url parts (JWS compact), a JSON header and payload, at most
//!    `max_token_bytes`. No `crit` header. Keys named in the token (`jku`, `x5u`, `jwk`)
//!    are never fetched or used.
//! 2. Algorithm: `none` is always refused; an asymmetric algorithm must be one of
//!    `auth.bearer.algorithms`; an `HS*` algorithm only for an issuer with a
//!    `shared_secret`, and then only that secret verifies it. An HS token never reaches a
//!    public key, so the classic forgery (HS256 with the public key as the secret) fails.
//! 3. Issuer: the (not yet verified) `iss` picks the trusted issuer, whose keys alone may
//!    verify the token; an unknown `iss` is a wrong issuer.
//! 4. Key: by `kid` among the issuer's static and fetched keys (of the algorithm's key type).
//!    An unknown `kid` makes the server fetch the issuer's key set again, at most once per
//!    `min_refresh_interval_secs`; key sets are also refetched every `refresh_interval_secs`.
//!    A `kid` still unknown is the issuer's verdict when the set is current (fetched again
//!    for this token, or within `min_refresh_interval_secs`): [`TokenError::UnknownKey`],
//!    a forgery; otherwise the provider could not be asked ([`TokenError::KeysUnavailable`]).
//! 5. Signature, then `exp` (required), `nbf`, `iat` (not in the future) with
//!    `leeway_secs`, `iss`, and `aud` (required; one of the configured audiences).
//!
//! Claims then become a [`Principal`]: addresses from `address_claims` (normalised, see
//! [`normalise_address`]) are its boxes in each bearer store; scopes from `scope_claims`;
//! a service principal (CPM Participating Function) is recognised by `service_claim` /
//! `service_values` or by its client id (`azp`/`client_id`) in `service_clients`.
//!
//! Key sets come from OIDC discovery (`openidconnect`, which fetches the discovery
//! document and its `jwks_uri`) or a configured JWKS URL, over HTTPS (plain HTTP only to
//! loopback addresses), without redirects, with a time and size limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::Value;

use super::introspection::Endpoint;
use super::{Principal, Scope};
use crate::config::{BearerSettings, IssuerSettings, StaticKeySettings};
use crate::error::{Error, Result};

/// Why a bearer token was refused; [`TokenError::description`] is what the client reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not a well-formed signed JWT (the detail says what is wrong).
    Malformed(String),
    /// `none`, an algorithm not accepted, or HS* without a shared-secret issuer.
    AlgorithmRefused(String),
    /// `iss` is missing or not a trusted issuer.
    WrongIssuer,
    /// `aud` is missing or names none of the accepted audiences.
    WrongAudience,
    /// `exp` has passed.
    Expired,
    /// `nbf` (or `iat`) lies in the future.
    NotYetValid,
    /// No key of the issuer matches the token's `kid`, in a key set as fresh as the server
    /// may have it (static keys, or fetched again for this token or within
    /// `min_refresh_interval_secs`): the issuer does not publish that key.
    UnknownKey(String),
    /// No key of the issuer matches the token's `kid`, and its key set could not be brought
    /// up to date (the provider was not reached within `min_refresh_interval_secs`): the key
    /// may be one it has just begun to use.
    KeysUnavailable(String),
    /// The signature does not verify.
    BadSignature,
    /// The authorization server's introspection endpoint answered that the token is not
    /// active (unknown, revoked, expired, or not for this server).
    Inactive,
    /// The introspection endpoint could not be asked, or gave no usable answer (the detail
    /// is logged, never sent).
    IntrospectionFailed(String),
}

impl TokenError {
    /// The `error_description` (plain ASCII, no quotes).
    pub fn description(&self) -> String {
        let d = match self {
            TokenError::Malformed(d) => format!("malformed token: {d}"),
            TokenError::AlgorithmRefused(a) => format!("algorithm refused: {a}"),
            TokenError::WrongIssuer => "wrong issuer".to_string(),
            TokenError::WrongAudience => "wrong audience".to_string(),
            TokenError::Expired => "token expired".to_string(),
            TokenError::NotYetValid => "token not yet valid".to_string(),
            TokenError::UnknownKey(kid) | TokenError::KeysUnavailable(kid) if kid.is_empty() => {
                "unknown signing key".to_string()
            }
            TokenError::UnknownKey(kid) | TokenError::KeysUnavailable(kid) => format!("unknown signing key {kid}"),
            TokenError::BadSignature => "bad signature".to_string(),
            TokenError::Inactive => "token not active".to_string(),
            TokenError::IntrospectionFailed(_) => "token introspection failed".to_string(),
        };
        d.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').filter(|c| *c != '"' && *c != '\\').take(200).collect()
    }

    /// Whether the token is junk or a forgery, which the failed-login throttle counts (a
    /// `kid` the issuer does not publish included). A token that has merely expired or is
    /// not yet valid (every client sends one now and then, before refreshing it), whose
    /// key the server could not fetch, or that the server could not introspect, is not the
    /// client's fault. An inactive token is counted: it is what junk is answered.
    pub fn is_forgery(&self) -> bool {
        !matches!(
            self,
            TokenError::Expired
                | TokenError::NotYetValid
                | TokenError::KeysUnavailable(_)
                | TokenError::IntrospectionFailed(_)
        )
    }
}

/// A verification key.
struct VerifyKey {
    kid: Option<String>,
    family: AlgorithmFamily,
    /// The only algorithm the key may verify (the JWK's `alg`, or the configured `alg`).
    alg: Option<Algorithm>,
    /// EC keys: the curve, so ES256 tokens meet P-256 keys only.
    curve: Option<EllipticCurve>,
    key: DecodingKey,
}

impl VerifyKey {
    fn fits(&self, alg: Algorithm) -> bool {
        if self.family != alg.family() || self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        match (alg, &self.curve) {
            (Algorithm::ES256, Some(c)) => *c == EllipticCurve::P256,
            (Algorithm::ES384, Some(c)) => *c == EllipticCurve::P384,
            _ => true,
        }
    }
}

/// Where an issuer's remote keys come from.
#[derive(Clone, Debug)]
enum Source {
    /// OIDC discovery of this issuer URL.
    Discovery(String),
    /// A JWKS document.
    Jwks(String),
}

/// An issuer's fetched key set, refreshed on schedule and on unknown `kid`s.
struct Remote {
    source: Source,
    http: reqwest::Client,
    keys: RwLock<Vec<Arc<VerifyKey>>>,
    /// Last successful fetch.
    fetched: RwLock<Option<Instant>>,
    /// Last attempt (held while fetching, so concurrent misses wait for one fetch).
    attempt: tokio::sync::Mutex<Option<Instant>>,
    min_interval: Duration,
    every: Duration,
    fetches: AtomicU64,
}

impl Remote {
    fn keys(&self) -> Vec<Arc<VerifyKey>> {
        self.keys.read().map(|k| k.clone()).unwrap_or_default()
    }

    /// Whether the key set was fetched successfully within `d`.
    fn fetched_within(&self, d: Duration) -> bool {
        self.fetched.read().ok().and_then(|f| *f).is_some_and(|t| t.elapsed() <= d)
    }

    fn due(&self) -> bool {
        self.fetched.read().map(|f| f.is_none_or(|t| t.elapsed() >= self.every)).unwrap_or(true)
    }

    /// Fetch the key set again, unless that was tried less than `min_interval` ago, or a
    /// fetch finished while this one waited its turn (concurrent misses share one fetch),
    /// or (`scheduled`) the set is no longer due. `true` if the keys are fresh.
    async fn refresh(&self, scheduled: bool) -> bool {
        let asked = Instant::now();
        let mut attempt = self.attempt.lock().await;
        let fetched = self.fetched.read().ok().and_then(|f| *f);
        if fetched.is_some_and(|f| f >= asked) {
            return true;
        }
        if scheduled && !self.due() {
            return false;
        }
        if attempt.is_some_and(|t| t.elapsed() < self.min_interval) {
            return false;
        }
        *attempt = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(source = ?self.source, keys = keys.len(), "bearer token keys fetched");
                if let Ok(mut k) = self.keys.write() {
                    *k = keys;
                }
                if let Ok(mut f) = self.fetched.write() {
                    *f = Some(Instant::now());
                }
                true
            }
            Err(e) => {
                tracing::warn!(source = ?self.source, error = %e, "fetching bearer token keys failed");
                false
            }
        }
    }

    async fn fetch(&self) -> std::result::Result<Vec<Arc<VerifyKey>>, String> {
        let jwks: Vec<Value> = match &self.source {
            Source::Discovery(issuer) => {
                use openidconnect::core::CoreProviderMetadata;
                let issuer_url = openidconnect::IssuerUrl::new(issuer.clone()).map_err(|e| e.to_string())?;
                let http = self.http.clone();
                let client = move |req: openidconnect::HttpRequest| {
                    let http = http.clone();
                    async move { send(&http, req).await }
                };
                let meta = CoreProviderMetadata::discover_async(issuer_url, &client).await.map_err(|e| {
                    let mut s = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(inner) = src {
                        s.push_str(&format!(": {inner}"));
                        src = inner.source();
                    }
                    s
                })?;
                meta.jwks().keys().iter().filter_map(|k| serde_json::to_value(k).ok()).collect()
            }
            Source::Jwks(url) => {
                let req = openidconnect::http::Request::builder()
                    .method(openidconnect::http::Method::GET)
                    .uri(url.as_str())
                    .header(openidconnect::http::header::ACCEPT, "application/json")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                let res = send(&self.http, req).await.map_err(|e| e.to_string())?;
                if !res.status().is_success() {
                    return Err(format!("JWKS answered {}", res.status()));
                }
                let doc: Value = serde_json::from_slice(res.body()).map_err(|e| format!("JWKS: {e}"))?;
                doc.get("keys").and_then(Value::as_array).cloned().ok_or("JWKS without keys")?
            }
        };
        let mut out = Vec::new();
        for v in &jwks {
            match key_from_jwk(v, None) {
                Ok(Some(k)) => out.push(Arc::new(k)),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "skipping a key of the key set"),
            }
        }
        Ok(out)
    }
}

/// A fetch error (the HTTP client of discovery needs a `std::error::Error`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FetchError(String);

/// Largest discovery or JWKS document read.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// One HTTP exchange for discovery and JWKS: HTTPS only (HTTP to loopback), no redirects
/// (the client has none), bounded size.
async fn send(
    http: &reqwest::Client,
    req: openidconnect::HttpRequest,
) -> std::result::Result<openidconnect::HttpResponse, FetchError> {
    let (parts, body) = req.into_parts();
    let url = parts.uri.to_string();
    check_fetch_url(&url).map_err(FetchError)?;
    let mut res = http
        .request(parts.method, url.as_str())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| FetchError(format!("{url}: {e}")))?;
    let mut builder = openidconnect::http::Response::builder().status(res.status());
    for (k, v) in res.headers() {
        builder = builder.header(k, v);
    }
    let mut buf = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| FetchError(format!("{url}: {e}")))? {
        if buf.len() + chunk.len() > MAX_DOCUMENT {
            return Err(FetchError(format!("{url}: document larger than {MAX_DOCUMENT} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    builder.body(buf).map_err(|e| FetchError(e.to_string()))
}

/// The HTTP client of discovery, key sets and introspection: no redirects, `timeout_secs`
/// (at least 1) for a whole exchange.
pub(crate) fn http_client(timeout_secs: u64) -> std::result::Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(timeout_secs.max(1)))
        .build()
        .map_err(|e| e.to_string())
}

/// Key material is fetched (and tokens are introspected) over HTTPS; plain HTTP only from
/// this machine (tests, sidecars).
pub(crate) fn check_fetch_url(url: &str) -> std::result::Result<(), String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    match u.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&u) => Ok(()),
        _ => Err(format!("{url}: key material is only fetched over https (http only from loopback)")),
    }
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// A verification key from a JWK; `None` for keys that are not for signatures.
fn key_from_jwk(v: &Value, configured_alg: Option<Algorithm>) -> std::result::Result<Option<VerifyKey>, String> {
    let jwk: Jwk = serde_json::from_value(v.clone()).map_err(|e| format!("JWK: {e}"))?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))) {
        return Ok(None);
    }
    let jwk_alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => match Algorithm::try_from(a) {
            Ok(a) => Some(a),
            // An encryption algorithm (RSA-OAEP...) or one we do not know: not for us.
            Err(_) => return Ok(None),
        },
    };
    let (family, curve) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, None),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 | EllipticCurve::P384 => (AlgorithmFamily::Ec, Some(p.curve.clone())),
            _ => return Err("unsupported EC curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => (AlgorithmFamily::Ed, None),
        // Symmetric keys are never taken from key sets: HS tokens verify only with a
        // configured shared secret.
        AlgorithmParameters::OctetKey(_) => return Err("symmetric (oct) keys are not accepted".into()),
        _ => return Err("unsupported key type".into()),
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("JWK: {e}"))?;
    Ok(Some(VerifyKey { kid: jwk.common.key_id.clone(), family, alg: configured_alg.or(jwk_alg), curve, key }))
}

/// A verification key from a public-key PEM (RSA, EC P-256/P-384, Ed25519).
fn key_from_pem(pem: &str) -> std::result::Result<(DecodingKey, AlgorithmFamily, Option<EllipticCurve>), String> {
    if pem.contains("PRIVATE KEY") {
        return Err("a private key was given; configure the issuer's public key".into());
    }
    if let Ok(k) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((k, AlgorithmFamily::Rsa, None));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        let curve = match k.try_get_as_bytes().map(<[u8]>::len) {
            Ok(65) => EllipticCurve::P256,
            Ok(97) => EllipticCurve::P384,
            _ => return Err("unsupported EC curve (P-256 and P-384 are)".into()),
        };
        return Ok((k, AlgorithmFamily::Ec, Some(curve)));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(pem.as_bytes()) {
        return Ok((k, AlgorithmFamily::Ed, None));
    }
    Err("not an RSA, EC or Ed25519 public key in PEM".into())
}

fn static_key(k: &StaticKeySettings) -> std::result::Result<VerifyKey, String> {
    let alg = if k.alg.is_empty() {
        None
    } else {
        Some(k.alg.parse::<Algorithm>().map_err(|_| format!("unknown algorithm {}", k.alg))?)
    };
    if alg.is_some_and(|a| a.family() == AlgorithmFamily::Hmac) {
        return Err("HS algorithms take the issuer's shared_secret, not a key".into());
    }
    let kid = (!k.kid.is_empty()).then(|| k.kid.clone());
    let sources = usize::from(!k.pem.is_empty()) + usize::from(!k.pem_file.is_empty()) + usize::from(k.jwk.is_some());
    if sources != 1 {
        return Err("give exactly one of pem, pem_file, jwk".into());
    }
    if let Some(jwk) = &k.jwk {
        let jwk = match jwk {
            Value::String(s) => serde_json::from_str(s).map_err(|e| format!("jwk: {e}"))?,
            v => v.clone(),
        };
        let mut key = key_from_jwk(&jwk, alg)?.ok_or("the JWK is not a signature key")?;
        if kid.is_some() {
            key.kid = kid;
        }
        return Ok(key);
    }
    let pem = if k.pem.is_empty() {
        std::fs::read_to_string(&k.pem_file).map_err(|e| format!("{}: {e}", k.pem_file))?
    } else {
        k.pem.clone()
    };
    let (key, family, curve) = key_from_pem(&pem)?;
    if alg.is_some_and(|a| a.family() != family) {
        return Err(format!("algorithm {} does not fit the key type", k.alg));
    }
    Ok(VerifyKey { kid, family, alg, curve, key })
}

/// A trusted issuer.
struct Issuer {
    iss: String,
    audiences: Vec<String>,
    static_keys: Vec<Arc<VerifyKey>>,
    hmac: Option<DecodingKey>,
    remote: Option<Arc<Remote>>,
}

impl Issuer {
    fn build(s: &IssuerSettings, b: &BearerSettings, http: &reqwest::Client) -> std::result::Result<Self, String> {
        if s.issuer.is_empty() {
            return Err("an issuer needs `issuer` (its iss value)".into());
        }
        let mut static_keys = Vec::new();
        for (i, k) in s.keys.iter().enumerate() {
            static_keys.push(Arc::new(static_key(k).map_err(|e| format!("keys[{i}]: {e}"))?));
        }
        let hmac = if s.shared_secret.is_empty() {
            None
        } else if s.shared_secret.len() < 32 {
            return Err("shared_secret must be at least 32 bytes".into());
        } else {
            Some(DecodingKey::from_secret(s.shared_secret.as_bytes()))
        };
        let discovery = s.discovery.unwrap_or(s.jwks_url.is_empty() && s.keys.is_empty() && hmac.is_none());
        let source = if !s.jwks_url.is_empty() {
            check_fetch_url(&s.jwks_url)?;
            Some(Source::Jwks(s.jwks_url.clone()))
        } else if discovery {
            check_fetch_url(&s.issuer)?;
            Some(Source::Discovery(s.issuer.clone()))
        } else {
            None
        };
        if source.is_none() && static_keys.is_empty() && hmac.is_none() {
            return Err("no keys: give discovery, jwks_url, keys or shared_secret".into());
        }
        let remote = source.map(|source| {
            Arc::new(Remote {
                source,
                http: http.clone(),
                keys: RwLock::new(Vec::new()),
                fetched: RwLock::new(None),
                attempt: tokio::sync::Mutex::new(None),
                min_interval: Duration::from_secs(b.min_refresh_interval_secs),
                every: Duration::from_secs(b.refresh_interval_secs.max(1)),
                fetches: AtomicU64::new(0),
            })
        });
        let audiences = if s.audiences.is_empty() { b.audiences.clone() } else { s.audiences.clone() };
        if audiences.is_empty() {
            return Err("no accepted audience: set auth.bearer.audiences".into());
        }
        Ok(Self { iss: s.issuer.clone(), audiences, static_keys, hmac, remote })
    }

    /// Keys that may verify a token with `alg` and `kid`: exact `kid` matches (refreshing
    /// the remote set once if there are none), else keys without a `kid`. None: the `kid`
    /// is unknown, and [`TokenError::UnknownKey`] only if the keys are current.
    async fn candidates(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> std::result::Result<Vec<Arc<VerifyKey>>, TokenError> {
        let pick = |remote: &[Arc<VerifyKey>], exact: bool| -> Vec<Arc<VerifyKey>> {
            self.static_keys
                .iter()
                .chain(remote.iter())
                .filter(|k| k.fits(alg))
                .filter(|k| if exact { kid.is_none() || k.kid.as_deref() == kid } else { k.kid.is_none() })
                .cloned()
                .collect()
        };
        let remote_keys = |r: &Option<Arc<Remote>>| r.as_ref().map(|r| r.keys()).unwrap_or_default();
        if let Some(r) = &self.remote
            && r.due()
            && r.fetched.read().map(|f| f.is_some()).unwrap_or(false)
        {
            // Scheduled refresh in the background; this request uses the keys at hand.
            let r = r.clone();
            tokio::spawn(async move { r.refresh(true).await });
        }
        let mut found = pick(&remote_keys(&self.remote), true);
        // Static keys are all there is; a fetched set is current when fetched again for this
        // token, or recently enough that it may not be fetched again yet.
        let mut current = true;
        if found.is_empty()
            && let Some(r) = &self.remote
        {
            current = r.refresh(false).await || r.fetched_within(r.min_interval);
            found = pick(&r.keys(), true);
        }
        if found.is_empty() && kid.is_some() {
            found = pick(&remote_keys(&self.remote), false);
        }
        if found.is_empty() {
            let kid = kid.unwrap_or_default().to_string();
            return Err(if current { TokenError::UnknownKey(kid) } else { TokenError::KeysUnavailable(kid) });
        }
        Ok(found)
    }
}

/// Largest clock-skew allowance (jsonwebtoken computes `now - leeway` unsigned).
const MAX_LEEWAY_SECS: u64 = 3600;

/// Verifies bearer tokens and maps their claims to principals.
pub struct BearerVerifier {
    issuers: Vec<Issuer>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    max_token: usize,
    rules: ClaimRules,
    introspection: Vec<Endpoint>,
    /// `auth.bearer.sit_scheme`.
    sit: bool,
}

/// How verified claims (a JWT's, or an introspection answer's) become a principal.
pub(crate) struct ClaimRules {
    address_claims: Vec<String>,
    scope_claims: Vec<String>,
    default_scopes: Vec<Scope>,
    service_claim: String,
    service_values: Vec<String>,
    service_clients: Vec<String>,
    stores: Vec<String>,
    provision: bool,
}

impl BearerVerifier {
    /// The verifier for the configuration; `None` when no issuer is configured.
    pub fn new(s: &BearerSettings, nms_stores: &[String]) -> Result<Option<Self>> {
        if s.issuers.is_empty() && s.introspection.is_empty() {
            return Ok(None);
        }
        let bad = |e: String| Error::internal(format!("configuration: auth.bearer: {e}"));
        let mut algorithms = Vec::new();
        for a in &s.algorithms {
            let alg = a.parse::<Algorithm>().map_err(|_| bad(format!("unknown algorithm {a}")))?;
            if alg.family() == AlgorithmFamily::Hmac {
                return Err(bad(format!(
                    "{a} is accepted only from issuers with a shared_secret; list asymmetric algorithms"
                )));
            }
            algorithms.push(alg);
        }
        if s.leeway_secs > MAX_LEEWAY_SECS {
            return Err(bad(format!("leeway_secs must be at most {MAX_LEEWAY_SECS}")));
        }
        let stores = if s.stores.is_empty() { nms_stores.to_vec() } else { s.stores.clone() };
        if let Some(x) = stores.iter().find(|x| !nms_stores.contains(x)) {
            return Err(bad(format!("store {x} is not one of nms.stores")));
        }
        let http = http_client(s.http_timeout_secs).map_err(bad)?;
        let mut issuers = Vec::new();
        for i in &s.issuers {
            if issuers.iter().any(|x: &Issuer| x.iss == i.issuer) {
                return Err(bad(format!("issuer {} is configured twice", i.issuer)));
            }
            issuers.push(Issuer::build(i, s, &http).map_err(|e| bad(format!("issuer {}: {e}", i.issuer)))?);
        }
        let mut default_scopes = Vec::new();
        for d in &s.default_scopes {
            default_scopes.push(Scope::parse(d).ok_or_else(|| bad(format!("unknown scope {d} in default_scopes")))?);
        }
        let mut introspection = Vec::new();
        for (i, e) in s.introspection.iter().enumerate() {
            introspection.push(Endpoint::new(e, s).map_err(|e| bad(format!("introspection[{i}]: {e}")))?);
        }
        Ok(Some(Self {
            issuers,
            algorithms,
            leeway: s.leeway_secs,
            max_token: s.max_token_bytes.max(1024),
            rules: ClaimRules {
                address_claims: s.address_claims.clone(),
                scope_claims: s.scope_claims.clone(),
                default_scopes,
                service_claim: s.service_claim.clone(),
                service_values: s.service_values.clone(),
                service_clients: s.service_clients.clone(),
                stores,
                provision: s.provision_boxes,
            },
            introspection,
            sit: s.sit_scheme,
        }))
    }

    /// Fetch every remote key set once, in the background (errors are logged; a token
    /// naming a key not fetched yet triggers another attempt).
    pub fn warm_up(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        for i in &self.issuers {
            if let Some(r) = &i.remote {
                let r = r.clone();
                tokio::spawn(async move { r.refresh(false).await });
            }
        }
    }

    /// How many key-set fetches were attempted, over every issuer (for tests and metrics).
    pub fn key_fetches(&self) -> u64 {
        self.issuers.iter().filter_map(|i| i.remote.as_ref()).map(|r| r.fetches.load(Ordering::Relaxed)).sum()
    }

    /// How many introspection requests were made, over every endpoint (for tests and
    /// metrics).
    pub fn introspections(&self) -> u64 {
        self.introspection.iter().map(Endpoint::calls).sum()
    }

    /// Verify a token and map its claims (or its introspection answer) to a principal.
    pub async fn verify(&self, token: &str) -> std::result::Result<Principal, TokenError> {
        if token.len() > self.max_token {
            return Err(TokenError::Malformed("too long".into()));
        }
        match self.endpoint_for(token) {
            Some(endpoint) => endpoint.verify(token, &self.rules).await,
            None => self.verify_jwt(token).await,
        }
    }

    /// Whether `Authorization: SIT <token>` is taken: `auth.bearer.sit_scheme` is on and an
    /// introspection endpoint can be asked about such tokens.
    pub fn takes_sit(&self) -> bool {
        self.sit && !self.introspection.is_empty()
    }

    /// Verify an opaque token presented as `SIT <token>`: one word of visible ASCII, asked of
    /// the first introspection endpoint whose prefix it has (a JWT too: it is never verified
    /// by a signature). A token that no endpoint takes has no authority to vouch for it: a
    /// wrong issuer.
    pub async fn verify_opaque(&self, token: &str) -> std::result::Result<Principal, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Malformed("no token".into()));
        }
        if token.len() > self.max_token {
            return Err(TokenError::Malformed("too long".into()));
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(TokenError::Malformed("not one word of visible ASCII".into()));
        }
        match self.introspection.iter().find(|e| e.takes(token)) {
            Some(endpoint) => endpoint.verify(token, &self.rules).await,
            None => Err(TokenError::WrongIssuer),
        }
    }

    /// The introspection endpoint that answers for `token`: the first whose prefix it has,
    /// unless it is a JWT naming a trusted issuer (whose keys alone verify it).
    fn endpoint_for(&self, token: &str) -> Option<&Endpoint> {
        let endpoint = self.introspection.iter().find(|e| e.takes(token))?;
        let mut parts = token.split('.');
        let names_issuer = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(payload), Some(_), None) => json_part(payload)
                .and_then(|p| p.get("iss").and_then(Value::as_str).map(|iss| self.issuers.iter().any(|i| i.iss == iss)))
                .unwrap_or(false),
            _ => false,
        };
        (!names_issuer).then_some(endpoint)
    }

    /// Verify a signed JWT of a trusted issuer.
    async fn verify_jwt(&self, token: &str) -> std::result::Result<Principal, TokenError> {
        let malformed = |d: &str| TokenError::Malformed(d.to_string());
        let parts: Vec<&str> = token.split('.').collect();
        match parts.len() {
            3 => {}
            5 => return Err(malformed("encrypted tokens (JWE) are not accepted")),
            _ => return Err(malformed("not a JWS compact serialization")),
        }
        let header = json_part(parts[0]).ok_or_else(|| malformed("header is not base64url JSON"))?;
        let alg_name = header.get("alg").and_then(Value::as_str).ok_or_else(|| malformed("no alg"))?;
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(TokenError::AlgorithmRefused("none".into()));
        }
        let alg = alg_name.parse::<Algorithm>().map_err(|_| TokenError::AlgorithmRefused(alg_name.to_string()))?;
        if header.get("crit").is_some() {
            return Err(malformed("unsupported critical header parameters"));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(malformed("kid is not a string")),
        };
        let payload = json_part(parts[1]).ok_or_else(|| malformed("payload is not base64url JSON"))?;
        let iss = payload.get("iss").and_then(Value::as_str).ok_or(TokenError::WrongIssuer)?;
        let issuer = self.issuers.iter().find(|i| i.iss == iss).ok_or(TokenError::WrongIssuer)?;

        let keys: Vec<DecodingKey> = if alg.family() == AlgorithmFamily::Hmac {
            // Only the issuer's configured secret: never a public key as an HMAC secret.
            match &issuer.hmac {
                Some(k) => vec![k.clone()],
                None => return Err(TokenError::AlgorithmRefused(alg_name.to_string())),
            }
        } else {
            if !self.algorithms.contains(&alg) {
                return Err(TokenError::AlgorithmRefused(alg_name.to_string()));
            }
            issuer.candidates(alg, kid).await?.iter().map(|k| k.key.clone()).collect()
        };

        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.set_issuer(&[issuer.iss.as_str()]);
        v.set_audience(&issuer.audiences);
        let mut last = TokenError::BadSignature;
        for key in keys.iter().take(8) {
            match jsonwebtoken::decode::<Value>(token, key, &v) {
                Ok(data) => {
                    self.check_iat(&data.claims)?;
                    return self.rules.principal(&issuer.iss, &data.claims, &["sub"]);
                }
                Err(e) => {
                    last = map_error(e.kind());
                    if last != TokenError::BadSignature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    /// `iat`, when present, must be a number not in the future (beyond the leeway).
    fn check_iat(&self, claims: &Value) -> std::result::Result<(), TokenError> {
        match claims.get("iat") {
            None => Ok(()),
            Some(v) => {
                let iat = v.as_f64().ok_or_else(|| TokenError::Malformed("iat is not a number".into()))?;
                let now = jsonwebtoken::get_current_timestamp() as f64;
                if iat > now + self.leeway as f64 { Err(TokenError::NotYetValid) } else { Ok(()) }
            }
        }
    }
}

impl ClaimRules {
    /// Claims to principal: addresses, scopes, service role. The subject (the principal's
    /// name under `issuer`) is the first of `subject_claims` present, else the client id.
    pub(crate) fn principal(
        &self,
        issuer: &str,
        claims: &Value,
        subject_claims: &[&str],
    ) -> std::result::Result<Principal, TokenError> {
        let client_id =
            claims.get("azp").and_then(Value::as_str).or_else(|| claims.get("client_id").and_then(Value::as_str));
        let subject = subject_claims.iter().find_map(|c| claims.get(*c).and_then(Value::as_str)).or(client_id);
        let Some(subject) = subject.filter(|s| !s.is_empty()) else {
            return Err(TokenError::Malformed("no sub".into()));
        };
        let by_role = !self.service_claim.is_empty()
            && strings(claims.get(&self.service_claim)).iter().any(|v| self.service_values.contains(v));
        let mut scopes = Vec::new();
        let mut any_scope_claim = false;
        for c in &self.scope_claims {
            if let Some(v) = claims.get(c) {
                any_scope_claim = true;
                for s in strings(Some(v)).iter().flat_map(|s| s.split_whitespace()) {
                    if let Some(s) = Scope::parse(s)
                        && !scopes.contains(&s)
                    {
                        scopes.push(s);
                    }
                }
            }
        }
        if !any_scope_claim {
            scopes = self.default_scopes.clone();
        }
        let mut addresses: Vec<String> = Vec::new();
        for c in &self.address_claims {
            // A phone number counts only once the provider has verified it (users can often
            // edit their own): otherwise anyone could claim another subscriber's box.
            if c == "phone_number" && claims.get("phone_number_verified") != Some(&Value::Bool(true)) {
                continue;
            }
            for v in strings(claims.get(c)) {
                if let Some(a) = normalise_address(&v)
                    && !addresses.contains(&a)
                {
                    addresses.push(a);
                }
            }
        }
        // A configured client id makes a service principal only for a token of the client
        // itself (client credentials: no subscriber address), never for a user's token the
        // client requested on the user's behalf (which carries its `azp` too).
        let by_client = addresses.is_empty() && client_id.is_some_and(|c| self.service_clients.iter().any(|s| s == c));
        let is_service = by_role || by_client;
        let boxes = self.stores.iter().flat_map(|s| addresses.iter().map(move |a| (s.clone(), a.clone()))).collect();
        Ok(Principal {
            name: format!("bearer:{issuer}#{subject}"),
            is_service,
            service_stores: if is_service { self.stores.clone() } else { Vec::new() },
            boxes,
            scopes,
            provision_boxes: self.provision && !is_service,
        })
    }
}

/// A base64url JSON object (padding tolerated).
pub(crate) fn json_part(part: &str) -> Option<serde_json::Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice::<Value>(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// A claim as a list of strings (a string, or the strings of an array).
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

fn map_error(kind: &jsonwebtoken::errors::ErrorKind) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => TokenError::BadSignature,
        K::ExpiredSignature => TokenError::Expired,
        K::ImmatureSignature => TokenError::NotYetValid,
        K::InvalidIssuer => TokenError::WrongIssuer,
        K::InvalidAudience => TokenError::WrongAudience,
        K::MissingRequiredClaim(c) if c == "aud" => TokenError::WrongAudience,
        K::MissingRequiredClaim(c) if c == "iss" => TokenError::WrongIssuer,
        K::MissingRequiredClaim(c) => TokenError::Malformed(format!("missing claim {c}")),
        K::InvalidClaimFormat(c) => TokenError::Malformed(format!("claim {c} has the wrong type")),
        K::InvalidAlgorithm | K::UnsupportedAlgorithm | K::MissingAlgorithm | K::InvalidAlgorithmName => {
            TokenError::AlgorithmRefused("algorithm does not fit the key".into())
        }
        K::InvalidEcdsaKey | K::InvalidEddsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat => {
            tracing::warn!(error = ?kind, "a configured or fetched key cannot verify");
            TokenError::BadSignature
        }
        other => TokenError::Malformed(match other {
            K::Base64(_) => "bad base64url".into(),
            K::Json(_) => "bad JSON".into(),
            K::Utf8(_) => "bad UTF-8".into(),
            _ => "cannot be decoded".into(),
        }),
    }
}

/// A claimed address as a box address: `tel:` (visual separators dropped from global
/// numbers) and `sip:`/`sips:` URIs as they are, a global number `+...` as `tel:+digits`;
/// anything else (a UUID subject, a local number) is not an address.
pub fn normalise_address(v: &str) -> Option<String> {
    let v = v.trim();
    if v.is_empty() || v.len() > 256 || v.contains('/') || v.chars().any(char::is_control) {
        return None;
    }
    let scheme = v.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    let is_separator = |c: char| matches!(c, ' ' | '-' | '.' | '(' | ')');
    match scheme.as_deref() {
        Some("tel") => {
            let rest = v.get(4..)?;
            let (number, params) = match rest.split_once(';') {
                Some((n, p)) => (n, format!(";{p}")),
                None => (rest, String::new()),
            };
            let number: String = if number.starts_with('+') {
                number.chars().filter(|c| !is_separator(*c)).collect()
            } else {
                number.to_string()
            };
            if number.trim_start_matches('+').is_empty() || number.contains(' ') {
                return None;
            }
            Some(format!("tel:{number}{params}"))
        }
        Some("sip" | "sips") => (!v.contains(' ')).then(|| v.to_string()),
        _ => {
            let digits: String = v.strip_prefix('+')?.chars().filter(|c| !is_separator(*c)).collect();
            (!digits.is_empty() && digits.len() <= 20 && digits.chars().all(|c| c.is_ascii_digit()))
                .then(|| format!("tel:+{digits}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(normalise_address("tel:+1-212-555-1212").as_deref(), Some("tel:+12125551212"));
        assert_eq!(normalise_address("+1 (212) 555-1212").as_deref(), Some("tel:+12125551212"));
        assert_eq!(
            normalise_address("tel:7042;phone-context=example.com").as_deref(),
            Some("tel:7042;phone-context=example.com")
        );
        assert_eq!(normalise_address("sip:alice@example.com").as_deref(), Some("sip:alice@example.com"));
        for junk in [
            "",
            "248289761001",
            "6a1f0c3e-0000-4000-8000-000000000000",
            "tel:",
            "tel:+",
            "+",
            "+12a",
            "a/b",
            "tel:+1\n2",
            "mailto:x@y",
        ] {
            assert_eq!(normalise_address(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn descriptions_are_header_safe() {
        let d = TokenError::UnknownKey("k\"1\\\r\nx".into()).description();
        assert!(!d.contains('"') && !d.contains('\\') && !d.contains('\n'), "{d}");
    }

    #[test]
    fn fetches_only_over_https_or_loopback() {
        assert!(check_fetch_url("https://idp.example.com/jwks").is_ok());
        assert!(check_fetch_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_fetch_url("http://[::1]/jwks").is_ok());
        assert!(check_fetch_url("http://idp.example.com/jwks").is_err());
        assert!(check_fetch_url("file:///etc/passwd").is_err());
    }

    fn verifier(extra: impl FnOnce(&mut BearerSettings)) -> BearerVerifier {
        let mut s = BearerSettings {
            issuers: vec![IssuerSettings {
                issuer: "https://idp.test".into(),
                shared_secret: "0123456789abcdef0123456789abcdef".into(),
                ..Default::default()
            }],
            audiences: vec!["nms".into()],
            ..Default::default()
        };
        extra(&mut s);
        BearerVerifier::new(&s, &["base".into()]).expect("config").expect("on")
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
    }

    #[tokio::test]
    async fn junk_never_panics_and_is_malformed() {
        let v = verifier(|_| {});
        let header = b64(&serde_json::json!({"alg": "HS256"}));
        for junk in [
            String::new(),
            ".".into(),
            "..".into(),
            "a.b.c".into(),
            "a.b.c.d".into(),
            format!("{header}.."),
            format!("{header}.%%%.sig"),
            format!("{header}.{}.sig", b64(&serde_json::json!([1, 2]))),
            format!("{}.e30.", b64(&serde_json::json!({"alg": 5}))),
            format!("{}.e30.", b64(&serde_json::json!({"alg": "HS256", "kid": 5}))),
            "\u{0}.\u{0}.\u{0}".into(),
            "ü.ü.ü".into(),
            "x".repeat(100_000),
        ] {
            match v.verify(&junk).await {
                Err(TokenError::Malformed(_) | TokenError::WrongIssuer) => {}
                other => panic!("{junk:.40}: {other:?}"),
            }
        }
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none"})),
            b64(&serde_json::json!({"iss": "https://idp.test"}))
        );
        assert_eq!(v.verify(&none).await.err(), Some(TokenError::AlgorithmRefused("none".into())));
        let odd = format!("{}.e30.", b64(&serde_json::json!({"alg": "XS999"})));
        assert!(matches!(v.verify(&odd).await, Err(TokenError::AlgorithmRefused(_))));
    }

    #[tokio::test]
    async fn shared_secret_issuer_round_trip_and_claims() {
        let v = verifier(|s| {
            s.service_claim = "roles".into();
            s.service_values = vec!["cpm-pf".into()];
        });
        let now = jsonwebtoken::get_current_timestamp();
        let sign = |claims: Value| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            )
            .expect("sign")
        };
        let t = sign(serde_json::json!({
            "iss": "https://idp.test", "aud": ["x", "nms"], "exp": now + 60, "iat": now,
            "sub": "tel:+1-212-555-1212", "phone_number": "+1 212 555 1212", "phone_number_verified": true,
            "scope": "openid oma_rest_nms.read oma_rest_nms.create unknown",
        }));
        let p = v.verify(&t).await.expect("valid");
        assert_eq!(p.boxes, vec![("base".to_string(), "tel:+12125551212".to_string())]);
        assert_eq!(p.scopes, vec![Scope::Read, Scope::Create]);
        assert!(!p.is_service && p.provision_boxes);
        let t = sign(serde_json::json!({
            "iss": "https://idp.test", "aud": "nms", "exp": now + 60, "sub": "pf-1",
            "roles": ["x", "cpm-pf"], "scp": ["oma_rest_nms.all_v1"],
        }));
        let p = v.verify(&t).await.expect("service");
        assert!(p.is_service && !p.provision_boxes && p.boxes.is_empty());
        assert_eq!(p.scopes, vec![Scope::All]);
        // An unverified phone number is no address.
        let t = sign(serde_json::json!({
            "iss": "https://idp.test", "aud": "nms", "exp": now + 60, "sub": "5f0c7a2e",
            "phone_number": "+1 310 555 0000", "phone_number_verified": false, "scope": "oma_rest_nms.read",
        }));
        let p = v.verify(&t).await.expect("valid");
        assert!(p.boxes.is_empty(), "{:?}", p.boxes);
        let t = sign(
            serde_json::json!({"iss": "https://idp.test", "aud": "nms", "exp": now + 60, "sub": "s", "iat": now + 3600}),
        );
        assert_eq!(v.verify(&t).await.err(), Some(TokenError::NotYetValid));
        let t = sign(serde_json::json!({"iss": "https://idp.test", "aud": "nms", "sub": "s"}));
        assert!(matches!(v.verify(&t).await, Err(TokenError::Malformed(d)) if d.contains("exp")));
        let t = sign(serde_json::json!({"iss": "https://idp.test", "exp": now + 60, "sub": "s"}));
        assert_eq!(v.verify(&t).await.err(), Some(TokenError::WrongAudience));
    }

    #[test]
    fn configuration_errors_are_reported() {
        let base = |f: fn(&mut BearerSettings)| {
            let mut s = BearerSettings {
                issuers: vec![IssuerSettings { issuer: "https://idp.test".into(), ..Default::default() }],
                audiences: vec!["nms".into()],
                ..Default::default()
            };
            f(&mut s);
            BearerVerifier::new(&s, &["base".into()]).err().map(|e| e.to_string())
        };
        assert!(base(|_| {}).is_none(), "discovery of an https issuer is fine");
        assert!(base(|s| s.audiences.clear()).is_some_and(|e| e.contains("audience")));
        assert!(base(|s| s.leeway_secs = u64::MAX).is_some_and(|e| e.contains("leeway")));
        assert!(base(|s| s.algorithms = vec!["HS256".into()]).is_some());
        assert!(base(|s| s.issuers[0].issuer = "http://idp.test".into()).is_some_and(|e| e.contains("https")));
        assert!(base(|s| s.issuers[0].shared_secret = "short".into()).is_some());
        assert!(base(|s| s.stores = vec!["nope".into()]).is_some());
        assert!(
            base(|s| s.issuers[0].keys = vec![StaticKeySettings { pem: "junk".into(), ..Default::default() }])
                .is_some()
        );
        assert!(
            base(|s| s.issuers[0].keys = vec![StaticKeySettings {
                pem: "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----".into(),
                ..Default::default()
            }])
            .is_some_and(|e| e.contains("private"))
        );
    }
}
