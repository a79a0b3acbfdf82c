//! The config loader: any text gives a config or diagnostics, never a panic, and diagnostics
//! always render (their spans point inside the text).
#![no_main]

use image_updater::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(d) = config::parse(std::path::Path::new("updater.toml"), text) {
        let _ = d.to_string();
    }
});
