//! A call log deposit: the root fields as the server reads them (JSON, `{"object": ..}`),
//! the payload parts' Content-IDs after the first NUL byte (one per line), then the call
//! log check (CPM Table 2) and the CPM completion of the object.
//!
//! What must hold: attribute names are case-insensitive and values given under repeated
//! attributes count together, so neither spelling nor splitting changes the verdict.
#![no_main]

use cpm_nms::api::parse_json;
use cpm_nms::api::wire::ObjectEnvelope;
use cpm_nms::config::CpmSettings;
use cpm_nms::cpm::{self, Received, calllog};
use cpm_nms::model::{Attribute, PartData, PayloadPart};
use fuzz_common::{assert_invalid, bounded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bounded("call log", data, 256, 64 * 1024, || run(data));
});

fn run(data: &[u8]) {
    let (json, ids) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(envelope) = parse_json::<ObjectEnvelope>(json, "object") else { return };
    let object = envelope.object;
    let attrs = object.attributes.unwrap_or_default().into_domain();
    let parts: Vec<PayloadPart> = String::from_utf8_lossy(ids)
        .split('\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, id)| PayloadPart {
            part_id: (i + 1).to_string(),
            content_type: "application/octet-stream".into(),
            content_disposition: None,
            content_id: Some(id.to_string()),
            content_location: None,
            content_encoding: None,
            file_icon: None,
            size: 0,
            data: PartData::Inline(Vec::new()),
        })
        .collect();

    let verdict = calllog::validate(&attrs, &parts);
    if let Err(e) = &verdict {
        assert_invalid(e);
    }
    let shown = format!("{verdict:?}");
    let split: Vec<Attribute> = attrs
        .iter()
        .flat_map(|a| match a.values.len() {
            0 | 1 => vec![a.clone()],
            _ => a.values.iter().map(|v| Attribute { name: a.name.clone(), values: vec![v.clone()] }).collect(),
        })
        .collect();
    assert_eq!(format!("{:?}", calllog::validate(&split, &parts)), shown, "split values");
    let upper: Vec<Attribute> =
        attrs.iter().map(|a| Attribute { name: a.name.to_ascii_uppercase(), values: a.values.clone() }).collect();
    assert_eq!(format!("{:?}", calllog::validate(&upper, &parts)), shown, "upper-case names");

    let is_call_log = calllog::is_call_log(&attrs);
    let got = Received { cpim: None, imdn: None, parts: &parts, first_text: None };
    match cpm::complete(&CpmSettings::default(), attrs, object.correlation_id, object.correlation_tag, &got) {
        Ok(done) => {
            assert!(!is_call_log || verdict.is_ok(), "a refused call log was completed");
            let _ = cpm::placement(&done.attributes);
        }
        Err(e) => assert_invalid(&e),
    }
}
