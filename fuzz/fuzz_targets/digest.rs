//! The parameters of an `Authorization: Digest ...` header (RFC 7616) and the checks a
//! login runs on them: algorithm, nonce count, nonce (sealed, fresh or stale), opaque, the
//! replay memory and the expected response. `@nonce@` and `@opaque@` in the input stand for
//! a nonce and the opaque value this server issues, so the checks behind them are reached.
//!
//! What must hold: parsing never panics; what parses renders back (quoted, escaped) to a
//! header that parses to the same credentials; only nonces the server sealed are accepted,
//! and an accepted (nonce, nc, cnonce) is refused the second time.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cpm_nms::auth::digest::{self, Algorithm, Credentials, DigestAuth, NonceState};
use cpm_nms::nms::TokenKey;
use fuzz_common::bounded;
use libfuzzer_sys::fuzz_target;

fn auth() -> &'static DigestAuth {
    static AUTH: OnceLock<DigestAuth> = OnceLock::new();
    AUTH.get_or_init(|| {
        DigestAuth::new(
            "cpm-nms",
            vec![Algorithm::Sha256, Algorithm::Md5],
            // The shortest lifetime, so the replay memory of a long run stays small.
            Duration::from_secs(1),
            TokenKey::new(b"fuzzing-cursor-secret".to_vec()),
        )
    })
}

/// The header a client would send for these credentials.
fn render(c: &Credentials) -> String {
    let q = digest::quote_escape;
    let mut out = format!(
        "username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\"",
        q(&c.username),
        q(&c.realm),
        q(&c.nonce),
        q(&c.uri),
        q(&c.response)
    );
    for (name, value) in
        [("algorithm", &c.algorithm), ("cnonce", &c.cnonce), ("opaque", &c.opaque), ("qop", &c.qop), ("nc", &c.nc)]
    {
        if let Some(v) = value {
            out.push_str(&format!(", {name}=\"{}\"", q(v)));
        }
    }
    out.push_str(if c.userhash { ", userhash=true" } else { ", userhash=false" });
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let d = auth();
    let nonce = d.nonce();
    let opaque =
        d.challenges(false).first().and_then(|c| c.split("opaque=\"").nth(1)?.split('"').next()).map(String::from);
    let text = text.replace("@nonce@", &nonce).replace("@opaque@", opaque.as_deref().unwrap_or_default());
    let parsed = bounded("Digest parameters", text.as_bytes(), 64, 64 * 1024, || {
        let c = digest::parse(&text).ok()?;
        let again = digest::parse(&render(&c));
        assert_eq!(again.as_ref(), Ok(&c), "rendered as {}", render(&c));
        Some(c)
    });
    if let Some(c) = parsed {
        login_checks(d, &c, &nonce);
    }
});

/// What a login checks after parsing (the account lookup aside).
fn login_checks(d: &DigestAuth, c: &Credentials, issued: &str) {
    let alg = match c.algorithm.as_deref() {
        None => Some(Algorithm::Md5),
        Some(a) => Algorithm::parse(a),
    };
    if let Some(a) = alg {
        assert_eq!(Algorithm::parse(a.as_str()), Some(a));
    }
    let nc_ok = c.nc.as_deref().is_some_and(digest::nc_ok);
    if nc_ok {
        let nc = c.nc.as_deref().unwrap_or_default();
        assert!(nc.len() == 8 && u32::from_str_radix(nc, 16).is_ok_and(|n| n > 0), "{nc}");
    }
    let _ = d.opaque_ok(c.opaque.as_deref());
    match d.check_nonce(&c.nonce) {
        NonceState::Fresh { expires } => {
            assert_eq!(c.nonce, issued, "a nonce the server did not issue is fresh");
            assert!(expires > Instant::now());
            if let (Some(nc), Some(cnonce)) = (c.nc.as_deref(), c.cnonce.as_deref()) {
                assert!(d.remember(&c.nonce, nc, cnonce, expires), "a fresh nonce was seen before");
                assert!(!d.remember(&c.nonce, nc, cnonce, expires), "a replay was accepted");
            }
        }
        // (Only if this run took longer than the nonce lifetime.)
        NonceState::Stale => assert_eq!(c.nonce, issued, "a forged nonce is stale"),
        NonceState::Invalid => assert_ne!(c.nonce, issued),
    }
    if let (Some(a), Some(qop), Some(nc), Some(cnonce)) = (alg, c.qop.as_deref(), c.nc.as_deref(), c.cnonce.as_deref())
    {
        let expected = digest::response(a, "0", &c.nonce, nc, cnonce, qop, "GET", &c.uri);
        assert_eq!(expected.len(), if a == Algorithm::Sha256 { 64 } else { 32 });
        let _ = digest::ct_eq(&expected, &c.response.to_ascii_lowercase());
    }
}
