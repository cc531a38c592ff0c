//! Prometheus metrics: one recorder per process (the `metrics` facade's global one, an
//! exporter rendered by the `/metrics` route), and the names the code records under.
//!
//! Names follow Prometheus conventions: an `nms_` prefix, base units (`_seconds`,
//! `_bytes`), `_total` on counters. Every label takes values from a fixed set (operation
//! names of the operation table, status classes, storage kinds, schemes): never a box, a
//! user, a URL or an id, so the number of series stays bounded.
//!
//! Recording is cheap: the per-request series are registered once per (operation, status
//! class) and kept as handles, so a request costs atomic updates only; the other series use
//! the facade's macros with constant labels (no allocation; one registry read). Gauges that
//! describe state elsewhere (database pool, webhook backlog) are sampled when `/metrics` is
//! read, not kept up to date on the hot path.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::auth::Operation;

/// Upper bounds of the latency histograms, in seconds.
const LATENCY_BUCKETS: &[f64] =
    &[0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

static EXPORTER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process's recorder (once; later calls answer the same handle). `None` if
/// another recorder was installed first: then nothing is exported.
pub fn install() -> Option<&'static PrometheusHandle> {
    EXPORTER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .map_err(|e| tracing::warn!(error = %e, "metrics: histogram buckets refused"))
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "metrics: another recorder is installed; /metrics stays empty");
                return None;
            }
            describe();
            gauge!("nms_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text of every series.
pub fn render() -> Option<String> {
    install().map(PrometheusHandle::render)
}

/// Drain the histograms' buffers (the exporter leaves it to its user); call every few
/// seconds.
pub fn upkeep() {
    if let Some(h) = install() {
        h.run_upkeep();
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("nms_http_requests_total", "HTTP requests answered, by operation and status class.");
    describe_histogram!(
        "nms_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a request's arrival to its response, by operation and status class."
    );
    describe_counter!("nms_deposits_total", "Objects stored (single and bulk creation, copies excluded).");
    describe_counter!("nms_stored_parts_total", "Payload parts stored, inline in the database or as blobs.");
    describe_counter!("nms_stored_bytes_total", "Payload bytes stored, inline in the database or as blobs.");
    describe_histogram!("nms_search_duration_seconds", metrics::Unit::Seconds, "Search evaluation time.");
    describe_gauge!("nms_long_polls_open", "Notification channel long polls waiting on this node.");
    describe_counter!("nms_notifications_delivered_total", "Notification lists delivered, by way.");
    describe_gauge!("nms_webhook_queue_depth", "Webhook notification lists queued and not yet delivered.");
    describe_counter!("nms_webhook_deliveries_total", "Webhook delivery attempts, by outcome.");
    describe_counter!("nms_webhook_retries_total", "Webhook delivery attempts that repeat an earlier one.");
    describe_gauge!("nms_db_connections", "Database pool connections, in use or idle.");
    describe_histogram!(
        "nms_db_write_transaction_duration_seconds",
        metrics::Unit::Seconds,
        "Time a write transaction holds its connection, from BEGIN to its end."
    );
    describe_histogram!(
        "nms_blob_operation_duration_seconds",
        metrics::Unit::Seconds,
        "Payload store calls, by operation."
    );
    describe_counter!("nms_blob_operation_errors_total", "Payload store calls that failed, by operation.");
    describe_counter!("nms_rate_limit_refusals_total", "Requests refused with 429, by limit.");
    describe_counter!("nms_auth_failures_total", "Authentication attempts refused, by scheme.");
}

/// What a request is counted as: an operation of the operation table, or one of the few
/// routes outside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLabel(usize);

impl RouteLabel {
    const EXTRA: [&'static str; 5] = ["NotificationChannel", "Service", "ApiDescription", "ApiDocs", "Unmatched"];
    /// A Notification Channel path no operation claimed (404 under `/notificationchannel/`,
    /// or 405 on a channel resource); the channel operations have their own names.
    pub const CHANNEL: Self = Self(Operation::ALL.len());
    /// `/health`, `/healthz`, `/readyz`, `/metrics`.
    pub const SERVICE: Self = Self(Operation::ALL.len() + 1);
    /// `/openapi.json`.
    pub const API_DESCRIPTION: Self = Self(Operation::ALL.len() + 2);
    /// `/docs` and the Swagger UI page and files under `/docs/` (one label for them all).
    pub const API_DOCS: Self = Self(Operation::ALL.len() + 3);
    /// No route: 404, or 405 on a known path.
    pub const UNMATCHED: Self = Self(Operation::ALL.len() + 4);
    const COUNT: usize = Operation::ALL.len() + Self::EXTRA.len();

    pub fn of(op: Operation) -> Self {
        Self(op as usize)
    }

    /// The `operation` label.
    pub fn name(self) -> &'static str {
        match Operation::ALL.get(self.0) {
            Some(op) => op.name(),
            None => Self::EXTRA.get(self.0 - Operation::ALL.len()).copied().unwrap_or("Unmatched"),
        }
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

type RequestCell = OnceLock<(Counter, Histogram)>;

/// A request answered: counted and timed under its operation and status class.
pub fn request(route: RouteLabel, status: u16, elapsed: Duration) {
    static CELLS: OnceLock<Box<[[RequestCell; 5]]>> = OnceLock::new();
    let cells = CELLS.get_or_init(|| (0..RouteLabel::COUNT).map(|_| Default::default()).collect());
    let class = usize::from(status / 100).clamp(1, 5) - 1;
    let Some(cell) = cells.get(route.0).map(|c| &c[class]) else { return };
    let (count, latency) = cell.get_or_init(|| {
        let (op, st) = (route.name(), STATUS_CLASSES[class]);
        (
            counter!("nms_http_requests_total", "operation" => op, "status" => st),
            histogram!("nms_http_request_duration_seconds", "operation" => op, "status" => st),
        )
    });
    count.increment(1);
    latency.record(elapsed.as_secs_f64());
}

/// Where a payload part was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    Inline,
    Blob,
}

/// An object stored, with its parts' sizes and where each went.
pub fn deposit(parts: impl IntoIterator<Item = (Storage, u64)>) {
    counter!("nms_deposits_total").increment(1);
    for (storage, size) in parts {
        match storage {
            Storage::Inline => {
                counter!("nms_stored_parts_total", "storage" => "inline").increment(1);
                counter!("nms_stored_bytes_total", "storage" => "inline").increment(size);
            }
            Storage::Blob => {
                counter!("nms_stored_parts_total", "storage" => "blob").increment(1);
                counter!("nms_stored_bytes_total", "storage" => "blob").increment(size);
            }
        }
    }
}

/// A search of objects (`folders`: of folders) took `elapsed`.
pub fn search(folders: bool, elapsed: Duration) {
    let h = if folders {
        histogram!("nms_search_duration_seconds", "target" => "folders")
    } else {
        histogram!("nms_search_duration_seconds", "target" => "objects")
    };
    h.record(elapsed.as_secs_f64());
}

/// An open long poll: counted in `nms_long_polls_open` while it lives.
pub struct OpenPoll(());

impl OpenPoll {
    pub fn open() -> Self {
        gauge!("nms_long_polls_open").increment(1.0);
        Self(())
    }
}

impl Drop for OpenPoll {
    fn drop(&mut self) {
        gauge!("nms_long_polls_open").decrement(1.0);
    }
}

/// `n` notification lists handed to a long poll.
pub fn polled(n: usize) {
    counter!("nms_notifications_delivered_total", "way" => "long_poll").increment(n as u64);
}

/// How a webhook attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    Delivered,
    /// 404 or 410: the subscription ends.
    Gone,
    /// Retried later.
    Failed,
}

/// A webhook attempt ended; `retry`: an earlier attempt of the same list had failed.
pub fn webhook(outcome: WebhookOutcome, retry: bool) {
    match outcome {
        WebhookOutcome::Delivered => {
            counter!("nms_webhook_deliveries_total", "outcome" => "delivered").increment(1);
            counter!("nms_notifications_delivered_total", "way" => "webhook").increment(1);
        }
        WebhookOutcome::Gone => counter!("nms_webhook_deliveries_total", "outcome" => "gone").increment(1),
        WebhookOutcome::Failed => counter!("nms_webhook_deliveries_total", "outcome" => "failed").increment(1),
    }
    if retry {
        counter!("nms_webhook_retries_total").increment(1);
    }
}

/// The webhook lists waiting for delivery (sampled).
pub fn webhook_backlog(n: u64) {
    gauge!("nms_webhook_queue_depth").set(n as f64);
}

/// The database pool's connections (sampled).
pub fn db_pool(in_use: u32, idle: u32) {
    gauge!("nms_db_connections", "state" => "in_use").set(f64::from(in_use));
    gauge!("nms_db_connections", "state" => "idle").set(f64::from(idle));
}

/// A write transaction's span: recorded when dropped (the transaction has ended by then).
pub struct WriteTransaction(Instant);

impl WriteTransaction {
    pub fn begin() -> Self {
        Self(Instant::now())
    }
}

impl Drop for WriteTransaction {
    fn drop(&mut self) {
        histogram!("nms_db_write_transaction_duration_seconds").record(self.0.elapsed().as_secs_f64());
    }
}

/// A payload store call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOp {
    Put,
    /// Starting a multipart upload.
    PutMultipart,
    /// One part of a multipart upload.
    PutPart,
    /// Completing a multipart upload.
    Complete,
    Get,
    Head,
    Delete,
    List,
    Copy,
    Rename,
}

impl BlobOp {
    fn cells(self) -> &'static (Histogram, Counter) {
        const ALL: [BlobOp; 10] = [
            BlobOp::Put,
            BlobOp::PutMultipart,
            BlobOp::PutPart,
            BlobOp::Complete,
            BlobOp::Get,
            BlobOp::Head,
            BlobOp::Delete,
            BlobOp::List,
            BlobOp::Copy,
            BlobOp::Rename,
        ];
        static CELLS: OnceLock<Vec<(Histogram, Counter)>> = OnceLock::new();
        let cells = CELLS.get_or_init(|| {
            ALL.iter()
                .map(|op| {
                    let name = op.name();
                    (
                        histogram!("nms_blob_operation_duration_seconds", "operation" => name),
                        counter!("nms_blob_operation_errors_total", "operation" => name),
                    )
                })
                .collect()
        });
        &cells[self as usize]
    }

    /// The `operation` label.
    pub fn name(self) -> &'static str {
        match self {
            BlobOp::Put => "put",
            BlobOp::PutMultipart => "put_multipart",
            BlobOp::PutPart => "put_part",
            BlobOp::Complete => "complete",
            BlobOp::Get => "get",
            BlobOp::Head => "head",
            BlobOp::Delete => "delete",
            BlobOp::List => "list",
            BlobOp::Copy => "copy",
            BlobOp::Rename => "rename",
        }
    }

    /// The call took `elapsed`; `failed`: it answered an error (not "not found").
    pub fn record(self, elapsed: Duration, failed: bool) {
        let (latency, errors) = self.cells();
        latency.record(elapsed.as_secs_f64());
        if failed {
            errors.increment(1);
        }
    }
}

/// A request refused for a limit (`what`: the limit's name, from a fixed set).
pub fn rate_limited(what: &'static str) {
    counter!("nms_rate_limit_refusals_total", "limit" => what).increment(1);
}

/// An authentication refused; `scheme` from the `Authorization` header (`none`, `other`).
pub fn auth_failed(scheme: &'static str) {
    counter!("nms_auth_failures_total", "scheme" => scheme).increment(1);
}
