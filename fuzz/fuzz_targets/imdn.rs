//! An RFC 5438 `message/imdn+xml` document as a deposit reads it: parsed, mapped onto the
//! IMDN object's attributes (which must then pass the check of a directly deposited IMDN
//! object), and completed by the CPM rules under the CPIM head that carried it.
#![no_main]

use std::sync::OnceLock;

use cpm_nms::config::CpmSettings;
use cpm_nms::cpm::{self, Received, cpim, imdn};
use cpm_nms::error::Error;
use fuzz_common::{assert_invalid, bounded};
use libfuzzer_sys::fuzz_target;

/// The head of the CPIM message a notification arrives in (its `From` is the recipient).
const HEAD: &[u8] = b"From: <tel:+13105550000>\r\nTo: <tel:+12125551212>\r\nNS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: dN4pQ8sWv1Yb\r\n\r\nContent-Type: message/imdn+xml\r\n\r\n";

fn head() -> &'static cpim::CpimHead {
    static HEAD_PARSED: OnceLock<cpim::CpimHead> = OnceLock::new();
    HEAD_PARSED.get_or_init(|| match cpim::parse_head(HEAD) {
        Ok(h) => h,
        Err(e) => panic!("fixed CPIM head: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let head = head();
    bounded("IMDN document", data, 64, 64 * 1024, || run(data, head));
});

fn run(data: &[u8], head: &cpim::CpimHead) {
    let parsed = imdn::parse(data);
    match &parsed {
        Ok(n) => {
            assert!(!n.message_id.is_empty() && n.message_id.trim() == n.message_id, "{n:?}");
            assert!(imdn::validate(&n.disposition_type, &n.status).is_ok(), "{n:?}");
            let attrs = imdn::attributes(n);
            let has_to = attrs.iter().any(|a| a.name == "DispositionOriginalTo");
            match imdn::validate_attributes(&attrs) {
                Ok(()) => assert!(has_to),
                Err(Error::InvalidInput { part }) => {
                    assert!(!has_to && part == "attribute DispositionOriginalTo", "{part}: {n:?}")
                }
                Err(e) => panic!("the attributes of {n:?} are refused: {e:?}"),
            }
        }
        Err(e) => assert_invalid(e),
    }
    let got = Received { cpim: Some(head), imdn: Some(data), parts: &[], first_text: None };
    match cpm::complete(&CpmSettings::default(), Vec::new(), None, None, &got) {
        Ok(done) => {
            assert!(parsed.is_ok(), "a refused notification was stored");
            assert_eq!(done.correlation_id.as_deref(), Some("dN4pQ8sWv1Yb"));
            let _ = cpm::placement(&done.attributes);
        }
        Err(e) => {
            assert!(parsed.is_err(), "a notification was refused by the deposit: {e:?}");
            assert_invalid(&e);
        }
    }
}
