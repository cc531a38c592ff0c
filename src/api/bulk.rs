//! Bulk requests answered with a `bulkResponseList` (one `response` per item, in request
//! order): bulkCreation, bulkUpdate, bulkDelete, and copy/move to a folder.
//!
//! The HTTP status is 200 unless every item failed; then it is the first failure's status,
//! still with the whole list as the body (clients read the per-item outcomes either way).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::error::describe;
use super::objects::{object_input, object_path};
use super::search::selection_input;
use super::wire::{
    BulkDeleteEnvelope, BulkResponseListOut, BulkResponseListW, BulkUpdateEnvelope, ObjectIn, ObjectListEnvelope,
    ObjectReferenceListW, ReferenceW, ResponseW, SelectionCriteriaW, TargetSourceRefEnvelope,
};
use super::{Access, AppState, BoxUrls, Oma, media_type, multipart, oma_body};
use crate::auth::Operation;
use crate::error::{Error, Result};
use crate::model::{BulkItem, Relocated, Sources};
use crate::nms::bulk::{BulkTargets, FlagOperation};

/// One answered item: its success code and reference, or why it failed.
pub type Item = Result<(StatusCode, ReferenceW)>;

/// The `bulkResponseList` of `items`.
pub fn response_list(items: Vec<Item>) -> (BulkResponseListW, bool) {
    let all_failed = !items.is_empty() && items.iter().all(Result::is_err);
    let response = items
        .into_iter()
        .map(|r| match r {
            Ok((code, reference)) => ResponseW {
                code: code.as_u16(),
                reason: code.canonical_reason().unwrap_or_default().to_string(),
                success: Some(reference),
                failure: None,
            },
            Err(e) => {
                let (status, failure) = describe(&e);
                ResponseW {
                    code: status.as_u16(),
                    reason: status.canonical_reason().unwrap_or_default().to_string(),
                    success: None,
                    failure: Some(failure),
                }
            }
        })
        .collect();
    (BulkResponseListW { response }, all_failed)
}

/// 200 with the list, or, when every item failed, the first failure's status.
fn answer(items: Vec<Item>) -> HttpResponse {
    let (list, all_failed) = response_list(items);
    let status = if all_failed {
        list.response.first().and_then(|r| StatusCode::from_u16(r.code).ok()).unwrap_or(StatusCode::BAD_REQUEST)
    } else {
        StatusCode::OK
    };
    HttpResponse::build(status).json(BulkResponseListOut { bulk_response_list: list })
}

/// The objects named by `objects` or selected by `selectionCriteria` (exactly one of them).
/// Named URLs that do not name an object of this box are answered as 400 items.
fn targets(
    urls: &BoxUrls,
    objects: Option<ObjectReferenceListW>,
    selection: Option<SelectionCriteriaW>,
) -> Result<(BulkTargets, Vec<Result<String>>)> {
    match (objects, selection) {
        (Some(list), None) => {
            if list.object_reference.is_empty() {
                return Err(Error::invalid("objects objectReference (at least one)"));
            }
            let named: Vec<Result<String>> = list
                .object_reference
                .into_iter()
                .map(|r| {
                    urls.object_id_from_url(&r.resource_url, &r.resource_url)
                        .map_err(|_| Error::invalid(r.resource_url))
                })
                .collect();
            let ids = named.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
            Ok((BulkTargets::Objects(ids), named))
        }
        (None, Some(s)) => Ok((BulkTargets::Selection(selection_input(urls, s)?), Vec::new())),
        (Some(_), Some(_)) => Err(Error::invalid("objects (give objects or selectionCriteria, not both)")),
        (None, None) => Err(Error::invalid("objects (give objects or selectionCriteria)")),
    }
}

/// Answer the store's per-object outcomes in request order, with the refused URLs in place.
fn merge(urls: &BoxUrls, named: Vec<Result<String>>, done: Vec<BulkItem>) -> Vec<Item> {
    let answer = |item: BulkItem| -> Item {
        let url = urls.object(&item.public_id);
        if let Some(reason) = item.refusal {
            return Err(Error::Forbidden { reason });
        }
        match item.outcome {
            Some(_) => Ok((StatusCode::OK, ReferenceW { resource_url: url, path: None })),
            None => Err(Error::not_found(url)),
        }
    };
    if named.is_empty() {
        return done.into_iter().map(answer).collect();
    }
    let mut done = done.into_iter();
    named
        .into_iter()
        .map(|n| match n {
            Err(e) => Err(e),
            Ok(_) => done.next().map(answer).unwrap_or_else(|| Err(Error::internal("bulk outcome missing"))),
        })
        .collect()
}

/// `objects/operations/bulkUpdate` (POST, or DELETE with a body).
pub async fn update(oma: Oma<BulkUpdateEnvelope>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let (access, u) = (oma.access, oma.body.bulk_update);
    let op = match u.operation.as_deref().map(str::trim) {
        Some(o) if o.eq_ignore_ascii_case("AddFlag") => FlagOperation::AddFlag,
        Some(o) if o.eq_ignore_ascii_case("RemoveFlag") => FlagOperation::RemoveFlag,
        _ => return Err(Error::invalid_value("operation", "AddFlag, RemoveFlag")),
    };
    let flags = u.flags.map(|f| f.flag).unwrap_or_default();
    let (t, named) = targets(&access.urls, u.objects, u.selection_criteria)?;
    let done = state.nms.bulk_update(&access.b, &t, op, &flags).await?;
    Ok(answer(merge(&access.urls, named, done)))
}

/// `objects/operations/bulkDelete` (DELETE with a body, or POST).
pub async fn delete(oma: Oma<BulkDeleteEnvelope>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let (access, d) = (oma.access, oma.body.bulk_delete);
    let (t, named) = targets(&access.urls, d.objects, d.selection_criteria)?;
    let done = state.nms.bulk_delete(&access.b, &t).await?;
    Ok(answer(merge(&access.urls, named, done)))
}

/// `objects/operations/bulkCreation`: `multipart/form-data` (objects with payloads), or a
/// JSON `objectList` (objects without payload).
pub async fn create(
    req: HttpRequest,
    access: Access,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let items = match media_type(&req) {
        Some(m) if multipart::is_deposit(&m) => multipart::read_bulk_deposit(&req, payload, &state).await?,
        _ => {
            let env: ObjectListEnvelope = oma_body(&req, payload, &state).await?;
            env.object_list.object.into_iter().map(|o| (o, state.nms.begin_deposit())).collect()
        }
    };
    let items = items
        .into_iter()
        .map(|(raw, deposit)| {
            let input = serde_json::from_value::<ObjectIn>(raw)
                .map_err(|e| Error::invalid(format!("object ({e})")))
                .and_then(|o| object_input(&access.urls, o));
            (input, deposit)
        })
        .collect();
    let results = state.nms.create_objects(&access.b, access.actor(), items).await?;
    let items = results
        .into_iter()
        .map(|r| {
            r.map(|o| {
                let reference =
                    ReferenceW { resource_url: access.urls.object(&o.public_id), path: Some(object_path(&o)) };
                (StatusCode::CREATED, reference)
            })
        })
        .collect();
    Ok(answer(items))
}

/// `folders/operations/copyToFolder` and `moveToFolder`: the directly named sources are
/// answered, folders first, then objects, each in request order.
pub async fn relocate(oma: Oma<TargetSourceRefEnvelope>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let (access, t) = (oma.access, oma.body.target_source_ref);
    let urls = &access.urls;
    let target = urls.folder_id_from_url(&t.target_ref.resource_url, "targetRef")?;
    // (URL, kind, id or refusal) of every named source, in answer order.
    let named: Vec<(String, bool, Result<String>)> = t
        .source_refs
        .folders
        .folder_reference
        .into_iter()
        .map(|r| {
            let id = urls.folder_id_from_url(&r.resource_url, &r.resource_url);
            (r.resource_url, true, id)
        })
        .chain(t.source_refs.objects.object_reference.into_iter().map(|r| {
            let id = urls.object_id_from_url(&r.resource_url, &r.resource_url);
            (r.resource_url, false, id)
        }))
        .collect();
    let mut sources = Sources::default();
    for (_, is_folder, id) in &named {
        if let Ok(id) = id {
            if *is_folder { sources.folders.push(id.clone()) } else { sources.objects.push(id.clone()) }
        }
    }
    let nms = &state.nms;
    let done = if access.op == Operation::FolderCopy {
        nms.copy_to_folder(&access.b, access.actor(), &target, &sources).await?
    } else {
        nms.move_to_folder(&access.b, access.actor(), &target, &sources).await?
    };
    let mut done = done.into_iter();
    let items = named
        .into_iter()
        .map(|(url, is_folder, id)| -> Item {
            id.map_err(|_| Error::invalid(url.clone()))?;
            match done.next() {
                Some(Relocated::Done { public_id, path }) => {
                    let resource_url = if is_folder { urls.folder(&public_id) } else { urls.object(&public_id) };
                    Ok((StatusCode::OK, ReferenceW { resource_url, path: Some(path) }))
                }
                Some(Relocated::NoSource) => Err(Error::invalid(url)),
                Some(Relocated::Cycle) => Err(Error::invalid(format!("{url} (a folder cannot go into itself)"))),
                Some(Relocated::NameTaken { name }) => Err(Error::DuplicateName { name }),
                Some(Relocated::Refused { reason }) => Err(Error::Forbidden { reason }),
                None => Err(Error::internal("relocation outcome missing")),
            }
        })
        .collect();
    Ok(answer(items))
}
