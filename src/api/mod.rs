//! The HTTP layer: one route table generated from the operation table, the `Access`
//! extractor (authentication + authorisation + box lookup), body helpers, and the
//! conversions between wire structures and domain types.

pub mod access;
mod bulk;
mod channels;
pub mod error;
mod flags;
mod folders;
pub mod health;
mod multipart;
mod objects;
pub mod pacing;
mod paths;
pub mod search;
mod subscriptions;
pub mod urls;
pub mod webhooks;
pub mod wire;

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::auth::{ACR_AUTH, AuthRequest, Authenticator, Operation, Principal, authorize};
use crate::config::LimitSettings;
use crate::error::{Error, Result};
use crate::model::BoxRow;
use crate::nms::{Actor, Nms};
pub use urls::BoxUrls;

/// Path prefix of every box resource.
pub const BOX_SCOPE: &str = "/nms/v1/{store}/{box}";

/// Shared state of the HTTP layer.
pub struct AppState {
    pub nms: Nms,
    pub auth: std::sync::Arc<Authenticator>,
    /// Absolute public base URL, without a trailing slash.
    pub public_url: String,
    pub limits: LimitSettings,
    /// Per-principal request rate and open long polls.
    pub throttle: crate::limits::Throttle,
    /// The pace request bodies must keep (`None`: any).
    pub pace: Option<pacing::BodyPace>,
}

/// The route table: every operation of [`Operation::ALL`] on its path, a 405 with `Allow`
/// for other methods on a known path, and an OMA 404 for unknown paths.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    // The Notification Channel API (outside the box tree; its handlers authenticate).
    let nc = channels::NC_SCOPE;
    let not_allowed = |allow: &'static str| move || async move { error::method_not_allowed(allow) };
    cfg.service(
        web::resource(format!("{nc}/channels"))
            .route(web::get().to(channels::list))
            .route(web::post().to(channels::create))
            .default_service(web::to(not_allowed("GET, POST"))),
    );
    cfg.service(
        web::resource(format!("{nc}/channels/{{channelId}}"))
            .route(web::get().to(channels::get))
            .route(web::delete().to(channels::delete))
            .default_service(web::to(not_allowed("GET, DELETE"))),
    );
    cfg.service(
        web::resource(format!("{nc}/channels/{{channelId}}/channelLifetime"))
            .route(web::get().to(channels::get_lifetime))
            .route(web::put().to(channels::put_lifetime))
            .default_service(web::to(not_allowed("GET, PUT"))),
    );
    cfg.service(
        web::resource(format!("{nc}/channels/{{channelId}}/poll"))
            .route(web::post().to(channels::poll))
            .default_service(web::to(not_allowed("POST"))),
    );
    let mut seen: Vec<&'static str> = Vec::new();
    for op in Operation::ALL {
        if seen.contains(&op.path()) {
            continue;
        }
        seen.push(op.path());
        let mut resource = web::resource(format!("{BOX_SCOPE}{}", op.path()));
        for same in Operation::ALL.iter().filter(|o| o.path() == op.path()) {
            resource = resource.route(route_for(*same));
        }
        let allow = Operation::allowed_methods(op.path()).join(", ");
        resource = resource.default_service(web::to(move || {
            let allow = allow.clone();
            async move { error::method_not_allowed(&allow) }
        }));
        cfg.service(resource);
    }
}

/// The handler of each operation.
fn route_for(op: Operation) -> actix_web::Route {
    let m = Method::from_bytes(op.method().as_bytes()).unwrap_or(Method::GET);
    let r = web::method(m);
    match op {
        Operation::ObjectPathToIdGet => r.to(paths::object_get),
        Operation::ObjectPathToIdPost | Operation::FolderPathToIdPost => r.to(paths::post),
        Operation::ObjectSearch => r.to(search::objects),
        Operation::FolderSearch => r.to(search::folders),
        Operation::ObjectBulkCreation => r.to(bulk::create),
        Operation::ObjectBulkUpdate | Operation::ObjectBulkUpdateDelete => r.to(bulk::update),
        Operation::ObjectBulkDelete | Operation::ObjectBulkDeletePost => r.to(bulk::delete),
        Operation::FolderCopy | Operation::FolderMove => r.to(bulk::relocate),
        Operation::ObjectCreate => r.to(objects::create),
        Operation::ObjectGet => r.to(objects::get),
        Operation::ObjectDelete => r.to(objects::delete),
        Operation::ObjectFlagsGet | Operation::FolderFlagsGet => r.to(flags::get_list),
        Operation::ObjectFlagsPut | Operation::FolderFlagsPut => r.to(flags::put_list),
        Operation::ObjectFlagGet | Operation::FolderFlagGet => r.to(flags::get_one),
        Operation::ObjectFlagPut | Operation::FolderFlagPut => r.to(flags::put_one),
        Operation::ObjectFlagDelete | Operation::FolderFlagDelete => r.to(flags::delete_one),
        Operation::ObjectPayloadGet => r.to(objects::payload),
        Operation::ObjectPayloadPartGet => r.to(objects::payload_part),
        Operation::FolderPathToIdGet => r.to(paths::folder_get),
        Operation::FolderCreate => r.to(folders::create),
        Operation::FolderGet => r.to(folders::get),
        Operation::FolderDelete => r.to(folders::delete),
        Operation::FolderNameGet => r.to(folders::get_name),
        Operation::FolderNamePut => r.to(folders::put_name),
        Operation::SubscriptionList => r.to(subscriptions::list),
        Operation::SubscriptionCreate => r.to(subscriptions::create),
        Operation::SubscriptionGet => r.to(subscriptions::get),
        Operation::SubscriptionUpdate => r.to(subscriptions::update),
        Operation::SubscriptionDelete => r.to(subscriptions::delete),
        Operation::BoxReset => r.to(subscriptions::reset_box),
    }
}

/// The answer for paths that name no resource.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse> {
    Err(Error::not_found(req.path().to_string()))
}

/// An authenticated, authorised request on one box.
pub struct Access {
    pub op: Operation,
    pub principal: Principal,
    pub b: BoxRow,
    pub urls: BoxUrls,
    /// The request path, used as the variable of not-found errors.
    pub uri: String,
}

impl Access {
    /// The caller as the domain's policies see it.
    pub fn actor(&self) -> Actor {
        if self.principal.is_service { Actor::Service } else { Actor::Subscriber }
    }
}

/// What the authenticator needs of a request: its `Authorization` header, method, target
/// and the client's address. The address is the TCP peer's: no forwarding header is
/// trusted, so behind a reverse proxy every client has the proxy's address.
pub fn auth_request(req: &HttpRequest) -> AuthRequest<'_> {
    AuthRequest {
        authorization: req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()),
        method: req.method().as_str(),
        uri: req.uri().path_and_query().map_or("/", |pq| pq.as_str()),
        peer: req.peer_addr().map(|a| a.ip()),
    }
}

/// A percent-decoded path parameter.
pub fn param(req: &HttpRequest, name: &str) -> Result<String> {
    let raw = req.match_info().get(name).ok_or_else(|| Error::invalid(name.to_string()))?;
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Error::invalid(name.to_string()))
}

impl FromRequest for Access {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| Error::internal("application state missing"))?
                .clone();
            let pattern = req.match_pattern().unwrap_or_default();
            let rel = pattern.strip_prefix(BOX_SCOPE).unwrap_or_default();
            let op = Operation::resolve(req.method().as_str(), rel)
                .ok_or_else(|| Error::internal(format!("no operation for {} {pattern}", req.method())))?;
            access::tag_operation(&req, op);
            let principal = state.auth.authenticate(&auth_request(&req)).await?;
            access::tag_principal(&req, &principal);
            state.throttle.admit(&principal)?;
            let store = param(&req, "store")?;
            let uri = req.path().to_string();
            // No stored name or id holds NUL (no engine keeps it in text alike): a path
            // naming one names nothing.
            if req.match_info().iter().any(|(_, v)| v.contains('\0')) {
                return Err(Error::not_found(uri));
            }
            if !state.nms.is_store(&store) {
                return Err(Error::not_found(uri));
            }
            let mut address = param(&req, "box")?;
            if address == ACR_AUTH {
                address = principal
                    .own_box(&store)
                    .ok_or_else(|| Error::invalid("boxId acr:auth (no single box for this principal)"))?
                    .to_string();
            }
            authorize(&principal, op, &store, &address)?;
            let b = match state.nms.find_box(&store, &address).await? {
                Some(b) => b,
                // A bearer subscriber's own box is created on its first access.
                None if principal.provision_boxes && principal.owns(&store, &address) => {
                    tracing::info!(principal = %principal.name, box_id = %address, store = %store, "provisioning box");
                    state.nms.provision_box(&store, &address).await?
                }
                None => return Err(Error::not_found(uri)),
            };
            tracing::debug!(op = op.name(), principal = %principal.name, box_id = %address, "access granted");
            let urls = BoxUrls::new(&state.public_url, &store, &address);
            Ok(Access { op, principal, b, urls, uri })
        })
    }
}

/// Read a whole (small, JSON) body, refusing more than `limit` bytes
/// (`limits.max_json_bytes`) with 413.
pub async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| Error::invalid("body"))?;
        if buf.len() + chunk.len() > limit {
            return Err(Error::json_too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Whether the request declares a JSON body (`application/json` or `+json`).
fn is_json(req: &HttpRequest) -> bool {
    media_type(req).is_some_and(|m| {
        m.type_() == mime::APPLICATION && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
    })
}

/// The parsed `Content-Type` of the request.
pub fn media_type(req: &HttpRequest) -> Option<mime::Mime> {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<mime::Mime>().ok())
}

/// Parse a JSON body wrapped in its root element (`root` names it in errors).
pub async fn json_body<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    root: &str,
) -> Result<T> {
    if !is_json(req) {
        let got =
            req.headers().get(actix_web::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none");
        return Err(Error::UnsupportedMediaType { media_type: got.to_string() });
    }
    let body = read_limited(payload, limit).await?;
    parse_json(&body, root)
}

/// Parse JSON, naming the root element and the problem on failure (400 SVC0002).
pub fn parse_json<T: DeserializeOwned>(body: &[u8], root: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::invalid(format!("{root} ({e})")))
}

/// 200 with a JSON body.
pub fn ok_json(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok().json(body)
}

/// Whole seconds left until `expires_at_ms`, rounded up (a live resource never shows 0).
pub fn remaining_secs(expires_at_ms: i64) -> i64 {
    (expires_at_ms - crate::ids::now_ms()).max(0).saturating_add(999) / 1000
}
