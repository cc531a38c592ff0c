//! Write transactions, and group commit on engines with one writer at a time (SQLite).
//!
//! On SQLite every write of this process runs on one connection, one at a time. A write
//! is a *member* of the open *group* transaction: the member that opens the group runs in
//! it directly (rolling it back undoes nothing else), every later one inside a savepoint of
//! its own, which it releases (keeps) or rolls back when it is done. The group commits when no
//! other write is waiting to join it (or when it is large); members that joined meanwhile
//! wait for that commit, so a write answers only once it is durable. Under concurrent
//! writes the cost of a commit (the pages of the write-ahead log, the search index's
//! segment, the sync) is shared by the group instead of paid by each write; a lone write
//! commits at once, as before.
//!
//! Cancellation: the steps that change the group's state (joining, leaving) run in tasks
//! of their own, which finish whatever happens to the request. A member dropped before it
//! is done (its request went away, or it returned an error) is rolled back to its
//! savepoint by a task it leaves behind, which then commits the group if nobody else is
//! waiting: the members before it are never left waiting.
//!
//! Other engines (PostgreSQL) run each write as its own transaction.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use either::Either;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sqlx::any::{AnyQueryResult, AnyRow};
use sqlx::{Any, AnyPool, Execute, Transaction};
use tokio::sync::{OwnedMutexGuard, mpsc, watch};

use super::direct::{Direct, Step};
use crate::error::{Error, Result};

/// Members at most in one group: a steady stream of writes still commits regularly.
const MAX_MEMBERS: u32 = 64;

/// The least time between two checkpoints: a steady stream of writes is checkpointed a
/// few times a second, not after every group.
const CHECKPOINT_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// How long a write's statements hold its thread (see [`Direct`]) before it lets the
/// thread's other tasks (requests, polls) have a turn between two statements: a write of
/// many statements (a bulk operation) holds the thread no longer at once. One statement
/// (a large folder's removal) runs to its end.
const HOLD_THREAD: std::time::Duration = std::time::Duration::from_millis(2);

/// What members waiting for their group's commit are told: `None` until it is decided.
type Outcome = Option<std::result::Result<(), String>>;

/// The one writer of a single-writer database.
pub(super) struct Writer {
    /// The database's URL, which the writer's own connection opens (see [`Direct`]).
    url: String,
    /// The statement that opens a group.
    begin: &'static str,
    /// The statements that end a group: `COMMIT`, after the text indexes' catch-up (see
    /// [`Engine::text_catch_up`](crate::store::engine::Engine::text_catch_up)), in one
    /// round trip to the database.
    commit: String,
    /// The same, for a last member in a savepoint: its `RELEASE` first.
    release_and_commit: String,
    state: Arc<tokio::sync::Mutex<Group>>,
    /// Writes waiting to join the group (or, after a commit, to open the next).
    queued: AtomicUsize,
    /// Groups committed so far.
    commits: std::sync::atomic::AtomicU64,
    /// Wakes the task that copies the write-ahead log into the database ([`checkpoints`]).
    checkpoint: mpsc::Sender<()>,
}

#[derive(Default)]
struct Group {
    /// The writer's connection (kept from group to group; made again after an error).
    conn: Option<Direct>,
    /// A group transaction is open.
    open: bool,
    /// A member is open (in a savepoint of its own if `savepoint`).
    member: bool,
    /// The open member runs in a savepoint; otherwise it opened the group, which holds
    /// nothing but its work.
    savepoint: bool,
    /// A savepoint is open that holds nothing, ready for the next member: the member
    /// before left it (begun along with its own `RELEASE`, or kept by its `ROLLBACK TO`),
    /// sparing the next one a round trip to the database.
    spare: bool,
    /// Members whose work is in the open group, waiting for its commit.
    members: u32,
    /// Where the open group's outcome is told.
    outcome: Option<watch::Sender<Outcome>>,
}

impl Writer {
    /// The writer of the database at `url`, whose `pool` runs its checkpoints (in a task
    /// of the current runtime: a store is always opened from one).
    pub(super) fn new(url: &str, pool: AnyPool, begin: &'static str, catch_up: Option<&'static str>) -> Arc<Self> {
        let (checkpoint, wake) = mpsc::channel(1);
        tokio::spawn(checkpoints(pool, wake));
        Arc::new(Self {
            url: url.to_string(),
            begin,
            commit: match catch_up {
                Some(last) => format!("{last}; COMMIT"),
                None => "COMMIT".into(),
            },
            release_and_commit: match catch_up {
                Some(last) => format!("RELEASE member; {last}; COMMIT"),
                None => "RELEASE member; COMMIT".into(),
            },
            state: Default::default(),
            queued: AtomicUsize::new(0),
            commits: Default::default(),
            checkpoint,
        })
    }

    /// Groups committed so far.
    #[cfg(test)]
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Writes waiting to join the group.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Join the group (opening one if none is open) and begin a member.
    pub(super) async fn join(self: &Arc<Self>) -> Result<Tx<'static>> {
        let writer = self.clone();
        // In a task of its own: a request that goes away meanwhile leaves a member behind,
        // which its drop rolls back.
        let joining = tokio::spawn(async move {
            writer.queued.fetch_add(1, Ordering::SeqCst);
            let guard = writer.state.clone().lock_owned().await;
            writer.queued.fetch_sub(1, Ordering::SeqCst);
            let mut held = Held { writer: writer.clone(), guard: Some(guard), busy: Default::default() };
            held.prepare().await?;
            Ok::<_, Error>(held)
        });
        match joining.await {
            Ok(held) => Ok(Tx {
                kind: Kind::Member(held?),
                _life: PhantomData,
                _timer: crate::metrics::WriteTransaction::begin(),
            }),
            Err(e) => Err(Error::internal(format!("opening a write: {e}"))),
        }
    }
}

/// Copy the write-ahead log into the database after commits (a passive checkpoint, which
/// waits for no reader nor writer), on a connection of `pool`, until the writer is gone.
/// The writer's own connection leaves this to it up to a bound (see [`Direct`]): a write
/// does not pay for a checkpoint, nor does the thread of the write wait for one.
async fn checkpoints(pool: AnyPool, mut wake: mpsc::Receiver<()>) {
    while wake.recv().await.is_some() {
        if let Err(e) = super::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::warn!(error = %e, "checkpointing the write-ahead log");
        }
        tokio::time::sleep(CHECKPOINT_PAUSE).await;
    }
}

/// The group's lock, held by one member (or by the task settling after one).
struct Held {
    writer: Arc<Writer>,
    guard: Option<OwnedMutexGuard<Group>>,
    /// How long the member's statements have held its thread since it last gave it a turn.
    busy: std::time::Duration,
}

impl Held {
    fn group(&mut self) -> Result<&mut Group> {
        self.guard.as_deref_mut().ok_or_else(|| Error::internal("write group lock already given up"))
    }

    fn conn(&mut self) -> Result<&mut Direct> {
        self.group()?.conn.as_mut().ok_or_else(|| Error::internal("the writer has no connection"))
    }

    async fn run(&mut self, sql: &str) -> Result<()> {
        for step in self.conn()?.run(sql, None, true, None) {
            step?;
        }
        Ok(())
    }

    /// Roll back what an unfinished member left, open a group if none is, begin a member.
    async fn prepare(&mut self) -> Result<()> {
        let g = self.group()?;
        if g.conn.is_none() {
            let conn = Direct::open(&self.writer.url)?;
            self.group()?.conn = Some(conn);
        }
        if self.group()?.member {
            self.abandon_member().await?;
        }
        if !self.group()?.open {
            // Marked first: if this task stopped halfway, the next would still close it.
            let g = self.group()?;
            g.open = true;
            g.member = true;
            g.savepoint = false;
            g.spare = false;
            if let Err(e) = self.run(self.writer.begin).await {
                return Err(self.fail(e).await);
            }
            return Ok(());
        }
        let g = self.group()?;
        g.member = true;
        g.savepoint = true;
        if std::mem::take(&mut g.spare) {
            return Ok(());
        }
        if let Err(e) = self.run("SAVEPOINT member").await {
            return Err(self.fail(e).await);
        }
        Ok(())
    }

    /// Roll back the open member's work, keeping the group's.
    async fn abandon_member(&mut self) -> Result<()> {
        if !self.group()?.savepoint {
            // It opened the group: the group holds its work only.
            let undone = self.run("ROLLBACK").await;
            let g = self.group()?;
            g.member = false;
            g.open = false;
            g.spare = false;
            if let Err(e) = undone {
                return Err(self.fail(e).await);
            }
            return Ok(());
        }
        // `ROLLBACK TO` keeps the savepoint open, empty: the next member takes it.
        let undone = self.run("ROLLBACK TO member").await;
        let g = self.group()?;
        g.member = false;
        if let Err(e) = undone {
            return Err(self.fail(e).await);
        }
        self.group()?.spare = true;
        Ok(())
    }

    /// The group cannot go on (`e`): roll it back, tell its members, start afresh with a
    /// new connection. Answers the error for the caller.
    async fn fail(&mut self, e: Error) -> Error {
        let open = self.group().map(|g| g.open).unwrap_or(false);
        let rolled_back = open && self.run("ROLLBACK").await.is_ok();
        if let Ok(g) = self.group() {
            g.open = false;
            g.member = false;
            g.spare = false;
            g.members = 0;
            if let Some(tx) = g.outcome.take() {
                tx.send_replace(Some(Err(e.to_string())));
            }
            // A connection that failed may be broken, or still inside the transaction: it
            // is closed; the next group opens another.
            if !rolled_back {
                g.conn = None;
            }
        }
        e
    }

    /// Commit the group and tell its members.
    async fn commit_group(&mut self) -> Result<()> {
        let writer = self.writer.clone();
        self.end_group(&writer.commit).await
    }

    /// Commit the group with `statements` (which end in `COMMIT`) and tell its members.
    async fn end_group(&mut self, statements: &str) -> Result<()> {
        match self.run(statements).await {
            Ok(()) => {
                self.writer.commits.fetch_add(1, Ordering::Relaxed);
                // Already awake, or woken: either way the commit is in the next checkpoint.
                let _ = self.writer.checkpoint.try_send(());
                let g = self.group()?;
                g.open = false;
                g.spare = false;
                g.members = 0;
                if let Some(tx) = g.outcome.take() {
                    tx.send_replace(Some(Ok(())));
                }
                Ok(())
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Whether the group should commit now: nobody waits to join it, or it is full.
    fn commit_now(&mut self) -> Result<bool> {
        let queued = self.writer.queued.load(Ordering::SeqCst);
        Ok(queued == 0 || self.group()?.members >= MAX_MEMBERS)
    }

    /// End the member: keep its work (and wait until the group holding it is committed)
    /// or roll it back. The group commits now if nobody waits to join it: it never stays
    /// open, holding the database's write lock, with nobody to close it.
    async fn finish(mut self, keep: bool) -> Result<()> {
        let mut told = None;
        if keep {
            let g = self.group()?;
            let savepoint = g.savepoint;
            g.member = false;
            g.members += 1;
            told = Some(g.outcome.get_or_insert_with(|| watch::channel(None).0).subscribe());
            if savepoint {
                let writer = self.writer.clone();
                if self.commit_now()? {
                    // The last member: its savepoint is released by the group's commit.
                    return self.end_group(&writer.release_and_commit).await;
                }
                // Others wait to join: the next one's savepoint is begun with this release.
                if let Err(e) = self.run("RELEASE member; SAVEPOINT member").await {
                    return Err(self.fail(e).await);
                }
                self.group()?.spare = true;
            }
        } else {
            self.abandon_member().await?;
            if !self.group()?.open {
                // It had opened the group: nothing is left to commit.
                return Ok(());
            }
        }
        if self.commit_now()? {
            return self.commit_group().await;
        }
        let Some(mut told) = told else { return Ok(()) };
        // A write waiting to join commits the group (or the one after it does).
        drop(self.guard.take());
        match told.wait_for(Option::is_some).await {
            Ok(outcome) => match outcome.as_ref() {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(Error::internal(format!("committing a write group: {e}"))),
                None => Err(Error::internal("a write group ended undecided")),
            },
            Err(_) => Err(Error::internal("a write group ended undecided")),
        }
    }
}

impl Drop for Held {
    /// A member dropped before it was done: roll it back, and commit the group if nobody
    /// waits to join it, in a task of its own.
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else { return };
        // Nothing to settle, or a write waiting to join does it: the lock just goes.
        let queued = self.writer.queued.load(Ordering::SeqCst);
        if !(guard.member || guard.open && queued == 0) {
            return;
        }
        let writer = self.writer.clone();
        let settle = async move {
            let mut held = Held { writer, guard: Some(guard), busy: Default::default() };
            let member = held.group().map(|g| g.member).unwrap_or(false);
            if member && held.abandon_member().await.is_err() {
                return;
            }
            let open = held.group().map(|g| g.open).unwrap_or(false);
            if open && held.commit_now().unwrap_or(true) {
                let _ = held.commit_group().await;
            }
            // Settled: the lock goes without another round of this.
            drop(held.guard.take());
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(settle);
        }
    }
}

/// A write transaction: a member of the writer's group, or a transaction of its own.
pub(super) struct Tx<'a> {
    kind: Kind,
    _life: PhantomData<&'a ()>,
    /// Times the write from its start to its end (a member's, not its group's).
    _timer: crate::metrics::WriteTransaction,
}

enum Kind {
    Own(Transaction<'static, Any>),
    Member(Held),
}

impl<'a> Tx<'a> {
    /// A transaction of its own, opened with `statement` (see [`super::begin`]), on engines
    /// whose text indexes never lag behind the writes.
    pub(super) async fn own(pool: &AnyPool, statement: &'static str) -> Result<Self> {
        let timer = crate::metrics::WriteTransaction::begin();
        Ok(Self { kind: Kind::Own(super::begin(pool, statement).await?), _life: PhantomData, _timer: timer })
    }

    /// Make the write durable: answers once it is committed.
    pub(super) async fn commit(self) -> Result<()> {
        self.end(true).await
    }

    /// Undo the write.
    pub(super) async fn rollback(self) -> Result<()> {
        self.end(false).await
    }

    async fn end(self, keep: bool) -> Result<()> {
        match self.kind {
            Kind::Own(tx) => {
                if keep {
                    tx.commit().await?
                } else {
                    tx.rollback().await?
                }
                Ok(())
            }
            // In a task of its own, so that the group's state is settled whatever happens
            // to the request meanwhile.
            Kind::Member(held) => match tokio::spawn(held.finish(keep)).await {
                Ok(r) => r,
                Err(e) => Err(Error::internal(format!("ending a write: {e}"))),
            },
        }
    }
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Own(_) => "Tx::Own",
            Kind::Member(_) => "Tx::Member",
        })
    }
}

impl Tx<'_> {
    /// Run `query` on the writer's own connection, on this thread.
    /// Also whether the write should now give its thread to others for a turn (see
    /// [`HOLD_THREAD`]).
    fn direct<'q>(&mut self, mut query: impl Execute<'q, Any>, limit: Option<usize>) -> (Vec<Step>, bool) {
        let Kind::Member(held) = &mut self.kind else {
            return (vec![Err(sqlx::Error::Protocol("not a member of the write group".into()))], false);
        };
        let arguments = match query.take_arguments() {
            Ok(arguments) => arguments,
            Err(e) => return (vec![Err(sqlx::Error::Encode(e))], false),
        };
        let persistent = query.persistent();
        let started = Instant::now();
        let steps = match held.conn() {
            Ok(conn) => conn.run(query.sql().as_str(), arguments, persistent, limit),
            Err(e) => vec![Err(sqlx::Error::Protocol(e.to_string()))],
        };
        held.busy += started.elapsed();
        let turn = held.busy >= HOLD_THREAD;
        if turn {
            held.busy = Default::default();
        }
        (steps, turn)
    }

    /// The first row of `query` on the writer's own connection.
    fn direct_first<'e, 'q>(
        &mut self,
        query: impl Execute<'q, Any>,
    ) -> BoxFuture<'e, std::result::Result<Option<AnyRow>, sqlx::Error>> {
        let (steps, turn) = self.direct(query, Some(1));
        let mut first = Ok(None);
        for step in steps {
            match step {
                Ok(Either::Right(row)) => first = Ok(Some(row)),
                Ok(Either::Left(_)) => {}
                Err(e) => first = Err(e),
            }
        }
        if !turn {
            return Box::pin(std::future::ready(first));
        }
        Box::pin(async move {
            tokio::task::yield_now().await;
            first
        })
    }
}

/// A write's statements run in its transaction: its own (on the pool's connection), or its
/// group's (on the writer's own connection, on the thread of the write: see [`Direct`]).
impl<'c> sqlx::Executor<'c> for &'c mut Tx<'_> {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, std::result::Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        if matches!(self.kind, Kind::Member(_)) {
            let (steps, turn) = self.direct(query, None);
            let steps = futures_util::stream::iter(steps);
            if !turn {
                return Box::pin(steps);
            }
            let turn = futures_util::stream::once(tokio::task::yield_now()).filter_map(|()| std::future::ready(None));
            return Box::pin(turn.chain(steps));
        }
        match &mut self.kind {
            Kind::Own(tx) => (&mut **tx).fetch_many(query),
            Kind::Member(_) => Box::pin(futures_util::stream::empty()),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, std::result::Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        if matches!(self.kind, Kind::Member(_)) {
            return self.direct_first(query);
        }
        match &mut self.kind {
            Kind::Own(tx) => (&mut **tx).fetch_optional(query),
            Kind::Member(_) => Box::pin(std::future::ready(Ok(None))),
        }
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [sqlx::any::AnyTypeInfo],
    ) -> BoxFuture<'e, std::result::Result<sqlx::any::AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        match &mut self.kind {
            Kind::Own(tx) => (&mut **tx).prepare_with(sql, parameters),
            Kind::Member(_) => Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
                "the writer's statements are prepared when they run".into(),
            )))),
        }
    }

    fn describe<'e>(self, sql: sqlx::SqlStr) -> BoxFuture<'e, std::result::Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match &mut self.kind {
            Kind::Own(tx) => (&mut **tx).describe(sql),
            Kind::Member(_) => Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
                "the writer's statements are not described".into(),
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use sqlx::Connection;

    use super::*;

    async fn writer() -> (tempfile::TempDir, AnyPool, Arc<Writer>) {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = crate::store::sqlite::connect(&url).await.unwrap();
        super::super::query("CREATE TABLE t (v INTEGER PRIMARY KEY)").execute(&pool).await.unwrap();
        let writer = Writer::new(&url, pool.clone(), "BEGIN IMMEDIATE", None);
        (dir, pool, writer)
    }

    async fn insert(writer: &Arc<Writer>, v: i64) -> Result<()> {
        let mut tx = writer.join().await?;
        super::super::query("INSERT INTO t (v) VALUES (?)").bind(v).execute(&mut tx).await?;
        tx.commit().await
    }

    async fn values(pool: &AnyPool) -> Vec<i64> {
        sqlx::query_scalar("SELECT v FROM t ORDER BY v").fetch_all(pool).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_runs_its_last_statements_inside_its_commit_and_fails_whole_with_them() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = crate::store::sqlite::connect(&url).await.unwrap();
        super::super::query("CREATE TABLE t (v INTEGER PRIMARY KEY)").execute(&pool).await.unwrap();
        // Before each commit: 1000 + every 7 written, as a queue applied at the end would.
        let last = "INSERT INTO t (v) SELECT v + 1000 FROM t WHERE v = 7; DELETE FROM t WHERE v = 7";
        let writer = Writer::new(&url, pool.clone(), "BEGIN IMMEDIATE", Some(last));
        insert(&writer, 5).await.unwrap();
        insert(&writer, 7).await.unwrap();
        assert_eq!(values(&pool).await, [5, 1007]);
        // When the last statements fail, so does the commit: the group leaves nothing, the
        // member hears of it, and the writer goes on.
        assert!(insert(&writer, 7).await.is_err(), "1007 is there already");
        assert_eq!(values(&pool).await, [5, 1007]);
        insert(&writer, 6).await.unwrap();
        assert_eq!(values(&pool).await, [5, 6, 1007]);
    }

    /// On one thread, as a request's: a write that runs statements longer than
    /// [`HOLD_THREAD`] lets the thread's other tasks run between two of them.
    #[tokio::test(flavor = "current_thread")]
    async fn a_long_write_gives_its_thread_turns_between_statements() {
        let (_dir, _pool, writer) = writer().await;
        let turns = Arc::new(AtomicUsize::new(0));
        let other = tokio::spawn({
            let turns = turns.clone();
            async move {
                loop {
                    turns.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            }
        });
        let mut tx = writer.join().await.unwrap();
        let before = turns.load(Ordering::SeqCst);
        let started = Instant::now();
        while started.elapsed() < HOLD_THREAD * 10 {
            let slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
                        SELECT count(*) FROM n";
            super::super::query(slow).fetch_one(&mut tx).await.unwrap();
        }
        let during = turns.load(Ordering::SeqCst);
        tx.commit().await.unwrap();
        other.abort();
        assert!(during > before, "the other task had no turn in {:?} of statements", started.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_write_ahead_log_is_checkpointed_after_commits_but_not_by_the_write() {
        let (dir, _pool, writer) = writer().await;
        let db = dir.path().join("t.db");
        let size = || std::fs::metadata(&db).unwrap().len();
        let before = size();
        // About 500 pages: fewer than SQLite's own bound of 1,000, so that no commit of
        // the writer's copies them into the database ...
        let mut tx = writer.join().await.unwrap();
        super::super::query(
            "CREATE TABLE big (b BLOB); \
             INSERT INTO big WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
             SELECT randomblob(1000) FROM n",
        )
        .execute(&mut tx)
        .await
        .unwrap();
        // ... which would, past its own bound, much higher than SQLite's.
        let bound: i64 = super::super::query_scalar("PRAGMA wal_autocheckpoint").fetch_one(&mut tx).await.unwrap();
        assert_eq!(bound, 16_384);
        tx.commit().await.unwrap();
        // The log is copied into the database soon after, by another connection.
        tokio::time::timeout(Duration::from_secs(10), async {
            while size() < before + 1_000_000 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the log is checkpointed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_that_roll_back_amid_concurrent_ones_leave_only_the_others_work() {
        let (_dir, pool, writer) = writer().await;
        // Odd values roll back (their savepoint is then taken by whoever joins next), even
        // ones keep their work; some fail halfway on a value another member holds.
        let tasks: Vec<_> = (0..48)
            .map(|v: i64| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    let mut tx = writer.join().await?;
                    super::super::query("INSERT INTO t (v) VALUES (?)").bind(v).execute(&mut tx).await?;
                    if v % 6 == 4 {
                        // Fails halfway: its own first insert must go too.
                        let dup = super::super::query("INSERT INTO t (v) VALUES (?)").bind(v).execute(&mut tx).await;
                        assert!(dup.is_err());
                        return tx.rollback().await;
                    }
                    if v % 2 == 1 { tx.rollback().await } else { tx.commit().await }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let kept: Vec<i64> = (0..48).filter(|v| v % 2 == 0 && v % 6 != 4).collect();
        assert_eq!(values(&pool).await, kept);
        // The writer goes on.
        insert(&writer, 100).await.unwrap();
        assert_eq!(values(&pool).await.last(), Some(&100));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_each_is_durable_when_it_answers() {
        let (_dir, pool, writer) = writer().await;
        let tasks: Vec<_> = (0..32)
            .map(|v| {
                let (writer, pool) = (writer.clone(), pool.clone());
                tokio::spawn(async move {
                    insert(&writer, v).await.unwrap();
                    // Answered: committed, so another connection sees it.
                    let seen: Option<i64> =
                        sqlx::query_scalar("SELECT v FROM t WHERE v = ?").bind(v).fetch_optional(&pool).await.unwrap();
                    assert_eq!(seen, Some(v));
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(values(&pool).await, (0..32).collect::<Vec<_>>());
        assert!(writer.commits() < 32, "{} commits for 32 writes", writer.commits());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_member_that_opened_the_group_undoes_only_its_own_work() {
        let (_dir, pool, writer) = writer().await;
        // Rolled back: its group held nothing else, and the next write opens another.
        let mut tx = writer.join().await.unwrap();
        super::super::query("INSERT INTO t (v) VALUES (10)").execute(&mut tx).await.unwrap();
        tx.rollback().await.unwrap();
        insert(&writer, 20).await.unwrap();
        // Dropped halfway (its request went away): undone in the background.
        let mut tx = writer.join().await.unwrap();
        super::super::query("INSERT INTO t (v) VALUES (30)").execute(&mut tx).await.unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), insert(&writer, 40)).await.unwrap().unwrap();
        // A member that fails in the middle of its statements leaves nothing either.
        let mut tx = writer.join().await.unwrap();
        super::super::query("INSERT INTO t (v) VALUES (50)").execute(&mut tx).await.unwrap();
        assert!(super::super::query("INSERT INTO t (v) VALUES (20)").execute(&mut tx).await.is_err());
        tx.rollback().await.unwrap();
        insert(&writer, 60).await.unwrap();
        assert_eq!(values(&pool).await, [20, 40, 60]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rolled_back_or_abandoned_member_takes_only_its_own_work_and_releases_the_database() {
        let (dir, pool, writer) = writer().await;
        // A member that keeps its work, one that rolls it back, one whose request goes
        // away in the middle of its write: they share the group.
        let first = writer.join().await.unwrap();
        let kept = tokio::spawn({
            let writer = writer.clone();
            async move { insert(&writer, 1).await }
        });
        let mut first = first;
        super::super::query("INSERT INTO t (v) VALUES (0)").execute(&mut first).await.unwrap();
        let undone = tokio::spawn({
            let writer = writer.clone();
            async move {
                let mut tx = writer.join().await?;
                super::super::query("INSERT INTO t (v) VALUES (2)").execute(&mut tx).await?;
                tx.rollback().await
            }
        });
        let abandoned = tokio::spawn({
            let writer = writer.clone();
            async move {
                let mut tx = writer.join().await.unwrap();
                super::super::query("INSERT INTO t (v) VALUES (3)").execute(&mut tx).await.unwrap();
                std::future::pending::<()>().await;
            }
        });
        // The first member's answer waits for the group's commit, which waits for the
        // members after it: the abandoned one holds the group until its request goes.
        let first = tokio::spawn(first.commit());
        tokio::time::sleep(Duration::from_millis(300)).await;
        abandoned.abort();
        let _ = abandoned.await;
        first.await.unwrap().unwrap();
        kept.await.unwrap().unwrap();
        undone.await.unwrap().unwrap();
        // The abandoned member's leftover settles in the background; a later write is not
        // held up by it.
        tokio::time::timeout(Duration::from_secs(5), insert(&writer, 4)).await.unwrap().unwrap();
        assert_eq!(values(&pool).await, [0, 1, 4]);
        // Nobody holds the database's write lock once nobody writes: another process's
        // writer gets it at once.
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let mut other = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::query("PRAGMA busy_timeout = 0").execute(&mut other).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    }
}
