//! The configuration file: TOML text through the same layers `cpm-nms config` and `serve`
//! use (defaults, the TOML, `NMS__` variables, flags) and the checks after them.
//!
//! What must hold: loading never panics; the effective configuration `cpm-nms config`
//! prints for a configuration that loads is itself a configuration that loads, and prints
//! the same again.
#![no_main]

use cpm_nms::config::{Overrides, Settings};
use fuzz_common::bounded;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let loaded = bounded("configuration", data, 512, 4 << 20, || Settings::load_str(text, &Overrides::default()));
    let Ok(settings) = loaded else { return };
    let shown = settings.to_redacted_toml();
    assert!(!shown.starts_with("# cannot render"), "{shown}");
    let again = match Settings::load_str(&shown, &Overrides::default()) {
        Ok(s) => s,
        Err(e) => panic!("the printed configuration does not load: {e}\n{shown}"),
    };
    assert_eq!(again.to_redacted_toml(), shown, "printing the printed configuration changes it");
    let _ = format!("{settings:?}");
});
