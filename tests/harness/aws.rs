//! A Signature Version 4 check written for the test servers from AWS's description of the
//! algorithm (the General Reference's "Create a signed AWS API request"), apart from the
//! signer image-updater uses: a request the servers accept is one AWS would, not one our
//! signer agrees with itself about. `tests/aws_signing.rs` holds it to AWS's published suite.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986's unreserved characters stay; every other byte is `%XX`, upper case.
fn uri_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn uri_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path with `.` and `..` segments and repeated slashes removed, each segment encoded
/// again (every service but S3 signs the path encoded twice).
fn canonical_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = path.ends_with('/') && !segments.is_empty();
    let mut out = String::from("/");
    out.push_str(
        &segments
            .iter()
            .map(|s| uri_encode(s))
            .collect::<Vec<_>>()
            .join("/"),
    );
    if trailing {
        out.push('/');
    }
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&uri_decode(k)), uri_encode(&uri_decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Checks the `Authorization` of a request as AWS would with `secret`, for `region` and
/// `service`; says what is wrong.
pub fn verify(
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &[u8],
    secret: &str,
    region: &str,
    service: &str,
) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    let authorization = header("authorization")
        .first()
        .copied()
        .ok_or("no Authorization header")?
        .to_string();
    let rest = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let field = |key: &str| {
        rest.split(", ")
            .find_map(|f| f.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .ok_or(format!("no {key} in the Authorization header"))
    };
    let (credential, signed, signature) = (
        field("Credential")?,
        field("SignedHeaders")?,
        field("Signature")?,
    );
    let amz_date = header("x-amz-date")
        .first()
        .copied()
        .ok_or("no X-Amz-Date header")?
        .to_string();
    let date = amz_date.get(..8).ok_or("X-Amz-Date is too short")?;
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let (_, credential_scope) = credential
        .split_once('/')
        .ok_or("the credential has no scope")?;
    if credential_scope != scope {
        return Err(format!(
            "credential scope {credential_scope}, expected {scope}"
        ));
    }
    let signed_names: Vec<&str> = signed.split(';').collect();
    if !signed_names.contains(&"host") || !signed_names.contains(&"x-amz-date") {
        return Err(format!(
            "SignedHeaders {signed} leaves out host or x-amz-date"
        ));
    }
    if !header("x-amz-security-token").is_empty() && !signed_names.contains(&"x-amz-security-token")
    {
        return Err("the session token is sent but not signed".into());
    }
    let mut canonical_headers = String::new();
    for name in &signed_names {
        let values: Vec<String> = header(name)
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(format!("signed header {name} is not in the request"));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let canonical = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        canonical_path(path),
        canonical_query(query),
        hex(&Sha256::digest(body))
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date);
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part);
    }
    let expected = hex(&hmac(&key, &to_sign));
    if expected == signature {
        Ok(())
    } else {
        Err(format!(
            "signature {signature} does not match; the canonical request is:\n{canonical}"
        ))
    }
}
