//! Subscriptions (NMS 6.17-6.19) delivered through long-polling notification channels
//! (OMA Notification Channel).
//!
//! Notifications are computed from the database: a subscription keeps its position (box
//! validity and modseq) and the index of its next list. Building a list replays the box
//! from the position, applies the filter (never to `resetBox`, and deletions are always
//! reported: tombstones keep no attributes to test), and moves the position and consumes
//! the index in one compare-and-set, so two pollers never hand out the same index and
//! nothing is lost across restarts. Indexes start at 1, grow by exactly one per list and are
//! never reset; every list carries the box token right after it. Only this server's
//! notification channels can be a `notifyURL` for now.

use std::time::Duration;

use super::Nms;
use super::search::CriteriaInput;
use super::sync::{RestartPoint, SyncEvent};
use crate::error::{Error, Result};
use crate::ids::{new_id, now_ms};
use crate::store::{Attribute, BoxRow, Change, Channel, Filter, Folder, Object, Subscription};

/// A subscription as a client asks for it.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionInput {
    /// `callbackReference.notifyURL`, and the channel it names.
    pub notify_url: String,
    pub channel: String,
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
}

/// One notification list, ready to render.
#[derive(Clone, Debug)]
pub struct EventList {
    pub b: BoxRow,
    pub subscription: String,
    pub callback_data: Option<String>,
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

/// Case-insensitive substring over the searchable attribute text.
fn text_of(attrs: &[Attribute]) -> String {
    let mut t = String::new();
    for a in attrs {
        if super::NON_TEXT_ATTRIBUTES.iter().any(|n| a.name.eq_ignore_ascii_case(n)) {
            continue;
        }
        for v in &a.values {
            t.push_str(&v.to_lowercase());
            t.push('\n');
        }
    }
    t
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

/// The filter against an object's current state (attribute text for text criteria).
fn object_matches(f: &Filter, o: &Object) -> bool {
    match f {
        Filter::All(l) => l.iter().all(|x| object_matches(x, o)),
        Filter::Any(l) => l.iter().any(|x| object_matches(x, o)),
        Filter::Not(x) => !object_matches(x, o),
        Filter::Stored { min_ms, max_ms } => {
            min_ms.is_none_or(|m| o.stored_at_ms >= m) && max_ms.is_none_or(|m| o.stored_at_ms < m)
        }
        Filter::Attribute { name_lc, value } => attr_has(&o.attributes, name_lc, value),
        Filter::Text { needle } => text_of(&o.attributes).contains(&needle.to_lowercase()),
        Filter::Word { word } => has_words(&text_of(&o.attributes), word),
        Filter::Flag { flag_lc, set } => o.flags.iter().any(|x| x.eq_ignore_ascii_case(flag_lc)) == *set,
        Filter::CreatedAfter { .. } => false,
    }
}

/// The filter against a folder (its name and attributes; folders carry no flags here).
fn folder_matches(f: &Filter, fo: &Folder) -> bool {
    match f {
        Filter::All(l) => l.iter().all(|x| folder_matches(x, fo)),
        Filter::Any(l) => l.iter().any(|x| folder_matches(x, fo)),
        Filter::Not(x) => !folder_matches(x, fo),
        Filter::Stored { min_ms, max_ms } => {
            min_ms.is_none_or(|m| fo.created_at_ms >= m) && max_ms.is_none_or(|m| fo.created_at_ms < m)
        }
        Filter::Attribute { name_lc, value } => match name_lc.as_str() {
            "root" => fo.is_root && value.eq_ignore_ascii_case("yes"),
            "name" => fo.name == *value,
            _ => attr_has(&fo.attributes, name_lc, value),
        },
        Filter::Text { needle } => {
            format!("{}\n{}", fo.name.to_lowercase(), text_of(&fo.attributes)).contains(&needle.to_lowercase())
        }
        Filter::Word { word } => has_words(&format!("{}\n{}", fo.name, text_of(&fo.attributes)), word),
        Filter::Flag { set, .. } => !*set,
        Filter::CreatedAfter { .. } => false,
    }
}

fn passes(filter: &Option<Filter>, e: &SyncEvent) -> bool {
    match (filter, e) {
        (None, _) | (_, SyncEvent::ResetBox) | (_, SyncEvent::Change(Change::Gone(_))) => true,
        (Some(f), SyncEvent::Change(Change::Object(o))) => object_matches(f, o),
        (Some(f), SyncEvent::Change(Change::Folder(fo))) => folder_matches(f, fo),
    }
}

impl Nms {
    // ---------------- channels ----------------

    /// Create a long-polling channel for `principal` under `user_id`.
    pub async fn create_channel(&self, principal: &str, user_id: &str, input: ChannelInput) -> Result<Channel> {
        if !input.channel_type.eq_ignore_ascii_case("LongPolling") {
            return Err(Error::ChannelTypeUnsupported { channel_type: input.channel_type });
        }
        let lifetime = granted(input.lifetime);
        let max = input.max_notifications.filter(|m| *m > 0).unwrap_or(10).min(100) as u32;
        self.meta
            .create_channel(&Channel {
                id: 0,
                public_id: new_id(),
                principal: principal.to_string(),
                user_id: user_id.to_string(),
                client_correlator: input.client_correlator,
                application_tag: input.application_tag,
                lifetime_secs: lifetime,
                expires_at_ms: now_ms().saturating_add(lifetime.saturating_mul(1000)),
                max_notifications: max,
            })
            .await
    }

    /// A live channel of `principal` (anyone else's, or none: 404 `uri`).
    pub async fn channel(&self, principal: &str, id: &str, uri: &str) -> Result<Channel> {
        match self.meta.channel(id, now_ms()).await? {
            Some(c) if c.principal == principal => Ok(c),
            _ => Err(Error::not_found(uri)),
        }
    }

    pub async fn channels(&self, principal: &str, user_id: &str) -> Result<Vec<Channel>> {
        self.meta.channels_of(principal, user_id, now_ms()).await
    }

    /// Set a channel's lifetime (the server may grant less); 404 if it is gone.
    pub async fn renew_channel(&self, id: &str, lifetime: Option<u64>, uri: &str) -> Result<Channel> {
        let current = self.meta.channel(id, now_ms()).await?.ok_or_else(|| Error::not_found(uri))?;
        let lifetime = match lifetime {
            None => current.lifetime_secs,
            Some(l) => granted(Some(l)),
        };
        self.meta.renew_channel(id, lifetime, now_ms()).await?.ok_or_else(|| Error::not_found(uri))
    }

    /// Delete a channel (and what delivers into it); an open poll on it answers 404.
    pub async fn delete_channel(&self, principal: &str, id: &str, uri: &str) -> Result<()> {
        let c = self.channel(principal, id, uri).await?;
        self.meta.delete_channel(id).await?;
        self.hub.end_channel(c.id);
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
        if let Some(c) = &input.client_correlator
            && let Some(existing) = self.meta.subscription_by_correlator(b, principal, c, now).await?
        {
            return Ok(existing);
        }
        let channel = match self.meta.channel(&input.channel, now).await? {
            Some(c) if c.principal == principal => c,
            _ => return Err(Error::invalid(format!("notifyURL {}", input.notify_url))),
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
                let p = RestartPoint { validity, modseq };
                (self.restart_token(b, p), p)
            }
        };
        let duration = granted(input.duration);
        self.meta
            .create_subscription(&Subscription {
                id: 0,
                box_id: b.id,
                public_id: new_id(),
                principal: principal.to_string(),
                channel_id: channel.id,
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
                next_index: 1,
            })
            .await
    }

    /// A live subscription of `principal` on box `b` (404 `uri` otherwise).
    pub async fn subscription(&self, b: &BoxRow, principal: &str, id: &str, uri: &str) -> Result<Subscription> {
        match self.meta.subscription(b, id, now_ms()).await? {
            Some(s) if s.principal == principal => Ok(s),
            _ => Err(Error::not_found(uri)),
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
        uri: &str,
    ) -> Result<Subscription> {
        let mut s = self.subscription(b, principal, id, uri).await?;
        if let Some(t) = restart_token {
            let p = self.open_restart_token(b, &t)?;
            s.restart_token = t;
            s.position_validity = p.validity;
            s.position_modseq = p.modseq;
        }
        if duration.is_some() {
            s.duration_secs = granted(duration);
        }
        s.expires_at_ms = now_ms().saturating_add(s.duration_secs.saturating_mul(1000));
        self.meta.update_subscription(&s).await?;
        Ok(s)
    }

    pub async fn delete_subscription(&self, b: &BoxRow, principal: &str, id: &str, uri: &str) -> Result<()> {
        self.subscription(b, principal, id, uri).await?;
        self.meta.delete_subscription(b, id).await?;
        Ok(())
    }

    /// The next notification list of `s`, if changes passing its filter are pending.
    async fn next_list(&self, b: &BoxRow, mut s: Subscription) -> Result<Option<EventList>> {
        for _ in 0..16 {
            let from = RestartPoint { validity: s.position_validity, modseq: s.position_modseq };
            let page = self.replay(b, from, 100).await?;
            let moved = page.point != from;
            let events: Vec<SyncEvent> = page.events.into_iter().filter(|e| passes(&s.filter, e)).collect();
            if events.is_empty() {
                if !moved {
                    return Ok(None);
                }
                // Everything pending was filtered out: move on without using an index.
                if !self.meta.skip_subscription(s.id, s.next_index, page.point.validity, page.point.modseq).await? {
                    return Ok(None);
                }
                s.position_validity = page.point.validity;
                s.position_modseq = page.point.modseq;
                continue;
            }
            if !self.meta.advance_subscription(s.id, s.next_index, page.point.validity, page.point.modseq).await? {
                // Another poll took this index; it delivers these events.
                return Ok(None);
            }
            return Ok(Some(EventList {
                b: b.clone(),
                subscription: s.public_id.clone(),
                callback_data: s.callback_data.clone(),
                index: s.next_index,
                events,
                restart_token: page.token,
                position: page.point,
            }));
        }
        Ok(None)
    }

    /// Pending lists of the channel's subscriptions, at most `max`.
    async fn pending(&self, c: &Channel) -> Result<Vec<EventList>> {
        let mut out = Vec::new();
        for s in self.meta.subscriptions_of_channel(c.id, now_ms()).await? {
            let Some(b) = self.meta.box_by_id(s.box_id).await? else { continue };
            let mut s = s;
            while out.len() < c.max_notifications as usize {
                match self.next_list(&b, s.clone()).await? {
                    Some(list) => {
                        s.next_index = list.index + 1;
                        s.position_validity = list.position.validity;
                        s.position_modseq = list.position.modseq;
                        out.push(list);
                    }
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// A long poll on channel `id`: answers as soon as lists are pending, or with none when
    /// `timeout` passes; a newer poll on the same channel ends this one (`Superseded`), and
    /// so does deleting the channel (404). Each poll renews the channel's lifetime.
    pub async fn poll(&self, principal: &str, id: &str, timeout: Duration, uri: &str) -> Result<PollOutcome> {
        let c = self.channel(principal, id, uri).await?;
        self.meta.renew_channel(id, c.lifetime_secs, now_ms()).await?;
        let (generation, channel_signal) = self.hub.begin_poll(c.id);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register for wakeups before reading, so no change slips between.
            let boxes: Vec<i64> = {
                let mut v: Vec<i64> =
                    self.meta.subscriptions_of_channel(c.id, now_ms()).await?.iter().map(|s| s.box_id).collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let signals: Vec<_> = boxes.iter().map(|b| self.hub.box_signal(*b)).collect();
            let mut waits: Vec<_> = signals.iter().map(|n| Box::pin(n.notified())).collect();
            for w in &mut waits {
                w.as_mut().enable();
            }
            let mut ended = Box::pin(channel_signal.notified());
            ended.as_mut().enable();

            if self.meta.channel(id, now_ms()).await?.is_none() {
                return Err(Error::not_found(uri));
            }
            if !self.hub.is_current_poll(c.id, generation) {
                return Ok(PollOutcome::Superseded);
            }
            let lists = self.pending(&c).await?;
            if !lists.is_empty() {
                return Ok(PollOutcome::Lists(lists));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(PollOutcome::Lists(Vec::new()));
            }
            // Re-read at least every second: writers in other processes do not reach the hub.
            let nap = (deadline - now).min(Duration::from_secs(1));
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

    /// Drop expired channels and subscriptions (housekeeping).
    pub async fn purge_expired_subscriptions(&self) -> Result<u64> {
        self.meta.purge_expired_subscriptions(now_ms()).await
    }
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
    fn durations_are_defaulted_and_capped() {
        assert_eq!(granted(None), 86_400);
        assert_eq!(granted(Some(0)), 86_400);
        assert_eq!(granted(Some(60)), 60);
        assert_eq!(granted(Some(u64::MAX)), 30 * 86_400);
    }
}
