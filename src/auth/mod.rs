//! Authentication and authorisation.
//!
//! Every request yields a [`Principal`], from one of three schemes, each on or off by
//! configuration (see docs/security.md):
//!
//! - HTTP Basic, for accounts made with `cpm-nms account add` (argon2 password hashes);
//! - HTTP Digest (RFC 7616, SHA-256 and MD5; [`digest`]), for the same accounts, from the
//!   H(A1) values stored when the account was added;
//! - Bearer tokens (signed JWTs from trusted OIDC issuers, [`bearer`]; opaque tokens by
//!   OAuth 2.0 token introspection, [`introspection`]), also as `SIT <token>` (opaque
//!   only, `auth.bearer.sit_scheme`), the scheme a family of deployed RCS clients sends.
//!
//! Every route is one [`Operation`] that knows the OAuth scope it needs (NMS Appendix G).
//! [`authorize`] is the single decision point: the principal must hold the scope and own
//! the box (service principals: any box of the store).
//!
//! A 401 offers every enabled scheme, one `WWW-Authenticate` header each, Basic first (so
//! clients that read only the first header keep working), then Digest SHA-256, Digest MD5,
//! Bearer. A refused bearer token (SIT included) is answered with the Bearer challenge
//! alone, carrying `error="invalid_token"` and what failed.
//!
//! Password hashes are argon2, deliberately slow; a successful verification is remembered
//! for `auth.cache_ttl_secs` under a SHA-256 of the credentials, so a request costs a map
//! lookup, not an argon2 run. Digest account lookups are remembered as long. Removing an
//! account takes effect on every node within that TTL.
//!
//! Failed authentications are throttled per source address and per login name
//! ([`LoginThrottle`], `limits.auth_failures`): once credentials are read, and before they
//! are checked (before the cache too, which would otherwise answer guesses for free), an
//! attempt takes a failure's worth from its buckets, which a success gives back; a
//! throttled attempt is refused with 429 and costs no argon2 run and no account lookup.
//! Since attempts under way hold what they took, no more of them run at once than the
//! buckets have failures left. Bearer tokens are the exception: they are verified first
//! (cheaply), a valid one is let in whatever the buckets say, and only a forgery is
//! counted, or refused with 429 once its address has no failures left.

pub mod bearer;
pub mod digest;
pub mod introspection;
pub mod operation;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use dashmap::DashMap;
use sha2::{Digest, Sha256};

pub use bearer::{BearerVerifier, TokenError};
pub use operation::{BOX_SCOPE, Family, NC_SCOPE, Operation, Scope};

use crate::config::{AuthFailureSettings, AuthSettings};
use crate::error::{Error, Result};
use crate::limits::LoginThrottle;
use crate::model::DigestSecrets;
use crate::nms::TokenKey;
use crate::store::Store;
use digest::{DigestAuth, NonceState};

/// The box id meaning "the box of the authenticated subscriber" (NMS Appendix G.1.2).
pub const ACR_AUTH: &str = "acr:auth";

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Principal {
    pub name: String,
    /// A CPM Participating Function (or other network service): may act on any box of its
    /// stores.
    pub is_service: bool,
    /// The stores a service principal acts in (empty: every store).
    pub service_stores: Vec<String>,
    /// (store, address) pairs this principal owns.
    pub boxes: Vec<(String, String)>,
    /// Granted scopes (Basic and Digest accounts hold all of them).
    pub scopes: Vec<Scope>,
    /// Whether the principal's own boxes are created on its first access (bearer
    /// subscribers, per `auth.bearer.provision_boxes`); accounts' boxes are provisioned by
    /// `cpm-nms account add`.
    pub provision_boxes: bool,
}

impl Principal {
    /// The principal of an account (Basic or Digest): every scope; a service account acts in
    /// the stores of its boxes, when it has any (else in every store).
    fn of_account(name: String, is_service: bool, boxes: Vec<(String, String)>) -> Self {
        let mut service_stores: Vec<String> =
            if is_service { boxes.iter().map(|(s, _)| s.clone()).collect() } else { Vec::new() };
        service_stores.sort();
        service_stores.dedup();
        Self { name, is_service, service_stores, boxes, scopes: vec![Scope::All], provision_boxes: false }
    }

    /// The refusal for a scope this principal lacks (bearer principals also get the RFC 6750
    /// `insufficient_scope` challenge).
    pub fn missing(&self, scope: Scope) -> Error {
        if self.name.starts_with("bearer:") {
            Error::InsufficientScope { scope: scope.as_str() }
        } else {
            Error::Forbidden { reason: format!("missing scope {}", scope.as_str()) }
        }
    }

    /// The address `acr:auth` stands for in `store`: the principal's only box there.
    pub fn own_box(&self, store: &str) -> Option<&str> {
        let mut it = self.boxes.iter().filter(|(s, _)| s == store);
        match (it.next(), it.next()) {
            (Some((_, a)), None) => Some(a.as_str()),
            _ => None,
        }
    }

    /// Whether (store, address) is one of the principal's own boxes.
    pub fn owns(&self, store: &str, address: &str) -> bool {
        self.boxes.iter().any(|(s, a)| s == store && a == address)
    }
}

/// What an operation acts on.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// One box (the box API).
    Box { store: &'a str, address: &'a str },
    /// A user's notification channels, under one of the user's addresses in any store.
    User(&'a str),
}

/// The one authorisation decision: scope, then box (or user) ownership or service role. A
/// missing scope is named in the refusal (403 POL0001 `missing scope oma_rest_nms.modify`).
/// Service accounts may act for any user; on boxes, in their stores only.
pub fn authorize(p: &Principal, op: Operation, target: Target<'_>) -> Result<()> {
    let needed = op.scope();
    if !p.scopes.iter().any(|s| *s == needed || *s == Scope::All) {
        return Err(p.missing(needed));
    }
    match target {
        Target::Box { store, address } => {
            let service_here =
                p.is_service && (p.service_stores.is_empty() || p.service_stores.iter().any(|s| s == store));
            if service_here || p.owns(store, address) {
                Ok(())
            } else {
                Err(Error::Forbidden { reason: format!("no access to box {address}") })
            }
        }
        Target::User(user) => {
            if p.is_service || p.boxes.iter().any(|(_, a)| a == user) {
                Ok(())
            } else {
                Err(Error::Forbidden { reason: format!("no access to {user}") })
            }
        }
    }
}

/// Remember `value` under `key` for `ttl`, dropping stale entries once the map is large.
fn remember<K: std::hash::Hash + Eq, V>(cache: &DashMap<K, (V, Instant)>, key: K, value: V, ttl: Duration) {
    if cache.len() > 100_000 {
        let now = Instant::now();
        cache.retain(|_, v| v.1 > now);
    }
    cache.insert(key, (value, Instant::now() + ttl));
}

/// Hash a password for storage.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(Error::internal)
}

fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// The Digest algorithms named in the configuration (`SHA-256`, `MD5`).
pub fn digest_algorithms(names: &[String]) -> Result<Vec<digest::Algorithm>> {
    let mut out = Vec::new();
    for n in names {
        let a = digest::Algorithm::parse(n)
            .ok_or_else(|| Error::internal(format!("configuration: auth.digest: unknown algorithm {n}")))?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// What an authenticator needs of a request.
#[derive(Clone, Copy, Debug)]
pub struct AuthRequest<'a> {
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The request method (Digest's A2).
    pub method: &'a str,
    /// The request target as sent (path and query; Digest's `uri` must match it).
    pub uri: &'a str,
    /// The client's address (the TCP peer), which failed attempts are counted against.
    pub peer: Option<IpAddr>,
}

/// An account as Digest needs it.
#[derive(Clone)]
struct DigestAccount {
    principal: Principal,
    secrets: Option<DigestSecrets>,
}

/// Turns credentials into principals.
pub struct Authenticator {
    meta: Arc<dyn Store>,
    basic: bool,
    realm: String,
    ttl: Duration,
    cache: DashMap<[u8; 32], (Principal, Instant)>,
    /// Password verifications run (argon2), for metrics and tests of the cache.
    verifications: AtomicU64,
    digest: Option<DigestAuth>,
    digest_cache: DashMap<String, (DigestAccount, Instant)>,
    bearer: Option<BearerVerifier>,
    /// Password checks (argon2, ~19 MiB and tens of ms each) run at most this many at once,
    /// so a flood of wrong passwords cannot exhaust memory or the blocking pool. A check
    /// holds its slot until argon2 has finished, even if its client has gone.
    checks: Arc<tokio::sync::Semaphore>,
    /// Failed authentications by address and name.
    failures: LoginThrottle,
}

impl Authenticator {
    /// The authenticator the configuration describes. `key` seals Digest nonces (the
    /// deployment's cursor key, so every node accepts every node's nonces); `stores` are
    /// the configured store names (a bearer subscriber's boxes are in them).
    pub fn new(meta: Arc<dyn Store>, s: &AuthSettings, stores: &[String], key: TokenKey) -> Result<Self> {
        let digest = if s.digest.enabled {
            let algorithms = digest_algorithms(&s.digest.algorithms)?;
            if algorithms.is_empty() {
                return Err(Error::internal("configuration: auth.digest.algorithms is empty"));
            }
            Some(DigestAuth::new(&s.realm, algorithms, Duration::from_secs(s.digest.nonce_ttl_secs), key))
        } else {
            None
        };
        let bearer = BearerVerifier::new(&s.bearer, stores)?;
        if !s.basic && digest.is_none() && bearer.is_none() {
            return Err(Error::internal(
                "configuration: no authentication scheme is on (auth.basic, auth.digest.enabled, auth.bearer.issuers, auth.bearer.introspection)",
            ));
        }
        if let Some(b) = &bearer {
            b.warm_up();
        }
        Ok(Self {
            meta,
            basic: s.basic,
            realm: s.realm.clone(),
            // (At most a day, so `now + ttl` cannot overflow.)
            ttl: Duration::from_secs(s.cache_ttl_secs.min(86_400)),
            cache: DashMap::new(),
            verifications: AtomicU64::new(0),
            digest,
            digest_cache: DashMap::new(),
            bearer,
            checks: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()).max(2),
            )),
            failures: LoginThrottle::off(),
        })
    }

    /// Throttle failed authentications as `limits` say (without this: never).
    pub fn with_failure_limits(mut self, limits: &AuthFailureSettings) -> Self {
        self.failures = LoginThrottle::new(limits);
        self
    }

    /// How many password verifications (argon2 runs) this authenticator has made.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// The bearer token verifier, when Bearer is on.
    pub fn bearer(&self) -> Option<&BearerVerifier> {
        self.bearer.as_ref()
    }

    /// The `WWW-Authenticate` challenges sent with a 401, one per enabled scheme, Basic
    /// first; `stale` marks the Digest ones `stale=true`.
    pub fn challenges(&self, stale: bool) -> Vec<String> {
        let realm = digest::quote_escape(&self.realm);
        let mut out = Vec::new();
        if self.basic {
            out.push(format!("Basic realm=\"{realm}\", charset=\"UTF-8\""));
        }
        if let Some(d) = &self.digest {
            out.extend(d.challenges(stale));
        }
        if self.bearer.is_some() {
            out.push(format!("Bearer realm=\"{realm}\""));
        }
        out
    }

    fn unauthenticated(&self, reason: &str) -> Error {
        Error::Unauthenticated { reason: reason.to_string(), challenges: self.challenges(false) }
    }

    fn stale(&self, reason: &str) -> Error {
        Error::Unauthenticated { reason: reason.to_string(), challenges: self.challenges(true) }
    }

    fn bearer_refused(&self, e: &TokenError) -> Error {
        let d = e.description();
        // One per attempt under attack: debug only (the throttle reports refusals in sum).
        tracing::debug!(reason = %d, "bearer token refused");
        Error::Unauthenticated {
            reason: format!("invalid bearer token: {d}"),
            challenges: vec![format!(
                "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{d}\"",
                digest::quote_escape(&self.realm)
            )],
        }
    }

    /// Authenticate a request by its `Authorization` header.
    pub async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Principal> {
        let res = self.authenticate_header(req).await;
        if let Err(Error::Unauthenticated { .. } | Error::TooManyRequests { .. }) = &res {
            crate::metrics::auth_failed(scheme_label(req.authorization));
        }
        res
    }

    async fn authenticate_header(&self, req: &AuthRequest<'_>) -> Result<Principal> {
        let Some(value) = req.authorization else {
            return Err(self.unauthenticated("credentials required"));
        };
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") && self.basic {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| self.unauthenticated("malformed Basic credentials"))?;
            let (user, password) =
                decoded.split_once(':').ok_or_else(|| self.unauthenticated("malformed Basic credentials"))?;
            return self.basic_login(user, password, req.peer).await;
        }
        if scheme.eq_ignore_ascii_case("digest")
            && let Some(d) = &self.digest
        {
            return self.digest_login(d, rest, req).await;
        }
        // `SIT <token>`: a deployed client family's opaque token, verified like a bearer one
        // but by introspection only.
        let sit = scheme.eq_ignore_ascii_case("sit");
        if (sit || scheme.eq_ignore_ascii_case("bearer"))
            && let Some(b) = self.bearer.as_ref().filter(|b| !sit || b.takes_sit())
        {
            let token = rest.trim();
            let verdict = if sit { b.verify_opaque(token).await } else { b.verify(token).await };
            // A token is verified first, whatever its address's bucket says: that is cheap
            // (no argon2), and a valid token is let in even from a throttled address, which
            // many clients may share (a carrier NAT). Only a forgery counts, and is refused
            // with 429 once the address has no failures left.
            return match verdict {
                Ok(principal) => Ok(principal),
                // The token may be good: the authorization server could not say.
                Err(TokenError::IntrospectionFailed(detail)) => {
                    Err(Error::Unavailable { what: format!("token introspection: {detail}") })
                }
                Err(e) => {
                    if e.is_forgery() {
                        self.failures.failed(&self.failures.keys(req.peer, None))?;
                    }
                    Err(self.bearer_refused(&e))
                }
            };
        }
        let shown: String = scheme.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(20).collect();
        Err(self.unauthenticated(&format!("unsupported authorization scheme {shown}")))
    }

    async fn basic_login(&self, user: &str, password: &str, peer: Option<IpAddr>) -> Result<Principal> {
        let keys = self.failures.keys(peer, Some(user));
        let mut attempt = self.failures.begin(&keys)?;
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0u8])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        let cached = self.cache.get(&key).filter(|e| e.1 > Instant::now()).map(|e| e.0.clone());
        if let Some(principal) = cached {
            attempt.succeeded();
            return Ok(principal);
        }
        let slot = self.checks.clone().acquire_owned().await.map_err(Error::internal)?;
        // No account name holds NUL (the store could not even look one up alike).
        let account = if user.contains('\0') { None } else { self.meta.find_account(user).await? };
        attempt.checking();
        // An unknown user costs the same argon2 run, so timing does not reveal user names.
        let hash = match &account {
            Some(a) => {
                self.verifications.fetch_add(1, Ordering::Relaxed);
                a.password_hash.clone()
            }
            None => DUMMY_HASH.to_string(),
        };
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            verify_password(&pw, &hash)
        })
        .await
        .map_err(Error::internal)?;
        let Some(account) = account.filter(|_| ok) else {
            return Err(self.unauthenticated("invalid user name or password"));
        };
        attempt.succeeded();
        let principal = Principal::of_account(account.name, account.is_service, account.boxes);
        remember(&self.cache, key, principal.clone(), self.ttl);
        Ok(principal)
    }

    /// The account `user` as Digest needs it (remembered for the cache TTL).
    async fn digest_account(&self, user: &str) -> Result<Option<DigestAccount>> {
        if let Some(entry) = self.digest_cache.get(user)
            && entry.1 > Instant::now()
        {
            return Ok(Some(entry.0.clone()));
        }
        if user.contains('\0') {
            return Ok(None);
        }
        let Some(account) = self.meta.find_account(user).await? else { return Ok(None) };
        let a = DigestAccount {
            principal: Principal::of_account(account.name, account.is_service, account.boxes),
            secrets: account.digest,
        };
        remember(&self.digest_cache, user.to_string(), a.clone(), self.ttl);
        Ok(Some(a))
    }

    async fn digest_login(&self, d: &DigestAuth, params: &str, req: &AuthRequest<'_>) -> Result<Principal> {
        let c =
            digest::parse(params).map_err(|e| self.unauthenticated(&format!("malformed Digest credentials: {e}")))?;
        // RFC 7616 §3.4: no algorithm parameter means MD5.
        let alg = match c.algorithm.as_deref() {
            None => Some(digest::Algorithm::Md5),
            Some(a) => digest::Algorithm::parse(a),
        };
        let Some(alg) = alg.filter(|a| d.algorithms().contains(a)) else {
            return Err(self.unauthenticated("unsupported Digest algorithm"));
        };
        if c.userhash {
            return Err(self.unauthenticated("Digest userhash is not supported"));
        }
        let (Some(qop), Some(nc), Some(cnonce)) = (c.qop.as_deref(), c.nc.as_deref(), c.cnonce.as_deref()) else {
            return Err(self.unauthenticated("Digest needs qop=auth, nc and cnonce"));
        };
        if qop != "auth" {
            return Err(self.unauthenticated("Digest qop must be auth"));
        }
        if !digest::nc_ok(nc) {
            return Err(self.unauthenticated("malformed Digest nc"));
        }
        if c.realm != self.realm || !d.opaque_ok(c.opaque.as_deref()) {
            return Err(self.unauthenticated("Digest realm or opaque is not this server's"));
        }
        if !uri_matches(&c.uri, req.uri) {
            return Err(self.unauthenticated("Digest uri does not match the request"));
        }
        let state = d.check_nonce(&c.nonce);
        if state == NonceState::Invalid {
            return Err(self.unauthenticated("invalid Digest nonce"));
        }
        let keys = self.failures.keys(req.peer, Some(&c.username));
        let mut attempt = self.failures.begin(&keys)?;
        let account = self.digest_account(&c.username).await?;
        attempt.checking();
        let ha1 =
            account.as_ref().and_then(|a| a.secrets.as_ref()).filter(|s| s.realm == self.realm).and_then(
                |s| match alg {
                    digest::Algorithm::Sha256 => s.ha1_sha256.clone(),
                    digest::Algorithm::Md5 => s.ha1_md5.clone(),
                },
            );
        // Compute a response even without an H(A1), so timing says little about accounts.
        let expected =
            digest::response(alg, ha1.as_deref().unwrap_or("0"), &c.nonce, nc, cnonce, qop, req.method, &c.uri);
        let matches = digest::ct_eq(&expected, &c.response.to_ascii_lowercase());
        let (Some(account), Some(_), true) = (account, ha1, matches) else {
            return Err(self.unauthenticated("invalid user name or password"));
        };
        // The right answer. To a fresh nonce seen for the first time it is a login; to a
        // stale or replayed one it may be a captured request sent again, which must not
        // make its sender's address known for the name. It was no guess either: forgiven.
        let refused = match state {
            NonceState::Fresh { expires } => {
                (!d.remember(&c.nonce, nc, cnonce, expires)).then_some("Digest nonce count reused")
            }
            _ => Some("stale Digest nonce"),
        };
        match refused {
            None => {
                attempt.succeeded();
                Ok(account.principal)
            }
            Some(reason) => {
                attempt.forgiven();
                Err(self.stale(reason))
            }
        }
    }
}

/// Whether a Digest `uri` names the request target: the same string, the same after
/// percent-decoding, or an absolute URI whose path and query are the target.
fn uri_matches(claimed: &str, target: &str) -> bool {
    if claimed == target {
        return true;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).ok();
    if decode(claimed).is_some_and(|c| Some(c) == decode(target)) {
        return true;
    }
    url::Url::parse(claimed).ok().is_some_and(|u| {
        let pq = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        pq == target
    })
}

/// A valid argon2 hash of a random string, verified against when the user does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2ayvn1L2d1Ivb8yNlxBS6eJkBNmAbvBGhMwK0Sh3Ah8";

/// The scheme of an `Authorization` header as a metrics label (a fixed set).
fn scheme_label(authorization: Option<&str>) -> &'static str {
    let Some(value) = authorization else { return "none" };
    let scheme = value.trim().split(' ').next().unwrap_or_default();
    ["basic", "digest", "bearer", "sit"].into_iter().find(|s| scheme.eq_ignore_ascii_case(s)).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(service: bool) -> Principal {
        Principal {
            name: "u".into(),
            is_service: service,
            service_stores: Vec::new(),
            boxes: vec![("base".into(), "tel:+1".into())],
            scopes: vec![Scope::Read],
            provision_boxes: false,
        }
    }

    #[test]
    fn owner_reads_own_box_only() {
        let p = principal(false);
        assert!(authorize(&p, Operation::ObjectGet, Target::Box { store: "base", address: "tel:+1" }).is_ok());
        assert!(authorize(&p, Operation::ObjectGet, Target::Box { store: "base", address: "tel:+2" }).is_err());
        assert!(authorize(&p, Operation::ObjectGet, Target::Box { store: "other", address: "tel:+1" }).is_err());
    }

    #[test]
    fn scope_is_checked_before_box() {
        let p = principal(true);
        assert!(authorize(&p, Operation::ObjectGet, Target::Box { store: "base", address: "tel:+9" }).is_ok());
        assert!(matches!(
            authorize(&p, Operation::ObjectDelete, Target::Box { store: "base", address: "tel:+1" }),
            Err(Error::Forbidden { reason }) if reason.contains("oma_rest_nms.modify")
        ));
    }

    #[test]
    fn scopes_parse_and_unknown_ones_are_none() {
        assert_eq!(Scope::parse("oma_rest_nms.all_v1"), Some(Scope::All));
        assert_eq!(Scope::parse("oma_rest_nms.subscription"), Some(Scope::Subscription));
        assert_eq!(Scope::parse("openid"), None);
        assert_eq!(Scope::parse("OMA_REST_NMS.READ"), None);
    }

    #[test]
    fn digest_uri_matching() {
        assert!(uri_matches("/nms/v1/base/tel%3A%2B1/objects", "/nms/v1/base/tel%3A%2B1/objects"));
        assert!(uri_matches("/nms/v1/base/tel:+1/objects", "/nms/v1/base/tel%3A+1/objects"));
        assert!(uri_matches("http://h:1/a?b=c", "/a?b=c"));
        assert!(!uri_matches("/a", "/b"));
        assert!(!uri_matches("/a?x=1", "/a?x=2"));
    }

    #[test]
    fn password_round_trip() {
        let h = hash_password("secret").expect("hash");
        assert!(verify_password("secret", &h));
        assert!(!verify_password("Secret", &h));
        assert!(!verify_password("x", DUMMY_HASH) || DUMMY_HASH.is_empty());
    }
}
