//! The CPM session-object rule (CPM binding 6.4.1.4, 6.4.1.5, 7.3.3.5): a session info
//! object, the latest group state object or a conference info object stays in its folder
//! (its session history folder: the binding keeps session objects in one) while messages,
//! IMDNs or media objects remain there. It holds for deletions and for moves to another
//! folder; expiry is not subject to it, nor is moving or deleting the whole folder.
//!
//! The store asks it inside the deleting or moving transaction (see
//! [`crate::store::departures`]), one judge per request: the objects the same request takes
//! out (with the IMDNs that go with them) do not hold a session object back. An ordinary
//! message costs one lookup by primary key; only session metadata objects probe their
//! folder, each folder at most twice per request (for its latest group state object, and for
//! content that stays).

use std::collections::HashMap;

use async_trait::async_trait;

use crate::error::Result;
use crate::store::{Class, Departure, DepartureJudge, Facts};

/// The attribute that says what kind of CPM object an object is.
const MESSAGE_CONTEXT: &str = "message-context";

/// Session metadata: session info and group state objects, and conference info.
const SESSION_METADATA: Class<'static> = Class {
    attribute: MESSAGE_CONTEXT,
    values: &["session-info-message", "group-state-message"],
    payload_types: &["application/conference-info+xml"],
};

/// Group state objects.
const GROUP_STATE: Class<'static> =
    Class { attribute: MESSAGE_CONTEXT, values: &["group-state-message"], payload_types: &[] };

/// The rule for one request.
pub struct SessionRule {
    how: Departure,
    /// The objects the request takes out of their folders.
    leaving: Vec<i64>,
    /// Per folder: whether content outside `leaving` remains there.
    keeps_content: HashMap<i64, bool>,
    /// Per folder: its latest group state object, as the request found it.
    latest_group_state: HashMap<i64, Option<i64>>,
}

impl SessionRule {
    /// The rule for a request taking `leaving` out of their folders `how`.
    pub fn new(how: Departure, leaving: &[i64]) -> Self {
        Self { how, leaving: leaving.to_vec(), keeps_content: HashMap::new(), latest_group_state: HashMap::new() }
    }
}

#[async_trait]
impl DepartureJudge for SessionRule {
    async fn refusal(&mut self, facts: &mut dyn Facts, id: i64) -> Result<Option<String>> {
        if self.how == Departure::Expired {
            return Ok(None);
        }
        let Some(object) = facts.object(id, MESSAGE_CONTEXT).await? else { return Ok(None) };
        let folder = object.folder;
        let kind = match object.value.as_deref() {
            Some("session-info-message") => "session info object",
            Some("group-state-message") => {
                let latest = match self.latest_group_state.get(&folder) {
                    Some(latest) => *latest,
                    None => {
                        let latest = facts.newest_of(folder, &GROUP_STATE).await?;
                        self.latest_group_state.insert(folder, latest);
                        latest
                    }
                };
                if latest != Some(id) {
                    return Ok(None);
                }
                "latest group state object"
            }
            _ if SESSION_METADATA.payload_types.iter().any(|t| object.payload_type.starts_with(t)) => {
                "conference info object"
            }
            _ => return Ok(None),
        };
        let blocked = match self.keeps_content.get(&folder) {
            Some(blocked) => *blocked,
            None => {
                let blocked = facts.holds_other(folder, &self.leaving, &SESSION_METADATA).await?;
                self.keeps_content.insert(folder, blocked);
                blocked
            }
        };
        Ok(blocked.then(|| {
            format!(
                "CPM session rule: the {kind} stays in its session history folder while messages, IMDNs or media \
                 of the session remain there (CPM binding 6.4.1.4); move or delete the whole folder"
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::cpm::Departures;
    use crate::ids::new_id;
    use crate::model::*;
    use crate::store::sql::scratch;
    use crate::store::{Departing, DeparturePolicy, ObjectFacts, Objects};

    fn object(path: &str, context: &str) -> NewObject {
        NewObject {
            public_id: new_id(),
            parent: ParentRef::Path { path: path.into(), create_missing: true },
            attributes: vec![Attribute { name: "Message-Context".into(), values: vec![context.into()] }],
            flags: Vec::new(),
            correlation_id: None,
            correlation_tag: None,
            payload_type: None,
            parts: Vec::new(),
            text: String::new(),
            now_ms: 1,
        }
    }

    /// The CPM departure policy, counting the folder probes its judges make.
    #[derive(Default)]
    struct Probed {
        probes: Arc<AtomicUsize>,
    }

    impl Probed {
        fn take(&self) -> usize {
            self.probes.swap(0, Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl DeparturePolicy for Probed {
        async fn companions(&self, facts: &mut dyn Facts, object: &Departing, how: Departure) -> Result<Vec<i64>> {
            Departures.companions(facts, object, how).await
        }
        fn judge(&self, how: Departure, leaving: &[i64]) -> Box<dyn DepartureJudge> {
            Box::new(ProbedJudge { inner: Departures.judge(how, leaving), probes: self.probes.clone() })
        }
    }

    struct ProbedJudge {
        inner: Box<dyn DepartureJudge>,
        probes: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl DepartureJudge for ProbedJudge {
        async fn refusal(&mut self, facts: &mut dyn Facts, id: i64) -> Result<Option<String>> {
            self.inner.refusal(&mut Counting { inner: facts, probes: self.probes.clone() }, id).await
        }
    }

    /// Facts that count the questions about a whole folder.
    struct Counting<'a> {
        inner: &'a mut dyn Facts,
        probes: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl Facts for Counting<'_> {
        async fn object(&mut self, id: i64, attribute: &str) -> Result<Option<ObjectFacts>> {
            self.inner.object(id, attribute).await
        }
        async fn newest_of(&mut self, folder: i64, class: &Class<'_>) -> Result<Option<i64>> {
            self.probes.fetch_add(1, Ordering::SeqCst);
            self.inner.newest_of(folder, class).await
        }
        async fn holds_other(&mut self, folder: i64, excluding: &[i64], class: &Class<'_>) -> Result<bool> {
            self.probes.fetch_add(1, Ordering::SeqCst);
            self.inner.holds_other(folder, excluding, class).await
        }
        async fn having(&mut self, name: &str, value: &str, class: &Class<'_>) -> Result<Vec<i64>> {
            self.inner.having(name, value, class).await
        }
    }

    fn refused(items: &[BulkItem]) -> usize {
        items.iter().filter(|i| i.refusal.is_some()).count()
    }

    fn deleted(items: &[BulkItem]) -> usize {
        items.iter().filter(|i| i.outcome == Some(true)).count()
    }

    /// A bulk delete of many session objects of one folder probes that folder once, or twice
    /// for group state objects; ordinary messages never probe it.
    #[tokio::test]
    async fn a_bulk_request_probes_each_folder_at_most_twice() {
        let (_dir, store, b) = scratch().await;
        let policy = Probed::default();
        let mut infos = Vec::new();
        for _ in 0..50 {
            infos.push(store.create_object(&b, object("/s", "session-info-message")).await.unwrap().value.public_id);
        }
        let chat = store.create_object(&b, object("/s", "chat-message")).await.unwrap().value.public_id;
        let mut states = Vec::new();
        for _ in 0..50 {
            states.push(store.create_object(&b, object("/g", "group-state-message")).await.unwrap().value.public_id);
        }
        let other_chat = store.create_object(&b, object("/g", "chat-message")).await.unwrap().value.public_id;

        let (items, _) = store.bulk_delete(&b, &Targets::Ids(infos.clone()), 2, &policy).await.unwrap().value;
        assert_eq!(refused(&items), 50, "the chat message stays, so the session objects do");
        assert_eq!(policy.take(), 1);

        // Group state objects: the folder's latest one is looked up once, whatever their number.
        let (items, _) = store.bulk_delete(&b, &Targets::Ids(states.clone()), 2, &policy).await.unwrap().value;
        assert_eq!((refused(&items), deleted(&items)), (1, 49), "only the latest group state object stays");
        assert_eq!(policy.take(), 2, "one probe for the latest, one for the content");

        assert!(store.delete_object(&b, &other_chat, 2, &policy).await.unwrap().value.is_some());
        assert_eq!(policy.take(), 0, "an ordinary message never probes its folder");

        let everything: Vec<String> = infos.iter().cloned().chain([chat]).collect();
        let (items, _) = store.bulk_delete(&b, &Targets::Ids(everything), 2, &policy).await.unwrap().value;
        assert_eq!((refused(&items), deleted(&items)), (0, 51), "all leave together");
        assert_eq!(policy.take(), 1);
    }

    /// Expiry takes session objects too, without a probe.
    #[tokio::test]
    async fn expiry_is_not_subject_to_the_rule() {
        let (_dir, store, b) = scratch().await;
        let policy = Probed::default();
        let info = store.create_object(&b, object("/s", "session-info-message")).await.unwrap().value.public_id;
        let _chat = store.create_object(&b, object("/s", "chat-message")).await.unwrap().value;
        let (n, _) = store.expire_objects(&b, None, Some(1), 2, 10, &policy).await.unwrap().value;
        assert_eq!(n, 1);
        assert!(store.get_object(&b, &info).await.unwrap().is_none(), "the oldest went, a session object");
        assert_eq!(policy.take(), 0);
    }
}
