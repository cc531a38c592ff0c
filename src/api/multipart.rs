//! Streaming multipart object deposits, single and bulk.
//!
//! Layout (NMS 6.1.5, REST_NetAPI_Common): the body is `multipart/form-data`,
//! `multipart/related` (as CPM Appendix H prints it) or `multipart/mixed`. Its first part
//! holds the root fields, `{"object": ..}` in JSON or `<nms:object>` in XML (a `form-data` body names it `root-fields`; a
//! `related` body whose `start` parameter names a part by Content-ID must put that part
//! first, since payloads are stored while they stream and never held back); then at most one
//! payload part, whatever its name (bulkCreation, 6.9: `{"objectList": ..}` then one payload
//! part per object, in order). A payload part of type `multipart/*` is read again, streaming:
//! each first-level inner part becomes one payload part (a nested multipart inside it stays
//! one part). A leaf payload part is one payload part. Bytes flow from the socket through
//! [`crate::multipart::Reader`] into the part writers, so a large payload is never held in
//! memory. The limits are enforced while streaming: the body size
//! (`limits.max_body_bytes`), each part's head (`limits.max_part_head_bytes`, outer and
//! nested parts alike; a CPIM head has its own bound), each part's size
//! (`limits.max_part_bytes`) and the number of parts of an object
//! (`limits.max_parts_per_object`, checked before a part starts); a tripped limit aborts the
//! part being written and abandons the deposit, so no blob stays.

use actix_web::{HttpRequest, web};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use super::wire::{ObjectEnvelope, ObjectIn, ObjectListEnvelope};
use super::{AppState, Format, OmaBody, media_type, parse_document};
use crate::blob::PartWriter;
use crate::cpm::cpim::{self, strip_param};
use crate::cpm::imdn;
use crate::error::{Error, Result};
use crate::multipart::{Headers, Limits, Reader};
use crate::nms::{Deposit, PartHeaders};

/// Whether a request body of this type is a multipart deposit.
pub fn is_deposit(m: &mime::Mime) -> bool {
    m.type_() == mime::MULTIPART && ["form-data", "related", "mixed"].contains(&m.subtype().as_str())
}

/// The `boundary` of a multipart media type: 1 to 70 characters (RFC 2046 5.1.1), so the
/// delimiter a reader looks for, and the bytes it holds back, stay small. `part` names it
/// in the refusal.
fn boundary_of(m: &mime::Mime, part: &str) -> Result<String> {
    m.get_param(mime::BOUNDARY)
        .map(|b| b.as_str().to_string())
        .filter(|b| (1..=70).contains(&b.len()) && !b.contains(['\r', '\n']))
        .ok_or_else(|| Error::invalid(format!("{part} (1 to 70 characters)")))
}

/// The per-part limits of a deposit.
#[derive(Clone, Copy)]
struct PartLimits {
    /// `limits.max_part_bytes` (0: none).
    max_part: u64,
    /// `limits.max_parts_per_object` (0: none).
    max_parts: u32,
    /// `limits.max_part_head_bytes`, for every reader of the deposit.
    head: Limits,
}

impl PartLimits {
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

/// The request body as a stream of bytes, failing past `limits.max_body_bytes`.
type BodyStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes>>>>;

/// An opened multipart deposit: its reader, the body's media type and the part limits.
struct Opened {
    reader: Reader<BodyStream>,
    media: mime::Mime,
    limits: PartLimits,
}

/// Open a streaming multipart body (413 past the body limit, declared or streamed).
fn open(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<Opened> {
    let media = media_type(req).filter(is_deposit).ok_or_else(|| Error::invalid("Content-Type"))?;
    let boundary = boundary_of(&media, "Content-Type boundary")?;
    let limit = state.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::body_too_large(limit));
    }
    let mut total: u64 = 0;
    let body = payload.map(move |chunk| match chunk {
        Ok(b) => {
            total += b.len() as u64;
            if total > limit { Err(Error::body_too_large(limit)) } else { Ok(b) }
        }
        Err(e) => Err(Error::invalid(format!("request body ({e})"))),
    });
    let head = Limits { max_head_bytes: state.limits.max_part_head_bytes, ..Limits::default() };
    let limits =
        PartLimits { max_part: state.limits.max_part_bytes, max_parts: state.limits.max_parts_per_object, head };
    Ok(Opened { reader: Reader::new(Box::pin(body), &boundary, head), media, limits })
}

/// The root part, which must come first, decoded: XML when it is labelled so, else JSON.
async fn root_fields<T: OmaBody>(o: &mut Opened, state: &AppState) -> Result<T> {
    let first = o.reader.next_part().await?.ok_or_else(|| Error::invalid("root-fields"))?;
    match o.media.get_param("start") {
        Some(start) => {
            let named = |v: &str| v.trim().trim_start_matches('<').trim_end_matches('>').to_string();
            if first.get("content-id").map(named) != Some(named(start.as_str())) {
                return Err(Error::invalid("root-fields (the part named by start must come first)"));
            }
        }
        None if o.media.subtype() == mime::FORM_DATA
            && first.disposition_param("name").as_deref() != Some("root-fields") =>
        {
            return Err(Error::invalid("root-fields"));
        }
        None => {}
    }
    // Other labels than XML are read as JSON, since clients label this part loosely (curl:
    // application/octet-stream).
    let format = match first.get("content-type").and_then(|t| t.parse::<mime::Mime>().ok()) {
        Some(m) if super::xml::is_xml(&m) => Format::Xml,
        _ => Format::Json,
    };
    let limit = state.limits.max_json_bytes;
    let mut buf = BytesMut::new();
    while let Some(chunk) = o.reader.chunk().await? {
        if buf.len() + chunk.len() > limit {
            return Err(Error::json_too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    parse_document(&buf, format, T::ROOT)
}

/// Read a multipart deposit: the object's root fields and its payload parts.
pub async fn read_deposit(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<(ObjectIn, Deposit)> {
    let mut o = open(req, payload, state)?;
    let envelope: ObjectEnvelope = root_fields(&mut o, state).await?;

    let mut deposit = state.nms.begin_deposit();
    let res = async {
        if let Some(headers) = o.reader.next_part().await? {
            read_payload(&mut o.reader, &headers, &mut deposit, &o.limits).await?;
        }
        if let Some(extra) = o.reader.next_part().await? {
            let name = extra.disposition_param("name").unwrap_or_default();
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

/// Read a bulkCreation body: root fields with `{"objectList": {"object": [..]}}`, then one
/// payload part per object, in order (an empty part without `Content-Type`: no payload).
/// Each object stays raw JSON so that a malformed one fails alone.
pub async fn read_bulk_deposit(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Vec<(serde_json::Value, Deposit)>> {
    let mut o = open(req, payload, state)?;
    let envelope: ObjectListEnvelope = root_fields(&mut o, state).await?;
    let objects = envelope.object_list.object;
    // Refuse an oversized request before any payload is stored.
    state.nms.check_bulk_size("objectList", objects.len())?;
    let mut deposits: Vec<Deposit> = Vec::with_capacity(objects.len());
    let res = async {
        while let Some(headers) = o.reader.next_part().await? {
            if deposits.len() == objects.len() {
                return Err(Error::invalid(format!("part {} (more payload parts than objects)", deposits.len() + 1)));
            }
            deposits.push(state.nms.begin_deposit());
            if let Some(d) = deposits.last_mut() {
                read_payload(&mut o.reader, &headers, d, &o.limits).await?;
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

/// A part's content, or the rest of one after a head was read off it.
trait Body: Stream<Item = Result<Bytes>> + Unpin {}
impl<S: Stream<Item = Result<Bytes>> + Unpin> Body for S {}

/// The payload part whose `headers` the reader just read: nested multipart (one payload
/// part per inner part), CPIM, or a single leaf.
async fn read_payload<S: Body>(
    reader: &mut Reader<S>,
    headers: &Headers,
    deposit: &mut Deposit,
    limits: &PartLimits,
) -> Result<()> {
    let raw_type = headers.get("content-type");
    match raw_type.and_then(|t| t.parse::<mime::Mime>().ok()) {
        Some(m) if m.type_() == mime::MULTIPART => {
            let boundary = boundary_of(&m, "attachments boundary")?;
            deposit.payload_type = raw_type.map(|t| strip_param(t, "boundary"));
            let mut inner = Reader::new(reader.body(), &boundary, limits.head);
            while let Some(h) = inner.next_part().await? {
                let headers = part_headers(&h);
                if is_cpim(&headers.content_type) {
                    read_cpim(inner.body(), deposit, limits).await?;
                } else {
                    stream_part(inner.body(), headers, deposit, limits).await?;
                }
            }
            Ok(())
        }
        Some(m) if is_cpim(m.essence_str()) => read_cpim(reader.body(), deposit, limits).await,
        _ => {
            limits.check_part_count(deposit)?;
            let headers = part_headers(headers);
            let explicit_type = raw_type.is_some();
            if explicit_type {
                deposit.payload_type = Some(headers.content_type.clone());
            }
            let mut writer = deposit.part_writer(&headers);
            if let Err(e) = copy_into(&mut reader.body(), &mut writer, limits).await {
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

async fn stream_part(
    mut part: impl Body,
    headers: PartHeaders,
    deposit: &mut Deposit,
    limits: &PartLimits,
) -> Result<()> {
    limits.check_part_count(deposit)?;
    let mut writer = deposit.part_writer(&headers);
    if let Err(e) = copy_into(&mut part, &mut writer, limits).await {
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
/// map (no payload). The head, however it arrives, is at most [`cpim::MAX_HEAD`] bytes.
async fn read_cpim(mut body: impl Body, deposit: &mut Deposit, limits: &PartLimits) -> Result<()> {
    if deposit.cpim.is_some() {
        return Err(Error::invalid("attachments (one CPIM message per object)"));
    }
    let too_long = || Error::invalid(format!("CPIM headers (longer than {} KiB)", cpim::MAX_HEAD / 1024));
    let mut buf = BytesMut::new();
    let mut scanner = cpim::HeadScanner::default();
    let end = loop {
        if let Some(n) = scanner.end(&buf) {
            break n;
        }
        if buf.len() > cpim::MAX_HEAD {
            return Err(too_long());
        }
        match body.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk?),
            None => return Err(Error::invalid("CPIM message (no encapsulated MIME headers)")),
        }
    };
    if end > cpim::MAX_HEAD {
        return Err(too_long());
    }
    let rest = buf.split_off(end).freeze();
    let head = cpim::parse_head(&buf)?;
    let content_type = head.content_type();
    let mut tail = futures_util::stream::iter([Ok::<Bytes, Error>(rest)]).chain(body);
    deposit.payload_type = Some(strip_param(&content_type, "boundary"));
    match content_type.parse::<mime::Mime>() {
        Ok(m) if m.type_() == mime::MULTIPART => {
            let boundary = boundary_of(&m, "CPIM Content-Type boundary")?;
            let mut inner = Reader::new(tail, &boundary, limits.head);
            while let Some(h) = inner.next_part().await? {
                let headers = part_headers(&h);
                stream_part(inner.body(), headers, deposit, limits).await?;
            }
        }
        Ok(m) if m.essence_str() == "message/imdn+xml" => {
            let mut xml = Vec::new();
            while let Some(chunk) = tail.next().await {
                let chunk = chunk?;
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
            stream_part(tail, headers, deposit, limits).await?;
        }
    }
    deposit.cpim = Some(head);
    Ok(())
}

/// Stream a part's bytes into a part writer (the caller aborts the writer on failure).
async fn copy_into(body: &mut impl Body, writer: &mut PartWriter, limits: &PartLimits) -> Result<()> {
    while let Some(chunk) = body.next().await.transpose()? {
        limits.check_part_size(writer, chunk.len())?;
        writer.write(&chunk).await?;
    }
    Ok(())
}

fn part_headers(h: &Headers) -> PartHeaders {
    headers_from(|name| h.get(name).map(str::to_string))
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
