//! Blob-store faults: a store that refuses the last write of an upload (a full disk, a
//! broken store, a write that landed but was reported failed) or its parts, and a real local directory
//! that cannot take a write. Each deposit, single or bulk, gets an OMA error (507 when the
//! disk is full), the server keeps serving, and nothing half-written is left: no object, no
//! change of the box modseq, no blob, no temporary. A copy writes nothing to the blob store
//! (copies share blobs) and succeeds while the store refuses writes. A client that goes away
//! mid-upload, or during the last write, leaves no upload and no temporary either.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::helpers::*;

/// How the store fails its final writes (`put`, and `complete` of a multipart upload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Writes succeed.
    None,
    /// No space left on the device (`ENOSPC`).
    Full,
    /// Any other failure (here: permission denied).
    Broken,
}

#[derive(Debug, Default)]
struct Faults {
    fault: Mutex<Option<Fault>>,
    /// The write reaches the disk before the failure is reported (a lost acknowledgement).
    after_write: AtomicBool,
    /// Final writes that still succeed before the fault applies.
    spared: AtomicUsize,
    multipart_starts: AtomicUsize,
    multipart_aborts: AtomicUsize,
    /// Every part of a multipart upload fails.
    parts_fail: AtomicBool,
    /// `put`s wait for `release_puts`; like the local store's, a held write goes on when
    /// its caller drops the future.
    hold_puts: AtomicBool,
    put_released: tokio::sync::Notify,
    put_started: tokio::sync::Notify,
    /// Times the future of a held `put` was polled.
    held_put_polls: AtomicUsize,
    put_done: tokio::sync::Notify,
}

impl Faults {
    fn set(&self, fault: Fault, after_write: bool) {
        self.set_after(0, fault, after_write);
    }

    /// Fail every final write after the next `spared` ones.
    fn set_after(&self, spared: usize, fault: Fault, after_write: bool) {
        *self.fault.lock().unwrap() = Some(fault);
        self.spared.store(spared, Ordering::SeqCst);
        self.after_write.store(after_write, Ordering::SeqCst);
    }

    /// The error of the final write, if it fails now.
    fn failure(&self) -> Option<object_store::Error> {
        let fault = self.fault.lock().unwrap().unwrap_or(Fault::None);
        if fault == Fault::None
            || self.spared.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            return None;
        }
        let kind = match fault {
            Fault::None => return None,
            Fault::Full => std::io::ErrorKind::StorageFull,
            Fault::Broken => std::io::ErrorKind::PermissionDenied,
        };
        Some(object_store::Error::Generic { store: "faulty", source: Box::new(std::io::Error::from(kind)) })
    }

    fn after_write(&self) -> bool {
        self.after_write.load(Ordering::SeqCst)
    }

    fn part_failure(&self) -> Option<object_store::Error> {
        let failing = self.parts_fail.load(Ordering::SeqCst);
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        failing.then(|| object_store::Error::Generic { store: "faulty", source: Box::new(e) })
    }

    /// Let one held `put` go on.
    fn release_put(&self) {
        self.put_released.notify_one();
    }
}

/// `LocalFileSystem` over the data directory's `blobs`, with the faults of `faults`.
#[derive(Debug)]
struct FaultyStore {
    inner: Arc<LocalFileSystem>,
    faults: Arc<Faults>,
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.faults.hold_puts.load(Ordering::SeqCst) {
            self.faults.put_started.notify_one();
            let (inner, faults, location) = (self.inner.clone(), self.faults.clone(), location.clone());
            let held = tokio::spawn(async move {
                faults.put_released.notified().await;
                let res = inner.put_opts(&location, payload, opts).await;
                faults.put_done.notify_one();
                res
            });
            let mut held = std::pin::pin!(held);
            return std::future::poll_fn(|cx| {
                self.faults.held_put_polls.fetch_add(1, Ordering::SeqCst);
                held.as_mut().poll(cx)
            })
            .await
            .unwrap();
        }
        match self.faults.failure() {
            None => self.inner.put_opts(location, payload, opts).await,
            Some(e) => {
                if self.faults.after_write() {
                    self.inner.put_opts(location, payload, opts).await?;
                }
                Err(e)
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        self.faults.multipart_starts.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FaultyUpload { inner, faults: self.faults.clone() }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Arc<Faults>,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match self.faults.part_failure() {
            None => self.inner.put_part(data),
            Some(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        match self.faults.failure() {
            None => self.inner.complete().await,
            Some(e) => {
                if self.faults.after_write() {
                    self.inner.complete().await?;
                }
                Err(e)
            }
        }
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.faults.multipart_aborts.fetch_add(1, Ordering::SeqCst);
        self.inner.abort().await
    }
}

/// The application over a faulty store, uploads written in 256 KiB chunks (so a part
/// above that is a multipart upload, below it one `put`), and the handle on its faults.
async fn spawn_faulty_app() -> (TestApp, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let handle = faults.clone();
    let app = spawn_app_over(
        |s| s.storage.write_buffer_bytes = 256 * 1024,
        move |dir| {
            std::fs::create_dir_all(dir).unwrap();
            let inner = Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap());
            Some(Arc::new(FaultyStore { inner, faults: handle }))
        },
    )
    .await;
    (app, faults)
}

const SIZES: [usize; 3] = [100 * 1024, 700 * 1024, 2 * 1024 * 1024];

fn content(size: usize, seed: u8) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn one_part_deposit(content: &[u8]) -> (String, Vec<u8>) {
    form()
        .root_fields(&json!({"parentFolderPath": "/faults"}))
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")], content)
        .finish("multipart/form-data")
}

/// A bulkCreation of an inline text object and one object per content.
fn bulk_deposit(contents: &[Vec<u8>]) -> (String, Vec<u8>) {
    let objects: Vec<Value> = (0..=contents.len()).map(|_| json!({"parentFolderPath": "/faults/bulk"})).collect();
    let roots = serde_json::to_vec(&json!({"objectList": {"object": objects}})).unwrap();
    let mut m = form()
        .part(
            &[("Content-Disposition", "form-data; name=\"root-fields\""), ("Content-Type", "application/json")],
            &roots,
        )
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "text/plain")], b"hi");
    for c in contents {
        m = m.part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")], c);
    }
    m.finish("multipart/form-data")
}

async fn bulk_create(app: &TestApp, ct: &str, body: Vec<u8>) -> reqwest::Response {
    app.req(Method::POST, &format!("{}/objects/operations/bulkCreation", app.base(ALICE)))
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Deposit `content` as a one-part object: its URL.
async fn stored(app: &TestApp, content: &[u8]) -> String {
    let (ct, body) = one_part_deposit(content);
    let res = app.deposit(&ct, body).await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["reference"]["resourceURL"].as_str().unwrap().to_string()
}

/// What a refused request must leave as it was: the objects of alice's box, its modseq.
#[derive(Debug, PartialEq)]
struct Snapshot {
    objects: usize,
    modseq: i64,
}

async fn snapshot(app: &TestApp) -> Snapshot {
    let modseq = app.nms.find_box("base", ALICE).await.unwrap().unwrap().modseq;
    Snapshot { objects: app.object_count().await, modseq }
}

/// The SHA-256 of the first payload part of the object at `url`, as served.
async fn payload_sha(app: &TestApp, url: &str) -> String {
    let o: Value = app.get(url).await.json().await.unwrap();
    let href = o["object"]["payloadPart"][0]["href"].as_str().unwrap().to_string();
    let res = app.get(&href).await;
    assert_eq!(res.status(), 200);
    hex::encode(Sha256::digest(res.bytes().await.unwrap()))
}

fn sha(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

/// The refused request left nothing: the same objects and box modseq as `before`, no blob
/// or temporary beyond `blobs_before`.
async fn assert_unchanged(app: &TestApp, before: &Snapshot, blobs_before: usize, case: &str) {
    assert_eq!(&snapshot(app).await, before, "{case}: no object created, box modseq unchanged");
    assert_eq!(app.blob_files().len(), blobs_before, "{case}: no blob or temporary: {:?}", app.blob_files());
}

#[tokio::test]
async fn a_failing_last_write_is_an_oma_error_and_leaves_nothing_half_written() {
    let (app, faults) = spawn_faulty_app().await;
    // The folder exists beforehand, so a refused deposit has nothing to create either.
    stored(&app, b"inline").await;
    let before = snapshot(&app).await;
    let cases = [
        (Fault::Full, false, 507, "disk full"),
        (Fault::Broken, false, 500, "store broken"),
        (Fault::Broken, true, 500, "written, reported failed"),
    ];
    for (fault, after_write, status, what) in cases {
        for size in SIZES {
            let case = format!("{what}, {size} bytes");
            faults.set(fault, after_write);
            let (ct, body) = one_part_deposit(&content(size, 1));
            let exc = assert_error(app.deposit(&ct, body).await, status, "SVC0001").await;
            if status == 507 {
                assert_eq!(exc["variables"][0], "insufficient storage", "{case}");
            }
            // The worker that served the failed request serves the next one.
            faults.set(Fault::None, false);
            assert_eq!(app.get(&app.root().await).await.status(), 200, "{case}");
            assert_unchanged(&app, &before, 0, &case).await;
        }
    }
    // Multipart uploads that failed to complete were aborted by object_store itself, once.
    assert_eq!(faults.multipart_aborts.load(Ordering::SeqCst), 6);
    // The store works again: the same deposits are stored, intact.
    for size in SIZES {
        let c = content(size, 2);
        let url = stored(&app, &c).await;
        assert_eq!(payload_sha(&app, &url).await, sha(&c));
    }
    assert_eq!(app.blob_files().len(), 3, "three blobs, no temporary: {:?}", app.blob_files());
}

#[tokio::test]
async fn a_failing_part_upload_aborts_its_multipart_upload_and_leaves_nothing() {
    let (app, faults) = spawn_faulty_app().await;
    stored(&app, b"inline").await;
    let before = snapshot(&app).await;
    faults.parts_fail.store(true, Ordering::SeqCst);
    // 700 KiB: the failed parts are seen by the last write; 3 MiB: by a write that waits
    // for one of the eight parts in flight.
    for size in [700 * 1024, 3 * 1024 * 1024] {
        let case = format!("failing parts, {size} bytes");
        let aborts = faults.multipart_aborts.load(Ordering::SeqCst);
        let (ct, body) = one_part_deposit(&content(size, 13));
        assert_error(app.deposit(&ct, body).await, 500, "SVC0001").await;
        assert_eq!(faults.multipart_aborts.load(Ordering::SeqCst), aborts + 1, "{case}: aborted once");
        assert_unchanged(&app, &before, 0, &case).await;
    }
    assert_eq!(faults.multipart_starts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_bulk_creation_whose_blob_cannot_be_written_creates_none_of_its_objects() {
    let (app, faults) = spawn_faulty_app().await;
    stored(&app, b"inline").await;
    let before = snapshot(&app).await;
    for (fault, status) in [(Fault::Full, 507), (Fault::Broken, 500)] {
        // The first blob is stored, the second's last write fails: the whole request fails
        // and the first blob goes too.
        faults.set_after(1, fault, false);
        let (ct, body) = bulk_deposit(&[content(100 * 1024, 3), content(700 * 1024, 4)]);
        assert_error(bulk_create(&app, &ct, body).await, status, "SVC0001").await;
        faults.set(Fault::None, false);
        assert_unchanged(&app, &before, 0, &format!("bulk, {fault:?}")).await;
    }
    // A bulk creation whose every blob fails is refused the same way.
    faults.set(Fault::Full, false);
    let (ct, body) = bulk_deposit(&[content(2 * 1024 * 1024, 5)]);
    assert_error(bulk_create(&app, &ct, body).await, 507, "SVC0001").await;
    faults.set(Fault::None, false);
    assert_unchanged(&app, &before, 0, "bulk, all").await;
    // And once the store works, the same request creates every object.
    let (ct, body) = bulk_deposit(&[content(100 * 1024, 3), content(700 * 1024, 4)]);
    let res = bulk_create(&app, &ct, body).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let codes: Vec<u64> =
        v["bulkResponseList"]["response"].as_array().unwrap().iter().map(|r| r["code"].as_u64().unwrap()).collect();
    assert_eq!(codes, [201, 201, 201]);
    assert_eq!(app.object_count().await, before.objects + 3);
}

#[tokio::test]
async fn a_copy_writes_no_blob_and_succeeds_while_the_store_refuses_writes() {
    let (app, faults) = spawn_faulty_app().await;
    let c = content(700 * 1024, 6);
    let original = stored(&app, &c).await;
    let target = app.create_folder(json!({"parentFolderPath": "/", "name": "copies"})).await;
    faults.set(Fault::Full, false);
    let body = json!({"targetSourceRef": {"targetRef": {"resourceURL": target},
        "sourceRefs": {"objects": {"objectReference": [{"resourceURL": original}]}}}});
    let (status, v) = app.post_rel("/folders/operations/copyToFolder", body).await;
    assert_eq!(status, 200, "{v}");
    let item = &v["bulkResponseList"]["response"][0];
    assert_eq!(item["code"], 200, "{v}");
    let copy = item["success"]["resourceURL"].as_str().unwrap().to_string();
    assert_eq!(payload_sha(&app, &copy).await, sha(&c));
    assert_eq!(app.blob_files().len(), 1, "one shared blob, no temporary: {:?}", app.blob_files());
    // While the store still refuses writes, deleting the original keeps the copy's blob.
    assert_eq!(app.delete(&original).await.status(), 204);
    assert_eq!(payload_sha(&app, &copy).await, sha(&c));
    assert_eq!(app.blob_files().len(), 1);
}

/// Replaces a directory with a regular file while it is in place, and puts it back.
///
/// This is the real failure the local-disk tests use: creating anything under a path
/// whose parent is a regular file fails (`ENOTDIR`) for every user. `chmod 0555` would not
/// do: tests run as root in CI, and root writes into a read-only directory; a full tmpfs
/// or `chattr +i` need privileges.
struct NotADirectory<'a>(&'a std::path::Path);

impl<'a> NotADirectory<'a> {
    fn new(dir: &'a std::path::Path) -> Self {
        std::fs::remove_dir(dir).unwrap();
        std::fs::write(dir, b"not a directory").unwrap();
        Self(dir)
    }
}

impl Drop for NotADirectory<'_> {
    fn drop(&mut self) {
        std::fs::remove_file(self.0).unwrap();
        std::fs::create_dir(self.0).unwrap();
    }
}

#[tokio::test]
async fn a_blob_directory_that_cannot_be_written_is_an_oma_error_and_leaves_nothing() {
    let app = spawn_app().await;
    stored(&app, b"inline").await;
    let kept = content(50_000, 7);
    let original = stored(&app, &kept).await;
    let target = app.create_folder(json!({"parentFolderPath": "/", "name": "copies"})).await;
    let before = snapshot(&app).await;
    let temp = app.nms.blobs().local_temp_dir().expect("local blob store").to_path_buf();
    for size in SIZES {
        let broken = NotADirectory::new(&temp);
        let (ct, body) = one_part_deposit(&content(size, 8));
        assert_error(app.deposit(&ct, body).await, 500, "SVC0001").await;
        assert_eq!(app.get(&app.root().await).await.status(), 200, "{size} bytes: still serving");
        drop(broken);
        assert_unchanged(&app, &before, 1, &format!("{size} bytes")).await;
    }
    let broken = NotADirectory::new(&temp);
    let (ct, body) = bulk_deposit(&[content(100 * 1024, 9), content(2 * 1024 * 1024, 10)]);
    assert_error(bulk_create(&app, &ct, body).await, 500, "SVC0001").await;
    // A copy needs no write to the blob store.
    let body = json!({"targetSourceRef": {"targetRef": {"resourceURL": target},
        "sourceRefs": {"objects": {"objectReference": [{"resourceURL": original}]}}}});
    let (status, v) = app.post_rel("/folders/operations/copyToFolder", body).await;
    assert_eq!(status, 200, "{v}");
    let copy = v["bulkResponseList"]["response"][0]["success"]["resourceURL"].as_str().unwrap().to_string();
    drop(broken);
    assert_eq!(app.object_count().await, before.objects + 1, "only the copy");
    assert_eq!(app.blob_files().len(), 1, "the shared blob only: {:?}", app.blob_files());
    assert_eq!(payload_sha(&app, &copy).await, sha(&kept));
    // The directory is back: deposits are stored again.
    let c = content(700 * 1024, 11);
    let url = stored(&app, &c).await;
    assert_eq!(payload_sha(&app, &url).await, sha(&c));
}

#[tokio::test]
async fn a_deposit_abandoned_mid_upload_aborts_its_upload_and_leaves_no_temporary() {
    let (app, faults) = spawn_faulty_app().await;
    let (ct, body) = one_part_deposit(&content(2 * 1024 * 1024, 12));
    // The client sends a part's first megabyte, then closes its connection.
    let mut socket = tokio::net::TcpStream::connect(app.url.trim_start_matches("http://")).await.unwrap();
    socket.write_all(raw_head(&app, "POST", "/objects", &ct, body.len()).as_bytes()).await.unwrap();
    socket.write_all(&body[..1024 * 1024]).await.unwrap();
    until("the part streams into a multipart upload", || faults.multipart_starts.load(Ordering::SeqCst) > 0).await;
    // The server sees the connection end mid-body: the part writer, dropped mid-upload,
    // aborts the upload and removes its temporary in the background.
    drop(socket);
    until("the upload is aborted and its temporary gone", || {
        faults.multipart_aborts.load(Ordering::SeqCst) > 0 && app.blob_files().is_empty()
    })
    .await;
    assert_eq!(faults.multipart_aborts.load(Ordering::SeqCst), 1);
    assert_eq!(app.object_count().await, 0);
}

#[tokio::test]
async fn a_part_dropped_during_its_last_write_leaves_no_temporary() {
    let (app, faults) = spawn_faulty_app().await;
    faults.hold_puts.store(true, Ordering::SeqCst);
    let blobs = &app.nms.blobs();
    let mut part = blobs.part_writer();
    // Above the inline limit, below the write buffer: the last write is one `put`.
    part.write(&content(100 * 1024, 14)).await.unwrap();
    let mut guard = blobs.guard();
    let mut finish = Box::pin(part.finish(&mut guard));
    tokio::select! {
        biased;
        _ = &mut finish => panic!("a held write cannot finish"),
        () = faults.put_started.notified() => {}
    }
    // The request goes away during the last write: its future is dropped, and the write
    // goes on. Removing the temporary before the write lands would not do: the part's
    // cleanup waits for the write first.
    let polls = faults.held_put_polls.load(Ordering::SeqCst);
    drop(finish);
    drop(guard);
    until("the cleanup waits for the write", || faults.held_put_polls.load(Ordering::SeqCst) > polls).await;
    faults.release_put();
    faults.put_done.notified().await;
    until("the temporary is removed", || app.blob_files().is_empty()).await;
    assert_eq!(app.object_count().await, 0);
}

/// Wait (polling) until `ready` holds; a bound so that a regression fails instead of hanging.
async fn until(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..3000 {
        if ready() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}
