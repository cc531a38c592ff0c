//! Webhook delivery: subscriptions whose `notifyURL` is not one of this server's
//! notification channels get each `nmsEventList` POSTed to it, in the subscription's
//! `notificationFormat` (JSON or XML).
//!
//! Lists are computed from the database and queued (rendered) in the same transaction that
//! consumes their index, one per subscription at a time, so they are delivered in index
//! order, and nothing is lost across restarts. A deliverer claims due lists with a lease, so
//! several nodes can share the work. 2xx delivers; 404 and 410 end the subscription; every
//! other answer, a timeout or a refused connection is retried with exponential backoff (or
//! after the receiver's `Retry-After` seconds) until the subscription ends. Redirects are
//! not followed.
//!
//! The deliverer is a background HTTP client, not part of the HTTP server: what a list looks
//! like on the wire is given to it (`render`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::error::Result;
use crate::ids::now_ms;
use crate::model::OutboxList;
use crate::nms::Nms;
use crate::nms::subscriptions::{Delivery, EventList};

/// Attempts in flight at once.
const CONCURRENCY: usize = 32;
/// Lists claimed per round.
const CLAIM: u32 = 64;
/// With a remote feed, how long the deliverer sleeps at most when nothing wakes it: a list
/// queued by a node that died before it claimed it is found then.
const IDLE_ROUND: Duration = Duration::from_secs(60);

/// Deliver webhook notifications, each list as `render` writes it, until the task is dropped.
pub async fn run(nms: Nms, render: impl Fn(&EventList) -> String + Send + Sync + 'static) {
    let timeout = Duration::from_secs(nms.sync_settings().webhook_timeout_secs.max(1));
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cpm-nms/", env!("CARGO_PKG_VERSION")));
    if !nms.sync_settings().webhook_private_networks {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook delivery cannot start: no HTTP client");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    // Signalled when an attempt ends (a delivered list lets the next one be built).
    let done = Arc::new(Notify::new());
    // A claim outlives the attempt's timeout, so no other deliverer sends it meanwhile.
    let lease = timeout + Duration::from_secs(5);
    let mut last_full = tokio::time::Instant::now();
    // Whether queued lists may exist (here or by other nodes) and the outbox needs reading:
    // not after a round found it empty, until something is queued, an attempt ends, or the
    // round looks at every box.
    let mut outstanding = true;
    loop {
        let any = nms.hub().any_signal();
        let mut changed = Box::pin(any.notified());
        changed.as_mut().enable();
        let mut finished = Box::pin(done.notified());
        finished.as_mut().enable();

        // The boxes that changed (or had a list delivered) since the last round; all of
        // them now and then (every second without a remote feed, for writers in other
        // processes).
        let mut boxes = nms.hub().take_changed();
        if last_full.elapsed() >= nms.hub().re_read_within(IDLE_ROUND) {
            boxes = None;
        }
        if boxes.is_none() {
            last_full = tokio::time::Instant::now();
            outstanding = true;
        }
        let queued = match nms.queue_webhook_lists(boxes.as_deref(), &render).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "queueing webhook notifications failed");
                0
            }
        };
        outstanding |= queued > 0;
        if !outstanding {
            // Nothing queued anywhere: wait for a change of a box with webhooks.
            let nap = nms.hub().re_read_within(IDLE_ROUND).saturating_sub(last_full.elapsed());
            tokio::select! {
                _ = changed => {}
                _ = finished => outstanding = true,
                _ = tokio::time::sleep(nap) => {}
            }
            continue;
        }
        let free = u32::try_from(slots.available_permits()).unwrap_or(0).min(CLAIM);
        let claimed = if free == 0 {
            Vec::new()
        } else {
            nms.claim_webhook_lists(free, lease).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "claiming webhook notifications failed");
                Vec::new()
            })
        };
        for list in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let (nms, client, done) = (nms.clone(), client.clone(), done.clone());
            tokio::spawn(async move {
                let outcome = attempt(&client, &list).await;
                if let Err(e) = record(&nms, &list, outcome).await {
                    tracing::warn!(error = %e, subscription = list.subscription_id, "recording a webhook attempt failed");
                }
                drop(permit);
                // The subscription's next list may be due now.
                nms.hub().touch(list.box_id);
                done.notify_one();
            });
        }
        if queued > 0 {
            // What was queued is due now: claim it.
            continue;
        }
        // Sleep until a box changes, an attempt ends, a retry falls due, or the idle round
        // is due (without a remote feed: a second, as other processes' changes wake nobody).
        let mut nap = nms.hub().re_read_within(IDLE_ROUND);
        match nms.next_webhook_due().await {
            Ok(Some(due)) => {
                nap = nap.min(Duration::from_millis(u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0)));
            }
            // Nothing queued, nothing in flight: nothing to read until something is queued.
            Ok(None) => outstanding = slots.available_permits() < CONCURRENCY,
            Err(e) => tracing::warn!(error = %e, "reading when webhook notifications fall due failed"),
        }
        tokio::select! {
            _ = changed => {}
            _ = finished => outstanding = true,
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

/// One POST of a queued list.
async fn attempt(client: &reqwest::Client, list: &OutboxList) -> Delivery {
    let res = client
        .post(&list.notify_url)
        .header(reqwest::header::CONTENT_TYPE, list.format.media_type())
        .body(list.body.clone())
        .send()
        .await;
    let failed = |error: String| Delivery::Failed { error, retry_after: None };
    match res {
        Ok(r) if r.status().is_success() => Delivery::Delivered,
        Ok(r) if matches!(r.status().as_u16(), 404 | 410) => Delivery::Gone,
        Ok(r) => Delivery::Failed {
            error: format!("HTTP {}", r.status().as_u16()),
            // Whole seconds only (an HTTP date is ignored).
            retry_after: r
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        },
        Err(e) if e.is_timeout() => failed("timed out".into()),
        Err(e) => failed(format!("{e}")),
    }
}

async fn record(nms: &Nms, list: &OutboxList, outcome: Delivery) -> Result<()> {
    match &outcome {
        Delivery::Delivered => {
            tracing::debug!(subscription = list.subscription_id, index = list.index, "webhook delivered")
        }
        Delivery::Gone => tracing::info!(
            subscription = list.subscription_id,
            url = %list.notify_url,
            "webhook gone (404/410): subscription ended"
        ),
        Delivery::Failed { error: e, .. } => tracing::info!(
            subscription = list.subscription_id,
            index = list.index,
            attempts = list.attempts + 1,
            error = %e,
            "webhook attempt failed; retrying later"
        ),
    }
    nms.webhook_outcome(list, outcome).await
}

/// Resolves names to their public addresses only (private, loopback and link-local ones are
/// dropped), so a webhook name cannot lead the server into its own network. The check is
/// made on the addresses connected to, so a name re-pointed after the subscription was
/// made is caught too.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| crate::nms::subscriptions::is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
