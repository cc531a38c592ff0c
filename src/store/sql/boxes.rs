//! Boxes: provisioning, lookup and reset.

use super::*;

#[async_trait]
impl Boxes for SqlStore {
    async fn provision_box(&self, store: &str, address: &str, root_id: &str, now_ms: i64) -> Result<BoxRow> {
        let mut tx = self.begin_write().await?;
        let existing =
            query_as::<(i64, i64, i64)>("SELECT id, modseq, validity FROM boxes WHERE store = ? AND address = ?")
                .bind(store)
                .bind(address)
                .fetch_optional(&mut tx)
                .await?;
        if let Some((id, modseq, validity)) = existing {
            tx.rollback().await?;
            return Ok(BoxRow { id, store: store.into(), address: address.into(), modseq, validity });
        }
        // Another node may provision the same box meanwhile: its box is the answer.
        let id: Option<i64> = query_scalar(
            "INSERT INTO boxes (store, address, modseq, validity, created_at_ms) VALUES (?, ?, 1, ?, ?) \
             ON CONFLICT (store, address) DO NOTHING RETURNING id",
        )
        .bind(store)
        .bind(address)
        .bind(now_ms)
        .bind(now_ms)
        .fetch_optional(&mut tx)
        .await?;
        let Some(id) = id else {
            tx.rollback().await?;
            return self.find_box(store, address).await?.ok_or_else(|| Error::internal("a provisioned box vanished"));
        };
        let fid: i64 = query_scalar(
            "INSERT INTO folders (box_id, public_id, parent_id, name, is_root, ancestry, path, created_at_ms, last_mod_seq) \
             VALUES (?, ?, NULL, '', 1, '', '', ?, 1) RETURNING id",
        )
        .bind(id)
        .bind(root_id)
        .bind(now_ms)
        .fetch_one(&mut tx)
        .await?;
        query("UPDATE folders SET ancestry = ? WHERE id = ?")
            .bind(format!("/{fid}/"))
            .bind(fid)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(BoxRow { id, store: store.into(), address: address.into(), modseq: 1, validity: now_ms })
    }
    async fn find_box(&self, store: &str, address: &str) -> Result<Option<BoxRow>> {
        let row = query_as::<(i64, i64, i64)>("SELECT id, modseq, validity FROM boxes WHERE store = ? AND address = ?")
            .bind(store)
            .bind(address)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(id, modseq, validity)| BoxRow {
            id,
            store: store.into(),
            address: address.into(),
            modseq,
            validity,
        }))
    }
    async fn box_by_id(&self, id: i64) -> Result<Option<BoxRow>> {
        let row: Option<(String, String, i64, i64)> =
            query_as("SELECT store, address, modseq, validity FROM boxes WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(store, address, modseq, validity)| BoxRow { id, store, address, modseq, validity }))
    }
    async fn boxes_of_store(&self, store: &str) -> Result<Vec<BoxRow>> {
        let rows: Vec<(i64, String, i64, i64)> =
            query_as("SELECT id, address, modseq, validity FROM boxes WHERE store = ? ORDER BY id")
                .bind(store)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, address, modseq, validity)| BoxRow { id, store: store.to_string(), address, modseq, validity })
            .collect())
    }
    async fn reset_box(&self, b: &BoxRow) -> Result<Written<(BoxRow, Released)>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let keys: Vec<String> = query_scalar(
            "SELECT DISTINCT p.blob_key FROM payload_parts p JOIN objects o ON o.id = p.object_id \
             WHERE o.box_id = ? AND p.blob_key IS NOT NULL",
        )
        .bind(b.id)
        .fetch_all(&mut tx)
        .await?;
        query("DELETE FROM objects WHERE box_id = ?").bind(b.id).execute(&mut tx).await?;
        // One statement: foreign keys (parent references) are checked at its end.
        query("DELETE FROM folders WHERE box_id = ? AND is_root = 0").bind(b.id).execute(&mut tx).await?;
        query("DELETE FROM tombstones WHERE box_id = ?").bind(b.id).execute(&mut tx).await?;
        let root: i64 = query_scalar("SELECT id FROM folders WHERE box_id = ? AND is_root = 1")
            .bind(b.id)
            .fetch_one(&mut tx)
            .await?;
        query("DELETE FROM folder_attributes WHERE folder_id = ?").bind(root).execute(&mut tx).await?;
        query("DELETE FROM folder_flags WHERE folder_id = ?").bind(root).execute(&mut tx).await?;
        query("UPDATE folders SET last_mod_seq = ? WHERE id = ?").bind(seq).bind(root).execute(&mut tx).await?;
        // A new validity makes every earlier restart token stale; nothing before `seq` replays.
        let validity: i64 = query_scalar(sql!(
            "UPDATE boxes SET validity = {greatest}(validity + 1, ?), replay_floor = ? WHERE id = ? RETURNING validity",
            greatest = self.engine.greatest()
        ))
        .bind(crate::ids::now_ms())
        .bind(seq)
        .bind(b.id)
        .fetch_one(&mut tx)
        .await?;
        let now = BoxRow { id: b.id, store: b.store.clone(), address: b.address.clone(), modseq: seq, validity };
        settle(tx, b, seq, true, (now, Released { blob_keys: keys })).await
    }
    async fn box_modseqs(&self, ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            if chunk.is_empty() {
                continue;
            }
            let mut sql = query::Sql::default();
            sql.push("SELECT id, modseq FROM boxes WHERE id IN ");
            query::in_list(&mut sql, chunk);
            for row in sql.fetch_all(&mut *self.pool.acquire().await?).await? {
                out.push((row.try_get(0)?, row.try_get(1)?));
            }
        }
        Ok(out)
    }
    async fn committed_elsewhere(&self) -> Result<Option<bool>> {
        let Some(counter) = self.engine.commit_counter() else { return Ok(None) };
        let mut watch = self.watch.lock().await;
        // Its own connection: the counter tells one connection of the others' commits.
        if watch.is_none() {
            let mut conn = self.pool.acquire().await?.detach();
            let now: i64 = query_scalar(counter).fetch_one(&mut conn).await?;
            *watch = Some((conn, now));
            return Ok(Some(false));
        }
        let Some((conn, last)) = watch.as_mut() else { return Ok(None) };
        match query_scalar::<i64>(counter).fetch_one(&mut *conn).await {
            Ok(now) => {
                let changed = now != *last;
                *last = now;
                Ok(Some(changed))
            }
            Err(e) => {
                // Made again next time; meanwhile anything may have changed.
                *watch = None;
                Err(e.into())
            }
        }
    }
}
