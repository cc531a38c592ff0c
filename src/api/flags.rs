//! Flags of objects and folders: `/{objects|folders}/{id}/flags` and `.../flags/{flag}`.
//! Flag names compare case-insensitively; a percent-encoded name (`%5CSeen`) is decoded.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::urls::encode_segment;
use super::wire::{EmptyEnvelope, FlagListEnvelope, FlagListOut, FlagListW};
use super::{Access, AppState, Oma, param, read_limited};
use crate::auth::Operation;
use crate::error::Result;
use crate::model::{FlagChange, FlagTarget};

/// The addressed item's id and the URL of its flag list.
fn target(req: &HttpRequest, access: &Access) -> Result<(bool, String, String)> {
    let is_folder = matches!(
        access.op,
        Operation::FolderFlagsGet
            | Operation::FolderFlagsPut
            | Operation::FolderFlagGet
            | Operation::FolderFlagPut
            | Operation::FolderFlagDelete
    );
    if is_folder {
        let id = param(req, "folderId")?;
        let url = access.urls.folder_flags(&id);
        Ok((true, id, url))
    } else {
        let id = param(req, "objectId")?;
        let url = access.urls.object_flags(&id);
        Ok((false, id, url))
    }
}

fn flag_target(is_folder: bool, id: &str) -> FlagTarget<'_> {
    if is_folder { FlagTarget::Folder(id) } else { FlagTarget::Object(id) }
}

fn flag_list(flags: Vec<String>, url: String) -> HttpResponse {
    HttpResponse::Ok().json(FlagListOut { flag_list: FlagListW { flag: flags, resource_url: Some(url) } })
}

/// The `Empty` dummy body of expected 404s and of a 201 flag creation.
fn empty() -> EmptyEnvelope {
    EmptyEnvelope { empty: None }
}

/// `GET .../flags`.
pub async fn get_list(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let (is_folder, id, url) = target(&req, &access)?;
    let flags = state.nms.flags(&access.b, flag_target(is_folder, &id)).await?;
    Ok(flag_list(flags, url))
}

/// `PUT .../flags`: replace the whole list; answers the list as it now stands.
pub async fn put_list(
    req: HttpRequest,
    oma: Oma<FlagListEnvelope>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let (access, env) = (oma.access, oma.body);
    let (is_folder, id, url) = target(&req, &access)?;
    let flags = state.nms.set_flags(&access.b, flag_target(is_folder, &id), &env.flag_list.flag).await?;
    Ok(flag_list(flags, url))
}

/// `GET .../flags/{flag}`: 204 if present, 404 with an `empty` body if absent.
pub async fn get_one(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let (is_folder, id, _) = target(&req, &access)?;
    let flag = param(&req, "flagName")?;
    if state.nms.has_flag(&access.b, flag_target(is_folder, &id), &flag).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Ok(HttpResponse::NotFound().json(empty()))
    }
}

/// `PUT .../flags/{flag}`: 201 + `Location` if added, 204 if it was already set.
pub async fn put_one(
    req: HttpRequest,
    access: Access,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let (is_folder, id, url) = target(&req, &access)?;
    let flag = param(&req, "flagName")?;
    // The body is a dummy (`Empty`); read and discard it within the JSON limit.
    read_limited(payload, state.limits.max_json_bytes).await?;
    match state.nms.change_flag(&access.b, flag_target(is_folder, &id), &flag, true).await? {
        FlagChange::Changed => Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, format!("{url}/{}", encode_segment(&flag))))
            .json(empty())),
        FlagChange::Unchanged => Ok(HttpResponse::NoContent().finish()),
    }
}

/// `DELETE .../flags/{flag}`: 204 if removed, 404 with an `empty` body if it was absent.
pub async fn delete_one(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let (is_folder, id, _) = target(&req, &access)?;
    let flag = param(&req, "flagName")?;
    match state.nms.change_flag(&access.b, flag_target(is_folder, &id), &flag, false).await? {
        FlagChange::Changed => Ok(HttpResponse::NoContent().finish()),
        FlagChange::Unchanged => Ok(HttpResponse::NotFound().json(empty())),
    }
}
