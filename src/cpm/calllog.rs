//! Call log objects (CPM Message Storage §5.3.9.3, Table 2; example in Appendix H): a
//! non-CPM object recording one call, its facts carried by attributes, optionally with
//! payload parts (a location, an icon, enriched-calling content) that attributes point at
//! by `cid:` URL.
//!
//! Which objects are call logs: CPM gives call logs **no `Message-Context` value**. §5.3.9.3
//! does not name one, and Appendix H's example carries `group-state-message`, which is the
//! Group State Object's value (§5.3.4, Appendix G) and evidently copied from there. So
//! [`validate`] does not look at `Message-Context` at all, and [`is_call_log`] recognises a
//! call log by the attributes only Table 2 defines (`Call-Type`, `Call-Disposition`,
//! `Call-Duration`). The caller decides which objects to hold to these rules.
//!
//! Case: NMS §5.3.2.5 makes attribute values case-sensitive unless stated otherwise. Stated
//! otherwise here: `Direction` (NMS Appendix I: case-insensitive) and `Priority` (Table 2
//! takes its values from the RFC 3261 header, whose tokens are case-insensitive; Appendix H
//! itself writes `Urgent`). Every other enumeration must be spelt as Table 2 spells it.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::error::{Error, Result};
use crate::model::{Attribute, PayloadPart};

/// The `From` of a call from an anonymous originator (Table 2, RFC 3323).
pub const ANONYMOUS_FROM: &str = "sip:anonymous@anonymous.invalid";
/// The `From` of a call whose originator's address came with a restriction indication.
pub const RESTRICTED_FROM: &str = "restricted";

const CALL_TYPES: &[&str] = &["voice", "video"];
const VERIFIED_FROM_STATUSES: &[&str] = &["TN-Validation-Passed", "TN-Validation-Failed", "No-TN-Validation"];
const PRIORITIES: &[&str] = &["normal", "urgent", "non-urgent", "emergency"];
const DIRECTIONS: &[&str] = &["In", "Out"];
/// `Call-Disposition` of an incoming call (Table 2).
const INCOMING_DISPOSITIONS: &[&str] = &["ANSWERED", "LEFT_MESSAGE", "HUNG_UP", "REJECTED", "BUSY", "BLACKLISTED"];
/// `Call-Disposition` of an outgoing call (Table 2), as the spec spells them.
const OUTGOING_DISPOSITIONS: &[&str] = &["OUTGOING ANSWERED", "OUTGOING UNANSWERED", "HUNG_UP_BEFORE_ANSWER", "BUSY"];
/// Also accepted for outgoing calls: Table 2 writes the two `OUTGOING` values with a space
/// where every other value has an underscore, which looks like a typo, so the underscore
/// spellings are taken too (and kept as sent).
const OUTGOING_DISPOSITION_ALIASES: &[&str] = &["OUTGOING_ANSWERED", "OUTGOING_UNANSWERED"];
/// Longest `Call-Duration` accepted, in digits (up to 9 999 999 999 s, far past any call).
const MAX_DURATION_DIGITS: usize = 10;

/// Whether the attributes describe a call log: one of the attributes only Table 2 defines
/// is present (see the module doc for why `Message-Context` cannot tell).
pub fn is_call_log(attrs: &[Attribute]) -> bool {
    ["Call-Type", "Call-Disposition", "Call-Duration"]
        .iter()
        .any(|n| attrs.iter().any(|a| a.name.eq_ignore_ascii_case(n)))
}

/// Check a call log object's attributes against CPM Table 2, and its `cid:` references
/// against its payload parts.
///
/// Attribute names are case-insensitive; values given under repeated attributes of the same
/// name count together (the store merges them). A missing mandatory attribute, a blank
/// value, several values where one is meant, or a malformed value is 400 SVC0002 naming the
/// attribute (`attribute Call-Duration`); a value outside an enumeration is 400 SVC0003
/// with the legal values (`attribute Call-Type`, `voice, video`). Rules, in checking order:
///
/// * `From` (mandatory, one value): any address, but an anonymous originator must be written
///   exactly `sip:anonymous@anonymous.invalid` and a restricted one exactly `restricted`;
///   other spellings of those two (`anonymous`, `Anonymous <sip:anonymous@…>`,
///   `sip:anonymous@example.com`, `Restricted`) are SVC0003 naming the right one.
/// * `Verified-From-Status` (optional): `TN-Validation-Passed`, `TN-Validation-Failed`,
///   `No-TN-Validation`.
/// * `To` (mandatory): at least one value, none blank. `Cc` (optional): if there, at least
///   one value, none blank (likewise `Call-Info` and `Geolocation`).
/// * `Call-Type` (mandatory): `voice` or `video`.
/// * `Call-subtype` (optional, one value): not enumerated, as Table 2 marks its values FFS.
/// * `Date` (optional, one value; the server sets it when absent): an RFC 3339 date-time
///   (NMS Appendix I: `xsd:dateTimeStamp`).
/// * `Device-Name`, `Subject` (optional): one value.
/// * `Direction` (mandatory): `In` or `Out`, case-insensitive.
/// * `Call-Disposition` (mandatory): for `In` one of `ANSWERED`, `LEFT_MESSAGE`,
///   `HUNG_UP`, `REJECTED`, `BUSY`, `BLACKLISTED`; for `Out` one of `OUTGOING ANSWERED`,
///   `OUTGOING UNANSWERED`, `HUNG_UP_BEFORE_ANSWER`, `BUSY` (underscore spellings of the
///   first two also taken: Table 2's space in them looks like a typo).
/// * `Call-Duration` (mandatory): whole seconds, ASCII digits only (no sign, no fraction, no
///   ISO 8601 duration), at most 10 digits.
/// * `Priority` (optional): `normal`, `urgent`, `non-urgent`, `emergency`, case-insensitive.
/// * `Call-Info` (optional, several allowed; each value may hold a comma-separated list as
///   the SIP header does): each entry `<URI>` or a bare URI, optionally followed by
///   `;params` (Appendix H: `<http://server.com/myIcon.jpeg>;purpose=icon`). The URI must be
///   absolute; a `cid:` URI must name a payload part.
/// * `Geolocation` (optional, several allowed; Appendix H spells the name `Geo-Location`,
///   which is taken as the same attribute): each entry as for `Call-Info`, and Table 2 says
///   it is "set to the cid", so the URI must be a `cid:` URI naming a payload part.
/// * `Enriched-Content` (optional, one value): a `multipart/*` media type, and the object
///   must then have payload parts.
///
/// A `cid:` URI (RFC 2392) names the part whose `Content-ID`, without angle brackets, equals
/// the URI's percent-decoded remainder, also without angle brackets (Appendix H writes the
/// Content-ID bare, `foo1@bar.net`; RFC 2045 writes it `<foo1@bar.net>`; both match).
/// The comparison is exact: Content-IDs are message ids, whose local part is case-sensitive.
///
/// `Data-Usage` (FFS in Table 2) and attributes Table 2 does not name are not checked.
pub fn validate(attrs: &[Attribute], parts: &[PayloadPart]) -> Result<()> {
    check_from(mandatory(attrs, "From")?)?;
    if let Some(v) = optional(attrs, "Verified-From-Status")? {
        exact_one_of(v, VERIFIED_FROM_STATUSES, "Verified-From-Status")?;
    }
    let to = values(attrs, "To");
    if to.is_empty() || to.iter().any(|v| v.trim().is_empty()) {
        return Err(invalid("To"));
    }
    several(attrs, "Cc")?;
    exact_one_of(mandatory(attrs, "Call-Type")?, CALL_TYPES, "Call-Type")?;
    optional(attrs, "Call-subtype")?;
    if let Some(date) = optional(attrs, "Date")?
        && chrono::DateTime::parse_from_rfc3339(date).is_err()
    {
        return Err(invalid("Date"));
    }
    optional(attrs, "Device-Name")?;

    let direction = mandatory(attrs, "Direction")?;
    let incoming = if direction.eq_ignore_ascii_case("In") {
        true
    } else if direction.eq_ignore_ascii_case("Out") {
        false
    } else {
        return Err(Error::invalid_value("attribute Direction", DIRECTIONS.join(", ")));
    };
    let disposition = mandatory(attrs, "Call-Disposition")?;
    let legal = if incoming { INCOMING_DISPOSITIONS } else { OUTGOING_DISPOSITIONS };
    if !legal.contains(&disposition) && (incoming || !OUTGOING_DISPOSITION_ALIASES.contains(&disposition)) {
        return Err(Error::invalid_value("attribute Call-Disposition", legal.join(", ")));
    }

    let duration = mandatory(attrs, "Call-Duration")?;
    if duration.len() > MAX_DURATION_DIGITS || !duration.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("Call-Duration"));
    }
    optional(attrs, "Subject")?;
    if let Some(p) = optional(attrs, "Priority")?
        && !PRIORITIES.iter().any(|l| l.eq_ignore_ascii_case(p))
    {
        return Err(Error::invalid_value("attribute Priority", PRIORITIES.join(", ")));
    }

    for value in several(attrs, "Call-Info")? {
        for uri in header_uris(value).ok_or_else(|| invalid("Call-Info"))? {
            let ok =
                if is_cid(uri) { cid(uri).is_some_and(|id| names_a_part(&id, parts)) } else { is_absolute_uri(uri) };
            if !ok {
                return Err(invalid("Call-Info"));
            }
        }
    }
    for name in ["Geolocation", "Geo-Location"] {
        for value in several(attrs, name)? {
            let uris = header_uris(value).ok_or_else(|| invalid(name))?;
            if !uris.iter().all(|uri| cid(uri).is_some_and(|id| names_a_part(&id, parts))) {
                return Err(invalid(name));
            }
        }
    }

    if let Some(media_type) = optional(attrs, "Enriched-Content")? {
        let media_type = media_type.trim();
        let multipart = media_type.get(..10).is_some_and(|p| p.eq_ignore_ascii_case("multipart/"))
            && media_type.get(10..).is_some_and(|sub| sub.starts_with(|c: char| c.is_ascii_alphanumeric()));
        if !multipart {
            return Err(Error::invalid_value("attribute Enriched-Content", "a multipart/* media type"));
        }
        if parts.is_empty() {
            return Err(invalid("Enriched-Content"));
        }
    }
    Ok(())
}

fn invalid(name: &str) -> Error {
    Error::invalid(format!("attribute {name}"))
}

/// All values of the attributes called `name` (case-insensitive), in order.
fn values<'a>(attrs: &'a [Attribute], name: &str) -> Vec<&'a str> {
    attrs
        .iter()
        .filter(|a| a.name.eq_ignore_ascii_case(name))
        .flat_map(|a| a.values.iter().map(String::as_str))
        .collect()
}

/// The values of an optional multi-valued attribute: none if it is absent, else at least one
/// and none blank.
fn several<'a>(attrs: &'a [Attribute], name: &str) -> Result<Vec<&'a str>> {
    let all = values(attrs, name);
    let present = attrs.iter().any(|a| a.name.eq_ignore_ascii_case(name));
    if present && (all.is_empty() || all.iter().any(|v| v.trim().is_empty())) {
        return Err(invalid(name));
    }
    Ok(all)
}

/// The one non-blank value of a mandatory single-valued attribute.
pub(crate) fn mandatory<'a>(attrs: &'a [Attribute], name: &str) -> Result<&'a str> {
    optional(attrs, name)?.ok_or_else(|| invalid(name))
}

/// The one non-blank value of an optional single-valued attribute, if it is there at all.
/// An attribute that is there with no value, a blank one, or several is malformed.
fn optional<'a>(attrs: &'a [Attribute], name: &str) -> Result<Option<&'a str>> {
    if !attrs.iter().any(|a| a.name.eq_ignore_ascii_case(name)) {
        return Ok(None);
    }
    match values(attrs, name).as_slice() {
        [v] if !v.trim().is_empty() => Ok(Some(v)),
        _ => Err(invalid(name)),
    }
}

fn exact_one_of(value: &str, legal: &[&str], name: &str) -> Result<()> {
    if legal.contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid_value(format!("attribute {name}"), legal.join(", ")))
    }
}

/// `From`: the two special values must be spelt exactly (Table 2).
fn check_from(from: &str) -> Result<()> {
    if from == ANONYMOUS_FROM || from == RESTRICTED_FROM {
        return Ok(());
    }
    let lower = from.trim().to_ascii_lowercase();
    let addr = match (lower.find('<'), lower.rfind('>')) {
        (Some(open), Some(close)) if open < close => &lower[open + 1..close],
        _ => lower.as_str(),
    };
    let anonymous = addr == "anonymous"
        || addr.starts_with("sip:anonymous@")
        || addr.starts_with("sips:anonymous@")
        || addr.starts_with("tel:anonymous")
        || addr.ends_with("@anonymous.invalid");
    if anonymous {
        return Err(Error::invalid_value("attribute From", ANONYMOUS_FROM));
    }
    if addr == RESTRICTED_FROM {
        return Err(Error::invalid_value("attribute From", RESTRICTED_FROM));
    }
    Ok(())
}

/// The URIs of a SIP `Call-Info`/`Geolocation` header value: comma-separated entries, each
/// `<URI>` or a bare URI, then optional `;params`. `None` if an entry is malformed.
fn header_uris(value: &str) -> Option<Vec<&str>> {
    let mut entries = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.checked_sub(1)?,
            ',' if depth == 0 => {
                entries.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    entries.push(&value[start..]);
    entries
        .into_iter()
        .map(|entry| {
            let entry = entry.trim();
            let uri = if let Some(rest) = entry.strip_prefix('<') {
                let (uri, after) = rest.split_once('>')?;
                let after = after.trim_start();
                if !(after.is_empty() || after.starts_with(';')) {
                    return None;
                }
                uri.trim()
            } else {
                entry.split(';').next().unwrap_or_default().trim()
            };
            (!uri.is_empty() && !uri.contains(char::is_whitespace)).then_some(uri)
        })
        .collect()
}

/// Whether the URI has the `cid` scheme.
fn is_cid(uri: &str) -> bool {
    uri.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("cid:"))
}

/// The Content-ID a `cid:` URI names (percent-decoded, angle brackets removed); `None` if
/// the URI is not a `cid:` URI or does not decode to UTF-8.
fn cid(uri: &str) -> Option<Cow<'_, str>> {
    let rest = uri.get(4..).filter(|_| is_cid(uri))?;
    let decoded = percent_decode_str(rest).decode_utf8().ok()?;
    Some(match decoded {
        Cow::Borrowed(s) => Cow::Borrowed(unbracket(s)),
        Cow::Owned(s) => Cow::Owned(unbracket(&s).to_owned()),
    })
}

fn unbracket(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<').and_then(|s| s.strip_suffix('>')).unwrap_or(s)
}

/// Whether a payload part has this Content-ID (compared without angle brackets).
fn names_a_part(content_id: &str, parts: &[PayloadPart]) -> bool {
    !content_id.is_empty() && parts.iter().any(|p| p.content_id.as_deref().is_some_and(|c| unbracket(c) == content_id))
}

/// An absolute URI: `scheme ":" something` (RFC 3986 scheme syntax).
fn is_absolute_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else { return false };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PartData;

    fn attr(name: &str, values: &[&str]) -> Attribute {
        Attribute { name: name.into(), values: values.iter().map(|v| v.to_string()).collect() }
    }

    fn part(content_id: Option<&str>) -> PayloadPart {
        PayloadPart {
            part_id: "1".into(),
            content_type: "application/pidf+xml".into(),
            content_disposition: Some("inline; name=geo-location".into()),
            content_id: content_id.map(str::to_owned),
            content_location: None,
            content_encoding: None,
            file_icon: None,
            size: 10,
            data: PartData::Inline(b"<presence/>".to_vec()),
        }
    }

    /// CPM Appendix H, attribute for attribute (its `Message-Context` typo included).
    fn appendix_h() -> Vec<Attribute> {
        vec![
            attr("From", &["+1818118181"]),
            attr("Date", &["2018-09-14T16:39:57-05:00"]),
            attr("To", &["+15195551212"]),
            attr("Direction", &["In"]),
            attr("Message-Context", &["group-state-message"]),
            attr("Verified-From-Status", &["TN-Validation-Passed"]),
            attr("Call-Type", &["voice"]),
            attr("Call-subtype", &["VoLTE"]),
            attr("Device-Name", &["Cristina’s iPhone"]),
            attr("Call-Disposition", &["ANSWERED"]),
            attr("Call-Duration", &["300"]),
            attr("Subject", &["OMA Specifications Meeting"]),
            attr("Priority", &["Urgent"]),
            attr("Call-Info", &["<http://server.com/myIcon.jpeg>;purpose=icon"]),
            attr("Geo-Location", &["cid:foo1@bar.net"]),
        ]
    }

    /// Appendix H's one payload part: `Content-ID: foo1@bar.net`.
    fn appendix_h_parts() -> Vec<PayloadPart> {
        vec![part(Some("foo1@bar.net"))]
    }

    fn minimal(direction: &str, disposition: &str) -> Vec<Attribute> {
        vec![
            attr("From", &["tel:+14085550100"]),
            attr("To", &["tel:+15195551212"]),
            attr("Call-Type", &["video"]),
            attr("Call-Disposition", &[disposition]),
            attr("Call-Duration", &["0"]),
            attr("Direction", &[direction]),
        ]
    }

    /// `attrs` with `name` set to `values` (replaced, or added if absent).
    fn with(mut attrs: Vec<Attribute>, name: &str, values: &[&str]) -> Vec<Attribute> {
        match attrs.iter_mut().find(|a| a.name == name) {
            Some(a) => *a = attr(name, values),
            None => attrs.push(attr(name, values)),
        }
        attrs
    }

    fn without(attrs: Vec<Attribute>, name: &str) -> Vec<Attribute> {
        attrs.into_iter().filter(|a| a.name != name).collect()
    }

    fn invalid_part(r: Result<()>) -> String {
        match r {
            Err(Error::InvalidInput { part }) => part,
            other => panic!("expected SVC0002, got {other:?}"),
        }
    }

    fn value_error(r: Result<()>) -> (String, String) {
        match r {
            Err(Error::InvalidValue { part, valid }) => (part, valid),
            other => panic!("expected SVC0003, got {other:?}"),
        }
    }

    #[test]
    fn appendix_h_passes() {
        let r = validate(&appendix_h(), &appendix_h_parts());
        assert!(r.is_ok(), "{r:?}");
        assert!(is_call_log(&appendix_h()));
    }

    #[test]
    fn appendix_h_geolocation_needs_its_part() {
        assert_eq!(invalid_part(validate(&appendix_h(), &[])), "attribute Geo-Location");
        assert_eq!(invalid_part(validate(&appendix_h(), &[part(Some("foo2@bar.net"))])), "attribute Geo-Location");
        assert_eq!(invalid_part(validate(&appendix_h(), &[part(None)])), "attribute Geo-Location");
        // The RFC 2045 form of the Content-ID matches too.
        assert!(validate(&appendix_h(), &[part(Some("<foo1@bar.net>"))]).is_ok());
    }

    #[test]
    fn minimal_call_logs_pass() {
        for d in INCOMING_DISPOSITIONS {
            assert!(validate(&minimal("In", d), &[]).is_ok(), "In {d}");
        }
        for d in OUTGOING_DISPOSITIONS.iter().chain(OUTGOING_DISPOSITION_ALIASES) {
            assert!(validate(&minimal("Out", d), &[]).is_ok(), "Out {d}");
        }
        // Direction is case-insensitive; attribute names too.
        let mut attrs = minimal("out", "BUSY");
        for a in &mut attrs {
            a.name = a.name.to_ascii_lowercase();
        }
        assert!(validate(&attrs, &[]).is_ok());
        assert!(validate(&minimal("IN", "ANSWERED"), &[]).is_ok());
    }

    #[test]
    fn mandatory_attributes() {
        for name in ["From", "To", "Call-Type", "Call-Disposition", "Call-Duration", "Direction"] {
            let attrs = without(minimal("In", "ANSWERED"), name);
            assert_eq!(invalid_part(validate(&attrs, &[])), format!("attribute {name}"), "{name} missing");
            let attrs = with(minimal("In", "ANSWERED"), name, &[]);
            assert_eq!(invalid_part(validate(&attrs, &[])), format!("attribute {name}"), "{name} empty");
            let attrs = with(minimal("In", "ANSWERED"), name, &[" "]);
            assert_eq!(invalid_part(validate(&attrs, &[])), format!("attribute {name}"), "{name} blank");
        }
        // Date is not mandatory: the server sets it.
        assert!(validate(&without(appendix_h(), "Date"), &appendix_h_parts()).is_ok());
    }

    #[test]
    fn single_valued_attributes() {
        for name in ["From", "Call-Type", "Call-Disposition", "Call-Duration", "Direction"] {
            let mut attrs = minimal("In", "ANSWERED");
            let first = values(&attrs, name).first().map(|v| v.to_string()).unwrap_or_default();
            attrs.push(attr(name, &[&first]));
            assert_eq!(invalid_part(validate(&attrs, &[])), format!("attribute {name}"), "{name} repeated");
        }
        for name in ["Verified-From-Status", "Call-subtype", "Date", "Device-Name", "Subject", "Priority"] {
            let value = values(&appendix_h(), name).first().map(|v| v.to_string()).unwrap_or_default();
            let attrs = with(appendix_h(), name, &[&value, &value]);
            assert_eq!(invalid_part(validate(&attrs, &appendix_h_parts())), format!("attribute {name}"), "{name}");
            let attrs = with(appendix_h(), name, &[]);
            assert_eq!(invalid_part(validate(&attrs, &appendix_h_parts())), format!("attribute {name}"), "{name}");
        }
    }

    #[test]
    fn to_and_cc_may_hold_several_but_none_blank() {
        let attrs = with(minimal("Out", "BUSY"), "To", &["tel:+1", "tel:+2"]);
        assert!(validate(&with(attrs.clone(), "Cc", &["tel:+3", "tel:+4"]), &[]).is_ok());
        assert_eq!(invalid_part(validate(&with(attrs.clone(), "To", &["tel:+1", ""]), &[])), "attribute To");
        assert_eq!(invalid_part(validate(&with(attrs.clone(), "Cc", &["tel:+3", " "]), &[])), "attribute Cc");
        assert_eq!(invalid_part(validate(&with(attrs, "Cc", &[]), &[])), "attribute Cc");
    }

    #[test]
    fn call_type_enumeration() {
        for bad in ["audio", "Voice", "VIDEO", "voice,video"] {
            let attrs = with(minimal("In", "ANSWERED"), "Call-Type", &[bad]);
            assert_eq!(value_error(validate(&attrs, &[])), ("attribute Call-Type".into(), "voice, video".into()));
        }
    }

    #[test]
    fn call_disposition_depends_on_direction() {
        let incoming = "ANSWERED, LEFT_MESSAGE, HUNG_UP, REJECTED, BUSY, BLACKLISTED";
        let outgoing = "OUTGOING ANSWERED, OUTGOING UNANSWERED, HUNG_UP_BEFORE_ANSWER, BUSY";
        for bad in ["OUTGOING ANSWERED", "HUNG_UP_BEFORE_ANSWER", "OUTGOING_ANSWERED", "answered", "MISSED"] {
            let r = validate(&minimal("In", bad), &[]);
            assert_eq!(value_error(r), ("attribute Call-Disposition".into(), incoming.into()), "In {bad}");
        }
        for bad in ["ANSWERED", "HUNG_UP", "LEFT_MESSAGE", "REJECTED", "BLACKLISTED", "outgoing answered"] {
            let r = validate(&minimal("Out", bad), &[]);
            assert_eq!(value_error(r), ("attribute Call-Disposition".into(), outgoing.into()), "Out {bad}");
        }
    }

    #[test]
    fn direction_enumeration() {
        for bad in ["Incoming", "I", "sent"] {
            let r = validate(&minimal(bad, "ANSWERED"), &[]);
            assert_eq!(value_error(r), ("attribute Direction".into(), "In, Out".into()));
        }
    }

    #[test]
    fn call_duration_format() {
        for good in ["0", "300", "0300", "9999999999"] {
            assert!(validate(&with(minimal("In", "ANSWERED"), "Call-Duration", &[good]), &[]).is_ok(), "{good}");
        }
        for bad in ["-1", "+5", "1.5", "PT5M", "5s", " 300", "300 ", "12345678901", "５"] {
            let attrs = with(minimal("In", "ANSWERED"), "Call-Duration", &[bad]);
            assert_eq!(invalid_part(validate(&attrs, &[])), "attribute Call-Duration", "{bad:?}");
        }
    }

    #[test]
    fn priority_is_case_insensitive() {
        for good in ["normal", "urgent", "Non-Urgent", "EMERGENCY"] {
            assert!(validate(&with(appendix_h(), "Priority", &[good]), &appendix_h_parts()).is_ok(), "{good}");
        }
        let r = validate(&with(appendix_h(), "Priority", &["high"]), &appendix_h_parts());
        assert_eq!(value_error(r), ("attribute Priority".into(), "normal, urgent, non-urgent, emergency".into()));
    }

    #[test]
    fn verified_from_status_enumeration() {
        for good in VERIFIED_FROM_STATUSES {
            assert!(validate(&with(appendix_h(), "Verified-From-Status", &[good]), &appendix_h_parts()).is_ok());
        }
        let r = validate(&with(appendix_h(), "Verified-From-Status", &["tn-validation-passed"]), &appendix_h_parts());
        assert_eq!(
            value_error(r),
            (
                "attribute Verified-From-Status".into(),
                "TN-Validation-Passed, TN-Validation-Failed, No-TN-Validation".into()
            )
        );
    }

    #[test]
    fn date_format() {
        for good in ["2018-09-14T16:39:57Z", "2018-09-14T16:39:57.123+02:00"] {
            assert!(validate(&with(appendix_h(), "Date", &[good]), &appendix_h_parts()).is_ok(), "{good}");
        }
        for bad in ["2018-09-14", "Fri, 14 Sep 2018 16:39:57 -0500", "2018-09-14T16:39:57", "yesterday"] {
            let r = validate(&with(appendix_h(), "Date", &[bad]), &appendix_h_parts());
            assert_eq!(invalid_part(r), "attribute Date", "{bad}");
        }
    }

    #[test]
    fn anonymous_and_restricted_from() {
        assert!(validate(&with(minimal("In", "REJECTED"), "From", &[ANONYMOUS_FROM]), &[]).is_ok());
        assert!(validate(&with(minimal("In", "REJECTED"), "From", &[RESTRICTED_FROM]), &[]).is_ok());
        for bad in [
            "anonymous",
            "Anonymous",
            "SIP:anonymous@anonymous.invalid",
            "sip:anonymous@example.com",
            "sips:anonymous@anonymous.invalid",
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>",
            "tel:anonymous",
            "sip:user@anonymous.invalid",
        ] {
            let r = validate(&with(minimal("In", "REJECTED"), "From", &[bad]), &[]);
            assert_eq!(value_error(r), ("attribute From".into(), ANONYMOUS_FROM.into()), "{bad}");
        }
        for bad in ["Restricted", "RESTRICTED", " restricted"] {
            let r = validate(&with(minimal("In", "REJECTED"), "From", &[bad]), &[]);
            assert_eq!(value_error(r), ("attribute From".into(), RESTRICTED_FROM.into()), "{bad:?}");
        }
        // An ordinary address that merely contains the word is fine.
        assert!(validate(&with(minimal("In", "REJECTED"), "From", &["sip:anonymous.fan@example.com"]), &[]).is_ok());
    }

    #[test]
    fn call_info_urls_and_cids() {
        let parts = [part(Some("<icon1@example.com>")), part(Some("card@example.com"))];
        for good in [
            "<http://server.com/myIcon.jpeg>;purpose=icon",
            "<https://example.com/a.png> ; purpose=icon",
            "http://example.com/bare.png",
            "<cid:icon1@example.com>;purpose=icon",
            "cid:card%40example.com",
            "<cid:icon1@example.com>;purpose=icon, <http://example.com/card.vcf>;purpose=card",
        ] {
            let r = validate(&with(minimal("In", "ANSWERED"), "Call-Info", &[good]), &parts);
            assert!(r.is_ok(), "{good}: {r:?}");
        }
        for bad in [
            "<cid:missing@example.com>;purpose=icon",
            "cid:ICON1@example.com",
            "cid:",
            "<http://example.com/a.png",
            "http://example.com/a.png>",
            "<http://example.com/a.png> trailing",
            "not a uri",
            "relative/path.png",
            "<>;purpose=icon",
            "",
            "<http://example.com/a.png>;purpose=icon,",
            "cid:%ff",
        ] {
            let attrs = with(minimal("In", "ANSWERED"), "Call-Info", &[bad]);
            assert_eq!(invalid_part(validate(&attrs, &parts)), "attribute Call-Info", "{bad:?}");
        }
    }

    #[test]
    fn geolocation_must_be_a_resolving_cid() {
        let parts = [part(Some("<loc@example.com>"))];
        assert_eq!(
            invalid_part(validate(&with(minimal("In", "ANSWERED"), "Geolocation", &[]), &parts)),
            "attribute Geolocation"
        );
        assert_eq!(
            invalid_part(validate(&with(minimal("In", "ANSWERED"), "Call-Info", &[]), &parts)),
            "attribute Call-Info"
        );
        let ok = with(minimal("In", "ANSWERED"), "Geolocation", &["<cid:loc@example.com>;inserted-by=\"ims\""]);
        assert!(validate(&ok, &parts).is_ok());
        for bad in ["<https://lis.example.com/loc/1>", "cid:other@example.com", "loc@example.com"] {
            let attrs = with(minimal("In", "ANSWERED"), "Geolocation", &[bad]);
            assert_eq!(invalid_part(validate(&attrs, &parts)), "attribute Geolocation", "{bad}");
        }
    }

    #[test]
    fn enriched_content() {
        let parts = [part(Some("x@y"))];
        for good in ["multipart/related", "Multipart/Mixed; boundary=abc"] {
            assert!(validate(&with(minimal("In", "ANSWERED"), "Enriched-Content", &[good]), &parts).is_ok(), "{good}");
        }
        for bad in ["text/plain", "multipart/", "multipart", "mülti/part"] {
            let r = validate(&with(minimal("In", "ANSWERED"), "Enriched-Content", &[bad]), &parts);
            assert_eq!(value_error(r).0, "attribute Enriched-Content", "{bad}");
        }
        let r = validate(&with(minimal("In", "ANSWERED"), "Enriched-Content", &["multipart/related"]), &[]);
        assert_eq!(invalid_part(r), "attribute Enriched-Content");
    }

    #[test]
    fn unknown_and_ffs_attributes_are_not_checked() {
        let attrs = with(with(minimal("In", "ANSWERED"), "Data-Usage", &["", "x"]), "X-Anything", &[]);
        assert!(validate(&attrs, &[]).is_ok());
        assert!(validate(&with(minimal("In", "ANSWERED"), "Call-subtype", &["5G"]), &[]).is_ok());
    }

    #[test]
    fn is_call_log_by_attributes() {
        assert!(is_call_log(&[attr("call-duration", &["1"])]));
        assert!(!is_call_log(&[attr("Message-Context", &["pager-message"]), attr("From", &["x"])]));
    }

    #[test]
    fn odd_values_never_panic() {
        let odd = ["<", ">", "<<>>", "é", "cid:é%", "<cid:<a>>", "\u{0}", ",,,", ";", "<a,b>", "multipart/é", "mult"];
        for v in odd {
            for name in ["From", "Call-Info", "Geolocation", "Enriched-Content", "Call-Duration", "Date", "Priority"] {
                let _ = validate(&with(appendix_h(), name, &[v]), &appendix_h_parts());
            }
        }
    }
}
