//! The domain's types: boxes, folders, objects with their attributes, flags and payload
//! parts, searches, changes and tombstones, subscriptions and channels, accounts.
//!
//! They are what the domain services (`nms/`, `cpm/`) and the store (`store/`) exchange:
//! plain data, no storage and no wire format. The store's engines turn them into rows; the
//! API turns them into OMA JSON.

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

/// A change a store write committed to a box: the box, and the modseq it stands at after
/// the write (the write's own modseq, or, for a write that moves no modseq but changes what
/// the box's waiters would find, such as a new subscription, the modseq as it was).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    pub box_id: i64,
    pub modseq: i64,
}

/// What a write verb of the store returns: its answer, and the change it committed
/// (`None`: it changed nothing and rolled back). The domain publishes the commit to the
/// box's waiters right after the call (`Nms::published`); nothing re-reads the box for it.
#[must_use = "a committed change is to be published"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written<T> {
    pub value: T,
    pub commit: Option<Commit>,
}

impl<T> Written<T> {
    /// `value`, from a write that committed box `box_id` at `modseq`.
    pub fn committed(value: T, box_id: i64, modseq: i64) -> Self {
        Self { value, commit: Some(Commit { box_id, modseq }) }
    }

    /// `value`, from a write that changed nothing.
    pub fn unchanged(value: T) -> Self {
        Self { value, commit: None }
    }
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

/// How a subscription's notifications are written: `callbackReference.notificationFormat`
/// (REST_NetAPI_Common `NotificationFormat`, `XML` or `JSON`; absent: JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NotificationFormat {
    #[default]
    Json,
    Xml,
}

impl NotificationFormat {
    /// The value a client sends (`XML`, `JSON`, in any case); `None`: neither.
    pub fn parse(value: &str) -> Option<Self> {
        if value.eq_ignore_ascii_case("JSON") {
            Some(Self::Json)
        } else if value.eq_ignore_ascii_case("XML") {
            Some(Self::Xml)
        } else {
            None
        }
    }

    /// The format of a stored `notification_format` (absent, or unknown to this version: JSON).
    pub fn of(stored: Option<&str>) -> Self {
        stored.and_then(Self::parse).unwrap_or_default()
    }

    /// The value as the schema spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Xml => "XML",
        }
    }

    /// The media type of a document in this format.
    pub const fn media_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Xml => "application/xml",
        }
    }
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
    /// The format `body` is in (the subscription's).
    pub format: NotificationFormat,
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
    /// The generation of its current poll: each poll that begins raises it, which ends the
    /// older poll, whichever node holds it.
    pub poll_generation: i64,
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
