//! The payload store as the metrics see it: every call to the underlying object store
//! (local disk, S3, memory) is timed under its operation, and its failures counted. A "not
//! found" or "already exists" answer is an answer, not a failure. Reads are timed to their
//! first answer (the body streams afterwards); a listing is not timed (it is a stream the
//! caller drives), only its failures counted.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

use crate::metrics::BlobOp;

/// An object store whose calls are measured.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn ObjectStore>,
}

impl Metered {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }
}

impl fmt::Display for Metered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

fn failed<T>(res: &Result<T>) -> bool {
    matches!(
        res,
        Err(e) if !matches!(e, object_store::Error::NotFound { .. } | object_store::Error::AlreadyExists { .. })
    )
}

/// Run `call`, recording it as `op`.
async fn timed<T>(op: BlobOp, call: impl Future<Output = Result<T>>) -> Result<T> {
    let start = Instant::now();
    let res = call.await;
    op.record(start.elapsed(), failed(&res));
    res
}

/// Count the failed items of a stream as failures of `op`.
fn counted<T: Send + 'static>(op: BlobOp, s: BoxStream<'static, Result<T>>) -> BoxStream<'static, Result<T>> {
    s.inspect(move |item| {
        if failed(item) {
            op.record(std::time::Duration::ZERO, true);
        }
    })
    .boxed()
}

#[async_trait]
impl ObjectStore for Metered {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        timed(BlobOp::Put, self.inner.put_opts(location, payload, opts)).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let upload = timed(BlobOp::PutMultipart, self.inner.put_multipart_opts(location, opts)).await?;
        Ok(Box::new(MeteredUpload { inner: upload }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { BlobOp::Head } else { BlobOp::Get };
        timed(op, self.inner.get_opts(location, options)).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[std::ops::Range<u64>]) -> Result<Vec<bytes::Bytes>> {
        timed(BlobOp::Get, self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        // Each deletion is timed from the request of the next item to its answer.
        let inner = self.inner.delete_stream(locations);
        let mut asked = Instant::now();
        inner
            .map(move |item| {
                BlobOp::Delete.record(asked.elapsed(), failed(&item));
                asked = Instant::now();
                item
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        counted(BlobOp::List, self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        counted(BlobOp::List, self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        timed(BlobOp::List, self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        timed(BlobOp::Copy, self.inner.copy_opts(from, to, options)).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        timed(BlobOp::Rename, self.inner.rename_opts(from, to, options)).await
    }
}

/// A multipart upload whose parts and completion are measured.
#[derive(Debug)]
struct MeteredUpload {
    inner: Box<dyn MultipartUpload>,
}

#[async_trait]
impl MultipartUpload for MeteredUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        Box::pin(timed(BlobOp::PutPart, part))
    }

    async fn complete(&mut self) -> Result<PutResult> {
        timed(BlobOp::Complete, self.inner.complete()).await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}
