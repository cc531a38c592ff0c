//! Metadata storage: traits of domain verbs, one per concern, combined into [`Store`].
//!
//! The traits speak in boxes, folders, objects, flags and payload parts, never in tables.
//! Every mutating verb is one transaction whose first statement bumps the box's `modseq`;
//! every item it changes is stamped with that value (`lastModSeq`), and deletions leave
//! tombstones. A verb that turns out to change nothing rolls back, so the modseq only moves
//! when something really changed.
//!
//! Every verb that changes what a box's waiters would find (its folders, objects and flags,
//! its validity, the position a subscription replays from) answers [`Written`]: its value,
//! and the [`Commit`] it made (`None`: it changed nothing). The domain publishes that commit
//! right after the call; nobody re-reads the box to learn it. Provisioning a box (nobody can
//! wait on a box before it exists) and the writes no box waiter reads (accounts, channels,
//! delivery positions, the webhook outbox, blob marks) answer plainly.

pub mod departures;
pub mod engine;
pub mod listen;
pub mod postgres;
pub mod sql;
pub mod sqlite;

use async_trait::async_trait;

pub use departures::{Class, Departing, Departure, DepartureJudge, DeparturePolicy, Facts, ObjectFacts};

use crate::error::Result;
use crate::model::*;

/// Logins: the credentials of users and services and the boxes each may open.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Create a login; fails with `DuplicateName` if the name is taken.
    async fn create_account(
        &self,
        name: &str,
        password_hash: &str,
        is_service: bool,
        boxes: &[(String, String)],
    ) -> Result<Account>;
    /// Store (or, with `None`, clear) an account's Digest H(A1) values; `false` if there is
    /// no such account.
    async fn set_account_digest(&self, name: &str, digest: Option<&DigestSecrets>) -> Result<bool>;
    async fn find_account(&self, name: &str) -> Result<Option<Account>>;
    async fn list_accounts(&self) -> Result<Vec<Account>>;
    /// Remove a login; `false` if there was none.
    async fn remove_account(&self, name: &str) -> Result<bool>;
}

/// Boxes: provisioning, lookup and reset.
#[async_trait]
pub trait Boxes: Send + Sync {
    /// Create a box with its root folder if it does not exist yet; return it.
    async fn provision_box(&self, store: &str, address: &str, root_id: &str, now_ms: i64) -> Result<BoxRow>;
    async fn find_box(&self, store: &str, address: &str) -> Result<Option<BoxRow>>;
    /// A box by internal id.
    async fn box_by_id(&self, id: i64) -> Result<Option<BoxRow>>;
    /// Every box of a store.
    async fn boxes_of_store(&self, store: &str) -> Result<Vec<BoxRow>>;
    /// Empty a box (every object and folder but the root, every tombstone) and give it a new
    /// validity, so every restart token of it is stale. Returns the box as it is now and
    /// the released blob keys.
    async fn reset_box(&self, b: &BoxRow) -> Result<Written<(BoxRow, Released)>>;
    /// The modseq of each of these boxes that exists, as `(id, modseq)`.
    async fn box_modseqs(&self, ids: &[i64]) -> Result<Vec<(i64, i64)>>;
    /// Whether any other connection (of this process or another) committed since the last
    /// call; `None`: the engine announces commits instead and cannot tell this way.
    async fn committed_elsewhere(&self) -> Result<Option<bool>>;
}

/// Folders: lookup by id and path, creation, rename, deletion, children and stats.
#[async_trait]
pub trait Folders: Send + Sync {
    async fn root_folder(&self, b: &BoxRow) -> Result<Folder>;
    async fn get_folder(&self, b: &BoxRow, public_id: &str) -> Result<Option<Folder>>;
    async fn folder_by_path(&self, b: &BoxRow, path: &str) -> Result<Option<Folder>>;
    /// The public id of the folder holding the (first stored) object with this
    /// correlationId.
    async fn folder_of_correlation_id(&self, b: &BoxRow, correlation_id: &str) -> Result<Option<String>>;
    async fn create_folder(&self, b: &BoxRow, f: NewFolder) -> Result<Written<Folder>>;
    /// Rename; returns the folder as it stands afterwards.
    async fn rename_folder(&self, b: &BoxRow, public_id: &str, name: &str) -> Result<Written<Folder>>;
    /// Delete a folder and everything under it; `None` if it does not exist.
    async fn delete_folder(&self, b: &BoxRow, public_id: &str, now_ms: i64) -> Result<Written<Option<Released>>>;
    async fn folder_children(
        &self,
        b: &BoxRow,
        folder: &Folder,
        kinds: (bool, bool),
        from: Option<ChildPosition>,
        limit: u32,
    ) -> Result<ChildPage>;
    async fn folder_stats(&self, b: &BoxRow, folder: &Folder, subtree: bool) -> Result<FolderStats>;
}

/// Objects: creation (single and bulk), lookup, payload bytes, deletion, copy, move and expiry.
#[async_trait]
pub trait Objects: Send + Sync {
    async fn create_object(&self, b: &BoxRow, o: NewObject) -> Result<Written<Object>>;
    /// Create several objects in one transaction with one modseq; each is all-or-nothing
    /// (a failing one is answered with its error, the others are created).
    async fn create_objects(&self, b: &BoxRow, objects: Vec<Result<NewObject>>)
    -> Result<Written<Vec<Result<Object>>>>;
    async fn get_object(&self, b: &BoxRow, public_id: &str) -> Result<Option<Object>>;
    async fn object_by_path(&self, b: &BoxRow, folder_path: &str, public_id: &str) -> Result<Option<Object>>;
    /// Inline bytes of one payload part.
    async fn inline_part_data(&self, b: &BoxRow, object_public_id: &str, part_id: &str) -> Result<Option<Vec<u8>>>;
    /// Delete an object and its companions (as `policy` names them); `None` if it does not
    /// exist, `Forbidden` if `policy` keeps it.
    async fn delete_object(
        &self,
        b: &BoxRow,
        public_id: &str,
        now_ms: i64,
        policy: &dyn DeparturePolicy,
    ) -> Result<Written<Option<Released>>>;
    /// Delete the targets and their companions in one transaction with one modseq
    /// (tombstones as for single deletions); a target `policy` keeps is answered with its
    /// refusal. Returns the per-object outcome and the released blob keys.
    async fn bulk_delete(
        &self,
        b: &BoxRow,
        targets: &Targets,
        now_ms: i64,
        policy: &dyn DeparturePolicy,
    ) -> Result<Written<(Vec<BulkItem>, Released)>>;
    /// Copy the sources (folders recursively) into the target folder, one transaction, one
    /// modseq; copies get new ids (`new_id` makes them) and share blobs. `None`: no target.
    async fn copy_to_folder(
        &self,
        b: &BoxRow,
        target: &str,
        sources: &Sources,
        now_ms: i64,
    ) -> Result<Written<Option<Vec<Relocated>>>>;
    /// Move the sources into the target folder, one transaction, one modseq; ids stay, a
    /// moved item changes, its children do not; an object `policy` keeps in its folder is
    /// answered with its refusal. `None`: no target.
    async fn move_to_folder(
        &self,
        b: &BoxRow,
        target: &str,
        sources: &Sources,
        policy: &dyn DeparturePolicy,
    ) -> Result<Written<Option<Vec<Relocated>>>>;
    /// Expire objects of a box stored before `stored_before_ms` or beyond its newest
    /// `keep_newest` (by stored date): at most `limit` of them, oldest first, with their
    /// companions, in one transaction with one modseq, leaving `expired` tombstones (those
    /// `policy` keeps stay). Returns how many of them expired and the released blob keys.
    async fn expire_objects(
        &self,
        b: &BoxRow,
        stored_before_ms: Option<i64>,
        keep_newest: Option<u32>,
        now_ms: i64,
        limit: u32,
        policy: &dyn DeparturePolicy,
    ) -> Result<Written<(u64, Released)>>;
}

/// Flags of objects and folders.
#[async_trait]
pub trait Flags: Send + Sync {
    async fn get_flags(&self, b: &BoxRow, t: FlagTarget<'_>) -> Result<Option<Vec<String>>>;
    /// Replace the whole flag list; returns the list afterwards (`None`: no such item).
    async fn set_flags(&self, b: &BoxRow, t: FlagTarget<'_>, flags: &[String]) -> Result<Written<Option<Vec<String>>>>;
    /// Add (`on`) or remove one flag (`None`: no such item).
    async fn change_flag(
        &self,
        b: &BoxRow,
        t: FlagTarget<'_>,
        flag: &str,
        on: bool,
    ) -> Result<Written<Option<FlagChange>>>;
    /// Add (`on`) or remove flags on the targets in one transaction with one modseq; an
    /// object whose flags do not change keeps its lastModSeq.
    async fn bulk_flags(
        &self,
        b: &BoxRow,
        targets: &Targets,
        flags: &[String],
        on: bool,
    ) -> Result<Written<Vec<BulkItem>>>;
}

/// Searches over objects and folders, paged by keyset.
#[async_trait]
pub trait Search: Send + Sync {
    /// One page of an object search.
    async fn search_objects(&self, b: &BoxRow, q: &SearchQuery) -> Result<ObjectPage>;
    /// One page of a folder search.
    async fn search_folders(&self, b: &BoxRow, q: &SearchQuery) -> Result<FolderPage>;
    /// Public ids of the most recently deleted or expired objects, newest first.
    async fn vanished_objects(&self, b: &BoxRow, limit: u32) -> Result<Vec<String>>;
}

/// Strict synchronization: the box state, changes since a modseq, tombstones.
#[async_trait]
pub trait Changes: Send + Sync {
    /// The box's (modseq, validity, replay floor) as they stand.
    async fn sync_state(&self, b: &BoxRow) -> Result<(i64, i64, i64)>;
    /// The changes after modseq `after`: at least `limit` items when that many exist, always
    /// whole modseq groups.
    /// Objects come without part metadata, and without attributes (nor tombstone
    /// snapshots) unless `with_attributes` (a subscription filter needs them).
    async fn changes_since(
        &self,
        b: &BoxRow,
        after: i64,
        after_within: Within,
        limit: u32,
        with_attributes: bool,
    ) -> Result<ChangePage>;
    /// Tombstones with `last_mod_seq > after`, oldest first.
    async fn tombstones_since(&self, b: &BoxRow, after: i64) -> Result<Vec<Tombstone>>;
    /// Drop tombstones older than `before_ms`, and beyond the newest `keep_per_box` of each
    /// box; each box's replay floor rises to the newest dropped modseq. Returns how many
    /// were dropped.
    async fn prune_tombstones(&self, before_ms: i64, keep_per_box: u32) -> Result<u64>;
}

/// Notification channels, subscriptions, their delivery position and the webhook outbox.
#[async_trait]
pub trait Subscriptions: Send + Sync {
    /// Store a new channel (its `id` is assigned).
    async fn create_channel(&self, c: &Channel) -> Result<Channel>;
    /// A channel that has not expired at `now_ms`.
    async fn channel(&self, public_id: &str, now_ms: i64) -> Result<Option<Channel>>;
    /// The live channels of a login under one `{userId}`.
    async fn channels_of(&self, principal: &str, user_id: &str, now_ms: i64) -> Result<Vec<Channel>>;
    /// How many live channels a login holds (under any `{userId}`).
    async fn count_channels(&self, principal: &str, now_ms: i64) -> Result<u64>;
    /// Set a channel's lifetime from `now_ms`; `None` if there is no live channel.
    async fn renew_channel(&self, public_id: &str, lifetime_secs: i64, now_ms: i64) -> Result<Option<Channel>>;
    /// A poll of a live channel begins: its lifetime is renewed from `now_ms` and its poll
    /// generation rises (ending the poll open before, on any node). Returns the channel as
    /// it is now; `None` if there is no live channel.
    async fn begin_poll(&self, public_id: &str, now_ms: i64) -> Result<Option<Channel>>;
    /// Delete a channel and the subscriptions delivering into it; `false` if none.
    async fn delete_channel(&self, public_id: &str) -> Result<bool>;
    /// Store a new subscription (its `id` is assigned), unless its box already has
    /// `max_per_box` live subscriptions (0: no limit): then `None`. The count and the insert
    /// are one atomic step, so concurrent creations cannot overshoot the limit. A creation
    /// commits at the box's modseq as it stands (its pending changes may be due at once).
    async fn create_subscription(&self, s: &Subscription, max_per_box: u32) -> Result<Written<Option<Subscription>>>;
    /// A live subscription of box `b`, by id or by the creating login's client correlator.
    async fn subscription(&self, b: &BoxRow, public_id: &str, now_ms: i64) -> Result<Option<Subscription>>;
    async fn subscription_by_correlator(
        &self,
        b: &BoxRow,
        principal: &str,
        correlator: &str,
        now_ms: i64,
    ) -> Result<Option<Subscription>>;
    /// The live subscriptions of a login on box `b`.
    async fn subscriptions_of(&self, b: &BoxRow, principal: &str, now_ms: i64) -> Result<Vec<Subscription>>;
    /// The live subscriptions delivering into a channel.
    async fn subscriptions_of_channel(&self, channel_id: i64, now_ms: i64) -> Result<Vec<Subscription>>;
    /// Store a subscription's new duration, expiry and (when given) restart point.
    /// With `position`, also its restart point and token (an update with a restartToken);
    /// without, only the duration (a delivery moving the position meanwhile is kept). A new
    /// position commits at the box's modseq as it stands; a new duration commits nothing a
    /// waiter reads.
    async fn update_subscription(&self, s: &Subscription, position: bool) -> Result<Written<()>>;
    async fn delete_subscription(&self, b: &BoxRow, public_id: &str) -> Result<bool>;
    /// Move a subscription's position `m.from -> m.to` and consume index `m.index`, if
    /// nobody else did (compare-and-set on the index and the position); `false` when it lost
    /// the race. With `outbox`, the list's rendered body is queued for webhook delivery in
    /// the same transaction, due at once.
    async fn advance_subscription(&self, m: &Advance, outbox: Option<&str>) -> Result<bool>;
    /// Move a subscription's position without consuming an index (changes no event passed).
    async fn skip_subscription(&self, m: &Advance) -> Result<bool>;
    /// Webhook subscriptions (of these boxes; `None`: of any) with changes past their
    /// position and no list in flight.
    async fn webhook_candidates(&self, now_ms: i64, boxes: Option<&[i64]>, limit: u32) -> Result<Vec<Subscription>>;
    /// Claim due webhook lists for delivery until `lease_until_ms`.
    async fn claim_webhook_lists(&self, now_ms: i64, lease_until_ms: i64, limit: u32) -> Result<Vec<OutboxList>>;
    /// The boxes with live webhook subscriptions.
    async fn webhook_boxes(&self, now_ms: i64) -> Result<Vec<i64>>;
    /// The earliest time a queued webhook list falls due (leases included).
    async fn next_webhook_due(&self) -> Result<Option<i64>>;
    /// A webhook list was delivered: drop it, so the subscription's next list can be built.
    async fn webhook_delivered(&self, subscription_id: i64, index: i64) -> Result<()>;
    /// A webhook attempt failed: count it and set the next attempt.
    async fn webhook_failed(&self, subscription_id: i64, index: i64, due_at_ms: i64, error: &str) -> Result<()>;
    /// End a subscription by internal id (its webhook is gone).
    async fn end_subscription(&self, subscription_id: i64) -> Result<()>;
    /// Drop expired channels and subscriptions; returns how many.
    async fn purge_expired_subscriptions(&self, now_ms: i64) -> Result<u64>;
}

/// Blob bookkeeping: pins that protect uploads in flight and deletion marks.
#[async_trait]
pub trait BlobRefs: Send + Sync {
    /// Protect a blob key from garbage collection while an upload is in flight.
    /// Fails with `Internal` if a deletion of the key is under way (retry later).
    async fn pin_blob(&self, key: &str, token: &str, now_ms: i64) -> Result<bool>;
    async fn unpin_blob(&self, key: &str, token: &str) -> Result<()>;
    /// If no part references the key and no pin holds it, mark it as being deleted and
    /// return `true`: the caller then deletes the blob and calls `finish_blob_delete`.
    async fn begin_blob_delete(&self, key: &str, now_ms: i64) -> Result<bool>;
    async fn finish_blob_delete(&self, key: &str) -> Result<()>;
    /// Drop pins and deletion marks made before `before_ms`: what a crashed process left
    /// behind, which would otherwise keep the sweep from ever collecting those blobs.
    /// Returns how many were dropped.
    async fn expire_blob_marks(&self, before_ms: i64) -> Result<u64>;
}

/// The whole store: every concern, and the schema's migrations. The domain holds one
/// `Arc<dyn Store>`.
#[async_trait]
pub trait Store:
    Accounts + Boxes + Folders + Objects + Flags + Search + Changes + Subscriptions + BlobRefs + 'static
{
    /// Apply pending migrations.
    async fn migrate(&self) -> Result<()>;
    /// Answer a trivial query (readiness).
    async fn ping(&self) -> Result<()>;
    /// The connections of the pool as they are now.
    fn pool_stats(&self) -> PoolStats;
    /// Webhook notification lists queued and not yet delivered.
    async fn webhook_backlog(&self) -> Result<u64>;
}

/// A connection pool's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
}
