//! The storage story: one suite over the store's verbs, told per concern (accounts, boxes,
//! folders, objects, flags, search, sync, subscriptions and channels, blob references) as a
//! sequence of steps with exact expectations.
//!
//! Every story runs on SQLite, and again on PostgreSQL when `NMS_TEST_DATABASE_URL` names a
//! server (for example `postgres://nms@127.0.0.1:55432/postgres`): each run there gets a
//! database of its own, created before the story and dropped after it. The store is opened
//! as the server opens it (`startup::open_store`, the engine chosen by the database URL), so
//! every engine is held to the same contract.
//!
//! After every write the [`Ledger`] checks what sync relies on: the box modseq rose by
//! exactly one, every item the write changed carries that modseq, `changes_since` the
//! previous modseq returns exactly those items, and the write reported that commit (box and
//! modseq) for the domain to publish. A step that changes nothing leaves the modseq where it
//! was and reports no commit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::sync::Arc;

#[path = "support/database.rs"]
mod database;
use database::TestDatabase;

use cpm_nms::config::Settings;
use cpm_nms::cpm::Departures;
use cpm_nms::error::Error;
use cpm_nms::model::*;
use cpm_nms::startup::open_store;
use cpm_nms::store::*;
use futures_util::FutureExt;

/// The store as the server holds it.
type Db = Arc<dyn Store>;

// ---------------------------------------------------------------------------------------
// Harness: a fresh, empty store per engine
// ---------------------------------------------------------------------------------------

/// Where a story runs.
enum Engine {
    Sqlite,
    /// A PostgreSQL server; each run creates (and drops) a database of its own there.
    Postgres {
        server_url: String,
    },
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Sqlite => "SQLite",
            Engine::Postgres { .. } => "PostgreSQL",
        })
    }
}

/// SQLite always; PostgreSQL too when `NMS_TEST_DATABASE_URL` is set.
fn engines() -> Vec<Engine> {
    let mut engines = vec![Engine::Sqlite];
    if let Ok(server_url) = std::env::var("NMS_TEST_DATABASE_URL")
        && !server_url.is_empty()
    {
        engines.push(Engine::Postgres { server_url });
    }
    engines
}

/// Tell a story on a fresh, empty store of every engine; the store is thrown away after
/// it, whether the story passed or not.
async fn story(run: impl AsyncFn(Db)) {
    for engine in engines() {
        let fresh = Fresh::open(&engine).await;
        let outcome = AssertUnwindSafe(run(fresh.store.clone())).catch_unwind().await;
        fresh.close().await;
        if let Err(panic) = outcome {
            eprintln!("the story failed on {engine}");
            resume_unwind(panic);
        }
    }
}

/// A fresh, empty store, and what it takes to throw it away.
struct Fresh {
    store: Db,
    _dir: tempfile::TempDir,
    _scratch: Option<TestDatabase>,
}

impl Fresh {
    async fn open(engine: &Engine) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings { data_dir: dir.path().to_path_buf(), ..Settings::default() };
        let scratch = match engine {
            Engine::Sqlite => None,
            Engine::Postgres { server_url } => Some(TestDatabase::create_on(server_url, "nms_story").await),
        };
        if let Some(s) = &scratch {
            settings.storage.database_url = s.url.clone();
        }
        match open_store(&settings).await {
            Ok(store) => Self { store, _dir: dir, _scratch: scratch },
            // The scratch database is dropped on the way out.
            Err(e) => panic!("open a store on {engine}: {e}"),
        }
    }

    async fn close(self) {
        // The store's connections go first; the scratch database is dropped after them.
        drop(self.store);
    }
}

// ---------------------------------------------------------------------------------------
// The ledger: modseq invariants after every write
// ---------------------------------------------------------------------------------------

/// How replay reports an item: `object o-1`, `folder f-1`, or its tombstone
/// (`deleted object o-1`, `expired object o-2`).
fn key_of(c: &Change) -> String {
    match c {
        Change::Object(o) => object(&o.public_id),
        Change::Folder(f) => folder(&f.public_id),
        Change::Gone(t) => format!("{} {} {}", t.reason, t.kind, t.public_id),
    }
}

fn object(public_id: &str) -> String {
    format!("object {public_id}")
}

fn folder(public_id: &str) -> String {
    format!("folder {public_id}")
}

fn deleted(item: String) -> String {
    format!("deleted {item}")
}

fn expired(item: String) -> String {
    format!("expired {item}")
}

/// The item a key speaks of, whether live or gone (`deleted object o-1` -> `object o-1`).
fn item_of(key: &str) -> String {
    key.trim_start_matches("deleted ").trim_start_matches("expired ").to_string()
}

fn sorted<T: Ord>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.into_iter().collect();
    v.sort();
    v
}

/// One box followed across writes: its modseq, and what replay should report of every item
/// (the modseq of its last change, and how it stands: live or its tombstone).
struct Ledger {
    store: Db,
    b: BoxRow,
    seq: i64,
    items: BTreeMap<String, (i64, String)>,
    /// Every modseq the box has had (0 before it existed), oldest first.
    history: Vec<i64>,
    /// What the last write taken through [`Ledger::took`] reported committing, until checked.
    reported: Option<Option<Commit>>,
}

impl Ledger {
    async fn open(store: &Db, b: &BoxRow) -> Self {
        let (seq, _, _) = store.sync_state(b).await.unwrap();
        let page = store.changes_since(b, 0, None, 10_000, false).await.unwrap();
        let items = page.changes.iter().map(|c| (item_of(&key_of(c)), (c.last_mod_seq(), key_of(c)))).collect();
        Self { store: store.clone(), b: b.clone(), seq, items, history: (0..=seq).collect(), reported: None }
    }

    /// A write's answer; what it reported committing is checked by the next [`Ledger::wrote`],
    /// [`Ledger::unchanged`] or [`Ledger::announced`].
    fn took<T>(&mut self, w: Written<T>) -> T {
        assert!(!matches!(self.reported, Some(Some(_))), "the previous write's commit was checked");
        self.reported = Some(w.commit);
        w.value
    }

    /// The write just taken changed no item but what the box's waiters would find (a
    /// subscription's position): it reported a commit at the box's modseq, which stayed.
    async fn announced(&mut self) {
        let (modseq, _, _) = self.store.sync_state(&self.b).await.unwrap();
        assert_eq!(modseq, self.seq, "the modseq stays");
        let reported = self.reported.take();
        assert_eq!(reported, Some(Some(Commit { box_id: self.b.id, modseq })), "the write reports the box as it is");
    }

    /// The step just taken was one write: it moved the modseq by exactly one, stamped every
    /// item it changed with the new modseq, and changed exactly `expected`. Returns the new
    /// modseq.
    async fn wrote(&mut self, expected: &[String]) -> i64 {
        let (modseq, _, _) = self.store.sync_state(&self.b).await.unwrap();
        assert_eq!(modseq, self.seq + 1, "one write moves the modseq by exactly one");
        let reported = self.reported.take();
        assert_eq!(reported, Some(Some(Commit { box_id: self.b.id, modseq })), "the write reports its commit");
        let page = self.store.changes_since(&self.b, self.seq, None, 10_000, false).await.unwrap();
        assert_eq!((page.through, page.more, page.modseq), (modseq, false, modseq));
        for c in &page.changes {
            assert_eq!(c.last_mod_seq(), modseq, "{} carries the modseq of the write", key_of(c));
        }
        assert_eq!(
            sorted(page.changes.iter().map(key_of)),
            sorted(expected.iter().cloned()),
            "changes since modseq {}",
            self.seq
        );
        for key in expected {
            self.items.insert(item_of(key), (modseq, key.clone()));
        }
        self.seq = modseq;
        self.history.push(modseq);
        modseq
    }

    /// The step just taken changed nothing: the modseq stayed, nothing replays since, and it
    /// reported no commit (or failed).
    async fn unchanged(&mut self) {
        let reported = self.reported.take();
        assert!(matches!(reported, None | Some(None)), "a step that changes nothing reports no commit: {reported:?}");
        let (modseq, _, _) = self.store.sync_state(&self.b).await.unwrap();
        assert_eq!(modseq, self.seq, "a step that changes nothing leaves the modseq alone");
        let page = self.store.changes_since(&self.b, self.seq, None, 10_000, false).await.unwrap();
        assert!(page.changes.is_empty(), "nothing replays: {:?}", page.changes.iter().map(key_of).collect::<Vec<_>>());
    }

    /// Pruning dropped the tombstones of these items: replay no longer reports them.
    fn pruned(&mut self, items: &[String]) {
        for item in items {
            self.items.remove(item);
        }
    }

    /// What replay from modseq `after` should report, in modseq order (ties by key).
    fn expected_since(&self, after: i64, through: i64) -> Vec<(i64, String)> {
        sorted(self.items.values().filter(|(seq, _)| *seq > after && *seq <= through).cloned())
    }

    /// Replay from every modseq the box has had reports exactly the items changed after it,
    /// each in its current state, in modseq order.
    async fn replay_matches(&self) {
        for &after in &self.history {
            let page = self.store.changes_since(&self.b, after, None, 10_000, false).await.unwrap();
            assert_eq!((page.through, page.more, page.modseq), (self.seq, false, self.seq), "from {after}");
            let got: Vec<(i64, String)> = page.changes.iter().map(|c| (c.last_mod_seq(), key_of(c))).collect();
            assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "modseq order from {after}: {got:?}");
            assert_eq!(sorted(got), self.expected_since(after, self.seq), "changes since modseq {after}");
        }
    }

    /// Replay from 0 in pages of `limit` reports the same, each page whole modseq groups and
    /// at least `limit` items while that many remain.
    async fn replay_in_pages(&self, limit: u32) {
        let mut after = 0;
        let mut pages = 0;
        loop {
            let page = self.store.changes_since(&self.b, after, None, limit, false).await.unwrap();
            let got = sorted(page.changes.iter().map(|c| (c.last_mod_seq(), key_of(c))));
            assert_eq!(got, self.expected_since(after, page.through), "page from {after}");
            let remaining = self.expected_since(after, self.seq).len();
            assert!(got.len() >= remaining.min(limit as usize), "a page holds at least the limit: {got:?}");
            let beyond = !self.expected_since(page.through, self.seq).is_empty();
            assert_eq!(page.more, beyond, "more follow iff changes remain after the page");
            assert_eq!(page.through_within, None, "small groups are never split");
            pages += 1;
            if !page.more {
                break;
            }
            after = page.through;
        }
        assert!(pages > 1, "the replay took several pages");
    }
}

// ---------------------------------------------------------------------------------------
// Builders: realistic arguments, as the domain layer makes them
// ---------------------------------------------------------------------------------------

/// A box with its root folder (`root`), and a ledger following it.
async fn fresh_box(s: &Db) -> (BoxRow, Ledger) {
    let b = s.provision_box("base", "tel:+15550001", "root", 1_000).await.unwrap();
    let ledger = Ledger::open(s, &b).await;
    (b, ledger)
}

/// [`fresh_box`] with a folder `/Inbox` (`f-inbox`) made in its first write.
async fn fresh_box_with_inbox(s: &Db) -> (BoxRow, Ledger) {
    let (b, mut ledger) = fresh_box(s).await;
    ledger.took(s.create_folder(&b, new_folder("f-inbox", ParentRef::Root, "Inbox")).await.unwrap());
    ledger.wrote(&[folder("f-inbox")]).await;
    (b, ledger)
}

fn at(path: &str) -> ParentRef {
    ParentRef::Path { path: path.into(), create_missing: false }
}

fn making(path: &str) -> ParentRef {
    ParentRef::Path { path: path.into(), create_missing: true }
}

fn under(public_id: &str) -> ParentRef {
    ParentRef::Id(public_id.into())
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<Attribute> {
    pairs.iter().map(|(name, value)| Attribute { name: name.to_string(), values: vec![value.to_string()] }).collect()
}

fn new_folder(public_id: &str, parent: ParentRef, name: &str) -> NewFolder {
    NewFolder { public_id: public_id.into(), parent, name: Some(name.into()), attributes: Vec::new(), now_ms: 1_500 }
}

/// A plain message: no attributes, flags, parts or text.
fn message(public_id: &str, parent: ParentRef, stored_at_ms: i64) -> NewObject {
    NewObject {
        public_id: public_id.into(),
        parent,
        attributes: Vec::new(),
        flags: Vec::new(),
        correlation_id: None,
        correlation_tag: None,
        payload_type: None,
        parts: Vec::new(),
        text: String::new(),
        now_ms: stored_at_ms,
    }
}

fn inline(part_id: &str, content_type: &str, bytes: &[u8]) -> PayloadPart {
    PayloadPart {
        part_id: part_id.into(),
        content_type: content_type.into(),
        content_disposition: None,
        content_id: None,
        content_location: None,
        content_encoding: None,
        file_icon: None,
        size: bytes.len() as u64,
        data: PartData::Inline(bytes.to_vec()),
    }
}

fn blob(part_id: &str, content_type: &str, key: &str, size: u64) -> PayloadPart {
    PayloadPart { size, data: PartData::Blob { key: key.into() }, ..inline(part_id, content_type, b"") }
}

/// The blob key of a part (`None` for inline parts).
fn blob_key(p: &PayloadPart) -> Option<&str> {
    match &p.data {
        PartData::Blob { key } => Some(key),
        PartData::Inline(_) => None,
    }
}

fn sorted_by(key: SortKey, descending: bool, filter: Option<Filter>, limit: u32) -> SearchQuery {
    SearchQuery { filter, scope: None, sort: Sort { key, descending }, after: None, limit }
}

/// Every match of `filter` on one page, in storage order.
fn matching(filter: Filter) -> SearchQuery {
    sorted_by(SortKey::Id, false, Some(filter), 100)
}

fn within(q: SearchQuery, folder_id: i64, recursive: bool) -> SearchQuery {
    SearchQuery { scope: Some(Scope { folder_id, recursive }), ..q }
}

fn attribute(name_lc: &str, value: &str) -> Filter {
    Filter::Attribute { name_lc: name_lc.into(), value: value.into() }
}

fn flag(flag_lc: &str, set: bool) -> Filter {
    Filter::Flag { flag_lc: flag_lc.into(), set }
}

/// A message of the search story: id, folder, stored at, From, Subject, body, flags.
type Sample = (&'static str, &'static str, i64, &'static str, &'static str, &'static str, &'static [&'static str]);

/// The public ids of one page of an object search.
async fn found(s: &Db, b: &BoxRow, q: &SearchQuery) -> Vec<String> {
    let page = s.search_objects(b, q).await.unwrap();
    assert!(page.next.is_none(), "one page holds every match");
    page.objects.into_iter().map(|o| o.public_id).collect()
}

/// Every page of an object search, following its keyset positions.
async fn object_pages(s: &Db, b: &BoxRow, mut q: SearchQuery) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    loop {
        let page = s.search_objects(b, &q).await.unwrap();
        pages.push(page.objects.iter().map(|o| o.public_id.clone()).collect());
        match page.next {
            Some(next) => q.after = Some(next),
            None => return pages,
        }
    }
}

/// Every page of a folder search.
async fn folder_pages(s: &Db, b: &BoxRow, mut q: SearchQuery) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    loop {
        let page = s.search_folders(b, &q).await.unwrap();
        pages.push(page.folders.iter().map(|f| f.public_id.clone()).collect());
        match page.next {
            Some(next) => q.after = Some(next),
            None => return pages,
        }
    }
}

/// Every page of a folder's children: (folders, objects) per page.
async fn child_pages(
    s: &Db,
    b: &BoxRow,
    f: &Folder,
    kinds: (bool, bool),
    limit: u32,
) -> Vec<(Vec<String>, Vec<String>)> {
    let mut pages = Vec::new();
    let mut from = None;
    loop {
        let page = s.folder_children(b, f, kinds, from, limit).await.unwrap();
        pages.push((page.folders, page.objects));
        match page.next {
            Some(next) => from = Some(next),
            None => return pages,
        }
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    strings(list)
}

// ---------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn accounts_are_created_found_listed_given_digest_secrets_and_removed() {
    story(async |s| {
        assert!(s.list_accounts().await.unwrap().is_empty(), "a fresh store has no logins");

        let boxes = vec![("base".to_string(), "tel:+2".to_string()), ("base".to_string(), "tel:+1".to_string())];
        let alice = s.create_account("alice", "hash-a", false, &boxes).await.unwrap();
        assert_eq!((alice.name.as_str(), alice.password_hash.as_str(), alice.is_service), ("alice", "hash-a", false));
        assert_eq!(alice.boxes, boxes);
        assert_eq!(alice.digest, None);
        let svc = s.create_account("svc", "hash-s", true, &[]).await.unwrap();
        assert_ne!(svc.id, alice.id);

        let taken = s.create_account("alice", "other", false, &[]).await;
        assert!(matches!(&taken, Err(Error::DuplicateName { name }) if name == "alice"), "{taken:?}");

        let found = s.find_account("alice").await.unwrap().expect("alice");
        assert_eq!((found.id, found.password_hash.as_str(), found.is_service), (alice.id, "hash-a", false));
        assert_eq!(found.boxes, vec![("base".into(), "tel:+1".into()), ("base".into(), "tel:+2".into())]);
        assert!(s.find_account("nobody").await.unwrap().is_none());
        let names: Vec<String> = s.list_accounts().await.unwrap().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ids(&["alice", "svc"]));
        assert!(s.list_accounts().await.unwrap()[1].is_service);

        let secrets = DigestSecrets {
            realm: "nms.example".into(),
            ha1_sha256: Some("ab".repeat(32)),
            ha1_md5: Some("cd".repeat(16)),
        };
        assert!(s.set_account_digest("alice", Some(&secrets)).await.unwrap());
        assert_eq!(s.find_account("alice").await.unwrap().expect("alice").digest, Some(secrets));
        assert!(!s.set_account_digest("nobody", None).await.unwrap(), "no such account");
        assert!(s.set_account_digest("alice", None).await.unwrap());
        assert_eq!(s.find_account("alice").await.unwrap().expect("alice").digest, None, "cleared");

        assert!(s.remove_account("svc").await.unwrap());
        assert!(!s.remove_account("svc").await.unwrap(), "already gone");
        assert!(s.find_account("svc").await.unwrap().is_none());
        let names: Vec<String> = s.list_accounts().await.unwrap().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ids(&["alice"]));
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Boxes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn boxes_are_provisioned_once_found_and_reset_to_a_new_validity() {
    story(async |s| {
        assert!(s.find_box("base", "tel:+1").await.unwrap().is_none());
        let b = s.provision_box("base", "tel:+1", "root-1", 1_000).await.unwrap();
        assert_eq!((b.store.as_str(), b.address.as_str(), b.modseq, b.validity), ("base", "tel:+1", 1, 1_000));
        let root = s.root_folder(&b).await.unwrap();
        assert_eq!((root.public_id.as_str(), root.is_root, root.last_mod_seq), ("root-1", true, 1));

        let mut ledger = Ledger::open(&s, &b).await;
        let again = s.provision_box("base", "tel:+1", "root-other", 2_000).await.unwrap();
        assert_eq!((again.id, again.modseq, again.validity), (b.id, 1, 1_000), "provisioning is idempotent");
        assert_eq!(s.root_folder(&b).await.unwrap().public_id, "root-1", "the first root stays");
        ledger.unchanged().await;

        let found = s.find_box("base", "tel:+1").await.unwrap().expect("box");
        assert_eq!((found.id, found.modseq, found.validity), (b.id, 1, 1_000));
        let by_id = s.box_by_id(b.id).await.unwrap().expect("box");
        assert_eq!((by_id.store.as_str(), by_id.address.as_str(), by_id.validity), ("base", "tel:+1", 1_000));
        assert!(s.box_by_id(b.id + 1_000).await.unwrap().is_none());

        let other = s.provision_box("base", "tel:+2", "root-2", 1_000).await.unwrap();
        s.provision_box("elsewhere", "tel:+1", "root-3", 1_000).await.unwrap();
        let of_base: Vec<String> = s.boxes_of_store("base").await.unwrap().into_iter().map(|b| b.address).collect();
        assert_eq!(of_base, ids(&["tel:+1", "tel:+2"]));
        assert_eq!(s.sync_state(&b).await.unwrap(), (1, 1_000, 0), "modseq 1, its validity, nothing pruned");

        // Some content: a folder, an object with a blob, a flag on the root, a tombstone.
        ledger.took(s.create_folder(&b, new_folder("f-a", ParentRef::Root, "A")).await.unwrap());
        ledger.wrote(&[folder("f-a")]).await;
        let o = NewObject { parts: vec![blob("1", "image/png", "blob-1", 4_096)], ..message("o-1", at("/A"), 2_000) };
        ledger.took(s.create_object(&b, o).await.unwrap());
        ledger.wrote(&[object("o-1")]).await;
        ledger.took(s.change_flag(&b, FlagTarget::Folder("root-1"), "$Pinned", true).await.unwrap());
        ledger.wrote(&[folder("root-1")]).await;
        ledger.took(s.create_object(&b, message("o-2", at("/A"), 2_000)).await.unwrap());
        ledger.wrote(&[object("o-2")]).await;
        ledger.took(s.delete_object(&b, "o-2", 3_000, &Departures).await.unwrap());
        ledger.wrote(&[deleted(object("o-2"))]).await;

        let (after, released) = ledger.took(s.reset_box(&b).await.unwrap());
        assert_eq!((after.id, after.modseq), (b.id, ledger.seq + 1));
        assert!(after.validity > b.validity, "a new validity: {} after {}", after.validity, b.validity);
        assert_eq!(released.blob_keys, ids(&["blob-1"]));
        ledger.wrote(&[folder("root-1")]).await;
        assert_eq!(
            s.sync_state(&b).await.unwrap(),
            (after.modseq, after.validity, after.modseq),
            "nothing before the reset replays"
        );
        assert_eq!(s.find_box("base", "tel:+1").await.unwrap().expect("box").validity, after.validity);
        assert!(s.get_folder(&b, "f-a").await.unwrap().is_none());
        assert!(s.get_object(&b, "o-1").await.unwrap().is_none());
        assert!(s.tombstones_since(&b, 0).await.unwrap().is_empty(), "tombstones go too");
        assert_eq!(s.get_flags(&b, FlagTarget::Folder("root-1")).await.unwrap(), Some(vec![]), "the root is bare");
        let page = s.changes_since(&b, 0, None, 100, false).await.unwrap();
        assert_eq!(page.changes.iter().map(key_of).collect::<Vec<_>>(), vec![folder("root-1")]);
        assert_eq!((page.validity, page.replay_floor), (after.validity, after.modseq));
        assert_eq!(s.sync_state(&other).await.unwrap(), (1, 1_000, 0), "other boxes are untouched");

        // The box is usable again at once.
        ledger.took(s.create_folder(&b, new_folder("f-a", ParentRef::Root, "A")).await.unwrap());
        ledger.wrote(&[folder("f-a")]).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Folders
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn folders_are_created_renamed_paged_counted_and_deleted_with_their_subtree() {
    story(async |s| {
        let (b, mut ledger) = fresh_box(&s).await;
        let root = s.root_folder(&b).await.unwrap();
        assert_eq!((root.name.as_str(), root.path.as_str(), root.is_root), ("", "", true));
        assert_eq!((root.parent_public_id.clone(), root.last_mod_seq, root.created_at_ms), (None, 1, 1_000));

        let inbox =
            NewFolder { attributes: attrs(&[("Color", "blue")]), ..new_folder("f-inbox", ParentRef::Root, "Inbox") };
        let inbox = ledger.took(s.create_folder(&b, inbox).await.unwrap());
        let seq = ledger.wrote(&[folder("f-inbox")]).await;
        assert_eq!((inbox.name.as_str(), inbox.path.as_str(), inbox.is_root), ("Inbox", "/Inbox", false));
        assert_eq!(
            (inbox.parent_public_id.as_deref(), inbox.last_mod_seq, inbox.created_at_ms),
            (Some("root"), seq, 1_500)
        );
        assert_eq!(inbox.attributes, attrs(&[("Color", "blue")]));

        let work = ledger.took(s.create_folder(&b, new_folder("f-work", at("/Inbox"), "Work")).await.unwrap());
        ledger.wrote(&[folder("f-work")]).await;
        assert_eq!((work.path.as_str(), work.parent_public_id.as_deref()), ("/Inbox/Work", Some("f-inbox")));

        // Missing folders on the way are made in the same write.
        let q1 = ledger.took(s.create_folder(&b, new_folder("f-q1", making("/Archive/2024"), "Q1")).await.unwrap());
        assert_eq!(q1.path, "/Archive/2024/Q1");
        let archive = s.folder_by_path(&b, "/Archive").await.unwrap().expect("made on the way");
        let year = s.folder_by_path(&b, "/Archive/2024").await.unwrap().expect("made on the way");
        assert_eq!(year.parent_public_id.as_deref(), Some(archive.public_id.as_str()));
        ledger.wrote(&[folder(&archive.public_id), folder(&year.public_id), folder("f-q1")]).await;

        let unnamed = NewFolder { name: None, ..new_folder("f-unnamed", under("f-inbox"), "") };
        let unnamed = ledger.took(s.create_folder(&b, unnamed).await.unwrap());
        assert_eq!((unnamed.name.as_str(), unnamed.path.as_str()), ("f-unnamed", "/Inbox/f-unnamed"));
        ledger.wrote(&[folder("f-unnamed")]).await;

        // Refused creations leave nothing behind.
        let taken = s.create_folder(&b, new_folder("f-x", ParentRef::Root, "Inbox")).await;
        assert!(matches!(&taken, Err(Error::DuplicateName { name }) if name == "Inbox"), "{taken:?}");
        ledger.unchanged().await;
        let orphan = s.create_folder(&b, new_folder("f-x", under("no-such"), "X")).await;
        assert!(matches!(orphan, Err(Error::InvalidInput { .. })), "{orphan:?}");
        ledger.unchanged().await;
        let nowhere = s.create_folder(&b, new_folder("f-x", at("/Nope"), "X")).await;
        assert!(matches!(nowhere, Err(Error::InvalidInput { .. })), "{nowhere:?}");
        ledger.unchanged().await;
        assert!(s.get_folder(&b, "f-x").await.unwrap().is_none());

        let got = s.get_folder(&b, "f-work").await.unwrap().expect("f-work");
        assert_eq!(
            (got.name.as_str(), got.path.as_str(), got.last_mod_seq),
            ("Work", "/Inbox/Work", work.last_mod_seq)
        );
        assert!(s.get_folder(&b, "no-such").await.unwrap().is_none());
        assert_eq!(s.folder_by_path(&b, "/Inbox/Work").await.unwrap().expect("by path").public_id, "f-work");
        assert_eq!(s.folder_by_path(&b, "").await.unwrap().expect("the root").public_id, "root");
        assert!(s.folder_by_path(&b, "/Nope").await.unwrap().is_none());

        // A rename changes the folder; its descendants' paths follow without changing them.
        let mail = ledger.took(s.rename_folder(&b, "f-inbox", "Mail").await.unwrap());
        ledger.wrote(&[folder("f-inbox")]).await;
        assert_eq!((mail.name.as_str(), mail.path.as_str()), ("Mail", "/Mail"));
        let moved = s.folder_by_path(&b, "/Mail/Work").await.unwrap().expect("the child follows");
        assert_eq!((moved.public_id.as_str(), moved.last_mod_seq), ("f-work", work.last_mod_seq));
        assert!(s.folder_by_path(&b, "/Inbox/Work").await.unwrap().is_none());
        assert_eq!(
            ledger.took(s.rename_folder(&b, "f-inbox", "Mail").await.unwrap()).path,
            "/Mail",
            "same name: no change"
        );
        ledger.unchanged().await;
        let clash = s.rename_folder(&b, "f-work", "f-unnamed").await;
        assert!(matches!(&clash, Err(Error::DuplicateName { name }) if name == "f-unnamed"), "{clash:?}");
        ledger.unchanged().await;
        let missing = s.rename_folder(&b, "no-such", "X").await;
        assert!(matches!(missing, Err(Error::NotFound { .. })), "{missing:?}");
        ledger.unchanged().await;

        // Content for paging and counting: three objects in Mail, one in Work.
        let seen = |id: &str, parts: Vec<PayloadPart>, parent: &str| NewObject {
            flags: strings(&["\\Seen"]),
            parts,
            ..message(id, under(parent), 2_000)
        };
        ledger.took(
            s.create_object(&b, seen("o-1", vec![inline("1", "text/plain", b"0123456789")], "f-inbox")).await.unwrap(),
        );
        ledger.wrote(&[object("o-1")]).await;
        let o2 =
            NewObject { parts: vec![blob("1", "image/png", "blob-2", 20)], ..message("o-2", under("f-inbox"), 2_000) };
        ledger.took(s.create_object(&b, o2).await.unwrap());
        ledger.wrote(&[object("o-2")]).await;
        let two_parts = vec![inline("1", "text/plain", b"12345"), inline("2", "text/plain", b"1234567")];
        ledger.took(
            s.create_object(&b, NewObject { parts: two_parts, ..message("o-3", under("f-inbox"), 2_000) })
                .await
                .unwrap(),
        );
        ledger.wrote(&[object("o-3")]).await;
        ledger.took(
            s.create_object(&b, seen("o-4", vec![blob("1", "video/mp4", "blob-4", 100)], "f-work")).await.unwrap(),
        );
        ledger.wrote(&[object("o-4")]).await;

        // Children: folders first, then objects, each in storage order, across pages.
        assert_eq!(
            child_pages(&s, &b, &mail, (true, true), 2).await,
            vec![(ids(&["f-work", "f-unnamed"]), vec![]), (vec![], ids(&["o-1", "o-2"])), (vec![], ids(&["o-3"])),]
        );
        assert_eq!(child_pages(&s, &b, &mail, (false, true), 10).await, vec![(vec![], ids(&["o-1", "o-2", "o-3"]))]);
        assert_eq!(child_pages(&s, &b, &mail, (true, false), 10).await, vec![(ids(&["f-work", "f-unnamed"]), vec![])]);
        assert_eq!(
            child_pages(&s, &b, &root, (true, true), 10).await,
            vec![(ids(&["f-inbox", &archive.public_id]), vec![])]
        );

        let stats = |f: FolderStats| (f.msg_count, f.unread_count, f.size);
        assert_eq!(stats(s.folder_stats(&b, &mail, false).await.unwrap()), (3, 2, 10 + 20 + 12));
        assert_eq!(stats(s.folder_stats(&b, &mail, true).await.unwrap()), (4, 2, 142));
        assert_eq!(stats(s.folder_stats(&b, &root, false).await.unwrap()), (0, 0, 0));
        assert_eq!(stats(s.folder_stats(&b, &root, true).await.unwrap()), (4, 2, 142));

        // Deleting a folder takes its subtree, each item leaving a tombstone.
        let released = ledger.took(s.delete_folder(&b, "f-inbox", 9_000).await.unwrap()).expect("it existed");
        assert_eq!(sorted(released.blob_keys), ids(&["blob-2", "blob-4"]));
        let before = ledger.seq;
        let gone = [
            deleted(folder("f-inbox")),
            deleted(folder("f-work")),
            deleted(folder("f-unnamed")),
            deleted(object("o-1")),
            deleted(object("o-2")),
            deleted(object("o-3")),
            deleted(object("o-4")),
        ];
        let seq = ledger.wrote(&gone).await;
        let tombstones = s.tombstones_since(&b, before).await.unwrap();
        let keys = tombstones.iter().map(|t| format!("{} {} {}", t.reason, t.kind, t.public_id));
        assert_eq!(sorted(keys), sorted(gone.iter().cloned()));
        assert!(tombstones.iter().all(|t| t.last_mod_seq == seq));
        let mail_gone = tombstones.iter().find(|t| t.public_id == "f-inbox").expect("tombstone");
        assert_eq!(mail_gone.snapshot.as_ref().and_then(|s| s.name.as_deref()), Some("Mail"));
        let o1_gone = tombstones.iter().find(|t| t.public_id == "o-1").expect("tombstone");
        assert_eq!(o1_gone.snapshot.as_ref().map(|s| s.flags.clone()), Some(strings(&["\\Seen"])));
        assert!(s.get_folder(&b, "f-work").await.unwrap().is_none());
        assert!(s.get_object(&b, "o-4").await.unwrap().is_none());
        assert!(s.folder_by_path(&b, "/Mail/Work").await.unwrap().is_none());
        assert_eq!(child_pages(&s, &b, &root, (true, true), 10).await, vec![(ids(&[&archive.public_id]), vec![])]);

        assert!(ledger.took(s.delete_folder(&b, "f-inbox", 9_000).await.unwrap()).is_none(), "already gone");
        ledger.unchanged().await;
        let the_root = s.delete_folder(&b, "root", 9_000).await;
        assert!(matches!(the_root, Err(Error::Forbidden { .. })), "{the_root:?}");
        ledger.unchanged().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn objects_are_stored_read_deleted_created_in_bulk_copied_and_moved() {
    story(async |s| {
        let (b, mut ledger) = fresh_box_with_inbox(&s).await;

        let attributes = vec![
            Attribute { name: "From".into(), values: strings(&["tel:+15550002"]) },
            Attribute { name: "To".into(), values: strings(&["tel:+15550001", "tel:+15550003"]) },
            Attribute { name: "Subject".into(), values: strings(&["Lunch"]) },
            Attribute { name: "Message-Context".into(), values: strings(&["multimedia-message"]) },
        ];
        let photo = PayloadPart {
            content_disposition: Some("attachment; filename=a.png".into()),
            ..blob("2", "image/png", "blob-1", 2_048)
        };
        let text = PayloadPart { content_id: Some("<t1@example>".into()), ..inline("1", "text/plain", b"hello") };
        let new = NewObject {
            attributes: attributes.clone(),
            flags: strings(&["\\Seen", "\\SEEN", "$Label"]),
            correlation_id: Some("cid-1".into()),
            correlation_tag: Some("tag-1".into()),
            payload_type: Some("multipart/related".into()),
            parts: vec![text, photo],
            text: "Lunch\nhello".into(),
            ..message("o-1", at("/Inbox"), 5_000)
        };
        let created = ledger.took(s.create_object(&b, new).await.unwrap());
        let seq = ledger.wrote(&[object("o-1")]).await;
        assert_eq!((created.last_mod_seq, created.creation_seq, created.stored_at_ms), (seq, seq, 5_000));
        assert_eq!((created.folder_public_id.as_str(), created.folder_path.as_str()), ("f-inbox", "/Inbox"));
        assert_eq!(created.flags, strings(&["\\Seen", "$Label"]), "flags deduplicated case-insensitively");

        let got = s.get_object(&b, "o-1").await.unwrap().expect("o-1");
        assert_eq!((got.id, got.last_mod_seq, got.creation_seq, got.stored_at_ms), (created.id, seq, seq, 5_000));
        assert_eq!(got.attributes, attributes);
        assert_eq!(got.flags, strings(&["\\Seen", "$Label"]));
        assert_eq!((got.correlation_id.as_deref(), got.correlation_tag.as_deref()), (Some("cid-1"), Some("tag-1")));
        assert_eq!(got.payload_type.as_deref(), Some("multipart/related"));
        let parts: Vec<_> = got.parts.iter().map(|p| (p.part_id.as_str(), p.content_type.as_str(), p.size)).collect();
        assert_eq!(parts, vec![("1", "text/plain", 5), ("2", "image/png", 2_048)]);
        assert_eq!(got.parts[0].content_id.as_deref(), Some("<t1@example>"));
        assert_eq!(got.parts[1].content_disposition.as_deref(), Some("attachment; filename=a.png"));
        assert!(matches!(&got.parts[0].data, PartData::Inline(bytes) if bytes.is_empty()), "inline bytes not loaded");
        assert_eq!(blob_key(&got.parts[1]), Some("blob-1"));
        assert_eq!(s.inline_part_data(&b, "o-1", "1").await.unwrap(), Some(b"hello".to_vec()));
        assert_eq!(s.inline_part_data(&b, "o-1", "2").await.unwrap(), None, "a blob part has no inline bytes");
        assert_eq!(s.inline_part_data(&b, "o-1", "9").await.unwrap(), None);
        assert_eq!(s.inline_part_data(&b, "no-such", "1").await.unwrap(), None);

        assert_eq!(s.object_by_path(&b, "/Inbox", "o-1").await.unwrap().expect("by path").id, created.id);
        assert!(s.object_by_path(&b, "", "o-1").await.unwrap().is_none(), "not in the root");
        assert_eq!(s.folder_of_correlation_id(&b, "cid-1").await.unwrap().as_deref(), Some("f-inbox"));
        assert_eq!(s.folder_of_correlation_id(&b, "cid-x").await.unwrap(), None);

        let orphan = s.create_object(&b, message("o-x", under("no-such"), 5_000)).await;
        assert!(matches!(orphan, Err(Error::InvalidInput { .. })), "{orphan:?}");
        ledger.unchanged().await;
        let in_root = ledger.took(s.create_object(&b, message("o-2", ParentRef::Root, 5_000)).await.unwrap());
        ledger.wrote(&[object("o-2")]).await;
        assert_eq!((in_root.folder_public_id.as_str(), in_root.folder_path.as_str()), ("root", ""));

        let released = ledger.took(s.delete_object(&b, "o-1", 6_000, &Departures).await.unwrap()).expect("it existed");
        assert_eq!(released.blob_keys, ids(&["blob-1"]));
        ledger.wrote(&[deleted(object("o-1"))]).await;
        assert!(s.get_object(&b, "o-1").await.unwrap().is_none());
        assert!(ledger.took(s.delete_object(&b, "o-1", 6_000, &Departures).await.unwrap()).is_none(), "already gone");
        ledger.unchanged().await;
        assert_eq!(s.vanished_objects(&b, 10).await.unwrap(), ids(&["o-1"]));

        // Bulk creation: one write; a failed item is answered alone, the others are made.
        let results = ledger.took(
            s.create_objects(
                &b,
                vec![
                    Ok(message("o-3", at("/Inbox"), 7_000)),
                    Err(Error::invalid("root-fields")),
                    Ok(message("o-4", under("no-such"), 7_000)),
                    Ok(message("o-5", making("/New/Deep"), 7_000)),
                ],
            )
            .await
            .unwrap(),
        );
        assert_eq!(results.len(), 4);
        let (o3, o5) = match (&results[0], &results[3]) {
            (Ok(o3), Ok(o5)) => (o3, o5),
            other => panic!("the good items are made: {other:?}"),
        };
        assert!(matches!(results[1], Err(Error::InvalidInput { .. })), "{:?}", results[1]);
        assert!(matches!(results[2], Err(Error::InvalidInput { .. })), "{:?}", results[2]);
        let new_folder_id = s.folder_by_path(&b, "/New").await.unwrap().expect("made").public_id;
        let deep_id = s.folder_by_path(&b, "/New/Deep").await.unwrap().expect("made").public_id;
        let seq = ledger.wrote(&[object("o-3"), object("o-5"), folder(&new_folder_id), folder(&deep_id)]).await;
        assert_eq!((o3.last_mod_seq, o5.last_mod_seq, o5.folder_path.as_str()), (seq, seq, "/New/Deep"));
        assert!(s.get_object(&b, "o-4").await.unwrap().is_none());
        let none_made = ledger.took(
            s.create_objects(&b, vec![Err(Error::invalid("x")), Ok(message("o-6", under("no-such"), 7_000))])
                .await
                .unwrap(),
        );
        assert!(none_made.iter().all(Result::is_err));
        ledger.unchanged().await;

        // A tree to copy and move: /A (o-a1, with a blob), /A/Sub (o-s1), and /B, /C.
        ledger.took(s.create_folder(&b, new_folder("f-a", ParentRef::Root, "A")).await.unwrap());
        ledger.wrote(&[folder("f-a")]).await;
        ledger.took(s.create_folder(&b, new_folder("f-sub", under("f-a"), "Sub")).await.unwrap());
        ledger.wrote(&[folder("f-sub")]).await;
        let a1 = NewObject {
            attributes: attrs(&[("Subject", "kept")]),
            flags: strings(&["$Keep"]),
            parts: vec![blob("1", "image/png", "blob-a", 64)],
            ..message("o-a1", under("f-a"), 7_000)
        };
        ledger.took(s.create_object(&b, a1).await.unwrap());
        ledger.wrote(&[object("o-a1")]).await;
        ledger.took(s.create_object(&b, message("o-s1", under("f-sub"), 7_000)).await.unwrap());
        ledger.wrote(&[object("o-s1")]).await;
        ledger.took(s.create_folder(&b, new_folder("f-b", ParentRef::Root, "B")).await.unwrap());
        ledger.wrote(&[folder("f-b")]).await;
        ledger.took(s.create_folder(&b, new_folder("f-c", ParentRef::Root, "C")).await.unwrap());
        ledger.wrote(&[folder("f-c")]).await;

        // Copy: new ids for the folder, its subtree and the objects, one write.
        let sources = Sources { folders: ids(&["f-a", "no-such", "f-b"]), objects: ids(&["o-3", "no-such"]) };
        let out = ledger.took(s.copy_to_folder(&b, "f-b", &sources, 8_000).await.unwrap()).expect("the target exists");
        assert_eq!(out.len(), 5);
        let a_copy = match &out[0] {
            Relocated::Done { public_id, path } if path == "/B/A" => public_id.clone(),
            other => panic!("the folder is copied: {other:?}"),
        };
        assert!(matches!(out[1], Relocated::NoSource), "{:?}", out[1]);
        assert!(matches!(out[2], Relocated::Cycle), "not into itself: {:?}", out[2]);
        let o3_copy = match &out[3] {
            Relocated::Done { public_id, path } if *path == format!("/B/{public_id}") => public_id.clone(),
            other => panic!("the object is copied: {other:?}"),
        };
        assert!(matches!(out[4], Relocated::NoSource), "{:?}", out[4]);
        let a_folder = s.get_folder(&b, &a_copy).await.unwrap().expect("copy");
        let sub_copy = s.folder_by_path(&b, "/B/A/Sub").await.unwrap().expect("the subtree is copied");
        let a1_copy = child_pages(&s, &b, &a_folder, (false, true), 10).await[0].1.clone();
        let s1_copy = child_pages(&s, &b, &sub_copy, (false, true), 10).await[0].1.clone();
        assert_eq!((a1_copy.len(), s1_copy.len()), (1, 1));
        let seq = ledger
            .wrote(&[
                folder(&a_copy),
                folder(&sub_copy.public_id),
                object(&a1_copy[0]),
                object(&s1_copy[0]),
                object(&o3_copy),
            ])
            .await;
        let copy = s.get_object(&b, &a1_copy[0]).await.unwrap().expect("copy");
        let original = s.get_object(&b, "o-a1").await.unwrap().expect("original");
        assert_eq!((copy.attributes.clone(), copy.flags.clone()), (original.attributes, original.flags));
        assert_eq!(blob_key(&copy.parts[0]), Some("blob-a"), "copies share blobs");
        assert_eq!((copy.creation_seq, copy.last_mod_seq, copy.stored_at_ms), (seq, seq, 8_000));
        assert!(original.last_mod_seq < seq, "the original is not changed");

        let again = s.copy_to_folder(&b, "f-b", &Sources { folders: ids(&["f-a"]), objects: vec![] }, 8_000).await;
        let again = ledger.took(again.unwrap()).expect("the target exists");
        assert!(matches!(&again[..], [Relocated::NameTaken { name }] if name == "A"), "{again:?}");
        ledger.unchanged().await;
        let into_itself = Sources { folders: ids(&["f-a"]), objects: vec![] };
        let cycle = ledger.took(s.copy_to_folder(&b, "f-sub", &into_itself, 8_000).await.unwrap()).expect("target");
        assert!(matches!(&cycle[..], [Relocated::Cycle]), "{cycle:?}");
        assert!(ledger.took(s.copy_to_folder(&b, "no-such", &into_itself, 8_000).await.unwrap()).is_none());
        ledger.unchanged().await;

        // Move: ids stay; the moved items change, their children only follow.
        let sources = Sources { folders: ids(&["f-a"]), objects: ids(&["o-3"]) };
        let out =
            ledger.took(s.move_to_folder(&b, "f-c", &sources, &Departures).await.unwrap()).expect("the target exists");
        let done: Vec<(String, String)> = out
            .iter()
            .map(|r| match r {
                Relocated::Done { public_id, path } => (public_id.clone(), path.clone()),
                other => panic!("moved: {other:?}"),
            })
            .collect();
        assert_eq!(done, vec![("f-a".into(), "/C/A".into()), ("o-3".into(), "/C/o-3".into())]);
        ledger.wrote(&[folder("f-a"), object("o-3")]).await;
        let sub = s.folder_by_path(&b, "/C/A/Sub").await.unwrap().expect("the subtree follows");
        assert_eq!(sub.public_id, "f-sub");
        assert!(sub.last_mod_seq < ledger.seq, "a child of a moved folder does not change");
        assert!(s.object_by_path(&b, "/C/A/Sub", "o-s1").await.unwrap().is_some());
        assert_eq!(s.get_object(&b, "o-3").await.unwrap().expect("o-3").folder_path, "/C");

        let out = ledger.took(s.move_to_folder(&b, "f-c", &sources, &Departures).await.unwrap()).expect("target");
        assert!(out.iter().all(|r| matches!(r, Relocated::Done { .. })), "already there: {out:?}");
        ledger.unchanged().await;
        let cycles = Sources { folders: ids(&["root", "f-c"]), objects: vec![] };
        let out = ledger.took(s.move_to_folder(&b, "f-sub", &cycles, &Departures).await.unwrap()).expect("target");
        assert!(matches!(&out[..], [Relocated::Cycle, Relocated::Cycle]), "{out:?}");
        let clash = Sources { folders: ids(&[&a_copy]), objects: ids(&["no-such"]) };
        let out = ledger.took(s.move_to_folder(&b, "f-c", &clash, &Departures).await.unwrap()).expect("target");
        assert!(matches!(&out[..], [Relocated::NameTaken { name }, Relocated::NoSource] if name == "A"), "{out:?}");
        assert!(ledger.took(s.move_to_folder(&b, "no-such", &sources, &Departures).await.unwrap()).is_none());
        ledger.unchanged().await;

        // Bulk deletion, by name and by query.
        let (items, released) = ledger
            .took(s.bulk_delete(&b, &Targets::Ids(ids(&["o-3", "no-such", "o-3"])), 9_000, &Departures).await.unwrap());
        let outcomes: Vec<_> = items.iter().map(|i| (i.public_id.as_str(), i.outcome, i.refusal.clone())).collect();
        assert_eq!(outcomes, vec![("o-3", Some(true), None), ("no-such", None, None), ("o-3", None, None)]);
        assert!(released.blob_keys.is_empty());
        ledger.wrote(&[deleted(object("o-3"))]).await;

        let b_folder = s.get_folder(&b, "f-b").await.unwrap().expect("f-b");
        let in_b = |limit| within(sorted_by(SortKey::Id, false, None, limit), b_folder.id, true);
        let too_many =
            s.bulk_delete(&b, &Targets::Matching { query: in_b(2), refuse_beyond: true }, 9_000, &Departures).await;
        assert!(matches!(too_many, Err(Error::LimitExceeded { .. })), "{too_many:?}");
        ledger.unchanged().await;
        let targets = Targets::Matching { query: in_b(10), refuse_beyond: true };
        let (items, released) = ledger.took(s.bulk_delete(&b, &targets, 9_000, &Departures).await.unwrap());
        assert_eq!(
            sorted(items.iter().map(|i| (i.public_id.clone(), i.outcome))),
            sorted([&a1_copy[0], &s1_copy[0], &o3_copy].map(|id| (id.clone(), Some(true))))
        );
        assert_eq!(released.blob_keys, ids(&["blob-a"]));
        ledger.wrote(&[deleted(object(&a1_copy[0])), deleted(object(&s1_copy[0])), deleted(object(&o3_copy))]).await;
        assert!(s.get_object(&b, "o-a1").await.unwrap().is_some(), "the original stays");
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Departures: the domain's policy, asked inside the write
// ---------------------------------------------------------------------------------------

/// An object of CPM kind `context` (its `Message-Context`), with `correlation_id`.
fn cpm_object(public_id: &str, parent: ParentRef, context: &str, correlation_id: Option<&str>) -> NewObject {
    NewObject {
        attributes: attrs(&[("Message-Context", context)]),
        correlation_id: correlation_id.map(str::to_string),
        ..message(public_id, parent, 2_000)
    }
}

/// An IMDN object about the message whose correlationId is `about`.
fn imdn_object(public_id: &str, parent: ParentRef, about: &str) -> NewObject {
    NewObject {
        attributes: attrs(&[("Message-Context", "imdn-message"), ("DispositionOriginalMessageID", about)]),
        ..message(public_id, parent, 2_000)
    }
}

#[tokio::test]
async fn objects_leave_with_their_companions_unless_the_departure_policy_keeps_them() {
    story(async |s| {
        let (b, mut ledger) = fresh_box_with_inbox(&s).await;
        let made = [
            cpm_object("info", at("/Inbox"), "Session-Info-Message", None),
            cpm_object("chat", at("/Inbox"), "chat-message", Some("m-1")),
            imdn_object("imdn-1", at("/Inbox"), "m-1"),
            imdn_object("imdn-2", ParentRef::Root, "m-1"),
            imdn_object("imdn-x", at("/Inbox"), "m-2"),
            NewObject {
                payload_type: Some("Application/Conference-Info+XML".into()),
                ..message("conf", at("/Inbox"), 2_000)
            },
        ];
        for o in made {
            let id = o.public_id.clone();
            ledger.took(s.create_object(&b, o).await.unwrap());
            ledger.wrote(&[object(&id)]).await;
        }

        // Content remains: the session info and the conference info stay, and nothing changes.
        for kept in ["info", "conf"] {
            let refused = s.delete_object(&b, kept, 3_000, &Departures).await;
            assert!(matches!(refused, Err(Error::Forbidden { .. })), "{kept}: {refused:?}");
            ledger.unchanged().await;
        }
        let info = Sources { folders: vec![], objects: ids(&["info"]) };
        let out = ledger.took(s.move_to_folder(&b, "root", &info, &Departures).await.unwrap()).expect("target");
        assert!(matches!(&out[..], [Relocated::Refused { .. }]), "{out:?}");
        ledger.unchanged().await;

        // The message goes, and the IMDNs about it (wherever they are) with it, in one write.
        ledger.took(s.delete_object(&b, "chat", 3_000, &Departures).await.unwrap()).expect("chat");
        ledger.wrote(&[deleted(object("chat")), deleted(object("imdn-1")), deleted(object("imdn-2"))]).await;
        assert!(s.get_object(&b, "imdn-x").await.unwrap().is_some(), "an IMDN about another message stays");

        // One request taking the content too lets the session objects go.
        let all = Targets::Ids(ids(&["info", "conf", "imdn-x"]));
        let (items, _) = ledger.took(s.bulk_delete(&b, &all, 4_000, &Departures).await.unwrap());
        assert!(items.iter().all(|i| i.outcome == Some(true) && i.refusal.is_none()), "{items:?}");
        ledger.wrote(&[deleted(object("info")), deleted(object("conf")), deleted(object("imdn-x"))]).await;
        ledger.replay_matches().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn flags_are_read_replaced_changed_and_changed_in_bulk() {
    story(async |s| {
        let (b, mut ledger) = fresh_box_with_inbox(&s).await;
        for id in ["o-1", "o-2", "o-3"] {
            let flags = if id == "o-1" { strings(&["\\Seen"]) } else { vec![] };
            ledger.took(s.create_object(&b, NewObject { flags, ..message(id, at("/Inbox"), 1_000) }).await.unwrap());
            ledger.wrote(&[object(id)]).await;
        }

        assert_eq!(s.get_flags(&b, FlagTarget::Object("o-1")).await.unwrap(), Some(strings(&["\\Seen"])));
        assert_eq!(s.get_flags(&b, FlagTarget::Folder("f-inbox")).await.unwrap(), Some(vec![]));
        assert_eq!(s.get_flags(&b, FlagTarget::Object("no-such")).await.unwrap(), None);
        assert_eq!(s.get_flags(&b, FlagTarget::Folder("no-such")).await.unwrap(), None);

        // Replacing the whole list.
        let set = s.set_flags(&b, FlagTarget::Object("o-2"), &strings(&["\\Flagged", "$Work", "\\flagged"])).await;
        assert_eq!(ledger.took(set.unwrap()), Some(strings(&["\\Flagged", "$Work"])));
        ledger.wrote(&[object("o-2")]).await;
        let same =
            ledger.took(s.set_flags(&b, FlagTarget::Object("o-2"), &strings(&["$work", "\\FLAGGED"])).await.unwrap());
        assert_eq!(same, Some(strings(&["\\Flagged", "$Work"])), "the same set: the list as it stands");
        ledger.unchanged().await;
        assert_eq!(ledger.took(s.set_flags(&b, FlagTarget::Object("no-such"), &strings(&["$X"])).await.unwrap()), None);
        ledger.unchanged().await;
        let pinned = ledger.took(s.set_flags(&b, FlagTarget::Folder("f-inbox"), &strings(&["$Pinned"])).await.unwrap());
        assert_eq!(pinned, Some(strings(&["$Pinned"])));
        ledger.wrote(&[folder("f-inbox")]).await;

        // One flag at a time.
        let flagged = ledger.took(s.change_flag(&b, FlagTarget::Object("o-1"), "\\Flagged", true).await.unwrap());
        assert_eq!(flagged, Some(FlagChange::Changed));
        ledger.wrote(&[object("o-1")]).await;
        assert_eq!(s.get_flags(&b, FlagTarget::Object("o-1")).await.unwrap(), Some(strings(&["\\Seen", "\\Flagged"])));
        let again = ledger.took(s.change_flag(&b, FlagTarget::Object("o-1"), "\\flagged", true).await.unwrap());
        assert_eq!(again, Some(FlagChange::Unchanged));
        ledger.unchanged().await;
        let unseen = ledger.took(s.change_flag(&b, FlagTarget::Object("o-1"), "\\seen", false).await.unwrap());
        assert_eq!(unseen, Some(FlagChange::Changed));
        ledger.wrote(&[object("o-1")]).await;
        assert_eq!(s.get_flags(&b, FlagTarget::Object("o-1")).await.unwrap(), Some(strings(&["\\Flagged"])));
        let off = ledger.took(s.change_flag(&b, FlagTarget::Folder("f-inbox"), "$Pinned", false).await.unwrap());
        assert_eq!(off, Some(FlagChange::Changed));
        ledger.wrote(&[folder("f-inbox")]).await;
        assert_eq!(ledger.took(s.change_flag(&b, FlagTarget::Object("no-such"), "$X", true).await.unwrap()), None);
        ledger.unchanged().await;

        // In bulk: one write; an object whose flags do not change keeps its modseq.
        let named = Targets::Ids(ids(&["o-1", "o-2", "o-3", "no-such"]));
        let items = ledger.took(s.bulk_flags(&b, &named, &strings(&["\\Flagged"]), true).await.unwrap());
        let outcomes: Vec<_> = items.iter().map(|i| (i.public_id.as_str(), i.outcome)).collect();
        assert_eq!(outcomes, vec![("o-1", Some(false)), ("o-2", Some(false)), ("o-3", Some(true)), ("no-such", None)]);
        ledger.wrote(&[object("o-3")]).await;
        let items = ledger.took(s.bulk_flags(&b, &named, &strings(&["\\Flagged"]), true).await.unwrap());
        assert!(items.iter().all(|i| i.outcome != Some(true)), "{items:?}");
        ledger.unchanged().await;

        let flagged = |limit, refuse_beyond| Targets::Matching {
            query: sorted_by(SortKey::Id, false, Some(flag("\\flagged", true)), limit),
            refuse_beyond,
        };
        let refused = s.bulk_flags(&b, &flagged(2, true), &strings(&["\\Flagged"]), false).await;
        assert!(matches!(refused, Err(Error::LimitExceeded { .. })), "{refused:?}");
        ledger.unchanged().await;
        let items =
            ledger.took(s.bulk_flags(&b, &flagged(10, true), &strings(&["\\Flagged", "$Work"]), false).await.unwrap());
        let outcomes: Vec<_> = items.iter().map(|i| (i.public_id.as_str(), i.outcome)).collect();
        assert_eq!(outcomes, vec![("o-1", Some(true)), ("o-2", Some(true)), ("o-3", Some(true))]);
        ledger.wrote(&[object("o-1"), object("o-2"), object("o-3")]).await;
        for id in ["o-1", "o-2", "o-3"] {
            assert_eq!(s.get_flags(&b, FlagTarget::Object(id)).await.unwrap(), Some(vec![]), "{id}");
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn search_finds_by_attribute_flag_text_and_word_and_pages_in_every_order() {
    story(async |s| {
        let (b, mut ledger) = fresh_box(&s).await;
        let inbox =
            NewFolder { attributes: attrs(&[("Color", "blue")]), ..new_folder("f-inbox", ParentRef::Root, "Inbox") };
        let inbox = ledger.took(s.create_folder(&b, inbox).await.unwrap());
        ledger.wrote(&[folder("f-inbox")]).await;
        ledger.took(s.create_folder(&b, new_folder("f-old", under("f-inbox"), "Old")).await.unwrap());
        ledger.wrote(&[folder("f-old")]).await;
        ledger.took(s.create_folder(&b, new_folder("f-sent", ParentRef::Root, "Sent")).await.unwrap());
        ledger.wrote(&[folder("f-sent")]).await;

        let messages: [Sample; 6] = [
            ("m-1", "f-inbox", 1_000, "+1", "Lunch plans", "see you at noon", &["\\Seen"]),
            ("m-2", "f-inbox", 3_000, "+2", "Budget", "quarterly numbers", &[]),
            ("m-3", "f-old", 2_000, "+1", "Forgotten lunchbox", "my lunchbox is here", &["\\Seen", "\\Flagged"]),
            ("m-4", "f-sent", 4_000, "+3", "Re: Lunch plans", "noon works", &["\\Seen"]),
            ("m-5", "f-inbox", 3_000, "+2", "Apples", "an apple a day", &[]),
            ("m-6", "f-sent", 5_000, "+3", "Zebra", "stripes", &[]),
        ];
        let mut creation = BTreeMap::new();
        for (id, parent, stored, from, subject, body, flags) in messages {
            let new = NewObject {
                attributes: attrs(&[("From", from), ("Subject", subject)]),
                flags: strings(flags),
                text: format!("{from}\n{subject}\n{body}"),
                ..message(id, under(parent), stored)
            };
            creation.insert(id, ledger.took(s.create_object(&b, new).await.unwrap()).creation_seq);
            ledger.wrote(&[object(id)]).await;
        }

        // Criteria.
        assert_eq!(found(&s, &b, &matching(attribute("from", "+1"))).await, ids(&["m-1", "m-3"]));
        assert_eq!(found(&s, &b, &matching(attribute("subject", "Budget"))).await, ids(&["m-2"]));
        assert!(found(&s, &b, &matching(attribute("from", "+9"))).await.is_empty());
        assert_eq!(found(&s, &b, &matching(flag("\\seen", true))).await, ids(&["m-1", "m-3", "m-4"]));
        assert_eq!(found(&s, &b, &matching(flag("\\seen", false))).await, ids(&["m-2", "m-5", "m-6"]));
        let text = |needle: &str| matching(Filter::Text { needle: needle.into() });
        assert_eq!(found(&s, &b, &text("LUNCH")).await, ids(&["m-1", "m-3", "m-4"]), "substring, any case");
        assert_eq!(found(&s, &b, &text("pp")).await, ids(&["m-5"]), "a short substring");
        assert!(found(&s, &b, &text("lunches")).await.is_empty());
        let word = |w: &str| matching(Filter::Word { word: w.into() });
        assert_eq!(found(&s, &b, &word("lunch")).await, ids(&["m-1", "m-4"]), "whole words only");
        assert_eq!(found(&s, &b, &word("noon")).await, ids(&["m-1", "m-4"]));
        assert_eq!(found(&s, &b, &word("lunchbox")).await, ids(&["m-3"]));
        let both = Filter::All(vec![flag("\\seen", true), attribute("from", "+1")]);
        assert_eq!(found(&s, &b, &matching(both)).await, ids(&["m-1", "m-3"]));
        let either = Filter::Any(vec![attribute("from", "+2"), flag("\\flagged", true)]);
        assert_eq!(found(&s, &b, &matching(either)).await, ids(&["m-2", "m-3", "m-5"]));
        let unseen = Filter::Not(Box::new(flag("\\seen", true)));
        assert_eq!(found(&s, &b, &matching(unseen)).await, ids(&["m-2", "m-5", "m-6"]));
        let stored = Filter::Stored { min_ms: Some(2_000), max_ms: Some(4_000) };
        assert_eq!(found(&s, &b, &matching(stored)).await, ids(&["m-2", "m-3", "m-5"]), "[min, max)");
        let newer = Filter::CreatedAfter { seq: creation["m-3"] };
        assert_eq!(found(&s, &b, &matching(newer)).await, ids(&["m-4", "m-5", "m-6"]));
        assert!(found(&s, &b, &matching(Filter::Vanished)).await.is_empty());

        // Scopes: a folder alone, or its subtree.
        let everything = Filter::All(vec![]);
        assert_eq!(
            found(&s, &b, &within(matching(everything.clone()), inbox.id, false)).await,
            ids(&["m-1", "m-2", "m-5"])
        );
        assert_eq!(
            found(&s, &b, &within(matching(everything), inbox.id, true)).await,
            ids(&["m-1", "m-2", "m-3", "m-5"])
        );
        assert_eq!(found(&s, &b, &within(text("lunch"), inbox.id, true)).await, ids(&["m-1", "m-3"]));

        // Sorts, paged by keyset positions; ties fall back to storage order.
        let pages = |key, descending, filter, limit| object_pages(&s, &b, sorted_by(key, descending, filter, limit));
        assert_eq!(
            pages(SortKey::Date, false, None, 2).await,
            vec![ids(&["m-1", "m-3"]), ids(&["m-2", "m-5"]), ids(&["m-4", "m-6"])]
        );
        assert_eq!(
            pages(SortKey::Date, true, None, 4).await,
            vec![ids(&["m-6", "m-4", "m-5", "m-2"]), ids(&["m-3", "m-1"])]
        );
        assert_eq!(
            pages(SortKey::Attribute("subject".into()), false, None, 4).await,
            vec![ids(&["m-5", "m-2", "m-3", "m-1"]), ids(&["m-4", "m-6"])]
        );
        assert_eq!(
            pages(SortKey::Attribute("subject".into()), true, Some(flag("\\seen", true)), 2).await,
            vec![ids(&["m-4", "m-1"]), ids(&["m-3"])]
        );
        assert_eq!(
            pages(SortKey::Creation, true, None, 5).await,
            vec![ids(&["m-6", "m-5", "m-4", "m-3", "m-2"]), ids(&["m-1"])]
        );
        assert_eq!(
            pages(SortKey::Id, false, Some(flag("\\seen", true)), 1).await,
            vec![ids(&["m-1"]), ids(&["m-3"]), ids(&["m-4"])]
        );
        assert_eq!(
            pages(SortKey::Id, true, Some(flag("\\seen", true)), 2).await,
            vec![ids(&["m-4", "m-3"]), ids(&["m-1"])]
        );
        assert_eq!(
            pages(SortKey::Id, false, Some(Filter::Text { needle: "noon".into() }), 1).await,
            vec![ids(&["m-1"]), ids(&["m-4"])]
        );
        let page = s.search_objects(&b, &sorted_by(SortKey::Id, false, None, 1)).await.unwrap();
        assert_eq!(page.modseq, ledger.seq, "a page tells the modseq it was read at");

        // Folders.
        let folders = |filter| folder_pages(&s, &b, matching(filter));
        assert_eq!(folders(attribute("name", "Sent")).await, vec![ids(&["f-sent"])]);
        assert_eq!(folders(attribute("color", "blue")).await, vec![ids(&["f-inbox"])]);
        assert_eq!(folders(attribute("root", "yes")).await, vec![ids(&["root"])]);
        assert_eq!(folders(Filter::Text { needle: "sEN".into() }).await, vec![ids(&["f-sent"])]);
        let root = s.root_folder(&b).await.unwrap();
        let children = within(matching(Filter::All(vec![])), root.id, false);
        assert_eq!(folder_pages(&s, &b, children).await, vec![ids(&["f-inbox", "f-sent"])]);
        let subtree = within(matching(Filter::All(vec![])), inbox.id, true);
        assert_eq!(folder_pages(&s, &b, subtree).await, vec![ids(&["f-inbox", "f-old"])]);
        assert_eq!(
            folder_pages(&s, &b, sorted_by(SortKey::Attribute("name".into()), false, None, 2)).await,
            vec![ids(&["root", "f-inbox"]), ids(&["f-old", "f-sent"])]
        );
        assert_eq!(
            folder_pages(&s, &b, sorted_by(SortKey::Id, true, None, 3)).await,
            vec![ids(&["f-sent", "f-old", "f-inbox"]), ids(&["root"])]
        );
        ledger.unchanged().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Sync
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sync_replays_every_kind_of_change_in_modseq_order_and_pruning_raises_the_floor() {
    story(async |s| {
        let (b, mut ledger) = fresh_box(&s).await;
        assert_eq!(s.sync_state(&b).await.unwrap(), (1, 1_000, 0));

        ledger.took(s.create_folder(&b, new_folder("f-a", ParentRef::Root, "A")).await.unwrap());
        ledger.wrote(&[folder("f-a")]).await;
        let o1 = NewObject { attributes: attrs(&[("Subject", "first")]), ..message("o-1", at("/A"), 1_000) };
        let o1_created = ledger.took(s.create_object(&b, o1).await.unwrap()).creation_seq;
        ledger.wrote(&[object("o-1")]).await;
        ledger.took(s.create_object(&b, message("o-2", at("/A"), 2_000)).await.unwrap());
        ledger.wrote(&[object("o-2")]).await;
        ledger.took(s.change_flag(&b, FlagTarget::Object("o-1"), "\\Seen", true).await.unwrap());
        ledger.wrote(&[object("o-1")]).await;
        ledger.took(s.rename_folder(&b, "f-a", "Alpha").await.unwrap());
        ledger.wrote(&[folder("f-a")]).await;
        ledger.took(s.create_folder(&b, new_folder("f-b", ParentRef::Root, "B")).await.unwrap());
        ledger.wrote(&[folder("f-b")]).await;
        ledger.took(
            s.move_to_folder(&b, "f-b", &Sources { folders: vec![], objects: ids(&["o-2"]) }, &Departures)
                .await
                .unwrap(),
        );
        ledger.wrote(&[object("o-2")]).await;
        ledger.took(s.delete_object(&b, "o-1", 10_000, &Departures).await.unwrap());
        let o1_gone = ledger.wrote(&[deleted(object("o-1"))]).await;
        let before_bulk = ledger.seq;
        let bulk = vec![Ok(message("o-3", at("/B"), 3_000)), Ok(message("o-4", at("/B"), 4_000))];
        ledger.took(s.create_objects(&b, bulk).await.unwrap());
        ledger.wrote(&[object("o-3"), object("o-4")]).await;
        ledger.took(s.set_flags(&b, FlagTarget::Folder("f-b"), &strings(&["$Pinned"])).await.unwrap());
        ledger.wrote(&[folder("f-b")]).await;
        ledger.took(s.create_folder(&b, new_folder("f-c", ParentRef::Root, "C")).await.unwrap());
        ledger.wrote(&[folder("f-c")]).await;
        ledger.took(s.create_object(&b, message("o-5", at("/C"), 5_000)).await.unwrap());
        ledger.wrote(&[object("o-5")]).await;
        ledger.took(s.delete_folder(&b, "f-c", 20_000).await.unwrap());
        let c_gone = ledger.wrote(&[deleted(folder("f-c")), deleted(object("o-5"))]).await;
        let copied = s.copy_to_folder(&b, "root", &Sources { folders: vec![], objects: ids(&["o-2"]) }, 7_000).await;
        let copy = match &ledger.took(copied.unwrap()).expect("the root")[..] {
            [Relocated::Done { public_id, .. }] => public_id.clone(),
            other => panic!("copied: {other:?}"),
        };
        ledger.wrote(&[object(&copy)]).await;

        // Expiry: by age, then beyond the newest few, oldest first, at most `limit`.
        let (n, _) = ledger.took(s.expire_objects(&b, Some(2_500), None, 30_000, 10, &Departures).await.unwrap());
        assert_eq!(n, 1);
        ledger.wrote(&[expired(object("o-2"))]).await;
        let (n, _) = ledger.took(s.expire_objects(&b, None, Some(1), 31_000, 1, &Departures).await.unwrap());
        assert_eq!(n, 1, "o-3 and o-4 are beyond the newest one; the limit takes o-3");
        ledger.wrote(&[expired(object("o-3"))]).await;
        assert_eq!(
            ledger.took(s.expire_objects(&b, None, None, 32_000, 10, &Departures).await.unwrap()).0,
            0,
            "no rule, nothing expires"
        );
        ledger.unchanged().await;
        assert_eq!(ledger.took(s.expire_objects(&b, Some(0), Some(100), 32_000, 10, &Departures).await.unwrap()).0, 0);
        ledger.unchanged().await;

        // Replay from every modseq the box has had, whole and in pages.
        ledger.replay_matches().await;
        ledger.replay_in_pages(2).await;
        let page = s.changes_since(&b, 0, None, 1_000, false).await.unwrap();
        assert_eq!((page.modseq, page.validity, page.replay_floor), (ledger.seq, 1_000, 0));

        // Attributes and tombstone snapshots come only when asked for.
        let with = s.changes_since(&b, before_bulk - 1, None, 100, true).await.unwrap();
        let without = s.changes_since(&b, before_bulk - 1, None, 100, false).await.unwrap();
        let snapshot_of = |page: &ChangePage| {
            page.changes.iter().find_map(|c| match c {
                Change::Gone(t) if t.public_id == "o-1" => Some(t.snapshot.clone()),
                _ => None,
            })
        };
        let o1_snapshot = Snapshot {
            date_ms: 1_000,
            creation_seq: Some(o1_created),
            name: None,
            flags: strings(&["\\Seen"]),
            attributes: attrs(&[("Subject", "first")]),
        };
        assert_eq!(snapshot_of(&with), Some(Some(o1_snapshot.clone())));
        assert_eq!(snapshot_of(&without), Some(None));

        // Tombstones, oldest first, with what subscription filters need.
        let tombstones = s.tombstones_since(&b, 0).await.unwrap();
        let got: Vec<(i64, String)> =
            tombstones.iter().map(|t| (t.last_mod_seq, format!("{} {} {}", t.reason, t.kind, t.public_id))).collect();
        assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "oldest first: {got:?}");
        let gone = |seq, key: String| (seq, key);
        assert_eq!(
            sorted(got),
            vec![
                gone(o1_gone, deleted(object("o-1"))),
                gone(c_gone, deleted(folder("f-c"))),
                gone(c_gone, deleted(object("o-5"))),
                gone(ledger.seq - 1, expired(object("o-2"))),
                gone(ledger.seq, expired(object("o-3"))),
            ]
        );
        assert_eq!(tombstones[0].snapshot, Some(o1_snapshot));
        let c = tombstones.iter().find(|t| t.public_id == "f-c").expect("f-c");
        assert_eq!(c.snapshot.as_ref().map(|s| (s.name.as_deref(), s.date_ms)), Some((Some("C"), 1_500)));
        assert_eq!(s.tombstones_since(&b, c_gone).await.unwrap().len(), 2, "only the expiries after it");

        // Pruning: by age, then beyond the newest per box; the replay floor rises to the newest dropped.
        let other = s.provision_box("base", "tel:+15550009", "root-9", 1_000).await.unwrap();
        let made = s.create_object(&other, message("x-1", ParentRef::Root, 1_000)).await.unwrap();
        assert_eq!(made.commit.map(|c| c.box_id), Some(other.id), "the other box's write");
        let gone = s.delete_object(&other, "x-1", 50_000, &Departures).await.unwrap();
        assert_eq!(gone.commit.map(|c| c.box_id), Some(other.id));
        assert_eq!(s.prune_tombstones(0, 100).await.unwrap(), 0);
        assert_eq!(s.sync_state(&b).await.unwrap().2, 0);
        assert_eq!(s.prune_tombstones(15_000, 100).await.unwrap(), 1, "o-1 went before 15 s");
        assert_eq!(s.sync_state(&b).await.unwrap(), (ledger.seq, 1_000, o1_gone));
        ledger.pruned(&[object("o-1")]);
        ledger.unchanged().await;
        ledger.replay_matches().await;
        assert_eq!(s.changes_since(&b, 0, None, 100, false).await.unwrap().replay_floor, o1_gone);
        assert_eq!(s.prune_tombstones(0, 2).await.unwrap(), 2, "f-c and o-5 are beyond the newest two");
        assert_eq!(s.sync_state(&b).await.unwrap().2, c_gone);
        ledger.pruned(&[folder("f-c"), object("o-5")]);
        ledger.replay_matches().await;
        assert_eq!(s.prune_tombstones(0, 2).await.unwrap(), 0);
        assert_eq!(s.sync_state(&other).await.unwrap().2, 0, "the other box kept its one tombstone");
        assert_eq!(s.tombstones_since(&other, 0).await.unwrap().len(), 1);
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Notification channels and subscriptions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn channels_and_subscriptions_live_advance_deliver_and_are_purged() {
    story(async |s| {
        let (b, mut ledger) = fresh_box(&s).await;
        let other = s.provision_box("base", "tel:+15550009", "root-9", 1_000).await.unwrap();
        let now = cpm_nms::ids::now_ms();

        let channel = |public_id: &str, principal: &str, user_id: &str| Channel {
            id: 0,
            public_id: public_id.into(),
            principal: principal.into(),
            user_id: user_id.into(),
            client_correlator: Some("cc-1".into()),
            application_tag: Some("app".into()),
            lifetime_secs: 60,
            expires_at_ms: now + 60_000,
            max_notifications: 5,
            max_wait_secs: 0,
            poll_generation: 0,
        };
        let ch1 = s.create_channel(&channel("ch-1", "alice", "tel:+15550001")).await.unwrap();
        assert_eq!(ch1, Channel { id: ch1.id, ..channel("ch-1", "alice", "tel:+15550001") });
        s.create_channel(&channel("ch-2", "alice", "tel:+15550002")).await.unwrap();
        s.create_channel(&channel("ch-3", "bob", "tel:+15550001")).await.unwrap();
        assert_eq!(s.channel("ch-1", now).await.unwrap(), Some(ch1.clone()));
        assert_eq!(s.channel("ch-1", now + 60_000).await.unwrap(), None, "expired");
        assert_eq!(s.channel("no-such", now).await.unwrap(), None);
        assert_eq!(s.channels_of("alice", "tel:+15550001", now).await.unwrap(), vec![ch1.clone()]);
        assert_eq!(s.count_channels("alice", now).await.unwrap(), 2);
        assert_eq!(s.count_channels("alice", now + 60_000).await.unwrap(), 0);
        let renewed = s.renew_channel("ch-1", 600, now + 1_000).await.unwrap();
        assert_eq!(renewed, Some(Channel { lifetime_secs: 600, expires_at_ms: now + 601_000, ..ch1.clone() }));
        assert_eq!(s.renew_channel("no-such", 600, now).await.unwrap(), None);
        assert_eq!(s.renew_channel("ch-2", 600, now + 60_000).await.unwrap(), None, "an expired channel stays so");
        // A poll begins: the channel lives its lifetime again from then, one generation on,
        // so the poll open before (on whichever node) knows it is superseded.
        let polled = s.begin_poll("ch-1", now + 2_000).await.unwrap();
        let renewed = renewed.unwrap();
        assert_eq!(polled, Some(Channel { expires_at_ms: now + 602_000, poll_generation: 1, ..renewed.clone() }));
        let again = s.begin_poll("ch-1", now + 3_000).await.unwrap().unwrap();
        assert_eq!((again.poll_generation, again.expires_at_ms), (2, now + 603_000));
        assert_eq!(s.channel("ch-1", now).await.unwrap(), Some(again));
        assert_eq!(s.begin_poll("no-such", now).await.unwrap(), None);
        assert_eq!(s.begin_poll("ch-2", now + 60_000).await.unwrap(), None, "an expired channel is not polled");

        let subscription = |public_id: &str, channel_id: Option<i64>| Subscription {
            id: 0,
            box_id: b.id,
            public_id: public_id.into(),
            principal: "alice".into(),
            channel_id,
            notify_url: "https://hooks.example/nms".into(),
            callback_data: Some("cb".into()),
            notification_format: Some("JSON".into()),
            filter: Some(Filter::Any(vec![flag("\\seen", false), Filter::Vanished])),
            client_correlator: None,
            duration_secs: 3_600,
            expires_at_ms: now + 3_600_000,
            restart_token: "tok-0".into(),
            position_validity: b.validity,
            position_modseq: b.modseq,
            position_within: None,
            next_index: 1,
        };
        // A new subscription may have changes due at once: it reports the box as it stands.
        let s1 = ledger.took(s.create_subscription(&subscription("s-1", Some(ch1.id)), 3).await.unwrap()).expect("s-1");
        ledger.announced().await;
        assert_eq!(s1, Subscription { id: s1.id, ..subscription("s-1", Some(ch1.id)) });
        let with_correlator = Subscription { client_correlator: Some("corr".into()), ..subscription("s-2", None) };
        let s2 = ledger.took(s.create_subscription(&with_correlator, 3).await.unwrap()).expect("s-2");
        ledger.announced().await;
        let s3 = ledger.took(s.create_subscription(&subscription("s-3", None), 3).await.unwrap()).expect("s-3");
        ledger.announced().await;
        let refused = ledger.took(s.create_subscription(&subscription("s-x", None), 3).await.unwrap());
        assert_eq!(refused, None, "three per box");
        ledger.unchanged().await;
        let s4 = ledger.took(s.create_subscription(&subscription("s-4", None), 0).await.unwrap()).expect("0: no limit");
        ledger.announced().await;

        assert_eq!(s.subscription(&b, "s-1", now).await.unwrap(), Some(s1.clone()));
        assert_eq!(s.subscription(&other, "s-1", now).await.unwrap(), None, "another box's");
        assert_eq!(s.subscription(&b, "s-1", now + 3_600_000).await.unwrap(), None, "expired");
        assert_eq!(s.subscription_by_correlator(&b, "alice", "corr", now).await.unwrap(), Some(s2.clone()));
        assert_eq!(s.subscription_by_correlator(&b, "bob", "corr", now).await.unwrap(), None);
        let of_alice: Vec<String> =
            s.subscriptions_of(&b, "alice", now).await.unwrap().into_iter().map(|x| x.public_id).collect();
        assert_eq!(of_alice, ids(&["s-1", "s-2", "s-3", "s-4"]));
        assert!(s.subscriptions_of(&b, "bob", now).await.unwrap().is_empty());
        assert_eq!(s.subscriptions_of_channel(ch1.id, now).await.unwrap(), vec![s1.clone()]);

        // Updates: the duration alone, or with a new restart point.
        let longer = Subscription {
            duration_secs: 7_200,
            expires_at_ms: now + 7_200_000,
            restart_token: "ignored".into(),
            position_modseq: 99,
            ..s2.clone()
        };
        ledger.took(s.update_subscription(&longer, false).await.unwrap());
        ledger.unchanged().await;
        let stored = Subscription { duration_secs: 7_200, expires_at_ms: now + 7_200_000, ..s2.clone() };
        assert_eq!(s.subscription(&b, "s-2", now).await.unwrap(), Some(stored.clone()));
        let restarted = Subscription { restart_token: "tok-1".into(), position_modseq: 0, ..stored };
        ledger.took(s.update_subscription(&restarted, true).await.unwrap());
        ledger.announced().await;
        assert_eq!(s.subscription(&b, "s-2", now).await.unwrap(), Some(restarted.clone()));

        // Webhook candidates: behind the box, with no list in flight.
        let candidates = async |boxes: Option<&[i64]>| -> Vec<String> {
            s.webhook_candidates(now, boxes, 10).await.unwrap().into_iter().map(|x| x.public_id).collect()
        };
        assert_eq!(candidates(None).await, ids(&["s-2"]), "only s-2 is behind");
        ledger.unchanged().await;
        ledger.took(s.create_folder(&b, new_folder("f-a", ParentRef::Root, "A")).await.unwrap());
        let seq = ledger.wrote(&[folder("f-a")]).await;
        assert_eq!(candidates(None).await, ids(&["s-2", "s-3", "s-4"]), "a channel's subscription is not one");
        assert_eq!(candidates(Some(&[b.id])).await, ids(&["s-2", "s-3", "s-4"]));
        assert!(candidates(Some(&[other.id])).await.is_empty());
        assert!(candidates(Some(&[])).await.is_empty());

        // Advancing consumes an index (compare-and-set); skipping only moves the position.
        let v = b.validity;
        let step = |id, to_token: &str| Advance {
            id,
            index: 1,
            from: (v, 1, None),
            to: (v, seq, None),
            token: to_token.into(),
        };
        let body = r#"{"nmsEventList":{"index":1}}"#;
        assert!(s.advance_subscription(&step(s3.id, "tok-3"), Some(body)).await.unwrap());
        assert!(!s.advance_subscription(&step(s3.id, "tok-3"), Some(body)).await.unwrap(), "lost the race");
        let advanced = s.subscription(&b, "s-3", now).await.unwrap().expect("s-3");
        assert_eq!((advanced.position_modseq, advanced.next_index, advanced.restart_token.as_str()), (seq, 2, "tok-3"));
        assert!(s.skip_subscription(&step(s4.id, "tok-4")).await.unwrap());
        assert!(!s.skip_subscription(&step(s4.id, "tok-4")).await.unwrap(), "the position moved");
        let skipped = s.subscription(&b, "s-4", now).await.unwrap().expect("s-4");
        assert_eq!((skipped.position_modseq, skipped.next_index, skipped.restart_token.as_str()), (seq, 1, "tok-4"));
        assert_eq!(candidates(None).await, ids(&["s-2"]), "s-3 has a list in flight, s-4 is caught up");

        // The queued list: claimed under a lease, retried after a failure, dropped once delivered.
        let due = s.next_webhook_due().await.unwrap().expect("a list is queued");
        let t = cpm_nms::ids::now_ms();
        assert!(now <= due && due <= t, "due at once: {due}");
        let list = OutboxList {
            subscription_id: s3.id,
            box_id: b.id,
            notify_url: s3.notify_url.clone(),
            index: 1,
            body: body.into(),
            format: NotificationFormat::Json,
            attempts: 0,
        };
        assert_eq!(s.claim_webhook_lists(t, t + 30_000, 10).await.unwrap(), vec![list.clone()]);
        assert!(s.claim_webhook_lists(t, t + 30_000, 10).await.unwrap().is_empty(), "leased");
        assert_eq!(s.next_webhook_due().await.unwrap(), Some(t + 30_000));
        s.webhook_failed(s3.id, 1, t + 5_000, "503 Service Unavailable").await.unwrap();
        assert_eq!(s.next_webhook_due().await.unwrap(), Some(t + 5_000));
        assert!(s.claim_webhook_lists(t + 1_000, t + 31_000, 10).await.unwrap().is_empty(), "not due yet");
        let retry = s.claim_webhook_lists(t + 5_000, t + 35_000, 10).await.unwrap();
        assert_eq!(retry, vec![OutboxList { attempts: 1, ..list }]);
        s.webhook_delivered(s3.id, 1).await.unwrap();
        assert_eq!(s.next_webhook_due().await.unwrap(), None);
        assert_eq!(candidates(None).await, ids(&["s-2"]));

        // Ending, deleting, and the channel taking its subscriptions along.
        s.end_subscription(s4.id).await.unwrap();
        assert_eq!(s.subscription(&b, "s-4", now).await.unwrap(), None);
        assert!(!s.delete_subscription(&other, "s-2").await.unwrap(), "not in that box");
        assert!(s.delete_subscription(&b, "s-2").await.unwrap());
        assert!(!s.delete_subscription(&b, "s-2").await.unwrap());
        assert!(s.delete_channel("ch-1").await.unwrap());
        assert!(!s.delete_channel("ch-1").await.unwrap());
        assert_eq!(s.channel("ch-1", now).await.unwrap(), None);
        assert_eq!(s.subscription(&b, "s-1", now).await.unwrap(), None, "it went with its channel");

        // Purging drops what has expired: s-3, ch-2 and ch-3.
        assert_eq!(s.purge_expired_subscriptions(now).await.unwrap(), 0);
        assert_eq!(s.purge_expired_subscriptions(now + 3_600_000).await.unwrap(), 3);
        assert_eq!(s.subscription(&b, "s-3", now).await.unwrap(), None);
        assert_eq!(s.count_channels("alice", now).await.unwrap(), 0);
        assert_eq!(s.count_channels("bob", now).await.unwrap(), 0);
        ledger.unchanged().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Blob references
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn blobs_are_pinned_referenced_marked_for_deletion_and_stale_marks_expire() {
    story(async |s| {
        let (b, mut ledger) = fresh_box(&s).await;

        // Pins hold a blob: deletion may begin only when none is left.
        assert!(s.pin_blob("k-1", "t-1", 1_000).await.unwrap());
        assert!(s.pin_blob("k-1", "t-2", 1_000).await.unwrap());
        assert!(!s.begin_blob_delete("k-1", 1_000).await.unwrap(), "pinned twice");
        s.unpin_blob("k-1", "t-1").await.unwrap();
        assert!(!s.begin_blob_delete("k-1", 1_000).await.unwrap(), "still pinned once");
        s.unpin_blob("k-1", "t-2").await.unwrap();
        assert!(s.begin_blob_delete("k-1", 2_000).await.unwrap(), "free: marked for deletion");
        assert!(!s.begin_blob_delete("k-1", 2_000).await.unwrap(), "already being deleted");
        let pin = s.pin_blob("k-1", "t-3", 2_000).await;
        assert!(!matches!(pin, Ok(true)), "no pin while a deletion is under way: {pin:?}");
        s.finish_blob_delete("k-1").await.unwrap();
        assert!(s.pin_blob("k-1", "t-3", 2_000).await.unwrap(), "deleted: a new upload may pin it");
        s.unpin_blob("k-1", "t-3").await.unwrap();

        // A part referencing a key holds it until the object goes.
        let o =
            NewObject { parts: vec![blob("1", "image/png", "k-used", 10)], ..message("o-1", ParentRef::Root, 1_000) };
        ledger.took(s.create_object(&b, o).await.unwrap());
        ledger.wrote(&[object("o-1")]).await;
        assert!(!s.begin_blob_delete("k-used", 3_000).await.unwrap(), "referenced");
        let released = ledger.took(s.delete_object(&b, "o-1", 3_000, &Departures).await.unwrap()).expect("o-1");
        assert_eq!(released.blob_keys, ids(&["k-used"]));
        ledger.wrote(&[deleted(object("o-1"))]).await;
        assert!(s.begin_blob_delete("k-used", 3_000).await.unwrap());
        s.finish_blob_delete("k-used").await.unwrap();

        // A deletion mark older than a minute belongs to a crashed collector: a pin passes it.
        assert!(s.begin_blob_delete("k-2", 1_000).await.unwrap());
        assert!(s.pin_blob("k-2", "t-1", 61_001).await.unwrap());

        // Marks left behind expire by age.
        assert!(s.pin_blob("k-3", "t-1", 5_000).await.unwrap());
        assert!(s.begin_blob_delete("k-4", 5_000).await.unwrap());
        assert_eq!(s.expire_blob_marks(5_000).await.unwrap(), 0, "none made before 5 s");
        assert_eq!(s.expire_blob_marks(70_000).await.unwrap(), 3, "two pins and a mark");
        assert!(s.begin_blob_delete("k-3", 70_000).await.unwrap(), "its pin expired");
        assert!(s.begin_blob_delete("k-4", 70_000).await.unwrap(), "its old mark expired");
        ledger.unchanged().await;
    })
    .await;
}
