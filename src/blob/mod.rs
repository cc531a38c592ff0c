//! Payload storage: small parts inline in the metadata store, large parts as blobs in
//! object storage under content-hash keys.
//!
//! A part is streamed: its first `inline_max` bytes are buffered; if it ends there it is
//! stored inline, otherwise the buffer and the rest stream into a temporary object
//! (`tmp/{instance}/{id}`, see [`temp`]) while a SHA-256 runs over them. At the end the
//! temporary object is renamed to `blobs/{hh}/{sha256}`, so a retried upload lands on the
//! same key and copies can share it.
//!
//! Nothing acknowledged is lost and nothing unreferenced lives forever:
//! - before the rename, the upload *pins* the key in the metadata store; garbage collection
//!   never deletes a pinned or referenced key, and an upload waits while a deletion of the
//!   same key is under way (see `Store::begin_blob_delete`);
//! - an [`UploadGuard`] unpins after the metadata commit, or, if the request failed or was
//!   dropped, unpins and deletes what it wrote unless something else references it;
//! - a part whose upload fails (the store refuses a write or the final one) removes its
//!   temporary and answers an error, never a panic: object_store's `BufWriter` panics when
//!   it is aborted after a shutdown or polled again after a failed start, so a writer is
//!   aborted only before its shutdown and never used after a failure;
//! - a part dropped before its temporary is renamed (the request went away, at any point)
//!   removes the temporary in the background, once a last write under way has ended;
//! - deleting an object removes metadata first, then its no-longer-referenced blobs;
//! - a periodic sweep removes unreferenced blobs older than a grace period, and the
//!   temporaries of processes that are gone (at once on local disk, else after the grace
//!   period), which a crash leaves behind.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, ObjectStoreScheme};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::ids::{new_id, now_ms};
use crate::model::PartData;
use crate::store::Store;

mod metered;
mod s3;
mod temp;

use temp::LocalTemp;

/// Write buffer on local disk.
const LOCAL_WRITE_BUFFER: usize = 256 * 1024;
/// Write buffer elsewhere: the S3 minimum part size.
const REMOTE_WRITE_BUFFER: usize = 5 * 1024 * 1024;

/// Blob storage for payload parts.
#[derive(Clone)]
pub struct PayloadStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    meta: Arc<dyn Store>,
    inline_max: usize,
    /// Bytes buffered before a streaming upload writes a chunk: small on local disk, the
    /// S3 minimum part size elsewhere.
    write_buffer: usize,
    temp: Arc<Temporaries>,
}

/// Where this process's temporaries go.
struct Temporaries {
    /// `tmp/{instance}` under the store's prefix.
    prefix: Path,
    /// On local disk: the directory and the lock that says its process is alive.
    local: Option<LocalTemp>,
}

/// Counts from one sweep run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub blobs_deleted: usize,
    pub temporaries_deleted: usize,
    /// Pins and deletion marks left by crashed requests or collectors, dropped.
    pub stale_marks_dropped: u64,
}

impl PayloadStore {
    /// Open the blob store of the configuration: `storage.blob_url` (with `[storage.s3]`
    /// and the `AWS_*` environment variables for `s3://`), or `{data_dir}/blobs` on local
    /// disk. The store is listed once, so that a wrong URL, a missing bucket, an endpoint
    /// that cannot be reached or credentials it refuses stop the start with an error that
    /// says so, rather than failing the first deposit.
    pub async fn open(settings: &Settings, meta: Arc<dyn Store>) -> Result<Self> {
        let mkdir = |dir: &std::path::Path| {
            std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("{}: {e}", dir.display())))
        };
        let blob_url = &settings.storage.blob_url;
        let bad_url = |e: &dyn std::fmt::Display| Error::internal(format!("storage.blob_url {blob_url}: {e}"));
        let (store, prefix, local_dir): (Arc<dyn ObjectStore>, Path, _) = if blob_url.is_empty() {
            let dir = settings.blob_dir();
            mkdir(&dir)?;
            (Arc::new(LocalFileSystem::new_with_prefix(&dir)?), Path::default(), Some(dir))
        } else {
            let url = url::Url::parse(blob_url).map_err(|e| bad_url(&e))?;
            if matches!(url.scheme(), "s3" | "s3a") && url.host_str().is_none_or(str::is_empty) {
                return Err(bad_url(&"names no bucket (s3://bucket/prefix)"));
            }
            let (scheme, prefix) = ObjectStoreScheme::parse(&url).map_err(|e| bad_url(&e))?;
            match scheme {
                ObjectStoreScheme::AmazonS3 => {
                    let buffer = settings.storage.write_buffer_bytes;
                    if buffer != 0 && buffer < REMOTE_WRITE_BUFFER {
                        return Err(Error::internal(format!(
                            "storage.write_buffer_bytes = {buffer} is below the S3 minimum part size \
                             ({REMOTE_WRITE_BUFFER}): every payload part larger than it would fail"
                        )));
                    }
                    let env =
                        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
                    let store = s3::builder(&url, &settings.storage.s3, env)
                        .map_err(|e| bad_url(&e))?
                        .build()
                        .map_err(|e| bad_url(&e))?;
                    (Arc::new(store), prefix, None)
                }
                ObjectStoreScheme::Local | ObjectStoreScheme::Memory => {
                    let local_dir = if scheme == ObjectStoreScheme::Local { url.to_file_path().ok() } else { None };
                    if let Some(dir) = &local_dir {
                        mkdir(dir)?;
                    }
                    let (store, prefix) = object_store::parse_url_opts(&url, std::iter::empty::<(&str, &str)>())
                        .map_err(|e| bad_url(&e))?;
                    (Arc::from(store), prefix, local_dir)
                }
                _ => return Err(bad_url(&"not a file://, memory:// or s3:// URL")),
            }
        };
        store.list_with_delimiter(Some(&prefix)).await.map_err(|e| {
            let url = if blob_url.is_empty() { settings.blob_dir().display().to_string() } else { blob_url.clone() };
            Error::internal(format!("blob store {url} cannot be listed: {e}"))
        })?;
        Self::new(store, prefix, local_dir, meta, settings)
    }

    /// Over a blob store the caller built (tests put faults between the server and its
    /// storage this way), with the settings' inline limit and write buffer. The store is
    /// handled as one that is not local disk: no instance lock, temporaries swept by age.
    pub fn with_store(store: Arc<dyn ObjectStore>, meta: Arc<dyn Store>, settings: &Settings) -> Result<Self> {
        Self::new(store, Path::default(), None, meta, settings)
    }

    /// `local_dir`: the directory on disk that `prefix` names, when the store is local disk.
    fn new(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        local_dir: Option<std::path::PathBuf>,
        meta: Arc<dyn Store>,
        settings: &Settings,
    ) -> Result<Self> {
        let instance = new_id();
        let local = match &local_dir {
            Some(dir) => {
                let root = dir.join("tmp");
                let claimed = LocalTemp::claim(&root, &instance)
                    .map_err(|e| Error::internal(format!("temporary directory under {}: {e}", root.display())))?;
                Some(claimed)
            }
            None => None,
        };
        let write_buffer = match settings.storage.write_buffer_bytes {
            0 if local.is_some() => LOCAL_WRITE_BUFFER,
            0 => REMOTE_WRITE_BUFFER,
            n => n,
        };
        let temp = Temporaries { prefix: prefix.clone().join("tmp").join(instance.as_str()), local };
        let store: Arc<dyn ObjectStore> = Arc::new(metered::Metered::new(store));
        Ok(Self {
            store,
            prefix,
            meta,
            inline_max: settings.storage.inline_max_bytes,
            write_buffer,
            temp: Arc::new(temp),
        })
    }

    fn path(&self, key: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in key.split('/') {
            p = p.join(part);
        }
        p
    }

    /// Whether the store answers (readiness): a look-up of a key nobody writes, which "not
    /// found" answers.
    pub async fn ping(&self) -> Result<()> {
        match self.store.head(&self.prefix.clone().join("readiness-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::internal(format!("payload store: {e}"))),
        }
    }

    /// Start receiving one payload part.
    pub fn part_writer(&self) -> PartWriter {
        PartWriter {
            ps: self.clone(),
            buf: Vec::new(),
            upload: None,
            failed: false,
            hasher: Sha256::new(),
            size: 0,
            head: Vec::new(),
            head_max: 0,
        }
    }

    /// This process's directory of temporaries, when the store is local disk.
    pub fn local_temp_dir(&self) -> Option<&std::path::Path> {
        self.temp.local.as_ref().map(LocalTemp::dir)
    }

    /// Remove a temporary object and, on local disk, what object_store staged for it.
    async fn remove_temporary(&self, name: &str) {
        self.store.delete(&self.temp.prefix.clone().join(name)).await.ok();
        if self.temp.local.is_some() {
            let temp = self.temp.clone();
            let name = name.to_string();
            tokio::task::spawn_blocking(move || temp.local.as_ref().map(|l| l.remove_leftovers(&name))).await.ok();
        }
    }

    /// A guard for the blobs one request writes.
    pub fn guard(&self) -> UploadGuard {
        UploadGuard { ps: self.clone(), token: new_id(), keys: Vec::new(), done: false }
    }

    /// Stream a blob (or a byte range of it).
    pub async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<BoxStream<'static, Result<Bytes>>> {
        let opts = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
        let res = self.store.get_opts(&self.path(key), opts).await?;
        Ok(res.into_stream().map(|r| r.map_err(Error::from)).boxed())
    }

    /// Whether a blob exists (used by tests and the sweep).
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.store.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Delete each key that nothing references any more (after a metadata deletion).
    pub async fn release(&self, keys: &[String]) {
        for key in keys {
            if let Err(e) = self.release_one(key).await {
                tracing::warn!(key = %key, error = %e, "blob not released; the sweep will retry");
            }
        }
    }

    async fn release_one(&self, key: &str) -> Result<()> {
        if self.meta.begin_blob_delete(key, now_ms()).await? {
            let res = match self.store.delete(&self.path(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(Error::from(e)),
            };
            self.meta.finish_blob_delete(key).await?;
            res?;
        }
        Ok(())
    }

    /// Remove the temporaries no running process owns: on local disk, those of processes
    /// that are gone at once and the rest once older than `grace`; on other stores, those
    /// older than `grace` (an incomplete multipart upload is invisible there; see
    /// docs/storage.md). Returns how many were removed.
    pub async fn sweep_temporaries(&self, grace: Duration) -> Result<usize> {
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
        if self.temp.local.is_some() {
            let temp = self.temp.clone();
            let cutoff = std::time::SystemTime::from(cutoff);
            let swept = tokio::task::spawn_blocking(move || temp.local.as_ref().map(|l| l.sweep(cutoff)))
                .await
                .map_err(Error::internal)?;
            return match swept {
                Some(Ok(n)) => Ok(n),
                Some(Err(e)) => Err(Error::internal(format!("sweeping temporaries: {e}"))),
                None => Ok(0),
            };
        }
        let mut removed = 0;
        let mut tmp = self.store.list(Some(&self.prefix.clone().join("tmp")));
        while let Some(meta) = tmp.next().await {
            let meta = meta?;
            if meta.last_modified < cutoff && self.store.delete(&meta.location).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Remove unreferenced blobs and stale temporaries older than `grace`, and temporaries
    /// of processes that are gone.
    pub async fn sweep(&self, grace: Duration) -> Result<SweepReport> {
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
        // Pins and deletion marks older than the grace period belong to requests or
        // collectors that died; an upload in flight is far younger.
        let stale_marks_dropped = self.meta.expire_blob_marks(cutoff.timestamp_millis()).await?;
        let temporaries_deleted = self.sweep_temporaries(grace).await?;
        let mut report = SweepReport { stale_marks_dropped, temporaries_deleted, ..Default::default() };
        let blob_prefix = self.prefix.clone().join("blobs");
        let mut blobs = self.store.list(Some(&blob_prefix));
        while let Some(meta) = blobs.next().await {
            let meta = meta?;
            if meta.last_modified >= cutoff {
                continue;
            }
            let Some(key) = self.key_of(&meta.location) else { continue };
            if self.meta.begin_blob_delete(&key, now_ms()).await? {
                let res = self.store.delete(&meta.location).await;
                self.meta.finish_blob_delete(&key).await?;
                if res.is_ok() {
                    report.blobs_deleted += 1;
                }
            }
        }
        Ok(report)
    }

    fn key_of(&self, location: &Path) -> Option<String> {
        let parts: Vec<String> = location.prefix_match(&self.prefix)?.map(|p| p.as_ref().to_string()).collect();
        Some(parts.join("/"))
    }
}

/// Receives one payload part; see the module documentation.
pub struct PartWriter {
    ps: PayloadStore,
    buf: Vec<u8>,
    upload: Option<Upload>,
    /// A write failed: the upload must not be written to or shut down any more.
    failed: bool,
    hasher: Sha256,
    size: u64,
    /// A copy of the first `head_max` bytes (for indexing the text of textual parts).
    head: Vec<u8>,
    head_max: usize,
}

/// A part streaming into its temporary object `tmp/{instance}/{name}`, which it owns: unless
/// the temporary was renamed into place, [`Upload::discard`] or, if the upload is dropped
/// (the request went away), its `Drop` in the background ends the writer as its stage
/// allows and removes the temporary.
struct Upload {
    ps: PayloadStore,
    name: String,
    /// Taken when the upload is discarded.
    writer: Option<BufWriter>,
    stage: Stage,
}

/// How far an [`Upload`]'s writer got; it says what may still be done with the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Written to: aborting cannot panic, whatever its state (buffering, starting or writing
    /// a multipart upload), and flushing lets an upload being started come into being.
    Open,
    /// A write failed: aborting cannot panic, but polling a failed start again would.
    Failed,
    /// Its shutdown, the last write, is under way: the writer may only be shut down again
    /// (aborting it panics).
    Closing,
    /// Shut down, successfully or not: the writer must not be used again.
    Closed,
    /// Renamed into place or removed: nothing left to clean.
    Gone,
}

impl Upload {
    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match &mut self.writer {
            Some(writer) => writer.write_all(chunk).await,
            None => Err(std::io::Error::other("blob upload already discarded")),
        }
    }

    /// The last write. If it fails the writer is finished either way and must not be
    /// aborted: that panics. A multipart upload whose part or completion fails has aborted
    /// itself (`WriteMultipart::finish` does so from object_store 0.14.2 on).
    async fn shut_down(&mut self) -> std::io::Result<()> {
        let Some(writer) = &mut self.writer else {
            return Err(std::io::Error::other("blob upload already discarded"));
        };
        self.stage = Stage::Closing;
        let res = writer.shutdown().await;
        self.stage = Stage::Closed;
        res
    }

    /// Rename the temporary to `dest`: it is no longer this upload's to remove.
    async fn publish(&mut self, dest: &Path) -> Result<()> {
        let tmp = self.ps.temp.prefix.clone().join(self.name.as_str());
        self.ps.store.rename(&tmp, dest).await?;
        self.stage = Stage::Gone;
        Ok(())
    }

    /// Give up: end the writer, remove the temporary, in a task of its own. A request that
    /// goes away meanwhile does not cut this short: the writer, dropped half-way through
    /// its cleanup, would leave a multipart upload behind unaborted.
    async fn discard(mut self) {
        if self.stage == Stage::Gone {
            return;
        }
        let (ps, name, writer, stage) =
            (self.ps.clone(), std::mem::take(&mut self.name), self.writer.take(), self.stage);
        self.stage = Stage::Gone;
        let cleaning = tokio::spawn(async move { clean(&ps, &name, writer, stage).await });
        cleaning.await.ok();
    }
}

/// End `writer` as `stage` allows, then remove temporary `name` (and its staging files).
async fn clean(ps: &PayloadStore, name: &str, writer: Option<BufWriter>, stage: Stage) {
    if let Some(mut writer) = writer {
        match stage {
            // An upload still being created would not be aborted (there is nothing to abort
            // yet), and would then be left behind: let its creation end first.
            Stage::Open => {
                writer.flush().await.ok();
                writer.abort().await.ok();
            }
            Stage::Failed => {
                writer.abort().await.ok();
            }
            // Let the last write end before removing what it wrote: a write to local disk
            // goes on in a blocking thread when its future is dropped, and would land after
            // the removal. A multipart upload is completed rather than left incomplete.
            Stage::Closing => {
                writer.shutdown().await.ok();
            }
            Stage::Closed | Stage::Gone => {}
        }
    }
    ps.remove_temporary(name).await;
}

impl Drop for Upload {
    /// Dropped before its temporary was renamed or removed (the request went away): clean
    /// up in the background.
    fn drop(&mut self) {
        if self.stage == Stage::Gone {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (ps, name, writer, stage) =
                (self.ps.clone(), std::mem::take(&mut self.name), self.writer.take(), self.stage);
            handle.spawn(async move { clean(&ps, &name, writer, stage).await });
        }
    }
}

impl PartWriter {
    /// Keep a copy of the first `max` bytes, readable with [`PartWriter::head`].
    pub fn keep_head(&mut self, max: usize) {
        self.head_max = max;
    }

    /// The first bytes of the part (up to the `keep_head` limit).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Append bytes.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        if self.failed {
            return Err(Error::internal("blob upload already failed"));
        }
        self.size += chunk.len() as u64;
        if self.head.len() < self.head_max {
            let n = (self.head_max - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..n]);
        }
        if let Some(upload) = &mut self.upload {
            self.hasher.update(chunk);
            let res = upload.write(chunk).await;
            return self.check(res);
        }
        if self.buf.len() + chunk.len() <= self.ps.inline_max {
            self.buf.extend_from_slice(chunk);
            return Ok(());
        }
        // Spill: this part is too large to keep inline.
        let name = new_id();
        let path = self.ps.temp.prefix.clone().join(name.as_str());
        let writer = BufWriter::with_capacity(self.ps.store.clone(), path, self.ps.write_buffer);
        let buffered = std::mem::take(&mut self.buf);
        self.hasher.update(&buffered);
        self.hasher.update(chunk);
        let upload = self.upload.insert(Upload { ps: self.ps.clone(), name, writer: Some(writer), stage: Stage::Open });
        let res = async {
            upload.write(&buffered).await?;
            upload.write(chunk).await
        }
        .await;
        self.check(res)
    }

    /// A failed write poisons the writer: after a failed start of a multipart upload,
    /// polling `BufWriter` again would panic.
    fn check(&mut self, res: std::io::Result<()>) -> Result<()> {
        res.map_err(|e| {
            self.failed = true;
            if let Some(upload) = self.upload.as_mut().filter(|u| u.stage == Stage::Open) {
                upload.stage = Stage::Failed;
            }
            Error::blob_store(&e)
        })
    }

    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Complete the part: inline bytes, or a blob key held by `guard` until commit.
    pub async fn finish(mut self, guard: &mut UploadGuard) -> Result<(PartData, u64)> {
        let size = self.size;
        // From here on the upload owns its temporary: it removes it on every way out (a
        // dropped future included) but the rename.
        let Some(mut upload) = self.upload.take() else {
            return Ok((PartData::Inline(std::mem::take(&mut self.buf)), size));
        };
        if self.failed {
            upload.discard().await;
            return Err(Error::internal("blob upload already failed"));
        }
        if let Err(e) = upload.shut_down().await {
            upload.discard().await;
            return Err(Error::blob_store(&e));
        }
        let hash = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let key = format!("blobs/{}/{}", &hash[..2], hash);
        // Pin first (waiting out a concurrent deletion of the same key), then publish.
        let mut pinned = false;
        for _ in 0..600 {
            match guard.ps.meta.pin_blob(&key, &guard.token, now_ms()).await {
                Ok(true) => {
                    pinned = true;
                    break;
                }
                Ok(false) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => {
                    upload.discard().await;
                    return Err(e);
                }
            }
        }
        if !pinned {
            upload.discard().await;
            return Err(Error::internal(format!("blob {key} stayed locked by a deletion")));
        }
        guard.keys.push(key.clone());
        if let Err(e) = upload.publish(&guard.ps.path(&key)).await {
            upload.discard().await;
            return Err(e);
        }
        Ok((PartData::Blob { key }, size))
    }

    /// Give up on the part, removing anything written.
    pub async fn abort(mut self) {
        if let Some(upload) = self.upload.take() {
            upload.discard().await;
        }
    }
}

/// Holds the blobs a request wrote until its metadata is committed.
pub struct UploadGuard {
    ps: PayloadStore,
    token: String,
    keys: Vec<String>,
    done: bool,
}

impl UploadGuard {
    /// The metadata referencing the blobs is committed: release the pins.
    pub async fn commit(mut self) {
        self.done = true;
        for key in std::mem::take(&mut self.keys) {
            if let Err(e) = self.ps.meta.unpin_blob(&key, &self.token).await {
                tracing::warn!(key = %key, error = %e, "unpin failed; the sweep drops the pin after the grace period");
            }
        }
    }

    /// The request failed: unpin and delete whatever nothing else references.
    pub async fn rollback(mut self) {
        self.done = true;
        let keys = std::mem::take(&mut self.keys);
        cleanup(self.ps.clone(), self.token.clone(), keys).await;
    }
}

async fn cleanup(ps: PayloadStore, token: String, keys: Vec<String>) {
    for key in &keys {
        ps.meta.unpin_blob(key, &token).await.ok();
    }
    ps.release(&keys).await;
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if self.done || self.keys.is_empty() {
            return;
        }
        // The request was dropped (client went away): clean up in the background.
        let (ps, token, keys) = (self.ps.clone(), self.token.clone(), std::mem::take(&mut self.keys));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(cleanup(ps, token, keys));
        }
    }
}
