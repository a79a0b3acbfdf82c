//! The JSON Schema `image-updater schema` prints, checked by a real validator (Python's
//! jsonschema, as Debian ships it) the way an editor uses it: the shipped example is valid,
//! and a misspelled key is refused, as `check` refuses it.

mod harness;

use std::process::Command;

use harness::need::PYTHON;

const BIN: &str = env!("CARGO_BIN_EXE_image-updater");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/updater.toml.example");

/// Validates `toml` against the schema; the validator's messages, empty when valid.
fn validate(schema: &std::path::Path, toml: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("updater.toml");
    std::fs::write(&file, toml).unwrap();
    let script = r#"
import json, sys, tomllib, jsonschema
schema = json.load(open(sys.argv[1]))
config = tomllib.load(open(sys.argv[2], "rb"))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
for error in cls(schema).iter_errors(config):
    print(error.message)
"#;
    let out = Command::new(PYTHON)
        .args(["-c", script])
        .arg(schema)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the validator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn the_example_is_valid_and_a_misspelled_key_is_not() {
    needs!(Jsonschema);
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("updater.schema.json");
    let out = Command::new(BIN).arg("schema").output().unwrap();
    assert!(out.status.success());
    std::fs::write(&schema, &out.stdout).unwrap();
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    assert_eq!(validate(&schema, &example), Vec::<String>::new());
    // Misspelled at the image, in an environment's override, in a target, and in [settings].
    for (good, bad) in [
        ("strategy = ", "strategyy = "),
        (
            "constraint = \">=1.0.0 <2.0.0\"",
            "constrant = \">=1.0.0 <2.0.0\"",
        ),
        ("kind = ", "knd = "),
        ("interval = ", "intervall = "),
    ] {
        assert!(example.contains(good), "the example has no {good}");
        let typo = example.replacen(good, bad, 1);
        let errors = validate(&schema, &typo);
        let key = bad.split(' ').next().unwrap();
        assert!(
            errors.iter().any(|e| e.contains(&format!("'{key}'"))),
            "{key} was not refused: {errors:?}"
        );
        // `check` refuses the same file.
        let file = dir.path().join("typo.toml");
        std::fs::write(&file, &typo).unwrap();
        let check = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(check.status.code(), Some(1), "{key}");
    }
}
