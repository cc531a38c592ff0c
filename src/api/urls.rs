//! Absolute URLs of a box's resources, and parsing of URLs clients send back.
//!
//! Box ids and flag names are percent-encoded with everything but RFC 3986 unreserved
//! characters escaped, so `tel:+12125551212` is always emitted as `tel%3A%2B12125551212`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::error::{Error, Result};
use crate::nms::Parent;

/// Everything except `A-Z a-z 0-9 - . _ ~`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encode one path segment.
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// URL builder for one box.
#[derive(Clone, Debug)]
pub struct BoxUrls {
    /// `{public}/nms/v1/{store}/{encoded box}`
    base: String,
    store: String,
    address: String,
}

impl BoxUrls {
    pub fn new(public_url: &str, store: &str, address: &str) -> Self {
        Self {
            base: format!("{public_url}/nms/v1/{}/{}", encode_segment(store), encode_segment(address)),
            store: store.to_string(),
            address: address.to_string(),
        }
    }

    pub fn objects(&self) -> String {
        format!("{}/objects", self.base)
    }
    pub fn object(&self, id: &str) -> String {
        format!("{}/objects/{id}", self.base)
    }
    pub fn object_flags(&self, id: &str) -> String {
        format!("{}/objects/{id}/flags", self.base)
    }
    pub fn payload(&self, id: &str) -> String {
        format!("{}/objects/{id}/payload", self.base)
    }
    pub fn payload_part(&self, id: &str, part: &str) -> String {
        format!("{}/objects/{id}/payloadParts/{part}", self.base)
    }
    pub fn folder(&self, id: &str) -> String {
        format!("{}/folders/{id}", self.base)
    }
    pub fn subscriptions(&self) -> String {
        format!("{}/subscriptions", self.base)
    }
    pub fn subscription(&self, id: &str) -> String {
        format!("{}/subscriptions/{id}", self.base)
    }
    pub fn folder_flags(&self, id: &str) -> String {
        format!("{}/folders/{id}/flags", self.base)
    }

    /// The parent a client named with `parentFolder` (URL) or `parentFolderPath`; naming
    /// both is refused, naming neither leaves the choice to policy.
    pub fn parent(&self, parent_folder: Option<String>, parent_folder_path: Option<String>) -> Result<Parent> {
        match (parent_folder, parent_folder_path) {
            (Some(_), Some(_)) => Err(Error::invalid("parentFolder (give parentFolder or parentFolderPath, not both)")),
            (Some(url), None) => Ok(Parent::Folder(self.folder_id_from_url(&url, "parentFolder")?)),
            (None, Some(path)) => Ok(Parent::Path(path)),
            (None, None) => Ok(Parent::Unspecified),
        }
    }

    /// The folder id a `parentFolder` URL names. The URL must address a folder of this box
    /// (any host: clients may rewrite scheme and host); anything else is 400 SVC0002.
    pub fn folder_id_from_url(&self, url: &str, part: &str) -> Result<String> {
        self.id_from_url(url, "folders", part)
    }

    /// The object id an object resource URL names (same rules as for folders).
    pub fn object_id_from_url(&self, url: &str, part: &str) -> Result<String> {
        self.id_from_url(url, "objects", part)
    }

    fn id_from_url(&self, url: &str, collection: &str, part: &str) -> Result<String> {
        let bad = || Error::invalid(part.to_string());
        let path = match url::Url::parse(url) {
            Ok(u) => u.path().to_string(),
            Err(_) if url.starts_with('/') => url.split(['?', '#']).next().unwrap_or_default().to_string(),
            Err(_) => return Err(bad()),
        };
        let segs: Vec<String> = path
            .split('/')
            .map(|s| percent_decode_str(s).decode_utf8().map(|c| c.into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        // .../nms/v1/{store}/{box}/{collection}/{id}
        let n = segs.len();
        if n < 6 || segs[n - 2] != collection || segs[n - 6] != "nms" || segs[n - 5] != "v1" {
            return Err(bad());
        }
        if segs[n - 4] != self.store || segs[n - 3] != self.address || segs[n - 1].is_empty() {
            return Err(bad());
        }
        Ok(segs[n - 1].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_ids_are_emitted_encoded() {
        let u = BoxUrls::new("http://h:1", "base", "tel:+12125551212");
        assert_eq!(u.object("o1"), "http://h:1/nms/v1/base/tel%3A%2B12125551212/objects/o1");
        assert_eq!(encode_segment("\\Seen"), "%5CSeen");
    }

    #[test]
    fn parent_folder_urls_must_name_this_box() {
        let u = BoxUrls::new("http://h:1", "base", "tel:+1");
        assert_eq!(
            u.folder_id_from_url("https://other/nms/v1/base/tel%3A%2B1/folders/f9", "parentFolder").ok().as_deref(),
            Some("f9")
        );
        assert_eq!(u.folder_id_from_url("/x/nms/v1/base/tel:+1/folders/f9", "p").ok().as_deref(), Some("f9"));
        assert!(u.folder_id_from_url("http://h/nms/v1/base/tel%3A%2B2/folders/f9", "p").is_err());
        assert!(u.folder_id_from_url("http://h/nms/v1/base/tel%3A%2B1/objects/f9", "p").is_err());
        assert!(u.folder_id_from_url("f9", "p").is_err());
        assert_eq!(u.object_id_from_url("http://h/nms/v1/base/tel%3A%2B1/objects/o7", "p").ok().as_deref(), Some("o7"));
        assert!(u.object_id_from_url("http://h/nms/v1/base/tel%3A%2B1/folders/o7", "p").is_err());
    }
}
