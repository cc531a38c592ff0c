//! Flags of objects and folders, one at a time and in bulk.

use super::*;

#[async_trait]
impl Flags for SqlStore {
    async fn get_flags(&self, b: &BoxRow, t: FlagTarget<'_>) -> Result<Option<Vec<String>>> {
        let (_, _, items, public_id) = flag_tables(t);
        let id: Option<i64> = query_scalar(sql!("SELECT id FROM {items} WHERE box_id = ? AND public_id = ?"))
            .bind(b.id)
            .bind(public_id)
            .fetch_optional(&self.pool)
            .await?;
        match id {
            Some(id) => Ok(Some(read_flags(&self.pool, t, id).await?)),
            None => Ok(None),
        }
    }
    async fn set_flags(&self, b: &BoxRow, t: FlagTarget<'_>, flags: &[String]) -> Result<Written<Option<Vec<String>>>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let Some(owner) = item_id(&mut tx, b, t).await? else {
            return settle(tx, b, seq, false, None).await;
        };
        let current = read_flags(&mut tx, t, owner).await?;
        let wanted = dedup_flags(flags);
        let same =
            current.len() == wanted.len() && wanted.iter().all(|w| current.iter().any(|c| c.eq_ignore_ascii_case(w)));
        if same {
            return settle(tx, b, seq, false, Some(current)).await;
        }
        let (table, col, _, _) = flag_tables(t);
        query(sql!("DELETE FROM {table} WHERE {col} = ?")).bind(owner).execute(&mut tx).await?;
        for f in &wanted {
            insert_flag(&mut tx, b, t, owner, f).await?;
        }
        stamp(&mut tx, t, owner, seq).await?;
        settle(tx, b, seq, true, Some(wanted)).await
    }
    async fn change_flag(
        &self,
        b: &BoxRow,
        t: FlagTarget<'_>,
        flag: &str,
        on: bool,
    ) -> Result<Written<Option<FlagChange>>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let (table, col, items, public_id) = flag_tables(t);
        // The item and whether it has the flag, in one statement.
        let found: Option<(i64, i64)> = query_as(sql!(
            "SELECT i.id, CASE WHEN EXISTS (SELECT 1 FROM {table} f WHERE f.{col} = i.id AND f.flag_lc = ?) \
             THEN 1 ELSE 0 END FROM {items} i WHERE i.box_id = ? AND i.public_id = ?"
        ))
        .bind(flag.to_ascii_lowercase())
        .bind(b.id)
        .bind(public_id)
        .fetch_optional(&mut tx)
        .await?;
        let Some((owner, present)) = found else {
            return settle(tx, b, seq, false, None).await;
        };
        if (present == 1) == on {
            return settle(tx, b, seq, false, Some(FlagChange::Unchanged)).await;
        }
        if on {
            insert_flag(&mut tx, b, t, owner, flag).await?;
        } else {
            query(sql!("DELETE FROM {table} WHERE {col} = ? AND flag_lc = ?"))
                .bind(owner)
                .bind(flag.to_ascii_lowercase())
                .execute(&mut tx)
                .await?;
        }
        stamp(&mut tx, t, owner, seq).await?;
        settle(tx, b, seq, true, Some(FlagChange::Changed)).await
    }
    async fn bulk_flags(
        &self,
        b: &BoxRow,
        targets: &Targets,
        flags: &[String],
        on: bool,
    ) -> Result<Written<Vec<BulkItem>>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let flags = dedup_flags(flags);
        let mut out = Vec::new();
        let mut any = false;
        for (public_id, id) in resolve_targets(self.engine, &mut tx, b, targets).await? {
            let Some(id) = id else {
                out.push(BulkItem { public_id, outcome: None, refusal: None });
                continue;
            };
            let mut changed = false;
            for f in &flags {
                let res = if on {
                    query(
                        "INSERT INTO object_flags (object_id, box_id, flag_lc, flag) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(b.id)
                    .bind(f.to_ascii_lowercase())
                    .bind(f)
                    .execute(&mut tx)
                    .await?
                } else {
                    query("DELETE FROM object_flags WHERE object_id = ? AND flag_lc = ?")
                        .bind(id)
                        .bind(f.to_ascii_lowercase())
                        .execute(&mut tx)
                        .await?
                };
                changed |= res.rows_affected() > 0;
            }
            if changed {
                stamp(&mut tx, FlagTarget::Object(""), id, seq).await?;
            }
            any |= changed;
            out.push(BulkItem { public_id, outcome: Some(changed), refusal: None });
        }
        // Nothing changed: the box modseq does not move either.
        settle(tx, b, seq, any, out).await
    }
}
