//! Opaque, versioned, tamper-evident tokens (cursors).
//!
//! A token is `v1.` + base64url(payload || mac), where mac is the first 16 bytes of
//! HMAC-SHA256(key, purpose || 0x00 || payload). The *purpose* binds a token to what it was
//! made for (the box, the folder, the listing filter), so a token replayed elsewhere fails
//! to open exactly like a forged one. The key lives in the configuration or in the data
//! directory, so tokens stay valid across restarts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "v1.";
const MAC_LEN: usize = 16;

/// The key that seals tokens.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    pub fn new(key: Vec<u8>) -> Self {
        Self(key)
    }

    fn mac(&self, purpose: &str, payload: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_hmac());
        m.update(purpose.as_bytes());
        m.update(&[0]);
        m.update(payload);
        m.finalize().into_bytes()[..MAC_LEN].to_vec()
    }

    /// Seal `payload` for `purpose`.
    pub fn seal(&self, purpose: &str, payload: &[u8]) -> String {
        let mut buf = payload.to_vec();
        buf.extend_from_slice(&self.mac(purpose, payload));
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(buf))
    }

    /// Open a token sealed for `purpose`; `None` if it is malformed, forged or for another purpose.
    pub fn open(&self, purpose: &str, token: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX)?).ok()?;
        if raw.len() < MAC_LEN {
            return None;
        }
        let (payload, mac) = raw.split_at(raw.len() - MAC_LEN);
        let expected = self.mac(purpose, payload);
        // Constant-time comparison.
        let diff = expected.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then(|| payload.to_vec())
    }
}

fn unreachable_hmac() -> Hmac<Sha256> {
    // `new_from_slice` only fails for fixed-size-key MACs; HMAC has none. Keep a defined path.
    <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).unwrap_or_else(|_| unreachable!())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = TokenKey::new(b"secret".to_vec());
        let t = k.seal("folder:1", b"\x01abc");
        assert_eq!(k.open("folder:1", &t).as_deref(), Some(&b"\x01abc"[..]));
        assert!(k.open("folder:2", &t).is_none(), "bound to its purpose");
        assert!(TokenKey::new(b"other".to_vec()).open("folder:1", &t).is_none());
        let mut bytes = t.into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert!(k.open("folder:1", &String::from_utf8(bytes).expect("utf8")).is_none());
        assert!(k.open("folder:1", "garbage").is_none());
        assert!(k.open("folder:1", "v1.").is_none());
    }
}
