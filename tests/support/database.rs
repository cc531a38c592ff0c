//! A fresh PostgreSQL database for one test, on the server `NMS_TEST_DATABASE_URL` names
//! (the suite's PostgreSQL pass; `.ci/postgres` starts one), dropped with it.

#![allow(dead_code)]

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// The server URL with this database in place of the one it named.
    pub url: String,
}

impl TestDatabase {
    /// The server's URL, or `None` (with a note naming `what`) when none is set.
    pub fn server(what: &str) -> Option<String> {
        let url = std::env::var("NMS_TEST_DATABASE_URL").ok().filter(|v| !v.is_empty());
        if url.is_none() {
            eprintln!("note: NMS_TEST_DATABASE_URL is not set; {what} skipped (eval \"$(.ci/postgres)\" starts one)");
        }
        url
    }

    /// A new database named `{prefix}_{uuid}`, or `None` when no server is set.
    pub async fn create(prefix: &str) -> Option<Self> {
        let admin_url = Self::server(&format!("the PostgreSQL run of {prefix}"))?;
        Some(Self::create_on(&admin_url, prefix).await)
    }

    /// A new database on the server at `admin_url`.
    pub async fn create_on(admin_url: &str, prefix: &str) -> Self {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(admin_url).await.expect("connect to NMS_TEST_DATABASE_URL");
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create database");
        let mut url = url::Url::parse(admin_url).expect("NMS_TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Self { admin_url: admin_url.to_string(), name, url: url.to_string() }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection to the server, as its administrator.
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.admin_url).await.expect("connect to NMS_TEST_DATABASE_URL")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside the test's runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = conn.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await;
                }
            })
        });
        let _ = dropped.join();
    }
}
