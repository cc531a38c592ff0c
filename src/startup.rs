//! Building the application: open the metadata store (migrating it), the blob store (and
//! remove the temporaries crashed processes left in it), the token key; bind the listener
//! (port 0 allowed; HTTPS when `server.tls_cert` and `server.tls_key` are set) and expose
//! the port, so tests run the real server; start the background blob sweep, housekeeping
//! (expiry, tombstone pruning), webhook delivery, and on a database that announces commits
//! (PostgreSQL) the listener that wakes this node for every process's changes.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, Service};
use actix_web::{App, HttpServer, web};
use object_store::ObjectStore;

use crate::api::{self, AppState};
use crate::auth::Authenticator;
use crate::blob::PayloadStore;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::model::FolderLimits;
use crate::nms::subscriptions::EventList;
use crate::nms::{Nms, TokenKey};
use crate::store::Store;
use crate::store::engine::Engine;
use crate::store::listen::{Listener, Notice};
use crate::store::sql::SqlStore;
use crate::webhooks;

/// Open the metadata store named by the configuration and apply migrations.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&settings.data_dir)
        .map_err(|e| Error::internal(format!("data dir {}: {e}", settings.data_dir.display())))?;
    let url = settings.database_url();
    let store =
        SqlStore::connect(&url, &settings.storage).await?.with_folder_limits(FolderLimits::of(&settings.limits));
    let store: Arc<dyn Store> = Arc::new(store);
    store.migrate().await?;
    Ok(store)
}

/// The cursor key: from the configuration, or generated once and kept in the data dir. A
/// database several nodes share needs it configured: a key in one node's data dir would
/// make that node's cursors, restart tokens and Digest nonces fail on every other node.
pub fn token_key(settings: &Settings) -> Result<TokenKey> {
    if !settings.auth.cursor_secret.is_empty() {
        return Ok(TokenKey::new(settings.auth.cursor_secret.as_bytes().to_vec()));
    }
    if Engine::of_url(&settings.database_url())?.shared_by_nodes() {
        return Err(Error::internal(
            "auth.cursor_secret is required with a PostgreSQL database: every node serving it must seal \
             cursors and tokens with the same key (set the same secret on each node)",
        ));
    }
    let path = settings.data_dir.join("cursor.key");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            hex::decode(s.trim()).map(TokenKey::new).map_err(|e| Error::internal(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            write_private(&path, &hex::encode(key))?;
            Ok(TokenKey::new(key.to_vec()))
        }
        Err(e) => Err(Error::internal(format!("{}: {e}", path.display()))),
    }
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("{}: {e}", dir.display())))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    f.write_all(contents.as_bytes()).map_err(|e| Error::internal(format!("{}: {e}", path.display())))
}

/// The domain service over the configured stores.
pub async fn build_nms(settings: &Settings) -> Result<Nms> {
    build_nms_over(settings, None).await
}

/// The domain service for the command line's administration (accounts, box reset, sweep).
/// It seals nothing a client keeps, so on a shared database it also runs without
/// `auth.cursor_secret` (with a key of its own), as it does on SQLite.
pub async fn build_admin_nms(settings: &Settings) -> Result<Nms> {
    let key = if settings.auth.cursor_secret.is_empty() && Engine::of_url(&settings.database_url())?.shared_by_nodes() {
        let key: [u8; 32] = rand::random();
        TokenKey::new(key.to_vec())
    } else {
        token_key(settings)?
    };
    build_nms_keyed(settings, None, key).await
}

/// The domain service over the configured metadata store and `blobs`, or the configured
/// blob store.
async fn build_nms_over(settings: &Settings, blobs: Option<Arc<dyn ObjectStore>>) -> Result<Nms> {
    build_nms_keyed(settings, blobs, token_key(settings)?).await
}

async fn build_nms_keyed(settings: &Settings, blobs: Option<Arc<dyn ObjectStore>>, key: TokenKey) -> Result<Nms> {
    let meta = open_store(settings).await?;
    let blobs = match blobs {
        Some(store) => PayloadStore::with_store(store, meta.clone(), settings)?,
        None => PayloadStore::open(settings, meta.clone()).await?,
    };
    Ok(Nms::new(meta, blobs, settings.nms.clone(), settings.sync.clone(), key)
        .with_cpm(settings.cpm.clone())
        .with_limits(settings.limits.clone()))
}

/// A built, bound, not yet running server.
pub struct Application {
    server: Server,
    port: u16,
    public_url: String,
    nms: Nms,
    auth: Arc<Authenticator>,
    sweep_every: Duration,
    grace: Duration,
    /// The listener of the database's announcements, when it makes them.
    feed: Option<Listener>,
    /// The server of `server.metrics_listen`, and its port.
    metrics: Option<(Server, u16)>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self> {
        Self::build_over(settings, None).await
    }

    /// Build over this blob store instead of the one `storage.blob_url` names, everything
    /// else as configured. Tests use it to put faults between the server and its storage
    /// (a wrapper around `LocalFileSystem` or `InMemory` that fails some calls). The store
    /// is handled as one that is not local disk (see `PayloadStore::with_store`).
    pub async fn build_with_blobs(settings: Settings, blobs: Arc<dyn ObjectStore>) -> Result<Self> {
        Self::build_over(settings, Some(blobs)).await
    }

    async fn build_over(settings: Settings, blobs: Option<Arc<dyn ObjectStore>>) -> Result<Self> {
        let tls = match (&settings.server.tls_cert, &settings.server.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
            (None, None) => None,
            _ => return Err(Error::internal("server.tls_cert and server.tls_key must be given together")),
        };
        let nms = build_nms_over(&settings, blobs).await?;
        // What other processes commit reaches this node's waiters from the database, if it
        // announces it; then they wait without re-reading on a timer.
        let url = settings.database_url();
        let feed = Engine::of_url(&url)?.listener(&url);
        // Without one, the server watches the database for other connections' commits
        // (`Nms::watch_other_writers`): either way waiters need no timer.
        nms.hub().set_remote_feed();
        // Temporaries a crashed process left behind go now, not after the grace period.
        let grace = Duration::from_secs(settings.storage.blob_grace_secs);
        match nms.blobs().sweep_temporaries(grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(temporaries = n, "removed temporaries left by processes that are gone"),
            Err(e) => tracing::warn!(error = %e, "removing leftover temporaries failed; the sweep retries"),
        }
        let listener = TcpListener::bind(&settings.server.listen)
            .map_err(|e| Error::internal(format!("cannot listen on {}: {e}", settings.server.listen)))?;
        let addr = listener.local_addr().map_err(Error::internal)?;
        let public_url = settings.public_url_for(addr);
        crate::metrics::install();
        let auth = Arc::new(
            Authenticator::new(nms.store().clone(), &settings.auth, &settings.nms.stores, nms.tokens().clone())?
                .with_failure_limits(&settings.limits.auth_failures),
        );
        let state = web::Data::new(AppState {
            nms: nms.clone(),
            auth: auth.clone(),
            public_url: public_url.clone(),
            limits: settings.limits.clone(),
            throttle: crate::limits::Throttle::new(&settings.limits, settings.sync.long_poll_secs),
            pace: api::pacing::BodyPace::new(&settings.server),
            openapi: AppState::openapi_document(&public_url),
        });
        let shutdown_grace = Duration::from_secs(settings.server.shutdown_grace_secs);
        let ops = api::health::Ops {
            private: false,
            metrics_elsewhere: settings.server.metrics_listen.is_some(),
            readiness_timeout: Duration::from_millis(settings.server.readiness_timeout_ms.max(1)),
        };
        let metrics = match &settings.server.metrics_listen {
            Some(addr) => Some(metrics_server(addr, state.clone(), ops, shutdown_grace)?),
            None => None,
        };
        let ops = web::Data::new(ops);
        let http = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(ops.clone())
                .wrap(actix_web::middleware::from_fn(api::pacing::pace_bodies))
                .wrap(actix_web::middleware::from_fn(api::xml::negotiate))
                .wrap(actix_web::middleware::from_fn(api::access::observe))
                .wrap_fn(|req, srv| {
                    let fut = srv.call(req);
                    async move {
                        let mut res = fut.await?;
                        // Clients look response headers up case-sensitively: send `Location`, not `location`.
                        res.response_mut().head_mut().set_camel_case_headers(true);
                        Ok(res)
                    }
                })
                .configure(api::configure)
                .default_service(web::to(api::not_found))
        });
        let mut http = match tls {
            Some(config) => http.listen_rustls_0_23(listener, config),
            None => http.listen(listener),
        }
        .map_err(Error::internal)?;
        // A client that closes its side has gone (HTTP clients do not half-close while
        // waiting): end its request at once, so a long poll of a dead connection takes no
        // notification list.
        http = http.h1_allow_half_closed(false);
        // A connection's first request head must arrive in time (actix answers 408 and
        // closes); request bodies are paced by `api::pacing`.
        http = http.client_request_timeout(Duration::from_secs(settings.server.header_timeout_secs.min(86_400)));
        http = http.keep_alive(match settings.server.keep_alive_secs {
            0 => actix_web::http::KeepAlive::Disabled,
            secs => actix_web::http::KeepAlive::Timeout(Duration::from_secs(secs.min(86_400))),
        });
        if settings.server.workers > 0 {
            http = http.workers(settings.server.workers);
        }
        let server = http.shutdown_timeout(shutdown_grace.as_secs()).disable_signals().run();
        Ok(Self {
            server,
            port: addr.port(),
            public_url,
            nms,
            auth,
            sweep_every: Duration::from_secs(settings.storage.sweep_interval_secs.max(1)),
            grace,
            feed,
            metrics,
        })
    }

    /// The port of `server.metrics_listen`, when set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The domain service this application serves (for tests and tooling).
    pub fn nms(&self) -> &Nms {
        &self.nms
    }

    /// The authenticator (its counters are useful to tests and metrics).
    pub fn authenticator(&self) -> Arc<Authenticator> {
        self.auth.clone()
    }

    /// Serve until the server stops (Ctrl-C / SIGTERM), running the blob sweep meanwhile.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let metrics_handle = self.metrics.as_ref().map(|(s, _)| s.handle());
        let metrics_server = self.metrics.map(|(s, _)| tokio::spawn(s));
        let upkeep = tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                crate::metrics::upkeep();
            }
        });
        let hub = self.nms.hub().clone();
        let sweeper = tokio::spawn(sweep_loop(self.nms.blobs().clone(), self.sweep_every, self.grace));
        let pruner = tokio::spawn(housekeeping_loop(self.nms.clone()));
        let public_url = self.public_url.clone();
        let render = move |l: &EventList| api::webhook_body(&public_url, l);
        let webhooks = tokio::spawn(webhooks::run(self.nms.clone(), render));
        let follower = match self.feed {
            Some(l) => tokio::spawn(follow_database(l, self.nms.hub().clone())),
            None => {
                let nms = self.nms.clone();
                tokio::spawn(async move { nms.watch_other_writers(crate::hub::RE_READ).await })
            }
        };
        let stopper = tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            // Readiness fails and open long polls answer now; requests in flight get the
            // grace period. The metrics listener serves until they are done.
            hub.close();
            handle.stop(true).await;
            if let Some(h) = metrics_handle {
                h.stop(true).await;
            }
        });
        let res = self.server.await;
        sweeper.abort();
        pruner.abort();
        upkeep.abort();
        if let Some(m) = metrics_server {
            m.abort();
        }
        webhooks.abort();
        stopper.abort();
        follower.abort();
        res
    }
}

/// The server of `server.metrics_listen`: `/metrics`, `/healthz` and `/readyz`, without
/// credentials (see `api::health`).
fn metrics_server(
    addr: &str,
    state: web::Data<AppState>,
    ops: api::health::Ops,
    grace: Duration,
) -> Result<(Server, u16)> {
    let listener =
        TcpListener::bind(addr).map_err(|e| Error::internal(format!("cannot listen on {addr} (metrics): {e}")))?;
    let port = listener.local_addr().map_err(Error::internal)?.port();
    let ops = web::Data::new(api::health::Ops { private: true, ..ops });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(ops.clone())
            .configure(api::health::configure_private)
            .default_service(web::to(api::not_found))
    })
    .workers(1)
    .listen(listener)
    .map_err(Error::internal)?
    .shutdown_timeout(grace.as_secs())
    .disable_signals()
    .run();
    Ok((server, port))
}

/// Wake this node's waiters for what the database announces: the commits of every process
/// (this one's included, which the hub tells from news by their modseq).
async fn follow_database(mut listener: Listener, hub: Arc<Hub>) {
    loop {
        match listener.next().await {
            Notice::Box { id, modseq } => hub.deliver(id, modseq),
            Notice::Channel(id) => hub.wake_channel(id),
            Notice::Resumed => hub.wake_all(),
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Every `sync.prune_interval_secs`: expire objects past their store's policy, then drop
/// tombstones past the retention.
async fn housekeeping_loop(nms: Nms) {
    let mut tick = tokio::time::interval(Duration::from_secs(nms.sync_settings().prune_interval_secs.max(1)));
    tick.tick().await;
    loop {
        tick.tick().await;
        match nms.expire().await {
            Ok(n) => tracing::info!(objects = n, "expiry done"),
            Err(e) => tracing::warn!(error = %e, "expiry failed"),
        }
        if let Err(e) = nms.purge_expired_subscriptions().await {
            tracing::warn!(error = %e, "purging expired subscriptions failed");
        }
        nms.hub().sweep();
        match nms.prune_tombstones().await {
            Ok(n) => tracing::info!(tombstones = n, "tombstone pruning done"),
            Err(e) => tracing::warn!(error = %e, "tombstone pruning failed"),
        }
    }
}

async fn sweep_loop(blobs: PayloadStore, every: Duration, grace: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        match blobs.sweep(grace).await {
            Ok(r) => tracing::info!(
                blobs = r.blobs_deleted,
                temporaries = r.temporaries_deleted,
                stale_marks = r.stale_marks_dropped,
                "blob sweep done"
            ),
            Err(e) => tracing::warn!(error = %e, "blob sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Two nodes of one PostgreSQL database open each other's tokens only with one
    /// configured key; a key of its own in each data dir would make every cursor, restart
    /// token and Digest nonce a stranger on the other node, so the start is refused.
    #[test]
    fn a_database_shared_by_nodes_takes_the_cursor_key_from_the_configuration_only() {
        let node = |dir: &tempfile::TempDir, secret: &str| {
            let mut s = Settings { data_dir: dir.path().to_path_buf(), ..Default::default() };
            s.storage.database_url = "postgres://nms@127.0.0.1:1/nms".into();
            s.auth.cursor_secret = secret.into();
            s
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let refused = token_key(&node(&a, "")).unwrap_err().to_string();
        assert!(refused.contains("auth.cursor_secret"), "{refused}");
        assert!(!a.path().join("cursor.key").exists(), "no key of its own in the data dir");

        let sealed = token_key(&node(&a, "shared")).unwrap().seal("restart:1", b"token");
        let opened = token_key(&node(&b, "shared")).unwrap().open("restart:1", &sealed);
        assert_eq!(opened.as_deref(), Some(&b"token"[..]));

        // SQLite serves one node: its key is generated into the data dir and kept.
        let single = Settings { data_dir: a.path().to_path_buf(), ..Default::default() };
        let sealed = token_key(&single).unwrap().seal("restart:1", b"token");
        assert!(a.path().join("cursor.key").exists());
        assert!(token_key(&single).unwrap().open("restart:1", &sealed).is_some());
    }
}
