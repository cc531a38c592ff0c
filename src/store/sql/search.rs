//! Searches over objects and folders, a page at a time (the SQL is in `query.rs`).

use super::*;

#[async_trait]
impl Search for SqlStore {
    async fn search_objects(&self, b: &BoxRow, q: &SearchQuery) -> Result<ObjectPage> {
        // One read transaction: the page and the box modseq come from the same snapshot.
        let mut tx = self.begin_read().await?;
        let modseq = current_modseq(&mut *tx, b.id).await?;
        let (ids, next) = page_ids(self.engine, &mut tx, b, Over::Objects, q).await?;
        let objects = load_objects(self.engine, &mut tx, &ids).await?;
        tx.commit().await?;
        Ok(ObjectPage { objects, next, modseq })
    }
    async fn search_folders(&self, b: &BoxRow, q: &SearchQuery) -> Result<FolderPage> {
        let mut tx = self.begin_read().await?;
        let (ids, next) = page_ids(self.engine, &mut tx, b, Over::Folders, q).await?;
        let folders = load_folders(&mut tx, &ids).await?;
        tx.commit().await?;
        Ok(FolderPage { folders, next })
    }
    async fn vanished_objects(&self, b: &BoxRow, limit: u32) -> Result<Vec<String>> {
        Ok(query_scalar(
            "SELECT public_id FROM tombstones WHERE box_id = ? AND kind = 'object' ORDER BY id DESC LIMIT ?",
        )
        .bind(b.id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }
}
