//! The small HTTP layer of the runner: one client with Basic credentials, fully read
//! responses that know how to describe themselves in a failure reason, OMA error-body
//! checks, a hand-built multipart body, and the failure type every check returns.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// Why a check (or the setup) failed: one line, shown after the item's description.
#[derive(Debug)]
pub struct Fail(pub String);

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<reqwest::Error> for Fail {
    fn from(e: reqwest::Error) -> Self {
        // The source chain carries the useful part ("connection refused", ...).
        let e = e.without_url();
        let mut msg = format!("transport error: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        Fail(msg)
    }
}

/// Result of a check or of a helper used by checks.
pub type Res<T = ()> = Result<T, Fail>;

/// `ensure!(cond, "format", args..)`: fail the check with the message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !($cond) {
            return Err($crate::http::Fail(format!($($arg)+)));
        }
    };
}

/// `fail!("format", args..)`: a [`Fail`](crate::http::Fail) value (for `ok_or_else` and `Err(..)`).
#[macro_export]
macro_rules! fail {
    ($($arg:tt)+) => {
        $crate::http::Fail(format!($($arg)+))
    };
}

/// The format documents are exchanged in (the runner's mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Json,
    /// The OMA XML binding: requests in XML, `Accept: application/xml`.
    Xml,
}

impl Format {
    /// The media type of documents in this format.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Xml => "application/xml",
        }
    }

    /// A JSON document `{"root": ..}` as sent in this format.
    pub fn document(self, doc: &Value) -> Vec<u8> {
        match self {
            Format::Xml => crate::xml::to_xml(doc).unwrap_or_else(|| doc.to_string()).into_bytes(),
            Format::Json => doc.to_string().into_bytes(),
        }
    }
}

/// The HTTP client: the configured credentials (Basic, or a bearer token) on every
/// request, `Accept` of the run's format, redirects not followed (a redirect is an answer to
/// check, not to follow).
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    user: String,
    password: String,
    bearer: Option<String>,
    format: Format,
}

impl Http {
    pub fn new(user: &str, password: &str, timeout: Duration) -> Res<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(Fail::from)?;
        Ok(Self { client, user: user.to_string(), password: password.to_string(), bearer: None, format: Format::Json })
    }

    /// The same client exchanging documents in `format`.
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// The format documents are exchanged in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The same client presenting `token` (`Authorization: Bearer`) instead of Basic.
    pub fn with_bearer(mut self, token: Option<String>) -> Self {
        self.bearer = token;
        self
    }

    /// A request with the configured credentials.
    pub fn req(&self, method: Method, url: &str) -> Req {
        match &self.bearer {
            Some(token) => {
                let mut r = self.req_as(method, url, None);
                r.rb = r.rb.bearer_auth(token);
                r
            }
            None => self.req_as(method, url, Some((&self.user, &self.password))),
        }
    }

    /// A request with other credentials, or none.
    pub fn req_as(&self, method: Method, url: &str, credentials: Option<(&str, &str)>) -> Req {
        let mut rb = self.client.request(method.clone(), url).header("Accept", self.format.media_type());
        if let Some((user, password)) = credentials {
            rb = rb.basic_auth(user, Some(password));
        }
        Req { method, url: url.to_string(), rb, format: self.format }
    }

    pub async fn get(&self, url: &str) -> Res<Resp> {
        self.req(Method::GET, url).send().await
    }

    pub async fn delete(&self, url: &str) -> Res<Resp> {
        self.req(Method::DELETE, url).send().await
    }

    pub async fn post_json(&self, url: &str, body: &Value) -> Res<Resp> {
        self.req(Method::POST, url).json(body).send().await
    }

    pub async fn put_json(&self, url: &str, body: &Value) -> Res<Resp> {
        self.req(Method::PUT, url).json(body).send().await
    }
}

/// A request being built; remembers its method and URL for failure reasons.
pub struct Req {
    method: Method,
    url: String,
    rb: reqwest::RequestBuilder,
    format: Format,
}

impl Req {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.rb = self.rb.header(name, value);
        self
    }

    /// A document given in its JSON shape, sent in the run's format.
    pub fn json(self, body: &Value) -> Self {
        let format = self.format;
        self.body(format.media_type(), format.document(body))
    }

    /// A raw body with its `Content-Type`.
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.rb = self.rb.header("Content-Type", content_type).body(body);
        self
    }

    pub async fn send(self) -> Res<Resp> {
        let what = format!("{} {}", self.method, self.url);
        let res = self.rb.send().await.map_err(|e| fail!("{what}: {}", Fail::from(e)))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.bytes().await.map_err(|e| fail!("{what}: reading the body: {}", Fail::from(e)))?.to_vec();
        Ok(Resp { method: self.method, url: self.url, status, headers, body, format: self.format })
    }
}

/// A fully read response.
pub struct Resp {
    pub method: Method,
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The run's format, which documents must come in.
    pub format: Format,
}

impl Resp {
    /// `METHOD url -> status: body excerpt`, for failure reasons.
    pub fn describe(&self) -> String {
        let mut text: String = String::from_utf8_lossy(&self.body).chars().take(300).collect();
        if self.body.len() > text.len() {
            text.push_str("...");
        }
        let text = text.replace(['\r', '\n'], " ");
        if text.is_empty() {
            format!("{} {} -> {}", self.method, self.url, self.status)
        } else {
            format!("{} {} -> {}: {}", self.method, self.url, self.status, text)
        }
    }

    /// A header as text (first value), if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type of `Content-Type`, lower-case, without parameters.
    pub fn media_type(&self) -> String {
        self.header("content-type")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }

    /// Fail unless the status is `want`.
    pub fn status(&self, want: u16) -> Res<&Self> {
        ensure!(self.status == want, "expected {want}, got {}", self.describe());
        Ok(self)
    }

    /// The body in its JSON shape; the response must be in the run's format (`application/json`,
    /// or `application/xml` read back into the JSON shape).
    pub fn json(&self) -> Res<Value> {
        let mt = self.media_type();
        if self.format == Format::Xml {
            ensure!(
                mt == "application/xml" || mt.ends_with("+xml"),
                "expected an application/xml body, got Content-Type {:?} ({})",
                self.header("content-type").unwrap_or("none"),
                self.describe()
            );
            return crate::xml::to_json(&self.body)
                .map_err(|e| fail!("body is not the XML expected ({e}): {}", self.describe()));
        }
        ensure!(
            mt == "application/json" || mt.ends_with("+json"),
            "expected an application/json body, got Content-Type {:?} ({})",
            self.header("content-type").unwrap_or("none"),
            self.describe()
        );
        serde_json::from_slice(&self.body).map_err(|e| fail!("body is not JSON ({e}): {}", self.describe()))
    }

    /// Status `want` and a JSON body.
    pub fn json_with(&self, want: u16) -> Res<Value> {
        self.status(want)?;
        self.json()
    }

    /// Status `want` and an OMA `requestError` whose exception (`serviceException` for
    /// `SVC*`, `policyException` for `POL*`) has `message_id`, a `text` and (if present)
    /// `variables` as an array of strings. Returns the exception.
    pub fn error(&self, want: u16, message_id: &str) -> Res<Value> {
        self.status(want)?;
        let body = self.json()?;
        let err = body
            .get("requestError")
            .filter(|e| e.is_object())
            .ok_or_else(|| fail!("no requestError object: {}", self.describe()))?;
        let kind = if message_id.starts_with("POL") { "policyException" } else { "serviceException" };
        let exc = err.get(kind).ok_or_else(|| fail!("requestError without {kind}: {}", self.describe()))?;
        ensure!(
            exc.get("messageId").and_then(Value::as_str) == Some(message_id),
            "expected messageId {message_id}: {}",
            self.describe()
        );
        ensure!(exc.get("text").is_some_and(Value::is_string), "exception without text: {}", self.describe());
        if let Some(vars) = exc.get("variables") {
            ensure!(
                vars.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                "variables must be an array of strings: {}",
                self.describe()
            );
        }
        Ok(exc.clone())
    }
}

/// A MIME multipart body built byte by byte, so the runner controls exactly what is sent.
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    pub fn new(boundary: &str) -> Self {
        Self { boundary: boundary.to_string(), body: Vec::new() }
    }

    pub fn part(mut self, headers: &[(&str, &str)], content: &[u8]) -> Self {
        self.body.extend_from_slice(format!("--{}\r\n", self.boundary).as_bytes());
        for (k, v) in headers {
            self.body.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        self.body.extend_from_slice(b"\r\n");
        self.body.extend_from_slice(content);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// The `root-fields` form part carrying `{"object": object}` in JSON.
    pub fn root_fields(self, object: &Value) -> Self {
        self.root_document(Format::Json, &serde_json::json!({ "object": object }))
    }

    /// The `root-fields` form part carrying the document `doc` in `format`.
    pub fn root_document(self, format: Format, doc: &Value) -> Self {
        self.part(
            &[("Content-Disposition", "form-data; name=\"root-fields\""), ("Content-Type", format.media_type())],
            &format.document(doc),
        )
    }

    /// The closed body and its `Content-Type` (`{media_type}; boundary="..."`).
    pub fn finish(mut self, media_type: &str) -> (String, Vec<u8>) {
        self.body.extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (format!("{media_type}; boundary=\"{}\"", self.boundary), self.body)
    }
}

/// One part of a parsed multipart body: lower-cased header names and the raw content.
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub content: Vec<u8>,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The `boundary` parameter of a `Content-Type` value.
pub fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Split a multipart body (RFC 2046) into its parts: the preamble and epilogue are ignored,
/// the CRLF before each delimiter belongs to the delimiter.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Res<Vec<Part>> {
    let delim = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?.windows(delim.len()).position(|w| w == delim.as_slice()).map(|p| p + from)
    };
    let mut pos = find(body, 0).ok_or_else(|| fail!("multipart body has no delimiter --{boundary}"))?;
    let mut parts = Vec::new();
    loop {
        let after = pos + delim.len();
        if body.get(after..after + 2) == Some(b"--") {
            return Ok(parts);
        }
        // Skip transport padding and the CRLF ending the delimiter line.
        let line_end = body
            .get(after..)
            .and_then(|rest| rest.windows(2).position(|w| w == b"\r\n"))
            .map(|p| after + p + 2)
            .ok_or_else(|| fail!("multipart delimiter line not terminated"))?;
        let next = find(body, line_end).ok_or_else(|| fail!("multipart body has no closing delimiter"))?;
        let mut end = next;
        if end >= 2 && body.get(end - 2..end) == Some(b"\r\n") {
            end -= 2;
        }
        let raw = body.get(line_end..end).ok_or_else(|| fail!("multipart part out of range"))?;
        let (head, content) = match raw.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(p) => (&raw[..p], &raw[p + 4..]),
            None if raw.starts_with(b"\r\n") => (&raw[..0], &raw[2..]),
            None => return Err(fail!("multipart part without a header/body separator")),
        };
        let headers = String::from_utf8_lossy(head)
            .split("\r\n")
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
            .collect();
        parts.push(Part { headers, content: content.to_vec() });
        pos = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_parameter() {
        assert_eq!(boundary_of("multipart/mixed; boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary_of("multipart/related;type=\"text/html\";Boundary=xyz").as_deref(), Some("xyz"));
        assert_eq!(boundary_of("text/plain"), None);
    }

    #[test]
    fn multipart_round_trip() {
        let bin: Vec<u8> = (0..=255u8).collect();
        let (ct, body) = Multipart::new("b-1")
            .part(&[("Content-Type", "text/plain")], b"one\r\n")
            .part(&[("Content-Type", "application/octet-stream"), ("Content-ID", "<x@y>")], &bin)
            .finish("multipart/mixed");
        let boundary = boundary_of(&ct).unwrap_or_default();
        let parts = parse_multipart(&body, &boundary).unwrap_or_default();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content, b"one\r\n");
        assert_eq!(parts[0].header("Content-Type"), Some("text/plain"));
        assert_eq!(parts[1].content, bin);
        assert_eq!(parts[1].header("content-id"), Some("<x@y>"));
    }

    #[test]
    fn multipart_with_preamble_and_empty_part() {
        let body = b"preamble\r\n--q\r\n\r\n\r\n--q\r\nA: b\r\n\r\nx\r\n--q--\r\nepilogue";
        let parts = parse_multipart(body, "q").unwrap_or_default();
        assert_eq!(parts.len(), 2);
        assert!(parts[0].content.is_empty() && parts[0].headers.is_empty());
        assert_eq!(parts[1].header("a"), Some("b"));
        assert_eq!(parts[1].content, b"x");
        assert!(parse_multipart(b"no delimiter", "q").is_err());
    }
}
