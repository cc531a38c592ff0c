//! Notification channels and subscriptions (the `Store` verbs delegate here).

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use async_trait::async_trait;

use super::{SqlStore, Tx, current_modseq, lock, query, query_as, query_scalar, try_lock};
use crate::store::Subscriptions;
use crate::store::engine::Engine;
use crate::store::engine::Lock;

use crate::error::{Error, Result};
use crate::model::{Advance, BoxRow, Channel, Filter, NotificationFormat, OutboxList, Subscription, Within, Written};

const CHANNEL_COLUMNS: &str = "id, public_id, principal, user_id, client_correlator, application_tag, \
     lifetime_secs, expires_at_ms, max_notifications, max_wait_secs, poll_generation";

const SUBSCRIPTION_COLUMNS: &str = "id, box_id, public_id, principal, channel_id, notify_url, callback_data, \
     notification_format, filter, client_correlator, duration_secs, expires_at_ms, restart_token, \
     position_validity, position_modseq, position_part, position_id, next_index";

fn channel_from_row(r: &AnyRow) -> Result<Channel> {
    let max: i64 = r.try_get("max_notifications")?;
    Ok(Channel {
        id: r.try_get("id")?,
        public_id: r.try_get("public_id")?,
        principal: r.try_get("principal")?,
        user_id: r.try_get("user_id")?,
        client_correlator: r.try_get("client_correlator")?,
        application_tag: r.try_get("application_tag")?,
        lifetime_secs: r.try_get("lifetime_secs")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
        max_notifications: u32::try_from(max).unwrap_or(1),
        max_wait_secs: u32::try_from(r.try_get::<i64, _>("max_wait_secs")?).unwrap_or(0),
        poll_generation: r.try_get("poll_generation")?,
    })
}

fn subscription_from_row(r: &AnyRow) -> Result<Subscription> {
    let filter: Option<String> = r.try_get("filter")?;
    let filter = filter
        .map(|f| serde_json::from_str::<Filter>(&f))
        .transpose()
        .map_err(|e| Error::internal(format!("stored subscription filter: {e}")))?;
    Ok(Subscription {
        id: r.try_get("id")?,
        box_id: r.try_get("box_id")?,
        public_id: r.try_get("public_id")?,
        principal: r.try_get("principal")?,
        channel_id: r.try_get("channel_id")?,
        notify_url: r.try_get("notify_url")?,
        callback_data: r.try_get("callback_data")?,
        notification_format: r.try_get("notification_format")?,
        filter,
        client_correlator: r.try_get("client_correlator")?,
        duration_secs: r.try_get("duration_secs")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
        restart_token: r.try_get("restart_token")?,
        position_validity: r.try_get("position_validity")?,
        position_modseq: r.try_get("position_modseq")?,
        position_within: within_of(r.try_get("position_part")?, r.try_get("position_id")?),
        next_index: r.try_get("next_index")?,
    })
}

/// A stored (part, id): part 3 is "after the whole group".
fn within_of(part: i64, id: i64) -> Within {
    u8::try_from(part).ok().filter(|p| *p <= 2).map(|p| (p, id))
}

/// The stored (part, id) of a position.
fn within_cols(w: Within) -> (i64, i64) {
    w.map_or((3, 0), |(p, id)| (i64::from(p), id))
}

fn filter_json(f: &Option<Filter>) -> Result<Option<String>> {
    f.as_ref().map(|f| serde_json::to_string(f).map_err(Error::internal)).transpose()
}

pub async fn create_channel(conn: &mut Tx<'_>, c: &Channel) -> Result<Channel> {
    let id: i64 = query_scalar(
        "INSERT INTO channels (public_id, principal, user_id, client_correlator, application_tag, lifetime_secs, \
         expires_at_ms, max_notifications, max_wait_secs, poll_generation, created_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&c.public_id)
    .bind(&c.principal)
    .bind(&c.user_id)
    .bind(&c.client_correlator)
    .bind(&c.application_tag)
    .bind(c.lifetime_secs)
    .bind(c.expires_at_ms)
    .bind(i64::from(c.max_notifications))
    .bind(i64::from(c.max_wait_secs))
    .bind(c.poll_generation)
    .bind(crate::ids::now_ms())
    .fetch_one(&mut *conn)
    .await?;
    Ok(Channel { id, ..c.clone() })
}

pub async fn channel(pool: &AnyPool, public_id: &str, now_ms: i64) -> Result<Option<Channel>> {
    let sql = format!("SELECT {CHANNEL_COLUMNS} FROM channels WHERE public_id = ? AND expires_at_ms > ?");
    let row = query(sql).bind(public_id).bind(now_ms).fetch_optional(pool).await?;
    row.as_ref().map(channel_from_row).transpose()
}

pub async fn channels_of(pool: &AnyPool, principal: &str, user_id: &str, now_ms: i64) -> Result<Vec<Channel>> {
    let sql = format!(
        "SELECT {CHANNEL_COLUMNS} FROM channels WHERE principal = ? AND user_id = ? AND expires_at_ms > ? ORDER BY id"
    );
    let rows = query(sql).bind(principal).bind(user_id).bind(now_ms).fetch_all(pool).await?;
    rows.iter().map(channel_from_row).collect()
}

pub async fn count_channels(pool: &AnyPool, principal: &str, now_ms: i64) -> Result<u64> {
    let n: i64 = query_scalar("SELECT count(*) FROM channels WHERE principal = ? AND expires_at_ms > ?")
        .bind(principal)
        .bind(now_ms)
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub async fn renew_channel(
    conn: &mut Tx<'_>,
    public_id: &str,
    lifetime_secs: i64,
    now_ms: i64,
) -> Result<Option<Channel>> {
    query("UPDATE channels SET lifetime_secs = ?, expires_at_ms = ? WHERE public_id = ? AND expires_at_ms > ?")
        .bind(lifetime_secs)
        .bind(now_ms.saturating_add(lifetime_secs.saturating_mul(1000)))
        .bind(public_id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    let sql = format!("SELECT {CHANNEL_COLUMNS} FROM channels WHERE public_id = ? AND expires_at_ms > ?");
    let row = query(sql).bind(public_id).bind(now_ms).fetch_optional(&mut *conn).await?;
    row.as_ref().map(channel_from_row).transpose()
}

/// Renew the channel's lifetime (its own, from `now_ms`) and raise its poll generation.
pub async fn begin_poll(conn: &mut Tx<'_>, public_id: &str, now_ms: i64) -> Result<Option<Channel>> {
    let sql = format!(
        "UPDATE channels SET expires_at_ms = ? + lifetime_secs * 1000, poll_generation = poll_generation + 1 \
         WHERE public_id = ? AND expires_at_ms > ? RETURNING {CHANNEL_COLUMNS}"
    );
    let row = query(sql).bind(now_ms).bind(public_id).bind(now_ms).fetch_optional(&mut *conn).await?;
    row.as_ref().map(channel_from_row).transpose()
}

pub async fn delete_channel(conn: &mut Tx<'_>, public_id: &str) -> Result<bool> {
    let res = query("DELETE FROM channels WHERE public_id = ?").bind(public_id).execute(&mut *conn).await?;
    Ok(res.rows_affected() > 0)
}

/// Insert `s` unless its box holds `max_per_box` live subscriptions already: run in a write
/// transaction that holds the box's subscription lock (`Lock::Subscriptions`), so the
/// count and the insert are atomic against other creators on every node.
/// `Err(None)`: a live subscription of the same login holds the client correlator.
pub async fn create_subscription(
    conn: &mut Tx<'_>,
    s: &Subscription,
    max_per_box: u32,
) -> std::result::Result<Option<Subscription>, Option<Error>> {
    let now = crate::ids::now_ms();
    if let Some(c) = &s.client_correlator {
        // An expired subscription no longer holds its correlator.
        query(
            "DELETE FROM subscriptions WHERE box_id = ? AND principal = ? AND client_correlator = ? \
             AND expires_at_ms <= ?",
        )
        .bind(s.box_id)
        .bind(&s.principal)
        .bind(c)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| Some(e.into()))?;
    }
    let inserted: std::result::Result<Option<i64>, sqlx::Error> = query_scalar(
        "INSERT INTO subscriptions (box_id, public_id, principal, channel_id, notify_url, callback_data, \
         notification_format, filter, client_correlator, duration_secs, expires_at_ms, restart_token, \
         position_validity, position_modseq, position_part, position_id, next_index, created_at_ms) \
         SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
         WHERE ? = 0 OR (SELECT COUNT(*) FROM subscriptions WHERE box_id = ? AND expires_at_ms > ?) < ? \
         RETURNING id",
    )
    .bind(s.box_id)
    .bind(&s.public_id)
    .bind(&s.principal)
    .bind(s.channel_id)
    .bind(&s.notify_url)
    .bind(&s.callback_data)
    .bind(&s.notification_format)
    .bind(filter_json(&s.filter).map_err(Some)?)
    .bind(&s.client_correlator)
    .bind(s.duration_secs)
    .bind(s.expires_at_ms)
    .bind(&s.restart_token)
    .bind(s.position_validity)
    .bind(s.position_modseq)
    .bind(within_cols(s.position_within).0)
    .bind(within_cols(s.position_within).1)
    .bind(s.next_index)
    .bind(now)
    .bind(i64::from(max_per_box))
    .bind(s.box_id)
    .bind(now)
    .bind(i64::from(max_per_box))
    .fetch_optional(&mut *conn)
    .await;
    match inserted {
        Ok(id) => Ok(id.map(|id| Subscription { id, ..s.clone() })),
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Err(None),
        Err(e) => Err(Some(e.into())),
    }
}

/// The live subscription of box `box_id` matching `where_sql`, with `keys` bound in order.
async fn one_subscription<'e>(
    conn: impl sqlx::Executor<'e, Database = sqlx::Any>,
    box_id: i64,
    where_sql: &str,
    keys: &[&str],
    now_ms: i64,
) -> Result<Option<Subscription>> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE box_id = ? AND {where_sql} AND expires_at_ms > ?"
    );
    let mut q = query(sql).bind(box_id);
    for k in keys {
        q = q.bind(*k);
    }
    let row = q.bind(now_ms).fetch_optional(conn).await?;
    row.as_ref().map(subscription_from_row).transpose()
}

pub async fn subscription(pool: &AnyPool, b: &BoxRow, public_id: &str, now_ms: i64) -> Result<Option<Subscription>> {
    one_subscription(pool, b.id, "public_id = ?", &[public_id], now_ms).await
}

pub async fn subscription_by_correlator<'e>(
    conn: impl sqlx::Executor<'e, Database = sqlx::Any>,
    box_id: i64,
    principal: &str,
    correlator: &str,
    now_ms: i64,
) -> Result<Option<Subscription>> {
    one_subscription(conn, box_id, "principal = ? AND client_correlator = ?", &[principal, correlator], now_ms).await
}

pub async fn subscriptions_of(pool: &AnyPool, b: &BoxRow, principal: &str, now_ms: i64) -> Result<Vec<Subscription>> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE box_id = ? AND principal = ? AND expires_at_ms > ? \
         ORDER BY id"
    );
    let rows = query(sql).bind(b.id).bind(principal).bind(now_ms).fetch_all(pool).await?;
    rows.iter().map(subscription_from_row).collect()
}

pub async fn subscriptions_of_channel(pool: &AnyPool, channel_id: i64, now_ms: i64) -> Result<Vec<Subscription>> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE channel_id = ? AND expires_at_ms > ? ORDER BY id"
    );
    let rows = query(sql).bind(channel_id).bind(now_ms).fetch_all(pool).await?;
    rows.iter().map(subscription_from_row).collect()
}

pub async fn update_subscription(conn: &mut Tx<'_>, s: &Subscription, position: bool) -> Result<Written<()>> {
    if !position {
        query("UPDATE subscriptions SET duration_secs = ?, expires_at_ms = ? WHERE id = ?")
            .bind(s.duration_secs)
            .bind(s.expires_at_ms)
            .bind(s.id)
            .execute(&mut *conn)
            .await?;
        return Ok(Written::unchanged(()));
    }
    query(
        "UPDATE subscriptions SET duration_secs = ?, expires_at_ms = ?, restart_token = ?, position_validity = ?, \
         position_modseq = ?, position_part = ?, position_id = ? WHERE id = ?",
    )
    .bind(s.duration_secs)
    .bind(s.expires_at_ms)
    .bind(&s.restart_token)
    .bind(s.position_validity)
    .bind(s.position_modseq)
    .bind(within_cols(s.position_within).0)
    .bind(within_cols(s.position_within).1)
    .bind(s.id)
    .execute(&mut *conn)
    .await?;
    // Replay restarts from the new position: its changes may be pending at once.
    Ok(Written::committed((), s.box_id, current_modseq(&mut *conn, s.box_id).await?))
}

pub async fn delete_subscription(conn: &mut Tx<'_>, b: &BoxRow, public_id: &str) -> Result<bool> {
    let res = query("DELETE FROM subscriptions WHERE box_id = ? AND public_id = ?")
        .bind(b.id)
        .bind(public_id)
        .execute(&mut *conn)
        .await?;
    Ok(res.rows_affected() > 0)
}

/// Move the position (and consume the index when `consume`) if the index and position are
/// still those the list was built from; with `outbox`, queue the rendered list for its
/// webhook in the same transaction (the caller's, `conn`).
pub async fn advance(conn: &mut Tx<'_>, m: &Advance, consume: bool, outbox: Option<&str>) -> Result<bool> {
    let res = query(
        "UPDATE subscriptions SET position_validity = ?, position_modseq = ?, position_part = ?, position_id = ?, \
         restart_token = ?, next_index = next_index + ? WHERE id = ? AND next_index = ? AND position_validity = ? \
         AND position_modseq = ? AND position_part = ? AND position_id = ?",
    )
    .bind(m.to.0)
    .bind(m.to.1)
    .bind(within_cols(m.to.2).0)
    .bind(within_cols(m.to.2).1)
    .bind(&m.token)
    .bind(i64::from(consume))
    .bind(m.id)
    .bind(m.index)
    .bind(m.from.0)
    .bind(m.from.1)
    .bind(within_cols(m.from.2).0)
    .bind(within_cols(m.from.2).1)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() == 0 {
        return Ok(false);
    }
    if let Some(body) = outbox {
        let now = crate::ids::now_ms();
        query(
            "INSERT INTO webhook_outbox (subscription_id, list_index, body, due_at_ms, created_at_ms) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(m.id)
        .bind(m.index)
        .bind(body)
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

pub async fn webhook_candidates(
    pool: &AnyPool,
    now_ms: i64,
    boxes: Option<&[i64]>,
    limit: u32,
) -> Result<Vec<Subscription>> {
    // Box ids are integers: listing them inline is safe.
    let only = match boxes {
        None => String::new(),
        Some([]) => return Ok(Vec::new()),
        Some(ids) => {
            format!(" AND s.box_id IN ({})", ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
        }
    };
    let sql = format!(
        "SELECT s.* FROM subscriptions s JOIN boxes b ON b.id = s.box_id \
         WHERE s.channel_id IS NULL AND s.expires_at_ms > ?{only} \
         AND (b.modseq > s.position_modseq OR b.validity <> s.position_validity OR s.position_part < 3) \
         AND NOT EXISTS (SELECT 1 FROM webhook_outbox w WHERE w.subscription_id = s.id) \
         ORDER BY s.id LIMIT ?"
    );
    let rows = query(sql).bind(now_ms).bind(i64::from(limit)).fetch_all(pool).await?;
    rows.iter().map(subscription_from_row).collect()
}

/// A claimed outbox row: subscription, box, notifyURL, index, body, attempts, format.
type OutboxRow = (i64, i64, String, i64, String, i64, Option<String>);

pub async fn claim_webhook_lists(
    conn: &mut Tx<'_>,
    engine: Engine,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<OutboxList>> {
    // A list leased by another node (or being claimed by one) is skipped, not waited for.
    let rows: Vec<OutboxRow> = query_as(format!(
        "UPDATE webhook_outbox SET lease_until_ms = ?1 \
         WHERE subscription_id IN (SELECT w.subscription_id FROM webhook_outbox w \
           JOIN subscriptions s ON s.id = w.subscription_id \
           WHERE w.due_at_ms <= ?2 AND w.lease_until_ms <= ?2 AND s.expires_at_ms > ?2 \
           ORDER BY w.due_at_ms LIMIT ?3{}) \
         RETURNING subscription_id, (SELECT box_id FROM subscriptions WHERE id = subscription_id), \
           (SELECT notify_url FROM subscriptions WHERE id = subscription_id), \
           list_index, body, attempts, \
           (SELECT notification_format FROM subscriptions WHERE id = subscription_id)",
        engine.skip_locked("w")
    ))
    .bind(lease_until_ms)
    .bind(now_ms)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(subscription_id, box_id, notify_url, index, body, attempts, format)| OutboxList {
            subscription_id,
            box_id,
            notify_url,
            index,
            body,
            format: NotificationFormat::of(format.as_deref()),
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        })
        .collect())
}

pub async fn next_webhook_due(pool: &AnyPool, engine: Engine) -> Result<Option<i64>> {
    let sql = format!("SELECT min({}(due_at_ms, lease_until_ms)) FROM webhook_outbox", engine.greatest());
    Ok(query_scalar(sql).fetch_one(pool).await?)
}

pub async fn webhook_delivered(conn: &mut Tx<'_>, subscription_id: i64, index: i64) -> Result<()> {
    query("DELETE FROM webhook_outbox WHERE subscription_id = ? AND list_index = ?")
        .bind(subscription_id)
        .bind(index)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn webhook_failed(
    conn: &mut Tx<'_>,
    subscription_id: i64,
    index: i64,
    due_at_ms: i64,
    error: &str,
) -> Result<()> {
    query(
        "UPDATE webhook_outbox SET attempts = attempts + 1, due_at_ms = ?, lease_until_ms = 0, last_error = ? \
         WHERE subscription_id = ? AND list_index = ?",
    )
    .bind(due_at_ms)
    .bind(error)
    .bind(subscription_id)
    .bind(index)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn end_subscription(conn: &mut Tx<'_>, subscription_id: i64) -> Result<()> {
    query("DELETE FROM subscriptions WHERE id = ?").bind(subscription_id).execute(&mut *conn).await?;
    Ok(())
}

/// Drop expired subscriptions, then expired channels (with what still delivers into them),
/// in the transaction `conn` is in.
pub async fn purge_expired(conn: &mut Tx<'_>, now_ms: i64) -> Result<u64> {
    let subs = query("DELETE FROM subscriptions WHERE expires_at_ms <= ?").bind(now_ms).execute(&mut *conn).await?;
    let chans = query("DELETE FROM channels WHERE expires_at_ms <= ?").bind(now_ms).execute(&mut *conn).await?;
    Ok(subs.rows_affected() + chans.rows_affected())
}

#[async_trait]
impl Subscriptions for SqlStore {
    async fn create_channel(&self, c: &Channel) -> Result<Channel> {
        self.write(async |conn| create_channel(conn, c).await).await
    }
    async fn channel(&self, public_id: &str, now_ms: i64) -> Result<Option<Channel>> {
        channel(&self.pool, public_id, now_ms).await
    }
    async fn channels_of(&self, principal: &str, user_id: &str, now_ms: i64) -> Result<Vec<Channel>> {
        channels_of(&self.pool, principal, user_id, now_ms).await
    }
    async fn count_channels(&self, principal: &str, now_ms: i64) -> Result<u64> {
        count_channels(&self.pool, principal, now_ms).await
    }
    async fn renew_channel(&self, public_id: &str, lifetime_secs: i64, now_ms: i64) -> Result<Option<Channel>> {
        self.write(async |conn| renew_channel(conn, public_id, lifetime_secs, now_ms).await).await
    }
    async fn begin_poll(&self, public_id: &str, now_ms: i64) -> Result<Option<Channel>> {
        self.write(async |conn| begin_poll(conn, public_id, now_ms).await).await
    }
    async fn delete_channel(&self, public_id: &str) -> Result<bool> {
        self.write(async |conn| delete_channel(conn, public_id).await).await
    }
    async fn create_subscription(&self, s: &Subscription, max_per_box: u32) -> Result<Written<Option<Subscription>>> {
        let mut tx = self.begin_write().await?;
        lock(self.engine, &mut tx, Lock::Subscriptions(s.box_id)).await?;
        match create_subscription(&mut tx, s, max_per_box).await {
            // Changes after its position may be pending at once: the box as it stands.
            Ok(Some(created)) => {
                let modseq = current_modseq(&mut tx, s.box_id).await?;
                tx.commit().await?;
                Ok(Written::committed(Some(created), s.box_id, modseq))
            }
            Ok(None) => {
                tx.rollback().await?;
                Ok(Written::unchanged(None))
            }
            // The same correlator is live already: that subscription is the answer.
            Err(None) => {
                // Read in this transaction: the holder may be a write of the same group.
                let correlator = s.client_correlator.as_deref().unwrap_or_default();
                let now = crate::ids::now_ms();
                let existing = subscription_by_correlator(&mut tx, s.box_id, &s.principal, correlator, now).await?;
                tx.rollback().await?;
                Ok(Written::unchanged(existing))
            }
            Err(Some(e)) => Err(e),
        }
    }
    async fn subscription(&self, b: &BoxRow, public_id: &str, now_ms: i64) -> Result<Option<Subscription>> {
        subscription(&self.pool, b, public_id, now_ms).await
    }
    async fn subscription_by_correlator(
        &self,
        b: &BoxRow,
        principal: &str,
        correlator: &str,
        now_ms: i64,
    ) -> Result<Option<Subscription>> {
        subscription_by_correlator(&self.pool, b.id, principal, correlator, now_ms).await
    }
    async fn subscriptions_of(&self, b: &BoxRow, principal: &str, now_ms: i64) -> Result<Vec<Subscription>> {
        subscriptions_of(&self.pool, b, principal, now_ms).await
    }
    async fn subscriptions_of_channel(&self, channel_id: i64, now_ms: i64) -> Result<Vec<Subscription>> {
        subscriptions_of_channel(&self.pool, channel_id, now_ms).await
    }
    async fn update_subscription(&self, s: &Subscription, position: bool) -> Result<Written<()>> {
        self.write(async |conn| update_subscription(conn, s, position).await).await
    }
    async fn delete_subscription(&self, b: &BoxRow, public_id: &str) -> Result<bool> {
        self.write(async |conn| delete_subscription(conn, b, public_id).await).await
    }
    async fn advance_subscription(&self, m: &Advance, outbox: Option<&str>) -> Result<bool> {
        self.advance(m, true, outbox).await
    }
    async fn skip_subscription(&self, m: &Advance) -> Result<bool> {
        self.advance(m, false, None).await
    }
    async fn webhook_candidates(&self, now_ms: i64, boxes: Option<&[i64]>, limit: u32) -> Result<Vec<Subscription>> {
        webhook_candidates(&self.pool, now_ms, boxes, limit).await
    }
    async fn claim_webhook_lists(&self, now_ms: i64, lease_until_ms: i64, limit: u32) -> Result<Vec<OutboxList>> {
        let engine = self.engine;
        self.write(async |conn| claim_webhook_lists(conn, engine, now_ms, lease_until_ms, limit).await).await
    }
    async fn webhook_boxes(&self, now_ms: i64) -> Result<Vec<i64>> {
        Ok(query_scalar("SELECT DISTINCT box_id FROM subscriptions WHERE channel_id IS NULL AND expires_at_ms > ?")
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?)
    }
    async fn next_webhook_due(&self) -> Result<Option<i64>> {
        next_webhook_due(&self.pool, self.engine).await
    }
    async fn webhook_delivered(&self, subscription_id: i64, index: i64) -> Result<()> {
        self.write(async |conn| webhook_delivered(conn, subscription_id, index).await).await
    }
    async fn webhook_failed(&self, subscription_id: i64, index: i64, due_at_ms: i64, error: &str) -> Result<()> {
        self.write(async |conn| webhook_failed(conn, subscription_id, index, due_at_ms, error).await).await
    }
    async fn end_subscription(&self, subscription_id: i64) -> Result<()> {
        self.write(async |conn| end_subscription(conn, subscription_id).await).await
    }
    async fn purge_expired_subscriptions(&self, now_ms: i64) -> Result<u64> {
        // One node at a time: two purges at once could take the same subscription rows in
        // opposite orders (one deleting subscriptions, the other channels cascading to them).
        let mut tx = self.begin_write().await?;
        if !try_lock(self.engine, &mut tx, Lock::Purging).await? {
            tx.rollback().await?;
            return Ok(0);
        }
        let purged = purge_expired(&mut tx, now_ms).await?;
        tx.commit().await?;
        Ok(purged)
    }
}

impl SqlStore {
    /// Move a subscription's position: a write of its own, kept only if it moved.
    async fn advance(&self, m: &Advance, consume: bool, outbox: Option<&str>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let moved = advance(&mut tx, m, consume, outbox).await?;
        if moved {
            tx.commit().await?
        } else {
            tx.rollback().await?
        }
        Ok(moved)
    }
}
