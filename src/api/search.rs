//! `objects/operations/search` and `folders/operations/search`: selection criteria in,
//! `objectList` / `objectReferenceList` / `folderList` out.

use actix_web::{HttpResponse, web};

use super::folders::{list_children, render_folder};
use super::objects::render_listed_object;
use super::wire::{
    CriterionW, FolderListOut, FolderListW, ObjectListOut, ObjectListW, ObjectReferenceListOut, ObjectReferenceListW,
    ReferenceW, SearchCriteriaW, SelectionCriteriaW, SelectionEnvelope,
};
use super::{AppState, BoxUrls, Oma};
use crate::error::{Error, Result};
use crate::nms::ListFilter;
use crate::nms::search::{CriteriaInput, CriterionInput, ObjectResult, SelectionInput, SortInput};

pub fn criteria_input(c: SearchCriteriaW) -> Result<CriteriaInput> {
    let items = c
        .criterion
        .into_iter()
        .map(|x: CriterionW| match (x.search_criteria, x.kind) {
            (Some(group), None) => Ok(CriterionInput::Group(criteria_input(*group)?)),
            (None, Some(kind)) => Ok(CriterionInput::Leaf { kind, name: x.name, value: x.value.map(|v| v.0) }),
            (Some(_), Some(_)) => Err(Error::invalid("criterion (a type or a nested searchCriteria, not both)")),
            (None, None) => Err(Error::invalid("criterion type")),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CriteriaInput { items, operator: c.operator })
}

/// Convert wire selection criteria; the scope URL must name a folder of this box.
pub fn selection_input(urls: &BoxUrls, s: SelectionCriteriaW) -> Result<SelectionInput> {
    let max_entries = super::wire::number(s.max_entries, "maxEntries")?;
    let non_recursive = match s.non_recursive_scope.as_ref().map(|v| v.0.trim().to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "true" || v == "1" => true,
        Some(v) if v == "false" || v == "0" => false,
        Some(_) => return Err(Error::invalid_value("nonRecursiveScope", "true, false")),
    };
    let scope = s.search_scope.map(|r| urls.folder_id_from_url(&r.resource_url, "searchScope")).transpose()?;
    let mut sort: Vec<SortInput> = s
        .sort_criteria
        .map(|c| c.criterion)
        .unwrap_or_default()
        .into_iter()
        .map(|c| SortInput { kind: c.kind, name: c.name, order: c.order })
        .collect();
    if let Some(c) = s.sort_criterion {
        sort.push(SortInput { kind: c.kind, name: c.name, order: c.order });
    }
    Ok(SelectionInput {
        max_entries,
        from_cursor: s.from_cursor,
        criteria: s.search_criteria.map(criteria_input).transpose()?,
        scope,
        non_recursive,
        sort,
    })
}

/// `POST objects/operations/search`.
pub async fn objects(oma: Oma<SelectionEnvelope>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let access = oma.access;
    let input = selection_input(&access.urls, oma.body.selection_criteria)?;
    Ok(match state.nms.search_objects(&access.b, &input).await? {
        ObjectResult::Objects { objects, cursor, creation_cursor } => {
            let object = objects.iter().map(|o| render_listed_object(&access.urls, o)).collect();
            HttpResponse::Ok().json(ObjectListOut { object_list: ObjectListW { object, cursor, creation_cursor } })
        }
        ObjectResult::Vanished(ids) => {
            let object_reference =
                ids.iter().map(|id| ReferenceW { resource_url: access.urls.object(id), path: None }).collect();
            HttpResponse::Ok()
                .json(ObjectReferenceListOut { object_reference_list: ObjectReferenceListW { object_reference } })
        }
    })
}

/// `POST folders/operations/search`. Root folders come with their first page of children
/// (NMS 5.3.2.8: a search for root folders includes `subFolders` and `objects`).
pub async fn folders(oma: Oma<SelectionEnvelope>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let access = oma.access;
    let input = selection_input(&access.urls, oma.body.selection_criteria)?;
    let nms = &state.nms;
    let result = nms.search_folders(&access.b, &input).await?;
    let mut folder = Vec::with_capacity(result.folders.len());
    for f in &result.folders {
        let attributes = nms.folder_attributes(&access.b, f, &[]).await?;
        let mut w = render_folder(&access.urls, f, &attributes, true);
        if f.is_root {
            list_children(nms, &access, f, &mut w, ListFilter::All, None, None).await?;
        }
        folder.push(w);
    }
    Ok(HttpResponse::Ok().json(FolderListOut { folder_list: FolderListW { folder, cursor: result.cursor } }))
}
