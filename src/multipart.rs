//! A streaming MIME multipart reader (RFC 2046 5.1, RFC 7578), for request bodies and the
//! multipart payloads nested in them.
//!
//! The reader owns a byte stream and yields parts one after another: [`Reader::next_part`]
//! answers a part's [`Headers`], then [`Reader::chunk`] (or the [`Reader::body`] stream) its
//! content, never more than the bytes at hand plus one delimiter. Nothing here depends on
//! HTTP: the same reader reads a request body and, through [`Reader::body`], the
//! `multipart/*` payload inside one of its parts.
//!
//! What it bounds and accepts:
//! - a part's head (its header lines) is at most [`Limits::max_head_bytes`] bytes and
//!   [`Limits::max_fields`] fields, checked while it arrives, so a huge header is refused
//!   after that many bytes, never held whole;
//! - header lines may be folded (RFC 5322 2.2.3: a line starting with a space or a tab
//!   continues the previous field), as the NMS specification's own examples do; they may
//!   end in CRLF or LF, while delimiters need their CRLF (RFC 2046);
//! - a header value holding a control character (a stray CR, NUL, ...) is refused;
//! - a preamble before the first delimiter, transport padding (spaces and tabs) after a
//!   delimiter, and an epilogue after the closing one are skipped.
//!
//! Errors are the domain's: a malformed body or an oversized head is `400 SVC0002`; an
//! error of the underlying stream (a body over its size limit, a read timeout) passes
//! through unchanged.

use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use crate::error::{Error, Result};

/// Bounds on what one part's head may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of header lines, line breaks included, before the blank line.
    pub max_head_bytes: usize,
    /// Header fields (after unfolding).
    pub max_fields: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_head_bytes: 16 * 1024, max_fields: 64 }
    }
}

/// A part's header fields, in order, names as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// The first field named `name` (ASCII case-insensitive), its value trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    }

    /// The fields, in order.
    pub fn fields(&self) -> &[(String, String)] {
        &self.0
    }

    /// A parameter of the `Content-Disposition` field (`name`, `filename`), unquoted.
    pub fn disposition_param(&self, param: &str) -> Option<String> {
        header_param(self.get("content-disposition")?, param)
    }
}

/// A parameter of a structured header value (`form-data; name="a"`), unquoted; parameter
/// names are ASCII case-insensitive.
pub fn header_param(value: &str, param: &str) -> Option<String> {
    let mut rest = value.split_once(';')?.1;
    loop {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (val, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            let tail = &quoted[end.min(quoted.len())..];
            (out, tail.split_once(';').map(|(_, n)| n))
        } else {
            match after.split_once(';') {
                Some((v, n)) => (v.trim().to_string(), Some(n)),
                None => (after.trim().to_string(), None),
            }
        };
        if key.trim().eq_ignore_ascii_case(param) {
            return Some(val);
        }
        rest = next?;
    }
}

/// Header fields from a block of header lines (CRLF or LF line ends): `(name, value)` with
/// folded lines unfolded (each line break and the whitespace after it become one space, as
/// RFC 7230 3.2.4 has it, so a tab fold parses like a space fold) and the value as sent
/// after the colon. A line that is neither a field nor a continuation, a name that is empty
/// or holds whitespace or control characters, or a value holding a control character other
/// than a tab, is refused with the offending line.
pub fn header_fields(block: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some((_, value)) if !has_control(line) => {
                    value.push(' ');
                    value.push_str(line.trim_start_matches([' ', '\t']));
                    continue;
                }
                _ => return Err(line.to_string()),
            }
        }
        let (name, value) = line.split_once(':').ok_or_else(|| line.to_string())?;
        let name = name.trim_end();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) || has_control(value) {
            return Err(line.to_string());
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Whether a header value holds a control character other than a tab (a stray CR, NUL,
/// ...): such a value could not be served back in a response header.
fn has_control(value: &str) -> bool {
    value.chars().any(|c| c.is_control() && c != '\t')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first delimiter: bytes are skipped.
    Preamble,
    /// A delimiter was read: next comes `--` (the end) or padding and a line break.
    AfterDelimiter,
    /// Reading a part's head.
    Head,
    /// Reading a part's content.
    Body,
    /// The closing delimiter was read.
    End,
}

/// The streaming reader; see the module documentation.
pub struct Reader<S> {
    stream: S,
    buf: BytesMut,
    /// `CRLF--boundary`.
    delimiter: Vec<u8>,
    state: State,
    eof: bool,
    limits: Limits,
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn malformed(what: &str) -> Error {
    Error::invalid(format!("multipart body ({what})"))
}

impl<S> Reader<S>
where
    S: Stream<Item = Result<Bytes>> + Unpin,
{
    /// A reader of `stream`, a multipart body delimited by `boundary`.
    pub fn new(stream: S, boundary: &str, limits: Limits) -> Self {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        // A body may open with its first delimiter, without the line break before it.
        let buf = BytesMut::from(&b"\r\n"[..]);
        Self { stream, buf, delimiter, state: State::Preamble, eof: false, limits }
    }

    /// Read more bytes into the buffer: `false` at the end of the stream.
    async fn fill(&mut self) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        match self.stream.next().await {
            Some(chunk) => {
                self.buf.extend_from_slice(&chunk?);
                Ok(true)
            }
            None => {
                self.eof = true;
                Ok(false)
            }
        }
    }

    /// The next part's headers, after skipping what is left of the current one; `None`
    /// after the closing delimiter.
    pub async fn next_part(&mut self) -> Result<Option<Headers>> {
        loop {
            match self.state {
                State::Preamble | State::Body => while self.content().await?.is_some() {},
                State::AfterDelimiter => self.after_delimiter().await?,
                State::Head => return self.head().await.map(Some),
                State::End => return Ok(None),
            }
        }
    }

    /// The next bytes of the current part's content; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        if self.state != State::Body {
            return Ok(None);
        }
        self.content().await
    }

    /// The current part's content as a stream (for a multipart nested in it).
    pub fn body(&mut self) -> impl Stream<Item = Result<Bytes>> + Unpin + '_ {
        let stream = futures_util::stream::unfold(Some(self), |reader| async move {
            let reader = reader?;
            match reader.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        });
        Box::pin(stream) as Pin<Box<dyn Stream<Item = Result<Bytes>> + '_>>
    }

    /// Content up to the next delimiter (consumed at the end, moving to `AfterDelimiter`).
    async fn content(&mut self) -> Result<Option<Bytes>> {
        loop {
            if let Some(at) = find(&self.buf, &self.delimiter) {
                if at > 0 {
                    return Ok(Some(self.buf.split_to(at).freeze()));
                }
                self.buf.advance(self.delimiter.len());
                self.state = State::AfterDelimiter;
                return Ok(None);
            }
            // Everything but a possible start of the delimiter can go.
            let keep = self.delimiter.len() - 1;
            if self.buf.len() > keep {
                let n = self.buf.len() - keep;
                return Ok(Some(self.buf.split_to(n).freeze()));
            }
            if !self.fill().await? {
                let what = if self.state == State::Preamble { "no opening delimiter" } else { "unexpected end" };
                return Err(malformed(what));
            }
        }
    }

    /// After a delimiter: `--` closes the body; otherwise padding and a line break open a part.
    async fn after_delimiter(&mut self) -> Result<()> {
        let mut padding = 0usize;
        loop {
            while self.buf.len() < 2 {
                if !self.fill().await? {
                    return Err(malformed("unexpected end after a delimiter"));
                }
            }
            if self.buf.starts_with(b"--") {
                self.state = State::End;
                self.buf.clear();
                return Ok(());
            }
            match self.buf[0] {
                b' ' | b'\t' => {
                    padding += 1;
                    if padding > self.limits.max_head_bytes {
                        return Err(malformed("padding after a delimiter"));
                    }
                    self.buf.advance(1);
                }
                b'\r' if self.buf[1] == b'\n' => {
                    self.buf.advance(2);
                    self.state = State::Head;
                    return Ok(());
                }
                b'\n' => {
                    self.buf.advance(1);
                    self.state = State::Head;
                    return Ok(());
                }
                _ => return Err(malformed("delimiter not followed by a line break")),
            }
        }
    }

    /// A part's head, bounded while it arrives.
    async fn head(&mut self) -> Result<Headers> {
        let max = self.limits.max_head_bytes;
        let mut searched = 0usize;
        // A part with neither headers nor content: the next delimiter follows at once.
        while self.buf.len() < self.delimiter.len() && self.fill().await? {}
        if self.buf.starts_with(&self.delimiter) {
            self.state = State::Body;
            return Ok(Headers::default());
        }
        let (len, skip) = loop {
            // No header at all: the blank line comes first.
            if self.buf.starts_with(b"\r\n") {
                break (0, 2);
            }
            if self.buf.starts_with(b"\n") {
                break (0, 1);
            }
            let from = searched.saturating_sub(3);
            if let Some(end) = blank_line(&self.buf[from..]) {
                break (from + end.0, end.1);
            }
            searched = self.buf.len();
            // Room for the blank line after a head of exactly `max` bytes.
            if searched > max + 2 {
                return Err(head_too_large(max));
            }
            if !self.fill().await? {
                return Err(malformed("unexpected end in a part's headers"));
            }
        };
        if len > max {
            return Err(head_too_large(max));
        }
        let head = self.buf.split_to(len + skip);
        let text = String::from_utf8_lossy(&head[..len]);
        let fields = header_fields(&text).map_err(|line| {
            let shown: String = line.chars().take(64).collect();
            malformed(&format!("header line {shown:?}"))
        })?;
        if fields.len() > self.limits.max_fields {
            return Err(Error::invalid(format!(
                "multipart body (a part has more than {} header fields)",
                self.limits.max_fields
            )));
        }
        self.state = State::Body;
        Ok(Headers(fields))
    }
}

fn head_too_large(max: usize) -> Error {
    Error::invalid(format!("multipart body (a part's headers exceed {max} bytes, limits.max_part_head_bytes)"))
}

/// The end of the header lines in `buf`: (bytes of the lines including the last line
/// break, length of the blank line that follows), for CRLF or LF line ends.
fn blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]).map(|i| i + from) {
        let rest = &buf[i + 1..];
        if rest.starts_with(b"\r\n") {
            return Some((i + 1, 2));
        }
        if rest.starts_with(b"\n") {
            return Some((i + 1, 1));
        }
        from = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Read a whole body fed in chunks of `size` bytes: each part's headers and content.
    async fn read_all(body: &[u8], boundary: &str, size: usize, limits: Limits) -> Result<Vec<(Headers, Vec<u8>)>> {
        let chunks: Vec<Result<Bytes>> = body.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let mut r = Reader::new(futures_util::stream::iter(chunks), boundary, limits);
        let mut out = Vec::new();
        while let Some(h) = r.next_part().await? {
            let mut content = Vec::new();
            while let Some(c) = r.chunk().await? {
                content.extend_from_slice(&c);
            }
            out.push((h, content));
        }
        Ok(out)
    }

    #[tokio::test]
    async fn parts_are_read_whatever_the_chunking() {
        let body =
            b"preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b \t\r\nX: 1\r\n\r\n\r\n--b--\r\nepilogue";
        for size in [1, 2, 3, 5, 7, 64, 1024] {
            let parts = read_all(body, "b", size, Limits::default()).await.unwrap();
            assert_eq!(parts.len(), 2, "chunks of {size}");
            assert_eq!(parts[0].0.get("content-type"), Some("text/plain"));
            assert_eq!(parts[0].1, b"hello");
            assert_eq!(parts[1].0.get("x"), Some("1"));
            assert_eq!(parts[1].1, b"");
        }
    }

    #[tokio::test]
    async fn folded_header_lines_are_unfolded() {
        let body = b"--b\r\nContent-Disposition: inline;\r\n filename=\"a b.txt\"\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--";
        let parts = read_all(body, "b", 4, Limits::default()).await.unwrap();
        assert_eq!(parts[0].0.get("content-disposition"), Some("inline; filename=\"a b.txt\""));
        assert_eq!(parts[0].0.disposition_param("filename").as_deref(), Some("a b.txt"));
    }

    #[tokio::test]
    async fn tab_folds_and_empty_parts() {
        let body = b"--b\r\nContent-Type: multipart/mixed;\r\n\tboundary=\"x\"\r\n\r\n--x--\r\n--b\r\n\r\n--b--";
        let parts = read_all(body, "b", 3, Limits::default()).await.unwrap();
        assert_eq!(parts[0].0.get("content-type"), Some("multipart/mixed; boundary=\"x\""));
        assert!("multipart/mixed; boundary=\"x\"".parse::<mime::Mime>().is_ok());
        assert_eq!(parts[1], (Headers::default(), Vec::new()), "a part with no headers and no content");
    }

    #[tokio::test]
    async fn control_characters_in_values_are_refused() {
        for value in ["attachment;\u{1}filename=a", "a\rb", "x\0"] {
            let body = format!("--b\r\nContent-Disposition: {value}\r\n\r\nx\r\n--b--");
            assert!(read_all(body.as_bytes(), "b", 5, Limits::default()).await.is_err(), "{value:?}");
        }
        assert!(header_fields("X: a\tb\r\n").is_ok(), "a tab is fine");
    }

    #[tokio::test]
    async fn a_head_of_exactly_the_bound_is_accepted_however_it_is_cut() {
        let value = "v".repeat(100 - "X: \r\n".len());
        let body = format!("--b\r\nX: {value}\r\n\r\nx\r\n--b--");
        let limits = Limits { max_head_bytes: 100, max_fields: 8 };
        for size in 1..=40 {
            assert!(read_all(body.as_bytes(), "b", size, limits).await.is_ok(), "chunks of {size}");
        }
        let limits = Limits { max_head_bytes: 99, max_fields: 8 };
        assert!(read_all(body.as_bytes(), "b", 7, limits).await.is_err());
    }

    #[tokio::test]
    async fn a_huge_head_is_refused_without_being_held() {
        let mut body = b"--b\r\nX-Huge: ".to_vec();
        body.extend(std::iter::repeat_n(b'a', 100_000));
        body.extend_from_slice(b"\r\n\r\nx\r\n--b--");
        let limits = Limits { max_head_bytes: 1024, max_fields: 8 };
        for size in [100, 4096, body.len()] {
            let err = read_all(&body, "b", size, limits).await.unwrap_err();
            assert!(err.to_string().contains("exceed 1024 bytes"), "{err}");
        }
        let many: String = (0..20).map(|i| format!("X-{i}: v\r\n")).collect();
        let body = format!("--b\r\n{many}\r\nx\r\n--b--");
        let err = read_all(body.as_bytes(), "b", 7, limits).await.unwrap_err();
        assert!(err.to_string().contains("more than 8 header fields"), "{err}");
    }

    #[tokio::test]
    async fn malformed_bodies_are_refused() {
        for body in [
            &b"no delimiter at all"[..],
            b"--b\r\nX: 1\r\n\r\nunterminated",
            b"--bX\r\n",
            b"--b\r\nno colon\r\n\r\n\r\n--b--",
        ] {
            assert!(read_all(body, "b", 3, Limits::default()).await.is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[tokio::test]
    async fn a_nested_multipart_reads_through_the_outer_part() {
        let body = b"--o\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\none\r\n--i\r\n\r\ntwo\r\n--i--\r\n--o--";
        let chunks: Vec<Result<Bytes>> = body.chunks(3).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let mut outer = Reader::new(futures_util::stream::iter(chunks), "o", Limits::default());
        outer.next_part().await.unwrap().unwrap();
        let mut inner = Reader::new(outer.body(), "i", Limits::default());
        let mut got = Vec::new();
        while inner.next_part().await.unwrap().is_some() {
            let mut c = Vec::new();
            while let Some(b) = inner.chunk().await.unwrap() {
                c.extend_from_slice(&b);
            }
            got.push(c);
        }
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        drop(inner);
        assert!(outer.next_part().await.unwrap().is_none());
    }

    #[test]
    fn header_params() {
        assert_eq!(header_param("form-data; name=\"root-fields\"", "name").as_deref(), Some("root-fields"));
        assert_eq!(header_param("inline; name=geo-location", "NAME").as_deref(), Some("geo-location"));
        assert_eq!(header_param("attachment; filename=\"a\\\"b\"; size=3", "size").as_deref(), Some("3"));
        assert_eq!(header_param("inline", "name"), None);
    }
}
