//! Metadata storage behind a trait of domain verbs.
//!
//! `MetaStore` speaks in boxes, folders, objects, flags and payload parts, never in tables.
//! Every mutating verb is one transaction whose first statement bumps the box's `modseq`;
//! every item it changes is stamped with that value (`lastModSeq`), and deletions leave
//! tombstones. A verb that turns out to change nothing rolls back, so the modseq only moves
//! when something really changed. The SQLite implementation is the embedded default; the
//! trait is shaped so that a PostgreSQL one can follow without touching callers.

pub mod sqlite;

use async_trait::async_trait;

use crate::error::{Error, Result};

/// A box: one (store, address) pair with its change counter.
#[derive(Clone, Debug)]
pub struct BoxRow {
    pub id: i64,
    pub store: String,
    pub address: String,
    pub modseq: i64,
    pub validity: i64,
}

/// A folder as stored.
#[derive(Clone, Debug)]
pub struct Folder {
    pub id: i64,
    pub public_id: String,
    /// Public id of the parent; `None` for the root.
    pub parent_public_id: Option<String>,
    pub name: String,
    pub is_root: bool,
    /// Slash-separated names from the root (`""` for the root, `/a/b` below it).
    pub path: String,
    /// Client-supplied attributes (the derived `Name`, `Date`, `Root` are added on output).
    pub attributes: Vec<Attribute>,
    pub created_at_ms: i64,
    pub last_mod_seq: i64,
}

/// One attribute: a case-insensitive name with ordered values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub values: Vec<String>,
}

/// Where a new item goes.
#[derive(Clone, Debug)]
pub enum ParentRef {
    /// An existing folder by public id.
    Id(String),
    /// A folder path; `create_missing` makes absent folders on the way.
    Path { path: String, create_missing: bool },
    /// The box's root folder.
    Root,
}

/// The shape a folder path may have: at most `max_depth` segments and `max_path_bytes`
/// bytes (0: no bound). Engines check every path they compute (a new folder, a renamed,
/// moved or copied subtree), inside the write, so a refused change leaves nothing behind
/// and a request making folders on the way stops at the first one too deep or too long.
/// Folders that already exist are not checked: a lowered limit keeps them usable.
///
/// Each folder row stores its path and its ancestry (one id per level), so a folder costs
/// storage in proportion to its depth; the bounds keep that cost, and the work one request
/// can cause, constant per folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FolderLimits {
    pub max_depth: u32,
    pub max_path_bytes: u32,
}

impl FolderLimits {
    /// The configured limits.
    pub fn of(limits: &crate::config::LimitSettings) -> Self {
        Self { max_depth: limits.max_folder_depth, max_path_bytes: limits.max_folder_path_bytes }
    }

    /// A folder path (`/a/b`) is within the limits.
    pub fn check(&self, path: &str) -> Result<()> {
        let depth = path.bytes().filter(|&c| c == b'/').count() as u64;
        self.check_extent(depth, path.len() as u64)
    }

    /// The deepest folder of a subtree (`depth` segments) and its longest path (`bytes`)
    /// are within the limits.
    pub fn check_extent(&self, depth: u64, bytes: u64) -> Result<()> {
        if self.max_depth > 0 && depth > u64::from(self.max_depth) {
            return Err(Error::LimitExceeded {
                what: "folder depth".into(),
                key: "limits.max_folder_depth",
                limit: u64::from(self.max_depth),
            });
        }
        if self.max_path_bytes > 0 && bytes > u64::from(self.max_path_bytes) {
            return Err(Error::LimitExceeded {
                what: "folder path bytes".into(),
                key: "limits.max_folder_path_bytes",
                limit: u64::from(self.max_path_bytes),
            });
        }
        Ok(())
    }
}

/// A folder to create.
#[derive(Clone, Debug)]
pub struct NewFolder {
    pub public_id: String,
    pub parent: ParentRef,
    /// `None`: the store invents a unique name.
    pub name: Option<String>,
    pub attributes: Vec<Attribute>,
    pub now_ms: i64,
}

/// Where a payload part's bytes live.
#[derive(Clone, Debug)]
pub enum PartData {
    Inline(Vec<u8>),
    Blob { key: String },
}

/// Payload part metadata plus its data location.
#[derive(Clone, Debug)]
pub struct PayloadPart {
    /// Identifier within the object (used in `payloadParts/{id}`).
    pub part_id: String,
    pub content_type: String,
    pub content_disposition: Option<String>,
    pub content_id: Option<String>,
    pub content_location: Option<String>,
    pub content_encoding: Option<String>,
    pub file_icon: Option<String>,
    pub size: u64,
    pub data: PartData,
}

/// An object to create.
#[derive(Clone, Debug)]
pub struct NewObject {
    pub public_id: String,
    pub parent: ParentRef,
    pub attributes: Vec<Attribute>,
    pub flags: Vec<String>,
    pub correlation_id: Option<String>,
    pub correlation_tag: Option<String>,
    /// Media type of the whole payload (without boundary), if there is one.
    pub payload_type: Option<String>,
    pub parts: Vec<PayloadPart>,
    /// Searchable text (text attributes, start of textual parts), indexed for
    /// AllTextAttributes and WholeWord searches.
    pub text: String,
    pub now_ms: i64,
}

/// An object as stored, with everything needed to render it.
#[derive(Clone, Debug)]
pub struct Object {
    pub id: i64,
    pub public_id: String,
    pub folder_public_id: String,
    pub folder_path: String,
    pub attributes: Vec<Attribute>,
    pub flags: Vec<String>,
    pub correlation_id: Option<String>,
    pub correlation_tag: Option<String>,
    pub payload_type: Option<String>,
    /// Part metadata; `data` of blob parts holds the key, inline bytes are not loaded here.
    pub parts: Vec<PayloadPart>,
    pub stored_at_ms: i64,
    pub last_mod_seq: i64,
    /// The modseq of its creation: the order CreatedObjects follows.
    pub creation_seq: i64,
}

/// Which item a flag operation addresses.
#[derive(Clone, Copy, Debug)]
pub enum FlagTarget<'a> {
    Object(&'a str),
    Folder(&'a str),
}

/// Outcome of a single-flag change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagChange {
    /// The flag state changed (modseq bumped).
    Changed,
    /// The flag was already in the requested state (nothing written).
    Unchanged,
}

/// What a child listing returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildKind {
    Folder,
    Object,
}

/// One page of a folder's children: folders first (by id), then objects (by id).
#[derive(Clone, Debug, Default)]
pub struct ChildPage {
    pub folders: Vec<String>,
    pub objects: Vec<String>,
    /// Where the next page starts, if more may follow.
    pub next: Option<ChildPosition>,
}

/// A position inside a child listing (exclusive lower bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildPosition {
    pub kind: ChildKind,
    /// Internal id of the last entry returned.
    pub after: i64,
}

/// Message counts of a folder (and of its subtree).
#[derive(Clone, Copy, Debug, Default)]
pub struct FolderStats {
    pub msg_count: i64,
    pub unread_count: i64,
    pub size: i64,
}

/// Blob keys that a deletion released; the caller garbage-collects them after commit.
#[derive(Clone, Debug, Default)]
pub struct Released {
    pub blob_keys: Vec<String>,
}

/// What a deletion or expiry left behind, for replay by the sync layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// `object` or `folder`.
    pub kind: String,
    pub public_id: String,
    /// `deleted` or `expired`.
    pub reason: String,
    pub last_mod_seq: i64,
    pub correlation_id: Option<String>,
    pub correlation_tag: Option<String>,
    /// What subscription filters test, as the item stood when it went (`None` for
    /// tombstones older than snapshots).
    pub snapshot: Option<Snapshot>,
}

/// What a tombstone remembers of its item for subscription filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Stored (objects) or created (folders) time, milliseconds.
    pub date_ms: i64,
    /// Objects: the creation modseq.
    pub creation_seq: Option<i64>,
    /// Folders: the name.
    pub name: Option<String>,
    pub flags: Vec<String>,
    pub attributes: Vec<Attribute>,
}

/// A login.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    pub is_service: bool,
    /// (store, address) pairs this account owns.
    pub boxes: Vec<(String, String)>,
    /// What HTTP Digest needs (`None`: Digest is not possible for this account).
    pub digest: Option<DigestSecrets>,
}

/// The H(A1) values HTTP Digest (RFC 7616) checks responses against, as lowercase hex.
/// They are password-equivalent for Digest, so they are written only when Digest is wanted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DigestSecrets {
    /// The realm the values were computed for (H(A1) includes it).
    pub realm: String,
    /// SHA-256(username:realm:password).
    pub ha1_sha256: Option<String>,
    /// MD5(username:realm:password).
    pub ha1_md5: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------------------

/// A compiled search filter over objects or folders (built and validated by the domain;
/// kept as JSON with subscriptions).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Filter {
    /// Every sub-filter holds.
    All(Vec<Filter>),
    /// At least one sub-filter holds.
    Any(Vec<Filter>),
    /// The sub-filter does not hold.
    Not(Box<Filter>),
    /// Stored (objects) or created (folders) time in `[min, max)`, milliseconds.
    Stored { min_ms: Option<i64>, max_ms: Option<i64> },
    /// An attribute (ASCII-lower-cased name) has exactly this value among its values.
    Attribute { name_lc: String, value: String },
    /// Case-insensitive substring of the searchable text.
    Text { needle: String },
    /// A whole word of the searchable text or textual payload.
    Word { word: String },
    /// The flag (ASCII-lower-cased) is set (`true`) or not set (`false`).
    Flag { flag_lc: String, set: bool },
    /// Objects created after this creation sequence.
    CreatedAfter { seq: i64 },
    /// Items that are gone (deleted or expired): subscription filters only; no stored item
    /// matches it.
    Vanished,
}

/// What results are ordered by (then by internal id, in the same direction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Internal id: insertion order.
    Id,
    /// Stored date (objects) or creation date (folders).
    Date,
    /// Creation sequence (CreatedObjects).
    Creation,
    /// First value of an attribute (ASCII-lower-cased name); absent sorts as `""`.
    Attribute(String),
}

/// The sort of a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

/// A sort value of the last item of a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortValue {
    Int(i64),
    Text(String),
}

/// Where the next page starts: after this (sort value, internal id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPosition {
    pub value: SortValue,
    pub id: i64,
}

/// Where to search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// Internal id of the scope folder.
    pub folder_id: i64,
    /// The folder's subtree (`true`) or the folder alone.
    pub recursive: bool,
}

/// One page of a search.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    pub filter: Option<Filter>,
    pub scope: Option<Scope>,
    pub sort: Sort,
    pub after: Option<SearchPosition>,
    pub limit: u32,
}

/// A page of objects; `next` is set when more may follow.
#[derive(Clone, Debug, Default)]
pub struct ObjectPage {
    pub objects: Vec<Object>,
    pub next: Option<SearchPosition>,
    /// The box modseq in the snapshot the page was read from.
    pub modseq: i64,
}

/// A page of folders; `next` is set when more may follow.
#[derive(Clone, Debug, Default)]
pub struct FolderPage {
    pub folders: Vec<Folder>,
    pub next: Option<SearchPosition>,
}

/// Objects a bulk operation applies to.
#[derive(Clone, Debug)]
pub enum Targets {
    /// Named objects (public ids), answered one by one in this order.
    Ids(Vec<String>),
    /// The objects matching `query` (at most its `limit`, in its order). With
    /// `refuse_beyond`, more matches than the limit refuse the request (403 POL0001) instead
    /// of acting on the first ones.
    Matching { query: SearchQuery, refuse_beyond: bool },
}

/// The result of a bulk operation on one object: its public id, and whether it was found
/// (`Some(changed)`) or not (`None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkItem {
    pub public_id: String,
    pub outcome: Option<bool>,
    /// Refused by a policy rule (the CPM session-object rule): why.
    pub refusal: Option<String>,
}

/// Result of a copy or move of one named source.
#[derive(Clone, Debug)]
pub enum Relocated {
    /// The folder or object as it stands now (new for copies): public id and path.
    Done { public_id: String, path: String },
    /// The source does not exist in this box.
    NoSource,
    /// A folder cannot go into its own subtree, or the root cannot move.
    Cycle,
    /// The target already holds a folder of that name.
    NameTaken { name: String },
    /// Refused by a policy rule (the CPM session-object rule): why.
    Refused { reason: String },
}

/// Directly named sources of a copy or move.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub folders: Vec<String>,
    pub objects: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// Synchronization
// ---------------------------------------------------------------------------------------

/// One item a replay reports, in its current state: a live object or folder, or the
/// tombstone of a deleted or expired one.
#[derive(Clone, Debug)]
pub enum Change {
    Object(Object),
    Folder(Folder),
    Gone(Tombstone),
}

impl Change {
    pub fn last_mod_seq(&self) -> i64 {
        match self {
            Change::Object(o) => o.last_mod_seq,
            Change::Folder(f) => f.last_mod_seq,
            Change::Gone(t) => t.last_mod_seq,
        }
    }
}

/// How far into one modseq group a sync position stands: the last item delivered as
/// (part, internal id), parts in replay order (0 folders, 1 objects, 2 tombstones); `None`:
/// the whole group. Only groups too large for one page are split.
pub type Within = Option<(u8, i64)>;

/// Everything changed in a box after a modseq, up to `through` (whole modseq groups, in
/// modseq order), read from one snapshot together with the box's sync state.
#[derive(Clone, Debug, Default)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    /// The page covers changes up to this modseq (up to `through_within` inside it, when the
    /// group was too large for one page); more follow iff `more`.
    pub through: i64,
    pub through_within: Within,
    pub more: bool,
    /// The box's modseq, validity and replay floor in the snapshot.
    pub modseq: i64,
    pub validity: i64,
    pub replay_floor: i64,
}

// ---------------------------------------------------------------------------------------
// Notification channels and subscriptions
// ---------------------------------------------------------------------------------------

/// A compare-and-set move of a subscription's delivery position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advance {
    pub id: i64,
    /// The index the list takes (and the one the subscription must still have).
    pub index: i64,
    /// The position the list was built from, and the one after it: (validity, modseq,
    /// within the group).
    pub from: (i64, i64, Within),
    pub to: (i64, i64, Within),
    /// The restart token of `to`: the subscription's token from now on (NMS 5.1.4.3: it
    /// follows the notifications issued).
    pub token: String,
}

/// A notification list queued for a webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxList {
    pub subscription_id: i64,
    pub box_id: i64,
    pub notify_url: String,
    pub index: i64,
    /// The rendered `nmsEventList`, sent as is on every attempt.
    pub body: String,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// A long-polling notification channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub id: i64,
    pub public_id: String,
    /// The login that made it; only it may use it.
    pub principal: String,
    /// The `{userId}` it lives under (decoded).
    pub user_id: String,
    pub client_correlator: Option<String>,
    pub application_tag: Option<String>,
    pub lifetime_secs: i64,
    pub expires_at_ms: i64,
    /// Most notification lists one poll answers.
    pub max_notifications: u32,
    /// How long a poll may hold pending lists, counted from when it first sees one, hoping
    /// for `max_notifications` of them (0: answer at once).
    pub max_wait_secs: u32,
}

/// A subscription to a box's changes, delivered into a channel or to a webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: i64,
    pub box_id: i64,
    pub public_id: String,
    pub principal: String,
    /// The channel it delivers into; `None`: `notify_url` is a webhook.
    pub channel_id: Option<i64>,
    pub notify_url: String,
    pub callback_data: Option<String>,
    pub notification_format: Option<String>,
    pub filter: Option<Filter>,
    pub client_correlator: Option<String>,
    pub duration_secs: i64,
    pub expires_at_ms: i64,
    /// The token the last create or update set (echoed back).
    pub restart_token: String,
    /// Delivery position: the next list holds changes after this (validity, modseq).
    pub position_validity: i64,
    pub position_modseq: i64,
    /// Inside group `position_modseq` when a large group was split across lists.
    pub position_within: Within,
    /// Index of the next notification list.
    pub next_index: i64,
}

/// Domain verbs of the metadata store.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Apply pending migrations.
    async fn migrate(&self) -> Result<()>;

    // ---- accounts and boxes ----
    /// Create a box with its root folder if it does not exist yet; return it.
    async fn provision_box(&self, store: &str, address: &str, root_id: &str, now_ms: i64) -> Result<BoxRow>;
    async fn find_box(&self, store: &str, address: &str) -> Result<Option<BoxRow>>;
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

    // ---- folders ----
    async fn root_folder(&self, b: &BoxRow) -> Result<Folder>;
    async fn get_folder(&self, b: &BoxRow, public_id: &str) -> Result<Option<Folder>>;
    async fn folder_by_path(&self, b: &BoxRow, path: &str) -> Result<Option<Folder>>;
    /// The public id of the folder holding the (first stored) object with this
    /// correlationId.
    async fn folder_of_correlation_id(&self, b: &BoxRow, correlation_id: &str) -> Result<Option<String>>;
    async fn create_folder(&self, b: &BoxRow, f: NewFolder) -> Result<Folder>;
    /// Rename; returns the folder as it stands afterwards.
    async fn rename_folder(&self, b: &BoxRow, public_id: &str, name: &str) -> Result<Folder>;
    /// Delete a folder and everything under it; `None` if it does not exist.
    async fn delete_folder(&self, b: &BoxRow, public_id: &str, now_ms: i64) -> Result<Option<Released>>;
    async fn folder_children(
        &self,
        b: &BoxRow,
        folder: &Folder,
        kinds: (bool, bool),
        from: Option<ChildPosition>,
        limit: u32,
    ) -> Result<ChildPage>;
    async fn folder_stats(&self, b: &BoxRow, folder: &Folder, subtree: bool) -> Result<FolderStats>;

    // ---- objects ----
    async fn create_object(&self, b: &BoxRow, o: NewObject) -> Result<Object>;
    async fn get_object(&self, b: &BoxRow, public_id: &str) -> Result<Option<Object>>;
    async fn object_by_path(&self, b: &BoxRow, folder_path: &str, public_id: &str) -> Result<Option<Object>>;
    /// Delete an object; `None` if it does not exist.
    async fn delete_object(&self, b: &BoxRow, public_id: &str, now_ms: i64) -> Result<Option<Released>>;
    /// Inline bytes of one payload part.
    async fn inline_part_data(&self, b: &BoxRow, object_public_id: &str, part_id: &str) -> Result<Option<Vec<u8>>>;

    /// One page of an object search.
    async fn search_objects(&self, b: &BoxRow, q: &SearchQuery) -> Result<ObjectPage>;
    /// One page of a folder search.
    async fn search_folders(&self, b: &BoxRow, q: &SearchQuery) -> Result<FolderPage>;
    /// Public ids of the most recently deleted or expired objects, newest first.
    async fn vanished_objects(&self, b: &BoxRow, limit: u32) -> Result<Vec<String>>;
    /// Create several objects in one transaction with one modseq; each is all-or-nothing
    /// (a failing one is answered with its error, the others are created).
    async fn create_objects(&self, b: &BoxRow, objects: Vec<Result<NewObject>>) -> Result<Vec<Result<Object>>>;
    /// Add (`on`) or remove flags on the targets in one transaction with one modseq; an
    /// object whose flags do not change keeps its lastModSeq.
    async fn bulk_flags(&self, b: &BoxRow, targets: &Targets, flags: &[String], on: bool) -> Result<Vec<BulkItem>>;
    /// Delete the targets in one transaction with one modseq (tombstones as for single
    /// deletions); returns the per-object outcome and the released blob keys.
    async fn bulk_delete(&self, b: &BoxRow, targets: &Targets, now_ms: i64) -> Result<(Vec<BulkItem>, Released)>;
    /// Copy the sources (folders recursively) into the target folder, one transaction, one
    /// modseq; copies get new ids (`new_id` makes them) and share blobs. `None`: no target.
    async fn copy_to_folder(
        &self,
        b: &BoxRow,
        target: &str,
        sources: &Sources,
        now_ms: i64,
    ) -> Result<Option<Vec<Relocated>>>;
    /// Move the sources into the target folder, one transaction, one modseq; ids stay, a
    /// moved item changes, its children do not. `None`: no target.
    async fn move_to_folder(&self, b: &BoxRow, target: &str, sources: &Sources) -> Result<Option<Vec<Relocated>>>;

    /// Expire objects of a box stored before `stored_before_ms` or beyond its newest
    /// `keep_newest` (by stored date): at most `limit` of them, oldest first, in one
    /// transaction with one modseq, leaving `expired` tombstones. Returns how many expired
    /// and the released blob keys.
    async fn expire_objects(
        &self,
        b: &BoxRow,
        stored_before_ms: Option<i64>,
        keep_newest: Option<u32>,
        now_ms: i64,
        limit: u32,
    ) -> Result<(u64, Released)>;
    /// A box by internal id.
    async fn box_by_id(&self, id: i64) -> Result<Option<BoxRow>>;
    /// Every box of a store.
    async fn boxes_of_store(&self, store: &str) -> Result<Vec<BoxRow>>;
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
    /// Drop tombstones older than `before_ms`, and beyond the newest `keep_per_box` of each
    /// box; each box's replay floor rises to the newest dropped modseq. Returns how many
    /// were dropped.
    async fn prune_tombstones(&self, before_ms: i64, keep_per_box: u32) -> Result<u64>;
    /// Empty a box (every object and folder but the root, every tombstone) and give it a new
    /// validity, so every restart token of it is stale. Returns the box as it is now and
    /// the released blob keys.
    async fn reset_box(&self, b: &BoxRow) -> Result<(BoxRow, Released)>;

    // ---- notification channels and subscriptions ----
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
    /// Delete a channel and the subscriptions delivering into it; `false` if none.
    async fn delete_channel(&self, public_id: &str) -> Result<bool>;
    /// Store a new subscription (its `id` is assigned), unless its box already has
    /// `max_per_box` live subscriptions (0: no limit): then `None`. The count and the insert
    /// are one atomic step, so concurrent creations cannot overshoot the limit.
    async fn create_subscription(&self, s: &Subscription, max_per_box: u32) -> Result<Option<Subscription>>;
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
    /// without, only the duration (a delivery moving the position meanwhile is kept).
    async fn update_subscription(&self, s: &Subscription, position: bool) -> Result<()>;
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

    /// Tombstones with `last_mod_seq > after`, oldest first.
    async fn tombstones_since(&self, b: &BoxRow, after: i64) -> Result<Vec<Tombstone>>;

    // ---- flags (objects and folders) ----
    async fn get_flags(&self, b: &BoxRow, t: FlagTarget<'_>) -> Result<Option<Vec<String>>>;
    /// Replace the whole flag list; returns the list afterwards (`None`: no such item).
    async fn set_flags(&self, b: &BoxRow, t: FlagTarget<'_>, flags: &[String]) -> Result<Option<Vec<String>>>;
    /// Add (`on`) or remove one flag (`None`: no such item).
    async fn change_flag(&self, b: &BoxRow, t: FlagTarget<'_>, flag: &str, on: bool) -> Result<Option<FlagChange>>;

    // ---- blob bookkeeping ----
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
