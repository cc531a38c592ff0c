//! Integration tests: the real server on port 0 with a fresh data directory, driven over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/database.rs"]
mod database;

mod auth;
mod auth_bearer;
mod bulk;
mod conformance;
mod cpm;
mod faults;
mod fixtures;
mod flags;
mod folder_limits;
mod folders;
mod hardening;
mod helpers;
mod introspection;
mod limits;
mod mirror;
mod multipart_input;
mod notify;
mod objects;
mod openapi;
mod ops;
mod paths;
mod payload;
mod publish;
mod relocate;
mod s3;
mod search;
mod storage;
mod sync;
mod webhooks;
mod xml;
