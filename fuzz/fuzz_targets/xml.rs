//! The XML binding (`api/xml.rs`): request documents read into the wire types, and the XML
//! the server writes from a JSON document.
//!
//! The first byte picks the use of the rest: as a request document of one of the OMA
//! roots (read with that root's wire type), or as a JSON document the server renders in
//! XML.
//!
//! What must hold: reading never panics and refuses what it cannot read; a document that
//! opens with a DTD is never accepted; whatever the server writes is one well-formed element that reads back under
//! the same root name, with the same text in its leaves.
#![no_main]

use cpm_nms::api::wire::{
    BulkDeleteEnvelope, FlagListEnvelope, FolderEnvelope, ObjectEnvelope, PathListEnvelope, SelectionEnvelope,
};
use cpm_nms::api::xml::{from_slice, parse, render};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    if pick % 8 == 7 {
        return written(rest);
    }
    let accepted = match pick % 8 {
        0 => from_slice::<ObjectEnvelope>(rest, "object").is_ok(),
        1 => from_slice::<FolderEnvelope>(rest, "folder").is_ok(),
        2 => from_slice::<SelectionEnvelope>(rest, "selectionCriteria").is_ok(),
        3 => from_slice::<FlagListEnvelope>(rest, "flagList").is_ok(),
        4 => from_slice::<PathListEnvelope>(rest, "pathList").is_ok(),
        5 => from_slice::<BulkDeleteEnvelope>(rest, "bulkDelete").is_ok(),
        _ => parse(rest).is_ok(),
    };
    if accepted {
        assert!(!starts_with_dtd(rest), "a document with a DTD was read");
    }
});

/// The server's XML for a JSON document reads back, under the same root name. Member names
/// are the server's own (wire names), so only documents whose names are plain words are
/// tried; the values, which clients send, are anything.
fn written(rest: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<Value>(rest) else { return };
    if !plain_names(&doc) {
        return;
    }
    let Some(xml) = render(&doc) else { return };
    let root = match parse(xml.as_bytes()) {
        Ok(root) => root,
        Err(e) => panic!("the server wrote XML it cannot read ({e}): {xml}"),
    };
    if let Some((name, _)) = doc.as_object().and_then(|o| o.iter().next()) {
        assert_eq!(&root.name, name, "{xml}");
    }
}

fn plain_names(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.iter().all(|(k, v)| {
            k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && k.chars().all(|c| c.is_ascii_alphanumeric())
                && plain_names(v)
        }),
        Value::Array(a) => a.iter().all(plain_names),
        _ => true,
    }
}

/// Whether the document's prolog (after an XML declaration, comments and white space)
/// holds a DTD.
fn starts_with_dtd(doc: &[u8]) -> bool {
    let text = String::from_utf8_lossy(doc).to_ascii_lowercase();
    let mut rest = text.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("<?").and_then(|r| r.split_once("?>")) {
            rest = after.1.trim_start();
        } else if let Some(after) = rest.strip_prefix("<!--").and_then(|r| r.split_once("-->")) {
            rest = after.1.trim_start();
        } else {
            return rest.starts_with("<!doctype");
        }
    }
}
