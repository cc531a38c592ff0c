//! Opaque bearer tokens, by OAuth 2.0 token introspection (RFC 7662).
//!
//! Deployed RCS clients present tokens that are not JWTs (`Bearer PAT_...`, or `SIT ...`
//! from another client family): only the operator's authorization server knows what they
//! stand for. Each configured endpoint
//! (`[[auth.bearer.introspection]]`) is asked about the tokens that start with its
//! `token_prefix`: a form `POST` of `token=...&token_type_hint=access_token`, the server
//! authenticating with HTTP Basic as `client_id`/`client_secret` (form-encoded first, RFC
//! 6749 2.3.1). A JWT naming a trusted issuer is never sent (its signature decides).
//!
//! The answer is judged like a JWT's claims: `active` must be `true`; `exp` (when given)
//! not passed and `nbf` not in the future, with `auth.bearer.leeway_secs`; `aud` (when
//! given, and audiences are configured) must name one of `auth.bearer.audiences`. Its
//! `scope`, `sub`/`username`/`phone_number` and `client_id` then make the principal by the
//! same [`ClaimRules`] as a JWT's claims, named `bearer:{iss}#{sub}` (`iss` the answer's,
//! else the endpoint URL).
//!
//! Verdicts are remembered under a SHA-256 of the token, never the token: an active one
//! until the token's `exp` but at most `cache_secs`, an inactive one at most
//! [`INACTIVE_SECS`] of that, a failure not at all. Requests with the same token while it
//! is being introspected wait for that one answer (single flight). The map holds at most
//! [`MAX_ENTRIES`] verdicts: past that, expired ones go, then arbitrary ones (by hash, so
//! a client cannot choose which), so a flood of made-up tokens cannot grow it.
//!
//! An endpoint that fails, answers anything but 200 with a JSON object, or does not answer
//! within `http_timeout_secs` makes the request `503` (the token may be good);
//! [`TokenError::IntrospectionFailed`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::Principal;
use super::bearer::{ClaimRules, TokenError, check_fetch_url, http_client};
use crate::config::{BearerSettings, IntrospectionSettings};

/// Most verdicts an endpoint remembers.
pub const MAX_ENTRIES: usize = 100_000;
/// An inactive verdict is remembered at most this long (a client that is refused fetches a
/// new token, it does not wait for this one to become good).
pub const INACTIVE_SECS: u64 = 10;
/// Time limit of one introspection request when its endpoint sets none: a request waiting
/// on a hanging authorization server answers 503 soon.
pub const DEFAULT_TIMEOUT_SECS: u64 = 3;
/// Largest introspection answer read.
const MAX_ANSWER: usize = 64 * 1024;
/// Longest a verdict is remembered, whatever `cache_secs` says (so `now + ttl` cannot
/// overflow).
const MAX_CACHE_SECS: u64 = 86_400;

/// What an introspection decided, and until when it stands.
#[derive(Clone, Debug)]
struct Verdict {
    result: Result<Principal, TokenError>,
    until: Instant,
}

type Slot = Arc<OnceCell<Verdict>>;

/// Verdicts by token hash; a slot not yet filled is an introspection under way.
struct TokenCache {
    max: usize,
    slots: DashMap<[u8; 32], Slot>,
}

impl TokenCache {
    fn new(max: usize) -> Self {
        Self { max: max.max(1), slots: DashMap::new() }
    }

    /// The slot of `key`: a live verdict, an introspection under way, or a new empty slot.
    fn slot(&self, key: [u8; 32], now: Instant) -> Slot {
        if self.slots.len() >= self.max {
            self.evict(now);
        }
        match self.slots.entry(key) {
            Entry::Occupied(mut e) => {
                if e.get().get().is_some_and(|v| v.until <= now) {
                    let fresh = Slot::default();
                    e.insert(fresh.clone());
                    fresh
                } else {
                    e.get().clone()
                }
            }
            Entry::Vacant(e) => e.insert(Slot::default()).clone(),
        }
    }

    /// Forget `slot` once its verdict has lapsed (at once, for verdicts not to be kept).
    fn settle(&self, key: &[u8; 32], slot: &Slot, now: Instant) {
        if slot.get().is_some_and(|v| v.until <= now) {
            self.slots.remove_if(key, |_, s| Arc::ptr_eq(s, slot));
        }
    }

    /// Drop lapsed verdicts; if that is not enough, arbitrary ones down to nine tenths.
    fn evict(&self, now: Instant) {
        self.slots.retain(|_, s| s.get().is_none_or(|v| v.until > now));
        let over = self.slots.len().saturating_sub(self.max * 9 / 10);
        if over > 0 {
            let victims: Vec<[u8; 32]> = self.slots.iter().take(over).map(|e| *e.key()).collect();
            for k in victims {
                self.slots.remove(&k);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// One introspection endpoint.
pub(crate) struct Endpoint {
    url: String,
    /// `Basic base64(client_id:client_secret)`, marked sensitive.
    authorization: reqwest::header::HeaderValue,
    prefix: String,
    cache_secs: u64,
    leeway: u64,
    audiences: Vec<String>,
    http: reqwest::Client,
    cache: TokenCache,
    calls: AtomicU64,
}

impl Endpoint {
    pub(crate) fn new(e: &IntrospectionSettings, b: &BearerSettings) -> Result<Self, String> {
        if e.url.is_empty() {
            return Err("an introspection endpoint needs `url`".into());
        }
        check_fetch_url(&e.url)?;
        if e.client_id.is_empty() {
            return Err("an introspection endpoint needs `client_id` (and `client_secret`)".into());
        }
        let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials = format!("{}:{}", form(&e.client_id), form(&e.client_secret));
        let mut authorization = reqwest::header::HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        ))
        .map_err(|e| e.to_string())?;
        authorization.set_sensitive(true);
        Ok(Self {
            url: e.url.clone(),
            authorization,
            prefix: e.token_prefix.clone(),
            cache_secs: e.cache_secs.min(MAX_CACHE_SECS),
            leeway: b.leeway_secs,
            audiences: b.audiences.clone(),
            http: http_client(e.http_timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS))?,
            cache: TokenCache::new(MAX_ENTRIES),
            calls: AtomicU64::new(0),
        })
    }

    /// Whether `token` is for this endpoint (it has the prefix).
    pub(crate) fn takes(&self, token: &str) -> bool {
        token.starts_with(&self.prefix)
    }

    /// Introspections made (for tests and metrics).
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The principal of `token`, from the remembered verdict or one introspection shared by
    /// every request asking meanwhile.
    pub(crate) async fn verify(&self, token: &str, rules: &ClaimRules) -> Result<Principal, TokenError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let slot = self.cache.slot(key, Instant::now());
        let verdict = slot.get_or_init(|| self.introspect(token, rules)).await.clone();
        self.cache.settle(&key, &slot, Instant::now());
        verdict.result
    }

    async fn introspect(&self, token: &str, rules: &ClaimRules) -> Verdict {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let answer = match self.ask(token).await {
            Ok(a) => a,
            Err(detail) => {
                tracing::warn!(endpoint = %self.url, error = %detail, "token introspection failed");
                return Verdict { result: Err(TokenError::IntrospectionFailed(detail)), until: Instant::now() };
            }
        };
        let now = unix_now();
        let (result, ttl) = match self.judge(&answer, rules, now) {
            // Until the token's `exp` (when given), at most `cache_secs`.
            Ok((p, exp)) => (Ok(p), exp.map_or(self.cache_secs, |e| self.cache_secs.min(e.saturating_sub(now)))),
            Err(e) => (Err(e), self.cache_secs.min(INACTIVE_SECS)),
        };
        Verdict { result, until: Instant::now() + Duration::from_secs(ttl) }
    }

    /// Ask the endpoint about `token`: its answer, a JSON object.
    async fn ask(&self, token: &str) -> Result<Map<String, Value>, String> {
        use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let mut res = self
            .http
            .post(&self.url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        if res.status() != reqwest::StatusCode::OK {
            return Err(format!("{} answered {}", self.url, res.status()));
        }
        let mut buf = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| error_chain(&e))? {
            if buf.len() + chunk.len() > MAX_ANSWER {
                return Err(format!("{}: answer larger than {MAX_ANSWER} bytes", self.url));
            }
            buf.extend_from_slice(&chunk);
        }
        match serde_json::from_slice(&buf) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(format!("{}: the answer is not a JSON object", self.url)),
            Err(e) => Err(format!("{}: the answer is not JSON: {e}", self.url)),
        }
    }

    /// An answer to a principal (and the token's `exp`), or why the token is refused.
    fn judge(
        &self,
        answer: &Map<String, Value>,
        rules: &ClaimRules,
        now: u64,
    ) -> Result<(Principal, Option<u64>), TokenError> {
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err(TokenError::Inactive);
        }
        let time = |claim: &str| -> Result<Option<u64>, TokenError> {
            match answer.get(claim) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|t| t.is_finite() && *t >= 0.0)
                    .map(|t| Some(t as u64))
                    .ok_or_else(|| TokenError::Malformed(format!("claim {claim} has the wrong type"))),
            }
        };
        let exp = time("exp")?;
        if exp.is_some_and(|e| e.saturating_add(self.leeway) < now) {
            return Err(TokenError::Expired);
        }
        if time("nbf")?.is_some_and(|n| n > now.saturating_add(self.leeway)) {
            return Err(TokenError::NotYetValid);
        }
        if !self.audiences.is_empty()
            && let Some(aud) = answer.get("aud")
        {
            let named = match aud {
                Value::String(a) => vec![a.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !named.iter().any(|a| self.audiences.iter().any(|x| x == a)) {
                return Err(TokenError::WrongAudience);
            }
        }
        let issuer = answer.get("iss").and_then(Value::as_str).filter(|i| !i.is_empty()).unwrap_or(&self.url);
        let principal = rules.principal(issuer, &Value::Object(answer.clone()), &["sub", "username"])?;
        Ok((principal, exp))
    }
}

/// An error with its sources (reqwest names the cause, a timeout or a refused connection,
/// only there).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

/// Seconds since the epoch.
fn unix_now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(cache: &TokenCache, key: [u8; 32], now: Instant, ttl: Duration) -> Slot {
        let slot = cache.slot(key, now);
        let verdict = Verdict { result: Err(TokenError::Inactive), until: now + ttl };
        assert!(slot.set(verdict).is_ok(), "a new slot is empty");
        slot
    }

    fn key(i: u32) -> [u8; 32] {
        Sha256::digest(i.to_be_bytes()).into()
    }

    #[test]
    fn the_cache_stays_bounded_under_a_flood_of_tokens() {
        let cache = TokenCache::new(100);
        let now = Instant::now();
        for i in 0..10_000 {
            filled(&cache, key(i), now, Duration::from_secs(60));
            assert!(cache.len() <= 100, "{} entries after {i}", cache.len());
        }
        // Lapsed verdicts are what goes first.
        let cache = TokenCache::new(10);
        for i in 0..9 {
            filled(&cache, key(i), now, Duration::ZERO);
        }
        filled(&cache, key(100), now, Duration::from_secs(60));
        filled(&cache, key(101), now, Duration::from_secs(60));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_live_verdict_is_shared_and_a_lapsed_one_replaced() {
        let cache = TokenCache::new(10);
        let now = Instant::now();
        let slot = filled(&cache, key(1), now, Duration::from_secs(60));
        assert!(Arc::ptr_eq(&slot, &cache.slot(key(1), now)));
        cache.settle(&key(1), &slot, now);
        assert_eq!(cache.len(), 1, "a live verdict stays");
        let later = now + Duration::from_secs(61);
        let fresh = cache.slot(key(1), later);
        assert!(!Arc::ptr_eq(&slot, &fresh) && fresh.get().is_none());
        // A verdict not to be kept is forgotten once read, but only its own slot.
        cache.settle(&key(1), &slot, later);
        assert_eq!(cache.len(), 1, "another slot of the key is not removed");
        let failed = Verdict { result: Err(TokenError::IntrospectionFailed("x".into())), until: later };
        assert!(fresh.set(failed).is_ok());
        cache.settle(&key(1), &fresh, later);
        assert_eq!(cache.len(), 0);
    }
}
