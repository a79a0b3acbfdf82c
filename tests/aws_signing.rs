//! The AWS request signer (`secrets::cloud::aws::sigv4`) against AWS's published Signature Version 4
//! test suite: the `aws-signing-test-suite/v4` cases that ship in the `aws-sigv4` package (taken
//! from the AWS CRT's suite, itself from the AWS General Reference), read where cargo keeps
//! the package. Each case is a raw request, its context (keys, region, service, time) and the
//! signature AWS says it has.
//!
//! Cases signed with settings image-updater never uses (paths not normalized, S3's signed body
//! header) are counted apart, with why, not dropped; a suite that cannot be found fails.

mod harness;

use std::path::PathBuf;
use std::process::Command;

use image_updater::secrets::Secret;
use image_updater::secrets::cloud::aws::sigv4::{Keys, Unsigned, sign_headers};
use serde_json::Value;

/// The cases image-updater's settings apply to, and the others with why.
fn cases(dir: &std::path::Path) -> (Vec<(String, Value)>, Vec<String>) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let (mut ours, mut apart) = (Vec::new(), Vec::new());
    for name in names {
        let case = dir.join(&name);
        let Ok(context) = std::fs::read_to_string(case.join("context.json")) else {
            apart.push(format!("{name}: the older format, without a context"));
            continue;
        };
        let context: Value = serde_json::from_str(&context).unwrap();
        let text = std::fs::read_to_string(case.join("request.txt")).unwrap();
        let path = parse(&text).1;
        let why = if context["normalize"] == false {
            Some("paths not normalized (S3's signing)")
        } else if context["sign_body"] == true {
            Some("a signed body header (S3's signing)")
        } else if context["omit_session_token"] == true {
            Some("the session token left out of the signature")
        } else if path.split('?').next().unwrap_or_default().contains('%') {
            // AWS services other than S3 encode an escaped path again before signing; the
            // suite signs it as written. The requests image-updater signs are `POST /`.
            Some("an escaped path, signed once (S3's signing)")
        } else {
            None
        };
        match why {
            Some(why) => apart.push(format!("{name}: {why}")),
            None => ours.push((name, context)),
        }
    }
    (ours, apart)
}

/// Where cargo unpacked the `aws-sigv4` package this build uses.
fn suite() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "aws-sigv4")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("the aws-sigv4 package is in the build");
    let dir = PathBuf::from(manifest)
        .parent()
        .unwrap()
        .join("aws-signing-test-suite/v4");
    assert!(
        dir.is_dir(),
        "AWS's signing test suite is not in the aws-sigv4 package at {}",
        dir.display()
    );
    dir
}

/// A raw request of the suite: method, path (as written), headers in order, body.
fn parse(text: &str) -> (String, String, Vec<(String, String)>, Vec<u8>) {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let first = lines.next().unwrap();
    let (method, rest) = first.split_once(' ').unwrap();
    let path = rest.rsplit_once(' ').unwrap().0;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // An obsolete folded line: unfolded into the value with a space (RFC 9112 5.2),
            // as the request is sent.
            let last = headers.last_mut().unwrap();
            last.1 = format!("{} {}", last.1, line.trim());
        } else {
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_string(), value.to_string()));
        }
    }
    (
        method.into(),
        path.into(),
        headers,
        body.as_bytes().to_vec(),
    )
}

#[test]
fn requests_are_signed_as_awss_published_suite_says() {
    let dir = suite();
    let mut signed = Vec::new();
    let (ours, apart) = cases(&dir);
    for (name, context) in ours {
        let case = dir.join(&name);
        let text = std::fs::read_to_string(case.join("request.txt")).unwrap();
        let (method, path, headers, body) = parse(&text);
        let host = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone())
            .unwrap();
        let url = format!("https://{host}{path}");
        let header_refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let creds = &context["credentials"];
        let keys = Keys {
            access_key_id: creds["access_key_id"].as_str().unwrap().into(),
            secret_access_key: Secret::new(creds["secret_access_key"].as_str().unwrap()),
            session_token: creds["token"].as_str().map(Secret::new),
        };
        let time: jiff::Timestamp = context["timestamp"].as_str().unwrap().parse().unwrap();
        let got = sign_headers(
            &Unsigned {
                method: &method,
                url: &url,
                headers: &header_refs,
                body: &body,
            },
            &keys,
            context["region"].as_str().unwrap(),
            context["service"].as_str().unwrap(),
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(time.as_second() as u64),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let authorization = got
            .iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name}: no authorization header in {got:?}"));
        let signature = authorization.rsplit_once("Signature=").unwrap().1;
        let want = std::fs::read_to_string(case.join("header-signature.txt")).unwrap();
        assert_eq!(signature, want.trim(), "{name}: {authorization}");
        signed.push(name);
    }
    eprintln!(
        "signed as the suite says: {} cases; apart: {}\n  {}",
        signed.len(),
        apart.len(),
        apart.join("\n  ")
    );
    assert!(
        signed.len() >= 25,
        "only {} cases ran: {signed:?}",
        signed.len()
    );
    assert!(signed.contains(&"get-vanilla-with-session-token".to_string()));
    assert!(signed.contains(&"post-vanilla".to_string()));
}

/// The test servers' own check (`harness::aws::verify`) accepts every signed request of the
/// suite image-updater's settings apply to, and refuses each when one signed part changes.
#[test]
fn the_test_servers_check_agrees_with_awss_suite() {
    let dir = suite();
    let (ours, _) = cases(&dir);
    assert!(ours.len() >= 25, "{} cases", ours.len());
    for (name, context) in &ours {
        let text =
            std::fs::read_to_string(dir.join(name).join("header-signed-request.txt")).unwrap();
        let (method, path, headers, body) = parse(&text);
        let secret = context["credentials"]["secret_access_key"]
            .as_str()
            .unwrap();
        let (region, service) = (
            context["region"].as_str().unwrap(),
            context["service"].as_str().unwrap(),
        );
        harness::aws::verify(&method, &path, &headers, &body, secret, region, service)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let tampered: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| match n.eq_ignore_ascii_case("host") {
                true => (n.clone(), format!("x{v}")),
                false => (n.clone(), v.clone()),
            })
            .collect();
        assert!(
            harness::aws::verify(&method, &path, &tampered, &body, secret, region, service)
                .is_err(),
            "{name}: a changed host still verified"
        );
        assert!(
            harness::aws::verify(
                &method,
                &path,
                &headers,
                &body,
                "another secret",
                region,
                service
            )
            .is_err(),
            "{name}: another secret still verified"
        );
    }
}
