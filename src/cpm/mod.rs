//! CPM semantics over the message store (OMA CPM Message Storage using RESTful API):
//! mapping CPIM, IMDN, call-log, SMS and MMS deposits onto NMS attributes, correlation,
//! folder placement and the session-object rules. See docs/cpm.md.

pub mod cpim;

use crate::config::CpmSettings;
use crate::error::{Error, Result};
use crate::store::{Attribute, PayloadPart};

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

fn has(attrs: &[Attribute], name: &str) -> bool {
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
    if let Some(head) = got.cpim {
        for a in head.attributes()? {
            if !has(&attributes, &a.name) {
                attributes.push(a);
            }
        }
        if correlation_id.is_none() {
            correlation_id = head.imdn_message_id();
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
        if g.eq_ignore_ascii_case("yes")
            && let Some(c) = NOT_GROUP.iter().find(|k| is(k))
        {
            return Err(Error::invalid(format!(
                "attribute Is-CPM-Group (a {c} object is not from a CPM group session)"
            )));
        }
    }
    if is("multimedia-message") && correlation_id.is_none() {
        correlation_id = attr(&attributes, "Message-ID").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    }
    if is("pager-message") {
        check_sms(got)?;
        let text = got.first_text.unwrap_or_default();
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
