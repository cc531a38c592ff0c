//! Slow request bodies. A client that sends its body a byte at a time holds a connection,
//! a task and perhaps a half-written upload for as long as it likes; enough of them exhaust
//! the server. So a body must keep pace:
//!
//! the server waits for a body's bytes at most `server.body_timeout_secs`, plus one second
//! per `server.body_min_rate_bytes_per_sec` bytes received (Apache's `mod_reqtimeout`
//! `body=20,MinRate=500` rule). Only time spent waiting on the client counts: while a
//! handler is busy elsewhere (a password check, a slow blob store) the unread bytes wait in
//! buffers and cost the client nothing. An upload at any usable speed earns more time than
//! it uses, however large; a trickle runs out, whatever its length.
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
}

impl BodyPace {
    /// The rule of `server.body_timeout_secs` and `server.body_min_rate_bytes_per_sec`;
    /// `None` when the timeout is 0 (off).
    pub fn new(s: &ServerSettings) -> Option<Self> {
        (s.body_timeout_secs > 0).then(|| Self {
            timeout: Duration::from_secs(s.body_timeout_secs.min(365 * 86_400)),
            min_rate: s.body_min_rate_bytes_per_sec,
        })
    }

    /// How long the server may have waited, all told, once `received` bytes have come.
    fn allowance(&self, received: u64) -> Duration {
        match received.saturating_mul(1000).checked_div(self.min_rate) {
            Some(ms) => self.timeout.saturating_add(Duration::from_millis(ms)),
            None => self.timeout,
        }
    }

    /// The refusal naming the rule.
    fn refusal(&self) -> Error {
        let secs = self.timeout.as_secs();
        let rule = match self.min_rate {
            0 => format!("waited for more than {secs} s"),
            rate => format!("waited for more than {secs} s plus 1 s per {rate} bytes received"),
        };
        Error::BodyTooSlow { rule }
    }
}

/// A request body held to a [`BodyPace`]: it fails with a timeout once the server has
/// waited longer than the pace allows, and sets `tripped`.
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
    tripped: Rc<Cell<bool>>,
    done: bool,
}

impl Paced {
    pub fn new(inner: Payload, pace: BodyPace, tripped: Rc<Cell<bool>>) -> Self {
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
    fn trip(&mut self) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.tripped.set(true);
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
                let deadline = since + this.pace.allowance(this.received).saturating_sub(this.waited);
                if now >= deadline {
                    return this.trip();
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
                    return this.trip();
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
    let tripped = Rc::new(Cell::new(false));
    if let Some(pace) = pace {
        match req.take_payload() {
            Payload::None => {}
            body => req.set_payload(Payload::Stream { payload: Box::pin(Paced::new(body, pace, tripped.clone())) }),
        }
    }
    let res = next.call(req).await;
    match pace {
        Some(pace) if tripped.get() => match res {
            Ok(res) if res.status().is_success() => Ok(res.map_into_left_body()),
            Ok(res) => {
                tracing::info!(path = %res.request().path(), "request body too slow");
                let (req, _) = res.into_parts();
                Ok(ServiceResponse::from_err(pace.refusal(), req).map_into_right_body())
            }
            Err(_) => Err(pace.refusal().into()),
        },
        _ => res.map(ServiceResponse::map_into_left_body),
    }
}
