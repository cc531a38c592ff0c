//! Wire structures: the exact OMA JSON shapes (NMS section 5.3, JSON rules of
//! REST_NetAPI_Common). Repeating elements are always arrays, numbers are JSON numbers,
//! absent optional members are omitted, and every URL is absolute. The same structures are
//! the XML documents (`super::xml`).

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::model::Attribute;

/// `{"name": .., "value": [..]}`. On input a single string value is accepted too.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
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

/// A list member that clients may also send as a single element.
fn one_or_many_of<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match Option::<OneOrMany<T>>::deserialize(d)? {
        Some(OneOrMany::Many(v)) => v,
        Some(OneOrMany::One(x)) => vec![x],
        None => Vec::new(),
    })
}

/// A scalar a client may send as a string, number or boolean (`"true"`, `true`, `3`).
#[derive(Clone, Debug)]
pub struct Scalar(pub String);

/// An optional whole number given as a JSON number or string (`400 SVC0002 part` if it is
/// not one).
pub fn number(v: Option<Scalar>, part: &str) -> crate::error::Result<Option<u64>> {
    v.map(|s| s.0.trim().parse::<u64>().map_err(|_| crate::error::Error::invalid(part.to_string()))).transpose()
}

impl utoipa::PartialSchema for Scalar {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type([Type::String, Type::Number, Type::Boolean].into_iter().collect::<SchemaType>())
            .description(Some("A string, number or boolean"))
            .into()
    }
}

impl ToSchema for Scalar {}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Scalar(s)),
            serde_json::Value::Number(n) => Ok(Scalar(n.to_string())),
            serde_json::Value::Bool(b) => Ok(Scalar(b.to_string())),
            other => Err(serde::de::Error::custom(format!("expected a string, number or boolean, got {other}"))),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
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

/// A flag's name as the domain accepts it (`nms::validate_flag`): an optional leading
/// backslash, then IMAP atom characters, at most 255 bytes (`\Seen`, `$Label`).
pub struct FlagName;

/// The characters of a flag's name after its optional backslash.
const FLAG_PATTERN: &str = r"^\\?[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+$";

impl utoipa::PartialSchema for FlagName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(FLAG_PATTERN))
            .max_length(Some(255))
            .description(Some("A flag: an optional leading backslash, then IMAP atom characters"))
            .into()
    }
}

impl ToSchema for FlagName {}

/// A string schema allowing only `values`.
fn one_of_strings(values: &[&str]) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied())).build()
}

fn flag_operations() -> utoipa::openapi::schema::Object {
    one_of_strings(&["AddFlag", "RemoveFlag"])
}

fn channel_types() -> utoipa::openapi::schema::Object {
    one_of_strings(&["LongPolling"])
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlagListW {
    #[serde(default)]
    #[schema(value_type = Vec<FlagName>)]
    pub flag: Vec<String>,
    #[serde(rename = "resourceURL", skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
}

/// `PayloadPartInfo`.
#[derive(Clone, Debug, Serialize, ToSchema)]
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
#[derive(Clone, Debug, Serialize, ToSchema)]
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
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectIn {
    pub parent_folder: Option<String>,
    pub parent_folder_path: Option<String>,
    pub attributes: Option<AttributeListW>,
    pub flags: Option<FlagListW>,
    pub correlation_id: Option<String>,
    pub correlation_tag: Option<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct ObjectEnvelope {
    pub object: ObjectIn,
}

/// `Reference`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReferenceW {
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FolderReferenceListW {
    #[serde(default, deserialize_with = "one_or_many_of")]
    pub folder_reference: Vec<ReferenceW>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReferenceListW {
    #[serde(default, deserialize_with = "one_or_many_of")]
    pub object_reference: Vec<ReferenceW>,
}

/// `Folder` as the server returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
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
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FolderIn {
    pub parent_folder: Option<String>,
    pub parent_folder_path: Option<String>,
    /// No `/` and no control character, at most 255 bytes.
    #[schema(pattern = r"^[^/\u0000-\u001f\u007f-\u009f]+$", max_length = 255)]
    pub name: Option<String>,
    pub attributes: Option<AttributeListW>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct FolderEnvelope {
    pub folder: FolderIn,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlagListEnvelope {
    pub flag_list: FlagListW,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct NameEnvelope {
    pub name: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct PathListW {
    #[serde(deserialize_with = "one_or_many")]
    pub path: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathListEnvelope {
    pub path_list: PathListW,
}

// ---------------- search ----------------

/// `SearchCriterion`, or (extension) a nested `searchCriteria` group.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CriterionW {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: Option<String>,
    pub value: Option<Scalar>,
    #[schema(no_recursion)]
    pub search_criteria: Option<Box<SearchCriteriaW>>,
}

/// `SearchCriteria`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct SearchCriteriaW {
    #[serde(default, deserialize_with = "one_or_many_of")]
    pub criterion: Vec<CriterionW>,
    pub operator: Option<String>,
}

/// `SortCriterion`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct SortCriterionW {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: Option<String>,
    pub order: Option<String>,
}

/// `SortCriteria`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct SortCriteriaW {
    #[serde(default, deserialize_with = "one_or_many_of")]
    pub criterion: Vec<SortCriterionW>,
}

/// `SelectionCriteria`: both the TS shape (`sortCriteria`) and the examples' bare
/// `sortCriterion` are accepted.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectionCriteriaW {
    pub from_cursor: Option<String>,
    pub max_entries: Option<Scalar>,
    pub search_criteria: Option<SearchCriteriaW>,
    pub search_scope: Option<ReferenceW>,
    pub non_recursive_scope: Option<Scalar>,
    pub sort_criteria: Option<SortCriteriaW>,
    pub sort_criterion: Option<SortCriterionW>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectionEnvelope {
    pub selection_criteria: SelectionCriteriaW,
}

/// `ObjectList` as the server returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectListW {
    pub object: Vec<ObjectW>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_cursor: Option<String>,
}

/// `FolderList` as the server returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FolderListW {
    pub folder: Vec<FolderW>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

// ---------------- bulk, copy and move ----------------

/// `ObjectList` as a client sends it in bulkCreation `root-fields`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct ObjectListIn {
    #[serde(default, deserialize_with = "one_or_many_of")]
    #[schema(value_type = Vec<ObjectIn>)]
    pub object: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectListEnvelope {
    pub object_list: ObjectListIn,
}

/// `bulkUpdate`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkUpdateW {
    pub objects: Option<ObjectReferenceListW>,
    pub selection_criteria: Option<SelectionCriteriaW>,
    #[schema(schema_with = flag_operations)]
    pub operation: Option<String>,
    pub flags: Option<FlagListW>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkUpdateEnvelope {
    pub bulk_update: BulkUpdateW,
}

/// `bulkDelete`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkDeleteW {
    pub objects: Option<ObjectReferenceListW>,
    pub selection_criteria: Option<SelectionCriteriaW>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkDeleteEnvelope {
    pub bulk_delete: BulkDeleteW,
}

/// `ReferenceList` (both members may be omitted when empty).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct ReferenceListW {
    #[serde(default)]
    pub folders: FolderReferenceListW,
    #[serde(default)]
    pub objects: ObjectReferenceListW,
}

/// `TargetSourceRef`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetSourceRefW {
    pub target_ref: ReferenceW,
    pub source_refs: ReferenceListW,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetSourceRefEnvelope {
    pub target_source_ref: TargetSourceRefW,
}

/// An OMA exception (`serviceException` / `policyException` body).
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionW {
    pub message_id: &'static str,
    pub text: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<String>,
}

/// `RequestError`, also used as `failure` inside bulk responses.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestErrorW {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_exception: Option<ExceptionW>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_exception: Option<ExceptionW>,
}

/// One entry of a `bulkResponseList`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ResponseW {
    pub code: u16,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success: Option<ReferenceW>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<RequestErrorW>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BulkResponseListW {
    pub response: Vec<ResponseW>,
}

// ---------------- subscriptions and notifications ----------------

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackReferenceW {
    /// A notification channel's `callbackURL`, or a webhook (`sync.webhooks`).
    #[serde(rename = "notifyURL")]
    #[schema(format = "uri")]
    pub notify_url: String,
    pub callback_data: Option<String>,
    /// `XML` or `JSON` (absent: JSON): how a webhook receives the lists; a channel's poll
    /// answers in the format the poll asks for.
    pub notification_format: Option<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionIn {
    pub callback_reference: CallbackReferenceW,
    pub duration: Option<Scalar>,
    pub filter: Option<SearchCriteriaW>,
    pub client_correlator: Option<String>,
    pub restart_token: Option<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionEnvelope {
    pub nms_subscription: SubscriptionIn,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateIn {
    pub duration: Option<Scalar>,
    pub restart_token: Option<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateEnvelope {
    pub nms_subscription_update: UpdateIn,
}

/// An object as a notification shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangedObjectW<'a> {
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    pub parent_folder: String,
    pub flags: FlagListW,
    pub last_mod_seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_tag: Option<&'a str>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangedFolderW<'a> {
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_folder: Option<String>,
    pub name: &'a str,
    pub last_mod_seq: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoneW<'a> {
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    pub last_mod_seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_tag: Option<&'a str>,
}

#[derive(Serialize, ToSchema)]
pub struct Empty {}

/// One `nmsEvent`: an object with exactly one member naming its kind.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum EventW<'a> {
    ResetBox(Empty),
    ChangedObject(ChangedObjectW<'a>),
    ChangedFolder(ChangedFolderW<'a>),
    DeletedObject(GoneW<'a>),
    ExpiredObject(GoneW<'a>),
    DeletedFolder(GoneW<'a>),
    ExpiredFolder(GoneW<'a>),
}

#[derive(Serialize, ToSchema)]
pub struct LinkW {
    pub rel: &'static str,
    pub href: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventListW<'a> {
    pub nms_event: Vec<EventW<'a>>,
    pub index: i64,
    pub restart_token: &'a str,
    pub link: [LinkW; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<&'a str>,
}

/// `{"nmsEventList": ..}` of one list, ready to serialize.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventListEnvelope<'a> {
    pub nms_event_list: EventListW<'a>,
}

// ---------------- notification channels ----------------

#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelDataW {
    pub max_notifications: Option<Scalar>,
    pub max_wait_time: Option<Scalar>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelIn {
    pub client_correlator: Option<String>,
    pub application_tag: Option<String>,
    #[schema(schema_with = channel_types)]
    pub channel_type: String,
    #[serde(default)]
    pub channel_data: ChannelDataW,
    pub channel_lifetime: Option<Scalar>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelEnvelope {
    pub notification_channel: ChannelIn,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifetimeIn {
    /// Absent: the server's default (NC 5.2.2.14).
    pub channel_lifetime: Option<Scalar>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifetimeEnvelope {
    pub notification_channel_lifetime: LifetimeIn,
}

/// A long poll's answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationListW<'a> {
    pub notification_list: Vec<EventListEnvelope<'a>>,
}

// ---------------- response documents ----------------
//
// The documents the server answers with, each under its root element: what handlers send and
// what the API description shows.

/// `CallbackReference` as the server returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackReferenceOut {
    #[serde(rename = "notifyURL")]
    pub notify_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification_format: Option<String>,
}

/// `NmsSubscription` as the server returns it (`duration`: seconds left).
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionW {
    pub callback_reference: CallbackReferenceOut,
    pub duration: i64,
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    pub index: i64,
    pub restart_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_correlator: Option<String>,
}

/// `NmsSubscriptionList`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SubscriptionListW {
    pub subscription: Vec<SubscriptionW>,
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
}

/// `ChannelData` of a long-polling channel as the server returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelDataOut {
    #[serde(rename = "channelURL")]
    pub channel_url: String,
    pub max_notifications: u32,
    pub max_wait_time: u32,
}

/// `NotificationChannel` as the server returns it (`channelLifetime`: seconds left).
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelW {
    pub channel_type: String,
    pub channel_data: ChannelDataOut,
    pub channel_lifetime: i64,
    #[serde(rename = "callbackURL")]
    pub callback_url: String,
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_correlator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_tag: Option<String>,
}

/// One entry of a `notificationChannelList`.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelListEntryW {
    pub notification_channel: ChannelW,
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
}

/// The Notification Channel spec's own `NotificationChannelList` (NC 5.2.2.1, D.1): the
/// channels and the list's URL, for `GET channels?listFormat=nc`.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelListW {
    pub notification_channel: Vec<ChannelW>,
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
}

/// `NotificationChannelLifetime` as the server returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifetimeOut {
    pub channel_lifetime: i64,
}

macro_rules! envelopes {
    ($($(#[$doc:meta])* $name:ident { $member:ident: $t:ty },)*) => {
        $(
            $(#[$doc])*
            #[derive(Serialize, ToSchema)]
            #[serde(rename_all = "camelCase")]
            pub struct $name {
                pub $member: $t,
            }
        )*
    };
}

/// The `Empty` dummy document: `{"empty": null}`.
#[derive(Serialize, ToSchema)]
pub struct EmptyEnvelope {
    /// Always `null`.
    #[schema(required = true, schema_with = null)]
    pub empty: Option<String>,
}

/// The schema of a member that is always `null`.
fn null() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Null).build()
}

envelopes! {
    /// `{"reference": ..}`.
    ReferenceOut { reference: ReferenceW },
    /// `{"object": ..}`.
    ObjectOut { object: ObjectW },
    /// `{"objectList": ..}`.
    ObjectListOut { object_list: ObjectListW },
    /// `{"objectReferenceList": ..}`: a search for vanished objects.
    ObjectReferenceListOut { object_reference_list: ObjectReferenceListW },
    /// `{"folder": ..}`.
    FolderOut { folder: FolderW },
    /// `{"folderList": ..}`.
    FolderListOut { folder_list: FolderListW },
    /// `{"flagList": ..}`.
    FlagListOut { flag_list: FlagListW },
    /// `{"name": ..}`.
    NameOut { name: String },
    /// `{"bulkResponseList": ..}`.
    BulkResponseListOut { bulk_response_list: BulkResponseListW },
    /// `{"nmsSubscription": ..}`.
    SubscriptionOut { nms_subscription: SubscriptionW },
    /// `{"nmsSubscriptionList": ..}`.
    SubscriptionListOut { nms_subscription_list: SubscriptionListW },
    /// `{"notificationChannel": ..}`.
    ChannelOut { notification_channel: ChannelW },
    /// `{"notificationChannelList": [..]}`.
    ChannelListOut { notification_channel_list: Vec<ChannelListEntryW> },
    /// `{"notificationChannelList": {"notificationChannel": [..], "resourceURL": ..}}`.
    ChannelListNcOut { notification_channel_list: ChannelListW },
    /// `{"notificationChannelLifetime": ..}`.
    LifetimeOutEnvelope { notification_channel_lifetime: LifetimeOut },
    /// `{"requestError": ..}`: every refusal and failure.
    RequestErrorOut { request_error: RequestErrorW },
}

/// The root element of each request document.
macro_rules! roots {
    ($($t:ty => $root:literal,)*) => {
        $(impl super::OmaBody for $t {
            const ROOT: &'static str = $root;
        })*
    };
}

roots! {
    ObjectEnvelope => "object",
    FolderEnvelope => "folder",
    NameEnvelope => "name",
    FlagListEnvelope => "flagList",
    PathListEnvelope => "pathList",
    SelectionEnvelope => "selectionCriteria",
    ObjectListEnvelope => "objectList",
    BulkUpdateEnvelope => "bulkUpdate",
    BulkDeleteEnvelope => "bulkDelete",
    TargetSourceRefEnvelope => "targetSourceRef",
    SubscriptionEnvelope => "nmsSubscription",
    UpdateEnvelope => "nmsSubscriptionUpdate",
    ChannelEnvelope => "notificationChannel",
    LifetimeEnvelope => "notificationChannelLifetime",
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
