//! Notification channels and subscriptions in SQLite (the `MetaStore` verbs delegate here).

use sqlx::{AssertSqlSafe, Row, SqlitePool};

use crate::error::{Error, Result};
use crate::store::{BoxRow, Channel, Filter, Subscription};

const CHANNEL_COLUMNS: &str = "id, public_id, principal, user_id, client_correlator, application_tag, \
     lifetime_secs, expires_at_ms, max_notifications";

const SUBSCRIPTION_COLUMNS: &str = "id, box_id, public_id, principal, channel_id, notify_url, callback_data, \
     notification_format, filter, client_correlator, duration_secs, expires_at_ms, restart_token, \
     position_validity, position_modseq, next_index";

fn channel_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Channel> {
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
    })
}

fn subscription_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Subscription> {
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
        next_index: r.try_get("next_index")?,
    })
}

fn filter_json(f: &Option<Filter>) -> Result<Option<String>> {
    f.as_ref().map(|f| serde_json::to_string(f).map_err(Error::internal)).transpose()
}

pub async fn create_channel(pool: &SqlitePool, c: &Channel) -> Result<Channel> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO channels (public_id, principal, user_id, client_correlator, application_tag, lifetime_secs, \
         expires_at_ms, max_notifications, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&c.public_id)
    .bind(&c.principal)
    .bind(&c.user_id)
    .bind(&c.client_correlator)
    .bind(&c.application_tag)
    .bind(c.lifetime_secs)
    .bind(c.expires_at_ms)
    .bind(i64::from(c.max_notifications))
    .bind(crate::ids::now_ms())
    .fetch_one(pool)
    .await?;
    Ok(Channel { id, ..c.clone() })
}

pub async fn channel(pool: &SqlitePool, public_id: &str, now_ms: i64) -> Result<Option<Channel>> {
    let sql = format!("SELECT {CHANNEL_COLUMNS} FROM channels WHERE public_id = ? AND expires_at_ms > ?");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(public_id).bind(now_ms).fetch_optional(pool).await?;
    row.as_ref().map(channel_from_row).transpose()
}

pub async fn channels_of(pool: &SqlitePool, principal: &str, user_id: &str, now_ms: i64) -> Result<Vec<Channel>> {
    let sql = format!(
        "SELECT {CHANNEL_COLUMNS} FROM channels WHERE principal = ? AND user_id = ? AND expires_at_ms > ? ORDER BY id"
    );
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(principal).bind(user_id).bind(now_ms).fetch_all(pool).await?;
    rows.iter().map(channel_from_row).collect()
}

pub async fn renew_channel(
    pool: &SqlitePool,
    public_id: &str,
    lifetime_secs: i64,
    now_ms: i64,
) -> Result<Option<Channel>> {
    sqlx::query("UPDATE channels SET lifetime_secs = ?, expires_at_ms = ? WHERE public_id = ? AND expires_at_ms > ?")
        .bind(lifetime_secs)
        .bind(now_ms.saturating_add(lifetime_secs.saturating_mul(1000)))
        .bind(public_id)
        .bind(now_ms)
        .execute(pool)
        .await?;
    channel(pool, public_id, now_ms).await
}

pub async fn delete_channel(pool: &SqlitePool, public_id: &str) -> Result<bool> {
    let res = sqlx::query("DELETE FROM channels WHERE public_id = ?").bind(public_id).execute(pool).await?;
    Ok(res.rows_affected() > 0)
}

pub async fn create_subscription(pool: &SqlitePool, s: &Subscription) -> Result<Subscription> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO subscriptions (box_id, public_id, principal, channel_id, notify_url, callback_data, \
         notification_format, filter, client_correlator, duration_secs, expires_at_ms, restart_token, \
         position_validity, position_modseq, next_index, created_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(s.box_id)
    .bind(&s.public_id)
    .bind(&s.principal)
    .bind(s.channel_id)
    .bind(&s.notify_url)
    .bind(&s.callback_data)
    .bind(&s.notification_format)
    .bind(filter_json(&s.filter)?)
    .bind(&s.client_correlator)
    .bind(s.duration_secs)
    .bind(s.expires_at_ms)
    .bind(&s.restart_token)
    .bind(s.position_validity)
    .bind(s.position_modseq)
    .bind(s.next_index)
    .bind(crate::ids::now_ms())
    .fetch_one(pool)
    .await?;
    Ok(Subscription { id, ..s.clone() })
}

async fn one_subscription(
    pool: &SqlitePool,
    where_sql: &str,
    b: &BoxRow,
    key: &str,
    now_ms: i64,
) -> Result<Option<Subscription>> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE box_id = ? AND {where_sql} AND expires_at_ms > ?"
    );
    let row = sqlx::query(AssertSqlSafe(sql)).bind(b.id).bind(key).bind(now_ms).fetch_optional(pool).await?;
    row.as_ref().map(subscription_from_row).transpose()
}

pub async fn subscription(pool: &SqlitePool, b: &BoxRow, public_id: &str, now_ms: i64) -> Result<Option<Subscription>> {
    one_subscription(pool, "public_id = ?", b, public_id, now_ms).await
}

pub async fn subscription_by_correlator(
    pool: &SqlitePool,
    b: &BoxRow,
    principal: &str,
    correlator: &str,
    now_ms: i64,
) -> Result<Option<Subscription>> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
         WHERE box_id = ? AND principal = ? AND client_correlator = ? AND expires_at_ms > ?"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(b.id)
        .bind(principal)
        .bind(correlator)
        .bind(now_ms)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(subscription_from_row).transpose()
}

pub async fn subscriptions_of(
    pool: &SqlitePool,
    b: &BoxRow,
    principal: &str,
    now_ms: i64,
) -> Result<Vec<Subscription>> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE box_id = ? AND principal = ? AND expires_at_ms > ? \
         ORDER BY id"
    );
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(b.id).bind(principal).bind(now_ms).fetch_all(pool).await?;
    rows.iter().map(subscription_from_row).collect()
}

pub async fn subscriptions_of_channel(pool: &SqlitePool, channel_id: i64, now_ms: i64) -> Result<Vec<Subscription>> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE channel_id = ? AND expires_at_ms > ? ORDER BY id"
    );
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(channel_id).bind(now_ms).fetch_all(pool).await?;
    rows.iter().map(subscription_from_row).collect()
}

pub async fn update_subscription(pool: &SqlitePool, s: &Subscription) -> Result<()> {
    sqlx::query(
        "UPDATE subscriptions SET duration_secs = ?, expires_at_ms = ?, restart_token = ?, position_validity = ?, \
         position_modseq = ? WHERE id = ?",
    )
    .bind(s.duration_secs)
    .bind(s.expires_at_ms)
    .bind(&s.restart_token)
    .bind(s.position_validity)
    .bind(s.position_modseq)
    .bind(s.id)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn delete_subscription(pool: &SqlitePool, b: &BoxRow, public_id: &str) -> Result<bool> {
    let res = sqlx::query("DELETE FROM subscriptions WHERE box_id = ? AND public_id = ?")
        .bind(b.id)
        .bind(public_id)
        .execute(pool)
        .await?;
    Ok(res.rows_affected() > 0)
}

/// Move the position (and consume the index when `consume`), if the index is still `index`.
pub async fn advance(
    pool: &SqlitePool,
    id: i64,
    index: i64,
    validity: i64,
    modseq: i64,
    consume: bool,
) -> Result<bool> {
    let res = sqlx::query(
        "UPDATE subscriptions SET position_validity = ?, position_modseq = ?, next_index = next_index + ? \
         WHERE id = ? AND next_index = ?",
    )
    .bind(validity)
    .bind(modseq)
    .bind(i64::from(consume))
    .bind(id)
    .bind(index)
    .execute(pool)
    .await?;
    Ok(res.rows_affected() > 0)
}

pub async fn purge_expired(pool: &SqlitePool, now_ms: i64) -> Result<u64> {
    let subs = sqlx::query("DELETE FROM subscriptions WHERE expires_at_ms <= ?").bind(now_ms).execute(pool).await?;
    let chans = sqlx::query("DELETE FROM channels WHERE expires_at_ms <= ?").bind(now_ms).execute(pool).await?;
    Ok(subs.rows_affected() + chans.rows_affected())
}
