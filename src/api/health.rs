//! The routes operators use: liveness (`/healthz`, and `/health` as before), readiness
//! (`/readyz`) and Prometheus metrics (`/metrics`).
//!
//! Liveness and readiness need no credentials: a load balancer or an orchestrator asks
//! them, and they tell nothing but "up" and which dependency failed. Metrics tell more
//! (traffic by operation, error rates, backlog): on the public listener they are for
//! service principals only; with `server.metrics_listen` they are served there without
//! credentials, for a scraper on a private network, and the public listener does not
//! serve them at all.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

use super::{AppState, auth_request};
use crate::error::{Error, Result};
use crate::nms::health::Unready;

/// How a listener serves these routes.
#[derive(Clone, Copy, Debug)]
pub struct Ops {
    /// The listener is `server.metrics_listen`: metrics without credentials.
    pub private: bool,
    /// A metrics listener exists (the public one then does not serve `/metrics`).
    pub metrics_elsewhere: bool,
    /// How long each readiness check may take.
    pub readiness_timeout: Duration,
}

/// The routes of the metrics listener.
pub fn configure_private(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz));
    cfg.route("/readyz", web::get().to(readyz));
    cfg.route("/metrics", web::get().to(metrics));
}

fn no_store(mut res: HttpResponse) -> HttpResponse {
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// 200 while the process serves requests (no database access).
pub(super) async fn healthz() -> HttpResponse {
    no_store(HttpResponse::Ok().json(json!({"status": "ok"})))
}

/// 200 when the database and the payload store answer in time; else 503 naming each
/// dependency that did not. 503 `stopping` once a shutdown has begun, so that load
/// balancers send nothing more while requests in flight finish.
pub(super) async fn readyz(state: web::Data<AppState>, ops: web::Data<Ops>) -> HttpResponse {
    if state.nms.is_stopping() {
        return no_store(HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE).json(json!({"status": "stopping"})));
    }
    let results = state.nms.readiness(ops.readiness_timeout).await;
    let mut checks = Map::new();
    let mut failed = Vec::new();
    for (dep, res) in results {
        let word = match res {
            Ok(()) => "ok",
            Err(Unready::TimedOut) => "timed out",
            Err(Unready::Failed) => "failed",
        };
        if res.is_err() {
            failed.push(dep.name());
        }
        checks.insert(dep.name().into(), Value::from(word));
    }
    let res = if failed.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready", "checks": checks}))
    } else {
        HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .json(json!({"status": "unavailable", "failed": failed, "checks": checks}))
    };
    no_store(res)
}

/// The Prometheus text exposition of the process's metrics.
pub(super) async fn metrics(req: HttpRequest, state: web::Data<AppState>, ops: web::Data<Ops>) -> Result<HttpResponse> {
    if !ops.private {
        if ops.metrics_elsewhere {
            return Err(Error::not_found(req.path().to_string()));
        }
        let principal = state.auth.authenticate(&auth_request(&req)).await?;
        super::access::tag_principal(&req, &principal);
        if !principal.is_service {
            return Err(Error::Forbidden { reason: "metrics are for service principals".into() });
        }
    }
    state.nms.sample_gauges().await;
    let text = crate::metrics::render().ok_or_else(|| Error::internal("no metrics recorder"))?;
    Ok(no_store(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text)))
}
