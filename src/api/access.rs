//! The access log and the request metrics: one structured line per request, and its count
//! and latency under its operation and status class.
//!
//! Each request has an id: the client's `X-Request-Id` when it sends a plain one (letters,
//! digits, `-_.:`, at most 128), generated otherwise; it is returned in the response's
//! `X-Request-Id` and logged. The line names the operation (the operation table's name, or
//! `NotificationChannel`, `Service`, `ApiDescription`, `ApiDocs`, `Unmatched`), the method
//! and path (never the query, a header or the body, so no password, token or payload), the
//! status, the duration and the kind of principal (`service`, `subscriber`, or `anonymous`
//! when none was authenticated). The route's extractor tags the request with its operation and
//! principal ([`tag_operation`], [`tag_principal`]).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;

use crate::auth::{Operation, Principal};
use crate::metrics::RouteLabel;

/// The request id header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the routes learned of a request, for its log line and metrics.
#[derive(Clone, Copy, Debug, Default)]
struct Tag {
    route: Option<RouteLabel>,
    service: Option<bool>,
}

/// The tag, shared between the middleware and the request's extensions (the request
/// itself must not be cloned before it is routed).
type SharedTag = Rc<Cell<Tag>>;

fn tag(req: &actix_web::HttpRequest, f: impl FnOnce(&mut Tag)) {
    if let Some(shared) = req.extensions().get::<SharedTag>() {
        let mut t = shared.get();
        f(&mut t);
        shared.set(t);
    }
}

/// The request is operation `op` of the operation table.
pub fn tag_operation(req: &actix_web::HttpRequest, op: Operation) {
    tag(req, |t| t.route = Some(RouteLabel::of(op)));
}

/// The request was authenticated as `principal`.
pub fn tag_principal(req: &actix_web::HttpRequest, principal: &Principal) {
    tag(req, |t| t.service = Some(principal.is_service));
}

/// The client's request id when it is plain enough to log, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    let sent = headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|v| {
        !v.is_empty()
            && v.len() <= 128
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    });
    match sent {
        Some(id) => id.to_string(),
        None => uuid::Uuid::new_v4().simple().to_string(),
    }
}

/// The label of a request no operation claimed.
fn untagged(path: &str) -> RouteLabel {
    if path.starts_with("/notificationchannel/") {
        RouteLabel::CHANNEL
    } else if matches!(path, "/health" | "/healthz" | "/readyz" | "/metrics") {
        RouteLabel::SERVICE
    } else if path == "/openapi.json" {
        RouteLabel::API_DESCRIPTION
    } else if path == "/docs" || path.starts_with("/docs/") {
        RouteLabel::API_DOCS
    } else {
        RouteLabel::UNMATCHED
    }
}

/// Middleware: count, time and log every request, and return its id.
pub async fn observe<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let start = Instant::now();
    let id = request_id(req.headers());
    // Cheap copies (shared bytes), for the log line of a request that fails outright.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let shared = SharedTag::default();
    req.extensions_mut().insert(shared.clone());
    let res = next.call(req).await;
    let elapsed = start.elapsed();
    let status = match &res {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    let tag = shared.get();
    let route = tag.route.unwrap_or_else(|| untagged(uri.path()));
    crate::metrics::request(route, status.as_u16(), elapsed);
    let principal = match tag.service {
        Some(true) => "service",
        Some(false) => "subscriber",
        None => "anonymous",
    };
    tracing::info!(
        target: "cpm_nms::access",
        request_id = %id,
        method = %method,
        path = %uri.path(),
        operation = route.name(),
        status = status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        principal,
        "request"
    );
    let mut res = res?;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID, v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_request_id_is_kept_and_anything_else_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("lb-7f3a:2"));
        assert_eq!(request_id(&h), "lb-7f3a:2");
        for bad in ["", "has space", "quote\"d", &"x".repeat(129)] {
            h.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap_or(HeaderValue::from_static("a b")));
            let id = request_id(&h);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32, "a generated id: {id}");
        }
        assert_eq!(request_id(&HeaderMap::new()).len(), 32);
    }

    #[test]
    fn routes_outside_the_operation_table_have_fixed_labels() {
        assert_eq!(untagged("/notificationchannel/v1/u/channels").name(), "NotificationChannel");
        assert_eq!(untagged("/readyz").name(), "Service");
        assert_eq!(untagged("/openapi.json").name(), "ApiDescription");
        for docs in ["/docs", "/docs/", "/docs/swagger-ui.css"] {
            assert_eq!(untagged(docs).name(), "ApiDocs", "{docs}");
        }
        assert_eq!(untagged("/docsx").name(), "Unmatched");
        assert_eq!(untagged("/nms/v1/base/x/nothing").name(), "Unmatched");
        assert_eq!(RouteLabel::of(Operation::ObjectCreate).name(), "ObjectCreate");
    }
}
