//! HTTP Digest access authentication (RFC 7616), SHA-256 and MD5, `qop=auth`.
//!
//! Digest cannot be checked against an argon2 hash: the server needs
//! H(A1) = H(username ":" realm ":" password), which `cpm-nms account add` stores per
//! account and algorithm ([`secrets`]). Those values are password-equivalent for Digest.
//!
//! Nonces are stateless: `v1.` + base64url(issue time in ms || 8 random bytes || MAC),
//! sealed with the server's token key (the cursor key, shared by every node) for the
//! purpose `digest-nonce:{realm}`. A nonce whose MAC fails is refused; one older than
//! `auth.digest.nonce_ttl_secs` is *stale*: a response that is otherwise right is answered
//! with a fresh challenge carrying `stale=true`, so the client retries without asking the
//! user again.
//!
//! The nonce count (`nc`) is checked as far as a stateless design allows: it must be eight
//! hex digits and not zero, and each node remembers, until the nonce goes stale, the
//! (nonce, nc, cnonce) triples it has accepted and refuses a repeat (answered `stale=true`).
//! A replay sent to another node of a multi-node deployment within the nonce lifetime is
//! not detected; TLS and a short nonce lifetime are the mitigation (see docs/security.md).
//!
//! Responses are compared in constant time.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use md5::{Digest as _, Md5};
use sha2::Sha256;
use sha2::digest::Digest as _;
use subtle::ConstantTimeEq;

use crate::model::DigestSecrets;
use crate::nms::TokenKey;

/// A Digest hash algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Md5,
}

impl Algorithm {
    /// The token used in `algorithm=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    /// Parse an `algorithm=` value (case-insensitive); `-sess` variants are not supported.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else {
            None
        }
    }

    /// Lowercase hex of the hash of `data`.
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
        }
    }
}

/// The H(A1) values of `username` with `password` in `realm`, for the given algorithms.
pub fn secrets(username: &str, realm: &str, password: &str, algorithms: &[Algorithm]) -> DigestSecrets {
    let a1 = format!("{username}:{realm}:{password}");
    let mut s = DigestSecrets { realm: realm.to_string(), ha1_sha256: None, ha1_md5: None };
    for a in algorithms {
        match a {
            Algorithm::Sha256 => s.ha1_sha256 = Some(Algorithm::Sha256.hex(a1.as_bytes())),
            Algorithm::Md5 => s.ha1_md5 = Some(Algorithm::Md5.hex(a1.as_bytes())),
        }
    }
    s
}

/// The expected `response` of RFC 7616 §3.4.1 for `qop=auth`.
#[allow(clippy::too_many_arguments)]
pub fn response(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = alg.hex(format!("{method}:{uri}").as_bytes());
    alg.hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes())
}

/// The parameters of an `Authorization: Digest ...` header.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub userhash: bool,
}

/// Parse the part after `Digest ` (a comma-separated list of `name=token` or
/// `name="quoted string"`). Never panics; `Err` names what is wrong.
pub fn parse(params: &str) -> Result<Credentials, &'static str> {
    let mut c = Credentials::default();
    let (mut username, mut username_ext) = (None, None);
    let mut seen_response = false;
    for (name, value) in auth_params(params)? {
        match name.to_ascii_lowercase().as_str() {
            "username" => username = Some(value),
            "username*" => username_ext = Some(decode_ext_value(&value).ok_or("malformed username*")?),
            "realm" => c.realm = value,
            "nonce" => c.nonce = value,
            "uri" => c.uri = value,
            "response" => {
                c.response = value;
                seen_response = true;
            }
            "algorithm" => c.algorithm = Some(value),
            "cnonce" => c.cnonce = Some(value),
            "opaque" => c.opaque = Some(value),
            "qop" => c.qop = Some(value),
            "nc" => c.nc = Some(value),
            "userhash" => c.userhash = value.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    c.username = match (username, username_ext) {
        (Some(_), Some(_)) => return Err("both username and username*"),
        (Some(u), None) | (None, Some(u)) => u,
        (None, None) => return Err("missing username"),
    };
    if c.nonce.is_empty() || c.uri.is_empty() || !seen_response {
        return Err("missing nonce, uri or response");
    }
    Ok(c)
}

/// Split `a=b, c="d, e"` into pairs, unescaping quoted strings.
fn auth_params(s: &str) -> Result<Vec<(String, String)>, &'static str> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || name.is_empty() {
            return Err("malformed Digest parameters");
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.push(chars.next().ok_or("malformed Digest parameters")?),
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err("malformed Digest parameters");
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if out.len() >= 32 {
            return Err("too many Digest parameters");
        }
        out.push((name, value));
    }
    Ok(out)
}

/// RFC 8187 `UTF-8''percent-encoded` (the only charset RFC 7616 allows for `username*`).
fn decode_ext_value(v: &str) -> Option<String> {
    let (charset, rest) = v.split_once('\'')?;
    let (_lang, encoded) = rest.split_once('\'')?;
    if !charset.eq_ignore_ascii_case("UTF-8") {
        return None;
    }
    percent_encoding::percent_decode_str(encoded).decode_utf8().ok().map(|s| s.into_owned())
}

/// The state of a nonce presented by a client.
#[derive(Debug, PartialEq, Eq)]
pub enum NonceState {
    /// Sealed by this deployment and young enough; `expires` is when it goes stale.
    Fresh { expires: Instant },
    /// Sealed by this deployment but too old.
    Stale,
    /// Not one of ours (forged, truncated, for another realm).
    Invalid,
}

/// Digest configuration and the per-node replay memory.
pub struct DigestAuth {
    realm: String,
    algorithms: Vec<Algorithm>,
    ttl: Duration,
    key: TokenKey,
    opaque: String,
    /// Accepted (nonce, nc, cnonce) triples (SHA-256 of them) until their nonce goes stale.
    seen: DashMap<[u8; 32], Instant>,
    last_sweep: std::sync::Mutex<Instant>,
}

const SEEN_MAX: usize = 200_000;

impl DigestAuth {
    /// `ttl` is kept between one second and one day.
    pub fn new(realm: &str, algorithms: Vec<Algorithm>, ttl: Duration, key: TokenKey) -> Self {
        let ttl = ttl.clamp(Duration::from_secs(1), Duration::from_secs(86_400));
        let opaque = key.seal(&format!("digest-opaque:{realm}"), b"");
        Self {
            realm: realm.to_string(),
            algorithms,
            ttl,
            key,
            opaque,
            seen: DashMap::new(),
            last_sweep: std::sync::Mutex::new(Instant::now()),
        }
    }

    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    fn purpose(&self) -> String {
        format!("digest-nonce:{}", self.realm)
    }

    /// A fresh nonce.
    pub fn nonce(&self) -> String {
        let mut payload = crate::ids::now_ms().to_be_bytes().to_vec();
        payload.extend_from_slice(&rand::random::<[u8; 8]>());
        self.key.seal(&self.purpose(), &payload)
    }

    /// Whether `nonce` is ours, and still fresh.
    pub fn check_nonce(&self, nonce: &str) -> NonceState {
        let Some(payload) = self.key.open(&self.purpose(), nonce) else { return NonceState::Invalid };
        let Some(ts) = payload.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(i64::from_be_bytes) else {
            return NonceState::Invalid;
        };
        if payload.len() != 16 {
            return NonceState::Invalid;
        }
        let age_ms = crate::ids::now_ms().saturating_sub(ts);
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        if age_ms < -60_000 {
            // Issued "in the future": another node's clock is far off; treat as stale.
            return NonceState::Stale;
        }
        if age_ms > ttl_ms {
            return NonceState::Stale;
        }
        let left = Duration::from_millis(u64::try_from(ttl_ms - age_ms.max(0)).unwrap_or(0));
        NonceState::Fresh { expires: Instant::now() + left }
    }

    /// Whether the opaque value (if the client sent one) is ours.
    pub fn opaque_ok(&self, opaque: Option<&str>) -> bool {
        opaque.is_none_or(|o| o == self.opaque)
    }

    /// Remember an accepted (nonce, nc, cnonce); `false` if it was seen before (a replay).
    pub fn remember(&self, nonce: &str, nc: &str, cnonce: &str, expires: Instant) -> bool {
        let key: [u8; 32] = Sha256::new()
            .chain_update(nonce.as_bytes())
            .chain_update([0u8])
            .chain_update(nc.to_ascii_lowercase().as_bytes())
            .chain_update([0u8])
            .chain_update(cnonce.as_bytes())
            .finalize()
            .into();
        if self.seen.len() > SEEN_MAX {
            // Sweep stale entries at most once a second (a full pass is not per request).
            let now = Instant::now();
            let mut last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
            if now.saturating_duration_since(*last) >= Duration::from_secs(1) {
                *last = now;
                drop(last);
                self.seen.retain(|_, v| *v > now);
            }
        }
        match self.seen.entry(key) {
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(v) => {
                v.insert(expires);
                true
            }
        }
    }

    /// One challenge per algorithm, in order of preference.
    pub fn challenges(&self, stale: bool) -> Vec<String> {
        let nonce = self.nonce();
        self.algorithms
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{}\", qop=\"auth\", algorithm={}, nonce=\"{nonce}\", opaque=\"{}\", charset=UTF-8{}",
                    quote_escape(&self.realm),
                    a.as_str(),
                    self.opaque,
                    if stale { ", stale=true" } else { "" }
                )
            })
            .collect()
    }
}

/// Escape `"` and `\` for a quoted-string.
pub fn quote_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Constant-time equality of two (hex) strings.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether `nc` is eight hex digits and not zero.
pub fn nc_ok(nc: &str) -> bool {
    nc.len() == 8 && nc.bytes().all(|b| b.is_ascii_hexdigit()) && u32::from_str_radix(nc, 16).is_ok_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1: the worked example, for both algorithms.
    #[test]
    fn rfc7616_example() {
        let realm = "http-auth@example.org";
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let s = secrets("Mufasa", realm, "Circle of Life", &[Algorithm::Md5, Algorithm::Sha256]);
        let md5 = s.ha1_md5.expect("md5");
        let sha = s.ha1_sha256.expect("sha");
        assert_eq!(
            response(Algorithm::Md5, &md5, nonce, "00000001", cnonce, "auth", "GET", "/dir/index.html"),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        assert_eq!(
            response(Algorithm::Sha256, &sha, nonce, "00000001", cnonce, "auth", "GET", "/dir/index.html"),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn parses_rfc_header_and_survives_junk() {
        let h = r#"username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let c = parse(h).expect("parse");
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.algorithm.as_deref(), Some("SHA-256"));
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert_eq!(c.qop.as_deref(), Some("auth"));
        let c = parse(r#"username*=UTF-8''J%C3%A4s%C3%B8n, nonce="n", uri="/", response="r""#).expect("ext");
        assert_eq!(c.username, "Jäsøn");
        let c = parse(r#"username="a\"b", nonce="n", uri="/", response="""#).expect("escapes");
        assert_eq!(c.username, "a\"b");
        for junk in ["", "=", "username", "username=\"open", "a=b", "username=x,,,", "\\", "username=\"x\\", "ü=ü"] {
            assert!(parse(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn nonces_are_sealed_and_expire() {
        let d = DigestAuth::new("r", vec![Algorithm::Sha256], Duration::from_secs(60), TokenKey::new(vec![7; 32]));
        let n = d.nonce();
        assert!(matches!(d.check_nonce(&n), NonceState::Fresh { .. }));
        assert_eq!(d.check_nonce("v1.AAAA"), NonceState::Invalid);
        let other = DigestAuth::new("other", vec![], Duration::from_secs(60), TokenKey::new(vec![7; 32]));
        assert_eq!(other.check_nonce(&n), NonceState::Invalid, "bound to the realm");
        let mut payload = (crate::ids::now_ms() - 61_000).to_be_bytes().to_vec();
        payload.extend_from_slice(&[0; 8]);
        let old = TokenKey::new(vec![7; 32]).seal("digest-nonce:r", &payload);
        assert_eq!(d.check_nonce(&old), NonceState::Stale);
        let exp = Instant::now() + Duration::from_secs(5);
        assert!(d.remember(&n, "00000001", "c", exp));
        assert!(!d.remember(&n, "00000001", "c", exp), "replay");
        assert!(d.remember(&n, "00000002", "c", exp));
        assert!(nc_ok("0000000a") && !nc_ok("00000000") && !nc_ok("1") && !nc_ok("0000000g"));
    }
}
