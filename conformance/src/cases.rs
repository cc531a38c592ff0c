//! The checks, one per SCR item of the CPM Message Storage Server table
//! (OMA-TS-CPM_Message_Storage_Using_RESTful_API Appendix B.2), then the `CPM-` items that
//! check the CPM binding's own semantics (sections 5.3-5.6, 6.4, 7.3.3, 7.4, which the SCR
//! table has no row for), and the context they share.
//!
//! To add an item, write `async fn my_check(c: &Ctx) -> Res` and add a row to [`CASES`]:
//! `case!("REST-NMS-...", "what it checks", M, my_check)` (`M` mandatory, `O` optional). A check works only inside
//! a folder it makes with [`Ctx::scratch`] (under the run folder, which the runner deletes at
//! the end), never assumes the box is empty, and fails with a reason naming the request.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use reqwest::Method;
use serde_json::{Value, json};

use crate::Options;
use crate::http::{Format, Http, Multipart, Res, Resp, boundary_of, parse_multipart};
use crate::{ensure, fail};

/// The future of one check.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Res> + 'a>>;

/// One row of the check table.
pub struct Case {
    /// The SCR item, as spelled in the CPM table, or a `CPM-` item of the binding's semantics.
    pub id: &'static str,
    pub description: &'static str,
    /// Whether the CPM table makes the item Mandatory (not what the id's suffix says:
    /// `REST-NMS-AOBJECT-PAYLOAD-S-001-M` is Optional in CPM, `REST-NMS-OBJECTS-bulkCreation-S-001-O`
    /// Mandatory); for a `CPM-` item, whether the spec text it checks says SHALL or MUST.
    pub mandatory: bool,
    pub run: fn(&Ctx) -> CaseFuture<'_>,
}

/// `case!(id, description, mandatory, async_fn)`: a table row; boxes the check's future.
macro_rules! case {
    ($id:literal, $desc:literal, $mandatory:expr, $f:path) => {
        Case {
            id: $id,
            description: $desc,
            mandatory: $mandatory,
            run: {
                fn run(c: &Ctx) -> CaseFuture<'_> {
                    Box::pin($f(c))
                }
                run
            },
        }
    };
}

const M: bool = true;
const O: bool = false;

/// The checks, in the order of the CPM SCR table, then the `CPM-` items.
pub const CASES: &[Case] = &[
    case!("REST-NMS-SUPPORT-S-001-M", "RESTful NMS API: root discovery, box URLs, authentication", M, support_api),
    case!("REST-NMS-SUPPORT-S-002-M", "XML request and response format", O, support_xml),
    case!("REST-NMS-SUPPORT-S-003-M", "JSON request and response format", M, support_json),
    case!("REST-NMS-OBJECTS-S-001-M", "object creation (JSON-only object, parentFolderPath)", M, objects_support),
    case!("REST-NMS-OBJECTS-S-002-M", "upload an object with payload into an identified folder", M, objects_upload),
    case!("REST-NMS-AOBJECT-S-001-M", "individual stored object resource", M, aobject_support),
    case!("REST-NMS-AOBJECT-S-002-M", "retrieve object metadata (GET)", M, aobject_get),
    case!("REST-NMS-AOBJECT-S-003-M", "delete an object (DELETE)", M, aobject_delete),
    case!("REST-NMS-AOBJECT-FLAGS-S-001-M", "object flag list resource", M, flags_support),
    case!("REST-NMS-AOBJECT-FLAGS-S-002-M", "retrieve the flag list of an object (GET)", M, flags_get),
    case!("REST-NMS-AOBJECT-FLAGS-S-003-O", "add a flag through the flag list (PUT)", O, flags_add),
    case!("REST-NMS-AOBJECT-FLAGS-S-004-M", "replace the entire flag list (PUT)", M, flags_replace),
    case!("REST-NMS-AOBJECT-INDFLAG-S-001-M", "individual flag resource", M, indflag_support),
    case!("REST-NMS-AOBJECT-INDFLAG-S-002-M", "test whether a flag is set (GET)", M, indflag_get),
    case!("REST-NMS-AOBJECT-INDFLAG-S-003-M", "set an individual flag (PUT)", M, indflag_put),
    case!("REST-NMS-AOBJECT-INDFLAG-S-004-M", "remove an individual flag (DELETE)", M, indflag_delete),
    case!("REST-NMS-AOBJECT-PAYLOAD-S-001-M", "entire payload of a single-part object", O, payload_support),
    case!("REST-NMS-AOBJECT-PAYLOAD-S-002-M", "entire payload of a multipart object (GET)", O, payload_get),
    case!("REST-NMS-AOBJECT-PAYLOADPART-S-001-M", "payload parts described in object metadata", M, payloadpart_support),
    case!("REST-NMS-AOBJECT-PAYLOADPART-S-002-M", "retrieve an individual payload part (GET)", M, payloadpart_get),
    case!(
        "REST-NMS-OBJECTS-SEARCH-S-001-M",
        "object search: search types, operators, refusals",
        M,
        objects_search_support
    ),
    case!(
        "REST-NMS-OBJECTS-SEARCH-S-002-M",
        "search objects (POST): objects, scope, paging, sort",
        M,
        objects_search_post
    ),
    case!("REST-NMS-OBJECTS-PATHTOID-S-001-M", "object pathToId lookups", M, objects_pathtoid_support),
    case!("REST-NMS-OBJECTS-PATHTOID-S-002-M", "object resource URL from its path (GET)", M, objects_pathtoid_get),
    case!("REST-NMS-OBJECTS-PATHTOID-S-003-M", "object URLs from a path list (POST)", M, objects_pathtoid_post),
    case!("REST-NMS-OBJECTS-bulkCreation-S-001-O", "bulk creation of objects with payloads", M, objects_bulk_creation),
    case!("REST-NMS-FOLDERS-S-001-M", "folder creation and its refusals", M, folders_support),
    case!("REST-NMS-FOLDERS-S-002-M", "create a folder under an identified parent (POST)", M, folders_create),
    case!("REST-NMS-AFOLDERS-S-001-M", "individual folder resource", M, afolders_support),
    case!("REST-NMS-AFOLDERS-S-002-M", "retrieve folder information, listings, paging, counts (GET)", M, afolders_get),
    case!("REST-NMS-AFOLDERS-S-003-M", "delete a folder recursively (DELETE)", M, afolders_delete),
    case!("REST-NMS-FOLDERNAME-S-001-M", "folder name resource", M, foldername_support),
    case!("REST-NMS-FOLDERNAME-S-002-M", "retrieve a folder name (GET)", M, foldername_get),
    case!("REST-NMS-FOLDERNAME-S-003-M", "change a folder name (PUT)", M, foldername_put),
    case!("REST-NMS-FOLDERS-SEARCH-S-001-M", "folder search resource and its refusals", M, folders_search_support),
    case!("REST-NMS-FOLDERS-SEARCH-S-002-M", "search for the root folder (POST)", M, folders_search_root),
    case!("REST-NMS-FOLDERS-SEARCH-S-003-O", "search folders by name, text, date (POST)", O, folders_search_other),
    case!("REST-NMS-FOLDERS-PATHTOID-S-001-M", "folder pathToId lookups", M, folders_pathtoid_support),
    case!("REST-NMS-FOLDERS-PATHTOID-S-002-M", "folder resource URL from its path (GET)", M, folders_pathtoid_get),
    case!("REST-NMS-FOLDERS-PATHTOID-S-003-M", "folder URLs from a path list (POST)", M, folders_pathtoid_post),
    case!("REST-NMS-FOLDERS-COPY-S-001-M", "copyToFolder resource and its refusals", M, copy_support),
    case!("REST-NMS-FOLDERS-COPY-S-002-M", "copy objects into a target folder (POST)", M, copy_objects),
    case!("REST-NMS-FOLDERS-COPY-S-003-M", "copy a folder tree into a target folder (POST)", M, copy_folders),
    case!("REST-NMS-FOLDERS-MOVE-S-001-M", "moveToFolder resource and its refusals", M, move_support),
    case!("REST-NMS-FOLDERS-MOVE-S-002-M", "move objects into a target folder (POST)", M, move_objects),
    case!("REST-NMS-FOLDERS-MOVE-S-003-M", "move a folder tree into a target folder (POST)", M, move_folders),
    case!("REST-NMS-SUBSCR-S-001-O", "subscriptions resource, refusals, notified lastModSeq", M, subscr_support),
    case!("REST-NMS-SUBSCR-S-002-O", "read the list of active subscriptions (GET)", O, subscr_list),
    case!("REST-NMS-SUBSCR-S-003-O", "create a subscription (POST)", M, subscr_create),
    case!("REST-NMS-SUBSCR-S-004-O", "create a subscription from a restartToken: replay, then live", M, subscr_sync),
    case!("REST-NMS-SUBSCR-S-005-O", "create a subscription with a filter (POST)", O, subscr_filter),
    case!("REST-NMS-INDSUBSCR-S-001-O", "individual subscription resource and its refusals", M, indsubscr_support),
    case!("REST-NMS-INDSUBSCR-S-002-O", "read an individual subscription (GET)", M, indsubscr_get),
    case!("REST-NMS-INDSUBSCR-S-003-O", "update a subscription: duration, restartToken (POST)", M, indsubscr_update),
    case!("REST-NMS-INDSUBSCR-S-004-O", "cancel a subscription; its notifications stop (DELETE)", M, indsubscr_delete),
    case!("REST-NMS-NOTIF-S-001-O", "notifications of every tracked change, via a channel", M, notif_support),
    case!("REST-NMS-NOTIF-S-002-O", "nmsEventList: index, restartToken, callbackData, link, event", M, notif_lists),
    // The CPM binding's own semantics (no SCR row): mandatory where it says SHALL or MUST.
    case!("CPM-CPIM-S-001", "CPIM deposit realised as attributes and encapsulated parts (5.3.1.3)", M, cpm_cpim),
    case!("CPM-IMDN-S-001", "IMDN objects: no payload, Disposition* attributes, refusals (5.3.10)", M, cpm_imdn),
    case!(
        "CPM-CALLLOG-S-001",
        "call log objects: Table 2 attributes, enumerations, cid references (5.3.9.3)",
        M,
        cpm_calllog
    ),
    case!("CPM-SMS-S-001", "SMS: one text/plain UTF-8 part, correlationTag (Table 1, 7.4.1)", M, cpm_sms),
    case!("CPM-FLAGS-S-001", "CPM metadata and $CPM_ non-CPM object flags, searchable (5.3.9.2, 5.6)", M, cpm_flags),
    case!(
        "CPM-CORR-S-001",
        "fetch by reference: correlationId, correlationTag, CPM ids (5.4, 7.4.2)",
        M,
        cpm_corr_search
    ),
    case!(
        "CPM-CORR-S-002",
        "correlationId and correlationTag in object notifications, deletions too",
        O,
        cpm_corr_notify
    ),
    case!(
        "CPM-SESSION-S-001",
        "session info object stays while messages remain (6.4.1.4-6.4.1.7, 7.3.3.5)",
        M,
        cpm_session_rules
    ),
    case!("CPM-SESSION-S-002", "deleting a message deletes its IMDN objects (7.3.3.5, 7.3.3.6)", M, cpm_session_imdns),
];

// ---------------------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------------------

/// What the box identifier and other URL segments are encoded with: everything except the
/// RFC 3986 unreserved characters. Also used for query values (it escapes `+`, `&`, `=`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encode a URL path segment or query value.
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A folder or object the runner created (or found): its URL and path.
#[derive(Clone, Debug)]
pub struct Item {
    pub url: String,
    pub path: String,
    /// Folder name (for folders made by the runner) or object id.
    pub name: String,
}

/// What every check gets: the client, the box base URL, the root and the run folder.
pub struct Ctx {
    pub http: Http,
    /// `{base-url}/nms/v1/{store}/{encoded box}`
    pub base: String,
    /// `/nms/v1/{store}/{encoded box}/`: every URL the server answers must contain it.
    pub box_marker: String,
    /// `{channel root}/channels`: where notification channels are made (see [`Options::channel_root`]).
    pub channels: String,
    pub user: String,
    pub password: String,
    pub root: Item,
    /// The folder all checks work in; deleted (recursively) by [`Ctx::cleanup`].
    pub run: Item,
    /// A random tag of this run (names, correlation ids).
    pub tag: String,
    seq: AtomicU32,
    /// Subscriptions and channels made by the current item, in creation order: deleted by
    /// [`Ctx::sweep`] after it.
    leftovers: Mutex<Vec<String>>,
}

impl Ctx {
    /// Discover the root folder and create the run folder `/conformance-<random>` under it.
    pub async fn setup(http: Http, opts: &Options) -> Res<Self> {
        let box_marker = format!("/nms/v1/{}/{}/", enc(&opts.store), enc(&opts.box_id));
        let server_root = opts.base_url.trim_end_matches('/');
        let base = format!("{server_root}{}", box_marker.trim_end_matches('/'));
        let channel_root = match &opts.channel_root {
            Some(root) => root.trim_end_matches('/').to_string(),
            None => format!("{server_root}/notificationchannel/v1/{}", enc(&opts.box_id)),
        };
        let tag = random_tag();
        let placeholder = Item { url: String::new(), path: String::new(), name: String::new() };
        let mut ctx = Ctx {
            http,
            base,
            box_marker,
            channels: format!("{channel_root}/channels"),
            user: opts.user.clone(),
            password: opts.password.clone(),
            root: placeholder.clone(),
            run: placeholder,
            tag,
            seq: AtomicU32::new(0),
            leftovers: Mutex::new(Vec::new()),
        };
        let r = ctx.http.get(&ctx.folders_path_to_id()).await?;
        let v = r.json_with(200).map_err(|e| fail!("root discovery: {e}"))?;
        let url = ctx.url_at(&v, "/reference/resourceURL", "folders")?;
        ctx.root = Item { url, path: String::new(), name: String::new() };
        let name = format!("conformance-{}", ctx.tag);
        let body = json!({"folder": {"parentFolder": ctx.root.url, "name": name, "attributes": {"attribute": []}}});
        let r = ctx.http.post_json(&ctx.folders(), &body).await?;
        ctx.run = ctx.created(&r, "folders").map_err(|e| fail!("creating the run folder: {e}"))?;
        ctx.run.name = name;
        Ok(ctx)
    }

    /// Delete the run folder and confirm it is gone.
    pub async fn cleanup(&self) -> Res {
        let r = self.http.delete(&self.run.url).await?;
        r.status(204)?;
        let r = self.http.get(&self.run.url).await?;
        r.status(404)?;
        Ok(())
    }

    pub fn objects(&self) -> String {
        format!("{}/objects", self.base)
    }

    pub fn folders(&self) -> String {
        format!("{}/folders", self.base)
    }

    pub fn objects_path_to_id(&self) -> String {
        format!("{}/objects/operations/pathToId", self.base)
    }

    pub fn folders_path_to_id(&self) -> String {
        format!("{}/folders/operations/pathToId", self.base)
    }

    /// A fresh unique name `{hint}-{n}`.
    fn unique(&self, hint: &str) -> String {
        format!("{hint}-{}", self.seq.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// The string at `ptr`, which must be an absolute URL of this box's `collection`
    /// (`objects` or `folders`): `http(s)://host/.../nms/v1/{store}/{encoded box}/{collection}/{id}...`.
    pub fn url_at(&self, v: &Value, ptr: &str, collection: &str) -> Res<String> {
        let s = str_at(v, ptr)?;
        self.check_url(s, collection).map_err(|e| fail!("{ptr}: {e}"))?;
        Ok(s.to_string())
    }

    pub fn check_url(&self, s: &str, collection: &str) -> Res {
        absolute(s)?;
        let marker = format!("{}{collection}/", self.box_marker);
        ensure!(s.contains(&marker), "{s:?} is not under {marker} (box id percent-encoded)");
        ensure!(!s.ends_with('/'), "{s:?} ends with '/'");
        Ok(())
    }

    /// Check a creation answer: 201 and `{"reference":{"resourceURL","path"}}`.
    pub fn created(&self, r: &Resp, collection: &str) -> Res<Item> {
        let v = r.json_with(201)?;
        let url = self.url_at(&v, "/reference/resourceURL", collection)?;
        let path = str_at(&v, "/reference/path")?.to_string();
        Ok(Item { name: last_segment(&url).to_string(), url, path })
    }

    /// Create folder `{hint}-{n}` under `parent`.
    pub async fn folder_in(&self, parent: &Item, hint: &str) -> Res<Item> {
        let name = self.unique(hint);
        let body = json!({"folder": {"parentFolder": parent.url, "name": name, "attributes": {"attribute": []}}});
        let r = self.http.post_json(&self.folders(), &body).await?;
        let mut f = self.created(&r, "folders").map_err(|e| fail!("creating folder {name}: {e}"))?;
        f.name = name;
        Ok(f)
    }

    /// A new folder under the run folder for one check.
    pub async fn scratch(&self, hint: &str) -> Res<Item> {
        self.folder_in(&self.run, hint).await
    }

    /// Create a payload-less object (JSON body) in `parent` with `flags`.
    pub async fn object_in(&self, parent: &Item, flags: &[&str]) -> Res<Item> {
        let body = json!({"object": {
            "parentFolder": parent.url,
            "attributes": {"attribute": [{"name": "Message-Context", "value": ["chat-message"]}]},
            "flags": {"flag": flags},
        }});
        let r = self.http.post_json(&self.objects(), &body).await?;
        self.created(&r, "objects").map_err(|e| fail!("creating an object: {e}"))
    }

    /// POST a `multipart/form-data` deposit: `root-fields` with `object`, then (if given) one
    /// `attachments` part with its headers and content.
    pub async fn deposit(&self, object: &Value, attachment: Option<InnerPart<'_>>) -> Res<Resp> {
        let mut m =
            Multipart::new("conformance-outer-5a1f9c").root_document(self.http.format(), &json!({ "object": object }));
        if let Some((headers, content)) = attachment {
            let mut all = vec![("Content-Disposition", "form-data; name=\"attachments\"")];
            all.extend_from_slice(headers);
            m = m.part(&all, content);
        }
        let (ct, body) = m.finish("multipart/form-data");
        self.http.req(Method::POST, &self.objects()).body(&ct, body).send().await
    }

    /// Deposit a `text/plain` object in `parent`; returns it.
    pub async fn text_object_in(&self, parent: &Item, text: &str, flags: &[&str]) -> Res<Item> {
        let object = json!({
            "parentFolder": parent.url,
            "attributes": {"attribute": [{"name": "Message-Context", "value": ["chat-message"]}]},
            "flags": {"flag": flags},
        });
        let r =
            self.deposit(&object, Some((&[("Content-Type", "text/plain; charset=utf-8")], text.as_bytes()))).await?;
        self.created(&r, "objects").map_err(|e| fail!("depositing a text object: {e}"))
    }

    /// Deposit an object whose payload is a `multipart/{subtype}` with the given inner parts.
    pub async fn multipart_object_in(&self, parent: &Item, subtype: &str, parts: &[InnerPart<'_>]) -> Res<Item> {
        let mut inner = Multipart::new("conformance-inner-0b7e24");
        for (headers, content) in parts {
            inner = inner.part(headers, content);
        }
        let (inner_ct, inner_body) = inner.finish(&format!("multipart/{subtype}"));
        let object = json!({
            "parentFolder": parent.url,
            "attributes": {"attribute": [{"name": "Message-Context", "value": ["multimedia-message"]}]},
        });
        let r = self.deposit(&object, Some((&[("Content-Type", &inner_ct)], &inner_body))).await?;
        self.created(&r, "objects").map_err(|e| fail!("depositing a multipart object: {e}"))
    }

    /// `GET url` answered 200 with JSON.
    pub async fn get_json(&self, url: &str) -> Res<Value> {
        self.http.get(url).await?.json_with(200)
    }

    /// A URL of this box's `collection` that names nothing (a fresh random id).
    pub fn unknown(&self, collection: &str) -> String {
        format!("{}/{collection}/nonexistent-{}", self.base, random_tag())
    }

    /// The flags of an object or folder as its flag list resource answers them.
    pub async fn flags(&self, item: &Item) -> Res<Vec<String>> {
        let v = self.get_json(&format!("{}/flags", item.url)).await?;
        flag_list(&v, "/flagList/flag")
    }

    /// GET folder `item` with `query` (`listFilter=...`).
    pub async fn folder_get(&self, item: &Item, query: &str) -> Res<Value> {
        let url = if query.is_empty() { item.url.clone() } else { format!("{}?{query}", item.url) };
        self.get_json(&url).await
    }

    /// The resource URLs listed by `GET folder?listFilter=..` (all pages, following cursors).
    pub async fn children(&self, item: &Item, filter: &str) -> Res<(Vec<String>, Vec<String>)> {
        let (mut folders, mut objects) = (Vec::new(), Vec::new());
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut q = format!("listFilter={filter}");
            if let Some(c) = &cursor {
                q.push_str(&format!("&fromCursor={}", enc(c)));
            }
            let v = self.folder_get(item, &q).await?;
            folders.extend(refs(&v, "/folder/subFolders/folderReference")?);
            objects.extend(refs(&v, "/folder/objects/objectReference")?);
            match v.pointer("/folder/cursor") {
                None | Some(Value::Null) => return Ok((folders, objects)),
                Some(c) => cursor = Some(c.as_str().ok_or_else(|| fail!("cursor is not a string: {c}"))?.to_string()),
            }
        }
        Err(fail!("listing of {} did not end after 1000 pages", item.url))
    }

    /// `GET {objects|folders}/operations/pathToId?path=` with `path` percent-encoded.
    pub async fn path_to_id(&self, collection: &str, path: &str) -> Res<Resp> {
        self.http.get(&format!("{}/{collection}/operations/pathToId?path={}", self.base, enc(path))).await
    }

    /// `{base}/{objects|folders}/operations/{op}`.
    pub fn operation(&self, collection: &str, op: &str) -> String {
        format!("{}/{collection}/operations/{op}", self.base)
    }

    /// `POST {objects|folders}/operations/search` with `{"selectionCriteria": selection}`.
    pub async fn search(&self, collection: &str, selection: &Value) -> Res<Resp> {
        self.http.post_json(&self.operation(collection, "search"), &json!({ "selectionCriteria": selection })).await
    }

    /// Walk a search of `collection` to its end, following cursors: every page is 200 JSON,
    /// holds at most `maxEntries` entries (an array, absent meaning none), each an item of
    /// `collection` with an absolute `resourceURL`, none repeated; only the last page lacks
    /// `cursor`.
    pub async fn search_all(&self, collection: &str, selection: &Value) -> Res<Walk> {
        self.walk(collection, selection).await.map_err(|e| fail!("search {}: {e}", brief(selection)))
    }

    async fn walk(&self, collection: &str, selection: &Value) -> Res<Walk> {
        let (list_key, item_key) =
            if collection == "objects" { ("objectList", "object") } else { ("folderList", "folder") };
        let max = selection.get("maxEntries").and_then(Value::as_u64).unwrap_or(u64::MAX);
        let mut walk = Walk { items: Vec::new(), urls: Vec::new(), pages: 0, first_cursor: None, last: Value::Null };
        let mut sel = selection.clone();
        loop {
            walk.pages += 1;
            ensure!(walk.pages <= 100, "did not end after 100 pages");
            let v = self.search(collection, &sel).await?.json_with(200)?;
            let list = at(&v, &format!("/{list_key}"))?;
            let page = match list.get(item_key) {
                None => Vec::new(),
                Some(x) => x.as_array().ok_or_else(|| fail!("{item_key} is not an array: {}", brief(&v)))?.clone(),
            };
            ensure!(
                page.len() as u64 <= max,
                "page {} has {} entries with maxEntries={max}: {}",
                walk.pages,
                page.len(),
                brief(&v)
            );
            for item in page {
                let url = self.url_at(&item, "/resourceURL", collection)?;
                ensure!(!walk.urls.contains(&url), "page {} repeats {url}", walk.pages);
                walk.urls.push(url);
                walk.items.push(item);
            }
            walk.last = list.clone();
            match list.get("cursor") {
                None => return Ok(walk),
                Some(Value::String(cur)) => {
                    walk.first_cursor.get_or_insert_with(|| cur.clone());
                    sel["fromCursor"] = json!(cur);
                }
                Some(x) => return Err(fail!("cursor is not a string: {}", brief(x))),
            }
        }
    }

    /// The sorted `resourceURL`s a search finds (all pages).
    pub async fn found(&self, collection: &str, selection: &Value) -> Res<Vec<String>> {
        Ok(sorted(self.search_all(collection, selection).await?.urls))
    }

    /// `POST folders/operations/{copyToFolder|moveToFolder}` of the named folders and objects
    /// into `target` (both source lists always present).
    pub async fn relocate(&self, op: &str, target: &str, folders: &[&str], objects: &[&str]) -> Res<Resp> {
        let refs = |urls: &[&str]| urls.iter().map(|u| json!({ "resourceURL": u })).collect::<Vec<_>>();
        let body = json!({"targetSourceRef": {
            "targetRef": {"resourceURL": target},
            "sourceRefs": {
                "folders": {"folderReference": refs(folders)},
                "objects": {"objectReference": refs(objects)},
            },
        }});
        self.http.post_json(&self.operation("folders", op), &body).await
    }

    /// `{base}/subscriptions`
    pub fn subscriptions(&self) -> String {
        format!("{}/subscriptions", self.base)
    }

    fn leftovers(&self) -> MutexGuard<'_, Vec<String>> {
        self.leftovers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remember a subscription or channel URL for [`Ctx::sweep`].
    fn track(&self, url: &str) {
        let mut list = self.leftovers();
        if !list.iter().any(|u| u == url) {
            list.push(url.to_string());
        }
    }

    /// Forget a URL the check deleted itself.
    pub fn untrack(&self, url: &str) {
        self.leftovers().retain(|u| u != url);
    }

    /// Delete the subscriptions and channels made since the last sweep, newest first (a
    /// subscription before its channel); already gone (404) is fine. What cannot be deleted
    /// stays listed for the next sweep. The runner sweeps after every item and at the end.
    pub async fn sweep(&self) -> Res {
        let urls = std::mem::take(&mut *self.leftovers());
        let (mut kept, mut errors) = (Vec::new(), Vec::new());
        for url in urls.into_iter().rev() {
            match self.http.delete(&url).await {
                Ok(r) if matches!(r.status, 200 | 204 | 404) => {}
                Ok(r) => {
                    errors.push(format!("expected 204, got {}", r.describe()));
                    kept.push(url);
                }
                Err(e) => {
                    errors.push(e.to_string());
                    kept.push(url);
                }
            }
        }
        kept.reverse();
        self.leftovers().splice(0..0, kept);
        ensure!(errors.is_empty(), "could not delete what the item subscribed or opened: {}", errors.join("; "));
        Ok(())
    }

    /// Open a long-polling notification channel (`POST {channel root}/channels`): 201 with
    /// `Location` naming its `resourceURL`, type `LongPolling`, absolute `channelData.channelURL`
    /// and `callbackURL`.
    pub async fn channel(&self) -> Res<Channel> {
        let body = json!({"notificationChannel": {
            "clientCorrelator": format!("{}-{}", self.unique("conformance"), self.tag),
            "applicationTag": "nms-conformance",
            "channelType": "LongPolling",
            "channelData": {"maxNotifications": 10},
            "channelLifetime": 600,
        }});
        let r = self.http.post_json(&self.channels, &body).await?;
        if let Some(loc) = r.header("location") {
            self.track(loc);
        }
        let v = r.json_with(201).map_err(|e| fail!("opening a notification channel: {e}"))?;
        let ch = at(&v, "/notificationChannel")?;
        let url = str_at(ch, "/resourceURL")?.to_string();
        self.track(&url);
        ensure!(
            r.header("location") == Some(url.as_str()),
            "channel Location should be its resourceURL: {}",
            r.describe()
        );
        ensure!(str_at(ch, "/channelType")? == "LongPolling", "channelType should be LongPolling: {}", brief(ch));
        let poll_url = str_at(ch, "/channelData/channelURL")?.to_string();
        let callback = str_at(ch, "/callbackURL")?.to_string();
        for u in [&url, &poll_url, &callback] {
            absolute(u).map_err(|e| fail!("notification channel: {e}: {}", brief(ch)))?;
        }
        Ok(Channel { url, poll_url, callback })
    }

    /// Subscribe (`POST /subscriptions`) to deliver into `ch`, with a fresh `callbackData`
    /// (`{hint}-{n}-{tag}`) and the members of `extra` (`duration`, `restartToken`, `filter`,
    /// ..): 201 with `Location` naming its `resourceURL`, `index` 1, a `restartToken` (the one
    /// sent, if any) and the `callbackReference` sent.
    pub async fn subscribe(&self, ch: &Channel, hint: &str, extra: Value) -> Res<Sub> {
        let data = format!("{}-{}", self.unique(hint), self.tag);
        let mut sub = json!({"callbackReference": {"notifyURL": ch.callback, "callbackData": data}});
        if let Value::Object(members) = extra {
            for (k, v) in members {
                sub[k] = v;
            }
        }
        let r = self.http.post_json(&self.subscriptions(), &json!({ "nmsSubscription": sub })).await?;
        if let Some(loc) = r.header("location") {
            self.track(loc);
        }
        let v = r.json_with(201).map_err(|e| fail!("subscribing ({}): {e}", brief(&sub)))?;
        let created = at(&v, "/nmsSubscription")?.clone();
        let url = self.url_at(&created, "/resourceURL", "subscriptions")?;
        self.track(&url);
        ensure!(r.header("location") == Some(url.as_str()), "Location should be the resourceURL: {}", r.describe());
        ensure!(u64_at(&created, "/index")? == 1, "a new subscription's index should be 1: {}", brief(&created));
        let token = str_at(&created, "/restartToken")?.to_string();
        ensure!(!token.is_empty(), "empty restartToken: {}", brief(&created));
        if let Some(sent) = sub.get("restartToken") {
            ensure!(sent == &json!(token), "restartToken should be the one sent ({sent}): {}", brief(&created));
        }
        ensure!(
            created.pointer("/callbackReference/notifyURL") == Some(&json!(ch.callback))
                && created.pointer("/callbackReference/callbackData") == Some(&json!(data)),
            "callbackReference should be the one sent: {}",
            brief(&created)
        );
        Ok(Sub { url, data, token, created })
    }

    /// One long poll of `ch` (`POST channelURL` with `{"longPollingRequestParameters":null}`):
    /// the `nmsEventList`s it delivers, each checked with [`check_list`].
    pub async fn poll(&self, ch: &Channel) -> Res<Vec<Value>> {
        let r = self.http.post_json(&ch.poll_url, &json!({"longPollingRequestParameters": null})).await?;
        let v = r.json_with(200)?;
        let lists = notification_lists(&v).map_err(|e| fail!("{e}: {}", r.describe()))?;
        for l in &lists {
            check_list(self, l).map_err(|e| fail!("nmsEventList: {e}"))?;
        }
        Ok(lists)
    }

    /// Long-poll `ch` until `done` holds for the lists delivered so far, and return them. The
    /// awaited changes are made before, so each poll should answer at once; a poll that ends
    /// empty (the server's poll timeout passed) fails the check.
    pub async fn await_lists(&self, ch: &Channel, what: &str, done: impl Fn(&[Value]) -> bool) -> Res<Vec<Value>> {
        let mut lists = Vec::new();
        for _ in 0..MAX_POLLS {
            let got = self.poll(ch).await.map_err(|e| fail!("waiting for {what}: {e}"))?;
            ensure!(
                !got.is_empty(),
                "waiting for {what}: a long poll ended without a notification; delivered before: {}",
                brief(&json!(lists))
            );
            lists.extend(got);
            if done(&lists) {
                return Ok(lists);
            }
        }
        Err(fail!("waiting for {what}: not delivered in {MAX_POLLS} polls: {}", brief(&json!(lists))))
    }
}

/// Every page of a search, walked with `fromCursor` ([`Ctx::search_all`]).
pub struct Walk {
    /// The entries of all pages, in order.
    pub items: Vec<Value>,
    /// Their `resourceURL`s, in order.
    pub urls: Vec<String>,
    pub pages: usize,
    /// The `cursor` of the first page, if there was more than one.
    pub first_cursor: Option<String>,
    /// The last page's list (`objectList` or `folderList`), e.g. for its `creationCursor`.
    pub last: Value,
}

/// A long-polling notification channel the runner opened ([`Ctx::channel`]).
pub struct Channel {
    /// Its `resourceURL`.
    pub url: String,
    /// `channelData.channelURL`: where to long-poll.
    pub poll_url: String,
    /// `callbackURL`: the `notifyURL` of subscriptions that deliver into the channel.
    pub callback: String,
}

/// A subscription the runner made ([`Ctx::subscribe`]).
pub struct Sub {
    pub url: String,
    /// Its `callbackData`, unique in the run: tells its notification lists apart.
    pub data: String,
    /// The `restartToken` of the creation answer.
    pub token: String,
    /// The creation answer's `nmsSubscription`.
    pub created: Value,
}

/// The most long polls a check makes while waiting for the notifications it expects.
const MAX_POLLS: usize = 20;

/// One inner part of a multipart payload: headers and content.
pub type InnerPart<'a> = (&'a [(&'a str, &'a str)], &'a [u8]);

/// 16 random hex digits (std's randomly keyed hasher, the clock and the pid).
pub fn random_tag() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

// ---------------------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------------------

/// A short rendering of a JSON value for failure reasons.
pub fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 300 { format!("{}...", s.chars().take(300).collect::<String>()) } else { s }
}

/// `s` must be an absolute http(s) URL.
fn absolute(s: &str) -> Res {
    let rest = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://"));
    ensure!(rest.is_some_and(|r| !r.starts_with('/') && r.contains('/')), "{s:?} is not an absolute http(s) URL");
    Ok(())
}

fn at<'a>(v: &'a Value, ptr: &str) -> Res<&'a Value> {
    v.pointer(ptr).ok_or_else(|| fail!("missing {ptr} in {}", brief(v)))
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Res<&'a str> {
    let x = at(v, ptr)?;
    x.as_str().ok_or_else(|| fail!("{ptr} is not a string: {}", brief(x)))
}

fn arr_at<'a>(v: &'a Value, ptr: &str) -> Res<&'a Vec<Value>> {
    let x = at(v, ptr)?;
    x.as_array().ok_or_else(|| fail!("{ptr} is not an array: {}", brief(x)))
}

fn u64_at(v: &Value, ptr: &str) -> Res<u64> {
    let x = at(v, ptr)?;
    x.as_u64().ok_or_else(|| fail!("{ptr} is not a JSON non-negative integer: {}", brief(x)))
}

fn absent(v: &Value, ptr: &str) -> Res {
    ensure!(v.pointer(ptr).is_none(), "{ptr} should be absent: {}", brief(v));
    Ok(())
}

fn strings(list: &[Value], what: &str) -> Res<Vec<String>> {
    list.iter()
        .map(|x| x.as_str().map(str::to_string).ok_or_else(|| fail!("{what}: {} is not a string", brief(x))))
        .collect()
}

/// A flag array at `ptr`: absent means no flags; present it must be an array of strings.
fn flag_list(v: &Value, ptr: &str) -> Res<Vec<String>> {
    match v.pointer(ptr) {
        None => Ok(Vec::new()),
        Some(x) => strings(x.as_array().ok_or_else(|| fail!("{ptr} is not an array: {}", brief(x)))?, ptr),
    }
}

/// The `resourceURL`s of a reference list at `ptr` (absent: none).
fn refs(v: &Value, ptr: &str) -> Res<Vec<String>> {
    let Some(x) = v.pointer(ptr) else { return Ok(Vec::new()) };
    let list = x.as_array().ok_or_else(|| fail!("{ptr} is not an array: {}", brief(x)))?;
    list.iter().map(|r| str_at(r, "/resourceURL").map(str::to_string)).collect()
}

/// The values of attribute `name` (case-insensitive) of an object or folder `item`, after
/// checking the whole list's shape: `attributes.attribute` is an array of
/// `{"name": string, "value": [string, ..]}`.
fn attr(item: &Value, name: &str) -> Res<Option<Vec<String>>> {
    let list = arr_at(item, "/attributes/attribute")?;
    let mut found: Option<Vec<String>> = None;
    for a in list {
        let n = a.get("name").and_then(Value::as_str).ok_or_else(|| fail!("attribute without a name: {}", brief(a)))?;
        let values =
            a.get("value").and_then(Value::as_array).ok_or_else(|| fail!("attribute {n}: value is not an array"))?;
        let values = strings(values, n)?;
        if n.eq_ignore_ascii_case(name) {
            found.get_or_insert_with(Vec::new).extend(values);
        }
    }
    Ok(found)
}

/// The single value of attribute `name`, which must be present.
fn attr1(item: &Value, name: &str) -> Res<String> {
    let values = attr(item, name)?.ok_or_else(|| fail!("attribute {name} missing: {}", brief(item)))?;
    ensure!(values.len() == 1, "attribute {name} should have one value: {values:?}");
    Ok(values.into_iter().next().unwrap_or_default())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The last `/` segment of a URL (the resource id).
pub fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// The methods of an `Allow` header, upper-case.
fn allow(r: &Resp) -> Res<Vec<String>> {
    let a = r.header("allow").ok_or_else(|| fail!("no Allow header: {}", r.describe()))?;
    Ok(a.split(',').map(|m| m.trim().to_ascii_uppercase()).filter(|m| !m.is_empty()).collect())
}

/// `method url` must be 405 with an `Allow` header listing (at least) `expected`.
async fn not_allowed(c: &Ctx, method: Method, url: &str, expected: &[&str]) -> Res {
    let r = c.http.req(method, url).json(&json!({})).send().await?;
    r.status(405)?;
    let methods = allow(&r)?;
    for m in expected {
        ensure!(methods.iter().any(|x| x == m), "Allow {methods:?} lacks {m}: {}", r.describe());
    }
    Ok(())
}

/// A JSON body that does not parse.
const BAD_JSON: &str = "{\"object\": {\"parentFolderPath\": ";

async fn post_raw(c: &Ctx, url: &str, content_type: &str, body: &str) -> Res<Resp> {
    c.http.req(Method::POST, url).body(content_type, body.as_bytes().to_vec()).send().await
}

async fn put_raw(c: &Ctx, url: &str, content_type: &str, body: &str) -> Res<Resp> {
    c.http.req(Method::PUT, url).body(content_type, body.as_bytes().to_vec()).send().await
}

/// `path + "/" + id`, the path of an object in folder `folder`.
fn child_path(folder: &Item, id: &str) -> String {
    format!("{}/{id}", folder.path)
}

/// Read an object: GET 200 with `{"object": ..}`; returns the inner object.
async fn read_object(c: &Ctx, o: &Item) -> Res<Value> {
    let v = c.get_json(&o.url).await?;
    Ok(at(&v, "/object")?.clone())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-SUPPORT
// ---------------------------------------------------------------------------------------

async fn support_api(c: &Ctx) -> Res {
    // Root discovery: pathToId without a path answers the root folder.
    let v = c.get_json(&c.folders_path_to_id()).await?;
    let root = c.url_at(&v, "/reference/resourceURL", "folders")?;
    ensure!(str_at(&v, "/reference/path")?.is_empty(), "root path should be \"\": {}", brief(&v));
    let f = c.get_json(&root).await?;
    ensure!(str_at(&f, "/folder/resourceURL")? == root, "root resourceURL differs from pathToId: {}", brief(&f));
    ensure!(attr1(&f["folder"], "Root")? == "Yes", "root folder lacks Root=Yes: {}", brief(&f));
    absent(&f, "/folder/parentFolder")?;
    // The run folder (made by setup) is under the root.
    let run = c.get_json(&c.run.url).await?;
    ensure!(
        str_at(&run, "/folder/parentFolder")? == root,
        "run folder's parentFolder is not the root: {}",
        brief(&run)
    );
    // Authentication: wrong password and no credentials are 401 with a challenge.
    let wrong = format!("{}-wrong", c.password);
    for creds in [Some((c.user.as_str(), wrong.as_str())), None] {
        let r = c.http.req_as(Method::GET, &c.folders_path_to_id(), creds).send().await?;
        r.status(401)?;
        ensure!(r.header("www-authenticate").is_some(), "401 without WWW-Authenticate: {}", r.describe());
    }
    Ok(())
}

async fn support_json(c: &Ctx) -> Res {
    let f = c.scratch("json").await?;
    // A response is a document of the run's format with typed members.
    let r = c.http.get(&f.url).await?;
    let v = r.json_with(200)?;
    u64_at(&v, "/folder/lastModSeq")?;
    attr(&v["folder"], "Name")?;
    // Single-element repeating members stay arrays.
    let o = c.object_in(&f, &["\\Seen"]).await?;
    let ov = read_object(c, &o).await?;
    let flags = arr_at(&ov, "/flags/flag")?;
    ensure!(flags.len() == 1 && flags[0] == "\\Seen", "flags.flag should be [\"\\\\Seen\"]: {}", brief(&ov));
    ensure!(attr(&ov, "Message-Context")? == Some(owned(&["chat-message"])), "Message-Context: {}", brief(&ov));
    u64_at(&ov, "/lastModSeq")?;
    // Errors are requestError bodies.
    c.http.get(&c.unknown("objects")).await?.error(404, "SVC0004")?;
    // A body of neither format is refused as an unsupported media type.
    post_raw(c, &c.folders(), "text/plain", "folder").await?.error(415, "POL0011")?;
    Ok(())
}

async fn support_xml(c: &Ctx) -> Res {
    let f = c.scratch("xml").await?;
    let xml = c.http.clone().with_format(Format::Xml);
    // A folder created from an XML document, answered in XML under the NMS namespace.
    let doc = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><nms:folder xmlns:nms=\"{}\">\
         <parentFolder>{}</parentFolder><name>xml &amp; more</name></nms:folder>",
        crate::xml::NMS_NS,
        f.url
    );
    let r = xml.req(Method::POST, &c.folders()).body("application/xml", doc.into_bytes()).send().await?;
    let v = r.json_with(201)?;
    ensure!(
        String::from_utf8_lossy(&r.body).contains(crate::xml::NMS_NS),
        "the reference is not in the NMS namespace: {}",
        r.describe()
    );
    let url = c.url_at(&v, "/reference/resourceURL", "folders")?;
    let folder = xml.get(&url).await?.json_with(200)?;
    ensure!(str_at(&folder, "/folder/name")? == "xml & more", "folder name: {}", brief(&folder));
    u64_at(&folder, "/folder/lastModSeq")?;
    // Errors are the common schema's requestError.
    let r = xml.get(&c.unknown("objects")).await?;
    r.error(404, "SVC0004")?;
    ensure!(
        String::from_utf8_lossy(&r.body).contains("urn:oma:xml:rest:netapi:common:1"),
        "requestError not in the common namespace: {}",
        r.describe()
    );
    // JSON stays the answer for clients that do not ask for XML.
    let json = c.http.clone().with_format(Format::Json);
    json.get(&url).await?.json_with(200)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-OBJECTS
// ---------------------------------------------------------------------------------------

async fn objects_support(c: &Ctx) -> Res {
    let f = c.scratch("objects").await?;
    // parentFolderPath whose folders do not exist yet: they are created.
    let parent_path = format!("{}/auto/inner", f.path);
    let body = json!({"object": {
        "parentFolderPath": parent_path,
        "attributes": {"attribute": [
            {"name": "Message-Context", "value": ["chat-message"]},
            {"name": "Direction", "value": ["In"]},
        ]},
        "flags": {"flag": ["\\Seen"]},
    }});
    let r = c.http.post_json(&c.objects(), &body).await?;
    let o = c.created(&r, "objects")?;
    ensure!(r.header("location") == Some(o.url.as_str()), "Location should be the resourceURL: {}", r.describe());
    ensure!(o.path == format!("{parent_path}/{}", o.name), "reference.path {:?} should be {parent_path}/<id>", o.path);
    let pv = c.path_to_id("folders", &parent_path).await?.json_with(200)?;
    let parent = c.url_at(&pv, "/reference/resourceURL", "folders")?;
    // Read back: the parent, a Date added, no payload.
    let ov = read_object(c, &o).await?;
    ensure!(str_at(&ov, "/parentFolder")? == parent, "parentFolder should be the auto-created folder: {}", brief(&ov));
    ensure!(!attr1(&ov, "Date")?.is_empty(), "empty Date attribute");
    ensure!(attr(&ov, "Direction")? == Some(owned(&["In"])), "Direction attribute not kept: {}", brief(&ov));
    absent(&ov, "/payloadURL")?;
    ensure!(flag_list(&ov, "/flags/flag")? == ["\\Seen"], "flags not kept: {}", brief(&ov));
    // Refusals.
    post_raw(c, &c.objects(), "application/json", BAD_JSON).await?.error(400, "SVC0002")?;
    post_raw(c, &c.objects(), "text/plain", "hello").await?.error(415, "POL0011")?;
    let (ct, body) = Multipart::new("conformance-no-root")
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "text/plain")], b"hi")
        .finish("multipart/form-data");
    c.http.req(Method::POST, &c.objects()).body(&ct, body).send().await?.error(400, "SVC0002")?;
    // Nothing was created by the refused requests.
    let (_, objs) = c.children(&f, "Objects").await?;
    ensure!(objs.is_empty(), "refused creations left objects in {}: {objs:?}", f.path);
    Ok(())
}

async fn objects_upload(c: &Ctx) -> Res {
    let f = c.scratch("upload").await?;
    let text = "Are you coming to the football today?";
    let object = json!({
        "parentFolder": f.url,
        "attributes": {"attribute": [
            {"name": "Message-Context", "value": ["chat-message"]},
            {"name": "Direction", "value": ["In"]},
        ]},
        "flags": {"flag": []},
    });
    let r = c.deposit(&object, Some((&[("Content-Type", "text/plain")], text.as_bytes()))).await?;
    let o = c.created(&r, "objects")?;
    ensure!(r.header("location") == Some(o.url.as_str()), "Location should be the resourceURL: {}", r.describe());
    ensure!(o.path == child_path(&f, &o.name), "reference.path {:?} should be {}/<id>", o.path, f.path);
    let ov = read_object(c, &o).await?;
    ensure!(str_at(&ov, "/parentFolder")? == f.url, "parentFolder should be {}: {}", f.url, brief(&ov));
    ensure!(str_at(&ov, "/resourceURL")? == o.url, "resourceURL differs: {}", brief(&ov));
    let ct = attr1(&ov, "Content-Type")?;
    ensure!(ct.starts_with("text/plain"), "Content-Type attribute {ct:?} should be text/plain");
    let parts = arr_at(&ov, "/payloadPart")?;
    ensure!(parts.len() == 1, "one payload part expected: {}", brief(&ov));
    ensure!(u64_at(&parts[0], "/size")? == text.len() as u64, "payloadPart size: {}", brief(&parts[0]));
    let (_, objs) = c.children(&f, "Objects").await?;
    ensure!(objs == [o.url.clone()], "folder listing should hold exactly the object: {objs:?}");
    // A parentFolder URL that names no folder.
    let bad = json!({"parentFolder": c.unknown("folders"), "attributes": {"attribute": []}});
    c.deposit(&bad, Some((&[("Content-Type", "text/plain")], b"x"))).await?.error(400, "SVC0002")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-AOBJECT
// ---------------------------------------------------------------------------------------

async fn aobject_support(c: &Ctx) -> Res {
    let f = c.scratch("aobject").await?;
    let o = c.object_in(&f, &[]).await?;
    not_allowed(c, Method::PUT, &o.url, &["GET", "DELETE"]).await?;
    not_allowed(c, Method::POST, &o.url, &["GET", "DELETE"]).await?;
    // The object is untouched by the refused methods.
    let ov = read_object(c, &o).await?;
    ensure!(str_at(&ov, "/resourceURL")? == o.url, "resourceURL differs: {}", brief(&ov));
    c.http.get(&c.unknown("objects")).await?.error(404, "SVC0004")?;
    Ok(())
}

async fn aobject_get(c: &Ctx) -> Res {
    let f = c.scratch("metadata").await?;
    let text = "Hello from the conformance runner";
    let correlation = format!("conformance-{}", c.tag);
    let object = json!({
        "parentFolder": f.url,
        "attributes": {"attribute": [
            {"name": "Message-Context", "value": ["chat-message"]},
            {"name": "Direction", "value": ["Out"]},
            {"name": "From", "value": ["tel:+12125551212"]},
            {"name": "To", "value": ["tel:+13105550000", "tel:+13105550001"]},
            {"name": "Date", "value": ["2026-11-23T10:00:00Z"]},
        ]},
        "flags": {"flag": ["\\Seen", "\\Flagged"]},
        "correlationId": correlation,
    });
    let r = c.deposit(&object, Some((&[("Content-Type", "text/plain")], text.as_bytes()))).await?;
    let o = c.created(&r, "objects")?;
    let r = c.http.get(&o.url).await?;
    let v = r.json_with(200)?;
    let ov = at(&v, "/object")?;
    ensure!(str_at(ov, "/resourceURL")? == o.url, "resourceURL differs: {}", brief(ov));
    ensure!(last_segment(&o.url) == o.name && !o.name.is_empty(), "resourceURL should end with the id");
    ensure!(str_at(ov, "/parentFolder")? == f.url, "parentFolder should be {}: {}", f.url, brief(ov));
    ensure!(str_at(ov, "/path")? == child_path(&f, &o.name), "path should be {}/{}: {}", f.path, o.name, brief(ov));
    ensure!(attr(ov, "Message-Context")? == Some(owned(&["chat-message"])), "Message-Context: {}", brief(ov));
    ensure!(attr(ov, "Direction")? == Some(owned(&["Out"])), "Direction: {}", brief(ov));
    ensure!(
        attr(ov, "To")? == Some(owned(&["tel:+13105550000", "tel:+13105550001"])),
        "multi-valued To not kept in order: {}",
        brief(ov)
    );
    ensure!(attr(ov, "Date")? == Some(owned(&["2026-11-23T10:00:00Z"])), "the given Date must be kept: {}", brief(ov));
    ensure!(attr1(ov, "Content-Type")?.starts_with("text/plain"), "Content-Type attribute: {}", brief(ov));
    ensure!(
        sorted(flag_list(ov, "/flags/flag")?) == ["\\Flagged", "\\Seen"],
        "flags should be \\Seen and \\Flagged: {}",
        brief(ov)
    );
    u64_at(ov, "/lastModSeq")?;
    ensure!(str_at(ov, "/correlationId")? == correlation, "correlationId not kept: {}", brief(ov));
    let payload_url = str_at(ov, "/payloadURL")?;
    c.check_url(payload_url, "objects")?;
    let parts = arr_at(ov, "/payloadPart")?;
    ensure!(parts.len() == 1, "one payloadPart expected: {}", brief(ov));
    ensure!(str_at(&parts[0], "/contentType")?.starts_with("text/plain"), "payloadPart contentType: {}", brief(ov));
    ensure!(u64_at(&parts[0], "/size")? == text.len() as u64, "payloadPart size should be {}", text.len());
    let href = str_at(&parts[0], "/href")?;
    c.check_url(href, "objects")?;
    ensure!(href.starts_with(&format!("{}/", o.url)), "payloadPart href {href:?} should be under the object");
    Ok(())
}

async fn aobject_delete(c: &Ctx) -> Res {
    let f = c.scratch("delete").await?;
    let o = c.text_object_in(&f, "to be deleted", &[]).await?;
    let keep = c.object_in(&f, &[]).await?;
    c.http.delete(&o.url).await?.status(204)?;
    c.http.get(&o.url).await?.error(404, "SVC0004")?;
    c.http.get(&format!("{}/flags", o.url)).await?.error(404, "SVC0004")?;
    c.path_to_id("objects", &o.path).await?.error(404, "SVC0004")?;
    c.http.delete(&o.url).await?.error(404, "SVC0004")?;
    let (_, objs) = c.children(&f, "Objects").await?;
    ensure!(objs == [keep.url.clone()], "only the other object should remain: {objs:?}");
    read_object(c, &keep).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-AOBJECT-FLAGS
// ---------------------------------------------------------------------------------------

async fn flags_support(c: &Ctx) -> Res {
    let f = c.scratch("flags").await?;
    let o = c.object_in(&f, &["\\Seen"]).await?;
    let flags_url = format!("{}/flags", o.url);
    c.http.get(&format!("{}/flags", c.unknown("objects"))).await?.error(404, "SVC0004")?;
    put_raw(c, &flags_url, "application/json", "{\"flagList\": {\"flag\": [").await?.error(400, "SVC0002")?;
    c.http.put_json(&flags_url, &json!({"flagList": {"flag": ["bad flag"]}})).await?.error(400, "SVC0002")?;
    not_allowed(c, Method::POST, &flags_url, &["GET", "PUT"]).await?;
    ensure!(c.flags(&o).await? == ["\\Seen"], "refused requests changed the flags");
    Ok(())
}

async fn flags_get(c: &Ctx) -> Res {
    let f = c.scratch("flagget").await?;
    let one = c.object_in(&f, &["\\Seen"]).await?;
    let v = c.get_json(&format!("{}/flags", one.url)).await?;
    let list = arr_at(&v, "/flagList/flag")?;
    ensure!(list.len() == 1 && list[0] == "\\Seen", "flag should be [\"\\\\Seen\"]: {}", brief(&v));
    ensure!(
        str_at(&v, "/flagList/resourceURL")? == format!("{}/flags", one.url),
        "flagList.resourceURL: {}",
        brief(&v)
    );
    let two = c.object_in(&f, &["\\Seen", "$Conformance"]).await?;
    ensure!(sorted(c.flags(&two).await?) == ["$Conformance", "\\Seen"], "flags of the second object");
    let none = c.object_in(&f, &[]).await?;
    ensure!(c.flags(&none).await?.is_empty(), "an object without flags should list none");
    Ok(())
}

async fn flags_add(c: &Ctx) -> Res {
    let f = c.scratch("flagadd").await?;
    let o = c.object_in(&f, &["\\Seen", "\\Flagged"]).await?;
    let before = u64_at(&read_object(c, &o).await?, "/lastModSeq")?;
    let flags_url = format!("{}/flags", o.url);
    let body = json!({"flagList": {"flag": ["\\Seen", "\\Flagged", "\\Answered"], "resourceURL": flags_url}});
    let v = c.http.put_json(&flags_url, &body).await?.json_with(200)?;
    let want = ["\\Answered", "\\Flagged", "\\Seen"];
    ensure!(sorted(flag_list(&v, "/flagList/flag")?) == want, "PUT answer: {}", brief(&v));
    ensure!(sorted(c.flags(&o).await?) == want, "GET flags after the PUT");
    let ov = read_object(c, &o).await?;
    ensure!(sorted(flag_list(&ov, "/flags/flag")?) == want, "object flags after the PUT: {}", brief(&ov));
    ensure!(u64_at(&ov, "/lastModSeq")? > before, "lastModSeq should increase on a flag change: {}", brief(&ov));
    Ok(())
}

async fn flags_replace(c: &Ctx) -> Res {
    let f = c.scratch("flagput").await?;
    let o = c.object_in(&f, &["\\Seen", "\\Flagged"]).await?;
    let flags_url = format!("{}/flags", o.url);
    let v = c.http.put_json(&flags_url, &json!({"flagList": {"flag": ["\\Answered", "$Conformance"]}})).await?;
    let v = v.json_with(200)?;
    let want = ["$Conformance", "\\Answered"];
    ensure!(sorted(flag_list(&v, "/flagList/flag")?) == want, "PUT answer: {}", brief(&v));
    ensure!(str_at(&v, "/flagList/resourceURL")? == flags_url, "flagList.resourceURL: {}", brief(&v));
    ensure!(sorted(c.flags(&o).await?) == want, "GET flags after the PUT");
    c.http.get(&format!("{flags_url}/%5CSeen")).await?.status(404)?;
    let v = c.http.put_json(&flags_url, &json!({"flagList": {"flag": []}})).await?.json_with(200)?;
    ensure!(flag_list(&v, "/flagList/flag")?.is_empty(), "PUT of an empty list: {}", brief(&v));
    let ov = read_object(c, &o).await?;
    ensure!(flag_list(&ov, "/flags/flag")?.is_empty(), "object flags after emptying: {}", brief(&ov));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-AOBJECT-INDFLAG
// ---------------------------------------------------------------------------------------

async fn indflag_support(c: &Ctx) -> Res {
    let f = c.scratch("indflag").await?;
    let o = c.object_in(&f, &["\\Seen"]).await?;
    let flags_url = format!("{}/flags", o.url);
    c.http.get(&format!("{flags_url}/a%20b")).await?.error(400, "SVC0002")?;
    c.http.req(Method::PUT, &format!("{flags_url}/a%20b")).send().await?.error(400, "SVC0002")?;
    c.http.get(&format!("{}/flags/%5CSeen", c.unknown("objects"))).await?.error(404, "SVC0004")?;
    // Flag names compare case-insensitively.
    c.http.get(&format!("{flags_url}/%5Cseen")).await?.status(204)?;
    not_allowed(c, Method::POST, &format!("{flags_url}/%5CSeen"), &["GET", "PUT", "DELETE"]).await?;
    ensure!(c.flags(&o).await? == ["\\Seen"], "refused requests changed the flags");
    Ok(())
}

async fn indflag_get(c: &Ctx) -> Res {
    let f = c.scratch("indget").await?;
    let o = c.object_in(&f, &["\\Seen", "$Conformance"]).await?;
    let r = c.http.get(&format!("{}/flags/%5CSeen", o.url)).await?;
    r.status(204)?;
    ensure!(r.body.is_empty(), "204 with a body: {}", r.describe());
    c.http.get(&format!("{}/flags/%24Conformance", o.url)).await?.status(204)?;
    let r = c.http.get(&format!("{}/flags/%5CFlagged", o.url)).await?;
    r.status(404)?;
    if !r.body.is_empty() {
        let v = r.json()?;
        ensure!(v.get("requestError").is_none(), "an absent flag is not an error: {}", r.describe());
    }
    Ok(())
}

async fn indflag_put(c: &Ctx) -> Res {
    let f = c.scratch("indput").await?;
    let o = c.object_in(&f, &["\\Seen"]).await?;
    let before = u64_at(&read_object(c, &o).await?, "/lastModSeq")?;
    let url = format!("{}/flags/%5CAnswered", o.url);
    let r = c.http.req(Method::PUT, &url).send().await?;
    r.status(201)?;
    let loc = r.header("location").ok_or_else(|| fail!("201 without Location: {}", r.describe()))?;
    c.check_url(loc, "objects")?;
    let flag = percent_decode_str(last_segment(loc)).decode_utf8_lossy();
    ensure!(
        loc.starts_with(&format!("{}/flags/", o.url)) && flag == "\\Answered",
        "Location {loc:?} should name the flag under {}/flags/",
        o.url
    );
    c.http.get(&url).await?.status(204)?;
    let after = u64_at(&read_object(c, &o).await?, "/lastModSeq")?;
    ensure!(after > before, "lastModSeq should increase when a flag is set ({before} -> {after})");
    // Setting it again (and setting \Seen in another case) changes nothing.
    c.http.req(Method::PUT, &url).send().await?.status(204)?;
    c.http.req(Method::PUT, &format!("{}/flags/%5Cseen", o.url)).send().await?.status(204)?;
    ensure!(sorted(c.flags(&o).await?) == ["\\Answered", "\\Seen"], "flags after setting twice");
    // A keyword flag.
    c.http.req(Method::PUT, &format!("{}/flags/%24Conformance", o.url)).send().await?.status(201)?;
    ensure!(sorted(c.flags(&o).await?) == ["$Conformance", "\\Answered", "\\Seen"], "flags after a keyword");
    Ok(())
}

async fn indflag_delete(c: &Ctx) -> Res {
    let f = c.scratch("inddel").await?;
    let o = c.object_in(&f, &["\\Seen", "\\Flagged"]).await?;
    let seen = format!("{}/flags/%5CSeen", o.url);
    c.http.delete(&seen).await?.status(204)?;
    c.http.get(&seen).await?.status(404)?;
    ensure!(c.flags(&o).await? == ["\\Flagged"], "flags after removing \\Seen");
    c.http.delete(&seen).await?.status(404)?;
    c.http.delete(&format!("{}/flags/%5Cflagged", o.url)).await?.status(204)?;
    ensure!(c.flags(&o).await?.is_empty(), "flags after removing \\Flagged");
    c.http.delete(&format!("{}/flags/%5CSeen", c.unknown("objects"))).await?.error(404, "SVC0004")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-AOBJECT-PAYLOAD and -PAYLOADPART
// ---------------------------------------------------------------------------------------

/// 1 KiB of every byte value.
fn binary() -> Vec<u8> {
    (0..=255u8).cycle().take(1024).collect()
}

async fn payload_support(c: &Ctx) -> Res {
    let f = c.scratch("payload").await?;
    let text = "single part payload";
    let o = c.text_object_in(&f, text, &[]).await?;
    let ov = read_object(c, &o).await?;
    let payload_url = str_at(&ov, "/payloadURL")?;
    let r = c.http.get(payload_url).await?;
    r.status(200)?;
    ensure!(r.media_type() == "text/plain", "payload Content-Type should be text/plain: {}", r.describe());
    ensure!(r.body == text.as_bytes(), "payload bytes differ: {}", r.describe());
    // An object without payload has no payloadURL.
    let empty = c.object_in(&f, &[]).await?;
    absent(&read_object(c, &empty).await?, "/payloadURL")?;
    c.http.get(&format!("{}/payload", c.unknown("objects"))).await?.error(404, "SVC0004")?;
    Ok(())
}

async fn payload_get(c: &Ctx) -> Res {
    let f = c.scratch("payloadmp").await?;
    let bin = binary();
    let text = b"first part";
    let o = c
        .multipart_object_in(
            &f,
            "mixed",
            &[(&[("Content-Type", "text/plain")], text), (&[("Content-Type", "application/octet-stream")], &bin)],
        )
        .await?;
    let ov = read_object(c, &o).await?;
    let payload_url = str_at(&ov, "/payloadURL")?;
    let r = c.http.get(payload_url).await?;
    r.status(200)?;
    let ct = r.header("content-type").unwrap_or_default().to_string();
    ensure!(r.media_type().starts_with("multipart/"), "payload Content-Type should be multipart/*: {ct:?}");
    let boundary = boundary_of(&ct).ok_or_else(|| fail!("payload Content-Type without boundary: {ct:?}"))?;
    let parts = parse_multipart(&r.body, &boundary)?;
    ensure!(parts.len() == 2, "2 parts expected in the payload, got {}", parts.len());
    ensure!(parts[0].header("content-type").is_some_and(|t| t.starts_with("text/plain")), "part 1 Content-Type");
    ensure!(parts[0].content == text, "part 1 bytes differ");
    ensure!(
        parts[1].header("content-type").is_some_and(|t| t.starts_with("application/octet-stream")),
        "part 2 Content-Type"
    );
    ensure!(parts[1].content == bin, "part 2 bytes differ ({} bytes received)", parts[1].content.len());
    Ok(())
}

async fn payloadpart_support(c: &Ctx) -> Res {
    let f = c.scratch("parts").await?;
    let html = b"<p>see <img src=\"cid:img1@conformance\"></p>";
    let bin = binary();
    let o = c
        .multipart_object_in(
            &f,
            "related",
            &[
                (&[("Content-Type", "text/html"), ("Content-ID", "<body1@conformance>")], html),
                (
                    &[
                        ("Content-Type", "image/png"),
                        ("Content-ID", "<img1@conformance>"),
                        ("Content-Disposition", "inline; filename=\"img1.png\""),
                    ],
                    &bin,
                ),
            ],
        )
        .await?;
    let ov = read_object(c, &o).await?;
    let parts = arr_at(&ov, "/payloadPart")?;
    ensure!(parts.len() == 2, "2 payload parts expected: {}", brief(&ov));
    let expect = [("text/html", "body1@conformance", html.len()), ("image/png", "img1@conformance", bin.len())];
    let mut hrefs = Vec::new();
    for (p, (ct, cid, size)) in parts.iter().zip(expect) {
        ensure!(str_at(p, "/contentType")?.starts_with(ct), "contentType should be {ct}: {}", brief(p));
        ensure!(str_at(p, "/contentId")? == cid, "contentId should be {cid} (no angle brackets): {}", brief(p));
        ensure!(u64_at(p, "/size")? == size as u64, "size should be {size}: {}", brief(p));
        let href = str_at(p, "/href")?;
        c.check_url(href, "objects")?;
        hrefs.push(href.to_string());
    }
    ensure!(hrefs[0] != hrefs[1], "payload part hrefs must differ: {hrefs:?}");
    // contentDisposition is a CPM addition to PayloadPartInfo (JSON); the XML schema has no
    // element for it.
    if c.http.format() == Format::Json {
        let disposition = str_at(&parts[1], "/contentDisposition")?;
        ensure!(disposition.contains("img1.png"), "contentDisposition not kept: {disposition:?}");
    }
    ensure!(attr1(&ov, "Content-Type")?.starts_with("multipart/related"), "Content-Type attribute: {}", brief(&ov));
    c.http.get(&format!("{}/payloadParts/999", o.url)).await?.error(404, "SVC0004")?;
    Ok(())
}

async fn payloadpart_get(c: &Ctx) -> Res {
    let f = c.scratch("partget").await?;
    let text = b"0123456789 text part";
    let bin = binary();
    let o = c
        .multipart_object_in(
            &f,
            "mixed",
            &[(&[("Content-Type", "text/plain")], text), (&[("Content-Type", "application/octet-stream")], &bin)],
        )
        .await?;
    let ov = read_object(c, &o).await?;
    let parts = arr_at(&ov, "/payloadPart")?;
    ensure!(parts.len() == 2, "2 payload parts expected: {}", brief(&ov));
    for (p, (ct, content)) in parts.iter().zip([("text/plain", &text[..]), ("application/octet-stream", &bin[..])]) {
        let href = str_at(p, "/href")?;
        // Raw bytes with the part's own type, even though the client asks for JSON.
        let r = c.http.get(href).await?;
        r.status(200)?;
        ensure!(r.media_type() == ct, "part Content-Type should be {ct}: {}", r.describe());
        ensure!(r.body == content, "part bytes differ ({} bytes received, {} sent)", r.body.len(), content.len());
    }
    // A byte range: if the server honours it (HTTP lets it answer 200 instead), it is exact.
    let href = str_at(&parts[0], "/href")?;
    let r = c.http.req(Method::GET, href).header("Range", "bytes=0-3").send().await?;
    match r.status {
        206 => {
            let want = format!("bytes 0-3/{}", text.len());
            ensure!(
                r.header("content-range") == Some(want.as_str()),
                "Content-Range should be {want}: {:?}",
                r.headers
            );
            ensure!(r.body == text[..4], "ranged bytes differ: {}", r.describe());
        }
        200 => ensure!(r.body == text, "a 200 answer to a Range request must carry the whole part"),
        _ => return Err(fail!("Range request: expected 206 (or 200), got {}", r.describe())),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-OBJECTS-PATHTOID
// ---------------------------------------------------------------------------------------

async fn objects_pathtoid_support(c: &Ctx) -> Res {
    let f = c.scratch("opath").await?;
    let o = c.object_in(&f, &[]).await?;
    c.path_to_id("objects", &format!("{}//{}", f.path, o.name)).await?.error(400, "SVC0002")?;
    c.path_to_id("objects", &child_path(&f, &format!("nonexistent-{}", c.tag))).await?.error(404, "SVC0004")?;
    // A folder's path does not name an object.
    c.path_to_id("objects", &f.path).await?.error(404, "SVC0004")?;
    post_raw(c, &c.objects_path_to_id(), "application/json", "{\"pathList\": [").await?.error(400, "SVC0002")?;
    Ok(())
}

async fn objects_pathtoid_get(c: &Ctx) -> Res {
    let f = c.scratch("opathget").await?;
    let o = c.object_in(&f, &[]).await?;
    let path = str_at(&read_object(c, &o).await?, "/path")?.to_string();
    ensure!(path == child_path(&f, &o.name), "object path {path:?} should be {}/<id>", f.path);
    let v = c.path_to_id("objects", &path).await?.json_with(200)?;
    ensure!(
        c.url_at(&v, "/reference/resourceURL", "objects")? == o.url,
        "pathToId answered another URL: {}",
        brief(&v)
    );
    if let Some(p) = v.pointer("/reference/path") {
        ensure!(p == &json!(path), "reference.path should echo the path: {}", brief(&v));
    }
    Ok(())
}

/// Check a `bulkResponseList`: one response per expectation, in order; `Ok(url)` a 200 with
/// that `success.resourceURL`, `Err((code, messageId))` a failure.
fn check_bulk(c: &Ctx, v: &Value, collection: &str, expect: &[Result<&str, (u64, &str)>]) -> Res {
    let expect: Vec<Expect> = expect
        .iter()
        .map(|e| match e {
            Ok(url) => Expect::Success(200, collection, Some(url)),
            Err((code, id)) => Expect::Failure(*code, id),
        })
        .collect();
    check_responses(c, v, &expect).map(|_| ())
}

/// What one entry of a `bulkResponseList` must be.
enum Expect<'a> {
    /// `code` and a `success` reference to an item of the collection (`objects` or
    /// `folders`) with that `resourceURL` (any, if `None`), and no `failure`.
    Success(u64, &'a str, Option<&'a str>),
    /// `code` and a `failure` exception with that `messageId` (`serviceException` for `SVC*`,
    /// `policyException` for `POL*`), and no `success`.
    Failure(u64, &'a str),
}

/// Check a `bulkResponseList` entry by entry, in order; returns the entries.
fn check_responses(c: &Ctx, v: &Value, expect: &[Expect]) -> Res<Vec<Value>> {
    let list = arr_at(v, "/bulkResponseList/response")?;
    ensure!(list.len() == expect.len(), "{} responses expected: {}", expect.len(), brief(v));
    for (i, (r, e)) in list.iter().zip(expect).enumerate() {
        let code = u64_at(r, "/code")?;
        str_at(r, "/reason")?;
        match e {
            Expect::Success(want, collection, url) => {
                ensure!(code == *want, "response {i}: code {code}, expected {want}: {}", brief(r));
                let got = c.url_at(r, "/success/resourceURL", collection).map_err(|e| fail!("response {i}: {e}"))?;
                ensure!(url.is_none_or(|u| u == got), "response {i}: resourceURL should be {url:?}: {}", brief(r));
                absent(r, "/failure")?;
            }
            Expect::Failure(want, id) => {
                ensure!(code == *want, "response {i}: code {code}, expected {want}: {}", brief(r));
                let kind = if id.starts_with("POL") { "policyException" } else { "serviceException" };
                ensure!(
                    str_at(r, &format!("/failure/{kind}/messageId"))? == *id,
                    "response {i}: messageId should be {id}: {}",
                    brief(r)
                );
                str_at(r, &format!("/failure/{kind}/text"))?;
                if let Some(vars) = r.pointer(&format!("/failure/{kind}/variables")) {
                    strings(
                        vars.as_array().ok_or_else(|| fail!("variables is not an array: {}", brief(r)))?,
                        "variables",
                    )?;
                }
                absent(r, "/success")?;
            }
        }
    }
    Ok(list.clone())
}

/// The `variables` of a failed `bulkResponseList` entry (none if absent).
fn failure_variables(r: &Value) -> Res<Vec<String>> {
    for kind in ["serviceException", "policyException"] {
        if let Some(vars) = r.pointer(&format!("/failure/{kind}/variables")) {
            return strings(
                vars.as_array().ok_or_else(|| fail!("variables is not an array: {}", brief(r)))?,
                "variables",
            );
        }
    }
    Ok(Vec::new())
}

async fn objects_pathtoid_post(c: &Ctx) -> Res {
    let f = c.scratch("opathpost").await?;
    let a = c.object_in(&f, &[]).await?;
    let b = c.text_object_in(&f, "b", &[]).await?;
    let paths = [
        child_path(&f, &a.name),
        child_path(&f, &format!("nonexistent-{}", c.tag)),
        child_path(&f, &b.name),
        format!("{}//{}", f.path, a.name),
    ];
    let v = c.http.post_json(&c.objects_path_to_id(), &json!({"pathList": {"path": paths}})).await?.json_with(200)?;
    check_bulk(c, &v, "objects", &[Ok(&a.url), Err((404, "SVC0004")), Ok(&b.url), Err((400, "SVC0002"))])
}

// ---------------------------------------------------------------------------------------
// REST-NMS-FOLDERS
// ---------------------------------------------------------------------------------------

async fn folders_support(c: &Ctx) -> Res {
    let f = c.scratch("folders").await?;
    let post = |body: Value| async move { c.http.post_json(&c.folders(), &body).await };
    post(json!({"folder": {"name": "orphan"}})).await?.error(400, "SVC0002")?;
    let missing = format!("{}/nonexistent-{}", f.path, c.tag);
    post(json!({"folder": {"parentFolderPath": missing, "name": "x"}})).await?.error(400, "SVC0002")?;
    post(json!({"folder": {"parentFolder": c.unknown("folders"), "name": "x"}})).await?.error(400, "SVC0002")?;
    post_raw(c, &c.folders(), "application/json", "{\"folder\": {").await?.error(400, "SVC0002")?;
    let dup = json!({"folder": {"parentFolder": f.url, "name": "dup"}});
    let first = post(dup.clone()).await?;
    let made = c.created(&first, "folders")?;
    post(dup).await?.error(409, "SVC0002")?;
    let (folders, _) = c.children(&f, "Subfolders").await?;
    ensure!(folders == [made.url.clone()], "exactly the one 'dup' folder should exist: {folders:?}");
    ensure!(c.path_to_id("folders", &missing).await?.status == 404, "a refused parentFolderPath must not be created");
    Ok(())
}

async fn folders_create(c: &Ctx) -> Res {
    let f = c.scratch("create").await?;
    // By parent URL.
    let body = json!({"folder": {"parentFolder": f.url, "name": "child-a", "attributes": {"attribute": []}}});
    let r = c.http.post_json(&c.folders(), &body).await?;
    let a = c.created(&r, "folders")?;
    ensure!(r.header("location") == Some(a.url.as_str()), "Location should be the resourceURL: {}", r.describe());
    ensure!(a.path == format!("{}/child-a", f.path), "path should be {}/child-a: {:?}", f.path, a.path);
    // By parent path, and nested under the first.
    let body = json!({"folder": {"parentFolderPath": f.path, "name": "child-b"}});
    let b = c.created(&c.http.post_json(&c.folders(), &body).await?, "folders")?;
    ensure!(b.path == format!("{}/child-b", f.path), "path should be {}/child-b: {:?}", f.path, b.path);
    let body = json!({"folder": {"parentFolderPath": a.path, "name": "grand"}});
    let g = c.created(&c.http.post_json(&c.folders(), &body).await?, "folders")?;
    ensure!(g.path == format!("{}/grand", a.path), "path should be {}/grand: {:?}", a.path, g.path);
    // Read back.
    let v = c.get_json(&a.url).await?;
    ensure!(str_at(&v, "/folder/parentFolder")? == f.url, "parentFolder should be {}: {}", f.url, brief(&v));
    ensure!(str_at(&v, "/folder/name")? == "child-a", "name: {}", brief(&v));
    ensure!(str_at(&v, "/folder/resourceURL")? == a.url, "resourceURL: {}", brief(&v));
    ensure!(attr1(&v["folder"], "Name")? == "child-a", "Name attribute: {}", brief(&v));
    u64_at(&v, "/folder/lastModSeq")?;
    let v = c.get_json(&g.url).await?;
    ensure!(str_at(&v, "/folder/parentFolder")? == a.url, "grand's parentFolder should be child-a: {}", brief(&v));
    let (folders, _) = c.children(&f, "Subfolders").await?;
    ensure!(sorted(folders) == sorted(vec![a.url, b.url]), "the parent should list child-a and child-b");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-AFOLDERS
// ---------------------------------------------------------------------------------------

async fn afolders_support(c: &Ctx) -> Res {
    let f = c.scratch("afolder").await?;
    not_allowed(c, Method::PUT, &f.url, &["GET", "DELETE"]).await?;
    not_allowed(c, Method::POST, &f.url, &["GET", "DELETE"]).await?;
    c.http.get(&c.unknown("folders")).await?.error(404, "SVC0004")?;
    c.http.delete(&c.unknown("folders")).await?.error(404, "SVC0004")?;
    let v = c.get_json(&c.root.url).await?;
    ensure!(str_at(&v, "/folder/name")?.is_empty(), "root name should be \"\": {}", brief(&v));
    ensure!(attr1(&v["folder"], "Root")? == "Yes", "root lacks Root=Yes: {}", brief(&v));
    absent(&v, "/folder/parentFolder")?;
    let v = c.get_json(&f.url).await?;
    ensure!(attr(&v["folder"], "Root")?.is_none_or(|r| r != ["Yes"]), "a non-root folder has Root=Yes");
    Ok(())
}

async fn afolders_get(c: &Ctx) -> Res {
    let f = c.scratch("folderget").await?;
    let s1 = c.folder_in(&f, "sub").await?;
    let s2 = c.folder_in(&f, "sub").await?;
    let o1 = c.object_in(&f, &["\\Seen"]).await?;
    let o2 = c.object_in(&f, &[]).await?;
    let o3 = c.text_object_in(&f, "sized", &["\\Flagged"]).await?;
    c.object_in(&s1, &[]).await?;

    // Plain GET: no optional members.
    let v = c.folder_get(&f, "").await?;
    ensure!(str_at(&v, "/folder/resourceURL")? == f.url, "resourceURL: {}", brief(&v));
    ensure!(str_at(&v, "/folder/parentFolder")? == c.run.url, "parentFolder: {}", brief(&v));
    ensure!(str_at(&v, "/folder/name")? == f.name, "name: {}", brief(&v));
    ensure!(attr1(&v["folder"], "Name")? == f.name, "Name attribute: {}", brief(&v));
    u64_at(&v, "/folder/lastModSeq")?;
    for p in ["/folder/path", "/folder/subFolders", "/folder/objects", "/folder/cursor"] {
        absent(&v, p)?;
    }
    ensure!(attr(&v["folder"], "MsgCount")?.is_none(), "MsgCount without attrFilter: {}", brief(&v));
    // path=Yes.
    let v = c.folder_get(&f, "path=Yes").await?;
    ensure!(str_at(&v, "/folder/path")? == f.path, "path should be {:?}: {}", f.path, brief(&v));
    // listFilter.
    let subs = sorted(vec![s1.url.clone(), s2.url.clone()]);
    let objs = sorted(vec![o1.url.clone(), o2.url.clone(), o3.url.clone()]);
    let v = c.folder_get(&f, "listFilter=Subfolders").await?;
    arr_at(&v, "/folder/subFolders/folderReference")?;
    absent(&v, "/folder/objects")?;
    ensure!(sorted(refs(&v, "/folder/subFolders/folderReference")?) == subs, "Subfolders: {}", brief(&v));
    let v = c.folder_get(&f, "listFilter=Objects").await?;
    absent(&v, "/folder/subFolders")?;
    ensure!(sorted(refs(&v, "/folder/objects/objectReference")?) == objs, "Objects: {}", brief(&v));
    let v = c.folder_get(&f, "listFilter=All").await?;
    ensure!(sorted(refs(&v, "/folder/subFolders/folderReference")?) == subs, "All (folders): {}", brief(&v));
    ensure!(sorted(refs(&v, "/folder/objects/objectReference")?) == objs, "All (objects): {}", brief(&v));
    // Paging with maxEntries and cursors.
    let mut seen = Vec::new();
    let mut first_cursor = None;
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        ensure!(pages <= 10, "paging 5 children by 2 did not end after 10 pages");
        let mut q = "listFilter=All&maxEntries=2".to_string();
        if let Some(cur) = &cursor {
            q.push_str(&format!("&fromCursor={}", enc(cur)));
        }
        let v = c.folder_get(&f, &q).await?;
        let mut page = refs(&v, "/folder/subFolders/folderReference")?;
        page.extend(refs(&v, "/folder/objects/objectReference")?);
        ensure!(page.len() <= 2, "page {pages} has {} entries with maxEntries=2: {}", page.len(), brief(&v));
        seen.extend(page);
        match v.pointer("/folder/cursor") {
            None => break,
            Some(x) => {
                let s = x.as_str().ok_or_else(|| fail!("cursor is not a string: {}", brief(&v)))?.to_string();
                first_cursor.get_or_insert_with(|| s.clone());
                cursor = Some(s);
            }
        }
    }
    let mut all = subs.clone();
    all.extend(objs.iter().cloned());
    ensure!(sorted(seen.clone()) == sorted(all), "pages should hold each child once: {seen:?}");
    let cur = first_cursor.ok_or_else(|| fail!("5 children with maxEntries=2 gave no cursor"))?;
    let tampered = tamper(&cur);
    let r = c.http.get(&format!("{}?listFilter=All&maxEntries=2&fromCursor={}", f.url, enc(&tampered))).await?;
    r.error(400, "SVC0002")?;
    // Counts on request.
    let q = ["MsgCount", "UnreadMsgCount", "Size", "SubtreeMsgCount", "SubtreeUnreadMsgCount", "SubtreeSize"]
        .map(|a| format!("attrFilter={a}"))
        .join("&");
    let v = c.folder_get(&f, &q).await?;
    let fv = &v["folder"];
    for (name, want) in
        [("MsgCount", "3"), ("UnreadMsgCount", "2"), ("SubtreeMsgCount", "4"), ("SubtreeUnreadMsgCount", "3")]
    {
        ensure!(attr1(fv, name)? == want, "{name} should be {want}: {}", brief(&v));
    }
    let size: u64 = attr1(fv, "Size")?.parse().map_err(|_| fail!("Size is not a decimal: {}", brief(&v)))?;
    let subtree: u64 = attr1(fv, "SubtreeSize")?.parse().map_err(|_| fail!("SubtreeSize is not a decimal"))?;
    ensure!(subtree >= size, "SubtreeSize {subtree} < Size {size}");
    Ok(())
}

/// A cursor with one character in the middle changed (still URL-safe text).
fn tamper(cursor: &str) -> String {
    let mut chars: Vec<char> = cursor.chars().collect();
    let i = chars.len() / 2;
    if let Some(ch) = chars.get_mut(i) {
        *ch = if *ch == 'A' { 'B' } else { 'A' };
    } else {
        chars.push('A');
    }
    chars.into_iter().collect()
}

async fn afolders_delete(c: &Ctx) -> Res {
    let f = c.scratch("folderdel").await?;
    let sub = c.folder_in(&f, "sub").await?;
    let o1 = c.text_object_in(&f, "in the folder", &[]).await?;
    let o2 = c.object_in(&sub, &[]).await?;
    let sibling = c.scratch("sibling").await?;
    c.http.delete(&f.url).await?.status(204)?;
    for url in [&f.url, &sub.url] {
        c.http.get(url).await?.error(404, "SVC0004")?;
    }
    for url in [&o1.url, &o2.url] {
        c.http.get(url).await?.error(404, "SVC0004")?;
    }
    c.path_to_id("folders", &f.path).await?.error(404, "SVC0004")?;
    c.http.delete(&f.url).await?.error(404, "SVC0004")?;
    let (folders, _) = c.children(&c.run, "Subfolders").await?;
    ensure!(!folders.contains(&f.url), "the deleted folder is still listed");
    ensure!(folders.contains(&sibling.url), "the sibling folder vanished");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-FOLDERNAME
// ---------------------------------------------------------------------------------------

async fn foldername_support(c: &Ctx) -> Res {
    let f = c.scratch("fname").await?;
    let name_url = format!("{}/folderName", f.url);
    c.http.get(&format!("{}/folderName", c.unknown("folders"))).await?.error(404, "SVC0004")?;
    put_raw(c, &name_url, "application/json", "{\"name\": ").await?.error(400, "SVC0002")?;
    not_allowed(c, Method::POST, &name_url, &["GET", "PUT"]).await?;
    // Renaming the root is refused by policy.
    let root_name = format!("{}/folderName", c.root.url);
    let r = c.http.put_json(&root_name, &json!({"name": format!("conformance-{}", c.tag)})).await?;
    if r.status < 300 {
        // Put the root back before reporting.
        let _ = c.http.put_json(&root_name, &json!({"name": ""})).await;
    }
    r.error(403, "POL1030")?;
    let v = c.get_json(&root_name).await?;
    ensure!(str_at(&v, "/name")?.is_empty(), "the root name changed: {}", brief(&v));
    let v = c.get_json(&name_url).await?;
    ensure!(str_at(&v, "/name")? == f.name, "refused requests changed the name: {}", brief(&v));
    Ok(())
}

async fn foldername_get(c: &Ctx) -> Res {
    let f = c.scratch("fnameget").await?;
    let v = c.get_json(&format!("{}/folderName", f.url)).await?;
    ensure!(v == json!({"name": f.name}), "expected {{\"name\":{:?}}}: {}", f.name, brief(&v));
    let v = c.get_json(&format!("{}/folderName", c.root.url)).await?;
    ensure!(v == json!({"name": ""}), "root folderName should be {{\"name\":\"\"}}: {}", brief(&v));
    Ok(())
}

async fn foldername_put(c: &Ctx) -> Res {
    let f = c.scratch("fnameput").await?;
    let inner = c.folder_in(&f, "inner").await?;
    let o = c.object_in(&inner, &[]).await?;
    let new = format!("renamed-{}", c.tag);
    let v = c.http.put_json(&format!("{}/folderName", f.url), &json!({"name": new})).await?.json_with(200)?;
    ensure!(v == json!({"name": new}), "PUT answer should be {{\"name\":{new:?}}}: {}", brief(&v));
    let v = c.get_json(&format!("{}/folderName", f.url)).await?;
    ensure!(str_at(&v, "/name")? == new, "GET folderName after rename: {}", brief(&v));
    let new_path = format!("{}/{new}", c.run.path);
    let v = c.folder_get(&f, "path=Yes").await?;
    ensure!(str_at(&v, "/folder/name")? == new, "folder name after rename: {}", brief(&v));
    ensure!(str_at(&v, "/folder/path")? == new_path, "folder path after rename: {}", brief(&v));
    ensure!(attr1(&v["folder"], "Name")? == new, "Name attribute after rename: {}", brief(&v));
    // Paths below follow; the old path is gone.
    let v = c.path_to_id("folders", &new_path).await?.json_with(200)?;
    ensure!(str_at(&v, "/reference/resourceURL")? == f.url, "pathToId of the new path: {}", brief(&v));
    c.path_to_id("folders", &f.path).await?.error(404, "SVC0004")?;
    let inner_path = format!("{new_path}/{}", inner.name);
    let v = c.folder_get(&inner, "path=Yes").await?;
    ensure!(str_at(&v, "/folder/path")? == inner_path, "subfolder path after rename: {}", brief(&v));
    let ov = read_object(c, &o).await?;
    ensure!(str_at(&ov, "/path")? == format!("{inner_path}/{}", o.name), "object path after rename: {}", brief(&ov));
    let v = c.path_to_id("objects", &format!("{inner_path}/{}", o.name)).await?.json_with(200)?;
    ensure!(str_at(&v, "/reference/resourceURL")? == o.url, "object pathToId after rename: {}", brief(&v));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-FOLDERS-PATHTOID
// ---------------------------------------------------------------------------------------

async fn folders_pathtoid_support(c: &Ctx) -> Res {
    let v = c.get_json(&c.folders_path_to_id()).await?;
    ensure!(str_at(&v, "/reference/resourceURL")? == c.root.url, "no path should answer the root: {}", brief(&v));
    ensure!(str_at(&v, "/reference/path")?.is_empty(), "the root path should be \"\": {}", brief(&v));
    c.path_to_id("folders", &format!("{}//x", c.run.path)).await?.error(400, "SVC0002")?;
    c.path_to_id("folders", &format!("{}/nonexistent-{}", c.run.path, c.tag)).await?.error(404, "SVC0004")?;
    post_raw(c, &c.folders_path_to_id(), "application/json", "{\"pathList\": [").await?.error(400, "SVC0002")?;
    Ok(())
}

async fn folders_pathtoid_get(c: &Ctx) -> Res {
    let f = c.scratch("fpathget").await?;
    let v = c.path_to_id("folders", &f.path).await?.json_with(200)?;
    ensure!(c.url_at(&v, "/reference/resourceURL", "folders")? == f.url, "pathToId of {}: {}", f.path, brief(&v));
    ensure!(str_at(&v, "/reference/path")? == f.path, "reference.path: {}", brief(&v));
    // A name that needs encoding in the query.
    let name = "Sub folder +é&=?";
    let body = json!({"folder": {"parentFolder": f.url, "name": name}});
    let sub = c.created(&c.http.post_json(&c.folders(), &body).await?, "folders")?;
    let path = format!("{}/{name}", f.path);
    ensure!(sub.path == path, "created path {:?} should be {path:?}", sub.path);
    let v = c.path_to_id("folders", &path).await?.json_with(200)?;
    ensure!(str_at(&v, "/reference/resourceURL")? == sub.url, "pathToId of {path:?}: {}", brief(&v));
    ensure!(str_at(&v, "/reference/path")? == path, "reference.path: {}", brief(&v));
    Ok(())
}

async fn folders_pathtoid_post(c: &Ctx) -> Res {
    let f = c.scratch("fpathpost").await?;
    let sub = c.folder_in(&f, "sub").await?;
    let paths =
        [f.path.clone(), format!("{}/nonexistent-{}", f.path, c.tag), sub.path.clone(), format!("{}//x", f.path)];
    let v = c.http.post_json(&c.folders_path_to_id(), &json!({"pathList": {"path": paths}})).await?.json_with(200)?;
    check_bulk(c, &v, "folders", &[Ok(&f.url), Err((404, "SVC0004")), Ok(&sub.url), Err((400, "SVC0002"))])?;
    let list = arr_at(&v, "/bulkResponseList/response")?;
    ensure!(str_at(&list[2], "/success/path")? == sub.path, "success.path: {}", brief(&list[2]));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Search, bulk, copy and move helpers
// ---------------------------------------------------------------------------------------

/// Remote parties the search checks put in From and To.
const PARTY1: &str = "tel:+15550100001";
const PARTY2: &str = "tel:+15550100002";
const PARTY3: &str = "tel:+15550100003";

/// Stored dates far before and after any run.
const LONG_AGO: &str = "2000-01-01T00:00:00Z";
const FAR_AHEAD: &str = "2100-01-01T00:00:00Z";

/// A search criterion (`name` omitted when `None`).
fn crit(kind: &str, name: Option<&str>, value: &str) -> Value {
    match name {
        Some(n) => json!({"type": kind, "name": n, "value": value}),
        None => json!({"type": kind, "value": value}),
    }
}

/// `selectionCriteria` scoped to `scope`, with `maxEntries` and (if any) the criteria joined by
/// `operator` (the default, And, when `None`).
fn selection(scope: &Item, max: u64, criteria: &[Value], operator: Option<&str>) -> Value {
    let mut s = json!({"maxEntries": max, "searchScope": {"resourceURL": scope.url}});
    if !criteria.is_empty() {
        s["searchCriteria"] = json!({ "criterion": criteria });
        if let Some(op) = operator {
            s["searchCriteria"]["operator"] = json!(op);
        }
    }
    s
}

/// Ids of URLs, for failure reasons.
fn ids(urls: &[String]) -> Vec<&str> {
    urls.iter().map(|u| last_segment(u)).collect()
}

/// A search of `collection` must find exactly `want` (any order, all pages).
async fn expect_found(c: &Ctx, collection: &str, what: &str, sel: &Value, want: &[&Item]) -> Res {
    let got = c.found(collection, sel).await.map_err(|e| fail!("{what}: {e}"))?;
    let want = sorted(want.iter().map(|i| i.url.clone()).collect());
    ensure!(got == want, "{what}: found {:?}, expected {:?} (search {})", ids(&got), ids(&want), brief(sel));
    Ok(())
}

/// An object's JSON (without the `object` wrapper): `Message-Context`, then `attrs`, `flags`,
/// in `parent`.
fn object_json(parent: &str, attrs: &[(&str, &str)], flags: &[&str]) -> Value {
    let mut list = vec![json!({"name": "Message-Context", "value": ["chat-message"]})];
    list.extend(attrs.iter().map(|(n, v)| json!({"name": n, "value": [v]})));
    json!({"parentFolder": parent, "attributes": {"attribute": list}, "flags": {"flag": flags}})
}

/// Create a payload-less object in `parent` with single-valued attributes `attrs` and `flags`.
async fn object_with(c: &Ctx, parent: &Item, attrs: &[(&str, &str)], flags: &[&str]) -> Res<Item> {
    let r = c.http.post_json(&c.objects(), &json!({ "object": object_json(&parent.url, attrs, flags) })).await?;
    c.created(&r, "objects").map_err(|e| fail!("creating an object: {e}"))
}

/// Deposit a `text/plain` object in `parent` with attributes `attrs` and `flags`.
async fn text_object_with(c: &Ctx, parent: &Item, attrs: &[(&str, &str)], flags: &[&str], text: &str) -> Res<Item> {
    let object = object_json(&parent.url, attrs, flags);
    let r = c.deposit(&object, Some((&[("Content-Type", "text/plain")], text.as_bytes()))).await?;
    c.created(&r, "objects").map_err(|e| fail!("depositing a text object: {e}"))
}

/// The attributes of an object or folder as sorted (lower-case name, values) pairs.
fn attr_set(item: &Value) -> Res<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for a in arr_at(item, "/attributes/attribute")? {
        let name = str_at(a, "/name")?.to_ascii_lowercase();
        let values = strings(arr_at(a, "/value")?, &name)?;
        out.push((name, values));
    }
    out.sort();
    Ok(out)
}

/// An object as a search returned it must be the object as GET returns it.
fn same_object(found: &Value, got: &Value) -> Res {
    let url = str_at(got, "/resourceURL")?;
    ensure!(str_at(found, "/resourceURL")? == url, "resourceURL differs from GET: {}", brief(found));
    ensure!(
        str_at(found, "/parentFolder")? == str_at(got, "/parentFolder")?,
        "{url}: parentFolder differs from GET: {}",
        brief(found)
    );
    ensure!(attr_set(found)? == attr_set(got)?, "{url}: attributes differ from GET: {}", brief(found));
    ensure!(
        sorted(flag_list(found, "/flags/flag")?) == sorted(flag_list(got, "/flags/flag")?),
        "{url}: flags differ from GET: {}",
        brief(found)
    );
    ensure!(u64_at(found, "/lastModSeq")? == u64_at(got, "/lastModSeq")?, "{url}: lastModSeq differs from GET");
    for p in ["/path", "/payloadURL", "/payloadPart", "/correlationId"] {
        if let Some(x) = found.pointer(p) {
            ensure!(got.pointer(p) == Some(x), "{url}: {p} differs from GET: {}", brief(x));
        }
    }
    Ok(())
}

/// A whole-request refusal of a bulk request: status `code` with either a `requestError` of
/// `message_id` or a `bulkResponseList` whose every entry fails with `code` and `message_id`.
fn bulk_refused(c: &Ctx, r: &Resp, code: u16, message_id: &str) -> Res {
    r.status(code)?;
    let v = r.json()?;
    if v.get("bulkResponseList").is_some() {
        let n = arr_at(&v, "/bulkResponseList/response")?.len();
        let expect: Vec<Expect> = (0..n).map(|_| Expect::Failure(u64::from(code), message_id)).collect();
        check_responses(c, &v, &expect).map_err(|e| fail!("{}: {e}", r.describe()))?;
        return Ok(());
    }
    r.error(code, message_id).map(|_| ())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-OBJECTS-SEARCH
// ---------------------------------------------------------------------------------------

async fn objects_search_support(c: &Ctx) -> Res {
    let f = c.scratch("osearch").await?;
    let sub = c.folder_in(&f, "sub").await?;
    let a =
        object_with(c, &f, &[("Subject", "Football tonight"), ("From", PARTY1), ("To", PARTY2)], &["\\Seen"]).await?;
    let b =
        object_with(c, &f, &[("Subject", "Lunch plans"), ("From", PARTY2), ("To", PARTY3)], &["\\Seen", "\\Flagged"])
            .await?;
    let d = text_object_with(
        c,
        &sub,
        &[("Subject", "Weekend"), ("From", PARTY3), ("To", PARTY1)],
        &[],
        "Meet me at the zebracorn fountain.",
    )
    .await?;
    let sel = |criteria: &[Value], op: Option<&str>| selection(&f, 50, criteria, op);
    let cases: Vec<(&str, Value, Vec<&Item>)> = vec![
        ("no criteria", sel(&[], None), vec![&a, &b, &d]),
        ("Attribute (name in another case)", sel(&[crit("Attribute", Some("subject"), "Lunch plans")], None), vec![&b]),
        ("Attribute (part of the value)", sel(&[crit("Attribute", Some("Subject"), "Lunch")], None), vec![]),
        ("Attribute From", sel(&[crit("Attribute", Some("From"), PARTY2)], None), vec![&b]),
        ("Attribute To", sel(&[crit("Attribute", Some("To"), PARTY2)], None), vec![&a]),
        ("AllTextAttributes (other case)", sel(&[crit("AllTextAttributes", None, "FOOTBALL")], None), vec![&a]),
        ("AllTextAttributes (substring)", sel(&[crit("AllTextAttributes", None, "otbal")], None), vec![&a]),
        ("Flag true", sel(&[crit("Flag", Some("\\Seen"), "true")], None), vec![&a, &b]),
        ("Flag false", sel(&[crit("Flag", Some("\\Seen"), "false")], None), vec![&d]),
        ("Flag \\Flagged", sel(&[crit("Flag", Some("\\Flagged"), "true")], None), vec![&b]),
        ("WholeWord (payload)", sel(&[crit("WholeWord", None, "zebracorn")], None), vec![&d]),
        ("WholeWord (part of a word)", sel(&[crit("WholeWord", None, "zebra")], None), vec![]),
        (
            "Or",
            sel(
                &[crit("Attribute", Some("Subject"), "Lunch plans"), crit("Attribute", Some("Subject"), "Weekend")],
                Some("Or"),
            ),
            vec![&b, &d],
        ),
        (
            "And",
            sel(&[crit("Flag", Some("\\Seen"), "true"), crit("Attribute", Some("From"), PARTY1)], Some("And")),
            vec![&a],
        ),
        ("Not", sel(&[crit("Flag", Some("\\Seen"), "true")], Some("Not")), vec![&d]),
        (
            "Date (a range around now)",
            sel(&[crit("Date", None, &format!("minDate={LONG_AGO}&maxDate={FAR_AHEAD}"))], None),
            vec![&a, &b, &d],
        ),
        ("Date (maxDate in the past)", sel(&[crit("Date", None, &format!("maxDate={LONG_AGO}"))], None), vec![]),
        ("Date (minDate in the future)", sel(&[crit("Date", None, &format!("minDate={FAR_AHEAD}"))], None), vec![]),
    ];
    for (what, s, want) in &cases {
        expect_found(c, "objects", what, s, want).await?;
    }
    // CreatedObjects: "" lists the existing objects and answers a creation cursor; with that
    // cursor, only what was created since.
    let created = sel(&[crit("CreatedObjects", None, "")], None);
    let w = c.search_all("objects", &created).await?;
    ensure!(
        sorted(w.urls.clone()) == sorted(vec![a.url.clone(), b.url.clone(), d.url.clone()]),
        "CreatedObjects \"\": {:?}",
        ids(&w.urls)
    );
    let cursor = str_at(&w.last, "/creationCursor").map_err(|e| fail!("CreatedObjects: {e}"))?.to_string();
    let e = object_with(c, &f, &[("Subject", "Created later")], &[]).await?;
    let since = sel(&[crit("CreatedObjects", None, &cursor)], None);
    let w = c.search_all("objects", &since).await?;
    ensure!(
        w.urls == [e.url.clone()],
        "CreatedObjects since the cursor should find only the new object: {:?}",
        ids(&w.urls)
    );
    str_at(&w.last, "/creationCursor").map_err(|e| fail!("CreatedObjects with a cursor: {e}"))?;
    // VanishedObjects: an objectReferenceList naming the object just deleted.
    c.http.delete(&e.url).await?.status(204)?;
    let v = c
        .search(
            "objects",
            &json!({"maxEntries": 100, "searchCriteria": {"criterion": [crit("VanishedObjects", None, "")]}}),
        )
        .await?
        .json_with(200)?;
    let list = arr_at(&v, "/objectReferenceList/objectReference")?;
    let mut vanished = Vec::new();
    for r in list {
        vanished.push(c.url_at(r, "/resourceURL", "objects")?);
    }
    ensure!(vanished.contains(&e.url), "VanishedObjects should name the deleted {}: {}", e.url, brief(&v));
    absent(&v, "/objectList")?;
    // Refusals.
    let url = c.operation("objects", "search");
    not_allowed(c, Method::PUT, &url, &["POST"]).await?;
    post_raw(c, &url, "application/json", "{\"selectionCriteria\": {").await?.error(400, "SVC0002")?;
    c.search("objects", &json!({"searchScope": {"resourceURL": f.url}})).await?.error(400, "SVC0002")?;
    c.search("objects", &sel(&[crit("NoSuchType", None, "x")], None)).await?.error(400, "SVC0003")?;
    let preset = format!("NoSuchPreset-{}", c.tag);
    c.search("objects", &sel(&[crit("PresetSearch", Some(&preset), "")], None)).await?.error(400, "SVC0003")?;
    let vanished_and = sel(&[crit("VanishedObjects", None, ""), crit("Flag", Some("\\Seen"), "true")], None);
    c.search("objects", &vanished_and).await?.error(400, "SVC0002")?;
    let unknown_scope = json!({"maxEntries": 10, "searchScope": {"resourceURL": c.unknown("folders")}});
    c.search("objects", &unknown_scope).await?.error(400, "SVC0002")?;
    Ok(())
}

async fn objects_search_post(c: &Ctx) -> Res {
    let f = c.scratch("osearchpost").await?;
    let sub = c.folder_in(&f, "sub").await?;
    let mut made = Vec::new();
    for (subject, flags) in [("delta", &["\\Seen"][..]), ("alpha", &[]), ("charlie", &["\\Flagged"]), ("bravo", &[])] {
        made.push(object_with(c, &f, &[("Subject", subject)], flags).await?);
    }
    made.push(text_object_with(c, &f, &[("Subject", "foxtrot")], &["\\Seen"], "a text payload").await?);
    let echo = object_with(c, &sub, &[("Subject", "echo")], &[]).await?;
    let mut all: Vec<&Item> = made.iter().collect();
    all.push(&echo);
    // One page, recursive: full objects, as GET answers them.
    let w = c.search_all("objects", &selection(&f, 50, &[], None)).await?;
    ensure!(w.pages == 1 && w.first_cursor.is_none(), "6 objects with maxEntries=50 should be one page without cursor");
    ensure!(
        sorted(w.urls.clone()) == sorted(all.iter().map(|i| i.url.clone()).collect()),
        "recursive search of {} found {:?}",
        f.path,
        ids(&w.urls)
    );
    for item in &w.items {
        let url = str_at(item, "/resourceURL")?;
        let got = c.get_json(url).await?;
        same_object(item, at(&got, "/object")?)?;
    }
    // Not recursive.
    let mut flat = selection(&f, 50, &[], None);
    flat["nonRecursiveScope"] = json!(true);
    expect_found(c, "objects", "nonRecursiveScope", &flat, &made.iter().collect::<Vec<_>>()).await?;
    // Paging by 2: 3 pages, every object once, only the last without cursor.
    let paged = selection(&f, 2, &[], None);
    let w = c.search_all("objects", &paged).await?;
    ensure!(w.pages == 3, "6 objects by 2 should take 3 pages, took {}", w.pages);
    ensure!(sorted(w.urls.clone()) == sorted(all.iter().map(|i| i.url.clone()).collect()), "pages: {:?}", ids(&w.urls));
    let cursor = w.first_cursor.ok_or_else(|| fail!("no cursor on the first of 3 pages"))?;
    // A forged cursor, and a cursor replayed with other criteria.
    let mut forged = paged.clone();
    forged["fromCursor"] = json!(tamper(&cursor));
    c.search("objects", &forged).await?.error(400, "SVC0002")?;
    let mut other = selection(&f, 2, &[crit("Flag", Some("\\Seen"), "true")], None);
    other["fromCursor"] = json!(cursor);
    c.search("objects", &other).await?.error(400, "SVC0002")?;
    // Sorted by an attribute, across pages.
    let order = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    for (dir, want) in [("Ascending", order.to_vec()), ("Descending", order.iter().rev().copied().collect())] {
        let mut s = selection(&f, 4, &[], None);
        s["sortCriteria"] = json!({"criterion": [{"type": "Attribute", "name": "Subject", "order": dir}]});
        let w = c.search_all("objects", &s).await?;
        let subjects = w.items.iter().map(|o| attr1(o, "Subject")).collect::<Res<Vec<_>>>()?;
        ensure!(subjects == want, "sorted by Subject {dir}: {subjects:?}");
    }
    // Sorted by date: the same objects.
    let mut s = selection(&f, 4, &[], None);
    s["sortCriteria"] = json!({"criterion": [{"type": "Date", "order": "Ascending"}]});
    let w = c.search_all("objects", &s).await?;
    ensure!(w.urls.len() == all.len(), "sorted by Date: {:?}", ids(&w.urls));
    // An empty result is an empty list.
    let none = selection(&sub, 10, &[crit("Attribute", Some("Subject"), "delta")], None);
    let v = c.search("objects", &none).await?.json_with(200)?;
    ensure!(v.pointer("/objectList/object").is_none_or(|x| x == &json!([])), "empty result: {}", brief(&v));
    absent(&v, "/objectList/cursor")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-OBJECTS-bulkCreation
// ---------------------------------------------------------------------------------------

/// POST a bulkCreation: `root-fields` with `{"objectList": {"object": objects}}`, then one
/// `attachments` part per payload (`None`: an empty part without Content-Type).
async fn bulk_create(c: &Ctx, objects: &[Value], payloads: &[Option<(&str, &[u8])>]) -> Res<Resp> {
    let mut m = Multipart::new("conformance-bulk-3c9d71")
        .root_document(c.http.format(), &json!({"objectList": {"object": objects}}));
    for p in payloads {
        m = match p {
            Some((ct, content)) => {
                m.part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", ct)], content)
            }
            None => m.part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Length", "0")], b""),
        };
    }
    let (ct, body) = m.finish("multipart/form-data");
    c.http.req(Method::POST, &c.operation("objects", "bulkCreation")).body(&ct, body).send().await
}

async fn objects_bulk_creation(c: &Ctx) -> Res {
    let f = c.scratch("bulk").await?;
    let text = "first bulk payload";
    let bin = binary();
    let auto = format!("{}/pictures", f.path);
    let mut second = object_json(&f.url, &[("Subject", "no payload")], &["\\Seen"]);
    if let Some(o) = second.as_object_mut() {
        o.remove("parentFolder");
        o.insert("parentFolderPath".into(), json!(auto));
    }
    let objects = [
        object_json(&f.url, &[("Subject", "bulk one")], &["\\Seen", "\\Flagged"]),
        second,
        object_json(&c.unknown("folders"), &[], &[]),
        object_json(&f.url, &[("Subject", "bulk four")], &[]),
    ];
    let r = bulk_create(
        c,
        &objects,
        &[
            Some(("text/plain", text.as_bytes())),
            None,
            Some(("text/plain", b"x")),
            Some(("application/octet-stream", &bin)),
        ],
    )
    .await?;
    let v = r.json_with(200)?;
    let list = check_responses(
        c,
        &v,
        &[
            Expect::Success(201, "objects", None),
            Expect::Success(201, "objects", None),
            Expect::Failure(400, "SVC0002"),
            Expect::Success(201, "objects", None),
        ],
    )?;
    let item = |i: usize| -> Res<Item> {
        let url = str_at(&list[i], "/success/resourceURL")?.to_string();
        let path = str_at(&list[i], "/success/path")?.to_string();
        Ok(Item { name: last_segment(&url).to_string(), url, path })
    };
    let (o1, o2, o4) = (item(0)?, item(1)?, item(3)?);
    ensure!(o1.url != o4.url && o1.url != o2.url, "created objects share a URL: {}", brief(&v));
    for (o, parent) in [(&o1, f.path.as_str()), (&o2, auto.as_str()), (&o4, f.path.as_str())] {
        ensure!(o.path == format!("{parent}/{}", o.name), "success.path {:?} should be {parent}/<id>", o.path);
    }
    // Read back.
    let ov = read_object(c, &o1).await?;
    ensure!(str_at(&ov, "/parentFolder")? == f.url, "parentFolder: {}", brief(&ov));
    ensure!(attr(&ov, "Subject")? == Some(owned(&["bulk one"])), "Subject: {}", brief(&ov));
    ensure!(sorted(flag_list(&ov, "/flags/flag")?) == ["\\Flagged", "\\Seen"], "flags: {}", brief(&ov));
    let parts = arr_at(&ov, "/payloadPart")?;
    ensure!(parts.len() == 1 && u64_at(&parts[0], "/size")? == text.len() as u64, "payloadPart: {}", brief(&ov));
    ensure!(str_at(&parts[0], "/contentType")?.starts_with("text/plain"), "contentType: {}", brief(&ov));
    let ov = read_object(c, &o2).await?;
    let pv = c.path_to_id("folders", &auto).await?.json_with(200).map_err(|e| fail!("the folder {auto}: {e}"))?;
    ensure!(str_at(&ov, "/parentFolder")? == str_at(&pv, "/reference/resourceURL")?, "parentFolder: {}", brief(&ov));
    absent(&ov, "/payloadURL")?;
    ensure!(flag_list(&ov, "/flags/flag")? == ["\\Seen"], "flags: {}", brief(&ov));
    let ov = read_object(c, &o4).await?;
    let parts = arr_at(&ov, "/payloadPart")?;
    ensure!(parts.len() == 1 && u64_at(&parts[0], "/size")? == bin.len() as u64, "payloadPart: {}", brief(&ov));
    // Refusals: every object failing, malformed root fields, no root fields, a wrong method.
    let bad = object_json(&c.unknown("folders"), &[], &[]);
    bulk_refused(c, &bulk_create(c, &[bad], &[None]).await?, 400, "SVC0002")?;
    let (ct, body) = Multipart::new("conformance-bulk-bad")
        .part(
            &[("Content-Disposition", "form-data; name=\"root-fields\""), ("Content-Type", "application/json")],
            b"{\"objectList\": {",
        )
        .finish("multipart/form-data");
    let url = c.operation("objects", "bulkCreation");
    c.http.req(Method::POST, &url).body(&ct, body).send().await?.error(400, "SVC0002")?;
    let (ct, body) = Multipart::new("conformance-bulk-noroot")
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "text/plain")], b"hi")
        .finish("multipart/form-data");
    c.http.req(Method::POST, &url).body(&ct, body).send().await?.error(400, "SVC0002")?;
    not_allowed(c, Method::PUT, &url, &["POST"]).await?;
    let (_, objs) = c.children(&f, "Objects").await?;
    ensure!(sorted(objs.clone()) == sorted(vec![o1.url, o4.url]), "objects in {}: {:?}", f.path, ids(&objs));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-FOLDERS-SEARCH
// ---------------------------------------------------------------------------------------

/// The root search of the spec's example: `Attribute` `name` = `Yes`, all pages.
async fn root_search(c: &Ctx, name: &str, max: u64) -> Res<Walk> {
    let sel = json!({"maxEntries": max, "searchCriteria": {"criterion": [crit("Attribute", Some(name), "Yes")]}});
    c.search_all("folders", &sel).await
}

async fn folders_search_support(c: &Ctx) -> Res {
    let w = root_search(c, "Root", 10).await?;
    ensure!(w.urls.contains(&c.root.url), "the root search should find {}: {:?}", c.root.url, w.urls);
    let url = c.operation("folders", "search");
    not_allowed(c, Method::PUT, &url, &["POST"]).await?;
    post_raw(c, &url, "application/json", "{\"selectionCriteria\": {").await?.error(400, "SVC0002")?;
    let no_max = json!({"searchCriteria": {"criterion": [crit("Attribute", Some("Root"), "Yes")]}});
    c.search("folders", &no_max).await?.error(400, "SVC0002")?;
    let unknown = json!({"maxEntries": 10, "searchCriteria": {"criterion": [crit("NoSuchType", None, "x")]}});
    c.search("folders", &unknown).await?.error(400, "SVC0003")?;
    Ok(())
}

async fn folders_search_root(c: &Ctx) -> Res {
    // A scratch folder and object, so the box is not empty whatever it held before.
    let f = c.scratch("rootsearch").await?;
    c.object_in(&f, &[]).await?;
    for (name, max) in [("root", 1), ("Root", 10)] {
        let w = root_search(c, name, max).await?;
        let mut roots = 0;
        for (folder, url) in w.items.iter().zip(&w.urls) {
            ensure!(attr1(folder, "Root")? == "Yes", "{url} found by the root search lacks Root=Yes");
            absent(folder, "/parentFolder")?;
            u64_at(folder, "/lastModSeq")?;
            let subs = arr_at(folder, "/subFolders/folderReference").map_err(|e| fail!("root {url}: {e}"))?;
            let mut sub_urls = Vec::new();
            for s in subs {
                sub_urls.push(c.url_at(s, "/resourceURL", "folders")?);
            }
            for o in arr_at(folder, "/objects/objectReference").map_err(|e| fail!("root {url}: {e}"))? {
                c.url_at(o, "/resourceURL", "objects")?;
            }
            if *url != c.root.url {
                continue;
            }
            roots += 1;
            if let Some(n) = folder.get("name") {
                ensure!(n == "", "root name should be \"\": {}", brief(folder));
            }
            if let Some(p) = folder.get("path") {
                ensure!(p == "", "root path should be \"\": {}", brief(folder));
            }
            // Unless the root's own listing is cut (a cursor), it names the run folder.
            ensure!(
                folder.get("cursor").is_some() || sub_urls.contains(&c.run.url),
                "root subFolders should list the run folder {}: {}",
                c.run.url,
                brief(folder)
            );
        }
        ensure!(roots == 1, "the root {} should be found once with name {name:?}: {:?}", c.root.url, w.urls);
    }
    Ok(())
}

async fn folders_search_other(c: &Ctx) -> Res {
    let f = c.scratch("fsearch").await?;
    let apple1 = c.folder_in(&f, "apple").await?;
    let apple2 = c.folder_in(&f, "apple").await?;
    let pear = c.folder_in(&f, "pear").await?;
    let apple3 = c.folder_in(&pear, "apple").await?;
    let apples = [&apple1, &apple2, &apple3];
    let name = crit("Attribute", Some("Name"), &apple2.name);
    expect_found(c, "folders", "Attribute Name", &selection(&f, 10, &[name], None), &[&apple2]).await?;
    let text = crit("AllTextAttributes", None, "APPLE");
    expect_found(c, "folders", "AllTextAttributes", &selection(&f, 10, std::slice::from_ref(&text), None), &apples)
        .await?;
    let mut flat = selection(&f, 10, std::slice::from_ref(&text), None);
    flat["nonRecursiveScope"] = json!(true);
    expect_found(c, "folders", "nonRecursiveScope", &flat, &[&apple1, &apple2]).await?;
    let mut dated = selection(&f, 10, &[crit("Date", None, &format!("minDate={LONG_AGO}&maxDate={FAR_AHEAD}"))], None);
    dated["nonRecursiveScope"] = json!(true);
    expect_found(c, "folders", "Date (around now)", &dated, &[&apple1, &apple2, &pear]).await?;
    let past = selection(&f, 10, &[crit("Date", None, &format!("maxDate={LONG_AGO}"))], None);
    expect_found(c, "folders", "Date (in the past)", &past, &[]).await?;
    // Paging by 1, and the shape of each folder.
    let paged = selection(&f, 1, &[text], None);
    let w = c.search_all("folders", &paged).await?;
    ensure!(w.pages == 3, "3 folders by 1 should take 3 pages, took {}", w.pages);
    ensure!(sorted(w.urls.clone()) == sorted(apples.iter().map(|i| i.url.clone()).collect()), "pages: {:?}", w.urls);
    for (folder, url) in w.items.iter().zip(&w.urls) {
        let Some(want) = apples.iter().find(|a| &a.url == url) else { continue };
        let parent = if want.url == apple3.url { &pear.url } else { &f.url };
        ensure!(str_at(folder, "/parentFolder")? == *parent, "parentFolder: {}", brief(folder));
        ensure!(str_at(folder, "/name")? == want.name, "name: {}", brief(folder));
        ensure!(attr1(folder, "Name")? == want.name, "Name attribute: {}", brief(folder));
        u64_at(folder, "/lastModSeq")?;
    }
    let cursor = w.first_cursor.ok_or_else(|| fail!("no cursor on the first of 3 pages"))?;
    let mut forged = paged.clone();
    forged["fromCursor"] = json!(tamper(&cursor));
    c.search("folders", &forged).await?.error(400, "SVC0002")?;
    let mut other = selection(&f, 1, &[crit("AllTextAttributes", None, "pear")], None);
    other["fromCursor"] = json!(cursor);
    c.search("folders", &other).await?.error(400, "SVC0002")?;
    let unknown_scope = json!({"maxEntries": 10, "searchScope": {"resourceURL": c.unknown("folders")}});
    c.search("folders", &unknown_scope).await?.error(400, "SVC0002")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-FOLDERS-COPY
// ---------------------------------------------------------------------------------------

/// Refusals common to copyToFolder and moveToFolder: a wrong method, a malformed body, a
/// target that names no folder (nothing happens), a source that names nothing (an entry
/// failing with 400 SVC0002 naming it, the other source still done). Returns the answer for
/// the valid source.
async fn relocate_refusals(c: &Ctx, op: &str, src: &Item, dst: &Item, o: &Item) -> Res<Value> {
    let url = c.operation("folders", op);
    not_allowed(c, Method::PUT, &url, &["POST"]).await?;
    post_raw(c, &url, "application/json", "{\"targetSourceRef\": {").await?.error(400, "SVC0002")?;
    c.relocate(op, &c.unknown("folders"), &[], &[&o.url]).await?.error(400, "SVC0002")?;
    let ov = read_object(c, o).await?;
    ensure!(str_at(&ov, "/parentFolder")? == src.url, "{op} to a missing target moved the object: {}", brief(&ov));
    let (_, objs) = c.children(dst, "Objects").await?;
    ensure!(objs.is_empty(), "{op} to a missing target changed {}: {:?}", dst.path, ids(&objs));
    let missing = c.unknown("objects");
    let v = c.relocate(op, &dst.url, &[], &[&o.url, &missing]).await?.json_with(200)?;
    let list = check_responses(c, &v, &[Expect::Success(200, "objects", None), Expect::Failure(400, "SVC0002")])?;
    ensure!(failure_variables(&list[1])?.contains(&missing), "the failure should name {missing}: {}", brief(&list[1]));
    Ok(list[0].clone())
}

async fn copy_support(c: &Ctx) -> Res {
    let f = c.scratch("copy").await?;
    let src = c.folder_in(&f, "src").await?;
    let dst = c.folder_in(&f, "dst").await?;
    let o = c.object_in(&src, &[]).await?;
    let done = relocate_refusals(c, "copyToFolder", &src, &dst, &o).await?;
    let copy = str_at(&done, "/success/resourceURL")?;
    ensure!(copy != o.url, "a copy needs a new resourceURL: {}", brief(&done));
    let (_, objs) = c.children(&dst, "Objects").await?;
    ensure!(objs == [copy.to_string()], "{} should hold just the copy: {:?}", dst.path, ids(&objs));
    let (_, objs) = c.children(&src, "Objects").await?;
    ensure!(objs == [o.url.clone()], "{} should still hold the original: {:?}", src.path, ids(&objs));
    Ok(())
}

async fn copy_objects(c: &Ctx) -> Res {
    let f = c.scratch("copyobj").await?;
    let src = c.folder_in(&f, "src").await?;
    let dst = c.folder_in(&f, "dst").await?;
    let text = "copy me, payload and all";
    let o1 = text_object_with(c, &src, &[("Subject", "first")], &["\\Seen"], text).await?;
    let o2 = object_with(c, &src, &[("Subject", "second")], &["\\Flagged"]).await?;
    let v = c.relocate("copyToFolder", &dst.url, &[], &[&o1.url, &o2.url]).await?.json_with(200)?;
    let list = check_responses(c, &v, &[Expect::Success(200, "objects", None), Expect::Success(200, "objects", None)])?;
    let mut copies = Vec::new();
    for (r, orig) in list.iter().zip([&o1, &o2]) {
        let url = str_at(r, "/success/resourceURL")?.to_string();
        ensure!(url != o1.url && url != o2.url, "a copy needs a new resourceURL: {}", brief(r));
        let id = last_segment(&url).to_string();
        ensure!(str_at(r, "/success/path")? == child_path(&dst, &id), "success.path: {}", brief(r));
        let cv = c.get_json(&url).await?;
        let cv = at(&cv, "/object")?;
        let ov = read_object(c, orig).await?;
        ensure!(str_at(cv, "/parentFolder")? == dst.url, "the copy's parentFolder: {}", brief(cv));
        ensure!(str_at(cv, "/path")? == child_path(&dst, &id), "the copy's path: {}", brief(cv));
        ensure!(attr(cv, "Subject")? == attr(&ov, "Subject")?, "the copy's Subject: {}", brief(cv));
        ensure!(sorted(flag_list(cv, "/flags/flag")?) == sorted(flag_list(&ov, "/flags/flag")?), "the copy's flags");
        ensure!(str_at(&ov, "/parentFolder")? == src.url, "the original moved: {}", brief(&ov));
        copies.push((url, cv.clone()));
    }
    ensure!(copies[0].0 != copies[1].0, "the two copies share a URL");
    // The payload came along, byte for byte; the payload-less object stays so.
    let parts = arr_at(&copies[0].1, "/payloadPart")?;
    ensure!(parts.len() == 1, "the copy should have one payload part: {}", brief(&copies[0].1));
    let href = str_at(&parts[0], "/href")?;
    c.check_url(href, "objects")?;
    ensure!(href.starts_with(&format!("{}/", copies[0].0)), "payloadPart href {href:?} should be under the copy");
    let r = c.http.get(href).await?;
    r.status(200)?;
    ensure!(r.body == text.as_bytes(), "the copied payload differs: {}", r.describe());
    absent(&copies[1].1, "/payloadURL")?;
    let (_, objs) = c.children(&dst, "Objects").await?;
    ensure!(
        sorted(objs) == sorted(copies.iter().map(|(u, _)| u.clone()).collect()),
        "{} should hold the copies",
        dst.path
    );
    let (_, objs) = c.children(&src, "Objects").await?;
    ensure!(sorted(objs) == sorted(vec![o1.url.clone(), o2.url.clone()]), "{} should keep the originals", src.path);
    Ok(())
}

/// A tree `a/{oa, b/{ob}}` in `parent`, plus the Subjects of oa and ob.
async fn tree_in(c: &Ctx, parent: &Item) -> Res<(Item, Item, Item, Item)> {
    let a = c.folder_in(parent, "a").await?;
    let b = c.folder_in(&a, "b").await?;
    let oa = text_object_with(c, &a, &[("Subject", "in a")], &["\\Seen"], "object in a").await?;
    let ob = object_with(c, &b, &[("Subject", "in b")], &[]).await?;
    Ok((a, b, oa, ob))
}

async fn copy_folders(c: &Ctx) -> Res {
    let f = c.scratch("copytree").await?;
    let dst = c.folder_in(&f, "dst").await?;
    let (a, b, oa, ob) = tree_in(c, &f).await?;
    let loose = object_with(c, &f, &[("Subject", "loose")], &[]).await?;
    // Folders are answered first, then objects.
    let v = c.relocate("copyToFolder", &dst.url, &[&a.url], &[&loose.url]).await?.json_with(200)?;
    let list = check_responses(c, &v, &[Expect::Success(200, "folders", None), Expect::Success(200, "objects", None)])?;
    let a2 = str_at(&list[0], "/success/resourceURL")?.to_string();
    ensure!(a2 != a.url, "the folder copy needs a new resourceURL: {}", brief(&list[0]));
    let a2_path = format!("{}/{}", dst.path, a.name);
    ensure!(str_at(&list[0], "/success/path")? == a2_path, "success.path should be {a2_path}: {}", brief(&list[0]));
    let loose2 = str_at(&list[1], "/success/resourceURL")?;
    ensure!(loose2 != loose.url, "the object copy needs a new resourceURL");
    // The copy of a: same name under dst, new ids all the way down.
    let a2_item = Item { url: a2.clone(), path: a2_path.clone(), name: a.name.clone() };
    let fv = c.folder_get(&a2_item, "path=Yes").await?;
    ensure!(str_at(&fv, "/folder/parentFolder")? == dst.url, "parentFolder of the copy: {}", brief(&fv));
    ensure!(str_at(&fv, "/folder/name")? == a.name, "name of the copy: {}", brief(&fv));
    ensure!(str_at(&fv, "/folder/path")? == a2_path, "path of the copy: {}", brief(&fv));
    let (subs, objs) = c.children(&a2_item, "All").await?;
    ensure!(subs.len() == 1 && subs[0] != b.url, "the copy of a should hold a new copy of b: {subs:?}");
    ensure!(objs.len() == 1 && objs[0] != oa.url, "the copy of a should hold a new copy of oa: {objs:?}");
    let oa2 = c.get_json(&objs[0]).await?;
    ensure!(attr(&oa2["object"], "Subject")? == Some(owned(&["in a"])), "copy of oa: {}", brief(&oa2));
    ensure!(flag_list(&oa2, "/object/flags/flag")? == ["\\Seen"], "flags of the copy of oa: {}", brief(&oa2));
    let b2_path = format!("{a2_path}/{}", b.name);
    let pv = c.path_to_id("folders", &b2_path).await?.json_with(200).map_err(|e| fail!("pathToId {b2_path}: {e}"))?;
    ensure!(str_at(&pv, "/reference/resourceURL")? == subs[0], "pathToId of {b2_path}: {}", brief(&pv));
    let b2 = Item { url: subs[0].clone(), path: b2_path, name: b.name.clone() };
    let (subs, objs) = c.children(&b2, "All").await?;
    ensure!(subs.is_empty() && objs.len() == 1 && objs[0] != ob.url, "the copy of b: {subs:?} {objs:?}");
    let ob2 = c.get_json(&objs[0]).await?;
    ensure!(attr(&ob2["object"], "Subject")? == Some(owned(&["in b"])), "copy of ob: {}", brief(&ob2));
    ensure!(str_at(&ob2, "/object/parentFolder")? == b2.url, "parentFolder of the copy of ob: {}", brief(&ob2));
    // The originals stay.
    let (subs, objs) = c.children(&a, "All").await?;
    ensure!(subs == [b.url.clone()] && objs == [oa.url.clone()], "the original a changed: {subs:?} {objs:?}");
    ensure!(str_at(&c.folder_get(&a, "").await?, "/folder/parentFolder")? == f.url, "the original a moved");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST-NMS-FOLDERS-MOVE
// ---------------------------------------------------------------------------------------

async fn move_support(c: &Ctx) -> Res {
    let f = c.scratch("move").await?;
    let src = c.folder_in(&f, "src").await?;
    let dst = c.folder_in(&f, "dst").await?;
    let o = c.object_in(&src, &[]).await?;
    let done = relocate_refusals(c, "moveToFolder", &src, &dst, &o).await?;
    ensure!(str_at(&done, "/success/resourceURL")? == o.url, "a move keeps the resourceURL: {}", brief(&done));
    let (_, objs) = c.children(&dst, "Objects").await?;
    ensure!(objs == [o.url.clone()], "{} should hold the moved object: {:?}", dst.path, ids(&objs));
    // A folder cannot go into its own subtree; the other source is still moved.
    let (a, b, _, _) = tree_in(c, &f).await?;
    let v = c.relocate("moveToFolder", &b.url, &[&a.url], &[&o.url]).await?.json_with(200)?;
    check_responses(c, &v, &[Expect::Failure(400, "SVC0002"), Expect::Success(200, "objects", Some(&o.url))])?;
    let fv = c.folder_get(&a, "path=Yes").await?;
    ensure!(str_at(&fv, "/folder/parentFolder")? == f.url, "a folder moved into its own subtree: {}", brief(&fv));
    ensure!(str_at(&fv, "/folder/path")? == a.path, "path of the refused folder: {}", brief(&fv));
    ensure!(str_at(&read_object(c, &o).await?, "/parentFolder")? == b.url, "the object was not moved into b");
    Ok(())
}

async fn move_objects(c: &Ctx) -> Res {
    let f = c.scratch("moveobj").await?;
    let src = c.folder_in(&f, "src").await?;
    let dst = c.folder_in(&f, "dst").await?;
    let text = "move me";
    let o1 = text_object_with(c, &src, &[("Subject", "first")], &["\\Seen"], text).await?;
    let o2 = object_with(c, &src, &[("Subject", "second")], &[]).await?;
    let v = c.relocate("moveToFolder", &dst.url, &[], &[&o1.url, &o2.url]).await?.json_with(200)?;
    let list = check_responses(
        c,
        &v,
        &[Expect::Success(200, "objects", Some(&o1.url)), Expect::Success(200, "objects", Some(&o2.url))],
    )?;
    for (r, o) in list.iter().zip([&o1, &o2]) {
        let new_path = child_path(&dst, &o.name);
        if let Some(p) = r.pointer("/success/path") {
            ensure!(p == &json!(new_path), "success.path should be {new_path}: {}", brief(r));
        }
        let ov = read_object(c, o).await?;
        ensure!(str_at(&ov, "/parentFolder")? == dst.url, "parentFolder after the move: {}", brief(&ov));
        ensure!(str_at(&ov, "/path")? == new_path, "path after the move: {}", brief(&ov));
        c.path_to_id("objects", &o.path).await?.error(404, "SVC0004")?;
        let pv = c.path_to_id("objects", &new_path).await?.json_with(200)?;
        ensure!(str_at(&pv, "/reference/resourceURL")? == o.url, "pathToId of {new_path}: {}", brief(&pv));
    }
    let ov = read_object(c, &o1).await?;
    let parts = arr_at(&ov, "/payloadPart")?;
    ensure!(parts.len() == 1, "the moved object lost its payload: {}", brief(&ov));
    let r = c.http.get(str_at(&parts[0], "/href")?).await?;
    r.status(200)?;
    ensure!(r.body == text.as_bytes(), "the moved payload differs: {}", r.describe());
    let (_, objs) = c.children(&src, "Objects").await?;
    ensure!(objs.is_empty(), "{} should be empty after the move: {:?}", src.path, ids(&objs));
    let (_, objs) = c.children(&dst, "Objects").await?;
    ensure!(sorted(objs) == sorted(vec![o1.url.clone(), o2.url.clone()]), "{} should hold both", dst.path);
    Ok(())
}

async fn move_folders(c: &Ctx) -> Res {
    let f = c.scratch("movetree").await?;
    let dst = c.folder_in(&f, "dst").await?;
    let (a, b, oa, ob) = tree_in(c, &f).await?;
    let v = c.relocate("moveToFolder", &dst.url, &[&a.url], &[]).await?.json_with(200)?;
    let list = check_responses(c, &v, &[Expect::Success(200, "folders", Some(&a.url))])?;
    let a_path = format!("{}/{}", dst.path, a.name);
    ensure!(str_at(&list[0], "/success/path")? == a_path, "success.path should be {a_path}: {}", brief(&list[0]));
    let fv = c.folder_get(&a, "path=Yes").await?;
    ensure!(str_at(&fv, "/folder/parentFolder")? == dst.url, "parentFolder after the move: {}", brief(&fv));
    ensure!(str_at(&fv, "/folder/path")? == a_path, "path after the move: {}", brief(&fv));
    // The content moved along, keeping its ids.
    let b_path = format!("{a_path}/{}", b.name);
    let fv = c.folder_get(&b, "path=Yes").await?;
    ensure!(str_at(&fv, "/folder/parentFolder")? == a.url, "b's parentFolder: {}", brief(&fv));
    ensure!(str_at(&fv, "/folder/path")? == b_path, "b's path after the move: {}", brief(&fv));
    for (o, parent) in [(&oa, &a_path), (&ob, &b_path)] {
        let ov = read_object(c, o).await?;
        let want = format!("{parent}/{}", o.name);
        ensure!(str_at(&ov, "/path")? == want, "object path after the move should be {want}: {}", brief(&ov));
        let pv = c.path_to_id("objects", &want).await?.json_with(200)?;
        ensure!(str_at(&pv, "/reference/resourceURL")? == o.url, "pathToId of {want}: {}", brief(&pv));
        c.path_to_id("objects", &o.path).await?.error(404, "SVC0004")?;
    }
    c.path_to_id("folders", &a.path).await?.error(404, "SVC0004")?;
    let pv = c.path_to_id("folders", &a_path).await?.json_with(200)?;
    ensure!(str_at(&pv, "/reference/resourceURL")? == a.url, "pathToId of {a_path}: {}", brief(&pv));
    let (subs, _) = c.children(&f, "Subfolders").await?;
    ensure!(subs == [dst.url.clone()], "{} should hold only dst now: {subs:?}", f.path);
    let (subs, _) = c.children(&dst, "Subfolders").await?;
    ensure!(subs == [a.url.clone()], "{} should hold a: {subs:?}", dst.path);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Notifications received through a notification channel (REST-NMS-SUBSCR, -INDSUBSCR, -NOTIF)
// ---------------------------------------------------------------------------------------

/// The event kinds of an `nmsEvent` (exactly one per event).
const EVENT_KINDS: [&str; 7] =
    ["changedObject", "changedFolder", "deletedObject", "deletedFolder", "expiredObject", "expiredFolder", "resetBox"];

/// The `nmsEventList`s of a long-poll answer: `{"notificationList": [{"nmsEventList": ..}, ..]}`
/// (also a single notification as an object, `null` or `[]` for none, or one sent bare).
fn notification_lists(v: &Value) -> Res<Vec<Value>> {
    let items: Vec<&Value> = match v.get("notificationList") {
        None if v.get("nmsEventList").is_some() => vec![v],
        None => return Err(fail!("no notificationList")),
        Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        Some(x) => return Err(fail!("notificationList is neither an array nor an object: {}", brief(x))),
    };
    let mut lists = Vec::new();
    for n in items {
        match n.get("nmsEventList") {
            Some(l @ Value::Object(_)) => lists.push(l.clone()),
            Some(Value::Array(a)) if a.iter().all(Value::is_object) => lists.extend(a.iter().cloned()),
            _ => return Err(fail!("a notification without an nmsEventList object: {}", brief(n))),
        }
    }
    Ok(lists)
}

/// The kind and body of one `nmsEvent` entry.
fn event_kind(e: &Value) -> Res<(&str, &Value)> {
    let members = e.as_object().filter(|m| m.len() == 1).ok_or_else(|| fail!("nmsEvent {}", brief(e)))?;
    let (kind, body) = members.iter().next().ok_or_else(|| fail!("empty nmsEvent"))?;
    ensure!(EVENT_KINDS.contains(&kind.as_str()), "unknown nmsEvent kind {kind:?}: {}", brief(e));
    Ok((kind.as_str(), body))
}

/// An `nmsEventList` (NMS 5.3.2.24, strict synchronization): `index` >= 1, a `restartToken`,
/// `nmsEvent` an array (absent: none) of events with absolute URLs of this box and `lastModSeq`;
/// a `changedObject` with `parentFolder` and `flags.flag`, a `changedFolder` with `name`.
fn check_list(c: &Ctx, list: &Value) -> Res {
    ensure!(u64_at(list, "/index")? >= 1, "index starts at 1: {}", brief(list));
    ensure!(!str_at(list, "/restartToken")?.is_empty(), "empty restartToken: {}", brief(list));
    let Some(events) = list.get("nmsEvent") else { return Ok(()) };
    let events = events.as_array().ok_or_else(|| fail!("nmsEvent is not an array: {}", brief(list)))?;
    for e in events {
        let (kind, body) = event_kind(e)?;
        if kind == "resetBox" {
            continue;
        }
        let collection = if kind.ends_with("Object") { "objects" } else { "folders" };
        c.url_at(body, "/resourceURL", collection).map_err(|err| fail!("{kind}: {err}"))?;
        u64_at(body, "/lastModSeq").map_err(|err| fail!("{kind}: {err}"))?;
        match kind {
            "changedObject" => {
                c.url_at(body, "/parentFolder", "folders")?;
                at(body, "/flags")?;
                flag_list(body, "/flags/flag")?;
            }
            "changedFolder" => {
                str_at(body, "/name")?;
                if body.get("parentFolder").is_some() {
                    c.url_at(body, "/parentFolder", "folders")?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One delivered event: the index of its list, its kind and body.
struct Ev {
    index: u64,
    kind: String,
    body: Value,
}

impl Ev {
    fn url(&self) -> &str {
        self.body.get("resourceURL").and_then(Value::as_str).unwrap_or_default()
    }
}

/// The lists delivered for subscription `s` (those with its `callbackData`), in order.
fn lists_of<'a>(lists: &'a [Value], s: &Sub) -> Vec<&'a Value> {
    lists.iter().filter(|l| l.get("callbackData").and_then(Value::as_str) == Some(s.data.as_str())).collect()
}

/// The events delivered for `s`, in order (the lists were checked by [`check_list`]).
fn events_of(lists: &[Value], s: &Sub) -> Vec<Ev> {
    let mut out = Vec::new();
    for l in lists_of(lists, s) {
        let index = l.get("index").and_then(Value::as_u64).unwrap_or_default();
        for e in l.get("nmsEvent").and_then(Value::as_array).into_iter().flatten() {
            if let Ok((kind, body)) = event_kind(e) {
                out.push(Ev { index, kind: kind.to_string(), body: body.clone() });
            }
        }
    }
    out
}

/// Whether `s` got an event of `kind` about `url`.
fn got(lists: &[Value], s: &Sub, kind: &str, url: &str) -> bool {
    events_of(lists, s).iter().any(|e| e.kind == kind && e.url() == url)
}

/// The events about `url`.
fn about<'a>(events: &'a [Ev], url: &str) -> Vec<&'a Ev> {
    events.iter().filter(|e| e.url() == url).collect()
}

/// The last event about `url`, which must be of `kind`.
fn last_about<'a>(events: &'a [Ev], kind: &str, url: &str) -> Res<&'a Ev> {
    let e = events.iter().rev().find(|e| e.url() == url).ok_or_else(|| fail!("no event about {url}"))?;
    ensure!(
        e.kind == kind,
        "the last event about {} should be {kind}: {} {}",
        last_segment(url),
        e.kind,
        brief(&e.body)
    );
    Ok(e)
}

/// `kind id (list n)` of each event, for failure reasons.
fn summary(events: &[Ev]) -> String {
    let list: Vec<String> =
        events.iter().map(|e| format!("{} {} (list {})", e.kind, last_segment(e.url()), e.index)).collect();
    format!("[{}]", list.join(", "))
}

/// The indexes of the lists of `s` must run on by one from `first`; returns the next.
fn check_indexes(lists: &[Value], s: &Sub, first: u64) -> Res<u64> {
    let got: Vec<u64> =
        lists_of(lists, s).iter().map(|l| l.get("index").and_then(Value::as_u64).unwrap_or(0)).collect();
    let want: Vec<u64> = (first..first + got.len() as u64).collect();
    ensure!(got == want, "list indexes of one subscription should be {want:?} (by one, from {first}), got {got:?}");
    Ok(first + got.len() as u64)
}

/// The `restartToken` of the last list of `s`.
fn last_token(lists: &[Value], s: &Sub) -> Res<String> {
    let l = lists_of(lists, s).pop().ok_or_else(|| fail!("no list for {}", s.url))?;
    Ok(str_at(l, "/restartToken")?.to_string())
}

/// A `changedObject` body must state `o` as GET answers it now: parent, flags, `lastModSeq`.
/// Returns its `lastModSeq`.
async fn check_changed_object(c: &Ctx, e: &Value, o: &Item) -> Res<u64> {
    let ov = read_object(c, o).await?;
    ensure!(str_at(e, "/resourceURL")? == o.url, "changedObject about another object: {}", brief(e));
    ensure!(
        str_at(e, "/parentFolder")? == str_at(&ov, "/parentFolder")?,
        "changedObject parentFolder should be the object's ({}): {}",
        str_at(&ov, "/parentFolder")?,
        brief(e)
    );
    let (flags, want) = (sorted(flag_list(e, "/flags/flag")?), sorted(flag_list(&ov, "/flags/flag")?));
    ensure!(flags == want, "changedObject flags should be the object's {want:?}: {}", brief(e));
    let seq = u64_at(e, "/lastModSeq")?;
    let now = u64_at(&ov, "/lastModSeq")?;
    ensure!(seq == now, "changedObject lastModSeq should be the object's ({now}): {}", brief(e));
    Ok(seq)
}

/// A `changedFolder` body must state folder `f` as GET answers it now: parent, name,
/// `lastModSeq`. Returns its `lastModSeq`.
async fn check_changed_folder(c: &Ctx, e: &Value, f: &Item) -> Res<u64> {
    let fv = c.folder_get(f, "").await?;
    ensure!(str_at(e, "/resourceURL")? == f.url, "changedFolder about another folder: {}", brief(e));
    ensure!(
        str_at(e, "/parentFolder")? == str_at(&fv, "/folder/parentFolder")?,
        "changedFolder parentFolder should be the folder's: {}",
        brief(e)
    );
    ensure!(
        str_at(e, "/name")? == str_at(&fv, "/folder/name")?,
        "changedFolder name should be the folder's: {}",
        brief(e)
    );
    let seq = u64_at(e, "/lastModSeq")?;
    let now = u64_at(&fv, "/folder/lastModSeq")?;
    ensure!(seq == now, "changedFolder lastModSeq should be the folder's ({now}): {}", brief(e));
    Ok(seq)
}

/// Wait for `s`'s event of `kind` about `url` (adding what arrives to `all`); returns its body.
async fn next_event(c: &Ctx, ch: &Channel, s: &Sub, all: &mut Vec<Value>, kind: &str, url: &str) -> Res<Value> {
    let what = format!("{kind} {}", last_segment(url));
    let lists = c.await_lists(ch, &what, |l| got(l, s, kind, url)).await?;
    let events = events_of(&lists, s);
    let e = last_about(&events, kind, url)?.body.clone();
    all.extend(lists);
    Ok(e)
}

/// A payload-less object with `Message-Context: context` and `flags` in `parent`.
async fn context_object(c: &Ctx, parent: &Item, context: &str, flags: &[&str]) -> Res<Item> {
    let body = json!({"object": {
        "parentFolder": parent.url,
        "attributes": {"attribute": [{"name": "Message-Context", "value": [context]}]},
        "flags": {"flag": flags},
    }});
    let r = c.http.post_json(&c.objects(), &body).await?;
    c.created(&r, "objects").map_err(|e| fail!("creating a {context} object: {e}"))
}

/// Set flag `\{name}` (`%5C{name}`) on `o`: 201.
async fn set_flag(c: &Ctx, o: &Item, name: &str) -> Res {
    c.http.req(Method::PUT, &format!("{}/flags/%5C{name}", o.url)).send().await?.status(201)?;
    Ok(())
}

/// The `resourceURL`s of `GET /subscriptions` (`nmsSubscriptionList`).
async fn subscription_urls(c: &Ctx) -> Res<Vec<String>> {
    let v = c.get_json(&c.subscriptions()).await?;
    ensure!(
        str_at(&v, "/nmsSubscriptionList/resourceURL")? == c.subscriptions(),
        "nmsSubscriptionList.resourceURL should be {}: {}",
        c.subscriptions(),
        brief(&v)
    );
    let Some(list) = v.pointer("/nmsSubscriptionList/subscription") else { return Ok(Vec::new()) };
    let list = list.as_array().ok_or_else(|| fail!("subscription is not an array: {}", brief(&v)))?;
    list.iter().map(|s| c.url_at(s, "/resourceURL", "subscriptions")).collect()
}

/// `got` is the subscription `want` describes: same URL, callbackReference, clientCorrelator
/// (or none), index and restartToken; `duration` the remaining validity (at most `want`'s).
fn same_subscription(got: &Value, want: &Value) -> Res {
    for p in ["/resourceURL", "/callbackReference", "/clientCorrelator", "/index", "/restartToken"] {
        ensure!(got.pointer(p) == want.pointer(p), "{p} should be as in {}: {}", brief(want), brief(got));
    }
    let d = u64_at(got, "/duration")?;
    ensure!(d > 0 && d <= u64_at(want, "/duration")?, "duration should be the remaining validity: {}", brief(got));
    Ok(())
}

/// `POST nmsSubscriptionUpdate` to `s`: 200 with the same subscription (URL, callbackReference);
/// returns its `nmsSubscription`.
async fn update_sub(c: &Ctx, s: &Sub, update: Value) -> Res<Value> {
    let body = json!({ "nmsSubscriptionUpdate": update });
    let v = c.http.post_json(&s.url, &body).await?.json_with(200).map_err(|e| fail!("update {}: {e}", brief(&body)))?;
    let n = at(&v, "/nmsSubscription")?.clone();
    ensure!(str_at(&n, "/resourceURL")? == s.url, "the update answered another subscription: {}", brief(&n));
    ensure!(
        n.get("callbackReference") == s.created.get("callbackReference"),
        "the update changed callbackReference: {}",
        brief(&n)
    );
    Ok(n)
}

/// A subscription request that must be refused with `status` and `message_id`; should the
/// server make a subscription anyway, it is left for the sweep.
fn refused(c: &Ctx, r: &Resp, status: u16, message_id: &str) -> Res {
    if let Some(loc) = r.header("location") {
        c.track(loc);
    }
    r.error(status, message_id)?;
    Ok(())
}

async fn subscr_support(c: &Ctx) -> Res {
    let ch = c.channel().await?;
    let url = c.subscriptions();
    not_allowed(c, Method::PUT, &url, &["GET", "POST"]).await?;
    not_allowed(c, Method::DELETE, &url, &["GET", "POST"]).await?;
    // Refusals create nothing.
    let before = sorted(subscription_urls(c).await?);
    let cb = json!({"notifyURL": ch.callback});
    let r = post_raw(c, &url, "application/json", "{\"nmsSubscription\": {").await?;
    refused(c, &r, 400, "SVC0002")?;
    let r = c.http.post_json(&url, &json!({"nmsSubscription": {"duration": 60}})).await?;
    refused(c, &r, 400, "SVC0002")?;
    let forged = json!({"nmsSubscription": {"callbackReference": cb, "restartToken": format!("forged-{}", c.tag)}});
    refused(c, &c.http.post_json(&url, &forged).await?, 400, "SVC0002")?;
    let filter = json!({"criterion": [crit("NoSuchType", None, "x")]});
    let unknown = json!({"nmsSubscription": {"callbackReference": cb, "filter": filter}});
    refused(c, &c.http.post_json(&url, &unknown).await?, 400, "SVC0003")?;
    ensure!(sorted(subscription_urls(c).await?) == before, "refused subscriptions were created");
    // A subscription is listed and notifies changes with lastModSeq as objects carry it
    // (strict synchronization, NMS 5.1.4.4): a later change has a greater one.
    let f = c.scratch("subscr").await?;
    let s = c.subscribe(&ch, "subscr", json!({"duration": 600})).await?;
    ensure!(subscription_urls(c).await?.contains(&s.url), "the new subscription {} is not listed", s.url);
    let o = c.object_in(&f, &[]).await?;
    let mut all = Vec::new();
    let e = next_event(c, &ch, &s, &mut all, "changedObject", &o.url).await?;
    let first = check_changed_object(c, &e, &o).await?;
    set_flag(c, &o, "Seen").await?;
    let e = next_event(c, &ch, &s, &mut all, "changedObject", &o.url).await?;
    let second = check_changed_object(c, &e, &o).await?;
    ensure!(second > first, "lastModSeq should grow with the flag change ({first} -> {second})");
    check_indexes(&all, &s, 1)?;
    Ok(())
}

async fn subscr_list(c: &Ctx) -> Res {
    let ch = c.channel().await?;
    let correlator = format!("{}-{}", c.unique("correlator"), c.tag);
    let a = c.subscribe(&ch, "lista", json!({"duration": 600, "clientCorrelator": correlator})).await?;
    let b = c.subscribe(&ch, "listb", json!({"duration": 600})).await?;
    let v = c.get_json(&c.subscriptions()).await?;
    ensure!(
        str_at(&v, "/nmsSubscriptionList/resourceURL")? == c.subscriptions(),
        "nmsSubscriptionList.resourceURL should be {}: {}",
        c.subscriptions(),
        brief(&v)
    );
    let entries = arr_at(&v, "/nmsSubscriptionList/subscription")?;
    for s in [&a, &b] {
        let e = entries
            .iter()
            .find(|e| e.get("resourceURL") == Some(&json!(s.url)))
            .ok_or_else(|| fail!("{} is not listed: {}", s.url, brief(&v)))?;
        same_subscription(e, &s.created).map_err(|err| fail!("list entry of {}: {err}", last_segment(&s.url)))?;
        let one = c.get_json(&s.url).await?;
        same_subscription(e, at(&one, "/nmsSubscription")?).map_err(|err| fail!("list entry vs GET: {err}"))?;
    }
    let entry_b = entries.iter().find(|e| e.get("resourceURL") == Some(&json!(b.url)));
    ensure!(
        entry_b.is_some_and(|e| e.get("clientCorrelator").is_none()),
        "a subscription made without clientCorrelator must not get one: {}",
        brief(&v)
    );
    ensure!(a.created.get("clientCorrelator") == Some(&json!(correlator)), "clientCorrelator: {}", brief(&a.created));
    // A cancelled subscription leaves the list; the other stays.
    c.http.delete(&b.url).await?.status(204)?;
    c.untrack(&b.url);
    let urls = subscription_urls(c).await?;
    ensure!(urls.contains(&a.url) && !urls.contains(&b.url), "after deleting {}: listed {:?}", b.url, ids(&urls));
    Ok(())
}

async fn subscr_create(c: &Ctx) -> Res {
    let f = c.scratch("subscribe").await?;
    let ch = c.channel().await?;
    let earlier = c.object_in(&f, &[]).await?;
    let data = format!("{}-{}", c.unique("create"), c.tag);
    let correlator = format!("{}-{}", c.unique("correlator"), c.tag);
    let callback = json!({"notifyURL": ch.callback, "callbackData": data, "notificationFormat": "JSON"});
    let body =
        json!({"nmsSubscription": {"callbackReference": callback, "duration": 600, "clientCorrelator": correlator}});
    let r = c.http.post_json(&c.subscriptions(), &body).await?;
    if let Some(loc) = r.header("location") {
        c.track(loc);
    }
    let v = r.json_with(201)?;
    let created = at(&v, "/nmsSubscription")?.clone();
    let url = c.url_at(&created, "/resourceURL", "subscriptions")?;
    c.track(&url);
    ensure!(r.header("location") == Some(url.as_str()), "Location should be the resourceURL: {}", r.describe());
    ensure!(
        url.starts_with(&format!("{}/", c.subscriptions())) && !last_segment(&url).is_empty(),
        "resourceURL {url} should be under {}/",
        c.subscriptions()
    );
    ensure!(
        created.get("callbackReference") == Some(&callback),
        "callbackReference should be echoed: {}",
        brief(&created)
    );
    ensure!(created.get("clientCorrelator") == Some(&json!(correlator)), "clientCorrelator: {}", brief(&created));
    ensure!(u64_at(&created, "/index")? == 1, "index should be 1 (the next notification's): {}", brief(&created));
    let token = str_at(&created, "/restartToken")?.to_string();
    ensure!(!token.is_empty(), "empty restartToken: {}", brief(&created));
    let duration = u64_at(&created, "/duration")?;
    ensure!(duration > 0 && duration <= 600, "duration should be the remaining validity (<= 600): {}", brief(&created));
    let g = c.get_json(&url).await?;
    same_subscription(at(&g, "/nmsSubscription")?, &created).map_err(|e| fail!("GET Location: {e}"))?;
    // Without a restartToken only changes from now on are notified; the first list is index 1.
    let s = Sub { url, data, token, created };
    let later = c.object_in(&f, &[]).await?;
    let lists =
        c.await_lists(&ch, "the new object's changedObject", |l| got(l, &s, "changedObject", &later.url)).await?;
    check_indexes(&lists, &s, 1)?;
    let events = events_of(&lists, &s);
    check_changed_object(c, &last_about(&events, "changedObject", &later.url)?.body, &later).await?;
    ensure!(
        about(&events, &earlier.url).is_empty(),
        "an object created before the subscription was notified: {}",
        summary(&events)
    );
    Ok(())
}

async fn subscr_sync(c: &Ctx) -> Res {
    let f = c.scratch("sync").await?;
    let ch = c.channel().await?;
    // What the client knew, and the token it kept when it went offline.
    let kept = c.object_in(&f, &[]).await?;
    let gone = c.object_in(&f, &[]).await?;
    let gone_seq = u64_at(&read_object(c, &gone).await?, "/lastModSeq")?;
    let online = c.subscribe(&ch, "online", json!({"duration": 600})).await?;
    c.http.delete(&online.url).await?.status(204)?;
    c.untrack(&online.url);
    // Changes while offline.
    set_flag(c, &kept, "Seen").await?;
    c.http.delete(&gone.url).await?.status(204)?;
    let new = c.object_in(&f, &["\\Flagged"]).await?;
    // Back online: subscribe from the kept token (echoed, index 1), then a live change.
    let s = c.subscribe(&ch, "resync", json!({"duration": 600, "restartToken": online.token})).await?;
    let live = c.object_in(&f, &[]).await?;
    let lists =
        c.await_lists(&ch, "the replay and the live change", |l| got(l, &s, "changedObject", &live.url)).await?;
    check_indexes(&lists, &s, 1)?;
    let events = events_of(&lists, &s);
    let live_at = events.iter().rposition(|e| e.url() == live.url).unwrap_or_default();
    for (o, kind, what) in [
        (&kept, "changedObject", "flag change"),
        (&gone, "deletedObject", "deletion"),
        (&new, "changedObject", "creation"),
    ] {
        let at = events.iter().rposition(|e| e.url() == o.url).ok_or_else(|| {
            fail!("the replay from the restartToken lacks the {what} of {}: {}", o.name, summary(&events))
        })?;
        ensure!(events[at].kind == kind, "the {what} of {} should end as {kind}: {}", o.name, summary(&events));
        ensure!(
            at < live_at,
            "the replayed {what} of {} should come before the live change: {}",
            o.name,
            summary(&events)
        );
    }
    check_changed_object(c, &last_about(&events, "changedObject", &kept.url)?.body, &kept).await?;
    check_changed_object(c, &last_about(&events, "changedObject", &new.url)?.body, &new).await?;
    check_changed_object(c, &last_about(&events, "changedObject", &live.url)?.body, &live).await?;
    let deleted = u64_at(&last_about(&events, "deletedObject", &gone.url)?.body, "/lastModSeq")?;
    ensure!(deleted > gone_seq, "deletedObject lastModSeq {deleted} should exceed the object's last ({gone_seq})");
    ensure!(lists_of(&lists, &online).is_empty(), "the cancelled subscription was notified: {}", brief(&json!(lists)));
    Ok(())
}

async fn subscr_filter(c: &Ctx) -> Res {
    let f = c.scratch("filter").await?;
    let ch = c.channel().await?;
    // The SCR item's example (SMS only), and NMS 5.4.3's (\Flagged and not \Seen).
    let pager = json!({"criterion": [crit("Attribute", Some("Message-Context"), "chat-message")]});
    let urgent = json!({
        "criterion": [crit("Flag", Some("\\Flagged"), "true"), crit("Flag", Some("\\Seen"), "false")],
        "operator": "And",
    });
    let sp = c.subscribe(&ch, "pager", json!({"duration": 600, "filter": pager})).await?;
    let su = c.subscribe(&ch, "urgent", json!({"duration": 600, "filter": urgent})).await?;
    let neither = context_object(c, &f, "multimedia-message", &[]).await?;
    let sms = c.object_in(&f, &[]).await?;
    let flagged_mms = context_object(c, &f, "multimedia-message", &["\\Flagged"]).await?;
    let read_sms = c.object_in(&f, &["\\Flagged", "\\Seen"]).await?;
    // A flag change makes an object match: the event states the flag.
    set_flag(c, &neither, "Flagged").await?;
    // An object that never matches either filter: neither its creation nor its deletion is
    // notified (NMS 5.3.2.20: every event about an object that does not match is omitted).
    let gone = context_object(c, &f, "multimedia-message", &[]).await?;
    c.http.delete(&gone.url).await?.status(204)?;
    let both = c.object_in(&f, &["\\Flagged"]).await?;
    let lists = c
        .await_lists(&ch, "both subscriptions' event for the last object", |l| {
            got(l, &sp, "changedObject", &both.url) && got(l, &su, "changedObject", &both.url)
        })
        .await?;
    let (sms, read_sms, both) =
        (("a chat message", &sms), ("a read chat message", &read_sms), ("the last chat message", &both));
    let (mms, flagged_mms) = (("the MMS flagged later", &neither), ("a flagged MMS", &flagged_mms));
    let gone = ("the deleted MMS", &gone);
    let cases = [
        (&sp, "Message-Context=chat-message", [sms, read_sms, both], [mms, flagged_mms, gone]),
        (&su, "\\Flagged and not \\Seen", [flagged_mms, mms, both], [sms, read_sms, gone]),
    ];
    for (s, name, matching, other) in cases {
        check_indexes(&lists, s, 1)?;
        let events = events_of(&lists, s);
        for (what, o) in matching {
            ensure!(
                !about(&events, &o.url).is_empty(),
                "filter {name}: no event for {what} ({}), which matches: {}",
                o.name,
                summary(&events)
            );
        }
        for (what, o) in other {
            ensure!(
                about(&events, &o.url).is_empty(),
                "filter {name}: an event for the non-matching object, {what} ({}): {}",
                o.name,
                summary(&events)
            );
        }
    }
    for e in about(&events_of(&lists, &su), &neither.url) {
        let flags = flag_list(&e.body, "/flags/flag")?;
        ensure!(
            flags.iter().any(|x| x == "\\Flagged"),
            "filter \\Flagged: delivered before it matched: {}",
            brief(&e.body)
        );
    }
    Ok(())
}

async fn indsubscr_support(c: &Ctx) -> Res {
    let ch = c.channel().await?;
    let s = c.subscribe(&ch, "ind", json!({"duration": 600})).await?;
    not_allowed(c, Method::PUT, &s.url, &["GET", "POST", "DELETE"]).await?;
    let unknown = format!("{}/nonexistent-{}", c.subscriptions(), random_tag());
    c.http.get(&unknown).await?.error(404, "SVC0004")?;
    let update = json!({"nmsSubscriptionUpdate": {"duration": 60}});
    c.http.post_json(&unknown, &update).await?.error(404, "SVC0004")?;
    c.http.delete(&unknown).await?.error(404, "SVC0004")?;
    post_raw(c, &s.url, "application/json", "{\"nmsSubscriptionUpdate\": {").await?.error(400, "SVC0002")?;
    let forged = json!({"nmsSubscriptionUpdate": {"restartToken": format!("forged-{}", c.tag)}});
    c.http.post_json(&s.url, &forged).await?.error(400, "SVC0002")?;
    let wrong_root = json!({"nmsSubscription": {"callbackReference": {"notifyURL": ch.callback}}});
    c.http.post_json(&s.url, &wrong_root).await?.error(400, "SVC0002")?;
    // The refused requests left it as it was.
    let v = c.get_json(&s.url).await?;
    same_subscription(at(&v, "/nmsSubscription")?, &s.created).map_err(|e| fail!("after the refusals: {e}"))?;
    Ok(())
}

async fn indsubscr_get(c: &Ctx) -> Res {
    let f = c.scratch("indget").await?;
    let ch = c.channel().await?;
    let correlator = format!("{}-{}", c.unique("correlator"), c.tag);
    let s = c.subscribe(&ch, "indget", json!({"duration": 600, "clientCorrelator": correlator})).await?;
    let v = c.get_json(&s.url).await?;
    same_subscription(at(&v, "/nmsSubscription")?, &s.created)?;
    // After a notification it answers the index of the next one, and restarts after it
    // (NMS 5.1.4.3: the subscription's restartToken is updated as notifications are issued).
    let o = c.object_in(&f, &[]).await?;
    let lists = c.await_lists(&ch, "the new object's changedObject", |l| got(l, &s, "changedObject", &o.url)).await?;
    let next = check_indexes(&lists, &s, 1)?;
    let v = c.get_json(&s.url).await?;
    let n = at(&v, "/nmsSubscription")?;
    ensure!(u64_at(n, "/index")? == next, "index should be {next} after {} list(s): {}", next - 1, brief(n));
    ensure!(n.get("clientCorrelator") == Some(&json!(correlator)), "clientCorrelator: {}", brief(n));
    let token = str_at(n, "/restartToken")?;
    ensure!(
        token != s.token,
        "restartToken should have moved past the notified change: GET still answers the creation's \
         {token:?} after list {} (whose restartToken is {:?})",
        next - 1,
        last_token(&lists, &s)?
    );
    Ok(())
}

async fn indsubscr_update(c: &Ctx) -> Res {
    let f = c.scratch("update").await?;
    let ch = c.channel().await?;
    let s = c.subscribe(&ch, "update", json!({"duration": 60})).await?;
    let d0 = u64_at(&s.created, "/duration")?;
    let a = c.object_in(&f, &[]).await?;
    let mut all = c.await_lists(&ch, "changedObject of a", |l| got(l, &s, "changedObject", &a.url)).await?;
    let next = check_indexes(&all, &s, 1)?;
    let t1 = last_token(&all, &s)?;
    // A longer duration: index and restart point stay.
    let n = update_sub(c, &s, json!({"duration": 3600})).await?;
    let d = u64_at(&n, "/duration")?;
    ensure!(d > d0 && d <= 3600, "duration should be extended (was {d0}, asked 3600): {}", brief(&n));
    ensure!(u64_at(&n, "/index")? == next, "index should stay {next} (the next notification's): {}", brief(&n));
    let g = c.get_json(&s.url).await?;
    let gd = u64_at(&g, "/nmsSubscription/duration")?;
    ensure!(gd > d0 && gd <= d, "GET duration after the update: {}", brief(&g));
    // Restart from the creation's token: the change since is notified again, the index goes on.
    let n = update_sub(c, &s, json!({"restartToken": s.token})).await?;
    ensure!(str_at(&n, "/restartToken")? == s.token, "restartToken should be the one sent: {}", brief(&n));
    ensure!(u64_at(&n, "/index")? == next, "index should stay {next}: {}", brief(&n));
    let more = c.await_lists(&ch, "the replay of a", |l| got(l, &s, "changedObject", &a.url)).await?;
    let events = events_of(&more, &s);
    check_changed_object(c, &last_about(&events, "changedObject", &a.url)?.body, &a).await?;
    all.extend(more);
    let next = check_indexes(&all, &s, 1)?;
    // Both at once, from the first list's token.
    let n = update_sub(c, &s, json!({"duration": 1800, "restartToken": t1})).await?;
    ensure!(str_at(&n, "/restartToken")? == t1, "restartToken should be the one sent: {}", brief(&n));
    ensure!(u64_at(&n, "/index")? == next, "index should stay {next}: {}", brief(&n));
    let d = u64_at(&n, "/duration")?;
    ensure!(d > 0 && d <= 1800, "duration (asked 1800): {}", brief(&n));
    let b = c.object_in(&f, &[]).await?;
    let more = c.await_lists(&ch, "changedObject of b", |l| got(l, &s, "changedObject", &b.url)).await?;
    all.extend(more);
    check_indexes(&all, &s, 1)?;
    Ok(())
}

async fn indsubscr_delete(c: &Ctx) -> Res {
    let f = c.scratch("unsubscribe").await?;
    let ch = c.channel().await?;
    let cancelled = c.subscribe(&ch, "cancelled", json!({"duration": 600})).await?;
    let stays = c.subscribe(&ch, "stays", json!({"duration": 600})).await?;
    let o = c.object_in(&f, &[]).await?;
    c.await_lists(&ch, "both subscriptions' changedObject", |l| {
        got(l, &cancelled, "changedObject", &o.url) && got(l, &stays, "changedObject", &o.url)
    })
    .await?;
    let r = c.http.delete(&cancelled.url).await?;
    r.status(204)?;
    ensure!(r.body.is_empty(), "204 with a body: {}", r.describe());
    c.untrack(&cancelled.url);
    c.http.get(&cancelled.url).await?.error(404, "SVC0004")?;
    c.http.delete(&cancelled.url).await?.error(404, "SVC0004")?;
    let update = json!({"nmsSubscriptionUpdate": {"duration": 600}});
    c.http.post_json(&cancelled.url, &update).await?.error(404, "SVC0004")?;
    let urls = subscription_urls(c).await?;
    ensure!(!urls.contains(&cancelled.url) && urls.contains(&stays.url), "listed after the DELETE: {:?}", ids(&urls));
    // Notifications stop: the next change reaches only the other subscription.
    set_flag(c, &o, "Seen").await?;
    let lists = c.await_lists(&ch, "the flag change", |l| got(l, &stays, "changedObject", &o.url)).await?;
    ensure!(
        lists_of(&lists, &cancelled).is_empty(),
        "the cancelled subscription was still notified: {}",
        brief(&json!(lists))
    );
    Ok(())
}

async fn notif_support(c: &Ctx) -> Res {
    let f = c.scratch("notif").await?;
    let ch = c.channel().await?;
    let s = c.subscribe(&ch, "notif", json!({"duration": 600})).await?;
    let mut all = Vec::new();
    // Each tracked change (NMS 5.1.4.2), then the event that states its result.
    let g = c.folder_in(&f, "sub").await?;
    let e = next_event(c, &ch, &s, &mut all, "changedFolder", &g.url).await?;
    let g1 = check_changed_folder(c, &e, &g).await?;
    ensure!(str_at(&e, "/parentFolder")? == f.url, "changedFolder parentFolder should be {}: {}", f.url, brief(&e));
    let o = c.text_object_in(&f, "notify me", &[]).await?;
    let e = next_event(c, &ch, &s, &mut all, "changedObject", &o.url).await?;
    let o1 = check_changed_object(c, &e, &o).await?;
    set_flag(c, &o, "Seen").await?;
    let e = next_event(c, &ch, &s, &mut all, "changedObject", &o.url).await?;
    let o2 = check_changed_object(c, &e, &o).await?;
    ensure!(flag_list(&e, "/flags/flag")? == ["\\Seen"], "changedObject after setting \\Seen: {}", brief(&e));
    let name = format!("renamed-{}", c.tag);
    c.http.put_json(&format!("{}/folderName", g.url), &json!({"name": name})).await?.status(200)?;
    let e = next_event(c, &ch, &s, &mut all, "changedFolder", &g.url).await?;
    let g2 = check_changed_folder(c, &e, &g).await?;
    ensure!(str_at(&e, "/name")? == name && g2 > g1, "changedFolder after the rename: {}", brief(&e));
    let v = c.relocate("moveToFolder", &g.url, &[], &[&o.url]).await?.json_with(200)?;
    check_bulk(c, &v, "objects", &[Ok(&o.url)])?;
    let e = next_event(c, &ch, &s, &mut all, "changedObject", &o.url).await?;
    let o3 = check_changed_object(c, &e, &o).await?;
    ensure!(str_at(&e, "/parentFolder")? == g.url && o3 > o2 && o2 > o1, "changedObject after the move: {}", brief(&e));
    c.http.delete(&o.url).await?.status(204)?;
    let e = next_event(c, &ch, &s, &mut all, "deletedObject", &o.url).await?;
    ensure!(u64_at(&e, "/lastModSeq")? > o3, "deletedObject lastModSeq should exceed {o3}: {}", brief(&e));
    c.http.delete(&g.url).await?.status(204)?;
    let e = next_event(c, &ch, &s, &mut all, "deletedFolder", &g.url).await?;
    ensure!(u64_at(&e, "/lastModSeq")? > g2, "deletedFolder lastModSeq should exceed {g2}: {}", brief(&e));
    check_indexes(&all, &s, 1)?;
    Ok(())
}

async fn notif_lists(c: &Ctx) -> Res {
    let f = c.scratch("notiflist").await?;
    let ch = c.channel().await?;
    let s = c.subscribe(&ch, "notiflist", json!({"duration": 600})).await?;
    let correlation = format!("{}-{}", c.unique("correlation"), c.tag);
    let mut object = object_json(&f.url, &[("Subject", "notification")], &["\\Seen"]);
    object["correlationId"] = json!(correlation);
    let r = c.deposit(&object, Some((&[("Content-Type", "text/plain")], b"deposited"))).await?;
    let o = c.created(&r, "objects")?;
    let lists = c.await_lists(&ch, "the deposit's changedObject", |l| got(l, &s, "changedObject", &o.url)).await?;
    check_indexes(&lists, &s, 1)?;
    // The list: index 1, callbackData, restartToken and a link to the subscription.
    let list = lists_of(&lists, &s).pop().ok_or_else(|| fail!("no list"))?;
    let t1 = str_at(list, "/restartToken")?.to_string();
    ensure!(t1 != s.token, "the list's restartToken should name the point after its change: {}", brief(list));
    let links = arr_at(list, "/link")?;
    ensure!(
        links.iter().any(|l| {
            l.get("rel").and_then(Value::as_str).is_some_and(|r| r.eq_ignore_ascii_case("NmsSubscription"))
                && l.get("href") == Some(&json!(s.url))
        }),
        "link should hold {{rel: NmsSubscription, href: {}}}: {}",
        s.url,
        brief(list)
    );
    // The event states the deposited object, with its correlationId.
    let events = events_of(&lists, &s);
    let e = &last_about(&events, "changedObject", &o.url)?.body;
    let seq = check_changed_object(c, e, &o).await?;
    ensure!(flag_list(e, "/flags/flag")? == ["\\Seen"], "changedObject flags: {}", brief(e));
    ensure!(str_at(e, "/correlationId")? == correlation, "changedObject correlationId: {}", brief(e));
    // The next list: index 2, a restartToken after the first, the deletion.
    c.http.delete(&o.url).await?.status(204)?;
    let more = c.await_lists(&ch, "the deletedObject", |l| got(l, &s, "deletedObject", &o.url)).await?;
    let mut all = lists.clone();
    all.extend(more.iter().cloned());
    check_indexes(&all, &s, 1)?;
    ensure!(last_token(&more, &s)? != t1, "the second list should carry a new restartToken: {}", brief(&json!(more)));
    let events = events_of(&more, &s);
    let e = &last_about(&events, "deletedObject", &o.url)?.body;
    ensure!(u64_at(e, "/lastModSeq")? > seq, "deletedObject lastModSeq should exceed {seq}: {}", brief(e));
    if let Some(x) = e.get("correlationId") {
        ensure!(x == &json!(correlation), "deletedObject correlationId: {}", brief(e));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// CPM binding semantics (CPM- items: the CPM SCR table has no row for them)
// ---------------------------------------------------------------------------------------

/// A 1x1 GIF, the `[binaryData]` of Appendix C.
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// The remote party and the user's own address the CPM checks write (illustrative: no check
/// depends on the box's address).
const REMOTE: &str = "tel:+13105550000";
const OWN: &str = "tel:+12125551212";

/// The session description of a 1-1 session info object (Appendix F's shape).
const SESSION_INFO: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<session>\r\n\
    <session-type>1-1</session-type>\r\n<sdp>\r\nv=0\r\no=- 3973226098 3973226098 IN IP4 198.51.100.20\r\n\
    s=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\nm=message 7394 TCP/MSRP *\r\n\
    a=accept-types:message/cpim application/im-iscomposing+xml\r\n</sdp>\r\n</session>";

/// An object's JSON (without the `object` wrapper) in `parent` with exactly the single-valued
/// attributes `attrs` (no `Message-Context` added) and no flags.
fn cpm_json(parent: &Item, attrs: &[(&str, &str)]) -> Value {
    let list: Vec<Value> = attrs.iter().map(|(n, v)| json!({"name": n, "value": [v]})).collect();
    json!({"parentFolder": parent.url, "attributes": {"attribute": list}})
}

/// `POST /objects` of a JSON-only object (no payload).
async fn post_object(c: &Ctx, object: &Value) -> Res<Resp> {
    c.http.post_json(&c.objects(), &json!({ "object": object })).await
}

/// Create a JSON-only object; returns it.
async fn cpm_object(c: &Ctx, object: &Value) -> Res<Item> {
    let r = post_object(c, object).await?;
    c.created(&r, "objects").map_err(|e| fail!("creating {}: {e}", brief(object)))
}

/// Deposit an object with one payload of `content_type`; returns it.
async fn cpm_deposit(c: &Ctx, object: &Value, content_type: &str, payload: &[u8]) -> Res<Item> {
    let r = c.deposit(object, Some((&[("Content-Type", content_type)], payload))).await?;
    c.created(&r, "objects").map_err(|e| fail!("depositing {} ({content_type}): {e}", brief(object)))
}

/// A CPIM message (RFC 3862): the CPIM header lines, a blank line, the MIME header lines of
/// the encapsulated body, a blank line, the body; lines end in CRLF.
fn cpim(headers: &[&str], mime: &[&str], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    for block in [headers, mime] {
        for line in block {
            m.extend_from_slice(line.as_bytes());
            m.extend_from_slice(b"\r\n");
        }
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(body);
    m
}

/// An RFC 5438 disposition notification about `message_id`: `<{kind}-notification>` with
/// status `<{status}/>`, sent by `recipient`.
fn imdn_xml(message_id: &str, kind: &str, status: &str, recipient: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\r\n\
         <message-id>{message_id}</message-id>\r\n<datetime>2026-11-23T10:15:02Z</datetime>\r\n\
         <recipient-uri>{recipient}</recipient-uri>\r\n<original-recipient-uri>{recipient}</original-recipient-uri>\r\n\
         <{kind}-notification><status><{status}/></status></{kind}-notification>\r\n</imdn>"
    )
}

/// The IMDN `xml` as the CPIM message that carries it (its own IMDN Message-ID `own_id`),
/// sent by `REMOTE` to `OWN`.
fn imdn_cpim(own_id: &str, xml: &str) -> Vec<u8> {
    let id = format!("imdn.Message-ID: {own_id}");
    let headers = [
        &format!("From: <{REMOTE}>")[..],
        &format!("To: <{OWN}>")[..],
        "DateTime: 2026-11-23T10:15:04Z",
        "NS: imdn <urn:ietf:params:imdn>",
        &id,
    ];
    cpim(&headers, &["Content-Type: message/imdn+xml", "Content-Disposition: notification"], xml.as_bytes())
}

/// The root fields of an IMDN object deposited as a CPIM-wrapped notification.
fn imdn_root(parent: &Item) -> Value {
    cpm_json(parent, &[("Message-Context", "imdn-message"), ("Direction", "In")])
}

/// An IMDN object given directly by its attributes (CPM 5.3.10): `DispositionType`,
/// `DispositionStatus`, `DispositionOriginalMessageID`, `DispositionOriginalTo`, minus those
/// named in `without`.
fn imdn_json(parent: &Item, kind: &str, status: &str, original: &str, without: &[&str]) -> Value {
    let all = [
        ("Message-Context", "imdn-message"),
        ("Direction", "In"),
        ("DispositionType", kind),
        ("DispositionStatus", status),
        ("DispositionOriginalMessageID", original),
        ("DispositionOriginalTo", REMOTE),
    ];
    let attrs: Vec<(&str, &str)> = all.into_iter().filter(|(n, _)| !without.contains(n)).collect();
    cpm_json(parent, &attrs)
}

/// An object without payload: no `payloadURL`, and `payloadPart` absent or empty.
fn no_payload(ov: &Value) -> Res {
    absent(ov, "/payloadURL")?;
    if let Some(p) = ov.get("payloadPart") {
        ensure!(p.as_array().is_some_and(Vec::is_empty), "an object without payload has payload parts: {}", brief(ov));
    }
    Ok(())
}

/// The payload parts of `ov`, each `(contentType, bytes fetched from its href)`.
async fn part_contents(c: &Ctx, ov: &Value) -> Res<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for p in arr_at(ov, "/payloadPart")? {
        let href = str_at(p, "/href")?;
        c.check_url(href, "objects")?;
        let r = c.http.get(href).await?;
        r.status(200)?;
        let size = u64_at(p, "/size")?;
        ensure!(size == r.body.len() as u64, "payloadPart size {size} but {} bytes served: {}", r.body.len(), brief(p));
        out.push((str_at(p, "/contentType")?.to_string(), r.body.clone()));
    }
    Ok(out)
}

/// The media type of a `Content-Type` value, lower-case, without parameters.
fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// An RFC 3339 date-time (`2014-12-13T13:40:00-08:00`, `2014-12-13T21:40:00.000Z`) as
/// milliseconds since the epoch; `None` if it is not one.
fn instant(s: &str) -> Option<i64> {
    let num = |from: usize, len: usize| -> Option<i64> {
        let t = s.get(from..from + len)?;
        if t.bytes().all(|b| b.is_ascii_digit()) { t.parse().ok() } else { None }
    };
    let sep = |at: usize, set: &[u8]| s.as_bytes().get(at).is_some_and(|b| set.contains(b));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0, 4)?, num(5, 2)?, num(8, 2)?, num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        let digits = frac.get(..n).filter(|d| !d.is_empty())?;
        ms = format!("{:0<3}", digits.get(..n.min(3))?).parse::<i64>().ok()?;
        rest = frac.get(n..)?;
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let (oh, om) = (rest.get(1..3)?, rest.get(4..6)?);
            if rest.len() != 6
                || rest.get(3..4) != Some(":")
                || !(oh.bytes().chain(om.bytes())).all(|b| b.is_ascii_digit())
            {
                return None;
            }
            sign * (oh.parse::<i64>().ok()? * 60 + om.parse::<i64>().ok()?)
        }
    };
    // Days since 1970-01-01 of the proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + h * 3_600 + mi * 60 + sec - offset_min * 60) * 1_000 + ms)
}

/// `DELETE objects/operations/bulkDelete` with a body naming `urls` (CPM 6.4.1.7: several
/// objects in a single DELETE; the body as NMS's later bulk operations spell it).
async fn bulk_delete(c: &Ctx, urls: &[&str]) -> Res<Resp> {
    let refs: Vec<Value> = urls.iter().map(|u| json!({ "resourceURL": u })).collect();
    let body = json!({"bulkDelete": {"objects": {"objectReference": refs}}});
    c.http.req(Method::DELETE, &c.operation("objects", "bulkDelete")).json(&body).send().await
}

/// `o` must be gone: GET 404 SVC0004.
async fn gone(c: &Ctx, o: &Item, what: &str) -> Res {
    let r = c.http.get(&o.url).await?;
    r.error(404, "SVC0004").map_err(|e| fail!("{what} should be gone: {e}"))?;
    Ok(())
}

/// `o` must still be there, in folder `f`.
async fn still_in(c: &Ctx, o: &Item, f: &Item, what: &str) -> Res {
    let ov = c.get_json(&o.url).await.map_err(|e| fail!("{what} should still be there: {e}"))?;
    ensure!(str_at(&ov, "/object/parentFolder")? == f.url, "{what} should still be in {}: {}", f.path, brief(&ov));
    Ok(())
}

/// The objects in `f` must be exactly `want` (refused requests created nothing).
async fn only_objects(c: &Ctx, f: &Item, want: &[&Item]) -> Res {
    let (_, objs) = c.children(f, "Objects").await?;
    let want = sorted(want.iter().map(|o| o.url.clone()).collect());
    ensure!(sorted(objs.clone()) == want, "{} should hold {:?}, holds {:?}", f.path, ids(&want), ids(&objs));
    Ok(())
}

/// The single value of each attribute in `want` must be as given.
fn has_attrs(ov: &Value, want: &[(&str, &str)]) -> Res {
    for (n, v) in want {
        ensure!(attr(ov, n)? == Some(owned(&[v])), "attribute {n} should be [{v:?}]: {}", brief(ov));
    }
    Ok(())
}

async fn cpm_cpim(c: &Ctx) -> Res {
    let f = c.scratch("cpim").await?;
    // Appendix C's message, with an IMDN Message-ID and a Conversation-ID in the
    // encapsulated MIME headers (Table 1).
    let message_id = format!("{}-{}", c.unique("cpim"), c.tag);
    let conversation = format!("conv-{}", c.tag);
    let id_line = format!("imdn.Message-ID: {message_id}");
    let headers = [
        "From: MR SANDERS <im:piglet@100akerwood.com>",
        "To: Dopey Donkey <im:eeyore@100akerwood.com>",
        "DateTime: 2014-12-13T13:40:00-08:00",
        "Subject: the weather will be fine today",
        "Subject:;lang=fr beau temps prevu pour aujourd'hui",
        "NS: imdn <urn:ietf:params:imdn>",
        &id_line,
        "imdn.Disposition-Notification: positive-delivery, display",
    ];
    let text = b"See attached photo";
    let (body_type, body) = Multipart::new("7fekyzC-uQhXhZCGky5kU7wP")
        .part(
            &[
                ("Content-Disposition", "attachment; filename=body.txt; name=body.txt"),
                ("Content-Type", "text/plain; charset=UTF-8"),
            ],
            text,
        )
        .part(
            &[
                ("Content-Disposition", "attachment; filename=picture.gif; name=picture.gif"),
                ("Content-Type", "image/gif"),
            ],
            GIF,
        )
        .finish("multipart/mixed");
    let mime = [format!("Content-Type: {body_type}"), format!("Conversation-ID: {conversation}")];
    let mime: Vec<&str> = mime.iter().map(String::as_str).collect();
    let root = cpm_json(&f, &[("Message-Context", "chat-message"), ("Direction", "In")]);
    let o = cpm_deposit(c, &root, "message/cpim", &cpim(&headers, &mime, &body)).await?;
    let ov = read_object(c, &o).await?;
    ensure!(str_at(&ov, "/parentFolder")? == f.url, "parentFolder should be {}: {}", f.url, brief(&ov));
    // The CPIM attribute: the header block as one string, lines joined by CRLF (Appendix C).
    let block = attr1(&ov, "CPIM")?;
    ensure!(block == headers.join("\r\n"), "attribute CPIM should be the CPIM header block, CRLF-joined: {block:?}");
    has_attrs(
        &ov,
        &[
            ("From", "im:piglet@100akerwood.com"),
            ("To", "im:eeyore@100akerwood.com"),
            ("Subject", "the weather will be fine today"),
            ("Conversation-ID", &conversation),
            ("Message-Context", "chat-message"),
            ("Direction", "In"),
        ],
    )?;
    let date = attr1(&ov, "Date")?;
    ensure!(
        instant(&date).is_some() && instant(&date) == instant("2014-12-13T21:40:00Z"),
        "attribute Date {date:?} should be the CPIM DateTime 2014-12-13T13:40:00-08:00 as an xsd:dateTimeStamp"
    );
    let ct = attr1(&ov, "Content-Type")?;
    ensure!(essence(&ct) == "multipart/mixed", "attribute Content-Type {ct:?} should be the encapsulated body's type");
    ensure!(
        str_at(&ov, "/correlationId")? == message_id,
        "correlationId should be the imdn.Message-ID: {}",
        brief(&ov)
    );
    // The payload parts are the body parts of the encapsulated body.
    let parts = part_contents(c, &ov).await?;
    ensure!(parts.len() == 2, "the two encapsulated body parts should be the payload parts: {}", brief(&ov));
    ensure!(essence(&parts[0].0) == "text/plain" && parts[0].1 == text, "part 1 should be the text: {}", brief(&ov));
    ensure!(essence(&parts[1].0) == "image/gif" && parts[1].1 == GIF, "part 2 should be the GIF: {}", brief(&ov));

    // A single-part body from an anonymous sender (Table 1: From "anonymous"); a correlationId
    // the depositor gives is kept.
    let text = "Où es-tu ? 🙂";
    let given = format!("{}-{}", c.unique("given"), c.tag);
    let id_line = format!("imdn.Message-ID: {}-{}", c.unique("cpim"), c.tag);
    let to = format!("To: <{OWN}>");
    let headers = ["From: <sip:anonymous@anonymous.invalid>", &to, "NS: imdn <urn:ietf:params:imdn>", &id_line];
    let payload = cpim(&headers, &["Content-Type: text/plain; charset=UTF-8"], text.as_bytes());
    let mut root = cpm_json(&f, &[("Message-Context", "chat-message"), ("Direction", "In")]);
    root["correlationId"] = json!(given);
    let o2 = cpm_deposit(c, &root, "message/cpim", &payload).await?;
    let ov = read_object(c, &o2).await?;
    has_attrs(&ov, &[("From", "anonymous"), ("To", OWN)])?;
    ensure!(attr1(&ov, "CPIM")? == headers.join("\r\n"), "attribute CPIM: {}", brief(&ov));
    ensure!(essence(&attr1(&ov, "Content-Type")?) == "text/plain", "attribute Content-Type: {}", brief(&ov));
    ensure!(str_at(&ov, "/correlationId")? == given, "the given correlationId should be kept: {}", brief(&ov));
    let parts = part_contents(c, &ov).await?;
    ensure!(
        parts.len() == 1 && essence(&parts[0].0) == "text/plain" && parts[0].1 == text.as_bytes(),
        "the one payload part should be the encapsulated text: {}",
        brief(&ov)
    );
    only_objects(c, &f, &[&o, &o2]).await
}

async fn cpm_imdn(c: &Ctx) -> Res {
    let f = c.scratch("imdn").await?;
    // A delivery notification as received: CPIM-wrapped message/imdn+xml.
    let original = format!("{}-{}", c.unique("original"), c.tag);
    let own = format!("{}-{}", c.unique("imdn"), c.tag);
    let xml = imdn_xml(&original, "delivery", "delivered", REMOTE);
    let o = cpm_deposit(c, &imdn_root(&f), "message/cpim", &imdn_cpim(&own, &xml)).await?;
    let ov = read_object(c, &o).await?;
    has_attrs(
        &ov,
        &[
            ("Message-Context", "imdn-message"),
            ("DispositionType", "delivery"),
            ("DispositionStatus", "delivered"),
            ("DispositionOriginalMessageID", &original),
            ("DispositionOriginalTo", REMOTE),
        ],
    )?;
    no_payload(&ov).map_err(|e| fail!("an IMDN object has no payload (5.3.10): {e}"))?;
    // Given directly by its attributes.
    let d = cpm_object(c, &imdn_json(&f, "display", "displayed", &original, &[])).await?;
    let dv = read_object(c, &d).await?;
    has_attrs(
        &dv,
        &[
            ("Message-Context", "imdn-message"),
            ("DispositionType", "display"),
            ("DispositionStatus", "displayed"),
            ("DispositionOriginalMessageID", &original),
            ("DispositionOriginalTo", REMOTE),
        ],
    )?;
    no_payload(&dv)?;
    // Status and type must go together; an unknown type is refused too.
    for (kind, status) in [
        ("delivery", "displayed"),
        ("display", "delivered"),
        ("processing", "delivered"),
        ("display", "stored"),
        ("read", "displayed"),
    ] {
        let r = post_object(c, &imdn_json(&f, kind, status, &original, &[])).await?;
        r.error(400, "SVC0003").map_err(|e| fail!("DispositionType {kind} with DispositionStatus {status}: {e}"))?;
    }
    let xml = imdn_xml(&original, "display", "delivered", REMOTE);
    let r = c.deposit(&imdn_root(&f), Some((&[("Content-Type", "message/cpim")], &imdn_cpim(&own, &xml)))).await?;
    r.error(400, "SVC0003").map_err(|e| fail!("a display-notification with <delivered/>: {e}"))?;
    // The four attributes MUST all be set.
    for missing in ["DispositionType", "DispositionStatus", "DispositionOriginalMessageID", "DispositionOriginalTo"] {
        let r = post_object(c, &imdn_json(&f, "delivery", "delivered", &original, &[missing])).await?;
        r.error(400, "SVC0002").map_err(|e| fail!("an IMDN object without {missing}: {e}"))?;
    }
    // An IMDN object has no payload.
    let with_payload = imdn_json(&f, "delivery", "delivered", &original, &[]);
    let r = c.deposit(&with_payload, Some((&[("Content-Type", "text/plain")], b"delivered"))).await?;
    r.error(400, "SVC0002").map_err(|e| fail!("an IMDN object with a payload: {e}"))?;
    only_objects(c, &f, &[&o, &d]).await
}

/// A call log (Table 2) in `parent`: an incoming answered voice call of 300 s, with the
/// attributes of `set` added or replacing those of the same name, and those named in
/// `without` left out.
fn call_log(parent: &Item, set: &[(&str, &str)], without: &[&str]) -> Value {
    let base = [
        ("From", REMOTE),
        ("To", OWN),
        ("Call-Type", "voice"),
        ("Date", "2026-11-23T14:03:27Z"),
        ("Call-Disposition", "ANSWERED"),
        ("Call-Duration", "300"),
        ("Direction", "In"),
    ];
    let mut attrs: Vec<(&str, &str)> =
        base.into_iter().filter(|(n, _)| !without.contains(n) && !set.iter().any(|(s, _)| s == n)).collect();
    attrs.extend_from_slice(set);
    cpm_json(parent, &attrs)
}

async fn cpm_calllog(c: &Ctx) -> Res {
    let f = c.scratch("calllog").await?;
    // Every Table 2 attribute, the location a payload part its Geolocation names by cid.
    let cid = format!("{}-{}@conformance.example", c.unique("loc"), c.tag);
    let geolocation = format!("cid:{cid}");
    let set = [
        ("Verified-From-Status", "TN-Validation-Passed"),
        ("Call-subtype", "VoLTE"),
        ("Device-Name", "Alice’s Pixel"),
        ("Subject", "Quarterly planning"),
        ("Priority", "urgent"),
        ("Call-Info", "<https://www.example.com/bob/photo.jpg>;purpose=icon"),
        ("Geolocation", geolocation.as_str()),
    ];
    let mut object = call_log(&f, &set, &[]);
    object["flags"] = json!({"flag": ["\\Seen", "$CPM_CallLog_EnCall"]});
    let pidf = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
                xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\" entity=\"pres:+13105550000@ims.example.net\">\r\n\
                <tuple id=\"t1\"><status><gp:geopriv><gp:location-info/><gp:usage-rules/></gp:geopriv></status></tuple>\r\n\
                </presence>";
    let content_id = format!("<{cid}>");
    let (ct, payload) = Multipart::new("calllog-LH6uxl4xe5sJ93i5")
        .part(&[("Content-Type", "application/pidf+xml"), ("Content-ID", &content_id)], pidf.as_bytes())
        .finish("multipart/related");
    let o = cpm_deposit(c, &object, &ct, &payload).await?;
    let ov = read_object(c, &o).await?;
    has_attrs(
        &ov,
        &[
            ("From", REMOTE),
            ("To", OWN),
            ("Call-Type", "voice"),
            ("Call-Disposition", "ANSWERED"),
            ("Call-Duration", "300"),
            ("Direction", "In"),
        ],
    )?;
    has_attrs(&ov, &set)?;
    let date = attr1(&ov, "Date")?;
    ensure!(instant(&date) == instant("2026-11-23T14:03:27Z"), "attribute Date {date:?} should be as given");
    ensure!(
        sorted(flag_list(&ov, "/flags/flag")?) == ["$CPM_CallLog_EnCall", "\\Seen"],
        "flags should be kept: {}",
        brief(&ov)
    );
    let parts = arr_at(&ov, "/payloadPart")?;
    ensure!(
        parts.len() == 1 && str_at(&parts[0], "/contentId")? == cid,
        "the location part, contentId {cid}: {}",
        brief(&ov)
    );
    // Without a body; an outgoing call (Table 2 spells its values with a space); the two
    // special originators.
    let out = cpm_object(
        c,
        &call_log(
            &f,
            &[
                ("Direction", "Out"),
                ("From", OWN),
                ("To", REMOTE),
                ("Call-Disposition", "OUTGOING UNANSWERED"),
                ("Call-Duration", "0"),
            ],
            &[],
        ),
    )
    .await?;
    has_attrs(&read_object(c, &out).await?, &[("Call-Disposition", "OUTGOING UNANSWERED"), ("Direction", "Out")])?;
    let anonymous = cpm_object(
        c,
        &call_log(
            &f,
            &[("From", "sip:anonymous@anonymous.invalid"), ("Call-Type", "video"), ("Call-Disposition", "REJECTED")],
            &[],
        ),
    )
    .await?;
    let restricted =
        cpm_object(c, &call_log(&f, &[("From", "restricted"), ("Call-Disposition", "BLACKLISTED")], &[])).await?;
    // A missing mandatory attribute.
    for missing in ["From", "To", "Call-Type", "Call-Disposition", "Call-Duration", "Direction"] {
        let r = post_object(c, &call_log(&f, &[], &[missing])).await?;
        r.error(400, "SVC0002").map_err(|e| fail!("a call log without {missing}: {e}"))?;
    }
    // A value outside its enumeration.
    for (name, value, also) in [
        ("Call-Type", "fax", None),
        ("Call-Disposition", "MISSED", None),
        ("Call-Disposition", "OUTGOING ANSWERED", None),
        ("Call-Disposition", "ANSWERED", Some(("Direction", "Out"))),
        ("Verified-From-Status", "Passed", None),
        ("Priority", "high", None),
        ("Direction", "sideways", None),
    ] {
        let mut set = vec![(name, value)];
        set.extend(also);
        let r = post_object(c, &call_log(&f, &set, &[])).await?;
        r.error(400, "SVC0003").map_err(|e| fail!("a call log with {set:?}: {e}"))?;
    }
    let r = post_object(c, &call_log(&f, &[("Call-Duration", "5 min")], &[])).await?;
    r.error(400, "SVC0002").map_err(|e| fail!("Call-Duration \"5 min\" (seconds expected): {e}"))?;
    // A cid that names no payload part.
    let nowhere = format!("cid:nowhere-{}@conformance.example", c.tag);
    let bracketed = format!("<{nowhere}>");
    for (name, value) in [("Geolocation", nowhere.as_str()), ("Call-Info", bracketed.as_str())] {
        let r = post_object(c, &call_log(&f, &[(name, value)], &[])).await?;
        r.error(400, "SVC0002").map_err(|e| fail!("{name} {value} without payload parts: {e}"))?;
    }
    let r =
        c.deposit(&call_log(&f, &[("Geolocation", &nowhere)], &[]), Some((&[("Content-Type", &ct)], &payload))).await?;
    r.error(400, "SVC0002").map_err(|e| fail!("Geolocation {nowhere} naming none of the payload parts: {e}"))?;
    only_objects(c, &f, &[&o, &out, &anonymous, &restricted]).await
}

/// An SMS (`pager-message`) received from `REMOTE`, in `parent`.
fn sms_json(parent: &Item) -> Value {
    cpm_json(parent, &[("Message-Context", "pager-message"), ("Direction", "In"), ("From", REMOTE), ("To", OWN)])
}

async fn cpm_sms(c: &Ctx) -> Res {
    let f = c.scratch("sms").await?;
    let text = "On my way — see you at the café in 10 min 🙂";
    let o = cpm_deposit(c, &sms_json(&f), "text/plain; charset=UTF-8", text.as_bytes()).await?;
    let ov = read_object(c, &o).await?;
    let parts = part_contents(c, &ov).await?;
    ensure!(
        parts.len() == 1 && essence(&parts[0].0) == "text/plain" && parts[0].1 == text.as_bytes(),
        "an SMS should be one text/plain part holding the text: {}",
        brief(&ov)
    );
    // No unique reference: the server provides a correlationTag (7.4.1); one given is kept.
    ensure!(
        ov.get("correlationTag").and_then(Value::as_str).is_some_and(|t| !t.is_empty()),
        "an SMS without correlationId needs a server-provided correlationTag (7.4.1): {}",
        brief(&ov)
    );
    let tag = format!("{}-{}", c.unique("tag"), c.tag);
    let mut given = sms_json(&f);
    given["correlationTag"] = json!(tag);
    let o2 = cpm_deposit(c, &given, "text/plain; charset=utf-8", b"ok").await?;
    let ov = read_object(c, &o2).await?;
    ensure!(str_at(&ov, "/correlationTag")? == tag, "the given correlationTag should be kept: {}", brief(&ov));
    // Anything but one text/plain part in UTF-8 is refused.
    for (ct, payload) in [
        ("text/html; charset=UTF-8", &b"<p>On my way</p>"[..]),
        ("text/plain; charset=iso-8859-1", b"caf\xe9"),
        ("text/plain; charset=UTF-8", b"caf\xe9"),
        ("image/gif", GIF),
    ] {
        let r = c.deposit(&sms_json(&f), Some((&[("Content-Type", ct)], payload))).await?;
        r.error(400, "SVC0002")
            .map_err(|e| fail!("an SMS with a {ct} payload {:?}: {e}", String::from_utf8_lossy(payload)))?;
    }
    let (ct, two) = Multipart::new("conformance-sms-two")
        .part(&[("Content-Type", "text/plain; charset=UTF-8")], b"one")
        .part(&[("Content-Type", "text/plain; charset=UTF-8")], b"two")
        .finish("multipart/mixed");
    let r = c.deposit(&sms_json(&f), Some((&[("Content-Type", &ct)], &two))).await?;
    r.error(400, "SVC0002").map_err(|e| fail!("an SMS of two text/plain parts: {e}"))?;
    post_object(c, &sms_json(&f)).await?.error(400, "SVC0002").map_err(|e| fail!("an SMS without payload: {e}"))?;
    only_objects(c, &f, &[&o, &o2]).await
}

async fn cpm_flags(c: &Ctx) -> Res {
    let f = c.scratch("cpmflags").await?;
    // The flags 5.6 lists, and non-CPM object flags (5.3.9.2).
    let listed = [
        "\\Seen",
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Draft",
        "\\Recent",
        "$Forwarded",
        "\\read-report-sent",
        "Archived",
    ];
    let all = c.object_in(&f, &listed).await?;
    let vvm = c.object_in(&f, &["$CPM_VVM", "\\Seen"]).await?;
    let call = c.object_in(&f, &["$CPM_CallLog_EnCall"]).await?;
    for (o, want) in [(&all, &listed[..]), (&vvm, &["$CPM_VVM", "\\Seen"]), (&call, &["$CPM_CallLog_EnCall"])] {
        let got = sorted(flag_list(&read_object(c, o).await?, "/flags/flag")?);
        ensure!(got == sorted(owned(want)), "flags of {} should be {want:?}, got {got:?}", o.name);
    }
    let flag = |name: &str, set: &str| selection(&f, 10, &[crit("Flag", Some(name), set)], None);
    expect_found(c, "objects", "Flag $CPM_VVM", &flag("$CPM_VVM", "true"), &[&vvm]).await?;
    expect_found(c, "objects", "Flag $CPM_CallLog_EnCall", &flag("$CPM_CallLog_EnCall", "true"), &[&call]).await?;
    expect_found(c, "objects", "Flag $CPM_VVM false", &flag("$CPM_VVM", "false"), &[&all, &call]).await?;
    expect_found(c, "objects", "Flag \\read-report-sent", &flag("\\read-report-sent", "true"), &[&all]).await?;
    expect_found(c, "objects", "Flag Archived", &flag("Archived", "true"), &[&all]).await?;
    // Set and removed one by one, and searchable in between.
    let url = format!("{}/flags/%24CPM_VVMWI", vvm.url);
    c.http.req(Method::PUT, &url).send().await?.status(201)?;
    c.http.get(&url).await?.status(204)?;
    ensure!(sorted(c.flags(&vvm).await?) == ["$CPM_VVM", "$CPM_VVMWI", "\\Seen"], "flags after setting $CPM_VVMWI");
    expect_found(c, "objects", "Flag $CPM_VVMWI", &flag("$CPM_VVMWI", "true"), &[&vvm]).await?;
    c.http.delete(&url).await?.status(204)?;
    c.http.get(&url).await?.status(404)?;
    expect_found(c, "objects", "Flag $CPM_VVMWI after removing it", &flag("$CPM_VVMWI", "true"), &[]).await
}

async fn cpm_corr_search(c: &Ctx) -> Res {
    let f = c.scratch("corr").await?;
    let fresh = |hint: &str| format!("{}-{}", c.unique(hint), c.tag);
    let (id, tag, conversation, k1, k2) =
        (fresh("corr-id"), fresh("corr-tag"), fresh("conv"), fresh("contrib"), fresh("contrib"));
    let mut a = object_json(&f.url, &[("Conversation-ID", &conversation), ("Contribution-ID", &k1)], &[]);
    a["correlationId"] = json!(id);
    let a = cpm_object(c, &a).await?;
    let mut b = object_json(&f.url, &[], &[]);
    b["correlationTag"] = json!(tag);
    let b = cpm_object(c, &b).await?;
    let reply = object_json(
        &f.url,
        &[("Conversation-ID", &conversation), ("Contribution-ID", &k2), ("InReplyTo-Contribution-ID", &k1)],
        &[],
    );
    let reply = cpm_object(c, &reply).await?;
    // Near misses.
    let mut other = object_json(&f.url, &[], &[]);
    other["correlationId"] = json!(format!("{id}-other"));
    other["correlationTag"] = json!(format!("{tag}-other"));
    cpm_object(c, &other).await?;
    // Neither changes when the object moves or its flags change (5.4).
    let moved = c.folder_in(&f, "moved").await?;
    let v = c.relocate("moveToFolder", &moved.url, &[], &[&a.url, &b.url]).await?.json_with(200)?;
    check_bulk(c, &v, "objects", &[Ok(&a.url), Ok(&b.url)])?;
    set_flag(c, &a, "Seen").await?;
    set_flag(c, &b, "Seen").await?;
    let av = read_object(c, &a).await?;
    ensure!(
        str_at(&av, "/correlationId")? == id,
        "correlationId changed after a move and a flag change: {}",
        brief(&av)
    );
    let bv = read_object(c, &b).await?;
    ensure!(
        str_at(&bv, "/correlationTag")? == tag,
        "correlationTag changed after a move and a flag change: {}",
        brief(&bv)
    );
    // Fetch by reference (7.4.2): a criterion on each of the fields and attributes it names.
    let by = |name: &str, value: &str| selection(&f, 10, &[crit("Attribute", Some(name), value)], None);
    expect_found(c, "objects", "Conversation-ID", &by("Conversation-ID", &conversation), &[&a, &reply]).await?;
    expect_found(c, "objects", "Contribution-ID", &by("Contribution-ID", &k1), &[&a]).await?;
    expect_found(c, "objects", "InReplyTo-Contribution-ID", &by("InReplyTo-Contribution-ID", &k1), &[&reply]).await?;
    expect_found(c, "objects", "correlationId", &by("correlationId", &id), &[&a]).await?;
    expect_found(c, "objects", "correlationTag", &by("correlationTag", &tag), &[&b]).await
}

async fn cpm_corr_notify(c: &Ctx) -> Res {
    let f = c.scratch("corrnotif").await?;
    let ch = c.channel().await?;
    let s = c.subscribe(&ch, "corr", json!({"duration": 600})).await?;
    let (id, tag) = (format!("{}-{}", c.unique("corr-id"), c.tag), format!("{}-{}", c.unique("corr-tag"), c.tag));
    let mut object = object_json(&f.url, &[], &[]);
    object["correlationId"] = json!(id);
    object["correlationTag"] = json!(tag);
    let o = cpm_object(c, &object).await?;
    let mut all = Vec::new();
    let e = next_event(c, &ch, &s, &mut all, "changedObject", &o.url).await?;
    ensure!(
        e.get("correlationId") == Some(&json!(id)) && e.get("correlationTag") == Some(&json!(tag)),
        "changedObject should carry correlationId {id} and correlationTag {tag}: {}",
        brief(&e)
    );
    c.http.delete(&o.url).await?.status(204)?;
    let e = next_event(c, &ch, &s, &mut all, "deletedObject", &o.url).await?;
    ensure!(
        e.get("correlationId") == Some(&json!(id)) && e.get("correlationTag") == Some(&json!(tag)),
        "deletedObject should carry correlationId {id} and correlationTag {tag}: {}",
        brief(&e)
    );
    Ok(())
}

/// A CPM session's object in `folder`: `Message-Context` `context` with the session's ids.
async fn session_object(c: &Ctx, folder: &Item, context: &str, ids: (&str, &str)) -> Res<Item> {
    let attrs = [
        ("Message-Context", context),
        ("Direction", "Out"),
        ("From", OWN),
        ("To", REMOTE),
        ("Conversation-ID", ids.0),
        ("Contribution-ID", ids.1),
    ];
    let mut object = cpm_json(folder, &attrs);
    if context == "session-info-message" {
        return cpm_deposit(c, &object, "Application/X-CPM-Session", SESSION_INFO.as_bytes()).await;
    }
    object["correlationId"] = json!(format!("{}-{}", c.unique("msg"), c.tag));
    cpm_deposit(c, &object, "text/plain; charset=UTF-8", b"Weekend plans?").await
}

async fn cpm_session_rules(c: &Ctx) -> Res {
    let f = c.scratch("session").await?;
    let (conversation, contribution) = (format!("conv-{}", c.tag), format!("{}-{}", c.unique("session"), c.tag));
    let ids = (conversation.as_str(), contribution.as_str());
    let session = c.folder_in(&f, "session").await?;
    let elsewhere = c.folder_in(&f, "elsewhere").await?;
    let info = session_object(c, &session, "session-info-message", ids).await?;
    let m1 = session_object(c, &session, "chat-message", ids).await?;
    let m2 = session_object(c, &session, "chat-message", ids).await?;
    // Single DELETE: refused while messages remain.
    let r = c.http.delete(&info.url).await?;
    r.error(403, "POL0001").map_err(|e| fail!("deleting the session info object: {e}"))?;
    still_in(c, &info, &session, "the session info object").await?;
    // moveToFolder: refused for it, the message beside it in the same request moves.
    let v = c.relocate("moveToFolder", &elsewhere.url, &[], &[&info.url, &m1.url]).await?.json_with(200)?;
    check_responses(c, &v, &[Expect::Failure(403, "POL0001"), Expect::Success(200, "objects", Some(&m1.url))])
        .map_err(|e| fail!("moving the session info object and a message: {e}"))?;
    still_in(c, &info, &session, "the session info object").await?;
    still_in(c, &m1, &elsewhere, "the moved message").await?;
    // Bulk DELETE: refused per item (alone, the whole request fails).
    let r = bulk_delete(c, &[&info.url]).await?;
    bulk_refused(c, &r, 403, "POL0001").map_err(|e| fail!("bulk-deleting the session info object: {e}"))?;
    let v = bulk_delete(c, &[&info.url, &m1.url]).await?.json_with(200)?;
    check_responses(c, &v, &[Expect::Failure(403, "POL0001"), Expect::Success(200, "objects", Some(&m1.url))])
        .map_err(|e| fail!("bulk-deleting the session info object and another message: {e}"))?;
    gone(c, &m1, "the bulk-deleted message").await?;
    still_in(c, &info, &session, "the session info object").await?;
    // The whole session history folder may move, and go (7.3.3.5).
    let v = c.relocate("moveToFolder", &elsewhere.url, &[&session.url], &[]).await?.json_with(200)?;
    check_bulk(c, &v, "folders", &[Ok(&session.url)]).map_err(|e| fail!("moving the whole session folder: {e}"))?;
    still_in(c, &info, &session, "the session info object (moved with its folder)").await?;
    c.http.delete(&session.url).await?.status(204).map_err(|e| fail!("deleting the whole session folder: {e}"))?;
    gone(c, &info, "the session info object of the deleted folder").await?;
    gone(c, &m2, "the message of the deleted folder").await
}

async fn cpm_session_imdns(c: &Ctx) -> Res {
    let f = c.scratch("imdns").await?;
    // A message deposited as CPIM (its imdn.Message-ID the correlationId), another by JSON.
    let (id1, id2, id3) = (
        format!("{}-{}", c.unique("msg"), c.tag),
        format!("{}-{}", c.unique("msg"), c.tag),
        format!("{}-{}", c.unique("msg"), c.tag),
    );
    let id_line = format!("imdn.Message-ID: {id1}");
    let (from, to) = (format!("From: <{OWN}>"), format!("To: <{REMOTE}>"));
    let headers = [
        &from[..],
        &to,
        "NS: imdn <urn:ietf:params:imdn>",
        &id_line,
        "imdn.Disposition-Notification: positive-delivery, display",
    ];
    let payload = cpim(&headers, &["Content-Type: text/plain; charset=UTF-8"], b"Weekend plans?");
    let root = cpm_json(&f, &[("Message-Context", "chat-message"), ("Direction", "Out")]);
    let m1 = cpm_deposit(c, &root, "message/cpim", &payload).await?;
    let m1v = read_object(c, &m1).await?;
    ensure!(str_at(&m1v, "/correlationId")? == id1, "correlationId should be the imdn.Message-ID: {}", brief(&m1v));
    let mut m2 = object_json(&f.url, &[("Direction", "Out")], &[]);
    m2["correlationId"] = json!(id2);
    let m2 = cpm_object(c, &m2).await?;
    // Their IMDNs, and one about a message that is not deleted.
    let own = || format!("{}-{}", c.unique("imdn"), c.tag);
    let xml = imdn_xml(&id1, "delivery", "delivered", REMOTE);
    let d1 = cpm_deposit(c, &imdn_root(&f), "message/cpim", &imdn_cpim(&own(), &xml)).await?;
    let d2 = cpm_object(c, &imdn_json(&f, "display", "displayed", &id1, &[])).await?;
    let d3 = cpm_object(c, &imdn_json(&f, "delivery", "delivered", &id2, &[])).await?;
    let keep = cpm_object(c, &imdn_json(&f, "delivery", "delivered", &id3, &[])).await?;
    // DELETE of the message takes its IMDNs (7.3.3.5).
    c.http.delete(&m1.url).await?.status(204)?;
    gone(c, &d1, "the delivery IMDN of the deleted message").await?;
    gone(c, &d2, "the display IMDN of the deleted message").await?;
    still_in(c, &d3, &f, "an IMDN of another message").await?;
    // So does a bulk DELETE (7.3.3.6).
    let v = bulk_delete(c, &[&m2.url]).await?.json_with(200)?;
    check_responses(c, &v, &[Expect::Success(200, "objects", Some(&m2.url))])?;
    gone(c, &d3, "the IMDN of the bulk-deleted message").await?;
    only_objects(c, &f, &[&keep]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_ids_are_encoded_like_the_server_emits_them() {
        assert_eq!(enc("tel:+12125551212"), "tel%3A%2B12125551212");
        assert_eq!(enc("sip:bob.smith@example.com"), "sip%3Abob.smith%40example.com");
        assert_eq!(enc("/a b/c~d_e-f"), "%2Fa%20b%2Fc~d_e-f");
    }

    #[test]
    fn tampering_changes_a_cursor() {
        for c in ["", "A", "AAAA", "abcdef", "x.y-z"] {
            assert_ne!(tamper(c), c);
        }
    }

    #[test]
    fn every_item_appears_once_and_optional_items_are_the_cpm_optional_ones() {
        let mut ids: Vec<_> = CASES.iter().map(|c| c.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), CASES.len());
        let optional: Vec<_> = CASES.iter().filter(|c| !c.mandatory).map(|c| c.id).collect();
        assert_eq!(
            optional,
            [
                "REST-NMS-SUPPORT-S-002-M",
                "REST-NMS-AOBJECT-FLAGS-S-003-O",
                "REST-NMS-AOBJECT-PAYLOAD-S-001-M",
                "REST-NMS-AOBJECT-PAYLOAD-S-002-M",
                "REST-NMS-FOLDERS-SEARCH-S-003-O",
                "REST-NMS-SUBSCR-S-002-O",
                "REST-NMS-SUBSCR-S-005-O",
                "CPM-CORR-S-002"
            ]
        );
        // Optional in NMS, Mandatory in the CPM table.
        assert!(CASES.iter().any(|c| c.id == "REST-NMS-OBJECTS-bulkCreation-S-001-O" && c.mandatory));
    }

    #[test]
    fn long_poll_answers_in_every_notification_channel_shape() {
        let list = json!({"index": 1, "restartToken": "t", "nmsEvent": []});
        let lists = |v: Value| notification_lists(&v).map(|l| l.len()).unwrap_or(usize::MAX);
        assert_eq!(lists(json!({"notificationList": [{"nmsEventList": list}, {"nmsEventList": list}]})), 2);
        assert_eq!(lists(json!({"notificationList": {"nmsEventList": list}})), 1);
        assert_eq!(lists(json!({"notificationList": {"nmsEventList": [list, list]}})), 2);
        assert_eq!(lists(json!({"nmsEventList": list})), 1);
        assert_eq!(lists(json!({"notificationList": []})), 0);
        assert_eq!(lists(json!({"notificationList": null})), 0);
        assert!(notification_lists(&json!({})).is_err());
        assert!(notification_lists(&json!({"notificationList": [{"other": {}}]})).is_err());
        assert!(notification_lists(&json!({"notificationList": "x"})).is_err());
    }

    #[test]
    fn events_have_exactly_one_known_kind() {
        let e = json!({"deletedObject": {"resourceURL": "u"}});
        assert_eq!(event_kind(&e).ok().map(|(k, _)| k), Some("deletedObject"));
        assert!(event_kind(&json!({"resetBox": {}})).is_ok());
        assert!(event_kind(&json!({"movedObject": {}})).is_err());
        assert!(event_kind(&json!({"changedObject": {}, "deletedObject": {}})).is_err());
        assert!(event_kind(&json!([])).is_err());
    }

    fn sub(data: &str) -> Sub {
        Sub { url: "u".into(), data: data.into(), token: "t".into(), created: json!({}) }
    }

    #[test]
    fn lists_are_told_apart_by_callback_data_and_indexed_by_one() {
        let l = |cb: &str, index: u64, url: &str| {
            json!({"callbackData": cb, "index": index, "restartToken": format!("t{index}"),
                   "nmsEvent": [{"changedObject": {"resourceURL": url}}]})
        };
        let (a, b) = (sub("a"), sub("b"));
        let lists = [l("a", 1, "x"), l("b", 1, "y"), l("a", 2, "z"), l("b", 3, "w")];
        assert_eq!(check_indexes(&lists, &a, 1).ok(), Some(3));
        assert!(check_indexes(&lists, &b, 1).is_err(), "a gap in b's indexes");
        assert!(check_indexes(&lists, &a, 2).is_err());
        assert!(got(&lists, &a, "changedObject", "z") && !got(&lists, &a, "changedObject", "y"));
        assert!(!got(&lists, &a, "deletedObject", "z"));
        assert_eq!(last_token(&lists, &a).ok().as_deref(), Some("t2"));
        let events = events_of(&lists, &b);
        assert_eq!(summary(&events), "[changedObject y (list 1), changedObject w (list 3)]");
        assert!(last_about(&events, "deletedObject", "w").is_err());
    }

    #[test]
    fn a_subscription_read_back_must_match_with_a_shorter_duration() {
        let want = json!({"resourceURL": "u", "callbackReference": {"notifyURL": "n"}, "index": 1,
                          "restartToken": "t", "duration": 600});
        let mut got = want.clone();
        got["duration"] = json!(599);
        assert!(same_subscription(&got, &want).is_ok());
        got["duration"] = json!(601);
        assert!(same_subscription(&got, &want).is_err());
        got["duration"] = json!(10);
        got["restartToken"] = json!("t2");
        assert!(same_subscription(&got, &want).is_err());
        got["restartToken"] = json!("t");
        got["clientCorrelator"] = json!("invented");
        assert!(same_subscription(&got, &want).is_err());
    }

    #[test]
    fn rfc3339_instants_compare_across_offsets_and_fractions() {
        assert_eq!(instant("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(instant("2000-03-01T00:00:00.5Z"), Some(951_868_800_500));
        assert_eq!(instant("2014-12-13T13:40:00-08:00"), instant("2014-12-13T21:40:00Z"));
        assert_eq!(instant("2014-12-13T21:40:00.000Z"), instant("2014-12-13t21:40:00z"));
        assert_eq!(instant("2014-12-14T00:10:00+02:30"), instant("2014-12-13T21:40:00Z"));
        for bad in [
            "",
            "2014-12-13",
            "2014-12-13T21:40:00",
            "2014-13-13T21:40:00Z",
            "2014-12-13T21:40:00+0800",
            "2014-12-13T21:40:00.Z",
            "13 Dec 2014",
        ] {
            assert_eq!(instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn call_logs_are_built_from_the_valid_base() {
        let f = Item { url: "u".into(), path: String::new(), name: String::new() };
        let v = call_log(&f, &[("Direction", "Out"), ("Priority", "urgent")], &["Call-Duration"]);
        let names: Vec<&str> = v["attributes"]["attribute"]
            .as_array()
            .map(|l| l.iter().filter_map(|a| a["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(names, ["From", "To", "Call-Type", "Date", "Call-Disposition", "Direction", "Priority"]);
        assert_eq!(attr(&v, "Direction").ok().flatten(), Some(vec!["Out".to_string()]));
        assert_eq!(v["parentFolder"], "u");
    }

    #[test]
    fn cpim_messages_have_two_header_blocks() {
        let m = cpim(&["From: <a>", "To: <b>"], &["Content-Type: text/plain"], b"hi");
        assert_eq!(m, b"From: <a>\r\nTo: <b>\r\n\r\nContent-Type: text/plain\r\n\r\nhi");
        assert!(imdn_xml("m1", "display", "displayed", REMOTE).contains("<display-notification><status><displayed/>"));
    }

    #[test]
    fn attributes_are_read_case_insensitively_and_checked() {
        let o = json!({"attributes": {"attribute": [{"name": "Date", "value": ["x"]}, {"name": "To", "value": ["a", "b"]}]}});
        assert_eq!(attr(&o, "date").ok().flatten(), Some(vec!["x".to_string()]));
        assert_eq!(attr(&o, "to").ok().flatten(), Some(vec!["a".to_string(), "b".to_string()]));
        assert!(attr1(&o, "To").is_err());
        let bad = json!({"attributes": {"attribute": [{"name": "Date", "value": "x"}]}});
        assert!(attr(&bad, "Date").is_err());
    }
}
