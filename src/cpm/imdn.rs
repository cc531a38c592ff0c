//! IMDN objects (CPM Message Storage §5.3.10): a disposition notification (RFC 5438) is
//! stored as a message object with no payload whose content is carried by attributes:
//! `Message-Context` `imdn-message` plus `DispositionType`, `DispositionStatus`,
//! `DispositionOriginalMessageID` and `DispositionOriginalTo`, all mandatory.
//!
//! This module reads the RFC 5438 `message/imdn+xml` document, checks the status against
//! the disposition type, maps a notification onto those attributes, checks the attributes
//! of an IMDN object deposited directly, and finds the IMDN objects about a message (they
//! are deleted or expired with it, CPM binding 7.3.3.5/7.3.3.6).
//!
//! Case: NMS §5.3.2.5 makes attribute values case-sensitive unless stated otherwise, and
//! neither CPM §5.3.10 nor RFC 5438 (whose values are XML element names, case-sensitive by
//! nature) states otherwise. So `delivery`, `delivered` etc. must be written exactly so
//! (lower case). `Message-Context` is the exception: NMS Appendix I makes it case-insensitive.

use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::error::{Error, Result};
use crate::model::Attribute;
use crate::store::{Class, Facts};

/// The RFC 5438 XML namespace.
pub const IMDN_NS: &str = "urn:ietf:params:xml:ns:imdn";
/// `Message-Context` of an IMDN object (CPM §5.3.10).
pub const MESSAGE_CONTEXT: &str = "imdn-message";

/// Largest IMDN document accepted. Real ones are a few hundred bytes.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// Deepest element nesting accepted (an IMDN document is four levels deep).
const MAX_DEPTH: usize = 16;
/// Most elements accepted in one document.
const MAX_ELEMENTS: usize = 256;

/// The disposition types (CPM §5.3.10 / RFC 5438 §5) and the statuses legal for each.
const DISPOSITIONS: [(&str, &[&str]); 3] = [
    ("delivery", &["delivered", "failed", "forbidden", "error"]),
    ("processing", &["processed", "stored", "forbidden", "error"]),
    ("display", &["displayed", "forbidden", "error"]),
];
const TYPES_TEXT: &str = "delivery, processing, display";
const NOTIFICATIONS_TEXT: &str = "delivery-notification, processing-notification, display-notification";

/// A parsed disposition notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imdn {
    /// `<message-id>`: the Message-ID of the message the notification is about.
    pub message_id: String,
    /// `<datetime>`: when the original message was sent (RFC 3339 text, as written).
    pub date_time: Option<String>,
    /// `<recipient-uri>`: the recipient that produced the notification.
    pub recipient: Option<String>,
    /// `<original-recipient-uri>`: the recipient as originally addressed, when retargeted.
    pub original_recipient: Option<String>,
    /// `delivery`, `display` or `processing` (CPM §5.3.10 spelling; the XML element is
    /// `<{type}-notification>`).
    pub disposition_type: String,
    /// The status element's name: `delivered`, `failed`, `forbidden`, `error`, `displayed`,
    /// `processed` or `stored`.
    pub status: String,
}

/// The statuses legal for a disposition type, if the type is known (exact spelling).
pub fn legal_statuses(disposition_type: &str) -> Option<&'static [&'static str]> {
    DISPOSITIONS.iter().find(|(t, _)| *t == disposition_type).map(|(_, s)| *s)
}

/// Whether `name` is a status of some disposition type.
fn is_status_name(name: &str) -> bool {
    DISPOSITIONS.iter().any(|(_, statuses)| statuses.contains(&name))
}

/// Check a disposition type and status pair (CPM §5.3.10, RFC 5438 §5 and its schema):
/// delivery: delivered, failed, forbidden, error; processing: processed, stored, forbidden,
/// error; display: displayed, forbidden, error. Values are case-sensitive (module doc).
///
/// An unknown type or a status illegal for the type is 400 SVC0003 naming
/// `attribute DispositionType` / `attribute DispositionStatus` with the legal values.
pub fn validate(disposition_type: &str, status: &str) -> Result<()> {
    check_pair(disposition_type, status, "attribute DispositionType", "attribute DispositionStatus")
}

fn check_pair(disposition_type: &str, status: &str, type_part: &str, status_part: &str) -> Result<()> {
    let legal = legal_statuses(disposition_type).ok_or_else(|| Error::invalid_value(type_part, TYPES_TEXT))?;
    if legal.contains(&status) { Ok(()) } else { Err(Error::invalid_value(status_part, legal.join(", "))) }
}

/// The NMS attributes of the IMDN object for a notification (CPM §5.3.10):
///
/// * `Message-Context` = `imdn-message`;
/// * `DispositionType`, `DispositionStatus` as parsed;
/// * `DispositionOriginalMessageID` = `<message-id>`;
/// * `DispositionOriginalTo` = `<recipient-uri>`, else `<original-recipient-uri>`. CPM
///   describes it as "the ID of the receiver client", which is what `recipient-uri` holds
///   (RFC 5438: the URI of the recipient that sends the IMDN); `original-recipient-uri` is
///   only the address before retargeting, so it serves when `recipient-uri` is absent. With
///   neither (both are optional in RFC 5438), the attribute is left out and the caller must
///   supply it, e.g. from the CPIM `From` of the notification, since CPM requires it;
/// * `Date` = `<datetime>` when present and an RFC 3339 date-time (NMS Appendix I wants
///   `xsd:dateTimeStamp`, which RFC 3339 text satisfies), kept exactly as written; otherwise
///   left out, so the store dates the object itself.
pub fn attributes(imdn: &Imdn) -> Vec<Attribute> {
    let one = |name: &str, value: &str| Attribute { name: name.to_owned(), values: vec![value.to_owned()] };
    let mut out = vec![
        one("Message-Context", MESSAGE_CONTEXT),
        one("DispositionType", &imdn.disposition_type),
        one("DispositionStatus", &imdn.status),
        one("DispositionOriginalMessageID", &imdn.message_id),
    ];
    if let Some(to) = imdn.recipient.as_deref().or(imdn.original_recipient.as_deref()) {
        out.push(one("DispositionOriginalTo", to));
    }
    if let Some(date) = imdn.date_time.as_deref().filter(|d| chrono::DateTime::parse_from_rfc3339(d).is_ok()) {
        out.push(one("Date", date));
    }
    out
}

/// Check the attributes of an object deposited directly as an IMDN object (CPM §5.3.10).
///
/// * `Message-Context` must be `imdn-message` (case-insensitive, NMS Appendix I);
/// * `DispositionType`, `DispositionStatus`, `DispositionOriginalMessageID` and
///   `DispositionOriginalTo` must each be present with exactly one non-blank value (CPM:
///   "MUST all be set"; each names one thing). Values given under repeated attributes of the
///   same name count together, as the store merges them;
/// * the type and status must be a legal pair ([`validate`]).
///
/// A missing or malformed attribute is 400 SVC0002 naming it (`attribute DispositionType`);
/// an illegal value is 400 SVC0003 with the legal values. Other attributes are not checked.
/// That the object has no payload (CPM §5.3.10) is for the caller, which sees the parts.
pub fn validate_attributes(attrs: &[Attribute]) -> Result<()> {
    let context = super::calllog::mandatory(attrs, "Message-Context")?;
    if !context.eq_ignore_ascii_case(MESSAGE_CONTEXT) {
        return Err(Error::invalid_value("attribute Message-Context", MESSAGE_CONTEXT));
    }
    let disposition_type = super::calllog::mandatory(attrs, "DispositionType")?;
    let status = super::calllog::mandatory(attrs, "DispositionStatus")?;
    super::calllog::mandatory(attrs, "DispositionOriginalMessageID")?;
    super::calllog::mandatory(attrs, "DispositionOriginalTo")?;
    validate(disposition_type, status)
}

/// One element of the document, reduced to what an IMDN needs.
#[derive(Debug, Default)]
struct Node {
    /// In the IMDN namespace, or in no namespace at all (tolerated, see [`parse`]).
    ours: bool,
    name: String,
    text: String,
    children: Vec<Node>,
}

/// Parse an RFC 5438 `message/imdn+xml` document.
///
/// Accepted: an `<imdn>` root in the IMDN namespace with any prefix (or, tolerated, in no
/// namespace, as some clients omit `xmlns`), whitespace anywhere, comments, an XML
/// declaration, the status element written self-closing or with start and end tags, and
/// extension elements in other namespaces (RFC 5438 allows `##other` extensions), which are
/// skipped. Text is trimmed. Element order is not enforced.
///
/// Refused, as 400 SVC0002 `IMDN ...`:
/// * input over [`MAX_DOCUMENT_BYTES`], over 16 levels deep or over 256 elements, a DTD
///   (never needed, and the door to entity tricks), anything not well-formed, text outside
///   the root, not UTF-8, an unknown entity (`IMDN document`);
/// * a root other than `imdn` in the IMDN namespace (`IMDN root element`);
/// * no, or more than one, or an empty `<message-id>` (`IMDN message-id`);
/// * no notification element, or more than one (`IMDN notification`);
/// * a notification without exactly one `<status>`, or a status without exactly one status
///   element (`IMDN status`). Other IMDN-namespace children of `<status>` beside the one
///   status element (a `<reason>`, say) are ignored.
///
/// Refused as 400 SVC0003: an IMDN-namespace `<*-notification>` of an unknown type
/// (`IMDN notification`), and a status element not legal for the type, e.g. `<displayed/>`
/// in a delivery notification (`IMDN status`). `<datetime>` and the recipient URIs are
/// optional (RFC 5438's schema makes `datetime` mandatory, but the notification is still
/// useful without it); when repeated, the first is kept.
pub fn parse(xml: &[u8]) -> Result<Imdn> {
    let root = read_tree(xml)?;
    if !(root.ours && root.name == "imdn") {
        return Err(Error::invalid("IMDN root element"));
    }
    let text_of = |name: &str| {
        root.children.iter().find(|c| c.ours && c.name == name).map(|n| n.text.clone()).filter(|t| !t.is_empty())
    };

    let mut ids = root.children.iter().filter(|c| c.ours && c.name == "message-id");
    let message_id = match (ids.next(), ids.next()) {
        (Some(id), None) if !id.text.is_empty() => id.text.clone(),
        _ => return Err(Error::invalid("IMDN message-id")),
    };

    let mut notifications = root.children.iter().filter(|c| c.ours && c.name.ends_with("-notification"));
    let notification = match (notifications.next(), notifications.next()) {
        (Some(n), None) => n,
        _ => return Err(Error::invalid("IMDN notification")),
    };
    let disposition_type = notification.name.strip_suffix("-notification").unwrap_or_default();
    let legal = legal_statuses(disposition_type)
        .ok_or_else(|| Error::invalid_value("IMDN notification", NOTIFICATIONS_TEXT))?;

    let mut statuses = notification.children.iter().filter(|c| c.ours && c.name == "status");
    let status_node = match (statuses.next(), statuses.next()) {
        (Some(s), None) => s,
        _ => return Err(Error::invalid("IMDN status")),
    };
    // The status element is the one child naming a status; other children (a `<reason>`,
    // say) are ignored. A lone child that names no status is an unknown status.
    let children: Vec<&Node> = status_node.children.iter().filter(|c| c.ours).collect();
    let known: Vec<&&Node> = children.iter().filter(|c| is_status_name(&c.name)).collect();
    let status = match (known.as_slice(), children.as_slice()) {
        ([one], _) => one.name.clone(),
        ([], [only]) => only.name.clone(),
        _ => return Err(Error::invalid("IMDN status")),
    };
    if !legal.contains(&status.as_str()) {
        return Err(Error::invalid_value("IMDN status", legal.join(", ")));
    }

    Ok(Imdn {
        message_id,
        date_time: text_of("datetime"),
        recipient: text_of("recipient-uri"),
        original_recipient: text_of("original-recipient-uri"),
        disposition_type: disposition_type.to_owned(),
        status,
    })
}

/// Read the document into a small tree, within the limits; the root element is returned.
fn read_tree(xml: &[u8]) -> Result<Node> {
    let bad = || Error::invalid("IMDN document");
    if xml.len() > MAX_DOCUMENT_BYTES {
        return Err(bad());
    }
    let mut reader = NsReader::from_reader(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut elements = 0usize;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(|_| bad())?;
        let (start, is_empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let ours = match ns {
                ResolveResult::Bound(n) => n.as_ref() == IMDN_NS.as_bytes(),
                ResolveResult::Unbound => true,
                ResolveResult::Unknown(_) => return Err(bad()),
            };
            elements += 1;
            if elements > MAX_ELEMENTS || stack.len() >= MAX_DEPTH || (stack.is_empty() && root.is_some()) {
                return Err(bad());
            }
            let name = std::str::from_utf8(e.local_name().as_ref()).map_err(|_| bad())?.to_owned();
            let node = Node { ours, name, ..Node::default() };
            if is_empty {
                close(node, &mut stack, &mut root);
            } else {
                stack.push(node);
            }
            continue;
        }
        match event {
            Event::End(_) => {
                let node = stack.pop().ok_or_else(bad)?;
                close(node, &mut stack, &mut root);
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|_| bad())?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(bad()),
                }
            }
            Event::CData(t) => {
                let text = t.decode().map_err(|_| bad())?;
                stack.last_mut().ok_or_else(bad)?.text.push_str(&text);
            }
            Event::GeneralRef(r) => {
                let top = stack.last_mut().ok_or_else(bad)?;
                if let Some(c) = r.resolve_char_ref().map_err(|_| bad())? {
                    top.text.push(c);
                } else {
                    let name = r.decode().map_err(|_| bad())?;
                    top.text.push_str(resolve_xml_entity(&name).ok_or_else(bad)?);
                }
            }
            Event::DocType(_) => return Err(bad()),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::Start(_) | Event::Empty(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(bad());
    }
    root.ok_or_else(bad)
}

/// Attach a finished element to its parent, or make it the root.
fn close(mut node: Node, stack: &mut [Node], root: &mut Option<Node>) {
    let trimmed = node.text.trim();
    if trimmed.len() != node.text.len() {
        node.text = trimmed.to_owned();
    }
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => *root = Some(node),
    }
}

/// IMDN objects.
const IMDN_OBJECTS: Class<'static> =
    Class { attribute: "message-context", values: &[MESSAGE_CONTEXT], payload_types: &[] };

/// The IMDN objects about the message whose IMDN Message-ID (its correlationId) is
/// `message_id`: those whose `DispositionOriginalMessageID` it is.
pub async fn about(facts: &mut dyn Facts, message_id: &str) -> Result<Vec<i64>> {
    facts.having("DispositionOriginalMessageID", message_id, &IMDN_OBJECTS).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 5438 §7.2.1.1 example shape, with the notification swapped in.
    fn doc(notification: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
             <imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\r\n\
             \x20 <message-id>34jk324j</message-id>\r\n\
             \x20 <datetime>2008-04-04T12:16:49-05:00</datetime>\r\n\
             \x20 <recipient-uri>im:bob@example.com</recipient-uri>\r\n\
             \x20 <original-recipient-uri>im:bob@example.com</original-recipient-uri>\r\n\
             \x20 <subject>Weekly report</subject>\r\n\
             \x20 {notification}\r\n\
             </imdn>\r\n"
        )
    }

    fn parsed(notification: &str) -> Result<Imdn> {
        parse(doc(notification).as_bytes())
    }

    /// The part of an SVC0002 refusal.
    fn invalid_part(r: Result<Imdn>) -> String {
        match r {
            Err(Error::InvalidInput { part }) => part,
            other => panic!("expected SVC0002, got {other:?}"),
        }
    }

    /// The part and valid values of an SVC0003 refusal.
    fn value_part(r: Result<impl std::fmt::Debug>) -> (String, String) {
        match r {
            Err(Error::InvalidValue { part, valid }) => (part, valid),
            other => panic!("expected SVC0003, got {other:?}"),
        }
    }

    #[test]
    fn delivered() {
        let imdn =
            parsed("<delivery-notification>\r\n<status>\r\n<delivered/>\r\n</status>\r\n</delivery-notification>");
        assert_eq!(
            imdn.ok(),
            Some(Imdn {
                message_id: "34jk324j".into(),
                date_time: Some("2008-04-04T12:16:49-05:00".into()),
                recipient: Some("im:bob@example.com".into()),
                original_recipient: Some("im:bob@example.com".into()),
                disposition_type: "delivery".into(),
                status: "delivered".into(),
            })
        );
    }

    #[test]
    fn displayed_failed_processed_stored_forbidden_error() {
        let cases = [
            ("display", "displayed"),
            ("delivery", "failed"),
            ("delivery", "forbidden"),
            ("delivery", "error"),
            ("processing", "processed"),
            ("processing", "stored"),
            ("processing", "error"),
            ("display", "forbidden"),
            ("display", "error"),
        ];
        for (t, s) in cases {
            let imdn = parsed(&format!("<{t}-notification><status><{s}/></status></{t}-notification>"));
            let imdn = imdn.unwrap_or_else(|e| panic!("{t}/{s}: {e}"));
            assert_eq!((imdn.disposition_type.as_str(), imdn.status.as_str()), (t, s));
        }
    }

    #[test]
    fn other_children_of_status_are_ignored() {
        let imdn = parsed(
            "<delivery-notification><status><failed/><reason code=\"503\">busy</reason></status></delivery-notification>",
        );
        assert_eq!(imdn.map(|i| i.status).ok().as_deref(), Some("failed"));
        // A lone unknown child is an unknown status.
        let r = parsed("<delivery-notification><status><reason/></status></delivery-notification>");
        assert_eq!(value_part(r).0, "IMDN status");
    }

    #[test]
    fn status_with_start_and_end_tags() {
        let imdn = parsed("<display-notification><status><displayed></displayed></status></display-notification>");
        assert_eq!(imdn.map(|i| i.status).ok().as_deref(), Some("displayed"));
    }

    #[test]
    fn prefixed_namespace() {
        let xml = r#"<i:imdn xmlns:i="urn:ietf:params:xml:ns:imdn">
            <i:message-id> abc-1 </i:message-id>
            <i:datetime>2024-01-02T03:04:05Z</i:datetime>
            <i:display-notification><i:status><i:displayed/></i:status></i:display-notification>
        </i:imdn>"#;
        let imdn = parse(xml.as_bytes());
        let imdn = imdn.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(imdn.message_id, "abc-1");
        assert_eq!(imdn.recipient, None);
        assert_eq!((imdn.disposition_type.as_str(), imdn.status.as_str()), ("display", "displayed"));
    }

    #[test]
    fn no_namespace_is_tolerated_and_extensions_skipped() {
        let xml = r#"<imdn><message-id>m</message-id>
            <x:extra xmlns:x="urn:example:ext"><x:message-id>not me</x:message-id></x:extra>
            <!-- a comment -->
            <delivery-notification><status><delivered/><x:reason xmlns:x="urn:example:ext">ok</x:reason></status></delivery-notification>
        </imdn>"#;
        let imdn = parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((imdn.message_id.as_str(), imdn.status.as_str()), ("m", "delivered"));
        assert_eq!(imdn.date_time, None);
    }

    #[test]
    fn entities_and_cdata_in_text() {
        let xml = r#"<imdn xmlns="urn:ietf:params:xml:ns:imdn"><message-id>a&amp;b&#x41;<![CDATA[<c>]]></message-id>
            <recipient-uri>sip:bob@example.com;a=1&amp;b=2</recipient-uri>
            <delivery-notification><status><delivered/></status></delivery-notification></imdn>"#;
        let imdn = parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(imdn.message_id, "a&bA<c>");
        assert_eq!(imdn.recipient.as_deref(), Some("sip:bob@example.com;a=1&b=2"));
    }

    #[test]
    fn status_wrong_for_type_is_svc0003() {
        let r = parsed("<display-notification><status><delivered/></status></display-notification>");
        assert_eq!(value_part(r), ("IMDN status".into(), "displayed, forbidden, error".into()));
        let r = parsed("<delivery-notification><status><stored/></status></delivery-notification>");
        assert_eq!(value_part(r), ("IMDN status".into(), "delivered, failed, forbidden, error".into()));
        // Element names are case-sensitive.
        let r = parsed("<delivery-notification><status><Delivered/></status></delivery-notification>");
        assert_eq!(value_part(r).0, "IMDN status");
    }

    #[test]
    fn unknown_notification_type_is_svc0003() {
        let r = parsed("<interworking-notification><status><delivered/></status></interworking-notification>");
        assert_eq!(value_part(r), ("IMDN notification".into(), NOTIFICATIONS_TEXT.into()));
    }

    #[test]
    fn structural_refusals_are_svc0002() {
        let cases = [
            ("", "IMDN notification"),
            (
                "<delivery-notification><status><delivered/></status></delivery-notification>\
                 <display-notification><status><displayed/></status></display-notification>",
                "IMDN notification",
            ),
            ("<delivery-notification></delivery-notification>", "IMDN status"),
            ("<delivery-notification><status/></delivery-notification>", "IMDN status"),
            ("<delivery-notification><status>delivered</status></delivery-notification>", "IMDN status"),
            ("<delivery-notification><status><delivered/><failed/></status></delivery-notification>", "IMDN status"),
            (
                "<delivery-notification><status><delivered/></status><status><delivered/></status></delivery-notification>",
                "IMDN status",
            ),
        ];
        for (notification, part) in cases {
            assert_eq!(invalid_part(parsed(notification)), part, "{notification}");
        }
    }

    #[test]
    fn message_id_refusals() {
        let n = "<delivery-notification><status><delivered/></status></delivery-notification>";
        for body in [
            format!("<imdn xmlns=\"{IMDN_NS}\">{n}</imdn>"),
            format!("<imdn xmlns=\"{IMDN_NS}\"><message-id>  </message-id>{n}</imdn>"),
            format!("<imdn xmlns=\"{IMDN_NS}\"><message-id/>{n}</imdn>"),
            format!("<imdn xmlns=\"{IMDN_NS}\"><message-id>a</message-id><message-id>b</message-id>{n}</imdn>"),
        ] {
            assert_eq!(invalid_part(parse(body.as_bytes())), "IMDN message-id", "{body}");
        }
    }

    #[test]
    fn wrong_root_is_refused() {
        for xml in [
            r#"<imdn xmlns="urn:example:other"><message-id>x</message-id></imdn>"#,
            r#"<presence xmlns="urn:ietf:params:xml:ns:imdn"/>"#,
            r#"<p:imdn xmlns:p="urn:ietf:params:xml:ns:pidf"/>"#,
        ] {
            assert_eq!(invalid_part(parse(xml.as_bytes())), "IMDN root element", "{xml}");
        }
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let long_name = format!("<{}/>", "a".repeat(10_000));
        let inputs: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"   ".to_vec(),
            b"not xml at all".to_vec(),
            b"<imdn".to_vec(),
            b"<imdn>".to_vec(),
            b"<imdn></imdx>".to_vec(),
            b"</imdn>".to_vec(),
            b"<imdn/><imdn/>".to_vec(),
            b"<imdn/>trailing".to_vec(),
            b"<u:imdn/>".to_vec(),
            b"<imdn>&bogus;</imdn>".to_vec(),
            b"<imdn>&#0;</imdn>".to_vec(),
            b"<imdn>&amp</imdn>".to_vec(),
            b"<!DOCTYPE imdn [<!ENTITY a \"aaaa\">]><imdn>&a;</imdn>".to_vec(),
            b"<imdn>\xff\xfe</imdn>".to_vec(),
            b"\xef\xbb\xbf<imdn attr=></imdn>".to_vec(),
            b"<imdn><![CDATA[".to_vec(),
            b"<imdn><!-- </imdn>".to_vec(),
            b"<?xml version=\"1.0\"?>".to_vec(),
            long_name.into_bytes(),
        ];
        for input in inputs {
            let r = parse(&input);
            assert!(matches!(r, Err(Error::InvalidInput { .. })), "{:?} gave {r:?}", String::from_utf8_lossy(&input));
        }
        // Every proper prefix of a valid document: never a panic.
        let full = doc("<delivery-notification><status><delivered/></status></delivery-notification>");
        for i in 0..full.len() {
            let _ = parse(&full.as_bytes()[..i]);
        }
        // Every single-byte mutation of it: never a panic.
        for i in 0..full.len() {
            for b in [b'<', b'>', b'/', b'&', b':', b'"', b'\0', 0xff, b'x'] {
                let mut bytes = full.clone().into_bytes();
                bytes[i] = b;
                let _ = parse(&bytes);
            }
        }
    }

    #[test]
    fn oversized_and_deep_inputs_are_refused() {
        let padding = " ".repeat(MAX_DOCUMENT_BYTES);
        let big =
            doc(&format!("<delivery-notification><status><delivered/></status></delivery-notification>{padding}"));
        assert_eq!(invalid_part(parse(big.as_bytes())), "IMDN document");

        let deep = format!("<imdn>{}{}</imdn>", "<a>".repeat(100), "</a>".repeat(100));
        assert_eq!(invalid_part(parse(deep.as_bytes())), "IMDN document");
        // Deep but self-closing at the bottom level, and right at the limit.
        let edge = format!("{}<x/>{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert_eq!(invalid_part(parse(edge.as_bytes())), "IMDN document");

        let wide = doc(&format!(
            "<delivery-notification><status><delivered/></status></delivery-notification>{}",
            "<x:e xmlns:x=\"urn:x\"/>".repeat(MAX_ELEMENTS)
        ));
        assert!(wide.len() <= MAX_DOCUMENT_BYTES);
        assert_eq!(invalid_part(parse(wide.as_bytes())), "IMDN document");
    }

    #[test]
    fn validate_pairs() {
        assert!(validate("delivery", "delivered").is_ok());
        assert!(validate("processing", "stored").is_ok());
        assert!(validate("display", "displayed").is_ok());
        assert_eq!(
            value_part(validate("display", "processed")),
            ("attribute DispositionStatus".into(), "displayed, forbidden, error".into())
        );
        assert_eq!(
            value_part(validate("Delivery", "delivered")),
            ("attribute DispositionType".into(), TYPES_TEXT.into())
        );
        assert_eq!(value_part(validate("delivery", "DELIVERED")).0, "attribute DispositionStatus");
        assert_eq!(value_part(validate("", "")).0, "attribute DispositionType");
    }

    #[test]
    fn attributes_of_a_notification() {
        let imdn = parsed("<delivery-notification><status><delivered/></status></delivery-notification>");
        let imdn = imdn.unwrap_or_else(|e| panic!("{e}"));
        let attrs = attributes(&imdn);
        let pairs: Vec<(&str, &str)> =
            attrs.iter().map(|a| (a.name.as_str(), a.values.first().map(String::as_str).unwrap_or(""))).collect();
        assert_eq!(
            pairs,
            [
                ("Message-Context", "imdn-message"),
                ("DispositionType", "delivery"),
                ("DispositionStatus", "delivered"),
                ("DispositionOriginalMessageID", "34jk324j"),
                ("DispositionOriginalTo", "im:bob@example.com"),
                ("Date", "2008-04-04T12:16:49-05:00"),
            ]
        );
        assert!(attrs.iter().all(|a| a.values.len() == 1));
        assert!(validate_attributes(&attrs).is_ok());
    }

    #[test]
    fn attributes_fallbacks() {
        let base = Imdn {
            message_id: "m1".into(),
            date_time: Some("yesterday".into()),
            recipient: None,
            original_recipient: Some("tel:+15195551212".into()),
            disposition_type: "display".into(),
            status: "displayed".into(),
        };
        let attrs = attributes(&base);
        let get = |attrs: &[Attribute], n: &str| attrs.iter().find(|a| a.name == n).map(|a| a.values.clone());
        assert_eq!(get(&attrs, "DispositionOriginalTo"), Some(vec!["tel:+15195551212".to_owned()]));
        assert_eq!(get(&attrs, "Date"), None, "a datetime that is not RFC 3339 is left out");

        let recipient_first = Imdn { recipient: Some("sip:bob@example.com".into()), date_time: None, ..base.clone() };
        assert_eq!(
            get(&attributes(&recipient_first), "DispositionOriginalTo"),
            Some(vec!["sip:bob@example.com".into()])
        );

        let neither = Imdn { original_recipient: None, ..base };
        let attrs = attributes(&neither);
        assert_eq!(get(&attrs, "DispositionOriginalTo"), None);
        assert_eq!(
            invalid_part(validate_attributes(&attrs).map(|_| neither.clone())),
            "attribute DispositionOriginalTo"
        );
    }

    fn attr(name: &str, values: &[&str]) -> Attribute {
        Attribute { name: name.into(), values: values.iter().map(|v| v.to_string()).collect() }
    }

    fn direct() -> Vec<Attribute> {
        vec![
            attr("Message-Context", &["imdn-message"]),
            attr("DispositionType", &["display"]),
            attr("DispositionStatus", &["displayed"]),
            attr("DispositionOriginalMessageID", &["Xs1a2b3"]),
            attr("DispositionOriginalTo", &["tel:+15195551212"]),
            attr("Direction", &["In"]),
        ]
    }

    fn check(attrs: &[Attribute]) -> Result<()> {
        validate_attributes(attrs)
    }

    #[test]
    fn direct_deposit_accepted() {
        assert!(check(&direct()).is_ok());
        // Names are case-insensitive, Message-Context's value too.
        let mut attrs = direct();
        for a in &mut attrs {
            a.name = a.name.to_ascii_uppercase();
        }
        attrs[0].values = vec!["IMDN-Message".into()];
        assert!(check(&attrs).is_ok());
    }

    fn refused_part(attrs: &[Attribute]) -> String {
        match check(attrs) {
            Err(Error::InvalidInput { part }) => part,
            other => panic!("expected SVC0002, got {other:?}"),
        }
    }

    #[test]
    fn direct_deposit_missing_or_malformed() {
        for name in [
            "Message-Context",
            "DispositionType",
            "DispositionStatus",
            "DispositionOriginalMessageID",
            "DispositionOriginalTo",
        ] {
            let without: Vec<Attribute> = direct().into_iter().filter(|a| a.name != name).collect();
            assert_eq!(refused_part(&without), format!("attribute {name}"));

            let mut empty = direct();
            empty.iter_mut().filter(|a| a.name == name).for_each(|a| a.values.clear());
            assert_eq!(refused_part(&empty), format!("attribute {name}"));

            let mut blank = direct();
            blank.iter_mut().filter(|a| a.name == name).for_each(|a| a.values = vec![" ".into()]);
            assert_eq!(refused_part(&blank), format!("attribute {name}"));

            let mut two = direct();
            two.push(attr(name, &["again"]));
            assert_eq!(refused_part(&two), format!("attribute {name}"));
        }
    }

    #[test]
    fn direct_deposit_illegal_values() {
        let mut attrs = direct();
        attrs[0].values = vec!["pager-message".into()];
        assert_eq!(value_part(check(&attrs)), ("attribute Message-Context".into(), "imdn-message".into()));

        let mut attrs = direct();
        attrs[1].values = vec!["read".into()];
        assert_eq!(value_part(check(&attrs)), ("attribute DispositionType".into(), TYPES_TEXT.into()));

        let mut attrs = direct();
        attrs[2].values = vec!["delivered".into()];
        assert_eq!(
            value_part(check(&attrs)),
            ("attribute DispositionStatus".into(), "displayed, forbidden, error".into())
        );
    }
}
