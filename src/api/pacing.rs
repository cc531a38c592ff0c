//! Slow request bodies. A client that sends its body a byte at a time holds a connection,
//! a task and perhaps a half-written upload for as long as it likes; enough of them exhaust
//! the server. So a body must keep pace:
//!
//! the server waits for a body's bytes at most `server.body_timeout_secs`, plus one second
//! per `server.body_min_rate_bytes_per_sec` bytes received (Apache's `mod_reqtimeout`
//! `body=20,MinRate=500` rule), and never more than `server.body_max_secs` in all. Only
//! time spent waiting on the client counts: while a handler is busy elsewhere (a password
//! check, a slow blob store) the unread bytes wait in buffers and cost the client nothing.
//! An upload at any usable speed earns more time than it uses; a trickle runs out, whatever
//! its length. The cap bounds what a fast start earns: without it, a client sending 64 MiB
//! quickly and then stalling would hold its connection and upload for some 37 hours.
//!
//! [`pace_bodies`] wraps every request body in [`Paced`], which fails the body once the rule
//! is broken and records that. The handler then fails through its own error path (a deposit
//! is abandoned and its blobs removed, as for any broken body), and the middleware answers
//! `408 POL0001` in place of the handler's error, closing the connection.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use bytes::Bytes;
use futures_util::{Future, Stream};
use tokio::time::{Instant, Sleep};

use super::AppState;
use crate::config::ServerSettings;
use crate::error::Error;

/// The pace a request body must keep (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct BodyPace {
    timeout: Duration,
    min_rate: u64,
    /// The most the server waits in all (`None`: no cap).
    max: Option<Duration>,
}

/// Which part of the pace a body broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The time it had earned (`body_timeout_secs`, `body_min_rate_bytes_per_sec`).
    Pace,
    /// The cap on all waiting (`body_max_secs`).
    Cap,
}

impl BodyPace {
    /// The rule of `server.body_timeout_secs`, `server.body_min_rate_bytes_per_sec` and
    /// `server.body_max_secs`; `None` when the timeout is 0 (off, the cap too).
    pub fn new(s: &ServerSettings) -> Option<Self> {
        let secs = |n: u64| Duration::from_secs(n.min(365 * 86_400));
        (s.body_timeout_secs > 0).then(|| Self {
            timeout: secs(s.body_timeout_secs),
            min_rate: s.body_min_rate_bytes_per_sec,
            max: (s.body_max_secs > 0).then(|| secs(s.body_max_secs)),
        })
    }

    /// How long the server may have waited, all told, once `received` bytes have come, and
    /// which rule sets that.
    fn allowance(&self, received: u64) -> (Duration, Broken) {
        let earned = match received.saturating_mul(1000).checked_div(self.min_rate) {
            Some(ms) => self.timeout.saturating_add(Duration::from_millis(ms)),
            None => self.timeout,
        };
        match self.max {
            Some(max) if max < earned => (max, Broken::Cap),
            _ => (earned, Broken::Pace),
        }
    }

    /// The refusal naming the rule that was broken.
    fn refusal(&self, broken: Broken) -> Error {
        let secs = self.timeout.as_secs();
        match (broken, self.max) {
            (Broken::Cap, Some(max)) => Error::BodyTooSlow {
                rule: format!("waited for more than {} s in all", max.as_secs()),
                settings: "server.body_max_secs",
            },
            _ => Error::BodyTooSlow {
                rule: match self.min_rate {
                    0 => format!("waited for more than {secs} s"),
                    rate => format!("waited for more than {secs} s plus 1 s per {rate} bytes received"),
                },
                settings: "server.body_timeout_secs, server.body_min_rate_bytes_per_sec",
            },
        }
    }
}

/// A request body held to a [`BodyPace`]: it fails with a timeout once the server has
/// waited longer than the pace allows, and sets `tripped` to the rule it broke.
pub struct Paced {
    inner: Payload,
    pace: BodyPace,
    received: u64,
    /// Time spent waiting on the client, up to the current wait.
    waited: Duration,
    /// When the current wait began (the inner body had nothing to give).
    waiting_since: Option<Instant>,
    /// Wakes the task when the current wait runs out; made on the first wait.
    timer: Option<Pin<Box<Sleep>>>,
    tripped: Rc<Cell<Option<Broken>>>,
    done: bool,
}

impl Paced {
    pub fn new(inner: Payload, pace: BodyPace, tripped: Rc<Cell<Option<Broken>>>) -> Self {
        Self {
            inner,
            pace,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: None,
            tripped,
            done: false,
        }
    }

    /// Fail the body: the pace was not kept.
    fn trip(&mut self, broken: Broken) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.tripped.set(Some(broken));
        self.done = true;
        let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "request body too slow");
        Poll::Ready(Some(Err(PayloadError::Io(e))))
    }
}

impl Stream for Paced {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(item) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                match &item {
                    Some(Ok(chunk)) => this.received += chunk.len() as u64,
                    _ => this.done = true,
                }
                Poll::Ready(item)
            }
            Poll::Pending => {
                let now = Instant::now();
                let since = *this.waiting_since.get_or_insert(now);
                let (allowance, rule) = this.pace.allowance(this.received);
                let deadline = since + allowance.saturating_sub(this.waited);
                if now >= deadline {
                    return this.trip(rule);
                }
                let timer = match &mut this.timer {
                    Some(t) => {
                        if t.deadline() != deadline {
                            t.as_mut().reset(deadline);
                        }
                        t
                    }
                    None => this.timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                if timer.as_mut().poll(cx).is_ready() {
                    return this.trip(rule);
                }
                Poll::Pending
            }
        }
    }
}

/// Middleware: hold every request body to `server.body_*` (see the module documentation).
/// A request whose body broke the pace and whose handler then failed is answered
/// `408 POL0001` (which closes the connection; see `api::error`).
pub async fn pace_bodies<B: MessageBody + 'static>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let pace = req.app_data::<web::Data<AppState>>().and_then(|s| s.pace);
    let tripped = Rc::new(Cell::new(None));
    if let Some(pace) = pace {
        match req.take_payload() {
            Payload::None => {}
            body => req.set_payload(Payload::Stream { payload: Box::pin(Paced::new(body, pace, tripped.clone())) }),
        }
    }
    let res = next.call(req).await;
    match (pace, tripped.get()) {
        (Some(pace), Some(broken)) => match res {
            Ok(res) if res.status().is_success() => Ok(res.map_into_left_body()),
            Ok(res) => {
                tracing::info!(path = %res.request().path(), "request body too slow");
                let (req, _) = res.into_parts();
                Ok(ServiceResponse::from_err(pace.refusal(broken), req).map_into_right_body())
            }
            Err(_) => Err(pace.refusal(broken).into()),
        },
        _ => res.map(ServiceResponse::map_into_left_body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_a_body_may_wait_20_s_plus_1_s_per_500_bytes_up_to_an_hour() {
        let pace = BodyPace::new(&ServerSettings::default()).unwrap();
        assert_eq!(pace.allowance(0), (Duration::from_secs(20), Broken::Pace), "before its first bytes");
        assert_eq!(pace.allowance(5_000), (Duration::from_secs(30), Broken::Pace));
        assert_eq!(pace.allowance(64 << 20), (Duration::from_secs(3600), Broken::Cap));
    }
}
