//! In-process wakeups: writers publish "box B changed" after their commit; long polls wait
//! for it. A waiter registers (enables its `Notified`) *before* it reads the database, so a
//! change committed between its read and its wait still wakes it. The hub carries no data:
//! what changed is always read from the database, so a bridge carrying the same signal
//! between nodes (PostgreSQL LISTEN/NOTIFY) can feed `publish` without changing callers.
//! Waiters also re-read on a short timer, which covers writers in other processes (the
//! command line's `box reset`).

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::Notify;

/// The wakeup hub.
#[derive(Default)]
pub struct Hub {
    boxes: DashMap<i64, Arc<Notify>>,
    /// Per channel: the generation of its current poll and the signal ending older ones.
    polls: DashMap<i64, (u64, Arc<Notify>)>,
}

impl Hub {
    /// Box `box_id` changed (call after the commit).
    pub fn publish(&self, box_id: i64) {
        if let Some(n) = self.boxes.get(&box_id) {
            n.notify_waiters();
        }
    }

    /// The signal of box `box_id`.
    pub fn box_signal(&self, box_id: i64) -> Arc<Notify> {
        self.boxes.entry(box_id).or_default().clone()
    }

    /// A new poll of channel `channel_id` begins: it supersedes the open one (woken now).
    /// Returns the new poll's generation and the channel's signal.
    pub fn begin_poll(&self, channel_id: i64) -> (u64, Arc<Notify>) {
        let mut e = self.polls.entry(channel_id).or_insert_with(|| (0, Arc::new(Notify::new())));
        e.0 += 1;
        e.1.notify_waiters();
        (e.0, e.1.clone())
    }

    /// Whether poll `generation` is still the channel's current one.
    pub fn is_current_poll(&self, channel_id: i64, generation: u64) -> bool {
        self.polls.get(&channel_id).is_some_and(|e| e.0 == generation)
    }

    /// The channel was deleted: wake its open poll (which then finds the channel gone).
    pub fn end_channel(&self, channel_id: i64) {
        if let Some((_, (_, n))) = self.polls.remove(&channel_id) {
            n.notify_waiters();
        }
    }
}
