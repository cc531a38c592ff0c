//! A search request body as the server reads it (`{"selectionCriteria": ..}` JSON, the wire
//! types, their conversion), compiled and run against a real store holding a few objects:
//! object and folder searches, the same criteria as a subscription filter and as a bulk
//! selection. `@root@` and `@folder@` in the input stand for the URLs of two folders of the
//! box, so a `searchScope` can name one.
//!
//! What must hold: bad criteria are a client error, never a server failure; every cursor a
//! search answers opens again (the next page, and a CreatedObjects creation cursor).
#![no_main]

use cpm_nms::api::parse_json;
use cpm_nms::api::search::selection_input;
use cpm_nms::api::wire::SelectionEnvelope;
use cpm_nms::nms::search::{ObjectResult, SelectionInput};
use fuzz_common::{World, assert_client_error, world};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let w = world();
    let body = with_folders(w, data);
    let Ok(envelope) = parse_json::<SelectionEnvelope>(&body, "selectionCriteria") else { return };
    let input = match selection_input(&w.urls, envelope.selection_criteria) {
        Ok(i) => i,
        Err(e) => return assert_client_error(&e),
    };
    w.rt.block_on(run(w, &input));
});

fn with_folders(w: &World, data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    for (marker, id) in [(&b"@root@"[..], &w.root.public_id), (b"@folder@", &w.folder.public_id)] {
        let url = w.urls.folder(id);
        while let Some(i) = out.windows(marker.len()).position(|x| x == marker) {
            out.splice(i..i + marker.len(), url.bytes());
        }
    }
    out
}

async fn run(w: &World, input: &SelectionInput) {
    let (nms, b) = (&w.nms, &w.b);
    match nms.search_objects(b, input).await {
        Ok(ObjectResult::Objects { objects, cursor, creation_cursor }) => {
            // The world runs with the default settings.
            let page_max = cpm_nms::config::Settings::default().nms.search_page_max;
            let max = input.max_entries.unwrap_or(0).min(u64::from(page_max));
            assert!(objects.len() as u64 <= max, "{} objects for maxEntries {max}", objects.len());
            if let Some(c) = cursor {
                let next = SelectionInput { from_cursor: Some(c), ..input.clone() };
                if let Err(e) = nms.search_objects(b, &next).await {
                    panic!("the next page of an object search is refused: {e:?}");
                }
            }
            if let Some(c) = creation_cursor
                && let Err(e) = nms.open_creation_cursor(b, &c)
            {
                panic!("a creation cursor the server answered does not open: {e:?}");
            }
        }
        Ok(ObjectResult::Vanished(_)) => {}
        Err(e) => assert_client_error(&e),
    }
    match nms.search_folders(b, input).await {
        Ok(page) => {
            if let Some(c) = page.cursor {
                let next = SelectionInput { from_cursor: Some(c), ..input.clone() };
                if let Err(e) = nms.search_folders(b, &next).await {
                    panic!("the next page of a folder search is refused: {e:?}");
                }
            }
        }
        Err(e) => assert_client_error(&e),
    }
    if let Some(criteria) = &input.criteria
        && let Err(e) = nms.compile_filter(b, criteria).await
    {
        assert_client_error(&e);
    }
    if let Err(e) = nms.bulk_targets(b, input).await {
        assert_client_error(&e);
    }
}
