//! Folders: lookup, creation, rename, deletion of a subtree, children and stats.

use super::*;

#[async_trait]
impl Folders for SqlStore {
    async fn root_folder(&self, b: &BoxRow) -> Result<Folder> {
        // The root alone has the empty path.
        self.load_folder("f.path = ?", b, "")
            .await?
            .ok_or_else(|| Error::internal(format!("box {} has no root folder", b.address)))
    }
    async fn get_folder(&self, b: &BoxRow, public_id: &str) -> Result<Option<Folder>> {
        self.load_folder("f.public_id = ?", b, public_id).await
    }
    async fn folder_by_path(&self, b: &BoxRow, path: &str) -> Result<Option<Folder>> {
        self.load_folder("f.path = ?", b, path).await
    }
    async fn folder_of_correlation_id(&self, b: &BoxRow, correlation_id: &str) -> Result<Option<String>> {
        Ok(query_scalar(
            "SELECT f.public_id FROM objects o JOIN folders f ON f.id = o.folder_id \
             WHERE o.box_id = ? AND o.correlation_id = ? ORDER BY o.id LIMIT 1",
        )
        .bind(b.id)
        .bind(correlation_id)
        .fetch_optional(&self.pool)
        .await?)
    }
    async fn create_folder(&self, b: &BoxRow, f: NewFolder) -> Result<Written<Folder>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let parent = resolve_parent(&mut tx, b, self.folder_limits, &f.parent, seq, f.now_ms).await?;
        let name = match f.name {
            Some(n) => n,
            None => f.public_id.clone(),
        };
        let key = insert_folder(&mut tx, b, self.folder_limits, &parent, &f.public_id, &name, seq, f.now_ms).await?;
        insert_attributes(&mut tx, "folder_attributes", key.id, b, &f.attributes).await?;
        let folder = Folder {
            id: key.id,
            public_id: key.public_id,
            parent_public_id: Some(parent.public_id),
            name,
            is_root: false,
            path: key.path,
            attributes: f.attributes,
            created_at_ms: f.now_ms,
            last_mod_seq: seq,
        };
        settle(tx, b, seq, true, folder).await
    }
    async fn rename_folder(&self, b: &BoxRow, public_id: &str, name: &str) -> Result<Written<Folder>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let key = folder_key_by_public(&mut tx, b, public_id).await?.ok_or_else(|| Error::not_found(public_id))?;
        let current: String =
            query_scalar("SELECT name FROM folders WHERE id = ?").bind(key.id).fetch_one(&mut tx).await?;
        let changed = current != name;
        if changed {
            let parent_path = key.path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            let new_path = if key.is_root { String::new() } else { format!("{parent_path}/{name}") };
            let res = query("UPDATE folders SET name = ?, path = ?, last_mod_seq = ? WHERE id = ?")
                .bind(name)
                .bind(&new_path)
                .bind(seq)
                .bind(key.id)
                .execute(&mut tx)
                .await;
            match res {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(Error::DuplicateName { name: name.into() }),
                Err(e) => return Err(e.into()),
            }
            if !key.is_root {
                // Descendants' paths follow; this is not a change to them (CPM 6.6.1).
                // SQLite measures the old path itself: substr counts characters, not bytes.
                query(
                    "UPDATE folders SET path = ? || substr(path, length(?) + 1) \
                     WHERE box_id = ? AND ancestry > ? AND ancestry < ?",
                )
                .bind(&new_path)
                .bind(&key.path)
                .bind(b.id)
                .bind(&key.ancestry)
                .bind(ancestry_end(&key.ancestry))
                .execute(&mut tx)
                .await?;
            }
            check_subtree(&mut tx, b, self.folder_limits, &key.ancestry).await?;
        }
        // Read inside the write: the answer is the folder as this write left it.
        let folder = load_folders(&mut tx, &[key.id]).await?.pop().ok_or_else(|| Error::not_found(public_id))?;
        settle(tx, b, seq, changed, folder).await
    }
    async fn delete_folder(&self, b: &BoxRow, public_id: &str, now_ms: i64) -> Result<Written<Option<Released>>> {
        let mut tx = self.begin_write().await?;
        let seq = bump(&mut tx, b).await?;
        let Some(key) = folder_key_by_public(&mut tx, b, public_id).await? else {
            return settle(tx, b, seq, false, None).await;
        };
        if key.is_root {
            return Err(Error::Forbidden { reason: "the root folder cannot be deleted".into() });
        }
        let (lo, hi) = (key.ancestry.clone(), ancestry_end(&key.ancestry));
        let subtree = "SELECT id FROM folders WHERE box_id = ? AND ancestry >= ? AND ancestry < ?";
        let keys: Vec<String> = query_scalar(sql!(
            "SELECT DISTINCT p.blob_key FROM payload_parts p JOIN objects o ON o.id = p.object_id \
             WHERE p.blob_key IS NOT NULL AND o.folder_id IN ({subtree})"
        ))
        .bind(b.id)
        .bind(&lo)
        .bind(&hi)
        .fetch_all(&mut tx)
        .await?;
        let mut in_subtree = Sql::default();
        in_subtree.push("o.folder_id IN (SELECT id FROM folders WHERE box_id = ").int(b.id);
        in_subtree.push(" AND ancestry >= ").str(&lo).push(" AND ancestry < ").str(&hi).push(")");
        tombstone_objects(self.engine, &mut tx, b, seq, now_ms, "deleted", in_subtree).await?;
        query(sql!(
            "INSERT INTO tombstones (box_id, kind, public_id, reason, last_mod_seq, deleted_at_ms, snapshot) \
             SELECT ?, 'folder', f.public_id, 'deleted', ?, ?, {snapshot} FROM folders f \
             WHERE f.box_id = ? AND f.ancestry >= ? AND f.ancestry < ?",
            snapshot = folder_snapshot(self.engine)
        ))
        .bind(b.id)
        .bind(seq)
        .bind(now_ms)
        .bind(b.id)
        .bind(&lo)
        .bind(&hi)
        .execute(&mut tx)
        .await?;
        query(sql!("DELETE FROM objects WHERE folder_id IN ({subtree})"))
            .bind(b.id)
            .bind(&lo)
            .bind(&hi)
            .execute(&mut tx)
            .await?;
        query("DELETE FROM folders WHERE box_id = ? AND ancestry >= ? AND ancestry < ?")
            .bind(b.id)
            .bind(&lo)
            .bind(&hi)
            .execute(&mut tx)
            .await?;
        settle(tx, b, seq, true, Some(Released { blob_keys: keys })).await
    }
    async fn folder_children(
        &self,
        _b: &BoxRow,
        folder: &Folder,
        kinds: (bool, bool),
        from: Option<ChildPosition>,
        limit: u32,
    ) -> Result<ChildPage> {
        let (want_folders, want_objects) = kinds;
        let mut page = ChildPage::default();
        let mut remaining = limit as i64;
        let mut pos = from;
        let mut last: Option<ChildPosition> = None;
        if want_folders && !matches!(pos, Some(ChildPosition { kind: ChildKind::Object, .. })) {
            let after = pos.map(|p| p.after).unwrap_or(0);
            let rows: Vec<(i64, String)> =
                query_as("SELECT id, public_id FROM folders WHERE parent_id = ? AND id > ? ORDER BY id LIMIT ?")
                    .bind(folder.id)
                    .bind(after)
                    .bind(remaining + 1)
                    .fetch_all(&self.pool)
                    .await?;
            for (id, pid) in rows {
                if remaining == 0 {
                    page.next = last;
                    return Ok(page);
                }
                page.folders.push(pid);
                last = Some(ChildPosition { kind: ChildKind::Folder, after: id });
                remaining -= 1;
            }
            pos = None;
        }
        if want_objects {
            let after = match pos {
                Some(ChildPosition { kind: ChildKind::Object, after }) => after,
                _ => 0,
            };
            let rows: Vec<(i64, String)> =
                query_as("SELECT id, public_id FROM objects WHERE folder_id = ? AND id > ? ORDER BY id LIMIT ?")
                    .bind(folder.id)
                    .bind(after)
                    .bind(remaining + 1)
                    .fetch_all(&self.pool)
                    .await?;
            for (id, pid) in rows {
                if remaining == 0 {
                    page.next = last;
                    return Ok(page);
                }
                page.objects.push(pid);
                last = Some(ChildPosition { kind: ChildKind::Object, after: id });
                remaining -= 1;
            }
        }
        Ok(page)
    }
    async fn folder_stats(&self, b: &BoxRow, folder: &Folder, subtree: bool) -> Result<FolderStats> {
        let scope = if subtree {
            "o.folder_id IN (SELECT s.id FROM folders s, folders t WHERE t.id = ? AND s.box_id = t.box_id \
             AND s.ancestry >= t.ancestry AND s.ancestry < substr(t.ancestry, 1, length(t.ancestry) - 1) || '0')"
        } else {
            "o.folder_id = ?"
        };
        let (count, read, size): (i64, i64, i64) = query_as(sql!(
            "SELECT count(*), \
                    CAST(coalesce(sum(CASE WHEN EXISTS (SELECT 1 FROM object_flags g \
                        WHERE g.object_id = o.id AND g.flag_lc = '\\seen') THEN 1 ELSE 0 END), 0) AS BIGINT), \
                    CAST(coalesce(sum((SELECT coalesce(sum(p.size), 0) FROM payload_parts p WHERE p.object_id = o.id)), 0) \
                        AS BIGINT) \
             FROM objects o WHERE o.box_id = ? AND {scope}"
        ))
        .bind(b.id)
        .bind(folder.id)
        .fetch_one(&self.pool)
        .await?;
        Ok(FolderStats { msg_count: count, unread_count: count - read, size })
    }
}
