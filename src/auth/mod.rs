//! Authentication and authorisation.
//!
//! Every request yields a [`Principal`] (today from HTTP Basic credentials of accounts made
//! with `cpm-nms account add`), and every route is one [`Operation`] that knows the OAuth
//! scope it needs (NMS Appendix G). [`authorize`] is the single decision point: the
//! principal must own the box (service principals: any box of the store) and hold the scope.
//!
//! Password hashes are argon2, deliberately slow; a successful verification is remembered
//! for `auth.cache_ttl_secs` under a SHA-256 of the credentials, so a request costs a map
//! lookup, not an argon2 run. Removing an account takes effect on every node within that TTL.

pub mod operation;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use dashmap::DashMap;
use sha2::{Digest, Sha256};

pub use operation::{Operation, Scope};

use crate::error::{Error, Result};
use crate::store::MetaStore;

/// The box id meaning "the box of the authenticated subscriber" (NMS Appendix G.1.2).
pub const ACR_AUTH: &str = "acr:auth";

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Principal {
    pub name: String,
    /// A CPM Participating Function (or other network service): may act on any box.
    pub is_service: bool,
    /// (store, address) pairs this principal owns.
    pub boxes: Vec<(String, String)>,
    /// Granted scopes (Basic accounts hold all of them).
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// The address `acr:auth` stands for in `store`: the principal's only box there.
    pub fn own_box(&self, store: &str) -> Option<&str> {
        let mut it = self.boxes.iter().filter(|(s, _)| s == store);
        match (it.next(), it.next()) {
            (Some((_, a)), None) => Some(a.as_str()),
            _ => None,
        }
    }
}

/// The one authorisation decision: scope, then box ownership or service role.
pub fn authorize(p: &Principal, op: Operation, store: &str, address: &str) -> Result<()> {
    let needed = op.scope();
    if !p.scopes.iter().any(|s| *s == needed || *s == Scope::All) {
        return Err(Error::Forbidden { reason: format!("missing scope {}", needed.as_str()) });
    }
    if p.is_service || p.boxes.iter().any(|(s, a)| s == store && a == address) {
        Ok(())
    } else {
        Err(Error::Forbidden { reason: format!("no access to box {address}") })
    }
}

/// Hash a password for storage.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(Error::internal)
}

fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Turns credentials into principals.
pub struct Authenticator {
    meta: Arc<dyn MetaStore>,
    basic: bool,
    realm: String,
    ttl: Duration,
    cache: DashMap<[u8; 32], (Principal, Instant)>,
    /// Password verifications run (argon2), for metrics and tests of the cache.
    verifications: AtomicU64,
}

impl Authenticator {
    pub fn new(meta: Arc<dyn MetaStore>, basic: bool, realm: String, ttl: Duration) -> Self {
        Self { meta, basic, realm, ttl, cache: DashMap::new(), verifications: AtomicU64::new(0) }
    }

    /// How many password verifications (argon2 runs) this authenticator has made.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// The `WWW-Authenticate` challenge sent with a 401.
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{}\", charset=\"UTF-8\"", self.realm)
    }

    fn unauthenticated(&self, reason: &str) -> Error {
        Error::Unauthenticated { reason: reason.to_string(), challenge: self.challenge() }
    }

    /// Authenticate an `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal> {
        let Some(value) = authorization else {
            return Err(self.unauthenticated("credentials required"));
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("basic") || !self.basic {
            return Err(self.unauthenticated(&format!("unsupported authorization scheme {scheme}")));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| self.unauthenticated("malformed Basic credentials"))?;
        let (user, password) =
            decoded.split_once(':').ok_or_else(|| self.unauthenticated("malformed Basic credentials"))?;
        self.basic_login(user, password).await
    }

    async fn basic_login(&self, user: &str, password: &str) -> Result<Principal> {
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0u8])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if let Some(entry) = self.cache.get(&key)
            && entry.1 > Instant::now()
        {
            return Ok(entry.0.clone());
        }
        let bad = || self.unauthenticated("invalid user name or password");
        let account = self.meta.find_account(user).await?;
        let Some(account) = account else {
            // Spend the same effort as a real check so timing does not reveal user names.
            let pw = password.to_string();
            tokio::task::spawn_blocking(move || verify_password(&pw, DUMMY_HASH)).await.ok();
            return Err(bad());
        };
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let (pw, hash) = (password.to_string(), account.password_hash.clone());
        let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &hash)).await.map_err(Error::internal)?;
        if !ok {
            return Err(bad());
        }
        let principal = Principal {
            name: account.name,
            is_service: account.is_service,
            boxes: account.boxes,
            scopes: vec![Scope::All],
        };
        if self.cache.len() > 100_000 {
            let now = Instant::now();
            self.cache.retain(|_, v| v.1 > now);
        }
        self.cache.insert(key, (principal.clone(), Instant::now() + self.ttl));
        Ok(principal)
    }
}

/// A valid argon2 hash of a random string, verified against when the user does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2ayvn1L2d1Ivb8yNlxBS6eJkBNmAbvBGhMwK0Sh3Ah8";

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(service: bool) -> Principal {
        Principal {
            name: "u".into(),
            is_service: service,
            boxes: vec![("base".into(), "tel:+1".into())],
            scopes: vec![Scope::Read],
        }
    }

    #[test]
    fn owner_reads_own_box_only() {
        let p = principal(false);
        assert!(authorize(&p, Operation::ObjectGet, "base", "tel:+1").is_ok());
        assert!(authorize(&p, Operation::ObjectGet, "base", "tel:+2").is_err());
        assert!(authorize(&p, Operation::ObjectGet, "other", "tel:+1").is_err());
    }

    #[test]
    fn scope_is_checked_before_box() {
        let p = principal(true);
        assert!(authorize(&p, Operation::ObjectGet, "base", "tel:+9").is_ok());
        assert!(matches!(
            authorize(&p, Operation::ObjectDelete, "base", "tel:+1"),
            Err(Error::Forbidden { reason }) if reason.contains("oma_rest_nms.modify")
        ));
    }

    #[test]
    fn password_round_trip() {
        let h = hash_password("secret").expect("hash");
        assert!(verify_password("secret", &h));
        assert!(!verify_password("Secret", &h));
        assert!(!verify_password("x", DUMMY_HASH) || DUMMY_HASH.is_empty());
    }
}
