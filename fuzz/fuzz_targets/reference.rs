//! Image references: parsing never panics, and what parses prints back to itself.
#![no_main]

use image_updater::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse(text) {
        let printed = r.to_string();
        let again = Reference::parse_exact(&printed).expect("a printed reference parses");
        assert_eq!(again, r, "{text:?} -> {printed:?}");
        let _ = r.familiar_repository();
    }
});
