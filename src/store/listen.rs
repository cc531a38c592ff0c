//! What other processes commit, as the database tells it: PostgreSQL's LISTEN/NOTIFY.
//!
//! The schema's triggers (`migrations/postgres/*_notify.sql`) announce on commit every box
//! change (channel `nms_box`, payload `box:modseq`) and everything an open poll of a
//! notification channel must read again (channel `nms_channel`, payload the channel's id):
//! a newer poll began, the channel went, a subscription into it was made or set to another
//! restart point. Writes of every node and of the command line are announced alike, this
//! node's own included. A [`Listener`] holds one connection that LISTENs to both and turns
//! what arrives into [`Notice`]s.
//!
//! The database queues nothing for a listener that is not connected. So when the connection
//! is lost, or found dead (an idle connection is checked every [`HEARTBEAT`], which also
//! keeps middleboxes from dropping it), the listener connects again, backing off from
//! [`BACKOFF_MIN`] to [`BACKOFF_MAX`] while the database cannot be reached, and once it
//! listens again it says [`Notice::Resumed`]: whatever happened meanwhile is to be read from
//! the database. It says so after its first connection too, for what was committed before.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::error::Result;

/// Where box changes are announced, as `box:modseq`.
pub const BOX_CHANNEL: &str = "nms_box";
/// Where changes an open poll of a notification channel must see are announced, as the
/// channel's id.
pub const POLL_CHANNEL: &str = "nms_channel";
/// The `application_name` of the listening connection (as `pg_stat_activity` shows it).
pub const APPLICATION_NAME: &str = "cpm-nms listener";
/// How long the connection may stay silent before it is checked.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// How long the check may take before the connection counts as dead.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// The first and the longest wait between attempts to connect again.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What the database says was committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Box `id` changed; it is at `modseq` now.
    Box { id: i64, modseq: i64 },
    /// The open poll of channel `id` must read its channel again.
    Channel(i64),
    /// Listening (again): notices may have been missed; anything may have changed.
    Resumed,
}

impl Notice {
    /// What a notification on `channel` with `payload` says; `None`: nothing known.
    pub fn parse(channel: &str, payload: &str) -> Option<Self> {
        match channel {
            BOX_CHANNEL => {
                let (id, modseq) = payload.split_once(':')?;
                Some(Self::Box { id: id.parse().ok()?, modseq: modseq.parse().ok()? })
            }
            POLL_CHANNEL => payload.parse().ok().map(Self::Channel),
            _ => None,
        }
    }
}

/// One LISTENing connection to the database at `url`, made again whenever it is lost.
pub struct Listener {
    url: String,
    conn: Option<PgListener>,
    backoff: Duration,
}

impl Listener {
    /// A listener of the database at `url` (it connects on the first [`Listener::next`]).
    pub fn new(url: &str) -> Self {
        Self { url: url.to_string(), conn: None, backoff: BACKOFF_MIN }
    }

    /// The next notice, waiting for it as long as it takes.
    pub async fn next(&mut self) -> Notice {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                match listen(&self.url).await {
                    Ok(conn) => {
                        self.conn = Some(conn);
                        self.backoff = BACKOFF_MIN;
                        tracing::info!("listening for changes committed by other processes");
                        return Notice::Resumed;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = self.backoff.as_millis() as u64,
                            "cannot listen for changes committed by other processes");
                        tokio::time::sleep(self.backoff).await;
                        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            };
            match tokio::time::timeout(HEARTBEAT, conn.try_recv()).await {
                Ok(Ok(Some(n))) => {
                    if let Some(notice) = Notice::parse(n.channel(), n.payload()) {
                        return notice;
                    }
                }
                // The connection was lost and made again, listening again.
                Ok(Ok(None)) => {
                    tracing::warn!("the listening connection was lost and made again");
                    return Notice::Resumed;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the listening connection failed");
                    self.conn = None;
                }
                Err(_) => {
                    // Silent for a while: is the connection still there?
                    let ping = tokio::time::timeout(PING_TIMEOUT, sqlx::query("SELECT 1").execute(&mut *conn)).await;
                    if !matches!(ping, Ok(Ok(_))) {
                        tracing::warn!("the listening connection does not answer");
                        self.conn = None;
                    }
                }
            }
        }
    }
}

/// A connection to `url` that LISTENs to both channels.
async fn listen(url: &str) -> Result<PgListener> {
    let options = PgConnectOptions::from_str(url)?.application_name(APPLICATION_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(PING_TIMEOUT)
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen_all([BOX_CHANNEL, POLL_CHANNEL]).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_read_from_their_channel_and_payload() {
        assert_eq!(Notice::parse("nms_box", "7:42"), Some(Notice::Box { id: 7, modseq: 42 }));
        assert_eq!(Notice::parse("nms_channel", "9"), Some(Notice::Channel(9)));
        for (channel, payload) in [("nms_box", "7"), ("nms_box", "a:1"), ("nms_channel", "x"), ("other", "1")] {
            assert_eq!(Notice::parse(channel, payload), None, "{channel} {payload}");
        }
    }
}
