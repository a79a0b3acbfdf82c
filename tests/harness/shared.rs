//! What the tests read from `../shared` beside the checkout: the conformance tables and the
//! YAML corpus. They are read where they are, never copied into the repository; a test that
//! cannot find them fails.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `../shared/` beside the checkout.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// The cases of `../shared/conformance/NAME`.
pub fn conformance_table(name: &str) -> Vec<Value> {
    let path = dir().join("conformance").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the conformance tables sit beside the checkout in ../shared",
            path.display()
        )
    });
    let doc: Value = serde_json::from_str(&text).expect("conformance table is JSON");
    doc["cases"].as_array().expect("cases").clone()
}
