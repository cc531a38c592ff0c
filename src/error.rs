//! The one domain error type.
//!
//! Every failure the domain and storage layers can report is a variant here, grouped by
//! kind. The HTTP layer (`api::error`) renders each variant once, as the OMA `requestError`
//! body with its status and stable messageId; internal details are logged, never sent.

/// Domain error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request element is missing or malformed (400 SVC0002, `part` names the element).
    #[error("invalid input value for {part}")]
    InvalidInput { part: String },
    /// A value is not one of the allowed ones (400 SVC0003).
    #[error("invalid value for {part}, valid values are {valid}")]
    InvalidValue { part: String, valid: String },
    /// The addressed resource does not exist (404 SVC0004, `what` is the Request-URI or path).
    #[error("not found: {what}")]
    NotFound { what: String },
    /// The resource a request addresses does not exist (404 SVC0004); the HTTP layer names
    /// it by the request's URI, which the domain does not know.
    #[error("the addressed resource does not exist")]
    Missing,
    /// A path names nothing (404 SVC0004, also inside bulk answers).
    #[error("unknown path {path}")]
    UnknownPath { path: String },
    /// The name is already taken under the parent folder (409 SVC0002).
    #[error("duplicate name {name}")]
    DuplicateName { name: String },
    /// The folder may not be renamed (403 POL1030).
    #[error("renaming this folder is not allowed")]
    RenameForbidden,
    /// Creating objects or folders under the folder is not allowed (403 POL1031).
    #[error("creating under {target} is not allowed")]
    ParentForbidden { target: String },
    /// A notification channel type this server does not offer (403 POL1023).
    #[error("notification channel type {channel_type} not supported")]
    ChannelTypeUnsupported { channel_type: String },
    /// A newer long poll on the same channel ended this one (409 SVC1012).
    #[error("simultaneous channel requests not supported")]
    SimultaneousPoll,
    /// No or wrong credentials (401); `challenges` are the `WWW-Authenticate` values, one
    /// header each, in order.
    #[error("authentication required: {reason}")]
    Unauthenticated { reason: String, challenges: Vec<String> },
    /// Authenticated, but not allowed to act on this box or with this scope (403 POL0001).
    #[error("forbidden: {reason}")]
    Forbidden { reason: String },
    /// A bearer token without the scope an operation needs (403 POL0001 naming it, with
    /// `WWW-Authenticate: Bearer error="insufficient_scope"`, RFC 6750 3.1).
    #[error("forbidden: missing scope {scope}")]
    InsufficientScope { scope: &'static str },
    /// A body, JSON document or payload part is larger than the configured limit (413
    /// POL0001): `what` exceeds `limit` bytes, the value of the setting `key`.
    #[error("{what} exceeds {limit} bytes ({key})")]
    TooLarge { what: &'static str, key: &'static str, limit: u64 },
    /// A configured count limit refuses the request (403 POL0001): `what` says what was
    /// refused, `key` names the setting and `limit` is its value.
    #[error("{what}: at most {limit} ({key})")]
    LimitExceeded { what: String, key: &'static str, limit: u64 },
    /// Too many requests, or open long polls, for this principal just now (429 POL0001 with
    /// `Retry-After: retry_after_secs`): `limit` describes the setting `key`.
    #[error("{what}: {limit} ({key}); retry after {retry_after_secs} s")]
    TooManyRequests { what: &'static str, key: &'static str, limit: String, retry_after_secs: u64 },
    /// The request body came too slowly (408 POL0001, and the connection is closed): the
    /// server waited longer than `rule` allows, the rule of `settings`.
    #[error("request body too slow: {rule} ({settings})")]
    BodyTooSlow { rule: String, settings: &'static str },
    /// The request's media type is not accepted here (415 POL0011).
    #[error("unsupported media type {media_type}")]
    UnsupportedMediaType { media_type: String },
    /// The requested byte range cannot be served (416).
    #[error("range not satisfiable for size {size}")]
    RangeNotSatisfiable { size: u64 },
    /// The blob store has no room for a payload: its disk is full or a quota is exhausted
    /// (507 SVC0001); the detail is logged only.
    #[error("insufficient storage: {0}")]
    InsufficientStorage(String),
    /// A backend the server needs cannot be reached (the database is down, its pool has no
    /// connection to give): 503 SVC0001 with `Retry-After`; the detail is logged only.
    #[error("unavailable: {what}")]
    Unavailable { what: String },
    /// A failure of the server or a backend (500 SVC0001); the detail is logged only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias for the domain.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(part: impl Into<String>) -> Self {
        Error::InvalidInput { part: part.into() }
    }
    pub fn invalid_value(part: impl Into<String>, valid: impl Into<String>) -> Self {
        Error::InvalidValue { part: part.into(), valid: valid.into() }
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal(e.to_string())
    }
    /// The request body exceeds `limits.max_body_bytes`.
    pub fn body_too_large(limit: u64) -> Self {
        Error::TooLarge { what: "request body", key: "limits.max_body_bytes", limit }
    }
    /// A JSON document (body or `root-fields`) exceeds `limits.max_json_bytes`.
    pub fn json_too_large(limit: usize) -> Self {
        Error::TooLarge { what: "JSON document", key: "limits.max_json_bytes", limit: limit as u64 }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            // The database cannot be reached or stopped answering: the request may succeed
            // once it is back.
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Error::Unavailable { what: format!("database: {e}") },
            sqlx::Error::Database(d) if is_unavailable_code(d.code().as_deref()) => {
                Error::Unavailable { what: format!("database: {e}") }
            }
            // Text the database cannot hold (PostgreSQL refuses NUL): the input is at fault.
            sqlx::Error::Database(d) if d.code().as_deref() == Some("22021") => {
                Error::invalid("text holding a character the store cannot keep (NUL)")
            }
            _ => Error::Internal(format!("database: {e}")),
        }
    }
}

/// SQLSTATE classes of a database that is shutting down, starting, out of connections or
/// too slow (`08` connection exception, `57P0x` operator intervention, `53300` too many
/// connections, `57014` a statement cancelled by `statement_timeout`).
fn is_unavailable_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("08") || c.starts_with("57P0") || c == "53300" || c == "57014")
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Internal(format!("migration: {e}"))
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        Error::blob_store(&e)
    }
}

impl Error {
    /// A failure of the blob store: 507 when the cause, anywhere in its chain of sources,
    /// is a full disk or an exhausted quota (`ENOSPC`, `EDQUOT`), else internal.
    pub fn blob_store(e: &(dyn std::error::Error + 'static)) -> Self {
        if out_of_space(e) {
            Error::InsufficientStorage(format!("blob store: {e}"))
        } else {
            Error::Internal(format!("blob store: {e}"))
        }
    }
}

/// Whether an error was caused by a full disk or an exhausted quota. `io::Error` hides a
/// wrapped error from `source()` (it answers the wrapped error's own source), so the
/// wrapped error is looked into through `get_ref()`.
fn out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded) {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
                continue;
            }
        }
        next = e.source();
    }
    false
}

/// `.or_missing()` on lookups of the addressed resource keeps the domain short.
pub trait OrMissing<T> {
    fn or_missing(self) -> Result<T>;
}

impl<T> OrMissing<T> for Option<T> {
    fn or_missing(self) -> Result<T> {
        self.ok_or(Error::Missing)
    }
}
