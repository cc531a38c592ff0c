//! Cursors and restart tokens: restart tokens (`nms/sync.rs`), folder listing cursors
//! (`nms/mod.rs`), search paging and creation cursors (`nms/search.rs`), all sealed by
//! `nms/token.rs`.
//!
//! The first byte picks the kind and how the rest is used: as token text a client sent, as
//! a payload sealed with the server's key for the kind's purpose (so the decoding behind
//! the MAC is reached), or as a value the server seals.
//!
//! What must hold: a token that opens is exactly the one the server seals for what it
//! opened to (no second spelling of a position, no payload the server could not have
//! made); a token the server seals opens to what it sealed; a refusal is a client error.
#![no_main]

use cpm_nms::error::Result;
use cpm_nms::model::{ChildKind, ChildPosition, SearchPosition, SortValue};
use cpm_nms::nms::sync::RestartPoint;
use cpm_nms::nms::{ListFilter, Nms};
use fuzz_common::{World, assert_invalid, world};
use libfuzzer_sys::fuzz_target;

/// Reads fixed-size values off the front of the input (zeros once it runs out).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn i64(&mut self) -> i64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        i64::from_be_bytes(b)
    }
}

/// One kind of token: how the server seals a value and opens a token.
trait Kind {
    type Value: std::fmt::Debug + PartialEq;
    fn purpose(&self, w: &World) -> String;
    fn seal(&self, w: &World, v: &Self::Value) -> String;
    fn open(&self, w: &World, token: &str) -> Result<Self::Value>;
    fn value(&self, b: &mut Bytes<'_>) -> Self::Value;
}

struct Restart;
impl Kind for Restart {
    type Value = RestartPoint;
    fn purpose(&self, w: &World) -> String {
        Nms::restart_purpose(&w.b)
    }
    fn seal(&self, w: &World, v: &RestartPoint) -> String {
        w.nms.restart_token(&w.b, *v)
    }
    fn open(&self, w: &World, token: &str) -> Result<RestartPoint> {
        w.nms.open_restart_token(&w.b, token)
    }
    fn value(&self, b: &mut Bytes<'_>) -> RestartPoint {
        let (validity, modseq) = (b.i64(), b.i64());
        // Parts of a modseq group: 0 folders, 1 objects, 2 tombstones.
        let within = match b.u8() % 4 {
            3 => None,
            part => Some((part, b.i64())),
        };
        RestartPoint { validity, modseq, within }
    }
}

struct Children(ListFilter);
impl Kind for Children {
    type Value = ChildPosition;
    fn purpose(&self, w: &World) -> String {
        Nms::child_cursor_purpose(&w.b, &w.root, self.0)
    }
    fn seal(&self, w: &World, v: &ChildPosition) -> String {
        w.nms.child_cursor(&w.b, &w.root, self.0, *v)
    }
    fn open(&self, w: &World, token: &str) -> Result<ChildPosition> {
        w.nms.open_child_cursor(&w.b, &w.root, self.0, token)
    }
    fn value(&self, b: &mut Bytes<'_>) -> ChildPosition {
        let kind = if b.u8().is_multiple_of(2) { ChildKind::Folder } else { ChildKind::Object };
        ChildPosition { kind, after: b.i64() }
    }
}

struct Creation;
impl Kind for Creation {
    type Value = i64;
    fn purpose(&self, w: &World) -> String {
        Nms::creation_purpose(&w.b)
    }
    fn seal(&self, w: &World, v: &i64) -> String {
        w.nms.creation_cursor(&w.b, *v)
    }
    fn open(&self, w: &World, token: &str) -> Result<i64> {
        w.nms.open_creation_cursor(&w.b, token)
    }
    fn value(&self, b: &mut Bytes<'_>) -> i64 {
        b.i64()
    }
}

/// A search cursor (the purpose is any compiled search's; one stands for all).
struct Search;
const SEARCH_PURPOSE: &str = "search:objects:1:1:00112233445566778899aabbccddeeff";
impl Kind for Search {
    type Value = SearchPosition;
    fn purpose(&self, _: &World) -> String {
        SEARCH_PURPOSE.into()
    }
    fn seal(&self, w: &World, v: &SearchPosition) -> String {
        w.nms.search_cursor(SEARCH_PURPOSE, v)
    }
    fn open(&self, w: &World, token: &str) -> Result<SearchPosition> {
        w.nms.open_search_cursor(SEARCH_PURPOSE, token)
    }
    fn value(&self, b: &mut Bytes<'_>) -> SearchPosition {
        let id = b.i64();
        let value = if b.u8().is_multiple_of(2) {
            SortValue::Int(b.i64())
        } else {
            SortValue::Text(String::from_utf8_lossy(std::mem::take(&mut b.0)).into_owned())
        };
        SearchPosition { value, id }
    }
}

fn check<K: Kind>(w: &World, kind: &K, how: u8, rest: &[u8]) {
    match how % 3 {
        // Text a client sent.
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else { return };
            match kind.open(w, token) {
                Ok(v) => assert_eq!(kind.seal(w, &v), token, "{v:?} opened from another spelling"),
                Err(e) => assert_invalid(&e),
            }
            let opened = w.nms.tokens().open(&kind.purpose(w), token);
            if let Some(payload) = opened {
                assert_eq!(w.nms.tokens().seal(&kind.purpose(w), &payload), token);
            }
        }
        // A payload sealed with the server's key: only the decoding stands in the way.
        1 => {
            let token = w.nms.tokens().seal(&kind.purpose(w), rest);
            match kind.open(w, &token) {
                Ok(v) => assert_eq!(kind.seal(w, &v), token, "payload {rest:?} opened to {v:?}"),
                Err(e) => assert_invalid(&e),
            }
        }
        // A value the server seals.
        _ => {
            let v = kind.value(&mut Bytes(rest));
            let token = kind.seal(w, &v);
            match kind.open(w, &token) {
                Ok(back) => assert_eq!(back, v, "{token}"),
                Err(e) => panic!("{v:?} sealed as {token} does not open: {e:?}"),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let w = world();
    let how = selector / 8;
    match selector % 8 {
        0 => check(w, &Restart, how, rest),
        1 => check(w, &Children(ListFilter::All), how, rest),
        2 => check(w, &Children(ListFilter::Subfolders), how, rest),
        3 => check(w, &Children(ListFilter::Objects), how, rest),
        4 => check(w, &Creation, how, rest),
        _ => check(w, &Search, how, rest),
    }
});
