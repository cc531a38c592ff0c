//! What the domain decides about objects leaving their folders, asked by the store inside
//! the writing transaction.
//!
//! Some rules on deleting, expiring or moving an object belong to the domain (the CPM
//! binding's session-object rule and IMDN cascade live in `cpm/`), yet they must be decided
//! on the very state the write changes, with no other writer in between. So the verbs that
//! take objects out of their folders (`delete_object`, `bulk_delete`, `move_to_folder`,
//! `expire_objects`) take the domain's [`DeparturePolicy`] and hand it [`Facts`]: read-only
//! questions the store answers inside the same transaction. The store knows no rule; a
//! policy writes no SQL.

use async_trait::async_trait;

use crate::error::Result;

/// How objects leave their folders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// Deleted (a single or a bulk deletion).
    Deleted,
    /// Expired by a retention policy.
    Expired,
    /// Moved to another folder.
    Moved,
}

/// An object about to leave its folder, as the writing request read it.
#[derive(Clone, Debug)]
pub struct Departing {
    /// Internal id.
    pub id: i64,
    pub correlation_id: Option<String>,
}

/// A class of objects in terms the store evaluates: those whose attribute `attribute`
/// (ASCII-lower-cased name) has a first value that, lower-cased, is one of `values`, or
/// whose payload type, lower-cased, starts with one of `payload_types` (lower-cased).
#[derive(Clone, Copy, Debug)]
pub struct Class<'a> {
    pub attribute: &'a str,
    pub values: &'a [&'a str],
    pub payload_types: &'a [&'a str],
}

/// What the store knows of one object for a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectFacts {
    /// Internal id of its folder.
    pub folder: i64,
    /// The first value of the attribute asked for, lower-cased (`None`: it has none).
    pub value: Option<String>,
    /// Its payload type, lower-cased (`""`: none).
    pub payload_type: String,
}

/// Questions about the box a write is changing, answered inside its transaction (so the
/// answers and the write see one state). Objects are named by internal id.
#[async_trait]
pub trait Facts: Send {
    /// Object `id`'s folder, the first value of its attribute `attribute` and its payload
    /// type: one lookup by primary key, whatever its folder holds. `None`: no such object.
    async fn object(&mut self, id: i64, attribute: &str) -> Result<Option<ObjectFacts>>;
    /// The newest object of `folder` (by stored date, then id) of `class`.
    async fn newest_of(&mut self, folder: i64, class: &Class<'_>) -> Result<Option<i64>>;
    /// Whether `folder` holds an object outside `excluding` that is not of `class`.
    async fn holds_other(&mut self, folder: i64, excluding: &[i64], class: &Class<'_>) -> Result<bool>;
    /// The objects of the box of `class` whose attribute `name` has the value `value` (at
    /// any position), in id order.
    async fn having(&mut self, name: &str, value: &str, class: &Class<'_>) -> Result<Vec<i64>>;
}

/// The domain's rules on objects leaving their folders.
#[async_trait]
pub trait DeparturePolicy: Send + Sync {
    /// The objects removed with `object` when it is removed `how` (deleted or expired; a
    /// move takes none along): they go the same way, each with its own tombstone.
    async fn companions(&self, facts: &mut dyn Facts, object: &Departing, how: Departure) -> Result<Vec<i64>>;
    /// The judge of one request that takes `leaving` (with their companions) out of their
    /// folders `how`.
    fn judge(&self, how: Departure, leaving: &[i64]) -> Box<dyn DepartureJudge>;
}

/// The domain's decision on each object of one request, which may remember what it has
/// learnt of the box (one request, one state).
#[async_trait]
pub trait DepartureJudge: Send {
    /// Why object `id` may not leave its folder, if it may not.
    async fn refusal(&mut self, facts: &mut dyn Facts, id: i64) -> Result<Option<String>>;
}
