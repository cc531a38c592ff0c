//! CPM semantics over the message store (OMA CPM Message Storage using RESTful API):
//! mapping CPIM, IMDN, call-log, SMS and MMS deposits onto NMS attributes, correlation,
//! folder placement, and what happens when objects leave their folders (the session-object
//! rule, IMDNs going with their messages). See docs/cpm.md.

pub mod calllog;
pub mod correlation;
pub mod cpim;
pub mod imdn;
pub mod session_rule;

use async_trait::async_trait;
use base64::Engine;

use crate::config::CpmSettings;
use crate::error::{Error, Result};
use crate::model::{Attribute, PayloadPart};
use crate::store::{Departing, Departure, DepartureJudge, DeparturePolicy, Facts};

/// `Message-Context` values of the CPM binding (5.3, Appendices C-H) and of NMS Appendix I.
pub const MESSAGE_CONTEXTS: &[&str] = &[
    "chat-message",
    "file-message",
    "session-info-message",
    "group-state-message",
    "imdn-message",
    "standalone-message",
    "pager-message",
    "multimedia-message",
    "voice-message",
    "video-message",
    "fax-message",
    "text-message",
    "call-log-message",
    "none",
];

/// Message contexts that are never exchanged in a CPM group session: `Is-CPM-Group` may
/// only say `no` on them (deployed clients send `no` on SMS).
const NOT_GROUP: &[&str] = &["pager-message", "multimedia-message", "call-log-message"];

/// What a deposit brought besides its root fields.
#[derive(Default)]
pub struct Received<'a> {
    pub cpim: Option<&'a cpim::CpimHead>,
    /// A disposition notification document carried by the payload.
    pub imdn: Option<&'a [u8]>,
    pub parts: &'a [PayloadPart],
    /// The text of the first `text/plain` part (when it was small enough to keep).
    pub first_text: Option<&'a str>,
}

/// A deposit's identity as CPM completes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completed {
    pub attributes: Vec<Attribute>,
    pub correlation_id: Option<String>,
    pub correlation_tag: Option<String>,
}

pub fn attr<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a str> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name)).and_then(|a| a.values.first()).map(String::as_str)
}

pub(crate) fn has(attrs: &[Attribute], name: &str) -> bool {
    attrs.iter().any(|a| a.name.eq_ignore_ascii_case(name))
}

/// Complete and check a deposit under the CPM rules (CPM binding 5.3, 6.5, 7.4): the
/// attributes a CPIM payload carries (those the depositor set win), `correlationId` from
/// the IMDN or MMS Message-ID when not given, and the checks of `Message-Context`,
/// `Direction`, `Is-CPM-Group` and SMS payloads.
pub fn complete(
    policy: &CpmSettings,
    attributes: Vec<Attribute>,
    correlation_id: Option<String>,
    correlation_tag: Option<String>,
    got: &Received<'_>,
) -> Result<Completed> {
    let mut attributes = attributes;
    let mut correlation_id = correlation_id;
    let mut correlation_tag = correlation_tag;
    let carried = got.cpim.map(cpim::CpimHead::attributes).transpose()?;
    if let (Some(head), Some(carried)) = (got.cpim, &carried) {
        for a in carried.iter().cloned() {
            // A disposition notification has no payload to describe.
            let undescribed = a.name.eq_ignore_ascii_case("Content-Type") && got.imdn.is_some();
            if !undescribed && !has(&attributes, &a.name) {
                attributes.push(a);
            }
        }
        if correlation_id.is_none() {
            correlation_id = head.imdn_message_id();
        }
    }
    if let Some(xml) = got.imdn {
        // A disposition notification: its content becomes attributes (CPM binding 5.3.10).
        let n = imdn::parse(xml)?;
        let mut derived = imdn::attributes(&n);
        if !derived.iter().any(|a| a.name.eq_ignore_ascii_case("DispositionOriginalTo"))
            && let Some(from) = carried.as_deref().and_then(|c| attr(c, "From")).map(str::to_string)
        {
            // The receiver client that sent it.
            derived.push(Attribute { name: "DispositionOriginalTo".into(), values: vec![from] });
        }
        for a in derived {
            if !has(&attributes, &a.name) {
                attributes.push(a);
            }
        }
    }
    let context = attr(&attributes, "Message-Context").map(str::to_string);
    if let Some(c) = &context
        && !policy.allow_unknown_message_context
        && !MESSAGE_CONTEXTS.iter().any(|k| k.eq_ignore_ascii_case(c))
    {
        return Err(Error::invalid_value(format!("attribute Message-Context {c}"), MESSAGE_CONTEXTS.join(", ")));
    }
    let is = |k: &str| context.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(k));
    if let Some(d) = attr(&attributes, "Direction")
        && !(d.eq_ignore_ascii_case("In") || d.eq_ignore_ascii_case("Out"))
    {
        return Err(Error::invalid_value(format!("attribute Direction {d}"), "In, Out"));
    }
    if let Some(g) = attr(&attributes, "Is-CPM-Group") {
        if !(g.eq_ignore_ascii_case("yes") || g.eq_ignore_ascii_case("no")) {
            return Err(Error::invalid_value(format!("attribute Is-CPM-Group {g}"), "yes, no"));
        }
        let not_group =
            NOT_GROUP.iter().find(|k| is(k)).copied().or(calllog::is_call_log(&attributes).then_some("call log"));
        if g.eq_ignore_ascii_case("yes")
            && let Some(c) = not_group
        {
            return Err(Error::invalid(format!(
                "attribute Is-CPM-Group (a {c} object is not from a CPM group session)"
            )));
        }
    }
    if is(imdn::MESSAGE_CONTEXT) {
        imdn::validate_attributes(&attributes)?;
        if !got.parts.is_empty() {
            return Err(Error::invalid("payload (an IMDN object has none: its content is its attributes)"));
        }
    } else if got.imdn.is_some() {
        return Err(Error::invalid_value(
            format!(
                "attribute Message-Context {} (the payload is a disposition notification)",
                context.unwrap_or_default()
            ),
            imdn::MESSAGE_CONTEXT,
        ));
    }
    if calllog::is_call_log(&attributes) {
        calllog::validate(&attributes, got.parts)?;
    }
    if is("multimedia-message") && correlation_id.is_none() {
        correlation_id = attr(&attributes, "Message-ID").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    }
    if is("pager-message") {
        check_sms(got)?;
        // A part sent base64-encoded is stored as sent; its text is what it encodes.
        let decoded = got
            .parts
            .first()
            .filter(|p| p.content_encoding.as_deref().is_some_and(|e| e.trim().eq_ignore_ascii_case("base64")));
        let decoded = match decoded {
            Some(_) => {
                let raw: String = got.first_text.unwrap_or_default().split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .map_err(|_| Error::invalid("payload (base64 SMS text)"))?;
                Some(String::from_utf8(bytes).map_err(|_| Error::invalid("payload (an SMS is UTF-8 text)"))?)
            }
            None => None,
        };
        let text = decoded.as_deref().unwrap_or(got.first_text.unwrap_or_default());
        if correlation_tag.is_none() {
            let facts = correlation::SmsFacts {
                text,
                from: attr(&attributes, "From"),
                to: attr(&attributes, "To"),
                incoming: attr(&attributes, "Direction").is_some_and(|d| d.eq_ignore_ascii_case("In")),
            };
            correlation_tag = Some(correlation::correlation_tag(policy.correlation_tag, &facts));
        }
        let max = policy.sms_inline_text_max as usize;
        if max > 0 && !has(&attributes, "TextContent") && text.chars().count() <= max {
            attributes.push(Attribute { name: "TextContent".into(), values: vec![text.to_string()] });
        }
    }
    Ok(Completed { attributes, correlation_id, correlation_tag })
}

/// An SMS is one `text/plain` part in UTF-8 (CPM binding 5.4.2.1).
fn check_sms(got: &Received<'_>) -> Result<()> {
    let bad = || Error::invalid("payload (an SMS is one text/plain part in UTF-8)");
    let [part] = got.parts else { return Err(bad()) };
    let m: mime::Mime = part.content_type.parse().map_err(|_| bad())?;
    if m.essence_str() != "text/plain" {
        return Err(bad());
    }
    if let Some(cs) = m.get_param(mime::CHARSET)
        && !cs.as_str().eq_ignore_ascii_case("utf-8")
    {
        return Err(bad());
    }
    if got.first_text.is_none() {
        return Err(bad());
    }
    Ok(())
}

/// Where an object deposited without a parent folder goes (CPM binding 7.3.3.1, RCC.09
/// 6.3.1 as docs/cpm.md describes it), below the depositor's area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Not a CPM object (no `Message-Context`): the root folder.
    Root,
    /// Next to the message an IMDN is about (its `DispositionOriginalMessageID`), when that
    /// message is stored; otherwise by `fallback`.
    BesideMessage { message_id: String, fallback: Box<Placement> },
    /// The conversation history folder `<Conversation-ID>`, or its session history subfolder
    /// `<Contribution-ID>`: made when the object belongs to a session (session metadata, or
    /// a message of a CPM session), joined when it exists.
    Conversation { conversation: String, contribution: Option<String>, session_metadata: bool },
    /// The folder of the remote party of a 1-1 exchange (SMS, MMS, call log).
    Party(String),
    /// The area itself (a CPM object with nothing to file it by).
    Area,
}

/// Message contexts of 1-1 exchanges filed by remote party.
const BY_PARTY: &[&str] = &["pager-message", "multimedia-message", "call-log-message"];

/// Whether a message was exchanged in a CPM session (not in pager mode): its
/// `P-Asserted-Service` is the CPM session service, or it comes from a CPM group session.
fn session_based(attrs: &[Attribute]) -> bool {
    attr(attrs, "P-Asserted-Service").is_some_and(|s| s.to_ascii_lowercase().contains("oma.cpm.session"))
        || attr(attrs, "Is-CPM-Group").is_some_and(|g| g.eq_ignore_ascii_case("yes"))
}

/// A folder name from an identifier (a folder name cannot contain `/`).
pub fn folder_name(id: &str) -> String {
    id.trim().replace('/', "%2F")
}

/// Decide where an object with these (completed) attributes goes.
pub fn placement(attrs: &[Attribute]) -> Placement {
    let call_log = calllog::is_call_log(attrs);
    let context = match attr(attrs, "Message-Context") {
        Some(c) => c.to_ascii_lowercase(),
        None if call_log => "call-log-message".to_string(),
        None => return Placement::Root,
    };
    let nonempty = |name: &str| attr(attrs, name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    let remote = || {
        let outgoing = attr(attrs, "Direction").is_some_and(|d| d.eq_ignore_ascii_case("Out"));
        let party = if outgoing { nonempty("To") } else { nonempty("From") };
        party.map(|p| cpim::address(&p))
    };
    let by_party = call_log || BY_PARTY.contains(&context.as_str());
    let by_conversation = nonempty("Conversation-ID").filter(|_| !by_party);
    let main = match (by_conversation, remote()) {
        (Some(conversation), _) => Placement::Conversation {
            conversation,
            contribution: nonempty("Contribution-ID"),
            session_metadata: matches!(context.as_str(), "session-info-message" | "group-state-message")
                || session_based(attrs),
        },
        (None, Some(party)) => Placement::Party(party),
        (None, None) => Placement::Area,
    };
    match (context.as_str(), nonempty("DispositionOriginalMessageID")) {
        ("imdn-message", Some(message_id)) => Placement::BesideMessage { message_id, fallback: Box::new(main) },
        _ => main,
    }
}

/// The CPM rules on objects leaving their folders, which the store applies inside the
/// deleting, expiring or moving transaction: a deleted or expired message takes the IMDN
/// objects about it along ([`imdn::about`]), and session objects stay while their session
/// has content ([`session_rule::SessionRule`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Departures;

#[async_trait]
impl DeparturePolicy for Departures {
    async fn companions(&self, facts: &mut dyn Facts, object: &Departing, how: Departure) -> Result<Vec<i64>> {
        match (how, &object.correlation_id) {
            (Departure::Deleted | Departure::Expired, Some(message_id)) => imdn::about(facts, message_id).await,
            _ => Ok(Vec::new()),
        }
    }

    fn judge(&self, how: Departure, leaving: &[i64]) -> Box<dyn DepartureJudge> {
        Box::new(session_rule::SessionRule::new(how, leaving))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Vec<Attribute> {
        pairs.iter().map(|(n, v)| Attribute { name: n.to_string(), values: vec![v.to_string()] }).collect()
    }

    #[test]
    fn objects_are_filed_by_conversation_session_or_party() {
        assert_eq!(placement(&attrs(&[("Subject", "x")])), Placement::Root);
        let session = attrs(&[
            ("Message-Context", "chat-message"),
            ("Conversation-ID", "c1"),
            ("Contribution-ID", "s1"),
            ("P-Asserted-Service", "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.session"),
        ]);
        assert!(matches!(placement(&session), Placement::Conversation { session_metadata: true, .. }));
        let chat = attrs(&[("Message-Context", "chat-message"), ("Conversation-ID", "c1"), ("Contribution-ID", "s1")]);
        assert_eq!(
            placement(&chat),
            Placement::Conversation {
                conversation: "c1".into(),
                contribution: Some("s1".into()),
                session_metadata: false
            }
        );
        let info =
            attrs(&[("Message-Context", "Session-Info-Message"), ("Conversation-ID", "c1"), ("Contribution-ID", "s1")]);
        assert!(matches!(placement(&info), Placement::Conversation { session_metadata: true, .. }));
        let sms_in = attrs(&[
            ("Message-Context", "pager-message"),
            ("Direction", "In"),
            ("From", "tel:+1555"),
            ("To", "tel:+1212"),
            ("Conversation-ID", "ignored"),
        ]);
        assert_eq!(placement(&sms_in), Placement::Party("tel:+1555".into()));
        let mms_out = attrs(&[
            ("Message-Context", "multimedia-message"),
            ("Direction", "OUT"),
            ("From", "tel:+1212"),
            ("To", "Bob <tel:+1555>"),
        ]);
        assert_eq!(placement(&mms_out), Placement::Party("tel:+1555".into()));
        assert_eq!(placement(&attrs(&[("Message-Context", "chat-message")])), Placement::Area);
        let imdn = attrs(&[
            ("Message-Context", "imdn-message"),
            ("DispositionOriginalMessageID", "m1"),
            ("From", "tel:+1555"),
        ]);
        assert_eq!(
            placement(&imdn),
            Placement::BesideMessage {
                message_id: "m1".into(),
                fallback: Box::new(Placement::Party("tel:+1555".into()))
            }
        );
        assert_eq!(folder_name(" sip:a/b@x "), "sip:a%2Fb@x");
    }
}
