//! CPM semantics over the message store (OMA CPM Message Storage using RESTful API):
//! mapping CPIM, IMDN, call-log, SMS and MMS deposits onto NMS attributes, correlation,
//! folder placement and the session-object rules.

pub mod calllog;
pub mod correlation;
pub mod imdn;
