//! Limits kept in memory: the request rate of each principal (a token bucket per
//! principal), the long polls a principal holds open, and failed authentications (token
//! buckets per source address and per login name).
//!
//! The per-principal limits are checked once the caller is authenticated, by one call each:
//! [`Throttle::admit`] from the `Access` extractor (box API) and from the notification
//! channel handlers, and [`Throttle::open_poll`] from the long-poll handler. They live
//! outside `auth` so that how a principal is authenticated and how it is throttled change
//! independently. [`LoginThrottle`] is consulted by the authenticator itself, between
//! reading credentials and checking them, so that a throttled attempt costs no password check.
//!
//! No global lock: the buckets and the poll counts are `DashMap`s (sharded locks, held only
//! for the arithmetic). A bucket that has been idle long enough to be full again is the same
//! as no bucket, so such buckets are evicted by a sweep that one caller at a time runs, at
//! most every [`SWEEP_EVERY`]; memory is bounded by the keys active in that window.
//!
//! The counts are per process: with several nodes behind a load balancer each node allows
//! its own rate and its own polls (docs/deployment.md says what follows and what to do).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::config::{AuthFailureSettings, LimitSettings};
use crate::error::{Error, Result};

/// How often, at most, idle buckets are evicted.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How often, at most, refused logins are reported at warn level.
pub const REFUSALS_REPORTED_EVERY: Duration = Duration::from_secs(60);

/// When a periodic task (an eviction sweep, a report) is next due; the first caller past
/// that time runs it.
struct SweepClock {
    start: Instant,
    every_ms: u64,
    /// Milliseconds after `start` when the task is next due.
    next_ms: AtomicU64,
}

impl SweepClock {
    /// Due every [`SWEEP_EVERY`], the first time one period from now.
    fn new() -> Self {
        Self::every(SWEEP_EVERY, SWEEP_EVERY)
    }

    /// Due every `every`, the first time after `first`.
    fn every(every: Duration, first: Duration) -> Self {
        Self {
            start: Instant::now(),
            every_ms: every.as_millis() as u64,
            next_ms: AtomicU64::new(first.as_millis() as u64),
        }
    }

    /// Whether the task is due at `now` and this caller has claimed it.
    fn claim(&self, now: Instant) -> bool {
        let at = now.saturating_duration_since(self.start).as_millis() as u64;
        let due = self.next_ms.load(Ordering::Relaxed);
        if at < due {
            return false;
        }
        let next = at.saturating_add(self.every_ms);
        self.next_ms.compare_exchange(due, next, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }
}

/// One key's token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key: `rate` tokens per second up to `burst`. [`RateLimiter::admit`]
/// takes a token when there is one; [`RateLimiter::give_back_at`] returns one taken for a
/// cost that did not come to pass (a login attempt that succeeded).
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: DashMap<String, Bucket>,
    sweeps: SweepClock,
}

impl RateLimiter {
    /// `rate` tokens per second (0: every request is admitted), buckets of `burst` tokens.
    pub fn new(rate: f64, burst: u32) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 0.0 };
        Self { rate, burst: f64::from(burst.max(1)), buckets: DashMap::new(), sweeps: SweepClock::new() }
    }

    /// Whether the limiter refuses anything at all.
    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Take a token for `key` now: `Ok`, or `Err(seconds)` until one is available (at least
    /// 1, rounded up, as `Retry-After` wants whole seconds).
    pub fn admit(&self, key: &str) -> std::result::Result<(), u64> {
        self.admit_at(key, Instant::now())
    }

    /// [`RateLimiter::admit`] at a given instant (tests drive the clock).
    pub fn admit_at(&self, key: &str, now: Instant) -> std::result::Result<(), u64> {
        if !self.enabled() {
            return Ok(());
        }
        self.maybe_sweep(now);
        self.update(key, now, |b| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                Ok(())
            } else {
                Err(self.wait(b.tokens))
            }
        })
    }

    /// Return a token taken from `key` (never beyond `burst`). A bucket that is gone was
    /// full again anyway.
    pub fn give_back_at(&self, key: &str, now: Instant) {
        if let Some(mut b) = self.buckets.get_mut(key) {
            b.tokens = (self.refilled(&b, now) + 1.0).min(self.burst);
            b.at = now;
        }
    }

    /// Refill `key`'s bucket (a new one is full) to `now` and apply `f` to it.
    fn update<T>(&self, key: &str, now: Instant, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let fresh = Bucket { tokens: self.burst, at: now };
        let mut b = match self.buckets.get_mut(key) {
            Some(b) => b,
            None => self.buckets.entry(key.to_string()).or_insert(fresh),
        };
        b.tokens = self.refilled(&b, now);
        b.at = now;
        f(&mut b)
    }

    /// The tokens of `b` at `now`.
    fn refilled(&self, b: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * self.rate).min(self.burst)
    }

    /// Whole seconds until a bucket holding `tokens` has one.
    fn wait(&self, tokens: f64) -> u64 {
        let wait = (1.0 - tokens) / self.rate;
        (wait.ceil() as u64).max(1)
    }

    /// How long an empty bucket takes to be full again: a bucket idle that long can go.
    fn refill_time(&self) -> Duration {
        // A tiny rate makes this huge: cap it (a day) rather than overflow.
        Duration::try_from_secs_f64(self.burst / self.rate)
            .unwrap_or(Duration::from_secs(86_400))
            .min(Duration::from_secs(86_400))
    }

    /// Run the sweep if it is due and no other caller has claimed it.
    fn maybe_sweep(&self, now: Instant) {
        if self.sweeps.claim(now) {
            self.sweep(now);
        }
    }

    /// Drop the buckets that are full again by `now` (idle for the refill time).
    pub fn sweep(&self, now: Instant) {
        self.buckets.retain(|_, b| now.saturating_duration_since(b.at) < self.refill_time());
    }

    /// How many buckets are held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

type OpenPolls = DashMap<String, Vec<(String, u64)>>;

/// The long polls each principal holds open, by channel.
pub struct PollSlots {
    max: u32,
    open: Arc<OpenPolls>,
    tickets: AtomicU64,
}

/// An open long poll; dropping it (the poll answered, or its client went away) frees the
/// slot.
pub struct PollSlot {
    open: Option<(Arc<OpenPolls>, String, u64)>,
}

impl PollSlots {
    /// At most `max` channels polled at once per principal (0: no limit).
    pub fn new(max: u32) -> Self {
        Self { max, open: Arc::new(DashMap::new()), tickets: AtomicU64::new(0) }
    }

    /// Register a poll of `channel` by `principal`: `None` if that would make more than
    /// `max` distinct channels polled at once. A poll of a channel already being polled is
    /// always let in: it replaces the older one (which then ends with 409 SVC1012).
    pub fn acquire(&self, principal: &str, channel: &str) -> Option<PollSlot> {
        if self.max == 0 {
            return Some(PollSlot { open: None });
        }
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let mut polls = self.open.entry(principal.to_string()).or_default();
        let same_channel = polls.iter().any(|(c, _)| c == channel);
        if !same_channel {
            let mut channels: Vec<&str> = polls.iter().map(|(c, _)| c.as_str()).collect();
            channels.sort_unstable();
            channels.dedup();
            if channels.len() >= self.max as usize {
                return None;
            }
        }
        polls.push((channel.to_string(), ticket));
        Some(PollSlot { open: Some((self.open.clone(), principal.to_string(), ticket)) })
    }

    /// How many polls `principal` has open (for tests).
    pub fn open_polls(&self, principal: &str) -> usize {
        self.open.get(principal).map_or(0, |v| v.len())
    }

    /// How many principals have polls open (for tests).
    pub fn principals(&self) -> usize {
        self.open.len()
    }
}

impl Drop for PollSlot {
    fn drop(&mut self) {
        let Some((open, principal, ticket)) = self.open.take() else { return };
        let empty = match open.get_mut(&principal) {
            Some(mut polls) => {
                polls.retain(|(_, t)| *t != ticket);
                polls.is_empty()
            }
            None => false,
        };
        if empty {
            open.remove_if(&principal, |_, polls| polls.is_empty());
        }
    }
}

/// The per-principal limits of one server.
pub struct Throttle {
    rate: RateLimiter,
    polls: PollSlots,
    limit_services: bool,
    rate_per_sec: f64,
    burst: u32,
    max_polls: u32,
    /// `Retry-After` for a refused poll: by then every poll open now has answered.
    poll_retry_secs: u64,
}

impl Throttle {
    pub fn new(limits: &LimitSettings, long_poll_secs: u64) -> Self {
        Self {
            rate: RateLimiter::new(limits.rate_per_sec, limits.rate_burst),
            polls: PollSlots::new(limits.max_polls_per_principal),
            limit_services: limits.rate_limit_services,
            rate_per_sec: limits.rate_per_sec,
            burst: limits.rate_burst,
            max_polls: limits.max_polls_per_principal,
            poll_retry_secs: long_poll_secs.max(1),
        }
    }

    /// Count one request of an authenticated principal against its rate: 429 POL0001 with
    /// `Retry-After` when its bucket is empty. Service accounts pass unless
    /// `limits.rate_limit_services`.
    pub fn admit(&self, principal: &Principal) -> Result<()> {
        if principal.is_service && !self.limit_services {
            return Ok(());
        }
        self.rate.admit(&principal.name).map_err(|retry_after_secs| {
            tracing::debug!(principal = %principal.name, retry_after_secs, "rate limited");
            bucket_refusal("too many requests", "limits.rate_per_sec", self.rate_per_sec, self.burst, retry_after_secs)
        })
    }

    /// Open a long poll of `channel`: the slot is held until the returned guard drops; 429
    /// POL0001 (with `Retry-After`: the long-poll timeout) when the principal already polls
    /// `limits.max_polls_per_principal` other channels.
    pub fn open_poll(&self, principal: &Principal, channel: &str) -> Result<PollSlot> {
        self.polls.acquire(&principal.name, channel).ok_or_else(|| {
            tracing::debug!(principal = %principal.name, "too many open long polls");
            Error::TooManyRequests {
                what: "too many open long polls",
                key: "limits.max_polls_per_principal",
                limit: format!("at most {} channels polled at once", self.max_polls),
                retry_after_secs: self.poll_retry_secs,
            }
        })
    }
}

/// Who is trying to authenticate, as [`LoginThrottle`] counts it: the source address (an
/// IPv6 address by its /64, which one subscriber line usually holds whole), the login name
/// (by a hash, so that long made-up names cost no memory), and the pair of both.
#[derive(Clone, Debug, Default)]
pub struct LoginKeys {
    address: Option<String>,
    name: Option<String>,
    pair: Option<String>,
}

/// Failed authentications, throttled before any password is checked.
///
/// Two token buckets that only failures drain: one per source address
/// (`limits.auth_failures.address_*`), one per login name (`name_*`, failures from every
/// address together). An attempt goes ahead only while both hold a token; otherwise it is
/// refused with 429 and `Retry-After`, whatever the credentials, without a password check.
/// A name's *known* addresses (where it logged in within `known_address_secs`) are the
/// exception: there the name has a bucket of its own, sized like an address's, instead of
/// both. So an attacker guessing one name from many addresses empties the name's bucket
/// and locks out only new addresses, not the devices the subscriber already uses, and an
/// attacker sharing an address (a NAT) with a subscriber does not lock the subscriber out.
///
/// An attempt takes its tokens when it starts ([`LoginThrottle::begin`]) and gives them
/// back if it succeeds or is forgiven: the verdict comes later, and attempts under way at
/// the same time must not all pass on the same tokens. So at most as many attempts are
/// under way as their buckets hold failures, and one address alone takes from a name's
/// bucket no more than its own bucket holds.
pub struct LoginThrottle {
    settings: AuthFailureSettings,
    /// Buckets by address, and by (name, known address) pair.
    addresses: RateLimiter,
    names: RateLimiter,
    /// Known (name, address) pairs, until when.
    known: DashMap<String, Instant>,
    known_for: Duration,
    sweeps: SweepClock,
    /// Attempts refused since the last report, and when the next report is due.
    refused: AtomicU64,
    reports: SweepClock,
}

/// One login attempt under way, holding the tokens it took. Dropped, it gives them back,
/// unless the credentials are being checked ([`LoginAttempt::checking`]): from then on it
/// counts as a failure unless it is marked [`LoginAttempt::succeeded`] or
/// [`LoginAttempt::forgiven`], so a check whose client went away before the verdict counts
/// too (its work was done).
pub struct LoginAttempt<'a> {
    throttle: &'a LoginThrottle,
    pair: Option<String>,
    taken: Taken,
    counts: bool,
}

/// The buckets an attempt took a token from.
#[derive(Debug)]
enum Taken {
    /// The bucket of a name at one of its known addresses.
    Pair(String),
    /// The address's and the name's (either may be absent).
    Both { address: Option<String>, name: Option<String> },
}

impl LoginThrottle {
    pub fn new(s: &AuthFailureSettings) -> Self {
        let addresses = RateLimiter::new(s.address_per_sec, s.address_burst);
        // A known address's bucket is an address bucket: with those off (all clients behind
        // one proxy look alike), no address is known, or a name known at the proxy's address
        // would escape its own bucket everywhere. (At most a year, so `now + known_for`
        // cannot overflow.)
        let known_secs = if addresses.enabled() { s.known_address_secs.min(365 * 86_400) } else { 0 };
        Self {
            settings: s.clone(),
            addresses,
            names: RateLimiter::new(s.name_per_sec, s.name_burst),
            known: DashMap::new(),
            known_for: Duration::from_secs(known_secs),
            sweeps: SweepClock::new(),
            refused: AtomicU64::new(0),
            reports: SweepClock::every(REFUSALS_REPORTED_EVERY, Duration::ZERO),
        }
    }

    /// A throttle that refuses nothing.
    pub fn off() -> Self {
        Self::new(&AuthFailureSettings {
            address_per_sec: 0.0,
            name_per_sec: 0.0,
            known_address_secs: 0,
            ..Default::default()
        })
    }

    /// The keys of an attempt from `peer` for `name` (Basic and Digest name one; a bearer
    /// token does not, before it is verified).
    pub fn keys(&self, peer: Option<IpAddr>, name: Option<&str>) -> LoginKeys {
        if !self.addresses.enabled() && !self.names.enabled() {
            return LoginKeys::default();
        }
        let address = peer.map(address_key);
        let name = name.map(|n| hex::encode(&Sha256::digest(n.as_bytes())[..16]));
        let pair = match (&name, &address) {
            (Some(n), Some(a)) => Some(format!("{n}@{a}")),
            _ => None,
        };
        LoginKeys { address, name, pair }
    }

    /// Start an attempt with these keys, taking a token from each of its buckets: 429
    /// POL0001 with `Retry-After` when its address or its name has no failures left (then
    /// nothing is taken).
    pub fn begin(&self, keys: &LoginKeys) -> Result<LoginAttempt<'_>> {
        self.begin_at(keys, Instant::now())
    }

    /// Count a failure known without an attempt (a forged bearer token): 429 as for
    /// [`LoginThrottle::begin`] when the buckets have none left.
    pub fn failed(&self, keys: &LoginKeys) -> Result<()> {
        let mut attempt = self.begin(keys)?;
        attempt.checking();
        Ok(())
    }

    fn begin_at(&self, keys: &LoginKeys, now: Instant) -> Result<LoginAttempt<'_>> {
        let s = &self.settings;
        let by_address = ("limits.auth_failures.address_per_sec", s.address_per_sec, s.address_burst);
        let by_name = ("limits.auth_failures.name_per_sec", s.name_per_sec, s.name_burst);
        let taken = match self.known_pair(keys, now) {
            Some(pair) => self
                .addresses
                .admit_at(pair, now)
                .map(|()| Taken::Pair(pair.to_string()))
                .map_err(|secs| ("too many failed logins for this name from this address", by_address, secs)),
            None => self.take_both(keys, now).map_err(|(by_name_bucket, secs)| {
                if by_name_bucket {
                    ("too many failed logins for this name", by_name, secs)
                } else {
                    ("too many failed logins from this address", by_address, secs)
                }
            }),
        };
        match taken {
            Ok(taken) => Ok(LoginAttempt { throttle: self, pair: keys.pair.clone(), taken, counts: false }),
            Err((what, (key, rate, burst), secs)) => {
                // Under attack there is one of these per attempt: debug only, and a warning
                // that sums them up at most every REFUSALS_REPORTED_EVERY.
                tracing::debug!(address = keys.address.as_deref().unwrap_or("-"), what, "login throttled");
                if let Some(refused) = self.report_refusal(now) {
                    tracing::warn!(
                        refused,
                        "logins refused as too many failed ones (limits.auth_failures) since the last such report"
                    );
                }
                Err(bucket_refusal(what, key, rate, burst, secs))
            }
        }
    }

    /// Count a refused attempt: the refusals to report now, if a report is due.
    fn report_refusal(&self, now: Instant) -> Option<u64> {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.reports.claim(now).then(|| self.refused.swap(0, Ordering::Relaxed))
    }

    /// A token from the address's bucket and one from the name's, or neither: `Err` says
    /// whether the name's was empty, and the seconds until it has one.
    fn take_both(&self, keys: &LoginKeys, now: Instant) -> std::result::Result<Taken, (bool, u64)> {
        if let Some(address) = &keys.address {
            self.addresses.admit_at(address, now).map_err(|secs| (false, secs))?;
        }
        if let Some(name) = &keys.name
            && let Err(secs) = self.names.admit_at(name, now)
        {
            if let Some(address) = &keys.address {
                self.addresses.give_back_at(address, now);
            }
            return Err((true, secs));
        }
        Ok(Taken::Both { address: keys.address.clone(), name: keys.name.clone() })
    }

    fn give_back(&self, taken: &Taken, now: Instant) {
        match taken {
            Taken::Pair(pair) => self.addresses.give_back_at(pair, now),
            Taken::Both { address, name } => {
                if let Some(address) = address {
                    self.addresses.give_back_at(address, now);
                }
                if let Some(name) = name {
                    self.names.give_back_at(name, now);
                }
            }
        }
    }

    /// The pair key, when the name is known at the address.
    fn known_pair<'k>(&self, keys: &'k LoginKeys, now: Instant) -> Option<&'k str> {
        let pair = keys.pair.as_deref()?;
        self.known.get(pair).is_some_and(|until| *until > now).then_some(pair)
    }

    /// Make `pair` (a name at an address) known from `now`.
    fn known_from(&self, pair: &str, now: Instant) {
        if self.known_for.is_zero() {
            return;
        }
        let until = now + self.known_for;
        match self.known.get_mut(pair) {
            Some(mut entry) => *entry = until,
            None => {
                self.known.insert(pair.to_string(), until);
            }
        }
        if self.sweeps.claim(now) {
            self.known.retain(|_, until| *until > now);
        }
    }

    #[cfg(test)]
    fn known_pairs(&self) -> usize {
        self.known.len()
    }
}

impl LoginAttempt<'_> {
    /// The credentials are being checked: from now on the attempt is a failure unless it
    /// succeeds or is forgiven.
    pub fn checking(&mut self) {
        self.counts = true;
    }

    /// The credentials were right: nothing is counted, and the address becomes known for
    /// the name.
    pub fn succeeded(mut self) {
        self.counts = false;
        if let Some(pair) = &self.pair {
            self.throttle.known_from(pair, Instant::now());
        }
    }

    /// The check failed, but not for a guess or junk (a bearer token that merely expired,
    /// see `TokenError::is_forgery`): nothing is counted.
    pub fn forgiven(mut self) {
        self.counts = false;
    }
}

impl Drop for LoginAttempt<'_> {
    /// Give the tokens back, unless the attempt failed.
    fn drop(&mut self) {
        if !self.counts {
            self.throttle.give_back(&self.taken, Instant::now());
        }
    }
}

/// The bucket key of a source address: IPv4 as it is (also when mapped into IPv6), IPv6 by
/// its /64.
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The 429 of a token bucket: `what` was refused by the setting `key` (`rate` per second,
/// bursts of `burst`).
fn bucket_refusal(what: &'static str, key: &'static str, rate: f64, burst: u32, retry_after_secs: u64) -> Error {
    Error::TooManyRequests { what, key, limit: format!("{rate} per second, bursts of {burst}"), retry_after_secs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_the_rate() {
        let r = RateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.admit_at("a", t0), Ok(()));
        }
        // Empty: one token comes back in half a second, which is announced as 1 s.
        assert_eq!(r.admit_at("a", t0), Err(1));
        // Other principals have their own bucket.
        assert_eq!(r.admit_at("b", t0), Ok(()));
        assert_eq!(r.admit_at("a", t0 + Duration::from_millis(500)), Ok(()));
        assert_eq!(r.admit_at("a", t0 + Duration::from_millis(500)), Err(1));
        // Idle for long, the bucket is full again, never fuller.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert_eq!(r.admit_at("a", later), Ok(()));
        }
        assert!(r.admit_at("a", later).is_err());
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let r = RateLimiter::new(0.25, 1);
        let t0 = Instant::now();
        assert_eq!(r.admit_at("a", t0), Ok(()));
        assert_eq!(r.admit_at("a", t0), Err(4));
        assert_eq!(r.admit_at("a", t0 + Duration::from_millis(2500)), Err(2));
        assert_eq!(r.admit_at("a", t0 + Duration::from_secs(4)), Ok(()));
    }

    #[test]
    fn off_at_rate_zero() {
        let r = RateLimiter::new(0.0, 1);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(r.admit_at("a", t0), Ok(()));
        }
        assert!(r.is_empty());
    }

    #[test]
    fn idle_buckets_are_evicted() {
        let r = RateLimiter::new(10.0, 5);
        let t0 = Instant::now();
        for i in 0..100 {
            let _ = r.admit_at(&format!("p{i}"), t0);
        }
        assert_eq!(r.len(), 100);
        // Half a second (the refill time) later, every bucket is full: none is kept.
        let _ = r.admit_at("p0", t0 + Duration::from_millis(100));
        r.sweep(t0 + Duration::from_millis(500));
        assert_eq!(r.len(), 1, "p0 was used more recently");
        r.sweep(t0 + Duration::from_secs(1));
        assert!(r.is_empty());
        // The sweep runs by itself once due.
        let r = RateLimiter::new(10.0, 5);
        let _ = r.admit_at("old", t0);
        let _ = r.admit_at("new", t0 + SWEEP_EVERY + Duration::from_secs(1));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn poll_slots_count_channels_per_principal() {
        let slots = PollSlots::new(2);
        let a = slots.acquire("alice", "c1").unwrap();
        let b = slots.acquire("alice", "c2").unwrap();
        assert!(slots.acquire("alice", "c3").is_none(), "a third channel");
        // A newer poll of a polled channel replaces the older one: let in.
        let a2 = slots.acquire("alice", "c1").unwrap();
        assert!(slots.acquire("bob", "c9").is_some(), "others have their own count");
        drop(a);
        assert!(slots.acquire("alice", "c3").is_none(), "c1 is still polled (a2)");
        drop(a2);
        let c = slots.acquire("alice", "c3").unwrap();
        drop((b, c));
        assert_eq!(slots.open_polls("alice"), 0);
        assert_eq!(slots.principals(), 0, "nothing kept for principals without polls");
        let unlimited = PollSlots::new(0);
        let all: Vec<_> = (0..50).map(|i| unlimited.acquire("alice", &format!("c{i}")).unwrap()).collect();
        assert_eq!(all.len(), 50);
        assert_eq!(unlimited.principals(), 0);
    }

    #[test]
    fn a_token_given_back_is_there_again_but_never_beyond_the_burst() {
        let r = RateLimiter::new(1.0, 2);
        let t0 = Instant::now();
        r.give_back_at("a", t0);
        assert!(r.is_empty(), "no bucket: full already");
        assert_eq!(r.admit_at("a", t0), Ok(()));
        assert_eq!(r.admit_at("a", t0), Ok(()));
        assert_eq!(r.admit_at("a", t0), Err(1));
        r.give_back_at("a", t0);
        assert_eq!(r.admit_at("a", t0), Ok(()));
        assert_eq!(r.admit_at("a", t0), Err(1));
        // Refilled to the burst meanwhile: what is given back is not kept.
        let later = t0 + Duration::from_secs(10);
        r.give_back_at("a", later);
        for _ in 0..2 {
            assert_eq!(r.admit_at("a", later), Ok(()));
        }
        assert!(r.admit_at("a", later).is_err());
    }

    fn login_limits(address_burst: u32, name_burst: u32) -> AuthFailureSettings {
        AuthFailureSettings {
            address_per_sec: 1.0,
            address_burst,
            name_per_sec: 1.0,
            name_burst,
            known_address_secs: 3600,
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    /// A failed attempt with `keys` at `now` (panics if it is refused).
    fn fail(t: &LoginThrottle, keys: &LoginKeys, now: Instant) {
        t.begin_at(keys, now).unwrap().checking();
    }

    #[test]
    fn failures_are_counted_per_address_and_per_name() {
        let t = LoginThrottle::new(&login_limits(2, 3));
        let now = Instant::now();
        let alice_a = t.keys(ip("192.0.2.1"), Some("alice"));
        for _ in 0..2 {
            fail(&t, &alice_a, now);
        }
        let refused = t.begin_at(&alice_a, now).err().unwrap();
        assert!(refused.to_string().contains("from this address"), "{refused}");
        // The address is throttled for every name; the name only from other addresses once
        // its own bucket is empty.
        assert!(t.begin_at(&t.keys(ip("192.0.2.1"), Some("bob")), now).is_err());
        fail(&t, &t.keys(ip("192.0.2.2"), Some("alice")), now);
        let elsewhere = t.keys(ip("192.0.2.3"), Some("alice"));
        let refused = t.begin_at(&elsewhere, now).err().unwrap();
        assert!(refused.to_string().contains("for this name"), "{refused}");
        assert!(matches!(refused, Error::TooManyRequests { retry_after_secs: 1, .. }));
        // Refused by the name, the attempt took nothing from its address.
        assert!(t.begin_at(&t.keys(ip("192.0.2.3"), Some("bob")), now).is_ok());
        // A bearer token names nobody: only its address counts.
        assert!(t.begin_at(&t.keys(ip("192.0.2.3"), None), now).is_ok());
    }

    #[test]
    fn attempts_under_way_hold_their_tokens() {
        let t = LoginThrottle::new(&login_limits(2, 3));
        let now = Instant::now();
        let alice_a = t.keys(ip("192.0.2.1"), Some("alice"));
        // Forty at once from one address: two go ahead, on the address's two tokens.
        let under_way: Vec<_> = (0..40).filter_map(|_| t.begin_at(&alice_a, now).ok()).collect();
        assert_eq!(under_way.len(), 2);
        for mut a in under_way {
            a.checking();
        }
        // They failed: alice's name has one failure left for a new address.
        let alice_b = t.keys(ip("192.0.2.2"), Some("alice"));
        let attempt = t.begin_at(&alice_b, now).unwrap();
        assert!(t.begin_at(&t.keys(ip("192.0.2.3"), Some("alice")), now).is_err(), "held by the attempt");
        // A success (or forgiveness, or no check at all) gives the tokens back.
        attempt.succeeded();
        t.begin_at(&t.keys(ip("192.0.2.3"), Some("alice")), now).unwrap().forgiven();
        drop(t.begin_at(&t.keys(ip("192.0.2.4"), Some("alice")), now).unwrap());
        fail(&t, &t.keys(ip("192.0.2.5"), Some("alice")), now);
        assert!(t.begin_at(&t.keys(ip("192.0.2.6"), Some("alice")), now).is_err(), "that one counted");
    }

    #[test]
    fn a_known_address_has_its_own_bucket_for_the_name() {
        let t = LoginThrottle::new(&login_limits(2, 2));
        let now = Instant::now();
        let home = t.keys(ip("198.51.100.7"), Some("alice"));
        t.begin_at(&home, now).unwrap().succeeded();
        assert_eq!(t.known_pairs(), 1);
        // Guesses for alice from elsewhere empty her name's bucket; others' failures empty
        // the shared address's bucket. Neither stops alice at home.
        for a in ["203.0.113.1", "203.0.113.2"] {
            fail(&t, &t.keys(ip(a), Some("alice")), now);
        }
        for _ in 0..2 {
            fail(&t, &t.keys(ip("198.51.100.7"), Some("mallory")), now);
        }
        assert!(t.begin_at(&t.keys(ip("203.0.113.3"), Some("alice")), now).is_err(), "a new address");
        assert!(t.begin_at(&t.keys(ip("198.51.100.7"), Some("bob")), now).is_err(), "the address");
        t.begin_at(&home, now).unwrap().succeeded();
        // Failures for alice at home are bounded by that pair's own bucket.
        fail(&t, &home, now);
        fail(&t, &home, now);
        assert!(t.begin_at(&home, now).is_err());
        // No address is known when none is to be, nor when addresses are not counted.
        let none = LoginThrottle::new(&AuthFailureSettings { known_address_secs: 0, ..login_limits(2, 2) });
        none.begin_at(&home, now).unwrap().succeeded();
        assert_eq!(none.known_pairs(), 0);
        let by_name = LoginThrottle::new(&AuthFailureSettings { address_per_sec: 0.0, ..login_limits(2, 2) });
        by_name.begin_at(&home, now).unwrap().succeeded();
        for _ in 0..2 {
            fail(&by_name, &home, now);
        }
        assert!(by_name.begin_at(&home, now).is_err(), "the name's bucket applies");
    }

    #[test]
    fn an_attempt_counts_once_checked_unless_it_succeeds_or_is_forgiven() {
        let t = LoginThrottle::new(&AuthFailureSettings { known_address_secs: 0, ..login_limits(1, 10) });
        let k = t.keys(ip("192.0.2.9"), Some("alice"));
        let mut a = t.begin(&k).unwrap();
        a.checking();
        a.succeeded();
        let mut a = t.begin(&k).unwrap();
        a.checking();
        a.forgiven();
        drop(t.begin(&k).unwrap());
        let mut a = t.begin(&k).unwrap();
        a.checking();
        drop(a);
        assert!(t.begin(&k).is_err(), "dropped without a verdict while checking: a failure");
        assert!(t.failed(&k).is_err(), "no failure left to count");
    }

    #[test]
    fn refusals_are_reported_at_once_then_summed_up_at_most_every_period() {
        let t = LoginThrottle::new(&login_limits(1, 10));
        let t0 = Instant::now();
        assert_eq!(t.report_refusal(t0), Some(1), "the first one at once");
        for _ in 0..5 {
            assert_eq!(t.report_refusal(t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(t.report_refusal(t0 + REFUSALS_REPORTED_EVERY + Duration::from_secs(1)), Some(6));
        assert_eq!(t.report_refusal(t0 + REFUSALS_REPORTED_EVERY + Duration::from_secs(2)), None);
    }

    #[test]
    fn addresses_are_keyed_ipv4_as_is_and_ipv6_by_64() {
        assert_eq!(address_key("192.0.2.1".parse().unwrap()), "192.0.2.1");
        assert_eq!(address_key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
        assert_eq!(address_key("2001:db8:1:2:3:4:5:6".parse().unwrap()), "2001:db8:1:2::/64");
        assert_eq!(address_key("2001:db8:1:2::9".parse().unwrap()), "2001:db8:1:2::/64");
        let t = LoginThrottle::new(&login_limits(1, 10));
        t.failed(&t.keys(ip("2001:db8:1:2::1"), None)).unwrap();
        assert!(t.begin(&t.keys(ip("2001:db8:1:2::2"), None)).is_err(), "the same /64");
        assert!(t.begin(&t.keys(ip("2001:db8:1:3::1"), None)).is_ok());
    }

    #[test]
    fn the_off_throttle_refuses_nothing() {
        let t = LoginThrottle::off();
        let k = t.keys(ip("192.0.2.1"), Some("alice"));
        for _ in 0..100 {
            t.failed(&k).unwrap();
        }
        assert!(t.begin(&k).is_ok());
    }
}
