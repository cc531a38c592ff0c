//! Typed, layered configuration.
//!
//! Settings come, in increasing precedence, from the built-in defaults, an optional TOML
//! file (`--config FILE`), `NMS__SECTION__KEY` environment variables, and finally the
//! command-line flags (`--data-dir`, `--listen`, `--public-url`). Every field has a default,
//! so the server starts with no file at all on the embedded SQLite + local-disk backend.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything the server and the CLI need to know.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Where the embedded database, blobs and generated secrets live.
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub nms: NmsSettings,
    pub limits: LimitSettings,
    pub auth: AuthSettings,
    pub sync: SyncSettings,
    pub cpm: CpmSettings,
}

/// CPM semantics (CPM binding 5.3-5.6, 6.4-7.4); see docs/cpm.md.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct CpmSettings {
    /// Whether `Message-Context` values beyond the CPM binding's list are accepted
    /// (otherwise `400 SVC0003`).
    pub allow_unknown_message_context: bool,
    /// SMS texts of at most this many characters are also stored inline as `TextContent`
    /// (NMS 5.1.9); 0: never.
    pub sms_inline_text_max: u32,
    /// How an SMS's `correlationTag` is computed when the depositor gives none: `rcc07`
    /// (the RCC.07 Message-Correlator) or `us-carrier-hash`.
    pub correlation_tag: crate::cpm::correlation::TagAlgorithm,
    /// Whether CPM objects deposited without a parent folder are placed by conversation,
    /// session or remote party (see docs/cpm.md); off: in the root folder.
    pub placement: bool,
    /// Where subscribers' placed objects go (the user's permanent storage, RCC.09).
    pub user_area: String,
    /// Where service accounts' (CPM Participating Functions') placed objects go: the
    /// network-written area.
    pub network_area: String,
}

impl Default for CpmSettings {
    fn default() -> Self {
        Self {
            allow_unknown_message_context: false,
            sms_inline_text_max: 0,
            correlation_tag: Default::default(),
            placement: true,
            user_area: "/RCSMessageStore".into(),
            network_area: "/Default".into(),
        }
    }
}

/// HTTP listener and the URL clients see.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    /// Address to bind; port 0 picks a free port.
    pub listen: String,
    /// Absolute base URL written into every URL-typed field (`resourceURL`, `href`, ...).
    /// Empty means `http://{listen address}` as actually bound.
    pub public_url: String,
    /// Number of HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// PEM certificate chain (leaf first) for TLS termination; with `tls_key`, the server
    /// speaks HTTPS only. Unset: plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the `tls_cert` leaf.
    pub tls_key: Option<PathBuf>,
    /// A connection's first request head must arrive within this many seconds (else 408 and
    /// the connection is closed); 0: no limit.
    pub header_timeout_secs: u64,
    /// The time a request body may keep the server waiting: this many seconds, plus one
    /// second per `body_min_rate_bytes_per_sec` bytes received. Past it: 408, connection
    /// closed. 0: no limit.
    pub body_timeout_secs: u64,
    /// The slowest a request body may arrive on average once `body_timeout_secs` is used
    /// up; 0: the body must be complete within `body_timeout_secs` of waiting.
    pub body_min_rate_bytes_per_sec: u64,
    /// The most the server waits for one request body in all, whatever its rate earned; 0:
    /// no cap.
    pub body_max_secs: u64,
    /// On SIGTERM (or Ctrl-C) the server stops accepting connections, answers its open long
    /// polls, and gives the requests in flight this many seconds to finish before it drops
    /// them and exits; 0: drop them at once.
    pub shutdown_grace_secs: u64,
    /// A second listener (`host:port`) that serves `/metrics`, `/healthz` and `/readyz`
    /// without credentials, for a scraper on a private network; the public listener then
    /// answers `/metrics` with 404. Unset: `/metrics` is on the public listener, for
    /// service principals only.
    pub metrics_listen: Option<String>,
    /// `/readyz` fails a check (the database, the payload store) that has not answered
    /// within this many milliseconds.
    pub readiness_timeout_ms: u64,
    /// An idle connection between requests is kept open this many seconds for the client's
    /// next request (a phone reuses its connection, and its TLS session, from one
    /// synchronisation to the next); 0: closed after each answer.
    pub keep_alive_secs: u64,
}

impl ServerSettings {
    /// Whether the server terminates TLS itself.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }
}

/// Metadata database and payload blob storage.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageSettings {
    /// Database URL; empty means `sqlite://{data_dir}/nms.db`. A `postgres://` URL selects
    /// the PostgreSQL engine (several nodes on one database; see docs/storage.md). TLS to
    /// PostgreSQL is set in the URL: `?sslmode=verify-full&sslrootcert=/path/ca.pem`.
    pub database_url: String,
    /// Connection settings used when `database_url` names PostgreSQL.
    pub postgres: PostgresSettings,
    /// object_store URL for payload blobs (`file:///...`, `memory:///`, `s3://bucket/prefix`);
    /// empty means the `blobs` directory under the data dir. An `s3://` URL takes its
    /// endpoint, region and credentials from `[storage.s3]` and the `AWS_*` environment
    /// variables (see [`S3Settings`]).
    pub blob_url: String,
    /// Payload parts up to this many bytes are kept inline in the metadata store.
    pub inline_max_bytes: usize,
    /// Bytes a streaming upload buffers before it writes them as one chunk (a multipart
    /// part); 0: 256 KiB on local disk, 5 MiB (the S3 minimum part size) on other stores.
    pub write_buffer_bytes: usize,
    /// How often the orphan-blob sweep runs, in seconds.
    pub sweep_interval_secs: u64,
    /// Unreferenced blobs, pins and temporaries younger than this are left alone by the
    /// sweep (uploads in flight); temporaries of processes that are gone are removed at once
    /// on local disk.
    pub blob_grace_secs: u64,
    /// Connection to S3 when `blob_url` is `s3://bucket/prefix` (`[storage.s3]`).
    pub s3: S3Settings,
}

/// Where and as whom an `s3://` blob URL is reached. Each key left empty (or unset) falls
/// back to the standard AWS environment variable named with it; a key that is set wins over
/// the variable. With no credentials in either, the AWS credential chain is used (web
/// identity, container or instance role). See docs/storage.md.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct S3Settings {
    /// Endpoint URL of an S3-compatible service (`https://minio.example:9000`); empty: AWS's
    /// own for the region (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT`).
    pub endpoint: String,
    /// Region; empty: `AWS_REGION`, then `AWS_DEFAULT_REGION`, then `us-east-1`.
    pub region: String,
    /// Access key id (`AWS_ACCESS_KEY_ID`); needs `secret_access_key` with it.
    pub access_key_id: String,
    /// Secret access key (`AWS_SECRET_ACCESS_KEY`); redacted by `cpm-nms config`.
    pub secret_access_key: String,
    /// Session token of temporary credentials (`AWS_SESSION_TOKEN`); redacted by
    /// `cpm-nms config`.
    pub session_token: String,
    /// Allow a plain `http://` endpoint (`AWS_ALLOW_HTTP`); unset: no.
    pub allow_http: Option<bool>,
    /// Address the bucket as `https://{bucket}.{endpoint host}` rather than
    /// `{endpoint}/{bucket}` (`AWS_VIRTUAL_HOSTED_STYLE_REQUEST`); unset: path style.
    pub virtual_hosted_style: Option<bool>,
}

/// The PostgreSQL connection pool of one node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct PostgresSettings {
    /// Connections this node keeps at most. Every node has its own pool: the sum over the
    /// nodes must stay below the server's `max_connections`.
    pub max_connections: u32,
    /// A statement running longer than this is cancelled (the request fails with 503);
    /// 0 disables the limit.
    pub statement_timeout_ms: u64,
    /// How long a request waits for a connection (or for the database to answer a new
    /// one) before it fails with 503.
    pub acquire_timeout_secs: u64,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self { max_connections: 16, statement_timeout_ms: 30_000, acquire_timeout_secs: 5 }
    }
}

/// Protocol-level policy.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct NmsSettings {
    /// Store names served under `/nms/v1/{storeName}`; the first is the default.
    pub stores: Vec<String>,
    /// Refuse renaming a box's root folder (403 POL1030).
    pub forbid_root_rename: bool,
    /// Folder paths (with their subtrees) under which only service accounts (CPM
    /// Participating Functions) may create objects or folders; anyone else gets 403 POL1031.
    /// NMS's own example is `/Default`.
    pub service_only_folders: Vec<String>,
    /// Default and maximum number of child entries in a folder listing page.
    pub folder_page_default: u32,
    pub folder_page_max: u32,
    /// Largest search page: a larger `maxEntries` is answered with this many at most (NMS
    /// lets the server return fewer), or refused when `search_page_max_refuse`.
    pub search_page_max: u32,
    /// Refuse a `maxEntries` above `search_page_max` with 403 POL0001 instead of clamping it.
    pub search_page_max_refuse: bool,
    /// Most objects one bulk request (bulkCreation, bulkUpdate, bulkDelete) may name or
    /// select; more is refused with 403 POL0001.
    pub bulk_max_items: u32,
}

/// Strict synchronization.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncSettings {
    /// Tombstones (deleted and expired items) older than this are dropped; a restart token
    /// from before the newest dropped one replays as `resetBox`.
    pub tombstone_max_age_secs: u64,
    /// At most this many tombstones are kept per box (the newest).
    pub tombstone_max_per_box: u32,
    /// How often housekeeping runs: object expiry, then tombstone pruning.
    pub prune_interval_secs: u64,
    /// How long a long poll with nothing to deliver waits before answering an empty list.
    pub long_poll_secs: u64,
    /// Changes per notification list when that many are pending (a list holds whole
    /// modseq groups, so it may hold more; a group too large is sliced to this size).
    pub list_max_events: u32,
    /// Whether subscriptions may name webhooks (any http(s) `notifyURL` that is not one of
    /// this server's notification channels).
    pub webhooks: bool,
    /// Whether webhooks may be delivered to private, loopback and link-local addresses
    /// (off: such literal addresses are refused, and names resolving only to them fail).
    pub webhook_private_networks: bool,
    /// A webhook attempt that has not answered within this is a failure.
    pub webhook_timeout_secs: u64,
    /// The wait after a first failed attempt; it doubles with each failure ...
    pub webhook_retry_initial_ms: u64,
    /// ... up to this.
    pub webhook_retry_max_secs: u64,
    /// Expiry policies by store name (`[sync.retention.base]`): objects past them are
    /// deleted in the background and reported as `expiredObject`.
    pub retention: std::collections::BTreeMap<String, RetentionPolicy>,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            tombstone_max_age_secs: 30 * 24 * 3600,
            tombstone_max_per_box: 100_000,
            prune_interval_secs: 3600,
            long_poll_secs: 30,
            list_max_events: 5000,
            webhooks: true,
            webhook_private_networks: false,
            webhook_timeout_secs: 10,
            webhook_retry_initial_ms: 1000,
            webhook_retry_max_secs: 300,
            retention: Default::default(),
        }
    }
}

/// An expiry policy of one store; 0 turns a limit off.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionPolicy {
    /// Objects stored longer ago than this expire.
    pub max_age_secs: u64,
    /// Each box keeps at most this many objects (the most recently stored).
    pub max_objects: u32,
}

/// Limits against abuse (see docs/security.md, "Limits and abuse"). A limit set to 0 is off,
/// except the two body sizes. Each refusal is an OMA policy exception (`POL0001`) whose
/// variable names the setting and its value.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: u64,
    /// Largest JSON document accepted (a JSON body or a `root-fields` part).
    pub max_json_bytes: usize,
    /// Largest single payload part of a deposit, checked while it streams (413 above it);
    /// 0: only `max_body_bytes` bounds it.
    pub max_part_bytes: u64,
    /// Most payload parts one object may have (403 above it).
    pub max_parts_per_object: u32,
    /// Largest head (the header lines) of one MIME part of a deposit, outer and nested parts
    /// alike (400 above it); a CPIM message's head has its own bound (64 KiB).
    pub max_part_head_bytes: usize,
    /// Deepest folder below the root (the root's children are at depth 1): creating, moving
    /// or copying a folder deeper is refused (403).
    pub max_folder_depth: u32,
    /// Longest folder path in bytes (`/a/b`, the root being ``): creating, renaming, moving
    /// or copying a folder to a longer path is refused (403).
    pub max_folder_path_bytes: u32,
    /// Most criteria one search or subscription filter may hold, nested groups included
    /// (403 above it).
    pub max_search_criteria: u32,
    /// Most live subscriptions one box may have, whoever made them (403 when creating one
    /// more).
    pub max_subscriptions_per_box: u32,
    /// Most live notification channels one principal may hold (403 when creating one more).
    pub max_channels_per_principal: u32,
    /// Most notification channels one principal may long-poll at once (429 for one more);
    /// a newer poll of a channel already polled replaces the older one and counts once.
    pub max_polls_per_principal: u32,
    /// Requests per second each principal may make on average (token bucket refill rate);
    /// 0: no rate limiting. Over it: 429 with `Retry-After`.
    pub rate_per_sec: f64,
    /// Requests a principal may make at once after being idle (token bucket size).
    pub rate_burst: u32,
    /// Whether service accounts (CPM Participating Functions) are rate-limited too.
    pub rate_limit_services: bool,
    /// Failed authentications, throttled per source address and per login name
    /// (`[limits.auth_failures]`).
    pub auth_failures: AuthFailureSettings,
}

/// Throttling of failed authentications (see docs/security.md, "Failed logins"). Two token
/// buckets that only failures drain: one per source address, one per login name. An
/// attempt is refused with 429 (and no password check at all) while either is empty, except
/// that a name's known addresses (where it logged in lately) have a bucket of their own
/// instead of both. A rate of 0 turns that bucket off.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthFailureSettings {
    /// Failed authentications per second a source address regains (refill rate); 0: off.
    pub address_per_sec: f64,
    /// Failed authentications a source address may make at once (bucket size).
    pub address_burst: u32,
    /// Failed logins per second a login name regains, whatever the address; 0: off. Keep it
    /// at least `address_per_sec` (and the burst above `address_burst`), so that one
    /// address alone never empties a name's bucket.
    pub name_per_sec: f64,
    /// Failed logins a login name may take at once, from all addresses together.
    pub name_burst: u32,
    /// How long an address where a name logged in stays known for that name (renewed by
    /// each login); 0, or the address bucket off: no address is known (every attempt counts
    /// against both buckets).
    pub known_address_secs: u64,
}

impl Default for AuthFailureSettings {
    fn default() -> Self {
        Self { address_per_sec: 0.1, address_burst: 10, name_per_sec: 0.1, name_burst: 20, known_address_secs: 86_400 }
    }
}

/// Authentication: HTTP Basic and Digest for accounts made with `cpm-nms account add`,
/// Bearer tokens (JWTs) from trusted issuers. See docs/security.md.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// Accept HTTP Basic credentials of accounts made with `cpm-nms account add`.
    pub basic: bool,
    /// Realm announced in `WWW-Authenticate` (and part of the Digest H(A1) stored per account).
    pub realm: String,
    /// How long a successful password verification is remembered, in seconds.
    pub cache_ttl_secs: u64,
    /// Key for the MAC on cursors (hex). Empty: a key generated once and kept in the data dir
    /// (SQLite only). It also seals restart tokens and Digest nonces, so every node of a
    /// deployment must share it: with a PostgreSQL database it is required.
    pub cursor_secret: String,
    /// HTTP Digest (RFC 7616) for accounts; off by default.
    pub digest: DigestSettings,
    /// Bearer tokens (JWTs); on when at least one issuer is configured.
    pub bearer: BearerSettings,
}

/// HTTP Digest authentication (RFC 7616) of accounts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct DigestSettings {
    /// Offer and accept Digest. Accounts need their H(A1) values, written by
    /// `cpm-nms account add` while this is on (or with `--digest`).
    pub enabled: bool,
    /// Algorithms offered, in order of preference: `SHA-256`, `MD5`.
    pub algorithms: Vec<String>,
    /// A nonce older than this is stale: the client is told `stale=true` and retries.
    pub nonce_ttl_secs: u64,
}

/// Bearer tokens: signed JWTs (OIDC ID tokens or JWT access tokens) from trusted issuers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct BearerSettings {
    /// Trusted issuers (`[[auth.bearer.issuers]]`). None (and no `introspection`): Bearer
    /// is off.
    pub issuers: Vec<IssuerSettings>,
    /// Authorization servers asked about opaque tokens by OAuth 2.0 token introspection
    /// (RFC 7662, `[[auth.bearer.introspection]]`), in order: a token goes to the first whose
    /// `token_prefix` it starts with, unless it is a JWT naming one of `issuers`.
    pub introspection: Vec<IntrospectionSettings>,
    /// Accepted `aud` values: a token must name at least one. Required when Bearer is on.
    pub audiences: Vec<String>,
    /// Asymmetric signature algorithms accepted (`RS256`, `RS384`, `RS512`, `PS256`, `PS384`,
    /// `PS512`, `ES256`, `ES384`, `EdDSA`). `none` is never accepted; `HS256`/`HS384`/`HS512`
    /// only from issuers with a `shared_secret`, and only verified with that secret.
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// Remote key sets (discovery or `jwks_url`) are fetched again this often, in seconds.
    pub refresh_interval_secs: u64,
    /// A token naming an unknown `kid` makes the server fetch its issuer's keys again, at
    /// most once per this many seconds per issuer.
    pub min_refresh_interval_secs: u64,
    /// Time limit of one discovery or JWKS request, in seconds.
    pub http_timeout_secs: u64,
    /// Claims holding the subscriber's address(es), in order (string or array of strings).
    /// `tel:` and `sip:`/`sips:` URIs are taken as they are (visual separators removed from
    /// global numbers); a global number such as `+1 212 555 1212` becomes `tel:+12125551212`;
    /// other values (a UUID `sub`, a local number) are ignored.
    pub address_claims: Vec<String>,
    /// Claims holding the granted scopes (space-separated string or array). NMS scopes are
    /// `oma_rest_nms.create`, `.read`, `.modify`, `.subscription` and `.all_v1`; others are ignored.
    pub scope_claims: Vec<String>,
    /// Scopes granted to a token that carries none of `scope_claims` (e.g. OIDC ID tokens,
    /// which have no scope claim). Empty: such a token may do nothing.
    pub default_scopes: Vec<String>,
    /// A claim marking service principals (CPM Participating Functions), e.g. `roles`...
    pub service_claim: String,
    /// ... and the values of it that do (string or array claim; any match).
    pub service_values: Vec<String>,
    /// Client ids (`azp` or `client_id` claim) that are service principals.
    pub service_clients: Vec<String>,
    /// Stores in which a subscriber's addresses are its boxes. Empty: every store of `nms.stores`.
    pub stores: Vec<String>,
    /// Create a bearer subscriber's own box on its first authenticated access (service
    /// principals never create boxes).
    pub provision_boxes: bool,
    /// Longer `Authorization: Bearer` values are refused as malformed.
    pub max_token_bytes: usize,
    /// Take `Authorization: SIT <token>` (sent by a family of deployed RCS clients) as an
    /// opaque token for the `introspection` endpoints, never as a JWT. Only with an
    /// introspection endpoint configured; otherwise (or off) `SIT` is an unsupported scheme.
    pub sit_scheme: bool,
}

/// One trusted token issuer. Its keys come from OIDC discovery of `issuer`, or from
/// `jwks_url`, and/or from static `keys`; a `shared_secret` makes it an HS256 issuer.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IssuerSettings {
    /// The `iss` value tokens carry (and the OIDC issuer URL for discovery).
    pub issuer: String,
    /// Fetch `{issuer}/.well-known/openid-configuration` and its `jwks_uri`. Default: on
    /// when neither `jwks_url`, `keys` nor `shared_secret` is set.
    pub discovery: Option<bool>,
    /// A JWKS document to fetch (and refresh) directly, without discovery.
    pub jwks_url: String,
    /// Static public keys (offline deployments).
    pub keys: Vec<StaticKeySettings>,
    /// HMAC secret (at least 32 bytes) for HS256/HS384/HS512 tokens of this issuer only.
    pub shared_secret: String,
    /// Accepted `aud` values for this issuer; empty: `auth.bearer.audiences`.
    pub audiences: Vec<String>,
}

/// An introspection endpoint (RFC 7662) of an operator's authorization server, which this
/// server authenticates to with HTTP Basic (`client_id`, `client_secret`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IntrospectionSettings {
    /// The introspection endpoint (HTTPS; plain HTTP only to loopback addresses).
    pub url: String,
    /// This server's client id at the authorization server.
    pub client_id: String,
    /// Its client secret; redacted by `cpm-nms config`, never logged.
    pub client_secret: String,
    /// Only tokens starting with this go to this endpoint (`PAT_`); empty: every token.
    pub token_prefix: String,
    /// An active answer is remembered this long at most (and never past the token's `exp`);
    /// an inactive one at most 10 s of it. 0: nothing is remembered.
    pub cache_secs: u64,
    /// Time limit of one introspection request (a request waiting on it answers 503 when it
    /// runs out); unset: 3 s.
    pub http_timeout_secs: Option<u64>,
}

impl Default for IntrospectionSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            token_prefix: String::new(),
            cache_secs: 60,
            http_timeout_secs: None,
        }
    }
}

/// A static public key of an issuer: PEM text, a PEM file, or a JWK.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StaticKeySettings {
    /// Key id matched against the token header's `kid`; empty: tried for tokens without one.
    pub kid: String,
    /// Restrict the key to one algorithm (`RS256`, `ES256`, `EdDSA`, ...). Empty: any of
    /// `auth.bearer.algorithms` that fits the key type.
    pub alg: String,
    /// A public key in PEM (`-----BEGIN PUBLIC KEY-----`, RSA, EC P-256/P-384 or Ed25519).
    pub pem: String,
    /// A file holding such a PEM.
    pub pem_file: String,
    /// A public JWK, as a table or as JSON text.
    pub jwk: Option<serde_json::Value>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./nms-data"),
            server: ServerSettings::default(),
            storage: StorageSettings::default(),
            nms: NmsSettings::default(),
            limits: LimitSettings::default(),
            auth: AuthSettings::default(),
            sync: SyncSettings::default(),
            cpm: CpmSettings::default(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: String::new(),
            workers: 0,
            tls_cert: None,
            tls_key: None,
            header_timeout_secs: 5,
            body_timeout_secs: 20,
            body_min_rate_bytes_per_sec: 500,
            body_max_secs: 3600,
            shutdown_grace_secs: 30,
            metrics_listen: None,
            readiness_timeout_ms: 2000,
            keep_alive_secs: 75,
        }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            database_url: String::new(),
            postgres: PostgresSettings::default(),
            blob_url: String::new(),
            inline_max_bytes: 8 * 1024,
            write_buffer_bytes: 0,
            sweep_interval_secs: 3600,
            blob_grace_secs: 24 * 3600,
            s3: S3Settings::default(),
        }
    }
}

impl Default for NmsSettings {
    fn default() -> Self {
        Self {
            stores: vec!["base".into()],
            forbid_root_rename: true,
            service_only_folders: vec!["/Default".into()],
            folder_page_default: 100,
            folder_page_max: 1000,
            search_page_max: 1000,
            search_page_max_refuse: false,
            bulk_max_items: 1000,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024 * 1024,
            max_json_bytes: 1024 * 1024,
            max_part_bytes: 0,
            max_parts_per_object: 100,
            max_part_head_bytes: 16 * 1024,
            max_folder_depth: 32,
            max_folder_path_bytes: 1024,
            max_search_criteria: 64,
            max_subscriptions_per_box: 100,
            max_channels_per_principal: 100,
            max_polls_per_principal: 10,
            rate_per_sec: 0.0,
            rate_burst: 20,
            rate_limit_services: false,
            auth_failures: AuthFailureSettings::default(),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            basic: true,
            realm: "cpm-nms".into(),
            cache_ttl_secs: 60,
            cursor_secret: String::new(),
            digest: DigestSettings::default(),
            bearer: BearerSettings::default(),
        }
    }
}

impl Default for DigestSettings {
    fn default() -> Self {
        Self { enabled: false, algorithms: vec!["SHA-256".into(), "MD5".into()], nonce_ttl_secs: 300 }
    }
}

impl Default for BearerSettings {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            introspection: Vec::new(),
            audiences: Vec::new(),
            algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
            leeway_secs: 60,
            refresh_interval_secs: 3600,
            min_refresh_interval_secs: 30,
            http_timeout_secs: 10,
            address_claims: vec!["sub".into(), "phone_number".into()],
            scope_claims: vec!["scope".into(), "scp".into()],
            default_scopes: Vec::new(),
            service_claim: String::new(),
            service_values: Vec::new(),
            service_clients: Vec::new(),
            stores: Vec::new(),
            provision_boxes: true,
            max_token_bytes: 16 * 1024,
            sit_scheme: true,
        }
    }
}

impl AuthSettings {
    /// A copy with every secret replaced by a marker (for `cpm-nms config`).
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        shown.cursor_secret = redact(&self.cursor_secret).to_string();
        for i in &mut shown.bearer.issuers {
            i.shared_secret = redact(&i.shared_secret).to_string();
        }
        for i in &mut shown.bearer.introspection {
            i.client_secret = redact(&i.client_secret).to_string();
        }
        shown
    }
}

impl fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageSettings")
            .field("database_url", &redact_url(&self.database_url))
            .field("postgres", &self.postgres)
            .field("blob_url", &redact_url(&self.blob_url))
            .field("inline_max_bytes", &self.inline_max_bytes)
            .field("write_buffer_bytes", &self.write_buffer_bytes)
            .field("sweep_interval_secs", &self.sweep_interval_secs)
            .field("blob_grace_secs", &self.blob_grace_secs)
            .field("s3", &self.s3)
            .finish()
    }
}

impl S3Settings {
    /// A copy with the secrets replaced by a marker (for `cpm-nms config`).
    pub fn redacted(&self) -> Self {
        Self {
            secret_access_key: redact(&self.secret_access_key).to_string(),
            session_token: redact(&self.session_token).to_string(),
            ..self.clone()
        }
    }
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("session_token", &redact(&self.session_token))
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("basic", &self.basic)
            .field("realm", &self.realm)
            .field("cache_ttl_secs", &self.cache_ttl_secs)
            .field("cursor_secret", &redact(&self.cursor_secret))
            .field("digest", &self.digest)
            .field("bearer", &self.bearer)
            .finish()
    }
}

impl fmt::Debug for IssuerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerSettings")
            .field("issuer", &self.issuer)
            .field("discovery", &self.discovery)
            .field("jwks_url", &self.jwks_url)
            .field("keys", &self.keys)
            .field("shared_secret", &redact(&self.shared_secret))
            .field("audiences", &self.audiences)
            .finish()
    }
}

impl fmt::Debug for IntrospectionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionSettings")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &redact(&self.client_secret))
            .field("token_prefix", &self.token_prefix)
            .field("cache_secs", &self.cache_secs)
            .field("http_timeout_secs", &self.http_timeout_secs)
            .finish()
    }
}

fn redact(s: &str) -> &'static str {
    if s.is_empty() { "" } else { "<redacted>" }
}

/// Hide a password embedded in a URL (`postgres://user:secret@host/db`).
/// `s` with its password (if it is a URL with one) redacted.
pub(crate) fn redact_url(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => s.to_string(),
    }
}

/// Command-line values that override every other layer.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
}

/// Error loading the configuration.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Defaults, then the TOML file, then `NMS__SECTION__KEY` variables, then the flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!("file {} does not exist", file.display())));
            }
            fig = fig.merge(Toml::file(file));
        }
        Self::layered(fig, overrides)
    }

    /// [`Settings::load`] with the TOML given as text instead of a file (the same layers).
    pub fn load_str(toml: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::layered(Figment::from(Serialized::defaults(Settings::default())).merge(Toml::string(toml)), overrides)
    }

    /// The environment and the flags over `fig` (defaults and TOML), then the checks.
    fn layered(fig: Figment, overrides: &Overrides) -> Result<Self, ConfigError> {
        let fig = fig.merge(Env::prefixed("NMS__").split("__").lowercase(true));
        let mut s: Settings = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        if let Some(d) = &overrides.data_dir {
            s.data_dir = d.clone();
        }
        if let Some(l) = &overrides.listen {
            s.server.listen = l.clone();
        }
        if let Some(p) = &overrides.public_url {
            s.server.public_url = p.clone();
        }
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.nms.stores.is_empty() {
            return Err(ConfigError("nms.stores must name at least one store".into()));
        }
        for s in &self.nms.stores {
            if s.is_empty() || s.contains('/') {
                return Err(ConfigError(format!("invalid store name {s:?}")));
            }
        }
        if !self.server.public_url.is_empty() {
            let u =
                url::Url::parse(&self.server.public_url).map_err(|e| ConfigError(format!("server.public_url: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(ConfigError("server.public_url must be http or https".into()));
            }
        }
        if self.sync.list_max_events == 0 {
            return Err(ConfigError("sync.list_max_events must be positive".into()));
        }
        if self.nms.folder_page_default == 0 || self.nms.folder_page_max == 0 {
            return Err(ConfigError("folder page sizes must be positive".into()));
        }
        // A part's head is always bounded: headers are held in memory while they are read.
        if self.limits.max_part_head_bytes < 256 {
            return Err(ConfigError("limits.max_part_head_bytes must be at least 256".into()));
        }
        // Token buckets: a rate (0: off) and a size of at least one token when on.
        let (l, f) = (&self.limits, &self.limits.auth_failures);
        for (rate_key, burst_key, rate, burst) in [
            ("limits.rate_per_sec", "limits.rate_burst", l.rate_per_sec, l.rate_burst),
            (
                "limits.auth_failures.address_per_sec",
                "limits.auth_failures.address_burst",
                f.address_per_sec,
                f.address_burst,
            ),
            ("limits.auth_failures.name_per_sec", "limits.auth_failures.name_burst", f.name_per_sec, f.name_burst),
        ] {
            if !rate.is_finite() || rate < 0.0 {
                return Err(ConfigError(format!("{rate_key} must be a number >= 0")));
            }
            if rate > 0.0 && burst == 0 {
                return Err(ConfigError(format!("{burst_key} must be at least 1 when {rate_key} is on")));
            }
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(ConfigError("server.tls_cert and server.tls_key must be given together".into()));
        }
        Ok(())
    }

    /// The database URL actually used.
    pub fn database_url(&self) -> String {
        if self.storage.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("nms.db").display())
        } else {
            self.storage.database_url.clone()
        }
    }

    /// The blob-store URL actually used (`None`: the local `blobs` directory).
    pub fn blob_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }

    /// The public base URL for a listener bound to `addr` (`https` when TLS is on).
    pub fn public_url_for(&self, addr: SocketAddr) -> String {
        if self.server.public_url.is_empty() {
            let scheme = if self.server.tls() { "https" } else { "http" };
            format!("{scheme}://{addr}")
        } else {
            self.server.public_url.trim_end_matches('/').to_string()
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.storage.database_url = redact_url(&self.database_url());
        if shown.storage.blob_url.is_empty() {
            shown.storage.blob_url = format!("file://{}", self.blob_dir().display());
        } else {
            shown.storage.blob_url = redact_url(&shown.storage.blob_url);
        }
        shown.storage.s3 = self.storage.s3.redacted();
        shown.auth = self.auth.redacted();
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_text_is_layered_like_a_file() {
        let text = "[nms]\nstores = [\"a\", \"b\"]\n[limits]\nrate_per_sec = 2.5\n";
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("nms.toml");
        std::fs::write(&file, text).expect("write");
        let from_file = Settings::load(Some(&file), &Overrides::default()).expect("file");
        let from_text = Settings::load_str(text, &Overrides::default()).expect("text");
        assert_eq!(from_text.nms.stores, ["a", "b"]);
        assert_eq!(from_text.to_redacted_toml(), from_file.to_redacted_toml());
        assert!(Settings::load_str("[nms]\nstores = []\n", &Overrides::default()).is_err());
    }

    #[test]
    fn s3_secrets_are_redacted_and_the_rest_is_shown() {
        let text = "[storage]\nblob_url = \"s3://bucket/prefix\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:9000\"\n\
                    region = \"eu-west-1\"\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"s3-secret\"\n\
                    session_token = \"s3-token\"\nallow_http = true\n";
        let s = Settings::load_str(text, &Overrides::default()).expect("load");
        assert_eq!(s.storage.s3.allow_http, Some(true));
        assert_eq!(s.storage.s3.virtual_hosted_style, None);
        for shown in [s.to_redacted_toml(), format!("{s:?}")] {
            assert!(!shown.contains("s3-secret") && !shown.contains("s3-token"), "{shown}");
            for visible in ["http://127.0.0.1:9000", "eu-west-1", "AKIDEXAMPLE", "<redacted>"] {
                assert!(shown.contains(visible), "{visible} in {shown}");
            }
        }
    }

    #[test]
    fn introspection_endpoints_are_read_and_their_secrets_redacted() {
        let text = "[[auth.bearer.introspection]]\nurl = \"https://as.example/introspect\"\n\
                    client_id = \"cpm-nms\"\nclient_secret = \"as-secret\"\ntoken_prefix = \"PAT_\"\n\
                    [[auth.bearer.introspection]]\nurl = \"https://as2.example/introspect\"\n\
                    http_timeout_secs = 2\n";
        let s = Settings::load_str(text, &Overrides::default()).expect("load");
        let [a, b] = s.auth.bearer.introspection.as_slice() else { panic!("two endpoints") };
        assert_eq!((a.token_prefix.as_str(), a.cache_secs, a.http_timeout_secs), ("PAT_", 60, None));
        assert_eq!((b.token_prefix.as_str(), b.http_timeout_secs), ("", Some(2)));
        for shown in [s.to_redacted_toml(), format!("{s:?}")] {
            assert!(!shown.contains("as-secret"), "{shown}");
            for visible in ["https://as.example/introspect", "cpm-nms", "PAT_", "<redacted>"] {
                assert!(shown.contains(visible), "{visible} in {shown}");
            }
        }
    }

    #[test]
    fn part_heads_cannot_be_unbounded() {
        for bad in ["0", "255"] {
            let text = format!("[limits]\nmax_part_head_bytes = {bad}\n");
            let Err(err) = Settings::load_str(&text, &Overrides::default()) else { panic!("{bad} accepted") };
            assert!(err.to_string().contains("limits.max_part_head_bytes"), "{err}");
        }
        assert!(Settings::load_str("[limits]\nmax_part_head_bytes = 256\n", &Overrides::default()).is_ok());
    }
}
