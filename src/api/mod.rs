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
pub mod openapi;
pub mod pacing;
mod paths;
pub mod search;
mod subscriptions;
pub mod urls;
pub mod wire;
pub mod xml;

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::auth::{ACR_AUTH, AuthRequest, Authenticator, Operation, Principal, Target, authorize};
pub use crate::auth::{BOX_SCOPE, NC_SCOPE};
use crate::config::LimitSettings;
use crate::error::{Error, Result};
use crate::model::{BoxRow, NotificationFormat};
use crate::nms::{Actor, Nms};
pub use urls::BoxUrls;

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
    /// The API description, serialized once (`GET /openapi.json`).
    pub openapi: Bytes,
}

impl AppState {
    /// The API description of a server at `public_url`, serialized once.
    pub fn openapi_document(public_url: &str) -> Bytes {
        Bytes::from(serde_json::to_vec(&openapi::document(public_url)).unwrap_or_default())
    }
}

/// The route table: every operation of [`Operation::ALL`] on its path, a 405 with `Allow`
/// for other methods on a known path, and an OMA 404 for unknown paths. A resource the
/// domain finds missing is named by the request's path ([`error::name_the_missing`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, ..) in openapi::SERVICE_ROUTES {
        match *path {
            "/health" | "/healthz" => cfg.route(path, web::get().to(health::healthz)),
            "/readyz" => cfg.route(path, web::get().to(health::readyz)),
            "/metrics" => cfg.route(path, web::get().to(health::metrics)),
            "/openapi.json" => cfg.route(path, web::get().to(openapi_json)),
            "/docs" => cfg.route(path, web::get().to(|| async { see_other("/docs/") })),
            "/docs/" => cfg.service(
                utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                    .config(utoipa_swagger_ui::Config::new(["/openapi.json"])),
            ),
            _ => cfg,
        };
    }
    let mut seen: Vec<String> = Vec::new();
    for op in Operation::ALL {
        let pattern = op.pattern();
        if seen.contains(&pattern) {
            continue;
        }
        let mut resource =
            web::resource(pattern.as_str()).wrap(actix_web::middleware::from_fn(error::name_the_missing));
        for same in Operation::ALL.iter().filter(|o| o.pattern() == pattern) {
            resource = resource.route(route_for(*same));
        }
        let allow = Operation::allowed_methods(&pattern).join(", ");
        resource = resource.default_service(web::to(move || {
            let allow = allow.clone();
            async move { error::method_not_allowed(&allow) }
        }));
        cfg.service(resource);
        seen.push(pattern);
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
        Operation::ChannelList => r.to(channels::list),
        Operation::ChannelCreate => r.to(channels::create),
        Operation::ChannelGet => r.to(channels::get),
        Operation::ChannelDelete => r.to(channels::delete),
        Operation::ChannelLifetimeGet => r.to(channels::get_lifetime),
        Operation::ChannelLifetimePut => r.to(channels::put_lifetime),
        Operation::ChannelPoll => r.to(channels::poll),
    }
}

/// `GET /openapi.json`: the document built when the server started.
async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(state.openapi.clone())
}

/// 308 to `location`.
fn see_other(location: &'static str) -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((actix_web::http::header::LOCATION, location)).finish()
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

/// The application state and the operation a routed request belongs to.
fn routed(req: &HttpRequest) -> Result<(web::Data<AppState>, Operation)> {
    let state =
        req.app_data::<web::Data<AppState>>().ok_or_else(|| Error::internal("application state missing"))?.clone();
    let pattern = req.match_pattern().unwrap_or_default();
    let op = Operation::resolve(req.method().as_str(), &pattern)
        .ok_or_else(|| Error::internal(format!("no operation for {} {pattern}", req.method())))?;
    access::tag_operation(req, op);
    Ok((state, op))
}

/// Authenticate the request and count it against the principal's rate.
async fn caller(req: &HttpRequest, state: &AppState) -> Result<Principal> {
    let principal = state.auth.authenticate(&auth_request(req)).await?;
    access::tag_principal(req, &principal);
    state.throttle.admit(&principal)?;
    Ok(principal)
}

impl FromRequest for Access {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let (state, op) = routed(&req)?;
            let principal = caller(&req, &state).await?;
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
            authorize(&principal, op, Target::Box { store: &store, address: &address })?;
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
            Ok(Access { op, principal, b, urls })
        })
    }
}

/// An authenticated, authorised request on a user's notification channels.
pub struct ChannelAccess {
    pub op: Operation,
    /// `None` only for an operation whose credentials are optional, sent without them.
    principal: Option<Principal>,
    /// The user (`{userId}`, `acr:auth` resolved) the channels belong to.
    pub user: String,
}

impl ChannelAccess {
    /// The authenticated caller.
    pub fn principal(&self) -> Result<&Principal> {
        self.principal.as_ref().ok_or_else(|| Error::internal("channel operation without a principal"))
    }

    /// The authenticated caller, if credentials were sent.
    pub fn principal_if_any(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }
}

impl FromRequest for ChannelAccess {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let (state, op) = routed(&req)?;
            let user = param(&req, "userId")?;
            if op.credentials_optional() && !req.headers().contains_key(actix_web::http::header::AUTHORIZATION) {
                return Ok(ChannelAccess { op, principal: None, user });
            }
            let principal = caller(&req, &state).await?;
            let user = if user == ACR_AUTH {
                // The same address in several stores is one user.
                let mut own: Vec<&String> = principal.boxes.iter().map(|(_, a)| a).collect();
                own.sort();
                own.dedup();
                match own.as_slice() {
                    [a] => (*a).clone(),
                    _ => return Err(Error::invalid("userId acr:auth (no single box for this principal)")),
                }
            } else {
                user
            };
            authorize(&principal, op, Target::User(&user))?;
            tracing::debug!(op = op.name(), principal = %principal.name, user = %user, "access granted");
            Ok(ChannelAccess { op, principal: Some(principal), user })
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

/// Whether a body is declared as JSON (`application/json` or `+json`).
fn is_json(m: &mime::Mime) -> bool {
    m.type_() == mime::APPLICATION && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
}

/// The parsed `Content-Type` of the request.
pub fn media_type(req: &HttpRequest) -> Option<mime::Mime> {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<mime::Mime>().ok())
}

/// A request document: the structure under its root element, which refusals name.
pub trait OmaBody: DeserializeOwned {
    /// The root element (`folder`, `selectionCriteria`, ...).
    const ROOT: &'static str;
}

/// Read and decode a request document (at most `limits.max_json_bytes`). Its format is
/// decided here, from the request's `Content-Type`: JSON or XML (the OMA schema's); any
/// other type is refused (415).
pub async fn oma_body<T: OmaBody>(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<T> {
    let format = match media_type(req) {
        Some(m) if is_json(&m) => Format::Json,
        Some(m) if xml::is_xml(&m) => Format::Xml,
        _ => {
            let got = req
                .headers()
                .get(actix_web::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            return Err(Error::UnsupportedMediaType { media_type: got.to_string() });
        }
    };
    let body = read_limited(payload, state.limits.max_json_bytes).await?;
    parse_document(&body, format, T::ROOT)
}

/// The format of a request document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// Decode a document under its root element `root`, naming the root and the problem on
/// failure (400 SVC0002).
pub fn parse_document<T: DeserializeOwned>(body: &[u8], format: Format, root: &str) -> Result<T> {
    match format {
        Format::Json => parse_json(body, root),
        Format::Xml => xml::from_slice(body, root).map_err(|e| Error::invalid(format!("{root} ({e})"))),
    }
}

/// An authorised request (`A`: [`Access`], or [`ChannelAccess`]) and its document `T`. The
/// body is read only once the request is authorised.
pub struct Oma<T, A = Access> {
    pub access: A,
    pub body: T,
}

impl<T: OmaBody + 'static, A: FromRequest<Error = Error> + 'static> FromRequest for Oma<T, A> {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Payload::from_request(&req, payload).into_inner();
        Box::pin(async move {
            let access = A::from_request(&req, &mut Payload::None).await?;
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| Error::internal("application state missing"))?
                .clone();
            let payload = body.map_err(|_| Error::invalid("body"))?;
            let body = oma_body(&req, payload, &state).await?;
            Ok(Oma { access, body })
        })
    }
}

/// Parse JSON, naming the root element and the problem on failure (400 SVC0002).
pub fn parse_json<T: DeserializeOwned>(body: &[u8], root: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::invalid(format!("{root} ({e})")))
}

/// The document a webhook receives for one notification list, in the subscription's
/// `notificationFormat`: `{"nmsEventList": ..}`, or the same document in XML
/// (`<nms:nmsEventList>`, written by the one XML writer).
pub fn webhook_body(public_url: &str, l: &crate::nms::subscriptions::EventList) -> String {
    let list = subscriptions::render_list(public_url, l);
    match l.format {
        NotificationFormat::Json => serde_json::to_string(&list).unwrap_or_default(),
        NotificationFormat::Xml => serde_json::to_value(&list).ok().and_then(|v| xml::render(&v)).unwrap_or_default(),
    }
}

/// 200 with a JSON body.
pub fn ok_json(body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().json(body)
}

/// Whole seconds left until `expires_at_ms`, rounded up (a live resource never shows 0).
pub fn remaining_secs(expires_at_ms: i64) -> i64 {
    (expires_at_ms - crate::ids::now_ms()).max(0).saturating_add(999) / 1000
}
