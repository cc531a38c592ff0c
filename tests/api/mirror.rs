//! A scripted strict-sync client keeps an exact mirror of a box while another principal
//! changes it.
//!
//! The client (`alice`) does what an NMS client does: it creates a notification channel and
//! a subscription (whose `restartToken` marks the start), walks the whole box with paged
//! object and folder searches (small pages, real cursors), then long-polls the channel. It
//! applies events idempotently (an event whose `lastModSeq` is not newer than what it holds,
//! for the item or its deletion, is ignored), checks the index contract (the first list
//! carries the subscription's `index`, each further one exactly +1; a gap is recovered by
//! `nmsSubscriptionUpdate` with the last `restartToken`), and on `resetBox` discards the
//! mirror and walks the box again. Meanwhile the service account `pf` changes the box in a
//! seeded random sequence: deposits (single and bulk), moves, flag changes (single, bulk and
//! whole lists), copies of objects and folders, folder creation, renames, moves and
//! (recursive) deletes, object deletes (single and bulk), expiry by the retention policy,
//! and one box reset.
//!
//! When the writer is done the client polls until a list's `restartToken` is the box's
//! current token; then its mirror must equal the box exactly, as a full search sees it:
//! every object with its parent folder, flags and `lastModSeq`, every folder with its parent,
//! name and `lastModSeq`. The second test also disconnects the client at random points
//! (aborted polls, answers lost on the way, channel and subscription deleted or abandoned)
//! and resumes from the last `restartToken` (a subscription update, or a new subscription
//! created with it); it must converge exactly as well.
//!
//! `NMS_MIRROR_SEED` overrides the seeds (printed on failure) to replay a sequence.
//!
//! The third test shows that a long poll whose client has disconnected takes no list: the
//! change made meanwhile reaches the client's next poll.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use cpm_nms::config::RetentionPolicy;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::helpers::*;

/// The client's login (the box owner) and the writer's (a service account).
const CLIENT: &str = "alice";
const WRITER: &str = "pf";
const FLAGS: &[&str] = &["\\Seen", "\\Flagged", "\\Answered"];
/// The retention policy keeps this many objects per box (expiry runs when the writer says).
const KEEP: u32 = 45;
/// Page sizes of the client's walks: small, so that the walks follow several cursors.
const OBJECT_PAGE: u32 = 7;
const FOLDER_PAGE: u32 = 3;
/// How long a whole run may take before it counts as not converging.
const DEADLINE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------- the mirror

#[derive(Clone, Debug, PartialEq, Eq)]
struct Obj {
    parent: String,
    flags: BTreeSet<String>,
    seq: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Fold {
    parent: Option<String>,
    name: String,
    seq: i64,
}

/// What the client knows of the box, by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Mirror {
    objects: BTreeMap<String, Obj>,
    folders: BTreeMap<String, Fold>,
}

/// Where `have` differs from `want`, for failure messages (at most 30 lines).
fn diff(have: &Mirror, want: &Mirror) -> String {
    let mut out = Vec::new();
    for (id, w) in &want.objects {
        match have.objects.get(id) {
            None => out.push(format!("object {id} missing from the mirror (box: {w:?})")),
            Some(h) if h != w => out.push(format!("object {id}: mirror {h:?}, box {w:?}")),
            _ => {}
        }
    }
    for (id, h) in &have.objects {
        if !want.objects.contains_key(id) {
            out.push(format!("object {id} is not in the box (mirror: {h:?})"));
        }
    }
    for (id, w) in &want.folders {
        match have.folders.get(id) {
            None => out.push(format!("folder {id} missing from the mirror (box: {w:?})")),
            Some(h) if h != w => out.push(format!("folder {id}: mirror {h:?}, box {w:?}")),
            _ => {}
        }
    }
    for (id, h) in &have.folders {
        if !want.folders.contains_key(id) {
            out.push(format!("folder {id} is not in the box (mirror: {h:?})"));
        }
    }
    let n = out.len();
    out.truncate(30);
    format!("{n} differences:\n  {}", out.join("\n  "))
}

fn id_of(v: &Value) -> String {
    last_segment(v["resourceURL"].as_str().unwrap_or_else(|| panic!("no resourceURL in {v}")))
}

fn seq_of(v: &Value) -> i64 {
    v["lastModSeq"].as_i64().unwrap_or_else(|| panic!("no lastModSeq in {v}"))
}

fn obj_of(v: &Value) -> Obj {
    let parent = last_segment(v["parentFolder"].as_str().unwrap_or_else(|| panic!("no parentFolder in {v}")));
    let flags = v["flags"]["flag"]
        .as_array()
        .unwrap_or_else(|| panic!("no flags.flag in {v}"))
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    Obj { parent, flags, seq: seq_of(v) }
}

fn fold_of(v: &Value) -> Fold {
    Fold {
        parent: v["parentFolder"].as_str().map(last_segment),
        name: v["name"].as_str().unwrap_or_else(|| panic!("no name in {v}")).to_string(),
        seq: seq_of(v),
    }
}

async fn call(app: &TestApp, user: &str, method: Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = app.req_as(user, method, url).header("Accept", "application/json");
    if let Some(b) = body {
        r = r.json(&b);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// One walk of the box as `user` sees it: every object and folder, following cursors with
/// pages of the given sizes. Returns the items (an item met twice keeps its newest state),
/// the number of pages and how many items came more than once.
async fn walk(app: &TestApp, user: &str, object_page: u32, folder_page: u32) -> (Mirror, usize, usize) {
    let base = app.base(ALICE);
    let (mut m, mut pages, mut twice) = (Mirror::default(), 0, 0);
    for (what, page) in [("objects", object_page), ("folders", folder_page)] {
        let mut cursor: Option<String> = None;
        loop {
            let mut sel = json!({ "maxEntries": page });
            if let Some(c) = &cursor {
                sel["fromCursor"] = json!(c);
            }
            let url = format!("{base}/{what}/operations/search");
            let (status, v) = call(app, user, Method::POST, &url, Some(json!({ "selectionCriteria": sel }))).await;
            pages += 1;
            if status == 204 {
                break;
            }
            assert_eq!(status, 200, "{what} search: {v}");
            let list = if what == "objects" { &v["objectList"] } else { &v["folderList"] };
            let key = if what == "objects" { "object" } else { "folder" };
            let items = list[key].as_array().cloned().unwrap_or_default();
            assert!(items.len() <= page as usize, "a page holds at most maxEntries: {v}");
            for item in &items {
                let id = id_of(item);
                if what == "objects" {
                    let o = obj_of(item);
                    match m.objects.get(&id) {
                        Some(h) => {
                            twice += 1;
                            if h.seq < o.seq {
                                m.objects.insert(id, o);
                            }
                        }
                        None => {
                            m.objects.insert(id, o);
                        }
                    }
                } else {
                    let f = fold_of(item);
                    match m.folders.get(&id) {
                        Some(h) => {
                            twice += 1;
                            if h.seq < f.seq {
                                m.folders.insert(id, f);
                            }
                        }
                        None => {
                            m.folders.insert(id, f);
                        }
                    }
                }
            }
            match list["cursor"].as_str() {
                Some(c) if cursor.as_deref() != Some(c) => cursor = Some(c.to_string()),
                _ => break,
            }
        }
    }
    (m, pages, twice)
}

// ---------------------------------------------------------------- the client

#[derive(Debug, Default)]
struct Stats {
    polls: usize,
    empty_polls: usize,
    lists: usize,
    events: usize,
    applied: usize,
    /// Events not newer than what the client held (overlap with a walk, replays).
    stale: usize,
    kinds: BTreeMap<String, usize>,
    /// Lists whose index was above the expected one.
    gaps: usize,
    /// Lists whose index was below the expected one (an index handed out twice).
    regressions: usize,
    /// Lists of another subscription than the client's current one.
    foreign: usize,
    /// Polls ended by a newer poll of the same channel (409 SVC1012).
    superseded: usize,
    updates: usize,
    subscriptions: usize,
    channels: usize,
    walks: usize,
    walk_pages: usize,
    /// Empty polls after the writer was done while the client's token was behind.
    tail_recoveries: usize,
    disconnects: BTreeMap<&'static str, usize>,
    resumes: BTreeMap<&'static str, usize>,
}

struct Client<'a> {
    app: &'a TestApp,
    mirror: Mirror,
    /// Deletions seen, with their lastModSeq: a change not newer than these is stale.
    gone_objects: HashMap<String, i64>,
    gone_folders: HashMap<String, i64>,
    channel: String,
    channel_url: String,
    callback: String,
    max_notifications: u32,
    subscription: String,
    /// The restartToken of the last accepted list (or of the subscription).
    token: String,
    /// The index the next list must carry.
    expected: i64,
    /// The highest lastModSeq delivered since the last (re)subscription or update.
    last_seq: Option<i64>,
    stats: Stats,
}

/// A poll answered a list whose index skips one: the rest of the answer is dropped.
struct Gap;

impl<'a> Client<'a> {
    /// A channel and a subscription without a token: it starts now.
    async fn connect(app: &'a TestApp, max_notifications: u32) -> Client<'a> {
        let mut c = Client {
            app,
            mirror: Mirror::default(),
            gone_objects: HashMap::new(),
            gone_folders: HashMap::new(),
            channel: String::new(),
            channel_url: String::new(),
            callback: String::new(),
            max_notifications,
            subscription: String::new(),
            token: String::new(),
            expected: 0,
            last_seq: None,
            stats: Stats::default(),
        };
        c.open_channel().await;
        c.subscribe(None).await;
        c
    }

    async fn open_channel(&mut self) {
        let url = format!("{}/notificationchannel/v1/{}/channels", self.app.url, enc(ALICE));
        let body = json!({"notificationChannel": {"channelType": "LongPolling", "channelLifetime": 600,
            "channelData": {"maxNotifications": self.max_notifications}}});
        let (status, v) = call(self.app, CLIENT, Method::POST, &url, Some(body)).await;
        assert_eq!(status, 201, "{v}");
        let c = &v["notificationChannel"];
        assert_eq!(c["channelData"]["maxNotifications"], self.max_notifications);
        self.channel = c["resourceURL"].as_str().unwrap().to_string();
        self.channel_url = c["channelData"]["channelURL"].as_str().unwrap().to_string();
        self.callback = c["callbackURL"].as_str().unwrap().to_string();
        self.stats.channels += 1;
    }

    /// A subscription on the current channel, from `token` (or from now).
    async fn subscribe(&mut self, token: Option<&str>) {
        let mut sub =
            json!({"callbackReference": {"notifyURL": self.callback, "callbackData": "mirror"}, "duration": 600});
        if let Some(t) = token {
            sub["restartToken"] = json!(t);
        }
        let url = format!("{}/subscriptions", self.app.base(ALICE));
        let (status, v) = call(self.app, CLIENT, Method::POST, &url, Some(json!({ "nmsSubscription": sub }))).await;
        assert_eq!(status, 201, "{v}");
        let s = &v["nmsSubscription"];
        if let Some(t) = token {
            assert_eq!(s["restartToken"], t, "a subscription echoes the restartToken it was created with");
        }
        assert_eq!(s["index"], 1, "a new subscription starts at index 1: {v}");
        self.subscription = s["resourceURL"].as_str().unwrap().to_string();
        self.token = s["restartToken"].as_str().unwrap().to_string();
        self.expected = 1;
        self.last_seq = None;
        self.stats.subscriptions += 1;
    }

    /// `nmsSubscriptionUpdate` with the last restartToken: delivery restarts there, and the
    /// next list carries the index answered.
    async fn update(&mut self) {
        let body = json!({"nmsSubscriptionUpdate": {"restartToken": self.token, "duration": 600}});
        let (status, v) = call(self.app, CLIENT, Method::POST, &self.subscription, Some(body)).await;
        assert_eq!(status, 200, "{v}");
        let s = &v["nmsSubscription"];
        assert_eq!(s["restartToken"], self.token.as_str());
        let index = s["index"].as_i64().unwrap();
        assert!(index >= self.expected, "an update never moves the index back: {index} < {}", self.expected);
        self.expected = index;
        self.last_seq = None;
        self.stats.updates += 1;
    }

    fn offer_object(&mut self, id: String, o: Obj) -> bool {
        let newer = self.gone_objects.get(&id).is_none_or(|g| *g < o.seq)
            && self.mirror.objects.get(&id).is_none_or(|h| h.seq < o.seq);
        if newer {
            self.mirror.objects.insert(id, o);
        }
        newer
    }

    fn offer_folder(&mut self, id: String, f: Fold) -> bool {
        let newer = self.gone_folders.get(&id).is_none_or(|g| *g < f.seq)
            && self.mirror.folders.get(&id).is_none_or(|h| h.seq < f.seq);
        if newer {
            self.mirror.folders.insert(id, f);
        }
        newer
    }

    fn offer_gone_object(&mut self, id: String, seq: i64) -> bool {
        let newer = self.gone_objects.get(&id).is_none_or(|g| *g < seq)
            && self.mirror.objects.get(&id).is_none_or(|h| h.seq < seq);
        if newer {
            self.mirror.objects.remove(&id);
            self.gone_objects.insert(id, seq);
        }
        newer
    }

    fn offer_gone_folder(&mut self, id: String, seq: i64) -> bool {
        let newer = self.gone_folders.get(&id).is_none_or(|g| *g < seq)
            && self.mirror.folders.get(&id).is_none_or(|h| h.seq < seq);
        if newer {
            self.mirror.folders.remove(&id);
            self.gone_folders.insert(id, seq);
        }
        newer
    }

    /// First-time sync (and the re-sync after `resetBox`): walk the box, merging what is
    /// found by the same rule as events (so what changed meanwhile is settled by lastModSeq).
    async fn full_sync(&mut self) {
        let (found, pages, _) = walk(self.app, CLIENT, OBJECT_PAGE, FOLDER_PAGE).await;
        for (id, o) in found.objects {
            self.offer_object(id, o);
        }
        for (id, f) in found.folders {
            self.offer_folder(id, f);
        }
        self.stats.walks += 1;
        self.stats.walk_pages += pages;
    }

    /// Apply one event; true for `resetBox`.
    fn apply(&mut self, event: &Value) -> bool {
        let (kind, v) = event.as_object().and_then(|o| o.iter().next()).unwrap_or_else(|| panic!("event {event}"));
        *self.stats.kinds.entry(kind.clone()).or_default() += 1;
        self.stats.events += 1;
        let applied = match kind.as_str() {
            "resetBox" => {
                self.mirror = Mirror::default();
                self.gone_objects.clear();
                self.gone_folders.clear();
                return true;
            }
            "changedObject" => self.offer_object(id_of(v), obj_of(v)),
            "changedFolder" => self.offer_folder(id_of(v), fold_of(v)),
            "deletedObject" | "expiredObject" => self.offer_gone_object(id_of(v), seq_of(v)),
            "deletedFolder" | "expiredFolder" => self.offer_gone_folder(id_of(v), seq_of(v)),
            other => panic!("unknown event {other}: {event}"),
        };
        if applied {
            self.stats.applied += 1;
        } else {
            self.stats.stale += 1;
        }
        false
    }

    /// Take a poll's answer: lists of the current subscription in index order.
    async fn accept(&mut self, body: &Value) -> Result<(), Gap> {
        let lists = body["notificationList"].as_array().unwrap_or_else(|| panic!("no notificationList: {body}"));
        assert!(lists.len() <= self.max_notifications as usize, "at most maxNotifications lists: {}", lists.len());
        if lists.is_empty() {
            self.stats.empty_polls += 1;
        }
        for list in lists {
            let l = &list["nmsEventList"];
            assert_eq!(l["link"][0]["rel"], "NmsSubscription", "{l}");
            assert_eq!(l["callbackData"], "mirror", "{l}");
            if l["link"][0]["href"] != self.subscription.as_str() {
                self.stats.foreign += 1;
                continue;
            }
            let index = l["index"].as_i64().unwrap_or_else(|| panic!("no index: {l}"));
            if index < self.expected {
                self.stats.regressions += 1;
                continue;
            }
            if index > self.expected {
                self.stats.gaps += 1;
                return Err(Gap);
            }
            let events = l["nmsEvent"].as_array().unwrap_or_else(|| panic!("no nmsEvent: {l}"));
            assert!(!events.is_empty(), "a list carries events: {l}");
            // Modseq order within the list, and whole modseq groups: the list starts past
            // everything delivered before it.
            let seqs: Vec<i64> =
                events.iter().filter_map(|e| e.as_object()?.values().next()?["lastModSeq"].as_i64()).collect();
            assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "modseq order in a list: {seqs:?}");
            if let (Some(last), Some(first)) = (self.last_seq, seqs.first()) {
                assert!(*first > last, "list {index} starts at modseq {first}, but {last} was already delivered");
            }
            let mut reset = false;
            for e in events {
                reset |= self.apply(e);
            }
            if let Some(m) = seqs.last() {
                self.last_seq = Some(*m);
            }
            self.token = l["restartToken"].as_str().unwrap_or_else(|| panic!("no restartToken: {l}")).to_string();
            self.expected += 1;
            self.stats.lists += 1;
            if reset {
                assert_eq!(events.len(), 1, "resetBox comes alone: {l}");
                self.full_sync().await;
            }
        }
        Ok(())
    }

    /// A long poll running in the background.
    fn spawn_poll(&self) -> tokio::task::JoinHandle<(u16, Value)> {
        let (client, url) = (self.app.client.clone(), self.channel_url.clone());
        tokio::spawn(async move {
            let res = client
                .post(&url)
                .basic_auth(CLIENT, Some(PW))
                .json(&json!({"longPollingRequestParameters": null}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        })
    }

    async fn current_token(&self) -> String {
        let b = self.app.nms.find_box("base", ALICE).await.unwrap().unwrap();
        self.app.nms.current_token(&b).await.unwrap()
    }

    /// Steady state: long-poll and apply until the writer is done and the client holds the
    /// box's current token. With `chaos`, disconnect at random points and resume.
    async fn follow(&mut self, done: &mut watch::Receiver<bool>, mut chaos: Option<&mut StdRng>) {
        let mut writer_done = false;
        let mut nth_disconnect = 0usize;
        loop {
            writer_done |= *done.borrow();
            let done_before_poll = writer_done;
            if writer_done && self.token == self.current_token().await {
                return;
            }
            if let Some(rng) = chaos.as_deref_mut()
                && !writer_done
                && rng.gen_bool(0.2)
            {
                self.disconnect(rng, nth_disconnect).await;
                nth_disconnect += 1;
                continue;
            }
            let mut poll = self.spawn_poll();
            let (status, body) = loop {
                tokio::select! {
                    r = &mut poll => break r.unwrap(),
                    _ = done.changed(), if !writer_done => {
                        writer_done = true;
                        // Nothing can come after the box's current token: stop waiting.
                        if self.token == self.current_token().await {
                            poll.abort();
                            return;
                        }
                    }
                }
            };
            self.stats.polls += 1;
            if status == 409 {
                // A newer poll took over the channel: a request of this client that was cut
                // off but still reached the server after this one. Poll again (what it took
                // shows as an index gap).
                assert_eq!(message_id(&body), "SVC1012", "{body}");
                self.stats.superseded += 1;
                continue;
            }
            assert_eq!(status, 200, "poll: {body}");
            match self.accept(&body).await {
                Err(Gap) => self.update().await,
                Ok(()) => {
                    let empty = body["notificationList"].as_array().is_some_and(|l| l.is_empty());
                    if empty && done_before_poll && self.token != self.current_token().await {
                        // Every change was committed before this poll began, yet it found
                        // nothing past the client's token: lists were handed out elsewhere.
                        assert!(
                            chaos.is_some(),
                            "an empty poll while changes past the client's token exist: {:?}",
                            self.stats
                        );
                        self.stats.tail_recoveries += 1;
                        self.update().await;
                    }
                }
            }
        }
    }

    /// Lose the connection in one of several ways (the first four in turn, then at random),
    /// and come back from the last restartToken.
    async fn disconnect(&mut self, rng: &mut StdRng, nth: usize) {
        let kind = if nth < 4 { nth } else { rng.gen_range(0..4) };
        match kind {
            0 => {
                // A poll cut off after a moment, whatever the server had done with it.
                let poll = self.spawn_poll();
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..25))).await;
                poll.abort();
                let _ = poll.await;
                self.resume(rng, nth).await;
                *self.stats.disconnects.entry("poll aborted").or_default() += 1;
            }
            1 => {
                // The answer was sent but never read.
                let poll = self.spawn_poll();
                let _ = poll.await;
                self.resume(rng, nth).await;
                *self.stats.disconnects.entry("answer lost").or_default() += 1;
            }
            2 => {
                // Channel (and with it the subscription) deleted; start over from the token.
                let (status, v) = call(self.app, CLIENT, Method::DELETE, &self.channel, None).await;
                assert_eq!(status, 204, "{v}");
                let (status, _) = call(self.app, CLIENT, Method::GET, &self.subscription, None).await;
                assert_eq!(status, 404, "deleting a channel deletes its subscriptions");
                self.open_channel().await;
                let token = self.token.clone();
                self.subscribe(Some(&token)).await;
                *self.stats.disconnects.entry("channel deleted").or_default() += 1;
            }
            _ => {
                // A crash: channel and subscription abandoned, new ones from the token.
                self.open_channel().await;
                let token = self.token.clone();
                self.subscribe(Some(&token)).await;
                *self.stats.disconnects.entry("crash").or_default() += 1;
            }
        }
    }

    /// After a cut-off poll: update the subscription, replace it, or just poll on (an index
    /// gap, if lists were lost, then calls for an update).
    async fn resume(&mut self, rng: &mut StdRng, nth: usize) {
        let how = if nth < 3 { nth } else { rng.gen_range(0..3) };
        match how {
            0 => {
                self.update().await;
                *self.stats.resumes.entry("update").or_default() += 1;
            }
            1 => {
                let (status, v) = call(self.app, CLIENT, Method::DELETE, &self.subscription, None).await;
                assert_eq!(status, 204, "{v}");
                let token = self.token.clone();
                self.subscribe(Some(&token)).await;
                *self.stats.resumes.entry("new subscription").or_default() += 1;
            }
            _ => {
                *self.stats.resumes.entry("poll on").or_default() += 1;
            }
        }
    }
}

// ---------------------------------------------------------------- the writer

/// What the writer knows of the box (it is the only writer): folders (parent, name) and
/// objects (folder, flags) by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    folders: BTreeMap<String, (Option<String>, String)>,
    objects: BTreeMap<String, (String, BTreeSet<String>)>,
}

impl Model {
    fn of(m: &Mirror) -> Model {
        Model {
            folders: m.folders.iter().map(|(id, f)| (id.clone(), (f.parent.clone(), f.name.clone()))).collect(),
            objects: m.objects.iter().map(|(id, o)| (id.clone(), (o.parent.clone(), o.flags.clone()))).collect(),
        }
    }

    fn root(&self) -> String {
        self.folders.iter().find(|(_, (p, _))| p.is_none()).map(|(id, _)| id.clone()).expect("a root folder")
    }

    /// `f` and every folder below it.
    fn subtree(&self, f: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = [f.to_string()].into();
        loop {
            let more: Vec<String> = self
                .folders
                .iter()
                .filter(|(id, (p, _))| !out.contains(*id) && p.as_ref().is_some_and(|p| out.contains(p)))
                .map(|(id, _)| id.clone())
                .collect();
            if more.is_empty() {
                return out;
            }
            out.extend(more);
        }
    }

    fn name_taken(&self, parent: &str, name: &str) -> bool {
        self.folders.values().any(|(p, n)| p.as_deref() == Some(parent) && n == name)
    }
}

struct Writer<'a> {
    app: &'a TestApp,
    base: String,
    rng: StdRng,
    model: Model,
    names: usize,
    ops: BTreeMap<&'static str, usize>,
    /// Folder deletions that took subfolders or objects with them.
    recursive_deletes: usize,
    expired: u64,
}

impl<'a> Writer<'a> {
    async fn new(app: &'a TestApp, seed: u64) -> Writer<'a> {
        let mut w = Writer {
            app,
            base: app.base(ALICE),
            rng: StdRng::seed_from_u64(seed),
            model: Model::default(),
            names: 0,
            ops: BTreeMap::new(),
            recursive_deletes: 0,
            expired: 0,
        };
        w.refresh().await;
        w
    }

    /// Read the box back (after copies, expiry and the reset, whose outcome it does not track).
    async fn refresh(&mut self) {
        let (m, _, _) = walk(self.app, WRITER, 1000, 1000).await;
        self.model = Model::of(&m);
    }

    fn object_url(&self, id: &str) -> String {
        format!("{}/objects/{id}", self.base)
    }

    fn folder_url(&self, id: &str) -> String {
        format!("{}/folders/{id}", self.base)
    }

    fn name(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.rng.gen_range(0..items.len())].clone())
    }

    fn any_folder(&mut self) -> String {
        let all: Vec<String> = self.model.folders.keys().cloned().collect();
        self.pick(&all).expect("the root at least")
    }

    fn some_folder(&mut self) -> Option<String> {
        let all: Vec<String> =
            self.model.folders.iter().filter(|(_, (p, _))| p.is_some()).map(|(id, _)| id.clone()).collect();
        self.pick(&all)
    }

    /// Up to `n` distinct objects.
    fn some_objects(&mut self, n: usize) -> Vec<String> {
        let mut all: Vec<String> = self.model.objects.keys().cloned().collect();
        let mut out = Vec::new();
        while out.len() < n && !all.is_empty() {
            out.push(all.swap_remove(self.rng.gen_range(0..all.len())));
        }
        out
    }

    fn some_flags(&mut self) -> BTreeSet<String> {
        FLAGS.iter().filter(|_| self.rng.gen_bool(0.3)).map(|f| f.to_string()).collect()
    }

    async fn send(&self, method: Method, url: &str, body: Option<Value>) -> (u16, Value) {
        call(self.app, WRITER, method, url, body).await
    }

    /// A bulk answer: every item a success; the resourceURLs.
    fn successes(v: &Value, n: usize) -> Vec<String> {
        let list = v["bulkResponseList"]["response"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(list.len(), n, "{v}");
        list.iter()
            .map(|r| {
                let s = &r["success"];
                let url = s["resourceURL"].as_str().or_else(|| s["reference"]["resourceURL"].as_str());
                last_segment(url.unwrap_or_else(|| panic!("item failed: {r}")))
            })
            .collect()
    }

    fn object_body(&self, folder: &str, flags: &BTreeSet<String>) -> Value {
        json!({"parentFolder": self.folder_url(folder), "flags": {"flag": flags},
            "attributes": {"attribute": [{"name": "Message-Context", "value": ["chat-message"]}]}})
    }

    /// A few folders and objects before the client arrives.
    async fn seed(&mut self) {
        for _ in 0..6 {
            self.create_folder().await;
        }
        for _ in 0..6 {
            self.bulk_create(8).await;
        }
    }

    async fn create_object(&mut self) {
        let folder = self.any_folder();
        let flags = self.some_flags();
        let body = json!({ "object": self.object_body(&folder, &flags) });
        let (status, v) = self.send(Method::POST, &format!("{}/objects", self.base), Some(body)).await;
        assert_eq!(status, 201, "{v}");
        self.model.objects.insert(last_segment(v["reference"]["resourceURL"].as_str().unwrap()), (folder, flags));
    }

    async fn bulk_create(&mut self, n: usize) {
        let mut made = Vec::new();
        let mut object = Vec::new();
        for _ in 0..n {
            let folder = self.any_folder();
            let flags = self.some_flags();
            object.push(self.object_body(&folder, &flags));
            made.push((folder, flags));
        }
        let url = format!("{}/objects/operations/bulkCreation", self.base);
        let (status, v) = self.send(Method::POST, &url, Some(json!({"objectList": {"object": object}}))).await;
        assert_eq!(status, 200, "{v}");
        for (id, m) in Self::successes(&v, n).into_iter().zip(made) {
            self.model.objects.insert(id, m);
        }
    }

    async fn move_objects(&mut self) {
        let n = self.rng.gen_range(1..=3);
        let objects = self.some_objects(n);
        if objects.is_empty() {
            return self.create_object().await;
        }
        let target = self.any_folder();
        let refs: Vec<Value> = objects.iter().map(|o| json!({"resourceURL": self.object_url(o)})).collect();
        let body = json!({"targetSourceRef": {"targetRef": {"resourceURL": self.folder_url(&target)},
            "sourceRefs": {"objects": {"objectReference": refs}}}});
        let (status, v) =
            self.send(Method::POST, &format!("{}/folders/operations/moveToFolder", self.base), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        Self::successes(&v, objects.len());
        for o in objects {
            self.model.objects.get_mut(&o).unwrap().0 = target.clone();
        }
    }

    async fn copy_objects(&mut self) {
        let n = self.rng.gen_range(1..=2);
        let objects = self.some_objects(n);
        if objects.is_empty() {
            return self.create_object().await;
        }
        let target = self.any_folder();
        let refs: Vec<Value> = objects.iter().map(|o| json!({"resourceURL": self.object_url(o)})).collect();
        let body = json!({"targetSourceRef": {"targetRef": {"resourceURL": self.folder_url(&target)},
            "sourceRefs": {"objects": {"objectReference": refs}}}});
        let (status, v) =
            self.send(Method::POST, &format!("{}/folders/operations/copyToFolder", self.base), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        for (copy, source) in Self::successes(&v, objects.len()).into_iter().zip(&objects) {
            let flags = self.model.objects[source].1.clone();
            self.model.objects.insert(copy, (target.clone(), flags));
        }
    }

    async fn toggle_flag(&mut self) {
        let Some(o) = self.some_objects(1).pop() else { return self.create_object().await };
        let flag = FLAGS[self.rng.gen_range(0..FLAGS.len())];
        let url = format!("{}/flags/{}", self.object_url(&o), enc(flag));
        let set = self.model.objects[&o].1.contains(flag);
        let (status, v) = self.send(if set { Method::DELETE } else { Method::PUT }, &url, None).await;
        assert_eq!(status, if set { 204 } else { 201 }, "{v}");
        let flags = &mut self.model.objects.get_mut(&o).unwrap().1;
        if set {
            flags.remove(flag);
        } else {
            flags.insert(flag.to_string());
        }
    }

    async fn bulk_flags(&mut self) {
        let n = self.rng.gen_range(1..=4);
        let objects = self.some_objects(n);
        if objects.is_empty() {
            return self.create_object().await;
        }
        let flag = FLAGS[self.rng.gen_range(0..FLAGS.len())];
        let add = self.rng.gen_bool(0.5);
        let refs: Vec<Value> = objects.iter().map(|o| json!({"resourceURL": self.object_url(o)})).collect();
        let body = json!({"bulkUpdate": {"operation": if add { "AddFlag" } else { "RemoveFlag" },
            "flags": {"flag": [flag]}, "objects": {"objectReference": refs}}});
        let (status, v) =
            self.send(Method::POST, &format!("{}/objects/operations/bulkUpdate", self.base), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        Self::successes(&v, objects.len());
        for o in objects {
            let flags = &mut self.model.objects.get_mut(&o).unwrap().1;
            if add {
                flags.insert(flag.to_string());
            } else {
                flags.remove(flag);
            }
        }
    }

    async fn replace_flags(&mut self) {
        let Some(o) = self.some_objects(1).pop() else { return self.create_object().await };
        let flags = self.some_flags();
        let url = format!("{}/flags", self.object_url(&o));
        let (status, v) = self.send(Method::PUT, &url, Some(json!({"flagList": {"flag": flags}}))).await;
        assert_eq!(status, 200, "{v}");
        self.model.objects.get_mut(&o).unwrap().1 = flags;
    }

    async fn delete_object(&mut self) {
        let Some(o) = self.some_objects(1).pop() else { return self.create_object().await };
        let (status, v) = self.send(Method::DELETE, &self.object_url(&o), None).await;
        assert_eq!(status, 204, "{v}");
        self.model.objects.remove(&o);
    }

    async fn bulk_delete(&mut self) {
        let n = self.rng.gen_range(1..=3);
        let objects = self.some_objects(n);
        if objects.is_empty() {
            return self.create_object().await;
        }
        let refs: Vec<Value> = objects.iter().map(|o| json!({"resourceURL": self.object_url(o)})).collect();
        let body = json!({"bulkDelete": {"objects": {"objectReference": refs}}});
        let (status, v) =
            self.send(Method::POST, &format!("{}/objects/operations/bulkDelete", self.base), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        Self::successes(&v, objects.len());
        for o in objects {
            self.model.objects.remove(&o);
        }
    }

    async fn create_folder(&mut self) {
        if self.model.folders.len() >= 24 {
            return self.rename_folder().await;
        }
        let parent = self.any_folder();
        let name = self.name("f");
        let body = json!({"folder": {"parentFolder": self.folder_url(&parent), "name": name}});
        let (status, v) = self.send(Method::POST, &format!("{}/folders", self.base), Some(body)).await;
        assert_eq!(status, 201, "{v}");
        self.model.folders.insert(last_segment(v["reference"]["resourceURL"].as_str().unwrap()), (Some(parent), name));
    }

    async fn rename_folder(&mut self) {
        let Some(f) = self.some_folder() else { return self.create_object().await };
        let name = self.name("r");
        let (status, v) =
            self.send(Method::PUT, &format!("{}/folderName", self.folder_url(&f)), Some(json!({"name": name}))).await;
        assert_eq!(status, 200, "{v}");
        self.model.folders.get_mut(&f).unwrap().1 = name;
    }

    /// A folder and a target outside its subtree whose children do not have its name.
    fn folder_and_target(&mut self, allow_parent: bool) -> Option<(String, String)> {
        for _ in 0..10 {
            let f = self.some_folder()?;
            let t = self.any_folder();
            let (parent, name) = self.model.folders[&f].clone();
            if self.model.subtree(&f).contains(&t)
                || (!allow_parent && parent.as_deref() == Some(t.as_str()))
                || self.model.name_taken(&t, &name)
            {
                continue;
            }
            return Some((f, t));
        }
        None
    }

    async fn move_folder(&mut self) {
        let Some((f, t)) = self.folder_and_target(false) else { return self.create_folder().await };
        let body = json!({"targetSourceRef": {"targetRef": {"resourceURL": self.folder_url(&t)},
            "sourceRefs": {"folders": {"folderReference": [{"resourceURL": self.folder_url(&f)}]}}}});
        let (status, v) =
            self.send(Method::POST, &format!("{}/folders/operations/moveToFolder", self.base), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        Self::successes(&v, 1);
        self.model.folders.get_mut(&f).unwrap().0 = Some(t);
    }

    async fn copy_folder(&mut self) {
        let Some((f, t)) = self.folder_and_target(true) else { return self.create_folder().await };
        let body = json!({"targetSourceRef": {"targetRef": {"resourceURL": self.folder_url(&t)},
            "sourceRefs": {"folders": {"folderReference": [{"resourceURL": self.folder_url(&f)}]}}}});
        let (status, v) =
            self.send(Method::POST, &format!("{}/folders/operations/copyToFolder", self.base), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        Self::successes(&v, 1);
        self.refresh().await;
    }

    async fn delete_folder(&mut self) {
        let Some(f) = self.some_folder() else { return self.create_folder().await };
        let (status, v) = self.send(Method::DELETE, &self.folder_url(&f), None).await;
        assert_eq!(status, 204, "{v}");
        let gone = self.model.subtree(&f);
        let before = self.model.objects.len();
        self.model.objects.retain(|_, (folder, _)| !gone.contains(folder));
        if gone.len() > 1 || self.model.objects.len() < before {
            self.recursive_deletes += 1;
        }
        self.model.folders.retain(|id, _| !gone.contains(id));
    }

    /// The retention policy's housekeeping, run now, over more objects than it keeps.
    async fn expire(&mut self) {
        let over = (KEEP as usize + self.rng.gen_range(1..=4)).saturating_sub(self.model.objects.len());
        if over > 0 {
            self.bulk_create(over).await;
        }
        let n = self.app.nms.expire().await.unwrap();
        assert!(n > 0, "the box holds more than the policy keeps");
        self.expired += n;
        self.refresh().await;
    }

    async fn reset(&mut self) {
        let b = self.app.nms.find_box("base", ALICE).await.unwrap().unwrap();
        let root = self.model.root();
        self.app.nms.reset_box(&b).await.unwrap();
        self.refresh().await;
        assert_eq!(self.model.folders.keys().cloned().collect::<Vec<_>>(), [root], "only the root is left");
        assert!(self.model.objects.is_empty());
    }

    /// `ops` random changes; the box reset at `reset_at`, once the client has walked the
    /// box (a reset invalidates the cursors of a walk in progress).
    async fn run(&mut self, ops: usize, reset_at: usize, mut synced: watch::Receiver<bool>) {
        const TABLE: &[(&str, u32)] = &[
            ("create object", 22),
            ("bulk create", 5),
            ("move objects", 12),
            ("copy objects", 4),
            ("toggle flag", 12),
            ("bulk flags", 5),
            ("replace flags", 3),
            ("delete object", 8),
            ("bulk delete", 3),
            ("create folder", 8),
            ("rename folder", 5),
            ("move folder", 5),
            ("copy folder", 2),
            ("delete folder", 4),
            ("expire", 2),
        ];
        let total: u32 = TABLE.iter().map(|(_, w)| w).sum();
        for i in 0..ops {
            let op = if i == reset_at {
                synced.wait_for(|s| *s).await.unwrap();
                "reset"
            } else {
                let mut r = self.rng.gen_range(0..total);
                let mut chosen = TABLE[0].0;
                for (name, w) in TABLE {
                    if r < *w {
                        chosen = name;
                        break;
                    }
                    r -= w;
                }
                chosen
            };
            *self.ops.entry(op).or_default() += 1;
            match op {
                "create object" => self.create_object().await,
                "bulk create" => {
                    let n = self.rng.gen_range(2..=6);
                    self.bulk_create(n).await
                }
                "move objects" => self.move_objects().await,
                "copy objects" => self.copy_objects().await,
                "toggle flag" => self.toggle_flag().await,
                "bulk flags" => self.bulk_flags().await,
                "replace flags" => self.replace_flags().await,
                "delete object" => self.delete_object().await,
                "bulk delete" => self.bulk_delete().await,
                "create folder" => self.create_folder().await,
                "rename folder" => self.rename_folder().await,
                "move folder" => self.move_folder().await,
                "copy folder" => self.copy_folder().await,
                "delete folder" => self.delete_folder().await,
                "expire" => self.expire().await,
                "reset" => self.reset().await,
                other => unreachable!("{other}"),
            }
            // Now and then a pause, so that changes also arrive one by one.
            if self.rng.gen_bool(0.2) {
                tokio::time::sleep(Duration::from_millis(self.rng.gen_range(1..4))).await;
            }
        }
    }
}

// ---------------------------------------------------------------- the runs

fn seed(default: u64) -> u64 {
    std::env::var("NMS_MIRROR_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

async fn mirror_run(seed: u64, ops: usize, chaos: bool) {
    let app = spawn_app_with(|s| {
        s.sync.long_poll_secs = 1;
        s.sync.retention.insert("base".into(), RetentionPolicy { max_age_secs: 0, max_objects: KEEP });
    })
    .await;
    let started = Instant::now();
    let mut writer = Writer::new(&app, seed).await;
    writer.seed().await;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x00c1_1e47);
    let max_notifications = if chaos { rng.gen_range(1..=5) } else { 3 };
    // The subscription first: its restartToken marks the start of the first-time sync.
    let mut client = Client::connect(&app, max_notifications).await;
    let (synced_tx, synced_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = watch::channel(false);
    let finished = tokio::time::timeout(DEADLINE, async {
        tokio::join!(
            async {
                writer.run(ops, ops / 2, synced_rx).await;
                let _ = done_tx.send(true);
            },
            async {
                client.full_sync().await;
                let _ = synced_tx.send(true);
                client.follow(&mut done_rx, chaos.then_some(&mut rng)).await;
            }
        )
    })
    .await
    .is_ok();
    let elapsed = started.elapsed();

    let current = client.current_token().await;
    let (truth, _, twice) = walk(&app, CLIENT, 1000, 1000).await;
    let context = format!(
        "seed {seed} (NMS_MIRROR_SEED), chaos {chaos}, {:?}\nwriter ops {:?}, recursive folder deletes {}, expired {}\nclient {:#?}",
        elapsed, writer.ops, writer.recursive_deletes, writer.expired, client.stats
    );
    assert!(
        finished,
        "the client did not reach the box's current token within {DEADLINE:?}: {context}\n{}",
        diff(&client.mirror, &truth)
    );
    assert_eq!(twice, 0, "a walk of a quiet box returns each item once");
    // The point of it all: the mirror is the box.
    assert!(client.mirror == truth, "the mirror diverged from the box: {}\n{context}", diff(&client.mirror, &truth));
    assert_eq!(client.token, current, "the client ends on the box's current token");
    // And the box is what the writer made of it.
    assert_eq!(Model::of(&truth), writer.model, "the box is not what the writer did: {context}");

    // The run exercised what it is about.
    let s = &client.stats;
    assert!(s.walk_pages > 6, "the walks followed cursors: {context}");
    for kind in ["changedObject", "changedFolder", "deletedObject", "deletedFolder", "expiredObject", "resetBox"] {
        assert!(s.kinds.get(kind).copied().unwrap_or(0) > 0, "no {kind} event: {context}");
    }
    assert!(writer.recursive_deletes > 0 && writer.expired > 0, "{context}");
    assert_eq!(s.regressions, 0, "an index was handed out twice: {context}");
    assert!(s.lists > 20 && s.applied > ops / 2, "{context}");
    if chaos {
        assert!(s.disconnects.values().sum::<usize>() >= 4, "{context}");
    } else {
        // Nothing was lost, so the index never skipped and nothing needed recovering.
        assert_eq!((s.gaps, s.updates, s.foreign, s.superseded), (0, 0, 0, 0), "{context}");
        assert_eq!(s.kinds["resetBox"], 1, "{context}");
        assert_eq!(s.walks, 2, "the first-time sync and the one after resetBox: {context}");
    }
    println!("{context}");
}

#[tokio::test]
async fn a_client_mirror_converges_exactly_while_the_box_changes() {
    mirror_run(seed(0x6d69_7272), 260, false).await;
}

#[tokio::test]
async fn a_client_that_disconnects_at_random_resumes_from_its_token_and_converges_exactly() {
    mirror_run(seed(0x6368_616f), 260, true).await;
}

/// A client whose connection drops during a long poll (a phone losing its network), while
/// the box is quiet, polls again a little later: the change made in between must reach it.
/// An abandoned poll that kept running would take the list into the dead connection and
/// consume its index; the next poll would then wait out its timeout with nothing, and in a
/// quiet box the change would never be delivered.
#[tokio::test]
async fn a_change_after_a_dropped_poll_reaches_the_next_poll() {
    let app = spawn_app_with(|s| s.sync.long_poll_secs = 2).await;
    let c = Client::connect(&app, 10).await;
    let dropped = c.spawn_poll();
    tokio::time::sleep(Duration::from_millis(200)).await;
    dropped.abort();
    assert!(dropped.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let o = app.create_object(json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = c.spawn_poll().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let list = &body["notificationList"][0]["nmsEventList"];
    assert_eq!(list["index"], 1, "the first list of the subscription: {body}");
    assert_eq!(list["nmsEvent"][0]["changedObject"]["resourceURL"], o.as_str(), "{body}");
}
