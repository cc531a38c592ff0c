//! Domain services of the message store: boxes, folders, objects, flags, payloads, paths.
//!
//! This layer owns the rules (what a valid flag or path is, where an object without a parent
//! goes, that the root may not be renamed, derived attributes) and calls the storage layer's
//! domain verbs. It never sees HTTP types; the API layer converts wire structures to the
//! inputs below.

pub mod bulk;
pub mod health;
pub mod search;
pub mod subscriptions;
pub mod sync;
pub mod token;

use std::sync::Arc;

pub use token::TokenKey;

use crate::blob::{PartWriter, PayloadStore, UploadGuard};
use crate::config::{CpmSettings, LimitSettings, NmsSettings, SyncSettings};
use crate::error::{Error, OrMissing, Result};
use crate::hub::Hub;
use crate::ids::{new_id, nms_date, now_ms};
use crate::model::*;
use crate::store::Store;

/// Who asks for a change, as far as the domain's policies care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A subscriber's client.
    Subscriber,
    /// A service account (CPM Participating Function): may write service-only folders.
    Service,
}

/// Where a client asked a new item to go.
#[derive(Clone, Debug)]
pub enum Parent {
    /// An existing folder of this box, by id (taken from a `parentFolder` URL).
    Folder(String),
    /// A folder path (`parentFolderPath`).
    Path(String),
    /// Neither given: placed by policy.
    Unspecified,
}

/// An object deposit, converted from the wire.
#[derive(Clone, Debug)]
pub struct ObjectInput {
    pub parent: Parent,
    pub attributes: Vec<Attribute>,
    pub flags: Vec<String>,
    pub correlation_id: Option<String>,
    pub correlation_tag: Option<String>,
}

/// One received payload part's headers.
#[derive(Clone, Debug, Default)]
pub struct PartHeaders {
    pub content_type: String,
    pub content_disposition: Option<String>,
    pub content_id: Option<String>,
    pub content_location: Option<String>,
    pub content_encoding: Option<String>,
    pub file_icon: Option<String>,
}

/// The payload parts of a deposit in progress, with the guard over their blobs.
pub struct Deposit {
    blobs: PayloadStore,
    guard: UploadGuard,
    parts: Vec<PayloadPart>,
    /// Media type of the whole payload, without the boundary parameter.
    pub payload_type: Option<String>,
    /// The start of the textual parts, for full-text search.
    text: String,
    /// The head of a `message/cpim` payload, decoded (its body parts are the parts).
    pub cpim: Option<crate::cpm::cpim::CpimHead>,
    /// A disposition notification (`message/imdn+xml`) carried by the payload: the object
    /// gets its attributes and no payload.
    pub imdn: Option<Vec<u8>>,
    /// The text of the first `text/plain` part, when it fits the indexed head (an SMS).
    first_text: Option<String>,
}

/// How much of each textual part, and of a whole deposit, is indexed for search.
const TEXT_PER_PART: usize = 64 * 1024;
const TEXT_PER_OBJECT: usize = 256 * 1024;

/// Whether a part's text is indexed (`text/*`, and CPIM-wrapped messages).
fn is_textual(content_type: &str) -> bool {
    let t = content_type.trim_start().to_ascii_lowercase();
    t.starts_with("text/") || t.starts_with("message/cpim")
}

/// Attributes whose values are structure, not text: not part of AllTextAttributes/WholeWord.
pub(crate) const NON_TEXT_ATTRIBUTES: &[&str] = &["date", "content-type", "message-context", "direction"];

/// The searchable text of an object: its text attribute values, then its textual parts.
pub(crate) fn searchable_text(attributes: &[Attribute], parts_text: &str) -> String {
    let mut text = String::new();
    for a in attributes {
        if NON_TEXT_ATTRIBUTES.iter().any(|n| a.name.eq_ignore_ascii_case(n)) {
            continue;
        }
        for v in &a.values {
            text.push_str(v);
            text.push('\n');
        }
    }
    text.push_str(parts_text);
    // NUL separates words like any other control character; no engine stores it in text.
    text.replace('\0', " ")
}

impl Deposit {
    /// Start receiving the next payload part, whose headers are `headers`.
    pub fn part_writer(&self, headers: &PartHeaders) -> PartWriter {
        let mut w = self.blobs.part_writer();
        if is_textual(&headers.content_type) {
            w.keep_head(TEXT_PER_PART);
        }
        w
    }

    /// How many payload parts the deposit holds so far.
    pub fn part_count(&self) -> usize {
        self.parts.len()
    }

    /// Finish a part and add it to the deposit.
    pub async fn add_part(&mut self, headers: PartHeaders, writer: PartWriter) -> Result<()> {
        if !writer.head().is_empty() && self.text.len() < TEXT_PER_OBJECT {
            let head = String::from_utf8_lossy(writer.head());
            let room = TEXT_PER_OBJECT - self.text.len();
            let mut cut = head.len().min(room);
            while !head.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.push_str(&head[..cut]);
            self.text.push('\n');
        }
        let plain = headers.content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("text/plain"));
        if plain && self.parts.is_empty() && (writer.size() as usize) <= TEXT_PER_PART {
            self.first_text = std::str::from_utf8(writer.head()).ok().map(str::to_string);
        }
        let (data, size) = writer.finish(&mut self.guard).await?;
        let n = self.parts.len() + 1;
        self.parts.push(PayloadPart {
            part_id: n.to_string(),
            content_type: headers.content_type,
            content_disposition: headers.content_disposition,
            content_id: headers.content_id,
            content_location: headers.content_location,
            content_encoding: headers.content_encoding,
            file_icon: headers.file_icon,
            size,
            data,
        });
        Ok(())
    }

    /// Its object is stored: keep its blobs, and count it.
    async fn stored(self) {
        crate::metrics::deposit(self.parts.iter().map(|p| {
            let storage = match p.data {
                PartData::Inline(_) => crate::metrics::Storage::Inline,
                PartData::Blob { .. } => crate::metrics::Storage::Blob,
            };
            (storage, p.size)
        }));
        self.guard.commit().await;
    }

    /// Drop everything written so far.
    pub async fn abandon(self) {
        self.guard.rollback().await;
    }
}

/// What a folder listing should contain (`listFilter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFilter {
    Subfolders,
    Objects,
    All,
}

/// The message store service.
#[derive(Clone)]
pub struct Nms {
    meta: Arc<dyn Store>,
    blobs: PayloadStore,
    policy: NmsSettings,
    sync: SyncSettings,
    cpm: CpmSettings,
    /// Limits the domain enforces (criteria per search, subscriptions per box).
    limits: LimitSettings,
    tokens: TokenKey,
    /// Wakeups for long polls: every change is published here after its commit.
    hub: Arc<Hub>,
}

/// Whether `name` is a legal flag: an optional leading `\` and then IMAP atom characters.
pub fn validate_flag(name: &str) -> Result<()> {
    let body = name.strip_prefix('\\').unwrap_or(name);
    let ok = !body.is_empty()
        && name.len() <= 255
        && body.bytes().all(|c| (0x21..=0x7e).contains(&c) && !b"(){%*\"\\]".contains(&c));
    if ok { Ok(()) } else { Err(Error::invalid(format!("flag {name}"))) }
}

/// Validate a folder path: `""` or `/` for the root, else `/seg/seg` with no empty segment.
pub fn validate_path(path: &str) -> Result<String> {
    if path.is_empty() || path == "/" {
        return Ok(String::new());
    }
    if !path.starts_with('/')
        || path.ends_with('/')
        || path[1..].split('/').any(|s| s.is_empty())
        || path.chars().any(char::is_control)
    {
        return Err(Error::invalid(path.to_string()));
    }
    Ok(path.to_string())
}

/// The one check of a folder name, wherever a folder comes into being (created, renamed,
/// or made on the way by a deposit's `parentFolderPath`): not empty, no `/`, no control
/// character, at most 255 bytes.
fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) || name.len() > 255 {
        return Err(Error::invalid("name"));
    }
    Ok(())
}

/// A path whose missing folders a request may create: a valid path whose every segment is
/// a valid folder name. (The folder limits bind each folder the store makes on the way,
/// inside the write; folders that already exist stay usable whatever the limits.)
fn validate_new_path(path: &str) -> Result<String> {
    let path = validate_path(path)?;
    if path.split('/').skip(1).any(|seg| validate_name(seg).is_err()) {
        return Err(Error::invalid("parentFolderPath (a folder name is empty, too long or holds a control character)"));
    }
    Ok(path)
}

fn validate_attributes(attrs: &[Attribute]) -> Result<()> {
    for a in attrs {
        if a.name.is_empty()
            || a.name.len() > 255
            || a.name.chars().any(|c| c.is_control() || c.is_whitespace() || c == ':')
        {
            return Err(Error::invalid(format!("attribute name {:?}", a.name)));
        }
        // No engine stores NUL in text the same way (PostgreSQL cannot store it at all), so
        // no value holds one.
        if a.values.iter().any(|v| v.contains('\0')) {
            return Err(Error::invalid(format!("attribute {} (a value holds NUL)", a.name)));
        }
    }
    Ok(())
}

/// Merge attributes with the same (case-insensitive) name, keeping value order.
fn merge_attributes(attrs: Vec<Attribute>) -> Vec<Attribute> {
    let mut out: Vec<Attribute> = Vec::with_capacity(attrs.len());
    for a in attrs {
        match out.iter_mut().find(|o| o.name.eq_ignore_ascii_case(&a.name)) {
            Some(o) => o.values.extend(a.values),
            None => out.push(a),
        }
    }
    out
}

impl Nms {
    pub fn new(
        meta: Arc<dyn Store>,
        blobs: PayloadStore,
        policy: NmsSettings,
        sync: SyncSettings,
        tokens: TokenKey,
    ) -> Self {
        Self {
            meta,
            blobs,
            policy,
            sync,
            cpm: CpmSettings::default(),
            limits: LimitSettings::default(),
            tokens,
            hub: Arc::new(Hub::default()),
        }
    }

    /// Publish what a store write committed (the box's waiters, here and through the relay,
    /// learn of it at once), and answer the write's value. Every write goes through here
    /// right after the store call.
    pub fn published<T>(&self, w: Written<T>) -> T {
        if let Some(c) = w.commit {
            self.hub.publish(c.box_id, c.modseq);
        }
        w.value
    }

    /// On a database that does not announce commits (SQLite), find the commits of other
    /// connections (the command line beside this server) once every `every`, and wake the
    /// waiters of the boxes they moved: waiters then need no timer of their own. Returns
    /// at once on a database that announces commits.
    pub async fn watch_other_writers(&self, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.meta.committed_elsewhere().await {
                Ok(Some(true)) => {}
                Ok(Some(false)) => continue,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "looking for other writers' commits failed");
                    self.hub.wake_all();
                    continue;
                }
            }
            // The hub tells this node's own commits (already published) from news.
            match self.meta.box_modseqs(&self.hub.waited_on()).await {
                Ok(moved) => {
                    for (id, modseq) in moved {
                        self.hub.deliver(id, modseq);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the boxes other writers changed failed");
                    self.hub.wake_all();
                }
            }
        }
    }

    /// The storage the service writes through (administration: accounts, housekeeping).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.meta
    }

    /// The payload store (its sweeps run beside the service).
    pub fn blobs(&self) -> &PayloadStore {
        &self.blobs
    }

    /// The wakeups every committed change is published to.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The synchronisation settings (long polls, webhooks, housekeeping).
    pub fn sync_settings(&self) -> &SyncSettings {
        &self.sync
    }

    /// The key sealing cursors and restart tokens.
    pub fn tokens(&self) -> &TokenKey {
        &self.tokens
    }

    /// A stream over one payload part's bytes, or a range of them.
    pub async fn part_stream(
        &self,
        b: &BoxRow,
        o: &Object,
        part: &PayloadPart,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<futures_util::stream::BoxStream<'static, Result<bytes::Bytes>>> {
        use futures_util::StreamExt;
        match &part.data {
            PartData::Blob { key } => self.blobs.get(key, range).await,
            PartData::Inline(_) => {
                let bytes = self.part_bytes(b, o, part).await?.unwrap_or_default();
                let bytes = match range {
                    Some(r) => bytes.get(r.start as usize..r.end as usize).unwrap_or_default().to_vec(),
                    None => bytes,
                };
                Ok(futures_util::stream::once(async move { Ok(bytes::Bytes::from(bytes)) }).boxed())
            }
        }
    }

    /// The same service with these CPM policies.
    pub fn with_cpm(mut self, cpm: CpmSettings) -> Self {
        self.cpm = cpm;
        self
    }

    /// The same service with these limits.
    pub fn with_limits(mut self, limits: LimitSettings) -> Self {
        self.limits = limits;
        self
    }

    /// What a listing cursor of folder `f` with `filter` is sealed for.
    pub fn child_cursor_purpose(b: &BoxRow, f: &Folder, filter: ListFilter) -> String {
        format!("folder-children:{}:{}:{}:{:?}", b.id, b.validity, f.id, filter)
    }

    /// The opaque cursor for continuing a folder listing at `pos`.
    pub fn child_cursor(&self, b: &BoxRow, f: &Folder, filter: ListFilter, pos: ChildPosition) -> String {
        let mut payload = Vec::with_capacity(9);
        payload.push(match pos.kind {
            ChildKind::Folder => b'f',
            ChildKind::Object => b'o',
        });
        payload.extend_from_slice(&pos.after.to_be_bytes());
        self.tokens.seal(&Self::child_cursor_purpose(b, f, filter), &payload)
    }

    /// Open a folder-listing cursor; a forged one or one made for another folder or filter is
    /// refused (400 SVC0002 `fromCursor`).
    pub fn open_child_cursor(&self, b: &BoxRow, f: &Folder, filter: ListFilter, cursor: &str) -> Result<ChildPosition> {
        let bad = || Error::invalid("fromCursor");
        let p = self.tokens.open(&Self::child_cursor_purpose(b, f, filter), cursor).ok_or_else(bad)?;
        let (kind, after) = p.split_first().ok_or_else(bad)?;
        let after: [u8; 8] = after.try_into().map_err(|_| bad())?;
        let kind = match kind {
            b'f' => ChildKind::Folder,
            b'o' => ChildKind::Object,
            _ => return Err(bad()),
        };
        Ok(ChildPosition { kind, after: i64::from_be_bytes(after) })
    }

    /// Whether `store` is one of the configured store names.
    pub fn is_store(&self, store: &str) -> bool {
        self.policy.stores.iter().any(|s| s == store)
    }

    /// Create a box with its root folder, or return the existing one.
    pub async fn provision_box(&self, store: &str, address: &str) -> Result<BoxRow> {
        if !self.is_store(store) {
            return Err(Error::invalid_value("store", self.policy.stores.join(", ")));
        }
        if address.is_empty() || address.contains('/') {
            return Err(Error::invalid("box address"));
        }
        self.meta.provision_box(store, address, &new_id(), now_ms()).await
    }

    pub async fn find_box(&self, store: &str, address: &str) -> Result<Option<BoxRow>> {
        self.meta.find_box(store, address).await
    }

    /// Whether `path` (a folder path, `""` for the root) lies in a service-only subtree.
    fn is_service_only(&self, path: &str) -> bool {
        self.policy.service_only_folders.iter().any(|p| {
            let p = p.trim_end_matches('/');
            path == p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// A service-only folder (or one inside it) is renamed or deleted by service accounts
    /// only (otherwise a subscriber could rename `/Default` away and write into it).
    fn check_system_folder(&self, actor: Actor, f: &Folder) -> Result<()> {
        if actor != Actor::Service && self.is_service_only(&f.path) {
            return Err(Error::Forbidden { reason: format!("{} is a system folder (service accounts only)", f.path) });
        }
        Ok(())
    }

    /// Refuse a subscriber creating under a service-only folder (403 POL1031). `parent` is
    /// resolved to its path here; a parent that does not exist is left to the store to refuse.
    async fn check_may_create_under(&self, b: &BoxRow, actor: Actor, parent: &ParentRef) -> Result<()> {
        if actor == Actor::Service || self.policy.service_only_folders.is_empty() {
            return Ok(());
        }
        let path = match parent {
            ParentRef::Root => String::new(),
            ParentRef::Path { path, .. } => path.clone(),
            ParentRef::Id(id) => match self.meta.get_folder(b, id).await? {
                Some(f) => f.path,
                None => return Ok(()),
            },
        };
        self.check_writable(actor, &path)
    }

    /// Refuse a subscriber creating under `path` when it is service-only (403 POL1031).
    fn check_writable(&self, actor: Actor, path: &str) -> Result<()> {
        if actor != Actor::Service && self.is_service_only(path) {
            return Err(Error::ParentForbidden { target: if path.is_empty() { "/".into() } else { path.to_string() } });
        }
        Ok(())
    }

    // ---------------- folders ----------------

    /// Create a folder (`POST /folders`). Unlike objects, a missing parent path is an error.
    pub async fn create_folder(
        &self,
        b: &BoxRow,
        actor: Actor,
        parent: Parent,
        name: Option<String>,
        attributes: Vec<Attribute>,
    ) -> Result<Folder> {
        let parent = match parent {
            Parent::Folder(id) => ParentRef::Id(id),
            Parent::Path(p) => ParentRef::Path { path: validate_path(&p)?, create_missing: false },
            Parent::Unspecified => return Err(Error::invalid("Parent folder (missing)")),
        };
        self.check_may_create_under(b, actor, &parent).await?;
        if let Some(n) = &name {
            validate_name(n)?;
        }
        validate_attributes(&attributes)?;
        for reserved in ["Name", "Root"] {
            if crate::cpm::has(&attributes, reserved) {
                return Err(Error::invalid(format!("attribute {reserved}")));
            }
        }
        let made = self
            .meta
            .create_folder(
                b,
                NewFolder {
                    public_id: new_id(),
                    parent,
                    name,
                    attributes: merge_attributes(attributes),
                    now_ms: now_ms(),
                },
            )
            .await?;
        Ok(self.published(made))
    }

    pub async fn folder(&self, b: &BoxRow, id: &str) -> Result<Folder> {
        self.meta.get_folder(b, id).await?.or_missing()
    }

    pub async fn root_folder(&self, b: &BoxRow) -> Result<Folder> {
        self.meta.root_folder(b).await
    }

    /// The folder's attributes as returned: stored ones plus the derived `Root`, `Name`,
    /// `Date`, and the counts named in `stats` (`attrFilter`).
    pub async fn folder_attributes(&self, b: &BoxRow, f: &Folder, stats: &[String]) -> Result<Vec<Attribute>> {
        let mut attrs = Vec::with_capacity(f.attributes.len() + 3);
        if f.is_root {
            attrs.push(Attribute { name: "Root".into(), values: vec!["Yes".into()] });
        }
        attrs.push(Attribute { name: "Name".into(), values: vec![f.name.clone()] });
        if !crate::cpm::has(&f.attributes, "Date") {
            attrs.push(Attribute { name: "Date".into(), values: vec![nms_date(f.created_at_ms)] });
        }
        attrs.extend(f.attributes.iter().cloned());
        let wants = |n: &str| stats.iter().any(|s| s.eq_ignore_ascii_case(n));
        if wants("MsgCount") || wants("UnreadMsgCount") || wants("Size") {
            let s = self.meta.folder_stats(b, f, false).await?;
            for (n, v) in [("MsgCount", s.msg_count), ("UnreadMsgCount", s.unread_count), ("Size", s.size)] {
                if wants(n) {
                    attrs.push(Attribute { name: n.into(), values: vec![v.to_string()] });
                }
            }
        }
        if wants("SubtreeMsgCount") || wants("SubtreeUnreadMsgCount") || wants("SubtreeSize") {
            let s = self.meta.folder_stats(b, f, true).await?;
            for (n, v) in
                [("SubtreeMsgCount", s.msg_count), ("SubtreeUnreadMsgCount", s.unread_count), ("SubtreeSize", s.size)]
            {
                if wants(n) {
                    attrs.push(Attribute { name: n.into(), values: vec![v.to_string()] });
                }
            }
        }
        Ok(attrs)
    }

    /// One page of a folder's children.
    pub async fn folder_children(
        &self,
        b: &BoxRow,
        f: &Folder,
        filter: ListFilter,
        from: Option<ChildPosition>,
        max: Option<u32>,
    ) -> Result<ChildPage> {
        let limit = max.unwrap_or(self.policy.folder_page_default).clamp(1, self.policy.folder_page_max);
        let kinds = match filter {
            ListFilter::Subfolders => (true, false),
            ListFilter::Objects => (false, true),
            ListFilter::All => (true, true),
        };
        self.meta.folder_children(b, f, kinds, from, limit).await
    }

    /// Rename (`PUT folderName`). Renaming the root is refused by policy (POL1030).
    pub async fn rename_folder(&self, b: &BoxRow, actor: Actor, id: &str, name: &str) -> Result<Folder> {
        let f = self.folder(b, id).await?;
        if f.is_root && self.policy.forbid_root_rename {
            return Err(Error::RenameForbidden);
        }
        self.check_system_folder(actor, &f)?;
        if !(f.is_root && name.is_empty()) {
            validate_name(name)?;
        }
        Ok(self.published(self.meta.rename_folder(b, id, name).await?))
    }

    /// Delete a folder recursively, then the blobs nothing references any more.
    pub async fn delete_folder(&self, b: &BoxRow, actor: Actor, id: &str) -> Result<()> {
        if actor != Actor::Service && !self.policy.service_only_folders.is_empty() {
            self.check_system_folder(actor, &self.folder(b, id).await?)?;
        }
        let released = self.published(self.meta.delete_folder(b, id, now_ms()).await?).or_missing()?;
        self.blobs.release(&released.blob_keys).await;
        Ok(())
    }

    /// Folder by path (`folders/operations/pathToId`); no path means the root.
    pub async fn folder_by_path(&self, b: &BoxRow, path: Option<&str>) -> Result<Folder> {
        let Some(path) = path else { return self.meta.root_folder(b).await };
        let p = validate_path(path)?;
        self.meta.folder_by_path(b, &p).await?.ok_or_else(|| Error::UnknownPath { path: path.to_string() })
    }

    // ---------------- objects ----------------

    /// Begin receiving the payload of a deposit.
    pub fn begin_deposit(&self) -> Deposit {
        Deposit {
            blobs: self.blobs.clone(),
            guard: self.blobs.guard(),
            parts: Vec::new(),
            payload_type: None,
            text: String::new(),
            cpim: None,
            imdn: None,
            first_text: None,
        }
    }

    /// Create an object from its root fields and the received payload parts.
    pub async fn create_object(
        &self,
        b: &BoxRow,
        actor: Actor,
        input: ObjectInput,
        deposit: Deposit,
    ) -> Result<Object> {
        let res = self.create_object_inner(b, actor, input, &deposit).await;
        match res {
            Ok(o) => {
                deposit.stored().await;
                Ok(o)
            }
            Err(e) => {
                deposit.guard.rollback().await;
                Err(e)
            }
        }
    }

    async fn create_object_inner(
        &self,
        b: &BoxRow,
        actor: Actor,
        input: ObjectInput,
        deposit: &Deposit,
    ) -> Result<Object> {
        let o = self.prepare_object(b, actor, input, deposit, now_ms()).await?;
        Ok(self.published(self.meta.create_object(b, o).await?))
    }

    /// Validate a deposit and complete it into the object to store: the parent resolved to
    /// a reference (and checked against policy), `Date` and `Content-Type` derived when
    /// absent, the searchable text gathered.
    async fn prepare_object(
        &self,
        b: &BoxRow,
        actor: Actor,
        input: ObjectInput,
        deposit: &Deposit,
        now: i64,
    ) -> Result<NewObject> {
        validate_attributes(&input.attributes)?;
        for f in &input.flags {
            validate_flag(f)?;
        }
        let mut parent = match input.parent {
            Parent::Folder(id) => ParentRef::Id(id),
            Parent::Path(p) => ParentRef::Path { path: validate_new_path(&p)?, create_missing: true },
            Parent::Unspecified => ParentRef::Root,
        };
        let placed = matches!(parent, ParentRef::Root) && self.cpm.placement;
        if !placed {
            self.check_may_create_under(b, actor, &parent).await?;
        }
        let got = crate::cpm::Received {
            cpim: deposit.cpim.as_ref(),
            imdn: deposit.imdn.as_deref(),
            parts: &deposit.parts,
            first_text: deposit.first_text.as_deref(),
        };
        let done = crate::cpm::complete(
            &self.cpm,
            merge_attributes(input.attributes),
            input.correlation_id,
            input.correlation_tag,
            &got,
        )?;
        let mut attributes = done.attributes;
        if placed {
            let path;
            (parent, path) = self.place(b, actor, &attributes).await?;
            self.check_writable(actor, &path)?;
        }
        if !crate::cpm::has(&attributes, "Date") {
            attributes.push(Attribute { name: "Date".into(), values: vec![nms_date(now)] });
        }
        if let Some(t) = &deposit.payload_type
            && !crate::cpm::has(&attributes, "Content-Type")
        {
            attributes.push(Attribute { name: "Content-Type".into(), values: vec![t.clone()] });
        }
        let text = searchable_text(&attributes, &deposit.text);
        Ok(NewObject {
            public_id: new_id(),
            parent,
            attributes,
            flags: input.flags,
            correlation_id: done.correlation_id,
            correlation_tag: done.correlation_tag,
            payload_type: deposit.payload_type.clone(),
            parts: deposit.parts.clone(),
            text,
            now_ms: now,
        })
    }

    /// The folder a CPM object deposited without a parent goes to (docs/cpm.md): below the
    /// depositor's area, creating missing folders with their `Conversation-ID` and
    /// `Contribution-ID` attributes.
    /// Answers the folder and its path.
    async fn place(&self, b: &BoxRow, actor: Actor, attrs: &[Attribute]) -> Result<(ParentRef, String)> {
        use crate::cpm::{Placement, folder_name};
        let area = if actor == Actor::Service { &self.cpm.network_area } else { &self.cpm.user_area };
        let mut p = crate::cpm::placement(attrs);
        if let Placement::BesideMessage { message_id, fallback } = p {
            let beside = match self.meta.folder_of_correlation_id(b, &message_id).await? {
                Some(id) => self.meta.get_folder(b, &id).await?,
                None => None,
            };
            match beside {
                // Not into a system folder the depositor may not write to.
                Some(f) if actor == Actor::Service || !self.is_service_only(&f.path) => {
                    return Ok((ParentRef::Id(f.public_id), f.path));
                }
                _ => p = *fallback,
            }
        }
        let area = match p {
            Placement::Root | Placement::BesideMessage { .. } => return Ok((ParentRef::Root, String::new())),
            _ => self.ensure_path(b, area).await?,
        };
        let attr = |name: &str, v: &str| Attribute { name: name.into(), values: vec![v.to_string()] };
        let folder = match p {
            Placement::Conversation { conversation, contribution, session_metadata } => {
                let conv_attr = attr("Conversation-ID", &conversation);
                let conv = self.ensure_child(b, &area, &folder_name(&conversation), vec![conv_attr.clone()]).await?;
                match contribution {
                    Some(c) if session_metadata => {
                        let attrs = vec![conv_attr, attr("Contribution-ID", &c)];
                        self.ensure_child(b, &conv, &folder_name(&c), attrs).await?
                    }
                    Some(c) => {
                        let session = format!("{}/{}", conv.path, folder_name(&c));
                        self.meta.folder_by_path(b, &session).await?.unwrap_or(conv)
                    }
                    None => conv,
                }
            }
            Placement::Party(party) => self.ensure_child(b, &area, &folder_name(&party), Vec::new()).await?,
            _ => area,
        };
        Ok((ParentRef::Id(folder.public_id), folder.path))
    }

    /// The folder at `path`, made (with its missing ancestors) if absent.
    async fn ensure_path(&self, b: &BoxRow, path: &str) -> Result<Folder> {
        let path = validate_path(path)?;
        if let Some(f) = self.meta.folder_by_path(b, &path).await? {
            return Ok(f);
        }
        let mut folder = self.meta.root_folder(b).await?;
        for name in path.split('/').filter(|s| !s.is_empty()) {
            folder = self.ensure_child(b, &folder, name, Vec::new()).await?;
        }
        Ok(folder)
    }

    /// The child `name` of `parent`, made with `attributes` if absent (a concurrent maker
    /// wins the name; its folder is answered).
    async fn ensure_child(
        &self,
        b: &BoxRow,
        parent: &Folder,
        name: &str,
        attributes: Vec<Attribute>,
    ) -> Result<Folder> {
        validate_name(name)?;
        let path = format!("{}/{name}", parent.path);
        if let Some(f) = self.meta.folder_by_path(b, &path).await? {
            return Ok(f);
        }
        let made = self
            .meta
            .create_folder(
                b,
                NewFolder {
                    public_id: new_id(),
                    parent: ParentRef::Id(parent.public_id.clone()),
                    name: Some(name.to_string()),
                    attributes,
                    now_ms: now_ms(),
                },
            )
            .await
            .map(|w| self.published(w));
        match made {
            Err(Error::DuplicateName { .. }) => self
                .meta
                .folder_by_path(b, &path)
                .await?
                .ok_or_else(|| Error::internal(format!("folder {path} vanished"))),
            other => other,
        }
    }

    pub async fn object(&self, b: &BoxRow, id: &str) -> Result<Object> {
        self.meta.get_object(b, id).await?.or_missing()
    }

    /// Delete an object and, after the commit, its unreferenced blobs.
    pub async fn delete_object(&self, b: &BoxRow, id: &str) -> Result<()> {
        let deleted = self.meta.delete_object(b, id, now_ms(), &crate::cpm::Departures).await?;
        let released = self.published(deleted).or_missing()?;
        self.blobs.release(&released.blob_keys).await;
        Ok(())
    }

    /// Object by path (`/folder/path/objectId`).
    pub async fn object_by_path(&self, b: &BoxRow, path: &str) -> Result<Object> {
        let p = validate_path(path)?;
        let Some((folder, id)) = p.rsplit_once('/') else {
            return Err(Error::invalid(path.to_string()));
        };
        if id.is_empty() {
            return Err(Error::invalid(path.to_string()));
        }
        self.meta.object_by_path(b, folder, id).await?.ok_or_else(|| Error::UnknownPath { path: path.to_string() })
    }

    /// The bytes of one payload part: inline, or a blob stream (with an optional range).
    pub async fn part_bytes(&self, b: &BoxRow, o: &Object, part: &PayloadPart) -> Result<Option<Vec<u8>>> {
        match &part.data {
            PartData::Inline(_) => {
                Ok(Some(self.meta.inline_part_data(b, &o.public_id, &part.part_id).await?.unwrap_or_default()))
            }
            PartData::Blob { .. } => Ok(None),
        }
    }

    // ---------------- flags ----------------

    pub async fn flags(&self, b: &BoxRow, t: FlagTarget<'_>) -> Result<Vec<String>> {
        self.meta.get_flags(b, t).await?.or_missing()
    }

    pub async fn set_flags(&self, b: &BoxRow, t: FlagTarget<'_>, flags: &[String]) -> Result<Vec<String>> {
        for f in flags {
            validate_flag(f)?;
        }
        self.published(self.meta.set_flags(b, t, flags).await?).or_missing()
    }

    /// Whether the item carries `flag` (case-insensitive).
    pub async fn has_flag(&self, b: &BoxRow, t: FlagTarget<'_>, flag: &str) -> Result<bool> {
        validate_flag(flag)?;
        let flags = self.flags(b, t).await?;
        Ok(flags.iter().any(|f| f.eq_ignore_ascii_case(flag)))
    }

    pub async fn change_flag(&self, b: &BoxRow, t: FlagTarget<'_>, flag: &str, on: bool) -> Result<FlagChange> {
        validate_flag(flag)?;
        self.published(self.meta.change_flag(b, t, flag, on).await?).or_missing()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_imap_atoms() {
        for ok in ["\\Seen", "$MDNSent", "\\read-report-sent", "Archived", "$CPM_CallLog_EnCall"] {
            assert!(validate_flag(ok).is_ok(), "{ok}");
        }
        for bad in ["", "\\", "a b", "x(", "\\\\Seen", "a%b", "fl\"ag", "x]", "é"] {
            assert!(validate_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_absolute_without_empty_segments() {
        assert_eq!(validate_path("").ok().as_deref(), Some(""));
        assert_eq!(validate_path("/").ok().as_deref(), Some(""));
        assert_eq!(validate_path("/main/inbox").ok().as_deref(), Some("/main/inbox"));
        for bad in ["main", "/main//x", "/main/", "//"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }
}
