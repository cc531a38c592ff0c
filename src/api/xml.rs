//! The XML binding (NMS Appendix B/C, CPM SCR `REST-NMS-SUPPORT-S-002`): one set of wire
//! types serves JSON and XML.
//!
//! * Requests: a document is read into an element tree ([`parse`]) and handed to the wire
//!   type's own `Deserialize` through a deserializer that follows the type's hints
//!   ([`from_slice`]): a list member takes one or many same-named elements, a structure takes
//!   the child elements, numbers and booleans are parsed from text. No DTD is processed and
//!   no entity but the five predefined ones and character references is expanded, so entity
//!   bombs and external entities are refused; nesting is bounded like JSON's.
//! * Responses: the JSON document a handler answers with is re-rendered in XML when the
//!   client asks for it ([`negotiate`], the one place deciding the format). A member becomes
//!   an element, an array a run of same-named elements. The few places where the OMA schemas
//!   differ from the JSON shape (element order, attributes, `xsi:type`, root namespaces) are
//!   the declarative [`SHAPE`] below, not code per resource.

use std::fmt;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::middleware::Next;
use bytes::Bytes;
use quick_xml::events::Event;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::auth::Operation;
use crate::model::NotificationFormat;

/// The namespace of the NMS data types.
pub const NMS_NS: &str = "urn:oma:xml:rest:netapi:nms:1";
/// The namespace of `requestError` (REST_NetAPI_Common).
pub const COMMON_NS: &str = "urn:oma:xml:rest:netapi:common:1";
/// The namespace of the Notification Channel data types.
pub const NC_NS: &str = "urn:oma:xml:rest:netapi:notificationchannel:1";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The media type of XML documents, requested and answered.
pub const XML: &str = NotificationFormat::Xml.media_type();

/// Deepest element nesting of a request document: serde_json's recursion limit, which bounds
/// JSON documents.
pub const MAX_DEPTH: usize = 128;

// ---------------------------------------------------------------------------------------
// The shape of XML documents where it is not the JSON one

/// What the OMA schemas say that the JSON shape does not.
pub struct Shape {
    /// Root elements and the prefix and namespace they are qualified with.
    pub roots: &'static [(&'static str, &'static str, &'static str)],
    /// Elements whose children the schema orders otherwise than the JSON members.
    pub order: &'static [(&'static str, &'static [&'static str])],
    /// Elements whose members are XML attributes (`common:Link`).
    pub attributes: &'static [&'static str],
    /// Elements of a derived type, named by `xsi:type`.
    pub xsi_type: &'static [(&'static str, &'static str)],
    /// Members the schema has no element for (CPM additions to `PayloadPartInfo`), left out.
    pub omitted: &'static [(&'static str, &'static [&'static str])],
    /// Members the schema requires that the JSON form leaves out when there is nothing to
    /// say, written empty: the root folder's `changedFolder` has no parent (NMS 5.3.2.8 omits
    /// a root's `parentFolder`; 5.3.2.28 requires the element), so `<parentFolder/>`.
    pub required: &'static [(&'static str, &'static [&'static str])],
    /// Repeating elements of request documents (`maxOccurs="unbounded"`) by parent: a list
    /// even when it occurs once where a document is read without its type's hints (a
    /// `bulkCreation` object kept raw, a member that takes one value or many).
    pub lists: &'static [(&'static str, &'static str)],
    /// Text elements of request documents by parent (repeating ones such as `value`, and the
    /// single text members of an object, which `bulkCreation` reads without its type's
    /// hints): an empty one (`<value/>`, `<value></value>`) is the empty string, as a typed
    /// read has it, not nothing.
    pub texts: &'static [(&'static str, &'static str)],
}

pub const SHAPE: Shape = Shape {
    roots: &[
        ("object", "nms", NMS_NS),
        ("objectList", "nms", NMS_NS),
        ("objectReferenceList", "nms", NMS_NS),
        ("folder", "nms", NMS_NS),
        ("folderList", "nms", NMS_NS),
        ("folderReferenceList", "nms", NMS_NS),
        ("reference", "nms", NMS_NS),
        ("flagList", "nms", NMS_NS),
        ("name", "nms", NMS_NS),
        ("empty", "nms", NMS_NS),
        ("bulkResponseList", "nms", NMS_NS),
        ("nmsSubscription", "nms", NMS_NS),
        ("nmsSubscriptionList", "nms", NMS_NS),
        ("nmsEventList", "nms", NMS_NS),
        ("requestError", "common", COMMON_NS),
        ("notificationChannel", "nc", NC_NS),
        ("notificationChannelList", "nc", NC_NS),
        ("notificationChannelLifetime", "nc", NC_NS),
        ("notificationList", "nc", NC_NS),
    ],
    order: &[
        (
            "nmsSubscription",
            &["callbackReference", "duration", "filter", "clientCorrelator", "resourceURL", "index", "restartToken"],
        ),
        (
            "subscription",
            &["callbackReference", "duration", "filter", "clientCorrelator", "resourceURL", "index", "restartToken"],
        ),
        ("nmsEventList", &["nmsEvent", "callbackData", "index", "restartToken", "link"]),
        ("changedObject", &["parentFolder", "flags", "resourceURL", "lastModSeq", "correlationId", "correlationTag"]),
        ("changedFolder", &["parentFolder", "resourceURL", "name", "lastModSeq"]),
        (
            "notificationChannel",
            &[
                "clientCorrelator",
                "applicationTag",
                "channelType",
                "channelData",
                "channelLifetime",
                "callbackURL",
                "resourceURL",
            ],
        ),
    ],
    attributes: &["link"],
    xsi_type: &[("channelData", "nc:LongPollingData")],
    omitted: &[("payloadPart", &["contentDisposition", "contentEncoding", "fileIcon"])],
    required: &[("changedFolder", &["parentFolder"])],
    lists: &[
        ("objectList", "object"),
        ("attributes", "attribute"),
        ("attribute", "value"),
        ("flags", "flag"),
        ("flagList", "flag"),
        ("pathList", "path"),
        ("objects", "objectReference"),
        ("folders", "folderReference"),
        ("searchCriteria", "criterion"),
        ("filter", "criterion"),
        ("sortCriteria", "criterion"),
    ],
    texts: &[
        ("attribute", "value"),
        ("attribute", "name"),
        ("flags", "flag"),
        ("flagList", "flag"),
        ("pathList", "path"),
        ("object", "parentFolder"),
        ("object", "parentFolderPath"),
        ("object", "correlationId"),
        ("object", "correlationTag"),
    ],
};

impl Shape {
    fn root(&self, name: &str) -> Option<(&'static str, &'static str)> {
        self.roots.iter().find(|(n, ..)| *n == name).map(|(_, p, ns)| (*p, *ns))
    }
}

// ---------------------------------------------------------------------------------------
// Content negotiation

/// Whether the client asks for XML: `Accept` prefers `application/xml` (or `text/xml`, or a
/// `+xml` type) to `application/json`. JSON stays the answer when `Accept` is absent, `*/*`,
/// names both equally, or names neither.
pub fn wants_xml(headers: &HeaderMap) -> bool {
    // (quality, specificity) of the best-matching range for each format.
    let mut xml = (0.0f32, 0u8);
    let mut json = (0.0f32, 0u8);
    for value in headers.get_all(header::ACCEPT).filter_map(|v| v.to_str().ok()) {
        for range in value.split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let (ty, sub) = media.split_once('/').unwrap_or((media.as_str(), ""));
            let (x, j) = match (ty, sub) {
                ("*", "*") => (1, 1),
                ("application", "*") => (2, 2),
                ("application" | "text", "xml") => (3, 0),
                ("application", s) if s.ends_with("+xml") => (3, 0),
                ("application", "json") => (0, 3),
                ("application", s) if s.ends_with("+json") => (0, 3),
                _ => (0, 0),
            };
            if x > xml.1 {
                xml = (q, x);
            }
            if j > json.1 {
                json = (q, j);
            }
        }
    }
    xml.0 > 0.0 && (xml.0 > json.0 || (xml.0 == json.0 && xml.1 > json.1))
}

/// Whether a request body is declared as XML (`application/xml`, `text/xml`, `+xml`).
pub fn is_xml(m: &mime::Mime) -> bool {
    (m.type_() == mime::APPLICATION || m.type_() == mime::TEXT)
        && (m.subtype() == mime::XML || m.suffix() == Some(mime::XML))
}

/// The middleware answering in XML the clients that ask for it: an OMA document (or error)
/// the handler rendered as JSON is re-rendered as the same document in XML. Stored payloads
/// (which may well be JSON) and documents that are not OMA ones (`/health`) stay as they are.
pub async fn negotiate<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B, Bytes>>, actix_web::Error> {
    let xml = wants_xml(req.headers());
    let mut res = next.call(req).await?;
    // The same URL answers JSON or XML by `Accept`: caches must key on it.
    res.headers_mut().append(header::VARY, HeaderValue::from_static("accept"));
    if !xml || !is_json(res.headers()) {
        return Ok(res.map_into_left_body());
    }
    let op = res.request().match_pattern().and_then(|p| Operation::resolve(res.request().method().as_str(), &p));
    if res.status().is_success() && matches!(op, Some(Operation::ObjectPayloadGet | Operation::ObjectPayloadPartGet)) {
        return Ok(res.map_into_left_body());
    }
    let (req, res) = res.into_parts();
    let (mut head, body) = res.into_parts();
    let bytes = actix_web::body::to_bytes(body)
        .await
        .map_err(|e| crate::error::Error::internal(format!("reading an answer to render in XML: {}", e.into())))?;
    let document = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| render(&v));
    let body = match document {
        Some(doc) => {
            head.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(XML));
            Bytes::from(doc)
        }
        None => bytes,
    };
    Ok(ServiceResponse::new(req, head.set_body(EitherBody::right(body))))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.type_() == mime::APPLICATION && m.subtype() == mime::JSON)
}

// ---------------------------------------------------------------------------------------
// Rendering

/// The XML form of an OMA JSON document (`{"root": ..}` with a root [`SHAPE`] knows), or
/// `None` for any other JSON.
pub fn render(doc: &Value) -> Option<String> {
    let map = doc.as_object()?;
    let (root, value) = match map.iter().next() {
        Some(entry) if map.len() == 1 => entry,
        _ => return None,
    };
    let (prefix, ns) = SHAPE.root(root)?;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let mut decl = format!(" xmlns:{prefix}=\"{ns}\"");
    if ns == NC_NS {
        decl.push_str(&format!(" xmlns:xsi=\"{XSI_NS}\""));
    }
    let qualified = format!("{prefix}:{root}");
    match value {
        // A list at the root (`notificationList`): each entry's members are children of the
        // root; an entry that is a root element of another namespace (`nmsEventList` in a
        // `notificationList`) stays qualified.
        Value::Array(items) => {
            out.push_str(&format!("<{qualified}{decl}>"));
            for item in items {
                let Some(members) = item.as_object() else { continue };
                for (name, v) in members {
                    match SHAPE.root(name).filter(|(_, other)| *other != ns) {
                        Some((p, other)) => {
                            element(&mut out, &format!("{p}:{name}"), name, v, &format!(" xmlns:{p}=\"{other}\""))
                        }
                        None => element(&mut out, name, name, v, ""),
                    }
                }
            }
            out.push_str(&format!("</{qualified}>"));
        }
        _ => element(&mut out, &qualified, root, value, &decl),
    }
    Some(out)
}

/// One member: `<tag attrs>..</tag>`, or a run of them for an array.
fn element(out: &mut String, tag: &str, name: &str, v: &Value, attrs: &str) {
    if let Value::Array(items) = v {
        for item in items {
            element(out, tag, name, item, attrs);
        }
        return;
    }
    out.push('<');
    out.push_str(tag);
    out.push_str(attrs);
    if let Some((_, ty)) = SHAPE.xsi_type.iter().find(|(n, _)| *n == name) {
        out.push_str(&format!(" xsi:type=\"{ty}\""));
    }
    match v {
        Value::Object(members) if SHAPE.attributes.contains(&name) => {
            for (k, v) in members {
                out.push_str(&format!(" {k}=\"{}\"", text(v)));
            }
            out.push_str("/>");
        }
        Value::Object(members) => {
            let omitted = SHAPE.omitted.iter().find(|(n, _)| *n == name).map_or(&[][..], |(_, o)| *o);
            let mut children: Vec<(&str, &Value)> =
                members.iter().filter(|(k, _)| !omitted.contains(&k.as_str())).map(|(k, v)| (k.as_str(), v)).collect();
            let required = SHAPE.required.iter().find(|(n, _)| *n == name).map_or(&[][..], |(_, r)| *r);
            for r in required.iter().filter(|r| !members.contains_key(**r)) {
                children.push((r, &Value::Null));
            }
            if let Some((_, order)) = SHAPE.order.iter().find(|(n, _)| *n == name) {
                children.sort_by_key(|(k, _)| order.iter().position(|o| o == k).unwrap_or(order.len()));
            }
            if children.is_empty() {
                out.push_str("/>");
                return;
            }
            out.push('>');
            for (k, v) in children {
                element(out, k, k, v, "");
            }
            out.push_str(&format!("</{tag}>"));
        }
        Value::Null => out.push_str("/>"),
        scalar => {
            out.push('>');
            out.push_str(&text(scalar));
            out.push_str(&format!("</{tag}>"));
        }
    }
}

/// A scalar as escaped XML text (CRs kept as references, so `\r\n` reads back as sent);
/// characters XML 1.0 cannot carry become U+FFFD.
fn text(v: &Value) -> String {
    let raw = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let clean: String = raw
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect();
    // A CR is a reference: a parser would read a literal one as a line end.
    quick_xml::escape::escape(clean.as_str()).replace('\r', "&#13;")
}

// ---------------------------------------------------------------------------------------
// Reading

/// An element of a request document: its local name, its text and its child elements
/// (attributes and namespaces carry nothing the server reads).
#[derive(Debug, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

/// Why a document could not be read.
#[derive(Debug)]
pub struct XmlError(pub String);

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for XmlError {}

impl de::Error for XmlError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        XmlError(msg.to_string())
    }
}

fn err(msg: impl Into<String>) -> XmlError {
    XmlError(msg.into())
}

/// Read a document into its root element. Refused: anything not UTF-8, a DTD (`<!DOCTYPE`),
/// entity references other than the predefined ones and character references, nesting
/// deeper than [`MAX_DEPTH`], and anything but one root element.
pub fn parse(body: &[u8]) -> Result<Element, XmlError> {
    let source = std::str::from_utf8(body).map_err(|_| err("not UTF-8"))?;
    let mut reader = quick_xml::Reader::from_str(source);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let local = |raw: &[u8]| String::from_utf8_lossy(raw).into_owned();
    loop {
        let event =
            reader.read_event().map_err(|e| err(format!("malformed at byte {}: {e}", reader.error_position())))?;
        match event {
            Event::DocType(_) => return Err(err("a DTD (<!DOCTYPE) is not accepted")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                return Err(err(format!("a second root element <{}>", local(e.local_name().as_ref()))));
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err(format!("nested deeper than {MAX_DEPTH} elements")));
                }
                stack.push(Element { name: local(e.local_name().as_ref()), ..Element::default() });
            }
            Event::Empty(e) => {
                let el = Element { name: local(e.local_name().as_ref()), ..Element::default() };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| err("an end tag without a start"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content().map_err(|e| err(e.to_string()))?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(err("text outside the root element")),
                }
            }
            Event::CData(t) => {
                let s = t.xml10_content().map_err(|e| err(e.to_string()))?;
                stack.last_mut().ok_or_else(|| err("CDATA outside the root element"))?.text.push_str(&s);
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| err(e.to_string()))?;
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten().map(String::from)
                } else {
                    quick_xml::escape::resolve_predefined_entity(&name).map(String::from)
                };
                let s = resolved.ok_or_else(|| err(format!("entity &{name}; is not accepted")))?;
                stack.last_mut().ok_or_else(|| err("a reference outside the root element"))?.text.push_str(&s);
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(err("unclosed elements"));
    }
    root.ok_or_else(|| err("no root element"))
}

/// Read the document `root` (`folder`, ...) into `T`, its JSON envelope (`{"folder": ..}`).
pub fn from_slice<T: DeserializeOwned>(body: &[u8], root: &str) -> Result<T, XmlError> {
    let el = parse(body)?;
    if el.name != root {
        return Err(err(format!("expected the root element {root}, got {}", el.name)));
    }
    T::deserialize(Envelope(&el))
}

/// The root element as a one-member map, the envelope of the JSON binding.
struct Envelope<'a>(&'a Element);

impl<'de, 'a> de::Deserializer<'de> for Envelope<'a> {
    type Error = XmlError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
        v.visit_map(Members { parent: "", groups: vec![(self.0.name.as_str(), vec![self.0])].into_iter(), value: None })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// The child elements of an element, same-named ones grouped, in order of first appearance.
struct Members<'a> {
    /// The parent element's name (`""`: the document).
    parent: &'a str,
    groups: std::vec::IntoIter<(&'a str, Vec<&'a Element>)>,
    value: Option<(&'a str, Vec<&'a Element>)>,
}

impl<'a> Members<'a> {
    fn of(el: &'a Element) -> Self {
        // Indexed by name: a document of many distinct names costs no more than its size.
        let mut groups: Vec<(&'a str, Vec<&'a Element>)> = Vec::new();
        let mut index: std::collections::HashMap<&'a str, usize> = std::collections::HashMap::new();
        for child in &el.children {
            match index.get(child.name.as_str()).and_then(|&i| groups.get_mut(i)) {
                Some((_, group)) => group.push(child),
                None => {
                    index.insert(child.name.as_str(), groups.len());
                    groups.push((child.name.as_str(), vec![child]));
                }
            }
        }
        Members { parent: el.name.as_str(), groups: groups.into_iter(), value: None }
    }
}

impl<'de, 'a> MapAccess<'de> for Members<'a> {
    type Error = XmlError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, XmlError> {
        match self.groups.next() {
            Some((name, group)) => {
                self.value = Some((name, group));
                seed.deserialize(name.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, XmlError> {
        let (name, group) = self.value.take().ok_or_else(|| err("a value without a key"))?;
        let list = SHAPE.lists.contains(&(self.parent, name));
        let text = SHAPE.texts.contains(&(self.parent, name));
        seed.deserialize(Group { nodes: group, list, text })
    }
}

/// A run of same-named elements: a list, or (alone) one value.
struct Group<'a> {
    nodes: Vec<&'a Element>,
    /// The schema repeats the element: a list even without a type's hint.
    list: bool,
    /// The schema's items are text: an empty one is `""` even without a type's hint.
    text: bool,
}

impl<'a> Group<'a> {
    fn one(self) -> Result<Node<'a>, XmlError> {
        match self.nodes.as_slice() {
            [one] => Ok(Node { el: one, text: self.text }),
            [first, ..] => Err(err(format!("element {} repeated", first.name))),
            [] => Err(err("an empty group")),
        }
    }
}

struct Items<'a> {
    nodes: std::vec::IntoIter<&'a Element>,
    /// The items are text ([`Group::text`]).
    text: bool,
}

impl<'de, 'a> SeqAccess<'de> for Items<'a> {
    type Error = XmlError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, XmlError> {
        let text = self.text;
        self.nodes.next().map(|el| seed.deserialize(Node { el, text })).transpose()
    }
}

/// The methods a [`Group`] hands to its single element.
macro_rules! through_one {
    ($($method:ident($($arg:ident: $t:ty),*);)*) => {
        $(fn $method<V: Visitor<'de>>(self, $($arg: $t,)* v: V) -> Result<V::Value, XmlError> {
            self.one()?.$method($($arg,)* v)
        })*
    };
}

/// The methods [`Group`] and [`Node`] share: an option is always present, a tuple is a list.
macro_rules! shared {
    () => {
        fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
            v.visit_some(self)
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, XmlError> {
            v.visit_newtype_struct(self)
        }

        fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, XmlError> {
            self.deserialize_seq(v)
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _len: usize,
            v: V,
        ) -> Result<V::Value, XmlError> {
            self.deserialize_seq(v)
        }
    };
}

impl<'de, 'a> de::Deserializer<'de> for Group<'a> {
    type Error = XmlError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
        if self.list || self.nodes.len() > 1 { self.deserialize_seq(v) } else { self.one()?.deserialize_any(v) }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
        v.visit_seq(Items { nodes: self.nodes.into_iter(), text: self.text })
    }

    shared!();

    through_one! {
        deserialize_bool(); deserialize_i8(); deserialize_i16(); deserialize_i32(); deserialize_i64();
        deserialize_i128(); deserialize_u8(); deserialize_u16(); deserialize_u32(); deserialize_u64();
        deserialize_u128(); deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_string(); deserialize_bytes(); deserialize_byte_buf(); deserialize_unit();
        deserialize_map(); deserialize_identifier(); deserialize_ignored_any();
        deserialize_unit_struct(name: &'static str);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }
}

/// The start of `text` an error message quotes (a client's text may be as long as a body).
fn excerpt(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// One element as a value.
struct Node<'a> {
    el: &'a Element,
    /// The schema types it as text ([`Group::text`]).
    text: bool,
}

impl<'a> Node<'a> {
    fn parsed<T: std::str::FromStr>(&self, what: &str) -> Result<T, XmlError> {
        self.el
            .text
            .trim()
            .parse()
            .map_err(|_| err(format!("{}: expected {what}, got {:?}", self.el.name, excerpt(&self.el.text))))
    }

    fn is_empty(&self) -> bool {
        self.el.children.is_empty() && self.el.text.trim().is_empty()
    }
}

macro_rules! number {
    ($($method:ident $visit:ident $t:ty,)*) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
            v.$visit(self.parsed::<$t>(stringify!($t))?)
        })*
    };
}

macro_rules! as_text {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
            self.deserialize_str(v)
        })*
    };
}

impl<'de, 'a> de::Deserializer<'de> for Node<'a> {
    type Error = XmlError;

    /// Without a hint: a structure when the element has children, nothing when it is empty
    /// (unless the schema types it as text), else its text.
    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
        if !self.el.children.is_empty() {
            v.visit_map(Members::of(self.el))
        } else if self.is_empty() && !self.text {
            v.visit_unit()
        } else {
            v.visit_str(&self.el.text)
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
        match self.el.text.trim() {
            "true" | "1" => v.visit_bool(true),
            "false" | "0" => v.visit_bool(false),
            _ => Err(err(format!("{}: expected a boolean, got {:?}", self.el.name, excerpt(&self.el.text)))),
        }
    }

    number! {
        deserialize_i8 visit_i8 i8, deserialize_i16 visit_i16 i16, deserialize_i32 visit_i32 i32,
        deserialize_i64 visit_i64 i64, deserialize_i128 visit_i128 i128, deserialize_u8 visit_u8 u8,
        deserialize_u16 visit_u16 u16, deserialize_u32 visit_u32 u32, deserialize_u64 visit_u64 u64,
        deserialize_u128 visit_u128 u128, deserialize_f32 visit_f32 f32, deserialize_f64 visit_f64 f64,
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
        v.visit_str(&self.el.text)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
        v.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, XmlError> {
        v.visit_unit()
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
        v.visit_seq(Items { nodes: vec![self.el].into_iter(), text: self.text })
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
        v.visit_map(Members::of(self.el))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, XmlError> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, XmlError> {
        v.visit_enum(self.el.text.trim().into_deserializer())
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, XmlError> {
        v.visit_unit()
    }

    shared!();

    as_text! { deserialize_string deserialize_char deserialize_identifier deserialize_bytes deserialize_byte_buf }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_quotes_only_the_start_of_a_long_text() {
        assert_eq!(excerpt("12x"), "12x");
        let long = "é".repeat(1_000);
        assert_eq!(excerpt(&long).chars().count(), 64);
    }
    use actix_web::http::header::HeaderName;

    fn accept(value: Option<&str>) -> bool {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(HeaderName::from_static("accept"), HeaderValue::from_str(v).expect("header"));
        }
        wants_xml(&h)
    }

    #[test]
    fn json_stays_the_default() {
        for json in
            [None, Some("*/*"), Some("application/json"), Some("application/xml, application/json"), Some("text/html")]
        {
            assert!(!accept(json), "{json:?}");
        }
        for xml in [
            Some("application/xml"),
            Some("text/xml"),
            Some("application/xml, */*;q=0.1"),
            Some("application/json;q=0.5, application/xml"),
            Some("application/xml, */*"),
        ] {
            assert!(accept(xml), "{xml:?}");
        }
        assert!(!accept(Some("application/xml;q=0")));
    }

    #[test]
    fn text_entities_and_cdata_are_read() {
        let el = parse(b"<?xml version=\"1.0\"?><a xmlns=\"x\"><b>1 &amp; &#x32;</b><b><![CDATA[<3>]]></b><c/></a>")
            .expect("parse");
        assert_eq!(el.name, "a");
        assert_eq!(el.children[0].text, "1 & 2");
        assert_eq!(el.children[1].text, "<3>");
        assert_eq!(el.children[2], Element { name: "c".into(), ..Element::default() });
    }

    #[test]
    fn dtds_unknown_entities_and_deep_nesting_are_refused() {
        let bomb = b"<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x \"xx\">]><a>&x;</a>";
        assert!(parse(bomb).is_err_and(|e| e.0.contains("DTD")));
        assert!(parse(b"<a>&x;</a>").is_err_and(|e| e.0.contains("&x;")));
        let deep = format!("{}{}", "<a>".repeat(MAX_DEPTH + 1), "</a>".repeat(MAX_DEPTH + 1));
        assert!(parse(deep.as_bytes()).is_err_and(|e| e.0.contains("deeper")));
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes()).is_ok());
        assert!(parse(b"<a/><b/>").is_err());
        assert!(parse(b"<a><b></a>").is_err());
    }

    #[test]
    fn repeating_elements_stay_lists_without_hints() {
        use crate::api::wire::{ObjectIn, ObjectListEnvelope};
        let doc = b"<objectList><object><attributes><attribute><name>S</name><value>v</value></attribute>\
                    </attributes><flags><flag>\\Seen</flag></flags></object></objectList>";
        let list: ObjectListEnvelope = from_slice(doc, "objectList").expect("objectList");
        let raw = list.object_list.object.into_iter().next().expect("one object");
        assert_eq!(
            raw,
            serde_json::json!({"attributes": {"attribute": [{"name": "S", "value": ["v"]}]}, "flags": {"flag": ["\\Seen"]}})
        );
        let o: ObjectIn = serde_json::from_value(raw).expect("object");
        assert_eq!(o.flags.map(|f| f.flag), Some(vec!["\\Seen".to_string()]));
    }

    #[test]
    fn render_follows_the_schema_shape() {
        let doc = serde_json::json!({"nmsEventList": {
            "nmsEvent": [{"resetBox": {}}],
            "index": 3, "restartToken": "t",
            "link": [{"rel": "NmsSubscription", "href": "http://x/a&b"}],
            "callbackData": "cb"
        }});
        let xml = render(&doc).expect("render");
        assert!(
            xml.ends_with(
                "<nms:nmsEventList xmlns:nms=\"urn:oma:xml:rest:netapi:nms:1\"><nmsEvent><resetBox/></nmsEvent>\
                 <callbackData>cb</callbackData><index>3</index><restartToken>t</restartToken>\
                 <link rel=\"NmsSubscription\" href=\"http://x/a&amp;b\"/></nms:nmsEventList>"
            ),
            "{xml}"
        );
        assert_eq!(render(&serde_json::json!({"status": "ok"})), None);
    }

    #[test]
    fn a_parentless_changed_folder_gets_the_required_element() {
        let root = serde_json::json!({"nmsEventList": {"nmsEvent": [{"changedFolder": {
            "resourceURL": "http://x/f/root", "name": "", "lastModSeq": 2
        }}]}});
        let xml = render(&root).expect("render");
        assert!(xml.contains("<changedFolder><parentFolder/><resourceURL>http://x/f/root</resourceURL>"), "{xml}");
    }

    #[test]
    fn line_ends_and_unwritable_characters() {
        let xml = render(&serde_json::json!({"name": "a\r\nb\u{1}<"})).expect("render");
        assert!(xml.ends_with(">a&#13;\nb\u{FFFD}&lt;</nms:name>"), "{xml}");
        assert_eq!(parse(xml.as_bytes()).expect("parse").text, "a\r\nb\u{FFFD}<");
    }
}
