//! Wire structures: the exact OMA JSON shapes (NMS section 5.3, JSON rules of
//! REST_NetAPI_Common). Repeating elements are always arrays, numbers are JSON numbers,
//! absent optional members are omitted, and every URL is absolute.

use serde::{Deserialize, Deserializer, Serialize};

use crate::store::Attribute;

/// `{"name": .., "value": [..]}`. On input a single string value is accepted too.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttributeW {
    pub name: String,
    #[serde(default, deserialize_with = "one_or_many")]
    pub value: Vec<String>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
        OneOrMany::Null(()) => Vec::new(),
    })
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AttributeListW {
    #[serde(default)]
    pub attribute: Vec<AttributeW>,
}

impl AttributeListW {
    pub fn from_domain(attrs: &[Attribute]) -> Self {
        Self { attribute: attrs.iter().map(|a| AttributeW { name: a.name.clone(), value: a.values.clone() }).collect() }
    }

    pub fn into_domain(self) -> Vec<Attribute> {
        self.attribute.into_iter().map(|a| Attribute { name: a.name, values: a.value }).collect()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagListW {
    #[serde(default)]
    pub flag: Vec<String>,
    #[serde(rename = "resourceURL", skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
}

/// `PayloadPartInfo`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadPartW {
    pub content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_icon: Option<String>,
    pub size: u64,
    pub href: String,
}

/// `Object` as the server returns it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectW {
    pub parent_folder: String,
    pub attributes: AttributeListW,
    pub flags: FlagListW,
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    pub path: String,
    #[serde(rename = "payloadURL", skip_serializing_if = "Option::is_none")]
    pub payload_url: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub payload_part: Vec<PayloadPartW>,
    pub last_mod_seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_tag: Option<String>,
}

/// `Object` as a client deposits it (server-only members are ignored).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectIn {
    pub parent_folder: Option<String>,
    pub parent_folder_path: Option<String>,
    pub attributes: Option<AttributeListW>,
    pub flags: Option<FlagListW>,
    pub correlation_id: Option<String>,
    pub correlation_tag: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ObjectEnvelope {
    pub object: ObjectIn,
}

/// `Reference`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReferenceW {
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderReferenceListW {
    pub folder_reference: Vec<ReferenceW>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReferenceListW {
    pub object_reference: Vec<ReferenceW>,
}

/// `Folder` as the server returns it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderW {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_folder: Option<String>,
    pub attributes: AttributeListW,
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub name: String,
    pub last_mod_seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_folders: Option<FolderReferenceListW>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<ObjectReferenceListW>,
}

/// `Folder` as a client creates it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderIn {
    pub parent_folder: Option<String>,
    pub parent_folder_path: Option<String>,
    pub name: Option<String>,
    pub attributes: Option<AttributeListW>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct FolderEnvelope {
    pub folder: FolderIn,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagListEnvelope {
    pub flag_list: FlagListW,
}

#[derive(Clone, Debug, Deserialize)]
pub struct NameEnvelope {
    pub name: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PathListW {
    #[serde(deserialize_with = "one_or_many")]
    pub path: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathListEnvelope {
    pub path_list: PathListW,
}

/// An OMA exception (`serviceException` / `policyException` body).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionW {
    pub message_id: &'static str,
    pub text: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<String>,
}

/// `RequestError`, also used as `failure` inside bulk responses.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestErrorW {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_exception: Option<ExceptionW>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_exception: Option<ExceptionW>,
}

/// One entry of a `bulkResponseList`.
#[derive(Clone, Debug, Serialize)]
pub struct ResponseW {
    pub code: u16,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success: Option<ReferenceW>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<RequestErrorW>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BulkResponseListW {
    pub response: Vec<ResponseW>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_accept_a_single_string() {
        let a: AttributeW = serde_json::from_str(r#"{"name":"Subject","value":"hi"}"#).expect("parse");
        assert_eq!(a.value, vec!["hi"]);
        let a: AttributeW = serde_json::from_str(r#"{"name":"To","value":["a","b"]}"#).expect("parse");
        assert_eq!(a.value, vec!["a", "b"]);
    }

    #[test]
    fn empty_flag_list_is_an_array() {
        let f = FlagListW::default();
        assert_eq!(serde_json::to_string(&f).expect("json"), r#"{"flag":[]}"#);
    }
}
