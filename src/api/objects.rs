//! `/objects`, `/objects/{id}`, `/objects/{id}/payload`, `/objects/{id}/payloadParts/{part}`.

use std::ops::Range;

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{StreamExt, TryStreamExt};

use super::wire::{
    AttributeListW, FlagListW, ObjectEnvelope, ObjectIn, ObjectOut, ObjectW, PayloadPartW, ReferenceOut, ReferenceW,
};
use super::{Access, AppState, BoxUrls, media_type, multipart, oma_body, param};
use crate::error::{Error, Result};
use crate::model::{Object, PayloadPart};
use crate::nms::ObjectInput;

/// Convert the deposited root fields.
pub fn object_input(urls: &BoxUrls, o: ObjectIn) -> Result<ObjectInput> {
    Ok(ObjectInput {
        parent: urls.parent(o.parent_folder, o.parent_folder_path)?,
        attributes: o.attributes.unwrap_or_default().into_domain(),
        flags: o.flags.unwrap_or_default().flag,
        correlation_id: o.correlation_id,
        correlation_tag: o.correlation_tag,
    })
}

/// The path of an object: its folder's path and its id.
pub fn object_path(o: &Object) -> String {
    format!("{}/{}", o.folder_path, o.public_id)
}

/// The wire form of a stored object.
pub fn render_object(urls: &BoxUrls, o: &Object) -> ObjectW {
    let parts: Vec<PayloadPartW> = o
        .parts
        .iter()
        .map(|p| PayloadPartW {
            content_type: p.content_type.clone(),
            content_id: p.content_id.clone(),
            content_location: p.content_location.clone(),
            content_disposition: p.content_disposition.clone(),
            content_encoding: p.content_encoding.clone(),
            file_icon: p.file_icon.clone(),
            size: p.size,
            href: urls.payload_part(&o.public_id, &p.part_id),
        })
        .collect();
    ObjectW {
        parent_folder: urls.folder(&o.folder_public_id),
        attributes: AttributeListW::from_domain(&o.attributes),
        flags: FlagListW { flag: o.flags.clone(), resource_url: None },
        resource_url: urls.object(&o.public_id),
        path: object_path(o),
        payload_url: (!parts.is_empty()).then(|| urls.payload(&o.public_id)),
        payload_part: parts,
        last_mod_seq: o.last_mod_seq,
        correlation_id: o.correlation_id.clone(),
        correlation_tag: o.correlation_tag.clone(),
    }
}

/// An object's flags with the URL of its flag list, as search results carry them (NMS
/// D.20, D.21), and notifications' `changedObject`s here too; a single object's `GET`
/// gives the flags alone (D.7, D.8).
pub fn located_flags(urls: &BoxUrls, o: &Object) -> FlagListW {
    FlagListW { flag: o.flags.clone(), resource_url: Some(urls.object_flags(&o.public_id)) }
}

/// The wire form of an object in a search result: as [`render_object`], with its flag
/// list's URL.
pub fn render_listed_object(urls: &BoxUrls, o: &Object) -> ObjectW {
    ObjectW { flags: located_flags(urls, o), ..render_object(urls, o) }
}

/// `POST /objects`: JSON root fields only, or multipart root fields + payload.
pub async fn create(
    req: HttpRequest,
    access: Access,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let mt = media_type(&req);
    let (input, deposit) = match mt {
        Some(m) if multipart::is_deposit(&m) => multipart::read_deposit(&req, payload, &state).await?,
        _ => {
            let env: ObjectEnvelope = oma_body(&req, payload, &state).await?;
            (env.object, state.nms.begin_deposit())
        }
    };
    let input = match object_input(&access.urls, input) {
        Ok(i) => i,
        Err(e) => {
            deposit.abandon().await;
            return Err(e);
        }
    };
    let o = state.nms.create_object(&access.b, access.actor(), input, deposit).await?;
    let url = access.urls.object(&o.public_id);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, url.clone()))
        .json(ReferenceOut { reference: ReferenceW { resource_url: url, path: Some(object_path(&o)) } }))
}

/// `GET /objects/{id}`.
pub async fn get(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = param(&req, "objectId")?;
    let o = state.nms.object(&access.b, &id).await?;
    Ok(HttpResponse::Ok().json(ObjectOut { object: render_object(&access.urls, &o) }))
}

/// `DELETE /objects/{id}`: 204, payload gone.
pub async fn delete(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = param(&req, "objectId")?;
    state.nms.delete_object(&access.b, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

type ByteStream = BoxStream<'static, Result<Bytes, Error>>;

fn into_body(len: u64, s: ByteStream) -> SizedStream<BoxStream<'static, Result<Bytes, actix_web::Error>>> {
    SizedStream::new(len, s.map_err(actix_web::Error::from).boxed())
}

/// A single `bytes=` range of a resource of `size` bytes (`None`: whole resource).
fn parse_range(req: &HttpRequest, size: u64) -> Result<Option<Range<u64>>> {
    let Some(v) = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        // Multiple ranges are not served; the whole part is (RFC 9110 allows ignoring Range).
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(Error::RangeNotSatisfiable { size })?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| Error::RangeNotSatisfiable { size })?;
        if n == 0 {
            return Err(Error::RangeNotSatisfiable { size });
        }
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().map_err(|_| Error::RangeNotSatisfiable { size })?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>().map_err(|_| Error::RangeNotSatisfiable { size })?.saturating_add(1).min(size)
        };
        start..end
    };
    if range.start >= range.end || range.start >= size {
        return Err(Error::RangeNotSatisfiable { size });
    }
    Ok(Some(range))
}

/// `GET /objects/{id}/payloadParts/{part}`: the raw bytes with their own type; ranges served.
pub async fn payload_part(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = param(&req, "objectId")?;
    let part_id = param(&req, "partId")?;
    let o = state.nms.object(&access.b, &id).await?;
    let part = o.parts.iter().find(|p| p.part_id == part_id).ok_or(Error::Missing)?;
    let range = parse_range(&req, part.size)?;
    let stream = state.nms.part_stream(&access.b, &o, part, range.clone()).await?;
    let mut res = match &range {
        Some(r) => {
            let mut b = HttpResponse::build(StatusCode::PARTIAL_CONTENT);
            b.insert_header((header::CONTENT_RANGE, format!("bytes {}-{}/{}", r.start, r.end - 1, part.size)));
            b
        }
        None => HttpResponse::Ok(),
    };
    res.insert_header((header::CONTENT_TYPE, part.content_type.clone()))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    if let Some(d) = &part.content_disposition {
        res.insert_header((header::CONTENT_DISPOSITION, d.clone()));
    }
    let len = range.map(|r| r.end - r.start).unwrap_or(part.size);
    Ok(res.body(into_body(len, stream)))
}

/// `GET /objects/{id}/payload`: one part as itself, several as a MIME multipart.
pub async fn payload(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = param(&req, "objectId")?;
    let o = state.nms.object(&access.b, &id).await?;
    match o.parts.len() {
        0 => Err(Error::Missing),
        1 => {
            let part = &o.parts[0];
            let stream = state.nms.part_stream(&access.b, &o, part, None).await?;
            let mut res = HttpResponse::Ok();
            res.insert_header((header::CONTENT_TYPE, part.content_type.clone()));
            if let Some(d) = &part.content_disposition {
                res.insert_header((header::CONTENT_DISPOSITION, d.clone()));
            }
            Ok(res.body(into_body(part.size, stream)))
        }
        _ => {
            let boundary = format!("=_nms_{}", crate::ids::new_id());
            let media = match o.payload_type.as_deref() {
                Some(t) if t.to_ascii_lowercase().starts_with("multipart/") => t.to_string(),
                _ => "multipart/mixed".to_string(),
            };
            let content_type = format!("{media}; boundary=\"{boundary}\"");
            let mut len: u64 = 0;
            let mut pieces: Vec<(Bytes, Option<PayloadPart>)> = Vec::with_capacity(o.parts.len() * 2 + 1);
            for p in &o.parts {
                let mut head = format!("--{boundary}\r\nContent-Type: {}\r\n", p.content_type);
                if let Some(d) = &p.content_disposition {
                    head.push_str(&format!("Content-Disposition: {d}\r\n"));
                }
                if let Some(c) = &p.content_id {
                    head.push_str(&format!("Content-ID: <{c}>\r\n"));
                }
                if let Some(l) = &p.content_location {
                    head.push_str(&format!("Content-Location: {l}\r\n"));
                }
                if let Some(e) = &p.content_encoding {
                    head.push_str(&format!("Content-Transfer-Encoding: {e}\r\n"));
                }
                if let Some(i) = &p.file_icon {
                    head.push_str(&format!("File-Icon: {i}\r\n"));
                }
                head.push_str("\r\n");
                len += head.len() as u64 + p.size + 2;
                pieces.push((Bytes::from(head), Some(p.clone())));
                pieces.push((Bytes::from_static(b"\r\n"), None));
            }
            let tail = format!("--{boundary}--\r\n");
            len += tail.len() as u64;
            pieces.push((Bytes::from(tail), None));
            let (nms, b, obj) = (state.nms.clone(), access.b.clone(), o.clone());
            let body: ByteStream = stream::iter(pieces)
                .then(move |(head, part)| {
                    let (nms, b, obj) = (nms.clone(), b.clone(), obj.clone());
                    async move {
                        let head_stream: ByteStream = stream::once(async move { Ok(head) }).boxed();
                        match part {
                            None => head_stream,
                            Some(p) => match nms.part_stream(&b, &obj, &p, None).await {
                                Ok(s) => head_stream.chain(s).boxed(),
                                Err(e) => stream::once(async move { Err(e) }).boxed(),
                            },
                        }
                    }
                })
                .flatten()
                .boxed();
            Ok(HttpResponse::Ok().insert_header((header::CONTENT_TYPE, content_type)).body(into_body(len, body)))
        }
    }
}
