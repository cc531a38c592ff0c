//! In-process wakeups: writers publish `(box, modseq)` after their commit; long polls and
//! the webhook deliverer wait for it. A waiter registers (enables its `Notified`) *before*
//! it reads the database, so a change committed between its read and its wait still wakes
//! it. What changed is always read from the database; the modseq only tells news from
//! what this node has already seen.
//!
//! Other processes' commits reach the hub when the database announces them (PostgreSQL:
//! see `store::listen`): [`Hub::deliver`] wakes the box's waiters unless this node has
//! already seen the box at that modseq, [`Hub::wake_channel`] a channel's open poll, and
//! [`Hub::wake_all`] every waiter when announcements may have been missed (the listening
//! connection was lost and made again). On SQLite, which announces nothing, the server
//! itself watches the database for other connections' commits (the command line writing
//! beside it, see `Nms::watch_other_writers`) and delivers them the same way. A hub fed
//! either way is marked [`Hub::set_remote_feed`]: its waiters then wait for a wakeup only.
//! Without a feed (a service built without a server around it), waiters also re-read on a
//! short timer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use tokio::sync::Notify;

/// Boxes remembered for the webhook deliverer before it is told to look at all of them.
const MAX_CHANGED: usize = 10_000;

/// Without a remote feed, how often waiters read the database again.
pub const RE_READ: std::time::Duration = std::time::Duration::from_secs(1);

/// See [`Hub::watch_webhooks`].
#[derive(Default)]
struct WebhookBoxes {
    boxes: Option<std::collections::HashSet<i64>>,
    /// Boxes added by [`Hub::watch_webhook_box`] so far.
    added: u64,
}

/// The wakeup hub.
pub struct Hub {
    boxes: DashMap<i64, Arc<Notify>>,
    /// The newest modseq published or delivered per box (announced news older than it is
    /// dropped).
    latest: DashMap<i64, i64>,
    /// Signalled on every change of any box (the webhook deliverer waits on it) ...
    any: Arc<Notify>,
    /// ... and the boxes changed since it last looked (`None`: too many; look at all).
    changed: std::sync::Mutex<Option<std::collections::HashSet<i64>>>,
    /// The boxes with webhook subscriptions, as last read from the database plus those
    /// made here since (`None`: not known; every box counts). Changes of other boxes give
    /// the webhook deliverer nothing to do, so they do not wake it.
    webhook_boxes: std::sync::Mutex<WebhookBoxes>,
    /// Per channel: the signal its open poll waits on besides its boxes' (a newer poll
    /// began, the channel was deleted, a subscription into it was made or moved).
    polls: DashMap<i64, Arc<Notify>>,
    /// Other processes' commits are delivered (waiters need no timer).
    remote_feed: AtomicBool,
    /// The server is shutting down: waiters answer with what they have.
    closing: AtomicBool,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            boxes: DashMap::new(),
            latest: DashMap::new(),
            any: Arc::new(Notify::new()),
            // Nothing is known of the time before: look at everything first.
            changed: std::sync::Mutex::new(None),
            webhook_boxes: std::sync::Mutex::new(WebhookBoxes::default()),
            polls: DashMap::new(),
            remote_feed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        }
    }
}

impl Hub {
    /// Box `box_id` changed, now at `modseq` (call after the commit): wake this node's
    /// waiters.
    pub fn publish(&self, box_id: i64, modseq: i64) {
        self.note(box_id, modseq);
        self.wake(box_id);
    }

    /// A change the database announced (committed by any process): wake this node's
    /// waiters, unless this node has already seen the box at `modseq` or later.
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
    /// delivered and the next may be due), if the box may have webhook subscriptions.
    pub fn touch(&self, box_id: i64) {
        if let Ok(watched) = self.webhook_boxes.lock()
            && let Some(boxes) = &watched.boxes
            && !boxes.contains(&box_id)
        {
            return;
        }
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

    /// Box `box_id` has a webhook subscription now (made by this node): its changes wake
    /// the webhook deliverer from now on.
    pub fn watch_webhook_box(&self, box_id: i64) {
        if let Ok(mut watched) = self.webhook_boxes.lock() {
            watched.added += 1;
            if let Some(boxes) = &mut watched.boxes {
                boxes.insert(box_id);
            }
        }
    }

    /// The count of [`Hub::watch_webhook_box`] calls so far: taken before the database is
    /// read for [`Hub::watch_webhooks`].
    pub fn webhook_watch_mark(&self) -> u64 {
        self.webhook_boxes.lock().map(|w| w.added).unwrap_or(0)
    }

    /// The boxes with webhook subscriptions, read from the database after `mark` was
    /// taken. Boxes added here meanwhile (their subscription may have committed after the
    /// read) are kept.
    pub fn watch_webhooks(&self, boxes: std::collections::HashSet<i64>, mark: u64) {
        if let Ok(mut watched) = self.webhook_boxes.lock() {
            let keep = if watched.added == mark { None } else { watched.boxes.take() };
            let mut boxes = boxes;
            boxes.extend(keep.into_iter().flatten());
            watched.boxes = Some(boxes);
        }
    }

    /// The boxes touched since the last call (`None`: too many to list, or unknown; look at
    /// every box).
    pub fn take_changed(&self) -> Option<Vec<i64>> {
        let mut changed = self.changed.lock().ok()?;
        let set = changed.replace(Default::default())?;
        Some(set.into_iter().collect())
    }

    /// Announcements may have been missed: wake every waiter (each reads the database
    /// again), and have the webhook deliverer look at every box.
    pub fn wake_all(&self) {
        for n in self.boxes.iter() {
            n.notify_waiters();
        }
        for n in self.polls.iter() {
            n.notify_waiters();
        }
        if let Ok(mut changed) = self.changed.lock() {
            *changed = None;
        }
        self.any.notify_waiters();
    }

    /// The server is shutting down: every waiter wakes and answers with what it has, and
    /// waits begun from now on answer at once.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// Whether [`Hub::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Other processes' commits reach this hub from now on ([`Hub::deliver`],
    /// [`Hub::wake_channel`], [`Hub::wake_all`]).
    pub fn set_remote_feed(&self) {
        self.remote_feed.store(true, Ordering::Relaxed);
    }

    /// How long a waiter may wait without reading the database again: without a remote
    /// feed, at most `RE_READ` (other processes' writes wake nobody); with one, as long as
    /// it likes.
    pub fn re_read_within(&self, wait: std::time::Duration) -> std::time::Duration {
        if self.remote_feed.load(Ordering::Relaxed) { wait } else { wait.min(RE_READ) }
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

    /// The boxes someone here waits on: held by a poll, or with webhook subscriptions.
    pub fn waited_on(&self) -> Vec<i64> {
        let mut out: Vec<i64> =
            self.boxes.iter().filter(|e| Arc::strong_count(e.value()) > 1).map(|e| *e.key()).collect();
        if let Ok(watched) = self.webhook_boxes.lock()
            && let Some(boxes) = &watched.boxes
        {
            out.extend(boxes.iter().copied());
        }
        out.sort_unstable();
        out.dedup();
        out
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
    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn publish_wakes_registered_waiters_and_the_webhook_deliverer() {
        let hub = Hub::default();
        let signal = hub.box_signal(7);
        let any = hub.any_signal();
        let mut waiter = Box::pin(signal.notified());
        waiter.as_mut().enable();
        let mut any_waiter = Box::pin(any.notified());
        any_waiter.as_mut().enable();
        hub.publish(7, 41);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), any_waiter).await.unwrap();
    }

    #[tokio::test]
    async fn announced_news_wakes_only_when_it_is_news() {
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

    /// After announcements may have been lost, every box's and every channel's waiter
    /// reads again, and the webhook deliverer looks at every box.
    #[test]
    fn waking_all_wakes_every_waiter() {
        let hub = Hub::default();
        assert_eq!(hub.take_changed(), None);
        let (one, two, poll, any) = (hub.box_signal(1), hub.box_signal(2), hub.channel_signal(3), hub.any_signal());
        let mut waiters: Vec<_> = [&one, &two, &poll, &any].iter().map(|n| Box::pin(n.notified())).collect();
        for w in &mut waiters {
            w.as_mut().enable();
        }
        hub.touch(1);
        hub.wake_all();
        for w in waiters {
            assert!(w.now_or_never().is_some());
        }
        assert_eq!(hub.take_changed(), None, "look at every box");
    }

    #[test]
    fn a_channel_is_woken_alone() {
        let hub = Hub::default();
        let (mine, other) = (hub.channel_signal(3), hub.channel_signal(4));
        let (mut woken, mut idle) = (Box::pin(mine.notified()), Box::pin(other.notified()));
        woken.as_mut().enable();
        idle.as_mut().enable();
        hub.wake_channel(3);
        assert!(woken.now_or_never().is_some());
        assert!(idle.now_or_never().is_none());
    }

    #[test]
    fn only_a_hub_without_a_remote_feed_re_reads_on_a_timer() {
        let hub = Hub::default();
        let long = std::time::Duration::from_secs(30);
        assert_eq!(hub.re_read_within(long), RE_READ);
        assert_eq!(hub.re_read_within(std::time::Duration::from_millis(10)), std::time::Duration::from_millis(10));
        hub.set_remote_feed();
        assert_eq!(hub.re_read_within(long), long);
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

    #[test]
    fn only_boxes_with_webhooks_wake_the_deliverer_once_they_are_known() {
        let hub = Hub::default();
        hub.take_changed();
        let any = hub.any_signal();
        let mark = hub.webhook_watch_mark();
        hub.watch_webhooks([1].into(), mark);
        let mut woken = Box::pin(any.notified());
        woken.as_mut().enable();
        hub.touch(2);
        assert!(woken.as_mut().now_or_never().is_none(), "box 2 has no webhook");
        assert_eq!(hub.take_changed(), Some(vec![]));
        hub.touch(1);
        assert!(woken.as_mut().now_or_never().is_some());
        assert_eq!(hub.take_changed(), Some(vec![1]));

        // A subscription made while the database was read is not forgotten.
        let mark = hub.webhook_watch_mark();
        hub.watch_webhook_box(3);
        hub.watch_webhooks([1].into(), mark);
        hub.touch(3);
        assert_eq!(hub.take_changed(), Some(vec![3]));
        // Without one meanwhile, the database's answer is the set.
        let mark = hub.webhook_watch_mark();
        hub.watch_webhooks([1].into(), mark);
        hub.touch(3);
        assert_eq!(hub.take_changed(), Some(vec![]));
    }
}
