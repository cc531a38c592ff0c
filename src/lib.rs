//! cpm-nms: a CPM Network Message Store, the OMA REST NMS API as bound to CPM/RCS.
//!
//! Layers run one way: `api -> auth -> nms -> store/blob/hub`. See `docs/architecture.md`.

pub mod api;
pub mod auth;
pub mod blob;
pub mod config;
pub mod cpm;
pub mod error;
pub mod hub;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod multipart;
pub mod nms;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod webhooks;
