//! Rendering of domain errors as OMA `requestError` bodies, in one place.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use super::wire::{ExceptionW, RequestErrorW};
use crate::error::Error;

/// Status, exception kind and exception of an error.
pub fn describe(e: &Error) -> (StatusCode, RequestErrorW) {
    let svc = |id, text, vars: Vec<String>| RequestErrorW {
        service_exception: Some(ExceptionW { message_id: id, text, variables: vars }),
        policy_exception: None,
    };
    let pol = |id, text, vars: Vec<String>| RequestErrorW {
        service_exception: None,
        policy_exception: Some(ExceptionW { message_id: id, text, variables: vars }),
    };
    let policy = |what: String| pol("POL0001", "A policy error occurred. Error code is %1", vec![what]);
    const SVC0002: &str = "Invalid input value for message part %1";
    match e {
        Error::InvalidInput { part } => (StatusCode::BAD_REQUEST, svc("SVC0002", SVC0002, vec![part.clone()])),
        Error::InvalidValue { part, valid } => (
            StatusCode::BAD_REQUEST,
            svc(
                "SVC0003",
                "Invalid input value for message part %1, valid values are %2",
                vec![part.clone(), valid.clone()],
            ),
        ),
        Error::NotFound { what } => (
            StatusCode::NOT_FOUND,
            svc("SVC0004", "No valid addresses provided in message part %1", vec![what.clone()]),
        ),
        Error::Missing => (
            StatusCode::NOT_FOUND,
            svc("SVC0004", "No valid addresses provided in message part %1", vec!["the addressed resource".into()]),
        ),
        Error::UnknownPath { path } => (
            StatusCode::NOT_FOUND,
            svc("SVC0004", "No valid addresses provided in message part %1", vec![path.clone()]),
        ),
        Error::DuplicateName { name } => (StatusCode::CONFLICT, svc("SVC0002", SVC0002, vec![format!("name {name}")])),
        Error::RenameForbidden => {
            (StatusCode::FORBIDDEN, pol("POL1030", "Renaming this folder is not allowed", vec![]))
        }
        Error::ParentForbidden { target } => (
            StatusCode::FORBIDDEN,
            pol("POL1031", "Attempt to create objects or folders under %1 is prohibited", vec![target.clone()]),
        ),
        Error::ChannelTypeUnsupported { channel_type } => (
            StatusCode::FORBIDDEN,
            pol(
                "POL1023",
                "Notification channel type %1 not supported. Supported types: %2.",
                vec![channel_type.clone(), "LongPolling".into()],
            ),
        ),
        Error::SimultaneousPoll => {
            (StatusCode::CONFLICT, svc("SVC1012", "Simultaneous channel requests not supported", vec![]))
        }
        // Policy errors: POL0001 with what was refused as its variable.
        Error::Unauthenticated { reason, .. } => (StatusCode::UNAUTHORIZED, policy(reason.clone())),
        Error::Forbidden { reason } => (StatusCode::FORBIDDEN, policy(reason.clone())),
        Error::InsufficientScope { scope } => (StatusCode::FORBIDDEN, policy(format!("missing scope {scope}"))),
        Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, policy(e.to_string())),
        Error::LimitExceeded { .. } => (StatusCode::FORBIDDEN, policy(e.to_string())),
        Error::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, policy(e.to_string())),
        Error::BodyTooSlow { .. } => (StatusCode::REQUEST_TIMEOUT, policy(e.to_string())),
        Error::UnsupportedMediaType { media_type } => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, pol("POL0011", "Media type not supported", vec![media_type.clone()]))
        }
        Error::RangeNotSatisfiable { .. } => {
            (StatusCode::RANGE_NOT_SATISFIABLE, svc("SVC0002", SVC0002, vec!["Range".into()]))
        }
        Error::InsufficientStorage(_) => (
            StatusCode::INSUFFICIENT_STORAGE,
            svc("SVC0001", "A service error occurred. Error code is %1", vec!["insufficient storage".into()]),
        ),
        Error::Unavailable { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            svc("SVC0001", "A service error occurred. Error code is %1", vec!["service unavailable".into()]),
        ),
        Error::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            svc("SVC0001", "A service error occurred. Error code is %1", vec!["internal error".into()]),
        ),
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        describe(self).0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, body) = describe(self);
        match self {
            Error::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            Error::InsufficientStorage(detail) => tracing::error!(error = %detail, "insufficient storage"),
            Error::Unavailable { what } => tracing::error!(error = %what, "backend unavailable"),
            _ => {}
        }
        let mut res = HttpResponse::build(status);
        if let Error::Unavailable { .. } = self {
            res.append_header((header::RETRY_AFTER, "5"));
        }
        if let Error::Unauthenticated { challenges, .. } = self {
            for c in challenges {
                res.append_header((header::WWW_AUTHENTICATE, c.as_str()));
            }
        }
        if let Error::InsufficientScope { scope } = self {
            res.insert_header((
                header::WWW_AUTHENTICATE,
                format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
            ));
        }
        if let Error::RangeNotSatisfiable { size } = self {
            res.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
        }
        if let Error::TooManyRequests { retry_after_secs, key, .. } = self {
            crate::metrics::rate_limited(key);
            res.insert_header((header::RETRY_AFTER, (*retry_after_secs).max(1).to_string()));
        }
        // The rest of a body too slow to wait for is not read: the connection cannot carry
        // another request.
        if let Error::BodyTooSlow { .. } = self {
            res.force_close();
        }
        res.json(json!({ "requestError": body }))
    }
}

/// A middleware naming a missing resource by the request's URI (the domain only knows that
/// what the request addresses is missing): `404 SVC0004` with the path as its variable.
pub async fn name_the_missing(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let missing =
        res.response().error().and_then(|e| e.as_error::<Error>()).is_some_and(|e| matches!(e, Error::Missing));
    if !missing {
        return Ok(res);
    }
    let path = res.request().path().to_string();
    let (req, _) = res.into_parts();
    Ok(ServiceResponse::new(req, Error::not_found(path).error_response()))
}

/// 405 with `Allow` listing the methods of the resource.
pub fn method_not_allowed(allow: &str) -> HttpResponse {
    let body = RequestErrorW {
        service_exception: Some(ExceptionW {
            message_id: "SVC0001",
            text: "A service error occurred. Error code is %1",
            variables: vec!["method not allowed".into()],
        }),
        policy_exception: None,
    };
    let mut res = HttpResponse::MethodNotAllowed().json(json!({ "requestError": body }));
    if let Ok(v) = HeaderValue::from_str(allow) {
        res.headers_mut().insert(header::ALLOW, v);
    }
    res
}
