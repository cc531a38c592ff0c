//! Subscriptions (NMS 6.17-6.19) delivered through long-polling notification channels
//! (OMA Notification Channel) or to webhooks.
//!
//! Notifications are computed from the database: a subscription keeps its position (box
//! validity and modseq) and the index of its next list. Building a list replays the box
//! from the position, applies the filter (to every event but `resetBox`; deletions are
//! tested as their tombstones remember the item), and moves the position and consumes the
//! index in one compare-and-set, so two pollers never hand out the same index and nothing
//! is lost across restarts. Indexes start at 1, grow by exactly one per list and are never
//! reset; every list carries the box token right after it. A webhook's list is queued in
//! that same transaction and delivered (retried) before its next one is built.

use std::time::Duration;

use super::Nms;
use super::search::CriteriaInput;
use super::sync::{RestartPoint, SyncEvent};
use crate::config::SyncSettings;
use crate::error::{Error, OrMissing, Result};
use crate::ids::{new_id, now_ms, random_id};
use crate::model::{Advance, Attribute, BoxRow, Change, Channel, Filter, NotificationFormat, OutboxList, Subscription};

/// A subscription as a client asks for it.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionInput {
    /// `callbackReference.notifyURL`, and the channel of this server it names (`None`: a
    /// webhook).
    pub notify_url: String,
    pub channel: Option<String>,
    pub callback_data: Option<String>,
    pub notification_format: Option<String>,
    /// Seconds; absent or 0: the default.
    pub duration: Option<u64>,
    pub filter: Option<CriteriaInput>,
    pub client_correlator: Option<String>,
    pub restart_token: Option<String>,
}

/// A channel as a client asks for it.
#[derive(Clone, Debug, Default)]
pub struct ChannelInput {
    pub channel_type: String,
    pub client_correlator: Option<String>,
    pub application_tag: Option<String>,
    pub lifetime: Option<u64>,
    pub max_notifications: Option<u64>,
    /// Seconds a poll may hold pending lists waiting for more (absent: 0).
    pub max_wait_time: Option<u64>,
}

/// One notification list, ready to render.
#[derive(Clone, Debug)]
pub struct EventList {
    pub b: BoxRow,
    pub subscription: String,
    pub callback_data: Option<String>,
    /// How a webhook receives it (the subscription's `notificationFormat`); a channel's poll
    /// answers in the format the poll asks for.
    pub format: NotificationFormat,
    pub index: i64,
    pub events: Vec<SyncEvent>,
    /// The box token right after these events, and what it names.
    pub restart_token: String,
    pub position: RestartPoint,
}

/// How a long poll ended.
#[derive(Debug)]
pub enum PollOutcome {
    /// Lists (none: the poll timed out).
    Lists(Vec<EventList>),
    /// A newer poll of the channel took over (409 SVC1012).
    Superseded,
}

/// Renders a list as the body a webhook receives.
pub type Render = dyn Fn(&EventList) -> String + Send + Sync;

/// What building a list does with it.
#[derive(Clone, Copy)]
enum Take<'a> {
    /// Nothing: a look at what is pending.
    Peek,
    /// Consume its index; the caller delivers it (a poll's answer).
    Deliver,
    /// Consume its index and queue the rendered list for the webhook, in one transaction.
    Queue(&'a Render),
}

/// How a webhook attempt ended.
#[derive(Debug)]
pub enum Delivery {
    /// 2xx: the list is delivered.
    Delivered,
    /// 404 or 410: the receiver is gone; the subscription ends.
    Gone,
    /// Anything else (5xx, timeouts, refused connections, other statuses): try again later,
    /// after the backoff or the receiver's `Retry-After` (capped like the backoff).
    Failed { error: String, retry_after: Option<Duration> },
}

/// The longest `maxWaitTime` kept (a poll answers by its own timeout anyway).
const MAX_WAIT_SECS: u64 = 3600;

/// Lifetimes and durations the server grants: default and maximum.
const DEFAULT_SECS: u64 = 86_400;
const MAX_SECS: u64 = 30 * 86_400;

fn granted(asked: Option<u64>) -> i64 {
    let s = match asked {
        None | Some(0) => DEFAULT_SECS,
        Some(s) => s.min(MAX_SECS),
    };
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Whether `needle`'s words occur consecutively among `hay`'s words.
fn has_words(hay: &str, needle: &str) -> bool {
    let (h, n) = (words(hay), words(needle));
    !n.is_empty() && h.windows(n.len()).any(|w| w == n.as_slice())
}

fn attr_has(attrs: &[Attribute], name_lc: &str, value: &str) -> bool {
    attrs.iter().any(|a| a.name.eq_ignore_ascii_case(name_lc) && a.values.iter().any(|v| v == value))
}

/// What a filter is tested on: an object or folder as it stands, or as its tombstone
/// remembers it.
struct Subject<'a> {
    /// `Some((name, is_root))` for folders.
    folder: Option<(&'a str, bool)>,
    date_ms: i64,
    creation_seq: Option<i64>,
    attributes: &'a [Attribute],
    flags: &'a [String],
    correlation: (Option<&'a str>, Option<&'a str>),
    gone: bool,
    text: std::cell::OnceCell<String>,
}

impl Subject<'_> {
    /// The searchable text: attribute values (and a folder's name), lower-cased; made once
    /// per subject, whatever the number of text criteria.
    fn text(&self) -> &str {
        self.text.get_or_init(|| {
            let attributes = super::searchable_text(self.attributes, "").to_lowercase();
            match self.folder {
                Some((name, _)) => format!("{}\n{attributes}", name.to_lowercase()),
                None => attributes,
            }
        })
    }

    fn matches(&self, f: &Filter) -> bool {
        match f {
            Filter::All(l) => l.iter().all(|x| self.matches(x)),
            Filter::Any(l) => l.iter().any(|x| self.matches(x)),
            Filter::Not(x) => !self.matches(x),
            Filter::Stored { min_ms, max_ms } => {
                min_ms.is_none_or(|m| self.date_ms >= m) && max_ms.is_none_or(|m| self.date_ms < m)
            }
            Filter::Attribute { name_lc, value } => match (self.folder, name_lc.as_str()) {
                (Some((_, root)), "root") => root && value.eq_ignore_ascii_case("yes"),
                (Some((name, _)), "name") => name == value,
                (None, "correlationid") => self.correlation.0 == Some(value.as_str()),
                (None, "correlationtag") => self.correlation.1 == Some(value.as_str()),
                _ => attr_has(self.attributes, name_lc, value),
            },
            Filter::Text { needle } => self.text().contains(&needle.to_lowercase()),
            Filter::Word { word } => has_words(self.text(), word),
            Filter::Flag { flag_lc, set } => self.flags.iter().any(|x| x.eq_ignore_ascii_case(flag_lc)) == *set,
            Filter::CreatedAfter { seq } => self.creation_seq.is_some_and(|c| c > *seq),
            Filter::Vanished => self.gone,
        }
    }
}

/// Whether an event passes a subscription's filter. `resetBox` always does, and so does the
/// tombstone of an item deleted before tombstones kept snapshots (nothing to test).
fn passes(filter: &Option<Filter>, e: &SyncEvent) -> bool {
    let Some(f) = filter else { return true };
    let subject = match e {
        SyncEvent::ResetBox => return true,
        SyncEvent::Change(Change::Object(o)) => Subject {
            folder: None,
            date_ms: o.stored_at_ms,
            creation_seq: Some(o.creation_seq),
            attributes: &o.attributes,
            flags: &o.flags,
            correlation: (o.correlation_id.as_deref(), o.correlation_tag.as_deref()),
            gone: false,
            text: Default::default(),
        },
        SyncEvent::Change(Change::Folder(fo)) => Subject {
            folder: Some((&fo.name, fo.is_root)),
            date_ms: fo.created_at_ms,
            creation_seq: None,
            attributes: &fo.attributes,
            flags: &[],
            correlation: (None, None),
            gone: false,
            text: Default::default(),
        },
        SyncEvent::Change(Change::Gone(t)) => {
            let Some(snap) = &t.snapshot else { return true };
            Subject {
                folder: (t.kind == "folder").then(|| (snap.name.as_deref().unwrap_or(""), false)),
                date_ms: snap.date_ms,
                creation_seq: snap.creation_seq,
                attributes: &snap.attributes,
                flags: &snap.flags,
                correlation: (t.correlation_id.as_deref(), t.correlation_tag.as_deref()),
                gone: true,
                text: Default::default(),
            }
        }
    };
    subject.matches(f)
}

/// A client's text the store keeps may not hold NUL (no engine keeps it alike).
fn refuse_nul(what: &str, value: &Option<String>) -> Result<()> {
    match value {
        Some(v) if v.contains('\0') => Err(Error::invalid(format!("{what} (holds NUL)"))),
        _ => Ok(()),
    }
}

impl Nms {
    // ---------------- channels ----------------

    /// Create a long-polling channel for `principal` under `user_id`.
    pub async fn create_channel(&self, principal: &str, user_id: &str, input: ChannelInput) -> Result<Channel> {
        if !input.channel_type.eq_ignore_ascii_case("LongPolling") {
            return Err(Error::ChannelTypeUnsupported { channel_type: input.channel_type });
        }
        refuse_nul("clientCorrelator", &input.client_correlator)?;
        refuse_nul("applicationTag", &input.application_tag)?;
        let cap = self.limits.max_channels_per_principal;
        if cap > 0 && self.meta.count_channels(principal, now_ms()).await? >= u64::from(cap) {
            return Err(Error::LimitExceeded {
                what: "live notification channels per principal".into(),
                key: "limits.max_channels_per_principal",
                limit: u64::from(cap),
            });
        }
        let lifetime = granted(input.lifetime);
        let max = input.max_notifications.filter(|m| *m > 0).unwrap_or(10).min(100) as u32;
        self.meta
            .create_channel(&Channel {
                id: 0,
                public_id: random_id(),
                principal: principal.to_string(),
                user_id: user_id.to_string(),
                client_correlator: input.client_correlator,
                application_tag: input.application_tag,
                lifetime_secs: lifetime,
                expires_at_ms: now_ms().saturating_add(lifetime.saturating_mul(1000)),
                max_notifications: max,
                // Longer than any poll is the same as the poll's timeout.
                max_wait_secs: input.max_wait_time.unwrap_or(0).min(MAX_WAIT_SECS) as u32,
                poll_generation: 0,
            })
            .await
    }

    /// A live channel of `principal` (anyone else's, or none: missing).
    pub async fn channel(&self, principal: &str, id: &str) -> Result<Channel> {
        match self.meta.channel(id, now_ms()).await? {
            Some(c) if c.principal == principal => Ok(c),
            _ => Err(Error::Missing),
        }
    }

    pub async fn channels(&self, principal: &str, user_id: &str) -> Result<Vec<Channel>> {
        self.meta.channels_of(principal, user_id, now_ms()).await
    }

    /// Set a channel's lifetime (absent: the default; the server may grant less); 404 if it is gone.
    pub async fn renew_channel(&self, id: &str, lifetime: Option<u64>) -> Result<Channel> {
        self.meta.renew_channel(id, granted(lifetime), now_ms()).await?.or_missing()
    }

    /// Delete a channel (and what delivers into it); an open poll on it answers 404.
    pub async fn delete_channel(&self, principal: &str, id: &str) -> Result<()> {
        let c = self.channel(principal, id).await?;
        self.meta.delete_channel(id).await?;
        self.hub.wake_channel(c.id);
        Ok(())
    }

    // ---------------- subscriptions ----------------

    /// Create a subscription, or answer the existing one for a repeated `clientCorrelator`.
    pub async fn create_subscription(
        &self,
        b: &BoxRow,
        principal: &str,
        input: SubscriptionInput,
    ) -> Result<Subscription> {
        let now = now_ms();
        refuse_nul("clientCorrelator", &input.client_correlator)?;
        refuse_nul("callbackData", &input.callback_data)?;
        // An empty clientCorrelator (deployed clients send `""`) correlates nothing.
        let mut input = input;
        input.client_correlator = input.client_correlator.filter(|c| !c.trim().is_empty());
        if let Some(c) = &input.client_correlator
            && let Some(existing) = self.meta.subscription_by_correlator(b, principal, c, now).await?
        {
            return Ok(existing);
        }
        // Kept as the schema spells it, so that it is echoed valid.
        input.notification_format =
            match input.notification_format.as_deref().map(|f| (f, NotificationFormat::parse(f))) {
                None => None,
                Some((_, Some(format))) => Some(format.as_str().to_string()),
                Some((f, None)) => return Err(Error::invalid_value(format!("notificationFormat {f}"), "XML, JSON")),
            };
        let channel_id = match &input.channel {
            Some(id) => match self.meta.channel(id, now).await? {
                Some(c) if c.principal == principal => Some(c.id),
                _ => return Err(Error::invalid(format!("notifyURL {} (no such channel)", input.notify_url))),
            },
            None => {
                check_webhook_url(&self.sync, &input.notify_url)?;
                None
            }
        };
        let filter = match &input.filter {
            Some(f) => Some(self.compile_filter(b, f).await?),
            None => None,
        };
        let (token, point) = match input.restart_token {
            Some(t) => {
                let p = self.open_restart_token(b, &t)?;
                (t, p)
            }
            None => {
                let (modseq, validity, _) = self.meta.sync_state(b).await?;
                let p = RestartPoint::after(validity, modseq);
                (self.restart_token(b, p), p)
            }
        };
        let duration = granted(input.duration);
        let max = self.limits.max_subscriptions_per_box;
        let created = self
            .meta
            .create_subscription(
                &Subscription {
                    id: 0,
                    box_id: b.id,
                    public_id: new_id(),
                    principal: principal.to_string(),
                    channel_id,
                    notify_url: input.notify_url,
                    callback_data: input.callback_data,
                    notification_format: input.notification_format,
                    filter,
                    client_correlator: input.client_correlator,
                    duration_secs: duration,
                    expires_at_ms: now.saturating_add(duration.saturating_mul(1000)),
                    restart_token: token,
                    position_validity: point.validity,
                    position_modseq: point.modseq,
                    position_within: point.within,
                    next_index: 1,
                },
                max,
            )
            .await?;
        if channel_id.is_none() {
            self.hub.watch_webhook_box(b.id);
        }
        // Its changes since a restart token may be pending at once: the box's polls wake.
        self.published(created).ok_or_else(|| Error::LimitExceeded {
            what: "live subscriptions per box".into(),
            key: "limits.max_subscriptions_per_box",
            limit: u64::from(max),
        })
    }

    /// A live subscription of `principal` on box `b` (missing otherwise).
    pub async fn subscription(&self, b: &BoxRow, principal: &str, id: &str) -> Result<Subscription> {
        match self.meta.subscription(b, id, now_ms()).await? {
            Some(s) if s.principal == principal => Ok(s),
            _ => Err(Error::Missing),
        }
    }

    pub async fn subscriptions(&self, b: &BoxRow, principal: &str) -> Result<Vec<Subscription>> {
        self.meta.subscriptions_of(b, principal, now_ms()).await
    }

    /// `nmsSubscriptionUpdate`: a new duration, and/or a restart token (replay restarts from
    /// it; the index keeps counting).
    pub async fn update_subscription(
        &self,
        b: &BoxRow,
        principal: &str,
        id: &str,
        duration: Option<u64>,
        restart_token: Option<String>,
    ) -> Result<Subscription> {
        let mut s = self.subscription(b, principal, id).await?;
        let position = restart_token.is_some();
        if let Some(t) = restart_token {
            let p = self.open_restart_token(b, &t)?;
            s.restart_token = t;
            s.position_validity = p.validity;
            s.position_modseq = p.modseq;
            s.position_within = p.within;
        }
        if duration.is_some() {
            s.duration_secs = granted(duration);
        }
        s.expires_at_ms = now_ms().saturating_add(s.duration_secs.saturating_mul(1000));
        if s.channel_id.is_none() {
            self.hub.watch_webhook_box(b.id);
        }
        // With a restart token, replay restarts from it: its changes may be pending at once,
        // and the box's polls wake.
        self.published(self.meta.update_subscription(&s, position).await?);
        if !position {
            // The position may have moved since it was read: answer it as it stands.
            return self.subscription(b, principal, id).await;
        }
        Ok(s)
    }

    pub async fn delete_subscription(&self, b: &BoxRow, principal: &str, id: &str) -> Result<()> {
        self.subscription(b, principal, id).await?;
        self.meta.delete_subscription(b, id).await?;
        Ok(())
    }

    /// The next notification list of `s`, if changes passing its filter are pending. Taking
    /// it moves the subscription's position and consumes the index in one compare-and-set;
    /// with `render`, the rendered list is queued for the webhook in the same transaction.
    async fn next_list(&self, b: &BoxRow, mut s: Subscription, take: Take<'_>) -> Result<Option<EventList>> {
        // Each pass either answers or moves the position forward (past changes the filter
        // drops), so this ends when the subscription has caught up with the box.
        loop {
            let from =
                RestartPoint { validity: s.position_validity, modseq: s.position_modseq, within: s.position_within };
            // `sync.list_max_events` changes a list (whole modseq groups). One answer carries
            // at most one list per subscription: deployed clients read the index and restart
            // token of the first list only.
            let page = self.replay_with(b, from, self.sync.list_max_events, s.filter.is_some()).await?;
            let moved = page.point != from;
            let events: Vec<SyncEvent> = page.events.into_iter().filter(|e| passes(&s.filter, e)).collect();
            let m = Advance {
                id: s.id,
                index: s.next_index,
                from: (from.validity, from.modseq, from.within),
                to: (page.point.validity, page.point.modseq, page.point.within),
                token: page.token.clone(),
            };
            if events.is_empty() {
                if !moved {
                    return Ok(None);
                }
                // Everything pending was filtered out: move on without using an index.
                if !matches!(take, Take::Peek) && !self.meta.skip_subscription(&m).await? {
                    return Ok(None);
                }
                s.position_validity = page.point.validity;
                s.position_modseq = page.point.modseq;
                s.position_within = page.point.within;
                continue;
            }
            let list = EventList {
                b: b.clone(),
                subscription: s.public_id.clone(),
                callback_data: s.callback_data.clone(),
                format: NotificationFormat::of(s.notification_format.as_deref()),
                index: s.next_index,
                events,
                restart_token: page.token,
                position: page.point,
            };
            let body = match take {
                Take::Peek => return Ok(Some(list)),
                Take::Deliver => None,
                Take::Queue(render) => Some(render(&list)),
            };
            if !self.meta.advance_subscription(&m, body.as_deref()).await? {
                // Another poller took this index (it delivers these events), or the
                // subscription was updated meanwhile.
                return Ok(None);
            }
            return Ok(Some(list));
        }
    }

    /// Pending lists of the channel's `subscriptions`, at most `maxNotifications` and one per
    /// subscription: taken (`Take::Deliver`) or only looked at (`Take::Peek`).
    ///
    /// Subscriptions whose next list is a `resetBox` come first: clients look for it on the
    /// first event of the first list only.
    async fn pending(&self, c: &Channel, subscriptions: &[Subscription], take: Take<'_>) -> Result<Vec<EventList>> {
        let mut subs = Vec::new();
        for s in subscriptions {
            let Some(b) = self.meta.box_by_id(s.box_id).await? else { continue };
            // Only an order among several needs to know which reset (most channels carry
            // one subscription).
            let resets = if subscriptions.len() > 1 {
                let (modseq, validity, floor) = self.meta.sync_state(&b).await?;
                let at = RestartPoint {
                    validity: s.position_validity,
                    modseq: s.position_modseq,
                    within: s.position_within,
                };
                at.resets(validity, floor, modseq)
            } else {
                false
            };
            subs.push((resets, b, s.clone()));
        }
        subs.sort_by_key(|(resets, _, _)| !*resets);
        let mut out = Vec::new();
        for (_, b, s) in subs {
            if out.len() >= c.max_notifications as usize {
                break;
            }
            if let Some(list) = self.next_list(&b, s, take).await? {
                out.push(list);
            }
        }
        Ok(out)
    }

    /// A long poll on channel `id`: answers as soon as lists are pending, or with none when
    /// `timeout` passes; a newer poll on the same channel ends this one (`Superseded`), and
    /// so does deleting the channel (404). Each poll renews the channel's lifetime.
    pub async fn poll(&self, principal: &str, id: &str, timeout: Duration) -> Result<PollOutcome> {
        let _open = crate::metrics::OpenPoll::open();
        let res = self.poll_open(principal, id, timeout).await;
        if let Ok(PollOutcome::Lists(lists)) = &res {
            crate::metrics::polled(lists.len());
        }
        res
    }

    async fn poll_open(&self, principal: &str, id: &str, timeout: Duration) -> Result<PollOutcome> {
        self.channel(principal, id).await?;
        // The poll open before (on this node or another) finds the generation raised.
        let c = self.meta.begin_poll(id, now_ms()).await?.or_missing()?;
        self.hub.wake_channel(c.id);
        let channel_signal = self.hub.channel_signal(c.id);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut first_seen: Option<tokio::time::Instant> = None;
        loop {
            // Register for wakeups before reading, so no change slips between.
            let subscriptions = self.meta.subscriptions_of_channel(c.id, now_ms()).await?;
            let mut boxes: Vec<i64> = subscriptions.iter().map(|s| s.box_id).collect();
            boxes.sort_unstable();
            boxes.dedup();
            let signals: Vec<_> = boxes.iter().map(|b| self.hub.box_signal(*b)).collect();
            let mut waits: Vec<_> = signals.iter().map(|n| Box::pin(n.notified())).collect();
            for w in &mut waits {
                w.as_mut().enable();
            }
            let mut ended = Box::pin(channel_signal.notified());
            ended.as_mut().enable();

            match self.meta.channel(id, now_ms()).await? {
                None => return Err(Error::Missing),
                Some(now) if now.poll_generation != c.poll_generation => return Ok(PollOutcome::Superseded),
                Some(_) => {}
            }
            let now = tokio::time::Instant::now();
            // A server shutting down answers with what is pending now.
            let closing = self.hub.is_closing();
            // maxWaitTime: hold pending lists (from when this poll first sees them) hoping
            // for maxNotifications of them; the poll's own timeout ends the wait too.
            let ready = if c.max_wait_secs == 0 || now >= deadline || closing {
                true
            } else {
                let peek = self.pending(&c, &subscriptions, Take::Peek).await?;
                if peek.is_empty() {
                    first_seen = None;
                    false
                } else {
                    let t0 = *first_seen.get_or_insert(now);
                    peek.len() >= c.max_notifications as usize
                        || now >= t0 + Duration::from_secs(u64::from(c.max_wait_secs))
                }
            };
            if ready {
                let lists = self.pending(&c, &subscriptions, Take::Deliver).await?;
                if !lists.is_empty() || now >= deadline || closing {
                    return Ok(PollOutcome::Lists(lists));
                }
                // Taken meanwhile (the subscription was updated): wait afresh.
                first_seen = None;
            }
            let mut until = deadline;
            if let Some(t0) = first_seen {
                until = until.min(t0 + Duration::from_secs(u64::from(c.max_wait_secs)));
            }
            // Without a remote feed, re-read every second: other processes' writes wake nobody.
            let nap = self.hub.re_read_within(until.saturating_duration_since(now));
            if waits.is_empty() {
                tokio::select! {
                    _ = ended => {}
                    _ = tokio::time::sleep(nap) => {}
                }
            } else {
                let any_box = futures_util::future::select_all(waits);
                tokio::select! {
                    _ = any_box => {}
                    _ = ended => {}
                    _ = tokio::time::sleep(nap) => {}
                }
            }
        }
    }

    // ---------------- webhooks ----------------

    /// Build and queue the next list of the webhook subscriptions of `boxes` (`None`: of any
    /// box) with pending changes (one list in flight per subscription keeps them in index
    /// order); returns how many were queued.
    pub async fn queue_webhook_lists(&self, boxes: Option<&[i64]>, render: &Render) -> Result<usize> {
        const PAGE: u32 = 100;
        if boxes.is_none() {
            // A look at every box also learns again which boxes have webhooks.
            let mark = self.hub.webhook_watch_mark();
            let watched = self.meta.webhook_boxes(now_ms()).await?;
            self.hub.watch_webhooks(watched.into_iter().collect(), mark);
        }
        let mut queued = 0;
        // Queued subscriptions drop out of the candidates; a bounded number of pages keeps a
        // subscription that keeps losing its compare-and-set from holding the loop.
        for _ in 0..20 {
            let candidates = self.meta.webhook_candidates(now_ms(), boxes, PAGE).await?;
            let n = candidates.len();
            for s in candidates {
                let Some(b) = self.meta.box_by_id(s.box_id).await? else { continue };
                if self.next_list(&b, s, Take::Queue(render)).await?.is_some() {
                    queued += 1;
                }
            }
            if n < PAGE as usize {
                break;
            }
        }
        Ok(queued)
    }

    /// Claim due webhook lists for one delivery attempt each (held for `lease`).
    pub async fn claim_webhook_lists(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxList>> {
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        self.meta.claim_webhook_lists(now, until, limit).await
    }

    /// When the next queued webhook list falls due, if any.
    pub async fn next_webhook_due(&self) -> Result<Option<i64>> {
        self.meta.next_webhook_due().await
    }

    /// Record how an attempt ended: delivered lists are dropped (the next can be built), a
    /// gone receiver ends its subscription, a failure is retried after an exponential
    /// backoff (`sync.webhook_retry_initial_ms`, doubling to `sync.webhook_retry_max_secs`).
    pub async fn webhook_outcome(&self, l: &OutboxList, outcome: Delivery) -> Result<()> {
        let counted = match outcome {
            Delivery::Delivered => crate::metrics::WebhookOutcome::Delivered,
            Delivery::Gone => crate::metrics::WebhookOutcome::Gone,
            Delivery::Failed { .. } => crate::metrics::WebhookOutcome::Failed,
        };
        crate::metrics::webhook(counted, l.attempts > 0);
        match outcome {
            Delivery::Delivered => self.meta.webhook_delivered(l.subscription_id, l.index).await,
            Delivery::Gone => self.meta.end_subscription(l.subscription_id).await,
            Delivery::Failed { error, retry_after } => {
                let mut delay = retry_delay(&self.sync, l.attempts);
                if let Some(asked) = retry_after {
                    delay = asked.min(Duration::from_secs(self.sync.webhook_retry_max_secs.max(1)));
                }
                let due = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                self.meta.webhook_failed(l.subscription_id, l.index, due, &error).await
            }
        }
    }

    /// Drop expired channels and subscriptions (housekeeping).
    pub async fn purge_expired_subscriptions(&self) -> Result<u64> {
        self.meta.purge_expired_subscriptions(now_ms()).await
    }
}

/// A webhook `notifyURL` must be an absolute http(s) URL, webhooks enabled, and (unless
/// `sync.webhook_private_networks`) its host no literal address of a private network.
fn check_webhook_url(sync: &SyncSettings, url: &str) -> Result<()> {
    if !sync.webhooks {
        return Err(Error::invalid(format!("notifyURL {url} (only this server's notification channels)")));
    }
    let u = match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        _ => return Err(Error::invalid(format!("notifyURL {url} (an absolute http or https URL)"))),
    };
    let literal = match u.host() {
        Some(url::Host::Ipv4(a)) => Some(std::net::IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(std::net::IpAddr::V6(a)),
        _ => None,
    };
    if !sync.webhook_private_networks && literal.is_some_and(|ip| !is_public(ip)) {
        return Err(Error::invalid(format!("notifyURL {url} (a private network address)")));
    }
    Ok(())
}

/// Whether a webhook may be delivered to `ip`: not loopback, private, link-local, shared,
/// reserved, documentation, multicast or unspecified (so subscribers cannot make the server
/// call into its own network).
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(a) => {
            let [o0, o1, o2, _] = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o0 == 0
                || (o0 == 100 && (64..128).contains(&o1))
                || (o0 == 192 && o1 == 0 && o2 == 0)
                || (o0 == 198 && (18..20).contains(&o1))
                || o0 >= 240)
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s0 = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80
                || (s0 == 0x2001 && a.segments()[1] == 0x0db8))
        }
    }
}

/// The wait before the next attempt after `failed_before` earlier failures (and this one).
fn retry_delay(sync: &SyncSettings, failed_before: u32) -> Duration {
    let initial = Duration::from_millis(sync.webhook_retry_initial_ms.max(1));
    let max = Duration::from_secs(sync.webhook_retry_max_secs.max(1)).max(initial);
    initial.saturating_mul(1u32 << failed_before.min(20)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_match_consecutively_and_case_insensitively() {
        assert!(has_words("Meet me at the Stadium, today", "stadium"));
        assert!(has_words("meet me at the stadium", "the STADIUM"));
        assert!(!has_words("stadiums", "stadium"));
        assert!(!has_words("the big stadium", "the stadium"));
        assert!(!has_words("anything", "  "));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let sync = SyncSettings { webhook_retry_initial_ms: 500, webhook_retry_max_secs: 4, ..Default::default() };
        let d: Vec<u128> = (0..6).map(|n| retry_delay(&sync, n).as_millis()).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(retry_delay(&sync, u32::MAX).as_millis(), 4000);
    }

    #[test]
    fn only_public_addresses_take_webhooks() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn durations_are_defaulted_and_capped() {
        assert_eq!(granted(None), 86_400);
        assert_eq!(granted(Some(0)), 86_400);
        assert_eq!(granted(Some(60)), 60);
        assert_eq!(granted(Some(u64::MAX)), 30 * 86_400);
    }
}
