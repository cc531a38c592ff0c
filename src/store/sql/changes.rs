//! Strict synchronization: the box state, the changes since a modseq (whole groups, huge ones sliced), tombstones and their pruning.

use super::*;

#[async_trait]
impl Changes for SqlStore {
    async fn sync_state(&self, b: &BoxRow) -> Result<(i64, i64, i64)> {
        Ok(query_as("SELECT modseq, validity, replay_floor FROM boxes WHERE id = ?")
            .bind(b.id)
            .fetch_one(&self.pool)
            .await?)
    }
    async fn changes_since(
        &self,
        b: &BoxRow,
        after: i64,
        after_within: Within,
        limit: u32,
        with_attributes: bool,
    ) -> Result<ChangePage> {
        // One read transaction: the changes and the box's sync state are one snapshot.
        let mut tx = self.begin_read().await?;
        let (modseq, validity, replay_floor): (i64, i64, i64) =
            query_as("SELECT modseq, validity, replay_floor FROM boxes WHERE id = ?")
                .bind(b.id)
                .fetch_one(&mut *tx)
                .await?;
        let limit = i64::from(limit.max(1));
        // A page of one group, from `cursor` (`None`: its start).
        let slice = async |mut tx: ReadTx<'_>, seq: i64, cursor: Within| -> Result<ChangePage> {
            let (changes, within) = group_slice(self.engine, &mut tx, b, seq, cursor, limit, with_attributes).await?;
            let more = within.is_some() || changes_beyond(&mut tx, b, seq).await?;
            tx.commit().await?;
            Ok(ChangePage { changes, through: seq, through_within: within, more, modseq, validity, replay_floor })
        };
        if after_within.is_some() {
            // The rest of a group a previous page split.
            return slice(tx, after, after_within).await;
        }
        // The `limit` smallest modseqs of each source hold the `limit` smallest overall: how
        // many of those there are (at most `limit`) and the last of them, in one row.
        let next = |table: &str| {
            format!(
                "SELECT * FROM (SELECT last_mod_seq AS s FROM {table} WHERE box_id = ?1 AND last_mod_seq > ?2 \
                 ORDER BY last_mod_seq LIMIT ?3) {table}_next"
            )
        };
        let (found, last): (i64, Option<i64>) = query_as(sql!(
            "SELECT count(*), max(s) FROM (SELECT s FROM ({} UNION ALL {} UNION ALL {}) pending \
             ORDER BY s LIMIT ?3) firsts",
            next("objects"),
            next("folders"),
            next("tombstones")
        ))
        .bind(b.id)
        .bind(after)
        .bind(limit)
        .fetch_one(&mut *tx)
        .await?;
        // Whole modseq groups: the page ends at the limit-th change's modseq ...
        let mut through = match last {
            Some(s) if found >= limit => s,
            _ => modseq,
        };
        // ... unless that group is too large to hold: then the page ends before it, or, when
        // it is the first group, takes a slice of it (the rest follows from the position).
        if found >= limit && group_size(&mut tx, b, through, limit * GROUP_SLACK).await? {
            match last_change_below(&mut tx, b, after, through).await? {
                Some(before) => through = before,
                None => return slice(tx, through, None).await,
            }
        }
        let more = changes_beyond(&mut tx, b, through).await?;
        // The ids of the changed objects and folders, each list one JSON array: one row.
        let ids = |table: &str| {
            let rows = self.engine.json_rows(
                &["id"],
                &format!("{table} WHERE box_id = ?1 AND last_mod_seq > ?2 AND last_mod_seq <= ?3"),
                "last_mod_seq, id",
            );
            format!("CAST({rows} AS TEXT)")
        };
        let (object_ids, folder_ids): (String, String) =
            query_as(sql!("SELECT {}, {}", ids("objects"), ids("folders")))
                .bind(b.id)
                .bind(after)
                .bind(through)
                .fetch_one(&mut *tx)
                .await?;
        let object_ids: Vec<i64> = stored_rows(&object_ids)?;
        let folder_ids: Vec<i64> = stored_rows(&folder_ids)?;
        let mut changes: Vec<Change> = Vec::new();
        changes.extend(load_folders(&mut tx, &folder_ids).await?.into_iter().map(Change::Folder));
        let objects = load_objects_with(self.engine, &mut tx, &object_ids, with_attributes, false).await?;
        changes.extend(objects.into_iter().map(Change::Object));
        let gone = tombstones_between(self.engine, &mut tx, b, after, through, with_attributes).await?;
        changes.extend(gone.into_iter().map(Change::Gone));
        // Modseq order; within one modseq folders, then objects, then tombstones (stable).
        changes.sort_by_key(Change::last_mod_seq);
        tx.commit().await?;
        Ok(ChangePage { changes, through, through_within: None, more, modseq, validity, replay_floor })
    }
    async fn tombstones_since(&self, b: &BoxRow, after: i64) -> Result<Vec<Tombstone>> {
        let mut conn = self.pool.acquire().await?;
        tombstones_between(self.engine, &mut conn, b, after, i64::MAX, true).await
    }
    async fn prune_tombstones(&self, before_ms: i64, keep_per_box: u32) -> Result<u64> {
        // One ranking pass over all tombstones, newest first per box, picks what goes (at
        // most `ROUND` a round; the next round goes on); then a chunk at a time, each its own
        // short write, raises each box's replay floor to the newest modseq dropped from it
        // and drops exactly the tombstones picked (any written meanwhile stay). Box rows are
        // taken before tombstone rows, in id order, as every writer takes its box first.
        const ROUND: i64 = 50_000;
        let doomed: Vec<(i64, i64, i64)> = query_as(
            "SELECT id, box_id, last_mod_seq FROM \
             (SELECT id, box_id, last_mod_seq, deleted_at_ms, \
              row_number() OVER (PARTITION BY box_id ORDER BY id DESC) AS rank FROM tombstones) ranked \
             WHERE deleted_at_ms < ? OR rank > ? ORDER BY id LIMIT ?",
        )
        .bind(before_ms)
        .bind(i64::from(keep_per_box))
        .bind(ROUND)
        .fetch_all(&self.pool)
        .await?;
        let mut dropped = 0u64;
        for chunk in doomed.chunks(500) {
            let mut tx = self.begin_write().await?;
            // Every node prunes on its own schedule: one at a time does the work.
            if !try_lock(self.engine, &mut tx, Lock::Pruning).await? {
                tx.rollback().await?;
                break;
            }
            let mut floors: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
            for (_, box_id, seq) in chunk {
                let floor = floors.entry(*box_id).or_insert(*seq);
                *floor = (*floor).max(*seq);
            }
            for (box_id, floor) in floors {
                query(sql!(
                    "UPDATE boxes SET replay_floor = {greatest}(replay_floor, ?) WHERE id = ?",
                    greatest = self.engine.greatest()
                ))
                .bind(floor)
                .bind(box_id)
                .execute(&mut tx)
                .await?;
            }
            let ids = id_list(&chunk.iter().map(|d| d.0).collect::<Vec<_>>());
            let res = query(sql!("DELETE FROM tombstones WHERE id IN ({ids})")).execute(&mut tx).await?;
            dropped += res.rows_affected();
            tx.commit().await?;
        }
        Ok(dropped)
    }
}
