//! Logins and the boxes each may open.

use super::*;

#[async_trait]
impl Accounts for SqlStore {
    async fn create_account(
        &self,
        name: &str,
        password_hash: &str,
        is_service: bool,
        boxes: &[(String, String)],
    ) -> Result<Account> {
        let mut tx = self.begin_write().await?;
        let res = query_scalar::<i64>(
            "INSERT INTO accounts (name, password_hash, is_service, created_at_ms) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(password_hash)
        .bind(i64::from(is_service))
        .bind(crate::ids::now_ms())
        .fetch_one(&mut tx)
        .await;
        let id = match res {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => return Err(Error::DuplicateName { name: name.into() }),
            Err(e) => return Err(e.into()),
        };
        for (store, address) in boxes {
            query("INSERT INTO account_boxes (account_id, store, address) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(store)
                .bind(address)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Account {
            id,
            name: name.into(),
            password_hash: password_hash.into(),
            is_service,
            boxes: boxes.to_vec(),
            digest: None,
        })
    }
    async fn set_account_digest(&self, name: &str, digest: Option<&DigestSecrets>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let res =
            query("UPDATE accounts SET digest_realm = ?, digest_ha1_sha256 = ?, digest_ha1_md5 = ? WHERE name = ?")
                .bind(digest.map(|d| d.realm.as_str()))
                .bind(digest.and_then(|d| d.ha1_sha256.as_deref()))
                .bind(digest.and_then(|d| d.ha1_md5.as_deref()))
                .bind(name)
                .execute(&mut tx)
                .await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }
    async fn find_account(&self, name: &str) -> Result<Option<Account>> {
        type Row = (i64, String, i64, Option<String>, Option<String>, Option<String>);
        let row = query_as::<Row>(
            "SELECT id, password_hash, is_service, digest_realm, digest_ha1_sha256, digest_ha1_md5 \
             FROM accounts WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, password_hash, is_service, realm, ha1_sha256, ha1_md5)) = row else { return Ok(None) };
        let digest = realm.map(|realm| DigestSecrets { realm, ha1_sha256, ha1_md5 });
        let boxes = query_as::<(String, String)>(
            "SELECT store, address FROM account_boxes WHERE account_id = ? ORDER BY store, address",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(Account { id, name: name.into(), password_hash, is_service: is_service != 0, boxes, digest }))
    }
    async fn list_accounts(&self) -> Result<Vec<Account>> {
        let names: Vec<String> = query_scalar("SELECT name FROM accounts ORDER BY name").fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Some(a) = self.find_account(&n).await? {
                out.push(a);
            }
        }
        Ok(out)
    }
    async fn remove_account(&self, name: &str) -> Result<bool> {
        self.write(async |conn| {
            let res = query("DELETE FROM accounts WHERE name = ?").bind(name).execute(conn).await?;
            Ok(res.rows_affected() > 0)
        })
        .await
    }
}
