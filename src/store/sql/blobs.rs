//! Blob bookkeeping: pins of uploads in flight and deletion marks, one key at a time.

use super::*;

#[async_trait]
impl BlobRefs for SqlStore {
    async fn pin_blob(&self, key: &str, token: &str, now_ms: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        lock(self.engine, &mut tx, Lock::Blob(key)).await?;
        // A deletion mark older than a minute belongs to a crashed collector: ignore it.
        query("DELETE FROM blob_deleting WHERE blob_key = ? AND started_at_ms < ?")
            .bind(key)
            .bind(now_ms - 60_000)
            .execute(&mut tx)
            .await?;
        let deleting: Option<i64> =
            query_scalar("SELECT 1 FROM blob_deleting WHERE blob_key = ?").bind(key).fetch_optional(&mut tx).await?;
        if deleting.is_some() {
            tx.rollback().await?;
            return Ok(false);
        }
        query("INSERT INTO blob_pins (blob_key, token, created_at_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(token)
            .bind(now_ms)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
    async fn unpin_blob(&self, key: &str, token: &str) -> Result<()> {
        self.write(async |conn| {
            query("DELETE FROM blob_pins WHERE blob_key = ? AND token = ?").bind(key).bind(token).execute(conn).await?;
            Ok(())
        })
        .await
    }
    async fn begin_blob_delete(&self, key: &str, now_ms: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        lock(self.engine, &mut tx, Lock::Blob(key)).await?;
        let used: Option<i64> = query_scalar(
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM payload_parts WHERE blob_key = ?1) \
             OR EXISTS (SELECT 1 FROM blob_pins WHERE blob_key = ?1) \
             OR EXISTS (SELECT 1 FROM blob_deleting WHERE blob_key = ?1)",
        )
        .bind(key)
        .fetch_optional(&mut tx)
        .await?;
        if used.is_some() {
            tx.rollback().await?;
            return Ok(false);
        }
        query("INSERT INTO blob_deleting (blob_key, started_at_ms) VALUES (?, ?)")
            .bind(key)
            .bind(now_ms)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
    async fn finish_blob_delete(&self, key: &str) -> Result<()> {
        self.write(async |conn| {
            query("DELETE FROM blob_deleting WHERE blob_key = ?").bind(key).execute(conn).await?;
            Ok(())
        })
        .await
    }
    async fn expire_blob_marks(&self, before_ms: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let pins = query("DELETE FROM blob_pins WHERE created_at_ms < ?").bind(before_ms).execute(&mut tx).await?;
        let marks = query("DELETE FROM blob_deleting WHERE started_at_ms < ?").bind(before_ms).execute(&mut tx).await?;
        tx.commit().await?;
        Ok(pins.rows_affected() + marks.rows_affected())
    }
}
