//! Bulk operations (bulkCreation, bulkUpdate, bulkDelete) and copy/move to a folder.
//!
//! Each request is one store transaction with one modseq: every item it changes carries the
//! same `lastModSeq`, an item that did not change keeps its own, and a request that changes
//! nothing leaves the box modseq alone. Items are answered one by one, in request order.

use super::search::SelectionInput;
use super::{Actor, Deposit, Nms, ObjectInput};
use crate::cpm::Departures;
use crate::error::{Error, Result};
use crate::ids::now_ms;
use crate::model::{BoxRow, BulkItem, Object, ParentRef, Relocated, Sources, Targets};

/// Which objects a bulkUpdate or bulkDelete applies to.
#[derive(Clone, Debug)]
pub enum BulkTargets {
    /// Named objects (public ids), answered in this order.
    Objects(Vec<String>),
    /// The objects matching selection criteria.
    Selection(SelectionInput),
}

/// `bulkUpdate.operation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOperation {
    AddFlag,
    RemoveFlag,
}

impl Nms {
    /// `n` items named by `what` must fit `nms.bulk_max_items` (403 POL0001 otherwise).
    pub fn check_bulk_size(&self, what: &str, n: usize) -> Result<()> {
        if n > self.policy.bulk_max_items as usize {
            return Err(Error::LimitExceeded {
                what: format!("{what} items per request"),
                key: "nms.bulk_max_items",
                limit: u64::from(self.policy.bulk_max_items),
            });
        }
        Ok(())
    }

    async fn targets(&self, b: &BoxRow, t: &BulkTargets) -> Result<Targets> {
        Ok(match t {
            BulkTargets::Objects(ids) => {
                self.check_bulk_size("objects", ids.len())?;
                Targets::Ids(ids.clone())
            }
            BulkTargets::Selection(s) => self.bulk_targets(b, s).await?,
        })
    }

    /// `bulkUpdate`: add or remove flags on many objects.
    pub async fn bulk_update(
        &self,
        b: &BoxRow,
        targets: &BulkTargets,
        op: FlagOperation,
        flags: &[String],
    ) -> Result<Vec<BulkItem>> {
        if flags.is_empty() {
            return Err(Error::invalid("flags (at least one flag)"));
        }
        for f in flags {
            super::validate_flag(f)?;
        }
        let targets = self.targets(b, targets).await?;
        Ok(self.published(self.meta.bulk_flags(b, &targets, flags, op == FlagOperation::AddFlag).await?))
    }

    /// `bulkDelete`: delete many objects, then the blobs nothing references any more.
    pub async fn bulk_delete(&self, b: &BoxRow, targets: &BulkTargets) -> Result<Vec<BulkItem>> {
        let targets = self.targets(b, targets).await?;
        let (items, released) = self.published(self.meta.bulk_delete(b, &targets, now_ms(), &Departures).await?);
        self.blobs.release(&released.blob_keys).await;
        Ok(items)
    }

    /// `bulkCreation`: create each object all-or-nothing, answering each in order. An item
    /// whose root fields were refused already comes as `Err`.
    pub async fn create_objects(
        &self,
        b: &BoxRow,
        actor: Actor,
        items: Vec<(Result<ObjectInput>, Deposit)>,
    ) -> Result<Vec<Result<Object>>> {
        if items.is_empty() {
            return Err(Error::invalid("objectList object (at least one)"));
        }
        if let Err(e) = self.check_bulk_size("objectList", items.len()) {
            for (_, d) in items {
                d.abandon().await;
            }
            return Err(e);
        }
        let now = now_ms();
        let mut prepared = Vec::with_capacity(items.len());
        let mut deposits = Vec::with_capacity(items.len());
        for (input, deposit) in items {
            prepared.push(match input {
                Ok(i) => self.prepare_object(b, actor, i, &deposit, now).await,
                Err(e) => Err(e),
            });
            deposits.push(deposit);
        }
        let results = match self.meta.create_objects(b, prepared).await {
            Ok(r) => self.published(r),
            Err(e) => {
                for d in deposits {
                    d.abandon().await;
                }
                return Err(e);
            }
        };
        for (deposit, r) in deposits.into_iter().zip(&results) {
            if r.is_ok() {
                deposit.stored().await;
            } else {
                deposit.guard.rollback().await;
            }
        }
        Ok(results)
    }

    /// Check a copy or move: the target may be written by `actor`, and not too many sources.
    async fn check_relocation(&self, b: &BoxRow, actor: Actor, target: &str, sources: &Sources) -> Result<()> {
        if sources.folders.is_empty() && sources.objects.is_empty() {
            return Err(Error::invalid("sourceRefs (at least one folder or object)"));
        }
        self.check_bulk_size("sourceRefs", sources.folders.len() + sources.objects.len())?;
        self.check_may_create_under(b, actor, &ParentRef::Id(target.to_string())).await
    }

    /// `copyToFolder`: copies (folders recursively) with new ids; blobs are shared.
    pub async fn copy_to_folder(
        &self,
        b: &BoxRow,
        actor: Actor,
        target: &str,
        sources: &Sources,
    ) -> Result<Vec<Relocated>> {
        self.check_relocation(b, actor, target, sources).await?;
        let copied = self.meta.copy_to_folder(b, target, sources, now_ms()).await?;
        self.published(copied).ok_or_else(|| Error::invalid(format!("targetRef {target}")))
    }

    /// `moveToFolder`: ids stay, the location changes.
    pub async fn move_to_folder(
        &self,
        b: &BoxRow,
        actor: Actor,
        target: &str,
        sources: &Sources,
    ) -> Result<Vec<Relocated>> {
        self.check_relocation(b, actor, target, sources).await?;
        let moved = self.meta.move_to_folder(b, target, sources, &Departures).await?;
        self.published(moved).ok_or_else(|| Error::invalid(format!("targetRef {target}")))
    }
}
