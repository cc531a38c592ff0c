//! Strict synchronization state (NMS 5.1.4): restart tokens, replay, tombstone retention,
//! box reset.
//!
//! A box's *restart token* encodes (box validity, modseq), sealed like cursors: opaque,
//! versioned, tamper-evident, bound to the box. Replaying from a token yields the *current*
//! state of every object and folder whose `lastModSeq` is above the token's modseq, and the
//! tombstones of those deleted or expired since, in modseq order: condensed to the net
//! effect by construction, since an item is reported once, as it stands. A token whose
//! validity is not the box's (the box was reset) or whose modseq is below the box's replay
//! floor (the tombstones it would need were pruned) replays as exactly one `resetBox`.

use super::Nms;
use crate::error::{Error, Result};
use crate::ids::now_ms;
use crate::model::{BoxRow, Change, Within};

/// One event of a replay.
// A reset is one event per replay at most; boxing every change to shrink it is not worth it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum SyncEvent {
    /// Discard everything known of the box and read it again.
    ResetBox,
    /// An item's current state, or its tombstone.
    Change(Change),
}

/// A page of a replay.
#[derive(Clone, Debug)]
pub struct ReplayPage {
    pub events: Vec<SyncEvent>,
    /// The box's restart token as it stands right after these events.
    pub token: String,
    /// More changes follow (replay again from `token`).
    pub more: bool,
    /// What `token` names.
    pub point: RestartPoint,
}

/// What a restart token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPoint {
    pub validity: i64,
    pub modseq: i64,
    /// Inside group `modseq`, when a page split it (see [`Within`]); `None`: after it.
    pub within: Within,
}

impl RestartPoint {
    /// After the whole of group `modseq`.
    pub fn after(validity: i64, modseq: i64) -> Self {
        Self { validity, modseq, within: None }
    }

    /// Whether replaying from here is a `resetBox`, in a box at `validity` and `modseq`
    /// whose tombstones reach back to `floor`: another validity (a reset), tombstones
    /// pruned past it, or a point ahead of the box.
    pub fn resets(&self, validity: i64, floor: i64, modseq: i64) -> bool {
        self.validity != validity || self.modseq < floor || self.modseq > modseq
    }
}

impl Nms {
    /// What a restart token of box `b` is sealed for.
    pub fn restart_purpose(b: &BoxRow) -> String {
        format!("restart:{}", b.id)
    }

    /// The restart token for `point` of box `b`.
    pub fn restart_token(&self, b: &BoxRow, point: RestartPoint) -> String {
        let mut payload = Vec::with_capacity(25);
        payload.extend_from_slice(&point.validity.to_be_bytes());
        payload.extend_from_slice(&point.modseq.to_be_bytes());
        if let Some((part, id)) = point.within {
            payload.push(part);
            payload.extend_from_slice(&id.to_be_bytes());
        }
        self.tokens.seal(&Self::restart_purpose(b), &payload)
    }

    /// Open a restart token of box `b`; a forged token, or one of another box, is
    /// `400 SVC0002 restartToken`.
    pub fn open_restart_token(&self, b: &BoxRow, token: &str) -> Result<RestartPoint> {
        let bad = || Error::invalid("restartToken");
        let raw = self.tokens.open(&Self::restart_purpose(b), token).ok_or_else(bad)?;
        let int = |bytes: &[u8]| -> Result<i64> { Ok(i64::from_be_bytes(bytes.try_into().map_err(|_| bad())?)) };
        match raw.len() {
            16 => Ok(RestartPoint::after(int(&raw[..8])?, int(&raw[8..])?)),
            25 if raw[16] <= 2 => Ok(RestartPoint {
                validity: int(&raw[..8])?,
                modseq: int(&raw[8..16])?,
                within: Some((raw[16], int(&raw[17..])?)),
            }),
            _ => Err(bad()),
        }
    }

    /// The box's current restart token (nothing replays from it until the box changes).
    pub async fn current_token(&self, b: &BoxRow) -> Result<String> {
        let (modseq, validity, _) = self.meta.sync_state(b).await?;
        Ok(self.restart_token(b, RestartPoint::after(validity, modseq)))
    }

    /// Replay from `from`: at least `limit` changes when that many exist (whole modseq
    /// groups, but a group much larger than `limit` comes in slices of `limit`), or one
    /// `resetBox` when `from` cannot be replayed.
    pub async fn replay(&self, b: &BoxRow, from: RestartPoint, limit: u32) -> Result<ReplayPage> {
        self.replay_with(b, from, limit, true).await
    }

    /// [`Nms::replay`], objects with their attributes (and tombstones with their snapshots)
    /// only when `with_attributes`: notifications show neither, filters test them.
    pub async fn replay_with(
        &self,
        b: &BoxRow,
        from: RestartPoint,
        limit: u32,
        with_attributes: bool,
    ) -> Result<ReplayPage> {
        let page = self.meta.changes_since(b, from.modseq, from.within, limit, with_attributes).await?;
        let current = RestartPoint::after(page.validity, page.modseq);
        if from.resets(page.validity, page.replay_floor, page.modseq) {
            return Ok(ReplayPage {
                events: vec![SyncEvent::ResetBox],
                token: self.restart_token(b, current),
                more: false,
                point: current,
            });
        }
        let after = if page.more {
            RestartPoint { validity: page.validity, modseq: page.through, within: page.through_within }
        } else {
            current
        };
        Ok(ReplayPage {
            events: page.changes.into_iter().map(SyncEvent::Change).collect(),
            token: self.restart_token(b, after),
            more: page.more,
            point: after,
        })
    }

    /// Drop tombstones past the retention (`sync.tombstone_max_age_secs`,
    /// `sync.tombstone_max_per_box`), raising replay floors; returns how many were dropped.
    /// A limit of 0 is off.
    pub async fn prune_tombstones(&self) -> Result<u64> {
        let before = match self.sync.tombstone_max_age_secs {
            0 => i64::MIN,
            secs => now_ms().saturating_sub(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)),
        };
        let keep = match self.sync.tombstone_max_per_box {
            0 => u32::MAX,
            n => n,
        };
        self.meta.prune_tombstones(before, keep).await
    }

    /// Apply the expiry policies (`sync.retention`): objects past them are deleted, leaving
    /// `expired` tombstones (replayed as `expiredObject`). Returns how many expired.
    pub async fn expire(&self) -> Result<u64> {
        let mut total = 0;
        for (store, policy) in &self.sync.retention {
            let before = (policy.max_age_secs > 0).then(|| {
                now_ms().saturating_sub(i64::try_from(policy.max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX))
            });
            let keep = (policy.max_objects > 0).then_some(policy.max_objects);
            if before.is_none() && keep.is_none() {
                continue;
            }
            for b in self.meta.boxes_of_store(store).await? {
                // In bounded transactions, so writers are never held up for long.
                loop {
                    let expired =
                        self.meta.expire_objects(&b, before, keep, now_ms(), 1000, &crate::cpm::Departures).await?;
                    let (n, released) = self.published(expired);
                    self.blobs.release(&released.blob_keys).await;
                    total += n;
                    if n == 0 {
                        break;
                    }
                }
            }
        }
        Ok(total)
    }

    /// Empty box `b` and give it a new validity: every restart token of it now replays as
    /// `resetBox`. Blobs nothing references any more are removed.
    pub async fn reset_box(&self, b: &BoxRow) -> Result<BoxRow> {
        let (now, released) = self.published(self.meta.reset_box(b).await?);
        self.blobs.release(&released.blob_keys).await;
        Ok(now)
    }
}
