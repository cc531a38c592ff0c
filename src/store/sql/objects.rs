//! Objects: creation (one and in bulk), lookup, payload bytes, deletion, copy, move and expiry.

use super::*;

#[async_trait]
impl Objects for SqlStore {
    async fn create_object(&self, b: &BoxRow, o: NewObject) -> Result<Written<Object>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let created = insert_object(&mut tx, b, self.folder_limits, o, seq).await?;
        settle(tx, b, seq, true, created).await
    }
    async fn create_objects(
        &self,
        b: &BoxRow,
        objects: Vec<Result<NewObject>>,
    ) -> Result<Written<Vec<Result<Object>>>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let mut out = Vec::with_capacity(objects.len());
        for o in objects {
            let o = match o {
                Ok(o) => o,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            // Each object is all-or-nothing inside the one transaction.
            query("SAVEPOINT bulk_item").execute(&mut tx).await?;
            match insert_object(&mut tx, b, self.folder_limits, o, seq).await {
                Ok(created) => {
                    query("RELEASE bulk_item").execute(&mut tx).await?;
                    out.push(Ok(created));
                }
                Err(e) => {
                    query("ROLLBACK TO bulk_item").execute(&mut tx).await?;
                    query("RELEASE bulk_item").execute(&mut tx).await?;
                    out.push(Err(e));
                }
            }
        }
        let changed = out.iter().any(Result::is_ok);
        settle(tx, b, seq, changed, out).await
    }
    async fn get_object(&self, b: &BoxRow, public_id: &str) -> Result<Option<Object>> {
        self.load_object("o.public_id = ?", b, &[public_id]).await
    }
    async fn object_by_path(&self, b: &BoxRow, folder_path: &str, public_id: &str) -> Result<Option<Object>> {
        self.load_object("f.path = ? AND o.public_id = ?", b, &[folder_path, public_id]).await
    }
    async fn inline_part_data(&self, b: &BoxRow, object_public_id: &str, part_id: &str) -> Result<Option<Vec<u8>>> {
        let data: Option<Option<Vec<u8>>> = query_scalar(
            "SELECT p.inline_data FROM payload_parts p JOIN objects o ON o.id = p.object_id \
             WHERE o.box_id = ? AND o.public_id = ? AND p.part_id = ?",
        )
        .bind(b.id)
        .bind(object_public_id)
        .bind(part_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(data.flatten())
    }
    async fn delete_object(
        &self,
        b: &BoxRow,
        public_id: &str,
        now_ms: i64,
        policy: &dyn DeparturePolicy,
    ) -> Result<Written<Option<Released>>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let Some(row) = object_row(&mut tx, b, public_id).await? else {
            return settle(tx, b, seq, false, None).await;
        };
        let judged = judge_removals(&mut tx, b, vec![Some(row)], policy, Departure::Deleted).await?;
        let Some(j) = judged.into_iter().flatten().next() else {
            return Err(Error::internal("the object to delete vanished from its own request"));
        };
        if let Some(reason) = j.refusal {
            tx.rollback().await?;
            return Err(Error::Forbidden { reason });
        }
        let keys = remove_judged(self.engine, &mut tx, b, &j, seq, now_ms, "deleted").await?.unwrap_or_default();
        settle(tx, b, seq, true, Some(Released { blob_keys: keys })).await
    }
    async fn bulk_delete(
        &self,
        b: &BoxRow,
        targets: &Targets,
        now_ms: i64,
        policy: &dyn DeparturePolicy,
    ) -> Result<Written<(Vec<BulkItem>, Released)>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let mut out = Vec::new();
        let mut released = Released::default();
        // Each target read once; the policy learns of them all before it judges one.
        let mut names = Vec::new();
        let mut rows = Vec::new();
        for (public_id, id) in resolve_targets(self.engine, &mut tx, b, targets).await? {
            rows.push(match id {
                Some(id) => object_row_by_id(&mut tx, id).await?,
                None => None,
            });
            names.push(public_id);
        }
        let judged = judge_removals(&mut tx, b, rows, policy, Departure::Deleted).await?;
        for (public_id, j) in names.into_iter().zip(judged) {
            let Some(j) = j else {
                out.push(BulkItem { public_id, outcome: None, refusal: None });
                continue;
            };
            if let Some(reason) = j.refusal {
                out.push(BulkItem { public_id, outcome: None, refusal: Some(reason) });
                continue;
            }
            // Named twice in one request (or a companion an earlier target took): already gone.
            let removed = remove_judged(self.engine, &mut tx, b, &j, seq, now_ms, "deleted").await?;
            let found = removed.is_some();
            released.blob_keys.extend(removed.unwrap_or_default());
            out.push(BulkItem { public_id, outcome: found.then_some(true), refusal: None });
        }
        released.blob_keys.sort();
        released.blob_keys.dedup();
        let changed = out.iter().any(|i| i.outcome.is_some());
        settle(tx, b, seq, changed, (out, released)).await
    }
    async fn copy_to_folder(
        &self,
        b: &BoxRow,
        target: &str,
        sources: &Sources,
        now_ms: i64,
    ) -> Result<Written<Option<Vec<Relocated>>>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let Some(target) = folder_key_by_public(&mut tx, b, target).await? else {
            return settle(tx, b, seq, false, None).await;
        };
        let mut out = Vec::with_capacity(sources.folders.len() + sources.objects.len());
        for public_id in &sources.folders {
            let source = match folder_source(&mut tx, b, public_id, &target).await? {
                Ok(source) => source,
                Err(refusal) => {
                    out.push(refusal);
                    continue;
                }
            };
            query("SAVEPOINT copy_item").execute(&mut tx).await?;
            match copy_folder(&mut tx, b, self.folder_limits, &source, &target, seq, now_ms).await {
                Ok(copy) => {
                    query("RELEASE copy_item").execute(&mut tx).await?;
                    out.push(Relocated::Done { public_id: copy.public_id, path: copy.path });
                }
                Err(Error::DuplicateName { name }) => {
                    query("ROLLBACK TO copy_item").execute(&mut tx).await?;
                    query("RELEASE copy_item").execute(&mut tx).await?;
                    out.push(Relocated::NameTaken { name });
                }
                Err(e) => return Err(e),
            }
        }
        for public_id in &sources.objects {
            let id: Option<i64> = query_scalar("SELECT id FROM objects WHERE box_id = ? AND public_id = ?")
                .bind(b.id)
                .bind(public_id)
                .fetch_optional(&mut tx)
                .await?;
            match id {
                Some(id) => {
                    let copy = copy_object(&mut tx, id, target.id, seq, now_ms).await?;
                    let path = format!("{}/{copy}", target.path);
                    out.push(Relocated::Done { public_id: copy, path });
                }
                None => out.push(Relocated::NoSource),
            }
        }
        let changed = out.iter().any(|r| matches!(r, Relocated::Done { .. }));
        settle(tx, b, seq, changed, Some(out)).await
    }
    async fn move_to_folder(
        &self,
        b: &BoxRow,
        target: &str,
        sources: &Sources,
        policy: &dyn DeparturePolicy,
    ) -> Result<Written<Option<Vec<Relocated>>>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let Some(target) = folder_key_by_public(&mut tx, b, target).await? else {
            return settle(tx, b, seq, false, None).await;
        };
        let mut out = Vec::with_capacity(sources.folders.len() + sources.objects.len());
        let mut changed = false;
        for public_id in &sources.folders {
            let source = match folder_source(&mut tx, b, public_id, &target).await? {
                Ok(source) => source,
                Err(refusal) => {
                    out.push(refusal);
                    continue;
                }
            };
            let (parent, name): (Option<i64>, String) =
                query_as("SELECT parent_id, name FROM folders WHERE id = ?").bind(source.id).fetch_one(&mut tx).await?;
            let new_path = format!("{}/{name}", target.path);
            if parent == Some(target.id) {
                out.push(Relocated::Done { public_id: public_id.clone(), path: new_path });
                continue;
            }
            // Writers of the box are serialized, so the name stays free until the update.
            let taken: Option<i64> = query_scalar("SELECT id FROM folders WHERE parent_id = ? AND name = ?")
                .bind(target.id)
                .bind(&name)
                .fetch_optional(&mut tx)
                .await?;
            if taken.is_some() {
                out.push(Relocated::NameTaken { name });
                continue;
            }
            let new_ancestry = format!("{}{}/", target.ancestry, source.id);
            query("UPDATE folders SET parent_id = ?, path = ?, ancestry = ?, last_mod_seq = ? WHERE id = ?")
                .bind(target.id)
                .bind(&new_path)
                .bind(&new_ancestry)
                .bind(seq)
                .bind(source.id)
                .execute(&mut tx)
                .await?;
            // The subtree follows: paths and ancestries re-derived, not a change to them.
            query(
                "UPDATE folders SET path = ? || substr(path, length(?) + 1), ancestry = ? || substr(ancestry, CAST(? AS INTEGER)) \
                 WHERE box_id = ? AND ancestry > ? AND ancestry < ?",
            )
            .bind(&new_path)
            .bind(&source.path)
            .bind(&new_ancestry)
            .bind(source.ancestry.len() as i64 + 1)
            .bind(b.id)
            .bind(&source.ancestry)
            .bind(ancestry_end(&source.ancestry))
            .execute(&mut tx)
            .await?;
            check_subtree(&mut tx, b, self.folder_limits, &new_ancestry).await?;
            changed = true;
            out.push(Relocated::Done { public_id: public_id.clone(), path: new_path });
        }
        // Each source read once; those that exist all leave their folders.
        let mut found: Vec<Option<(i64, i64)>> = Vec::with_capacity(sources.objects.len());
        for public_id in &sources.objects {
            found.push(
                query_as("SELECT id, folder_id FROM objects WHERE box_id = ? AND public_id = ?")
                    .bind(b.id)
                    .bind(public_id)
                    .fetch_optional(&mut tx)
                    .await?,
            );
        }
        let mut judge = policy.judge(Departure::Moved, &found.iter().flatten().map(|(id, _)| *id).collect::<Vec<_>>());
        for (public_id, row) in sources.objects.iter().zip(found) {
            let Some((id, folder)) = row else {
                out.push(Relocated::NoSource);
                continue;
            };
            if folder != target.id
                && let Some(reason) = judge.refusal(&mut TxFacts::new(&mut tx, b), id).await?
            {
                out.push(Relocated::Refused { reason });
                continue;
            }
            if folder != target.id {
                query("UPDATE objects SET folder_id = ?, last_mod_seq = ? WHERE id = ?")
                    .bind(target.id)
                    .bind(seq)
                    .bind(id)
                    .execute(&mut tx)
                    .await?;
                changed = true;
            }
            out.push(Relocated::Done { public_id: public_id.clone(), path: format!("{}/{public_id}", target.path) });
        }
        settle(tx, b, seq, changed, Some(out)).await
    }
    async fn expire_objects(
        &self,
        b: &BoxRow,
        stored_before_ms: Option<i64>,
        keep_newest: Option<u32>,
        now_ms: i64,
        limit: u32,
        policy: &dyn DeparturePolicy,
    ) -> Result<Written<(u64, Released)>> {
        if stored_before_ms.is_none() && keep_newest.is_none() {
            return Ok(Written::unchanged((0, Released::default())));
        }
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        // Past the age, or beyond the newest `keep_newest` (by stored date).
        let doomed: Vec<String> = query_scalar(
            "SELECT public_id FROM objects WHERE box_id = ?1 AND (stored_at_ms < ?2 OR id IN \
             (SELECT id FROM objects WHERE box_id = ?1 ORDER BY stored_at_ms DESC, id DESC LIMIT 9223372036854775807 OFFSET ?3)) \
             ORDER BY stored_at_ms, id LIMIT ?4",
        )
        .bind(b.id)
        .bind(stored_before_ms.unwrap_or(i64::MIN))
        .bind(keep_newest.map(i64::from).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&mut tx)
        .await?;
        if doomed.is_empty() {
            return settle(tx, b, seq, false, (0, Released::default())).await;
        }
        // Each read once; the policy learns of them all before it judges one.
        let mut rows = Vec::with_capacity(doomed.len());
        for public_id in &doomed {
            rows.push(object_row(&mut tx, b, public_id).await?);
        }
        let mut released = Released::default();
        let mut expired = 0u64;
        for j in judge_removals(&mut tx, b, rows, policy, Departure::Expired).await?.into_iter().flatten() {
            if j.refusal.is_some() {
                continue;
            }
            expired += 1;
            let removed = remove_judged(self.engine, &mut tx, b, &j, seq, now_ms, "expired").await?;
            released.blob_keys.extend(removed.unwrap_or_default());
        }
        if expired == 0 {
            return settle(tx, b, seq, false, (0, Released::default())).await;
        }
        released.blob_keys.sort();
        released.blob_keys.dedup();
        settle(tx, b, seq, true, (expired, released)).await
    }
}
