//! In-process wakeups: writers publish `(box, modseq)` after their commit; long polls and
//! the webhook deliverer wait for it. A waiter registers (enables its `Notified`) *before*
//! it reads the database, so a change committed between its read and its wait still wakes
//! it. What changed is always read from the database; the modseq only tells a relayed
//! wakeup that is news from one that is not. Between nodes, a bridge carries the same
//! signal: installed with [`Hub::set_relay`], it receives every local `publish` (to send,
//! for example, a PostgreSQL `NOTIFY` with `box:modseq`), and feeds what it hears from other
//! nodes to [`Hub::deliver`], which drops what this node has already seen; neither writers
//! nor waiters change. Waiters also re-read on a short timer, which covers writers in other
//! processes (the command line's `box reset`).

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::Notify;

/// Where local changes `(box, modseq)` go besides this node's waiters (other nodes' hubs).
pub type Relay = Box<dyn Fn(i64, i64) + Send + Sync>;

/// Boxes remembered for the webhook deliverer before it is told to look at all of them.
const MAX_CHANGED: usize = 10_000;

/// The wakeup hub.
pub struct Hub {
    boxes: DashMap<i64, Arc<Notify>>,
    /// The newest modseq published or delivered per box (relayed news older than it is
    /// dropped).
    latest: DashMap<i64, i64>,
    /// Signalled on every change of any box (the webhook deliverer waits on it) ...
    any: Arc<Notify>,
    /// ... and the boxes changed since it last looked (`None`: too many; look at all).
    changed: std::sync::Mutex<Option<std::collections::HashSet<i64>>>,
    /// Per channel: the signal its open poll waits on besides its boxes' (a newer poll
    /// began, the channel was deleted, a subscription into it was made or moved).
    polls: DashMap<i64, Arc<Notify>>,
    relay: std::sync::OnceLock<Relay>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            boxes: DashMap::new(),
            latest: DashMap::new(),
            any: Arc::new(Notify::new()),
            // Nothing is known of the time before: look at everything first.
            changed: std::sync::Mutex::new(None),
            polls: DashMap::new(),
            relay: std::sync::OnceLock::new(),
        }
    }
}

impl Hub {
    /// Box `box_id` changed, now at `modseq` (call after the commit): wake this node's
    /// waiters, and tell the relay.
    pub fn publish(&self, box_id: i64, modseq: i64) {
        self.note(box_id, modseq);
        self.wake(box_id);
        if let Some(relay) = self.relay.get() {
            relay(box_id, modseq);
        }
    }

    /// A change another node published: wake this node's waiters, unless this node has
    /// already seen the box at `modseq` or later.
    pub fn deliver(&self, box_id: i64, modseq: i64) {
        if self.note(box_id, modseq) {
            self.wake(box_id);
        }
    }

    /// Record `modseq` for the box; whether it is newer than what was known.
    fn note(&self, box_id: i64, modseq: i64) -> bool {
        let mut latest = self.latest.entry(box_id).or_insert(i64::MIN);
        let newer = modseq > *latest;
        *latest = (*latest).max(modseq);
        newer
    }

    fn wake(&self, box_id: i64) {
        if let Some(n) = self.boxes.get(&box_id) {
            n.notify_waiters();
        }
        self.touch(box_id);
    }

    /// Have the webhook deliverer look at box `box_id` (it changed, or a list of it was
    /// delivered and the next may be due).
    pub fn touch(&self, box_id: i64) {
        if let Ok(mut changed) = self.changed.lock()
            && let Some(set) = changed.as_mut()
        {
            set.insert(box_id);
            if set.len() > MAX_CHANGED {
                *changed = None;
            }
        }
        self.any.notify_waiters();
    }

    /// The boxes touched since the last call (`None`: too many to list, or unknown; look at
    /// every box).
    pub fn take_changed(&self) -> Option<Vec<i64>> {
        let mut changed = self.changed.lock().ok()?;
        let set = changed.replace(Default::default())?;
        Some(set.into_iter().collect())
    }

    /// Install the relay to other nodes (once; later calls are refused with `false`).
    pub fn set_relay(&self, relay: Relay) -> bool {
        self.relay.set(relay).is_ok()
    }

    /// The signal of any box changing.
    pub fn any_signal(&self) -> Arc<Notify> {
        self.any.clone()
    }

    /// The signal of box `box_id`.
    pub fn box_signal(&self, box_id: i64) -> Arc<Notify> {
        self.boxes.entry(box_id).or_default().clone()
    }

    /// The signal of channel `channel_id`'s poll.
    pub fn channel_signal(&self, channel_id: i64) -> Arc<Notify> {
        self.polls.entry(channel_id).or_default().clone()
    }

    /// Something the open poll of channel `channel_id` must see changed in the database (a
    /// newer poll began, the channel was deleted, a subscription into it was made or moved
    /// to another position): wake it to read the channel again.
    pub fn wake_channel(&self, channel_id: i64) {
        if let Some(n) = self.polls.get(&channel_id) {
            n.notify_waiters();
        }
    }

    /// Forget the signals nobody waits on (housekeeping): a box's signal held by no poll,
    /// a channel's held by no open poll. They are made again when next needed.
    pub fn sweep(&self) {
        self.boxes.retain(|_, n| Arc::strong_count(n) > 1);
        self.latest.retain(|b, _| self.boxes.contains_key(b));
        self.polls.retain(|_, n| Arc::strong_count(n) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn publish_wakes_registered_waiters_and_the_relay_but_deliver_does_not_echo() {
        let hub = Hub::default();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let s = sent.clone();
        assert!(hub.set_relay(Box::new(move |b, m| s.lock().unwrap().push((b, m)))));
        assert!(!hub.set_relay(Box::new(|_, _| {})));

        let signal = hub.box_signal(7);
        let any = hub.any_signal();
        let mut waiter = Box::pin(signal.notified());
        waiter.as_mut().enable();
        let mut any_waiter = Box::pin(any.notified());
        any_waiter.as_mut().enable();
        hub.publish(7, 41);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), any_waiter).await.unwrap();
        hub.deliver(7, 42);
        assert_eq!(*sent.lock().unwrap(), vec![(7, 41)]);
    }

    #[tokio::test]
    async fn relayed_news_wakes_only_when_it_is_news() {
        let hub = Hub::default();
        hub.publish(5, 10);
        let signal = hub.box_signal(5);
        let mut stale = Box::pin(signal.notified());
        stale.as_mut().enable();
        hub.deliver(5, 10);
        hub.deliver(5, 9);
        let woken = tokio::time::timeout(std::time::Duration::from_millis(50), stale.as_mut()).await;
        assert!(woken.is_err(), "a modseq already seen wakes nobody");
        hub.deliver(5, 11);
        tokio::time::timeout(std::time::Duration::from_secs(1), stale).await.unwrap();
    }

    #[test]
    fn sweeping_forgets_only_unheld_signals() {
        let hub = Hub::default();
        let held = hub.box_signal(1);
        drop(hub.box_signal(2));
        let poll = hub.channel_signal(9);
        drop(hub.channel_signal(8));
        hub.sweep();
        assert_eq!(hub.boxes.len(), 1);
        assert!(hub.boxes.contains_key(&1) && hub.polls.contains_key(&9) && !hub.polls.contains_key(&8));
        drop((held, poll));
    }

    #[test]
    fn changed_boxes_are_listed_once_and_too_many_mean_all() {
        let hub = Hub::default();
        assert_eq!(hub.take_changed(), None, "at first: look at everything");
        assert_eq!(hub.take_changed(), Some(vec![]));
        hub.publish(3, 1);
        hub.touch(3);
        assert_eq!(hub.take_changed(), Some(vec![3]));
        assert_eq!(hub.take_changed(), Some(vec![]));
        for b in 0..=MAX_CHANGED as i64 {
            hub.touch(b);
        }
        assert_eq!(hub.take_changed(), None);
    }
}
