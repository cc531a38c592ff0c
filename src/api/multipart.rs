//! Streaming `multipart/form-data` object deposits, single and bulk.
//!
//! Layout (NMS 6.1.5, REST_NetAPI_Common): a `root-fields` part holding `{"object": ..}`,
//! then at most one payload part named `attachments` or `message` (bulkCreation, 6.9:
//! `{"objectList": ..}` then one payload part per object, in order). A payload part of type
//! `multipart/*` is parsed again, streaming: each first-level inner part becomes one payload
//! part (a nested multipart inside it stays one part). A leaf payload part is one payload
//! part. Bytes flow from the socket through a bounded channel into the part writers, so a
//! large payload is never held in memory. The limits are enforced while streaming: the body
//! size (`limits.max_body_bytes`), each part's size (`limits.max_part_bytes`) and the number
//! of parts of an object (`limits.max_parts_per_object`, checked before a part starts); a
//! tripped limit aborts the part being written and abandons the deposit, so no blob stays.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{HttpRequest, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::wire::{ObjectEnvelope, ObjectIn, ObjectListEnvelope};
use super::{AppState, parse_json};
use crate::blob::PartWriter;
use crate::cpm::cpim::{self, strip_param};
use crate::cpm::imdn;
use crate::error::{Error, Result};
use crate::nms::{Deposit, PartHeaders};

/// Maps multer failures (a tripped body limit is 413, anything else a malformed body), and
/// holds the per-part limits of the deposit.
#[derive(Clone)]
struct Failure {
    over: Arc<AtomicBool>,
    limit: u64,
    /// `limits.max_part_bytes` (0: none).
    max_part: u64,
    /// `limits.max_parts_per_object` (0: none).
    max_parts: u32,
}

impl Failure {
    fn map(&self, e: multer::Error) -> Error {
        if self.over.load(Ordering::SeqCst) {
            Error::body_too_large(self.limit)
        } else {
            Error::invalid(format!("multipart body ({e})"))
        }
    }

    /// Before a payload part starts: one more must fit `limits.max_parts_per_object`.
    fn check_part_count(&self, deposit: &Deposit) -> Result<()> {
        if self.max_parts > 0 && deposit.part_count() >= self.max_parts as usize {
            return Err(Error::LimitExceeded {
                what: "payload parts per object".into(),
                key: "limits.max_parts_per_object",
                limit: u64::from(self.max_parts),
            });
        }
        Ok(())
    }

    /// Before writing `chunk` bytes more into `writer`: the part must stay within
    /// `limits.max_part_bytes`.
    fn check_part_size(&self, writer: &PartWriter, chunk: usize) -> Result<()> {
        if self.max_part > 0 && writer.size().saturating_add(chunk as u64) > self.max_part {
            return Err(Error::TooLarge { what: "payload part", key: "limits.max_part_bytes", limit: self.max_part });
        }
        Ok(())
    }
}

type Parts = multer::Multipart<'static>;

/// Open a streaming multipart body (413 past the body limit, declared or streamed).
fn open(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<(Parts, Failure)> {
    let ct = req.headers().get(actix_web::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multer::parse_boundary(ct).map_err(|_| Error::invalid("Content-Type boundary"))?;
    let limit = state.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::body_too_large(limit));
    }
    let failure = Failure {
        over: Arc::new(AtomicBool::new(false)),
        limit,
        max_part: state.limits.max_part_bytes,
        max_parts: state.limits.max_parts_per_object,
    };

    // actix's payload is !Send and multer wants a Send stream: bridge through a channel.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Bytes, std::io::Error>>(8);
    let over = failure.over.clone();
    let mut payload = payload;
    actix_web::rt::spawn(async move {
        let mut total: u64 = 0;
        while let Some(chunk) = payload.next().await {
            let item = match chunk {
                Ok(b) => {
                    total += b.len() as u64;
                    if total > limit {
                        over.store(true, Ordering::SeqCst);
                        let _ = tx.send(Err(std::io::Error::other("request body too large"))).await;
                        break;
                    }
                    Ok(b)
                }
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    Ok((multer::Multipart::new(ReceiverStream::new(rx), boundary), failure))
}

/// The `root-fields` part, which must come first: its JSON bytes.
async fn root_fields(mp: &mut Parts, failure: &Failure, state: &AppState) -> Result<Bytes> {
    let first = mp.next_field().await.map_err(|e| failure.map(e))?.ok_or_else(|| Error::invalid("root-fields"))?;
    if first.name() != Some("root-fields") {
        return Err(Error::invalid("root-fields"));
    }
    // The XML binding is not offered (as for whole bodies); other labels are read as JSON,
    // since clients label this part loosely (curl: application/octet-stream).
    if let Some(m) = first.content_type()
        && (m.subtype() == mime::XML || m.suffix() == Some(mime::XML))
    {
        return Err(Error::UnsupportedMediaType { media_type: m.essence_str().to_string() });
    }
    read_small(first, state.limits.max_json_bytes, failure).await
}

/// A payload part must be named `attachments` (or `message`, as some clients name it).
fn check_payload_name(field: &multer::Field<'_>) -> Result<()> {
    let name = field.name().unwrap_or_default();
    if name != "attachments" && name != "message" {
        return Err(Error::invalid(format!("part {name}")));
    }
    Ok(())
}

/// Read a multipart deposit: the object's root fields and its payload parts.
pub async fn read_deposit(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<(ObjectIn, Deposit)> {
    let (mut mp, failure) = open(req, payload, state)?;
    let json = root_fields(&mut mp, &failure, state).await?;
    let envelope: ObjectEnvelope = parse_json(&json, "object")?;

    let mut deposit = state.nms.begin_deposit();
    let res = async {
        if let Some(field) = mp.next_field().await.map_err(|e| failure.map(e))? {
            check_payload_name(&field)?;
            read_payload(field, &mut deposit, &failure).await?;
        }
        if let Some(extra) = mp.next_field().await.map_err(|e| failure.map(e))? {
            let name = extra.name().unwrap_or_default().to_string();
            return Err(Error::invalid(format!("part {name} (one payload part is allowed)")));
        }
        Ok(())
    }
    .await;
    match res {
        Ok(()) => Ok((envelope.object, deposit)),
        Err(e) => {
            deposit.abandon().await;
            Err(e)
        }
    }
}

/// Read a bulkCreation body: `root-fields` with `{"objectList": {"object": [..]}}`, then one
/// payload part per object, in order (an empty part without `Content-Type`: no payload).
/// Each object stays raw JSON so that a malformed one fails alone.
pub async fn read_bulk_deposit(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Vec<(serde_json::Value, Deposit)>> {
    let (mut mp, failure) = open(req, payload, state)?;
    let json = root_fields(&mut mp, &failure, state).await?;
    let envelope: ObjectListEnvelope = parse_json(&json, "objectList")?;
    let objects = envelope.object_list.object;
    // Refuse an oversized request before any payload is stored.
    state.nms.check_bulk_size("objectList", objects.len())?;
    let mut deposits: Vec<Deposit> = Vec::with_capacity(objects.len());
    let res = async {
        while let Some(field) = mp.next_field().await.map_err(|e| failure.map(e))? {
            check_payload_name(&field)?;
            if deposits.len() == objects.len() {
                return Err(Error::invalid(format!("part {} (more payload parts than objects)", deposits.len() + 1)));
            }
            deposits.push(state.nms.begin_deposit());
            if let Some(d) = deposits.last_mut() {
                read_payload(field, d, &failure).await?;
            }
        }
        if deposits.len() != objects.len() {
            return Err(Error::invalid(format!(
                "attachments ({} payload parts for {} objects; send an empty part for an object without payload)",
                deposits.len(),
                objects.len()
            )));
        }
        Ok(())
    }
    .await;
    match res {
        Ok(()) => Ok(objects.into_iter().zip(deposits).collect()),
        Err(e) => {
            for d in deposits {
                d.abandon().await;
            }
            Err(e)
        }
    }
}

async fn read_small(mut field: multer::Field<'_>, limit: usize, failure: &Failure) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| failure.map(e))? {
        if buf.len() + chunk.len() > limit {
            return Err(Error::json_too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The payload part: nested multipart (one payload part per inner part) or a single leaf.
async fn read_payload(field: multer::Field<'static>, deposit: &mut Deposit, failure: &Failure) -> Result<()> {
    let raw_type = header(field.headers(), "content-type");
    match field.content_type().cloned() {
        Some(m) if m.type_() == mime::MULTIPART => {
            let boundary = m
                .get_param(mime::BOUNDARY)
                .map(|b| b.as_str().to_string())
                .ok_or_else(|| Error::invalid("attachments boundary"))?;
            deposit.payload_type = raw_type.map(|t| strip_param(&t, "boundary"));
            let mut inner = multer::Multipart::new(field, boundary);
            while let Some(part) = inner.next_field().await.map_err(|e| failure.map(e))? {
                let headers = part_headers(part.headers());
                if is_cpim(&headers.content_type) {
                    read_cpim(part, deposit, failure).await?;
                } else {
                    stream_part(part, headers, deposit, failure).await?;
                }
            }
            Ok(())
        }
        Some(m) if is_cpim(m.essence_str()) => read_cpim(field, deposit, failure).await,
        _ => {
            failure.check_part_count(deposit)?;
            let headers = part_headers(field.headers());
            let explicit_type = raw_type.is_some();
            if explicit_type {
                deposit.payload_type = Some(headers.content_type.clone());
            }
            let mut field = field;
            let mut writer = deposit.part_writer(&headers);
            if let Err(e) = copy_into(&mut field, &mut writer, failure).await {
                writer.abort().await;
                return Err(e);
            }
            if writer.size() == 0 && !explicit_type {
                // An empty part without a type means "no payload" (bulk-creation convention).
                writer.abort().await;
                return Ok(());
            }
            deposit.add_part(headers, writer).await
        }
    }
}

/// A chunked body: a multipart field, or the rest of one after a head was read off it.
trait Body: futures_util::Stream<Item = std::result::Result<Bytes, multer::Error>> + Unpin {}
impl<S: futures_util::Stream<Item = std::result::Result<Bytes, multer::Error>> + Unpin> Body for S {}

async fn stream_part(
    mut part: impl Body,
    headers: PartHeaders,
    deposit: &mut Deposit,
    failure: &Failure,
) -> Result<()> {
    failure.check_part_count(deposit)?;
    let mut writer = deposit.part_writer(&headers);
    if let Err(e) = copy_into(&mut part, &mut writer, failure).await {
        writer.abort().await;
        return Err(e);
    }
    deposit.add_part(headers, writer).await
}

fn is_cpim(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("message/cpim"))
}

/// A `message/cpim` payload (CPM binding 5.3.1.3): its head is decoded into the deposit,
/// its encapsulated body streams into payload parts (one per part of a `multipart/*` body,
/// else one), and a disposition notification (`message/imdn+xml`) is kept for the domain to
/// map (no payload).
async fn read_cpim<S>(mut body: S, deposit: &mut Deposit, failure: &Failure) -> Result<()>
where
    S: futures_util::Stream<Item = std::result::Result<Bytes, multer::Error>> + Send + Unpin + 'static,
{
    if deposit.cpim.is_some() {
        return Err(Error::invalid("attachments (one CPIM message per object)"));
    }
    let mut buf = BytesMut::new();
    let end = loop {
        if let Some(n) = cpim::head_len(&buf) {
            break n;
        }
        if buf.len() > cpim::MAX_HEAD {
            return Err(Error::invalid("CPIM headers (longer than 64 KiB)"));
        }
        match body.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk.map_err(|e| failure.map(e))?),
            None => return Err(Error::invalid("CPIM message (no encapsulated MIME headers)")),
        }
    };
    let rest = buf.split_off(end).freeze();
    let head = cpim::parse_head(&buf)?;
    let content_type = head.content_type();
    let mut tail = futures_util::stream::iter([Ok::<Bytes, multer::Error>(rest)]).chain(body);
    deposit.payload_type = Some(strip_param(&content_type, "boundary"));
    match content_type.parse::<mime::Mime>() {
        Ok(m) if m.type_() == mime::MULTIPART => {
            let boundary = m
                .get_param(mime::BOUNDARY)
                .map(|b| b.as_str().to_string())
                .ok_or_else(|| Error::invalid("CPIM Content-Type boundary"))?;
            let mut inner = multer::Multipart::new(tail, boundary);
            while let Some(part) = inner.next_field().await.map_err(|e| failure.map(e))? {
                let headers = part_headers(part.headers());
                stream_part(part, headers, deposit, failure).await?;
            }
        }
        Ok(m) if m.essence_str() == "message/imdn+xml" => {
            let mut xml = Vec::new();
            while let Some(chunk) = tail.next().await {
                let chunk = chunk.map_err(|e| failure.map(e))?;
                if xml.len() + chunk.len() > imdn::MAX_DOCUMENT_BYTES {
                    return Err(Error::invalid("IMDN (longer than 16 KiB)"));
                }
                xml.extend_from_slice(&chunk);
            }
            deposit.imdn = Some(xml);
            deposit.payload_type = None;
        }
        _ => {
            let headers = PartHeaders { content_type, ..headers_from(|name| head.mime_header(name)) };
            stream_part(tail, headers, deposit, failure).await?;
        }
    }
    deposit.cpim = Some(head);
    Ok(())
}

/// Stream a field's bytes into a part writer (the caller aborts the writer on failure).
async fn copy_into(body: &mut impl Body, writer: &mut PartWriter, failure: &Failure) -> Result<()> {
    while let Some(chunk) = body.next().await.transpose().map_err(|e| failure.map(e))? {
        failure.check_part_size(writer, chunk.len())?;
        writer.write(&chunk).await?;
    }
    Ok(())
}

fn header(h: &http::HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_string())
}

fn part_headers(h: &http::HeaderMap) -> PartHeaders {
    headers_from(|name| header(h, name))
}

/// A part's headers from a lookup by (case-insensitive) name.
fn headers_from(get: impl Fn(&str) -> Option<String>) -> PartHeaders {
    PartHeaders {
        content_type: get("content-type").unwrap_or_else(|| "text/plain".to_string()),
        content_disposition: get("content-disposition"),
        content_id: get("content-id").map(|s| s.trim_start_matches('<').trim_end_matches('>').to_string()),
        content_location: get("content-location"),
        content_encoding: get("content-transfer-encoding"),
        file_icon: get("file-icon"),
    }
}
