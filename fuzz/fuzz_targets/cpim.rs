//! A `message/cpim` payload as a deposit reads it: where the head ends (`head_len`, called on
//! a growing buffer while the body streams), the head decoded (`parse_head`), and what the
//! deposit takes from it: the attributes, the body's type without its boundary, the IMDN
//! Message-ID, the MIME headers of the body part, and the CPM completion of the object
//! (with the rest of the input as the disposition notification when the body is one).
#![no_main]

use cpm_nms::config::CpmSettings;
use cpm_nms::cpm::{self, Received, cpim, imdn};
use fuzz_common::{assert_invalid, bounded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bounded("CPIM head", data, 64, 64 * 1024, || run(data));
});

fn run(data: &[u8]) {
    let Some(n) = cpim::head_len(data) else { return };
    assert!(n > 0 && n <= data.len() && data[n - 1] == b'\n', "head end {n} of {}", data.len());
    // Found at the same place however the bytes arrive: the reader asks again after each chunk.
    assert_eq!(cpim::head_len(&data[..n]), Some(n));
    assert_eq!(cpim::head_len(&data[..n - 1]), None);
    let head = match cpim::parse_head(&data[..n]) {
        Ok(h) => h,
        Err(e) => return assert_invalid(&e),
    };
    assert!(!head.headers.is_empty());
    assert!(!head.block.contains("\r\n\r\n") && !head.block.ends_with('\n'), "{:?}", head.block);

    let content_type = head.content_type();
    let payload_type = cpim::strip_param(&content_type, "boundary");
    assert_eq!(cpim::strip_param(&payload_type, "boundary"), payload_type, "stripping twice changes {content_type:?}");
    let parsed = content_type.parse::<mime::Mime>().ok();
    let _ = parsed.as_ref().and_then(|m| m.get_param(mime::BOUNDARY)).map(|b| b.as_str().len());
    for name in ["content-disposition", "content-id", "content-location", "content-transfer-encoding", "file-icon"] {
        let _ = head.mime_header(name);
    }
    let _ = head.imdn_message_id();

    let attrs = match head.attributes() {
        Ok(a) => a,
        Err(e) => return assert_invalid(&e),
    };
    assert_eq!((attrs[0].name.as_str(), attrs[0].values.as_slice()), ("CPIM", std::slice::from_ref(&head.block)));

    let notification = parsed.as_ref().is_some_and(|m| m.essence_str() == "message/imdn+xml");
    let rest = &data[n..];
    let got = Received {
        cpim: Some(&head),
        imdn: (notification && rest.len() <= imdn::MAX_DOCUMENT_BYTES).then_some(rest),
        parts: &[],
        first_text: None,
    };
    match cpm::complete(&CpmSettings::default(), Vec::new(), None, None, &got) {
        Ok(done) => {
            let _ = cpm::placement(&done.attributes);
        }
        Err(e) => assert_invalid(&e),
    }
}
