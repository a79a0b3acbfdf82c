//! Differential tests against the test tables of the libraries users compare us with:
//! Masterminds/semver (what Argo CD Image Updater's constraints mean) and
//! distribution/reference (how Docker names images).
//!
//! The tables live outside this repository, in `../shared/conformance/` beside the checkout;
//! a test fails when its table is absent, so a run without them cannot pass by testing nothing.

mod harness;

use image_updater::reference::{Reference, ReferenceError};
use image_updater::select::{Constraint, Version};
use serde_json::Value;

fn table(name: &str) -> Vec<Value> {
    harness::shared::conformance_table(name)
}

fn s<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key].as_str().unwrap_or("")
}

#[test]
fn masterminds_constraint_checks() {
    needs!(Shared);
    let cases = table("masterminds-constraints.json");
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases
        .iter()
        .filter(|c| c["kind"] == "check" && c["public_api_agrees"] != false)
    {
        checked += 1;
        let constraint = Constraint::parse(s(case, "constraint")).expect("check cases parse");
        let include_pre = case["include_prerelease"] == true;
        let got =
            Version::parse(s(case, "version")).is_ok_and(|v| constraint.matches(&v, include_pre));
        if got != case["expected"] {
            failures.push(format!(
                "{}: {:?} {:?} -> {got}",
                s(case, "id"),
                s(case, "constraint"),
                s(case, "version")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 500, "only {checked} cases");
}

#[test]
fn masterminds_constraint_parsing() {
    needs!(Shared);
    let cases = table("masterminds-constraints.json");
    for case in cases.iter().filter(|c| c["kind"] == "parse") {
        let parsed = Constraint::parse(s(case, "constraint"));
        assert_eq!(
            parsed.is_err(),
            case["expect_error"] == true,
            "{}: {:?}",
            s(case, "id"),
            s(case, "constraint")
        );
    }
}

#[test]
fn masterminds_version_parsing_and_ordering() {
    needs!(Shared);
    let cases = table("masterminds-versions.json");
    let mut failures = Vec::new();
    for case in &cases {
        match case["kind"].as_str() {
            Some("parse")
                if case["test"] == "TestNewVersion" && case["coerce_new_version"] != false =>
            {
                let ok = Version::parse(s(case, "version")).is_ok();
                if ok == (case["expect_error"] == true) {
                    failures.push(format!("{}: parse {:?}", s(case, "id"), s(case, "version")));
                }
            }
            Some("compare") if case["v1"].is_string() && case["v2"].is_string() => {
                let (Ok(a), Ok(b)) = (Version::parse(s(case, "v1")), Version::parse(s(case, "v2")))
                else {
                    continue;
                };
                let got = match s(case, "op") {
                    "Compare" => Value::from(a.cmp(&b) as i8),
                    "LessThan" => Value::from(a < b),
                    "LessThanEqual" => Value::from(a <= b),
                    "GreaterThan" => Value::from(a > b),
                    "GreaterThanEqual" => Value::from(a >= b),
                    "Equal" => Value::from(a == b),
                    _ => continue,
                };
                if got != case["expected"] {
                    failures.push(format!(
                        "{}: {} {:?} {:?} -> {got}",
                        s(case, "id"),
                        s(case, "op"),
                        s(case, "v1"),
                        s(case, "v2")
                    ));
                }
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn distribution_reference_parse() {
    needs!(Shared);
    let cases = table("image-references.json");
    let mut failures = Vec::new();
    for case in cases.iter().filter(|c| {
        c["test"] == "TestReferenceParse" && c["env_dependent"] != true && c["source_rev"].is_null()
    }) {
        let input = s(case, "input");
        match (Reference::parse_exact(input), case["valid"] == true) {
            (Ok(r), true) => {
                let name = if r.domain.is_empty() {
                    r.path.clone()
                } else {
                    format!("{}/{}", r.domain, r.path)
                };
                let expect = |k: &str| s(case, k).to_string();
                if name != expect("name")
                    || r.domain != expect("domain")
                    || r.tag.clone().unwrap_or_default() != expect("tag")
                    || r.digest.clone().unwrap_or_default() != expect("digest")
                {
                    failures.push(format!("{}: {input:?} -> {r:?}", s(case, "id")));
                }
            }
            (Err(e), false) => {
                let expected = match s(case, "error") {
                    "ErrNameEmpty" => Some(ReferenceError::NameEmpty),
                    "ErrNameTooLong" => Some(ReferenceError::NameTooLong),
                    "ErrNameContainsUppercase" => Some(ReferenceError::NameContainsUppercase),
                    "ErrReferenceInvalidFormat" => Some(ReferenceError::InvalidFormat),
                    "ErrDigestInvalidFormat" => Some(ReferenceError::DigestInvalidFormat),
                    _ => None,
                };
                if expected.is_some_and(|x| x != e) {
                    failures.push(format!(
                        "{}: {input:?} -> {e:?}, expected {}",
                        s(case, "id"),
                        s(case, "error")
                    ));
                }
            }
            (got, _) => failures.push(format!("{}: {input:?} -> {got:?}", s(case, "id"))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn distribution_reference_normalization() {
    needs!(Shared);
    let cases = table("image-references.json");
    let mut failures = Vec::new();
    for case in cases.iter().filter(|c| {
        s(c, "api").starts_with("ParseNormalizedNamed")
            && c["test"] != "TestParseReferenceWithTagAndDigest"
    }) {
        let input = s(case, "input");
        let parsed = Reference::parse(input);
        if parsed.is_ok() != (case["valid"] == true) {
            failures.push(format!("{}: {input:?} -> {parsed:?}", s(case, "id")));
            continue;
        }
        let Ok(r) = parsed else { continue };
        for (key, got) in [
            ("domain", r.domain.clone()),
            ("path", r.path.clone()),
            ("full_name", r.repository()),
            ("familiar_name", r.familiar_repository()),
        ] {
            if case[key].is_string() && s(case, key) != got {
                failures.push(format!(
                    "{}: {input:?} {key} = {got:?}, expected {:?}",
                    s(case, "id"),
                    s(case, key)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
