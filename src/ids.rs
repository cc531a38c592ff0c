//! Server-assigned identifiers and clock readings.
//!
//! Object, folder and payload ids are UUIDv7 in lower-case hex: URL-safe, never `operations`,
//! and never reused (they are unique over the store's whole lifetime, not just the box's).

/// A fresh public id for a folder or object.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// An unguessable id (122 random bits, no timestamp), for ids that are capabilities (a
/// notification channel's URLs).
pub fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An NMS date (`xsd:dateTime`, UTC, second precision) for a millisecond timestamp.
pub fn nms_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
