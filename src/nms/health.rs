//! What operators ask of the service besides the API: whether its storage answers
//! (readiness), and the gauges sampled when metrics are read.

use std::time::Duration;

use super::Nms;

/// A dependency readiness looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    /// The metadata database.
    Database,
    /// The payload (blob) store.
    PayloadStore,
}

impl Dependency {
    /// Its name in the readiness answer.
    pub fn name(self) -> &'static str {
        match self {
            Dependency::Database => "database",
            Dependency::PayloadStore => "payload_store",
        }
    }
}

/// Why a dependency is not ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unready {
    /// It did not answer within the timeout.
    TimedOut,
    /// It answered with an error (logged; not shown to the caller).
    Failed,
}

impl Nms {
    /// Whether the server is shutting down (it then answers no readiness check).
    pub fn is_stopping(&self) -> bool {
        self.hub.is_closing()
    }

    /// Ask the database and the payload store, at once, each to answer within `timeout`.
    pub async fn readiness(&self, timeout: Duration) -> Vec<(Dependency, Result<(), Unready>)> {
        let judge = |dep: Dependency, res: Result<crate::error::Result<()>, tokio::time::error::Elapsed>| match res {
            Ok(Ok(())) => (dep, Ok(())),
            Ok(Err(e)) => {
                tracing::warn!(dependency = dep.name(), error = %e, "readiness check failed");
                (dep, Err(Unready::Failed))
            }
            Err(_) => {
                tracing::warn!(
                    dependency = dep.name(),
                    timeout_ms = timeout.as_millis() as u64,
                    "readiness check timed out"
                );
                (dep, Err(Unready::TimedOut))
            }
        };
        let (db, blobs) = tokio::join!(
            tokio::time::timeout(timeout, self.meta.ping()),
            tokio::time::timeout(timeout, self.blobs.ping())
        );
        vec![judge(Dependency::Database, db), judge(Dependency::PayloadStore, blobs)]
    }

    /// Set the gauges that describe state held elsewhere: the database pool, the webhook
    /// backlog (a count in the database, so it stays out of the request path).
    pub async fn sample_gauges(&self) {
        let pool = self.meta.pool_stats();
        crate::metrics::db_pool(pool.in_use, pool.idle);
        match self.meta.webhook_backlog().await {
            Ok(n) => crate::metrics::webhook_backlog(n),
            Err(e) => tracing::debug!(error = %e, "webhook backlog not sampled"),
        }
    }
}
