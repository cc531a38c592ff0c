//! `objects/operations/pathToId` and `folders/operations/pathToId`: GET `?path=` answers a
//! `reference`; POST `pathList` answers a `bulkResponseList` in request order.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::bulk::response_list;
use super::objects::object_path;
use super::wire::{BulkResponseListOut, PathListEnvelope, ReferenceOut, ReferenceW};
use super::{Access, AppState, Oma};
use crate::auth::Operation;
use crate::error::{Error, Result};

fn query_path(req: &HttpRequest) -> Option<String> {
    url::form_urlencoded::parse(req.query_string().as_bytes()).find(|(k, _)| k == "path").map(|(_, v)| v.into_owned())
}

async fn object_ref(access: &Access, state: &AppState, path: &str) -> Result<ReferenceW> {
    let o = state.nms.object_by_path(&access.b, path).await?;
    Ok(ReferenceW { resource_url: access.urls.object(&o.public_id), path: Some(object_path(&o)) })
}

async fn folder_ref(access: &Access, state: &AppState, path: Option<&str>) -> Result<ReferenceW> {
    let f = state.nms.folder_by_path(&access.b, path).await?;
    Ok(ReferenceW { resource_url: access.urls.folder(&f.public_id), path: Some(f.path) })
}

/// pathToId answers 200 whatever the items' outcomes.
fn bulk(results: Vec<Result<ReferenceW>>) -> HttpResponse {
    let (list, _) =
        response_list(results.into_iter().map(|r| r.map(|reference| (StatusCode::OK, reference))).collect());
    HttpResponse::Ok().json(BulkResponseListOut { bulk_response_list: list })
}

pub async fn object_get(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let path = query_path(&req).ok_or_else(|| Error::invalid("path"))?;
    let r = object_ref(&access, &state, &path).await?;
    Ok(HttpResponse::Ok().json(ReferenceOut { reference: r }))
}

/// Without `path`, the box's root folder (how clients discover it).
pub async fn folder_get(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let path = query_path(&req);
    let r = folder_ref(&access, &state, path.as_deref()).await?;
    Ok(HttpResponse::Ok().json(ReferenceOut { reference: r }))
}

/// POST `pathList` (objects or folders): one lookup per path, answered in request order.
pub async fn post(oma: Oma<PathListEnvelope>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let (access, env) = (oma.access, oma.body);
    let objects = access.op == Operation::ObjectPathToIdPost;
    let mut results = Vec::with_capacity(env.path_list.path.len());
    for p in &env.path_list.path {
        results.push(if objects {
            object_ref(&access, &state, p).await
        } else {
            folder_ref(&access, &state, Some(p)).await
        });
    }
    Ok(bulk(results))
}
