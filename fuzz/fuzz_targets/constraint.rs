//! Constraint and version parsing never panic, and a parsed constraint can judge any version.
#![no_main]

use image_updater::select::{Constraint, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (constraint, version) = text.split_once('\n').unwrap_or((text, "1.2.3"));
    if let (Ok(c), Ok(v)) = (Constraint::parse(constraint), Version::parse(version)) {
        let _ = c.matches(&v, false);
        let _ = c.matches(&v, true);
        let _ = c.explain_mismatch(&v, false);
        let _ = c.to_string();
    }
});
