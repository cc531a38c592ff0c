//! CPIM messages (RFC 3862) as message objects (CPM binding 5.3.1.3).
//!
//! A CPIM message is its CPIM header block, a blank line, the MIME headers of the
//! encapsulated body, a blank line, and the body. Deposited as a payload (`message/cpim`),
//! it is realised as: the attribute `CPIM` holding the whole CPIM header block as one string
//! (lines joined by CRLF, as in Appendix C); the Table 1 attributes taken from its headers
//! (`From`, `To`, `Date` from `DateTime`, `Subject`, the CPM MIME fields); `Content-Type` the
//! type of the encapsulated body; the IMDN `Message-ID` as `correlationId`; and the payload
//! parts the body part(s) of the encapsulated body. Only the head is held in memory (at most
//! [`MAX_HEAD`] bytes); the body streams.

use crate::error::{Error, Result};
use crate::ids::nms_date;
use crate::model::Attribute;

/// The longest CPIM head (CPIM headers and encapsulated MIME headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// The IMDN namespace (RFC 5438), whose `Message-ID` header names the message.
const IMDN_NS: &str = "urn:ietf:params:imdn";

/// Headers of the encapsulated MIME message that Table 1 maps onto attributes of the same
/// name (read from the CPIM headers as well).
const MAPPED: &[&str] =
    &["Conversation-ID", "Contribution-ID", "InReplyTo-Contribution-ID", "P-Asserted-Service", "Accept-Contact"];

/// The decoded head of a CPIM message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpimHead {
    /// The CPIM header block as deposited, lines joined by CRLF.
    pub block: String,
    /// CPIM headers (name, value), in order; a value keeps its `;param` prefix.
    pub headers: Vec<(String, String)>,
    /// MIME headers of the encapsulated body.
    pub mime: Vec<(String, String)>,
}

/// Where the head ends (the byte after the blank line closing the encapsulated MIME
/// headers), once `buf` holds it. Lines may end in CRLF or LF.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    HeadScanner::default().end(buf)
}

/// [`head_len`] over a buffer that grows as a head arrives: each call looks only at the
/// bytes added since the last, so a head delivered a byte at a time costs linear time.
#[derive(Clone, Debug, Default)]
pub struct HeadScanner {
    line_start: usize,
    pos: usize,
    blank_lines: u8,
}

impl HeadScanner {
    /// The end of the head in `buf` (the same buffer, grown since the last call), once
    /// it holds it.
    pub fn end(&mut self, buf: &[u8]) -> Option<usize> {
        while self.pos < buf.len() {
            if buf[self.pos] == b'\n' {
                let line = &buf[self.line_start..self.pos];
                self.line_start = self.pos + 1;
                if line.is_empty() || line == b"\r" {
                    self.blank_lines += 1;
                    if self.blank_lines == 2 {
                        return Some(self.pos + 1);
                    }
                }
            }
            self.pos += 1;
        }
        None
    }
}

/// The end of the first empty line at or after `from` (the line break ending it included).
fn blank_line_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut line_start = from;
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            let line = &buf[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
        i += 1;
    }
    None
}

/// The header fields of one block, folded lines unfolded (RFC 5322 2.2.3, which CPIM
/// headers follow), by the one MIME header reader.
fn header_lines(block: &str) -> Result<Vec<(String, String)>> {
    let fields = crate::multipart::header_fields(block)
        .map_err(|line| Error::invalid(format!("CPIM header line {:?}", line.chars().take(64).collect::<String>())))?;
    Ok(fields
        .into_iter()
        .map(|(name, value)| (name, value.strip_prefix(' ').unwrap_or(&value).trim_end().to_string()))
        .collect())
}

/// Parse a head found by [`head_len`].
pub fn parse_head(head: &[u8]) -> Result<CpimHead> {
    let text = std::str::from_utf8(head).map_err(|_| Error::invalid("CPIM headers (not UTF-8)"))?;
    let first = blank_line_end(head, 0).ok_or_else(|| Error::invalid("CPIM headers"))?;
    let (cpim, mime) = text.split_at(first);
    let headers = header_lines(cpim)?;
    if headers.is_empty() {
        return Err(Error::invalid("CPIM headers (none)"));
    }
    let mime = header_lines(mime)?;
    let block = cpim.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()).collect::<Vec<_>>();
    Ok(CpimHead { block: block.join("\r\n"), headers, mime })
}

/// A header value without its leading `;param` list (`Subject:;lang=fr text` -> `text`),
/// and whether it had parameters.
fn bare(value: &str) -> (&str, bool) {
    match value.strip_prefix(';') {
        Some(rest) => (rest.split_once(' ').map_or("", |(_, v)| v).trim(), true),
        None => (value.trim(), false),
    }
}

/// The address of a `Name <uri>` value; the anonymous URI (RFC 3323) is `anonymous`
/// (CPM binding Table 1).
pub fn address(value: &str) -> String {
    let v = value.trim();
    let uri = match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    };
    let uri = uri.trim();
    if uri.eq_ignore_ascii_case("sip:anonymous@anonymous.invalid") || uri.eq_ignore_ascii_case("anonymous") {
        "anonymous".to_string()
    } else {
        uri.to_string()
    }
}

impl CpimHead {
    fn cpim_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn mime_one(&self, name: &str) -> Option<&str> {
        self.mime.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The prefix the IMDN namespace is declared under (`NS: imdn <urn:ietf:params:imdn>`);
    /// `imdn` when no declaration names it.
    fn imdn_prefix(&self) -> String {
        self.cpim_all("NS")
            .find_map(|v| {
                let (prefix, uri) = v.split_once('<')?;
                (uri.trim_end_matches('>').trim() == IMDN_NS).then(|| prefix.trim().to_string())
            })
            .unwrap_or_else(|| "imdn".to_string())
    }

    /// The IMDN `Message-ID` of the message, if it carries one.
    pub fn imdn_message_id(&self) -> Option<String> {
        let name = format!("{}.Message-ID", self.imdn_prefix());
        self.cpim_all(&name).next().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    /// The encapsulated body's `Content-Type` (absent: `text/plain`, RFC 2045).
    pub fn content_type(&self) -> String {
        self.mime_one("Content-Type").map(str::trim).filter(|t| !t.is_empty()).unwrap_or("text/plain").to_string()
    }

    /// A header of the encapsulated body.
    pub fn mime_header(&self, name: &str) -> Option<String> {
        self.mime_one(name).map(|v| v.trim().to_string())
    }

    /// The attributes the message gives its object (CPM binding Table 1 and 5.3.1.3).
    pub fn attributes(&self) -> Result<Vec<Attribute>> {
        let mut out = vec![Attribute { name: "CPIM".into(), values: vec![self.block.clone()] }];
        let mut push = |name: &str, values: Vec<String>| {
            if !values.is_empty() {
                out.push(Attribute { name: name.into(), values });
            }
        };
        push("From", self.cpim_all("From").take(1).map(address).collect());
        push("To", self.cpim_all("To").map(address).collect());
        if let Some(dt) = self.cpim_all("DateTime").next() {
            let parsed = chrono::DateTime::parse_from_rfc3339(dt.trim())
                .map_err(|_| Error::invalid(format!("CPIM DateTime {dt}")))?;
            push("Date", vec![nms_date(parsed.timestamp_millis())]);
        }
        // The subject without a language tag, else the first one.
        let subjects: Vec<(&str, bool)> = self.cpim_all("Subject").map(bare).collect();
        if let Some((s, _)) = subjects.iter().find(|(_, tagged)| !tagged).or(subjects.first()) {
            push("Subject", vec![s.to_string()]);
        }
        for name in MAPPED {
            let v = self.mime_one(name).or_else(|| self.cpim_all(name).next());
            push(name, v.map(|v| v.trim().to_string()).into_iter().collect());
        }
        push("Content-Type", vec![strip_param(&self.content_type(), "boundary")]);
        Ok(out)
    }
}

/// Remove one parameter (e.g. `boundary`) from a media type, keeping the rest as written.
pub fn strip_param(media_type: &str, name: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in media_type.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    let mut out = parts.first().map(|s| s.trim().to_string()).unwrap_or_default();
    for p in parts.iter().skip(1) {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let key = p.split('=').next().unwrap_or_default().trim();
        if !key.eq_ignore_ascii_case(name) {
            out.push_str("; ");
            out.push_str(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPENDIX_C: &str = "From: MR SANDERS <im:piglet@100akerwood.com>\r\n\
        To: Dopey Donkey <im:eeyore@100akerwood.com>\r\n\
        DateTime: 2014-12-13T13:40:00-08:00\r\n\
        Subject: the weather will be fine today\r\n\
        Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n\
        NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n\
        Require: MyFeatures.VitalMessageOption\r\n\
        MyFeatures.VitalMessageOption: Confirmation-requested\r\n\
        MyFeatures.WackyMessageOption: Use-silly-font\r\n\
        \r\n\
        Content-Type: multipart/mixed; boundary=7fekyzC-uQhXhZCGky5kU7wP\r\n\
        \r\n\
        --7fekyzC-uQhXhZCGky5kU7wP\r\n";

    fn attr<'a>(attrs: &'a [Attribute], name: &str) -> Vec<&'a str> {
        attrs.iter().filter(|a| a.name == name).flat_map(|a| a.values.iter().map(String::as_str)).collect()
    }

    /// A head that arrives a byte at a time is found where the whole buffer finds it, each
    /// byte looked at once.
    #[test]
    fn the_head_scanner_is_incremental() {
        let whole = head_len(APPENDIX_C.as_bytes());
        assert!(whole.is_some());
        let mut scanner = HeadScanner::default();
        let bytes = APPENDIX_C.as_bytes();
        let found = (1..=bytes.len()).find_map(|n| scanner.end(&bytes[..n]));
        assert_eq!(found, whole);
        assert_eq!(scanner.pos + 1, whole.unwrap());
    }

    #[test]
    fn appendix_c_head_maps_onto_the_attributes_of_the_example() {
        let n = head_len(APPENDIX_C.as_bytes()).unwrap();
        assert!(APPENDIX_C[n..].starts_with("--7fekyzC"));
        let head = parse_head(&APPENDIX_C.as_bytes()[..n]).unwrap();
        let attrs = head.attributes().unwrap();
        // The CPIM attribute of Appendix C: the header block, CRLF-joined, no trailing CRLF.
        assert_eq!(
            attr(&attrs, "CPIM"),
            ["From: MR SANDERS <im:piglet@100akerwood.com>\r\nTo: Dopey Donkey <im:eeyore@100akerwood.com>\r\n\
              DateTime: 2014-12-13T13:40:00-08:00\r\nSubject: the weather will be fine today\r\n\
              Subject:;lang=fr beau temps prevu pour aujourd'hui\r\nNS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n\
              Require: MyFeatures.VitalMessageOption\r\nMyFeatures.VitalMessageOption: Confirmation-requested\r\n\
              MyFeatures.WackyMessageOption: Use-silly-font"]
        );
        assert_eq!(attr(&attrs, "From"), ["im:piglet@100akerwood.com"]);
        assert_eq!(attr(&attrs, "To"), ["im:eeyore@100akerwood.com"]);
        assert_eq!(attr(&attrs, "Date"), ["2014-12-13T21:40:00Z"]);
        assert_eq!(attr(&attrs, "Subject"), ["the weather will be fine today"]);
        assert_eq!(attr(&attrs, "Content-Type"), ["multipart/mixed"]);
        assert_eq!(head.imdn_message_id(), None);
    }

    #[test]
    fn imdn_message_id_follows_the_declared_prefix_and_lf_lines_are_accepted() {
        let msg = "From: <sip:anonymous@anonymous.invalid>\nTo: <tel:+12125551212>\nTo: <tel:+13105550000>\n\
                   NS: n <urn:ietf:params:imdn>\nn.Message-ID: Ax7l\nimdn.Message-ID: not-this\n\
                   \nContent-Type: text/plain;charset=UTF-8\nConversation-ID: c-1\n\nhello";
        let n = head_len(msg.as_bytes()).unwrap();
        assert_eq!(&msg[n..], "hello");
        let head = parse_head(&msg.as_bytes()[..n]).unwrap();
        assert_eq!(head.imdn_message_id().as_deref(), Some("Ax7l"));
        let attrs = head.attributes().unwrap();
        assert_eq!(attr(&attrs, "From"), ["anonymous"]);
        assert_eq!(attr(&attrs, "To"), ["tel:+12125551212", "tel:+13105550000"]);
        assert_eq!(attr(&attrs, "Conversation-ID"), ["c-1"]);
        assert_eq!(attr(&attrs, "Content-Type"), ["text/plain; charset=UTF-8"]);
    }

    #[test]
    fn incomplete_or_malformed_heads_are_refused_precisely() {
        assert_eq!(head_len(b"From: <a>\r\n\r\nContent-Type: text/plain\r\n"), None);
        assert_eq!(head_len(b"From: <a>\r\n"), None);
        for bad in [
            &b"no colon here\r\n\r\n\r\n"[..],
            b"\r\n\r\n",
            b"From: <a>\r\nDate Time: x\r\n\r\n\r\n",
            b"\xff\xfe: x\r\n\r\n\r\n",
        ] {
            let n = head_len(bad).unwrap_or(bad.len());
            assert!(matches!(parse_head(&bad[..n]), Err(Error::InvalidInput { .. })), "{bad:?}");
        }
        let head = parse_head(b"DateTime: yesterday\r\n\r\n\r\n").unwrap();
        assert!(matches!(head.attributes(), Err(Error::InvalidInput { part }) if part.contains("DateTime")));
    }

    #[test]
    fn boundary_is_removed_other_params_kept() {
        assert_eq!(
            strip_param(r#"multipart/related; start="<a;b>"; boundary="--=-sep-=--""#, "boundary"),
            r#"multipart/related; start="<a;b>""#
        );
        assert_eq!(strip_param("multipart/mixed;boundary=x", "boundary"), "multipart/mixed");
    }
}
