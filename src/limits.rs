//! Per-principal limits kept in memory: the request rate (a token bucket per principal) and
//! the long polls a principal holds open.
//!
//! Both are checked once the caller is authenticated, by one call each:
//! [`Throttle::admit`] from the `Access` extractor (box API) and from the notification
//! channel handlers, and [`Throttle::open_poll`] from the long-poll handler. They live
//! outside `auth` so that how a principal is authenticated and how it is throttled change
//! independently.
//!
//! No global lock: the buckets and the poll counts are `DashMap`s (sharded locks, held only
//! for the arithmetic). A bucket that has been idle long enough to be full again is the same
//! as no bucket, so such buckets are evicted by a sweep that one caller at a time runs, at
//! most every [`SWEEP_EVERY`]; memory is bounded by the principals active in that window.
//!
//! The counts are per process: with several nodes behind a load balancer each node allows
//! its own rate and its own polls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::auth::Principal;
use crate::config::LimitSettings;
use crate::error::{Error, Result};

/// How often, at most, idle buckets are evicted.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// One principal's token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by principal name: `rate` tokens per second up to `burst`; a request takes
/// one token.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: DashMap<String, Bucket>,
    start: Instant,
    /// Milliseconds after `start` when the next sweep is due.
    next_sweep_ms: AtomicU64,
}

impl RateLimiter {
    /// `rate` tokens per second (0: every request is admitted), buckets of `burst` tokens.
    pub fn new(rate: f64, burst: u32) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 0.0 };
        Self {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: DashMap::new(),
            start: Instant::now(),
            next_sweep_ms: AtomicU64::new(SWEEP_EVERY.as_millis() as u64),
        }
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
        let fresh = Bucket { tokens: self.burst, at: now };
        match self.buckets.get_mut(key) {
            Some(mut b) => self.take(&mut b, now),
            None => self.take(&mut self.buckets.entry(key.to_string()).or_insert(fresh), now),
        }
    }

    fn take(&self, b: &mut Bucket, now: Instant) -> std::result::Result<(), u64> {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.rate;
            Err((wait.ceil() as u64).max(1))
        }
    }

    /// How long an idle bucket takes to be full again (after which it can go).
    fn refill_time(&self) -> Duration {
        // A tiny rate makes this huge: cap it (a day) rather than overflow.
        Duration::try_from_secs_f64(self.burst / self.rate)
            .unwrap_or(Duration::from_secs(86_400))
            .min(Duration::from_secs(86_400))
    }

    /// Run the sweep if it is due and no other caller has claimed it.
    fn maybe_sweep(&self, now: Instant) {
        let at = now.saturating_duration_since(self.start).as_millis() as u64;
        let due = self.next_sweep_ms.load(Ordering::Relaxed);
        if at < due {
            return;
        }
        let next = at.saturating_add(SWEEP_EVERY.as_millis() as u64);
        if self.next_sweep_ms.compare_exchange(due, next, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            self.sweep(now);
        }
    }

    /// Drop the buckets that are full again by `now` (idle for the refill time).
    pub fn sweep(&self, now: Instant) {
        let idle = self.refill_time();
        self.buckets.retain(|_, b| now.saturating_duration_since(b.at) < idle);
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
            Error::TooManyRequests {
                what: "too many requests",
                key: "limits.rate_per_sec",
                limit: format!("{} per second, bursts of {}", self.rate_per_sec, self.burst),
                retry_after_secs,
            }
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
}
