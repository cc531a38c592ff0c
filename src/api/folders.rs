//! `/folders`, `/folders/{id}`, `/folders/{id}/folderName`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::wire::{
    AttributeListW, FolderEnvelope, FolderOut, FolderReferenceListW, FolderW, NameEnvelope, NameOut,
    ObjectReferenceListW, ReferenceOut, ReferenceW,
};
use super::{Access, AppState, BoxUrls, Oma, param};
use crate::error::{Error, Result};
use crate::model::{Attribute, ChildPosition, Folder};
use crate::nms::{ListFilter, Nms};

/// `POST /folders`: 201 + `Location` + `reference`.
pub async fn create(oma: Oma<FolderEnvelope>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let (access, f) = (oma.access, oma.body.folder);
    let parent = access.urls.parent(f.parent_folder, f.parent_folder_path)?;
    let attributes = f.attributes.unwrap_or_default().into_domain();
    let folder = state.nms.create_folder(&access.b, access.actor(), parent, f.name, attributes).await?;
    let url = access.urls.folder(&folder.public_id);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, url.clone()))
        .json(ReferenceOut { reference: ReferenceW { resource_url: url, path: Some(folder.path) } }))
}

/// Query parameters of `GET /folders/{id}` (repeatable `attrFilter`).
struct FolderQuery {
    list: Option<ListFilter>,
    max_entries: Option<u32>,
    from_cursor: Option<String>,
    path: bool,
    attr_filter: Vec<String>,
}

fn folder_query(req: &HttpRequest) -> Result<FolderQuery> {
    let mut q = FolderQuery { list: None, max_entries: None, from_cursor: None, path: false, attr_filter: Vec::new() };
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match k.trim() {
            "listFilter" => {
                q.list = Some(match v.trim() {
                    "Subfolders" => ListFilter::Subfolders,
                    "Objects" => ListFilter::Objects,
                    "All" => ListFilter::All,
                    _ => return Err(Error::invalid_value("listFilter", "Subfolders, Objects, All")),
                })
            }
            "maxEntries" => {
                let n: u32 = v.trim().parse().map_err(|_| Error::invalid("maxEntries"))?;
                if n == 0 {
                    return Err(Error::invalid("maxEntries"));
                }
                q.max_entries = Some(n);
            }
            "fromCursor" => q.from_cursor = Some(v.into_owned()),
            "path" => q.path = v.trim().eq_ignore_ascii_case("yes"),
            "attrFilter" => q.attr_filter.push(v.trim().to_string()),
            _ => {}
        }
    }
    Ok(q)
}

/// The wire form of a folder (without child lists).
pub fn render_folder(urls: &BoxUrls, f: &Folder, attributes: &[Attribute], with_path: bool) -> FolderW {
    FolderW {
        parent_folder: f.parent_public_id.as_deref().map(|p| urls.folder(p)),
        attributes: AttributeListW::from_domain(attributes),
        resource_url: urls.folder(&f.public_id),
        path: with_path.then(|| f.path.clone()),
        name: f.name.clone(),
        last_mod_seq: f.last_mod_seq,
        cursor: None,
        sub_folders: None,
        objects: None,
    }
}

/// Fill `out` with one page of the folder's children (`subFolders`, `objects`, `cursor`).
pub async fn list_children(
    nms: &Nms,
    access: &Access,
    f: &Folder,
    out: &mut FolderW,
    filter: ListFilter,
    from: Option<ChildPosition>,
    max_entries: Option<u32>,
) -> Result<()> {
    let page = nms.folder_children(&access.b, f, filter, from, max_entries).await?;
    out.cursor = page.next.map(|p| nms.child_cursor(&access.b, f, filter, p));
    if filter != ListFilter::Objects {
        out.sub_folders = Some(FolderReferenceListW {
            folder_reference: page
                .folders
                .iter()
                .map(|id| ReferenceW { resource_url: access.urls.folder(id), path: None })
                .collect(),
        });
    }
    if filter != ListFilter::Subfolders {
        out.objects = Some(ObjectReferenceListW {
            object_reference: page
                .objects
                .iter()
                .map(|id| ReferenceW { resource_url: access.urls.object(id), path: None })
                .collect(),
        });
    }
    Ok(())
}

/// `GET /folders/{id}` with `listFilter`, `maxEntries`, `fromCursor`, `path`, `attrFilter`.
pub async fn get(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = param(&req, "folderId")?;
    let q = folder_query(&req)?;
    let nms = &state.nms;
    let f = nms.folder(&access.b, &id).await?;
    let attributes = nms.folder_attributes(&access.b, &f, &q.attr_filter).await?;
    let mut out = render_folder(&access.urls, &f, &attributes, q.path);
    if let Some(filter) = q.list {
        let from = match &q.from_cursor {
            Some(c) => Some(nms.open_child_cursor(&access.b, &f, filter, c)?),
            None => None,
        };
        list_children(nms, &access, &f, &mut out, filter, from, q.max_entries).await?;
    } else if q.from_cursor.is_some() {
        return Err(Error::invalid("fromCursor (requires listFilter)"));
    }
    Ok(HttpResponse::Ok().json(FolderOut { folder: out }))
}

/// `DELETE /folders/{id}`: recursive, 204.
pub async fn delete(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = param(&req, "folderId")?;
    state.nms.delete_folder(&access.b, access.actor(), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /folders/{id}/folderName`.
pub async fn get_name(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = param(&req, "folderId")?;
    let f = state.nms.folder(&access.b, &id).await?;
    Ok(HttpResponse::Ok().json(NameOut { name: f.name }))
}

/// `PUT /folders/{id}/folderName`.
pub async fn put_name(req: HttpRequest, oma: Oma<NameEnvelope>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let (access, env) = (oma.access, oma.body);
    let id = param(&req, "folderId")?;
    let f = state.nms.rename_folder(&access.b, access.actor(), &id, &env.name).await?;
    Ok(HttpResponse::Ok().json(NameOut { name: f.name }))
}
