//! AWS keys from the first link of the chain that has them, in the order AWS's SDKs document:
//!
//! 1. the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`);
//! 2. the shared files under the profile `AWS_PROFILE` (or `default`): the credentials file
//!    (`AWS_SHARED_CREDENTIALS_FILE`, or `~/.aws/credentials`), then the config file
//!    (`AWS_CONFIG_FILE`, or `~/.aws/config`, where the profile is `[profile NAME]`);
//! 3. web identity (`AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`, as EKS sets them for
//!    a service account), through STS's `AssumeRoleWithWebIdentity`;
//! 4. the container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` on ECS,
//!    `AWS_CONTAINER_CREDENTIALS_FULL_URI` with its authorization token on EKS Pod Identity);
//! 5. EC2 instance metadata, IMDSv2: a session token first, then the role's keys
//!    (`AWS_EC2_METADATA_DISABLED=true` skips it).
//!
//! With a role in the config (`aws:REGION:ROLE_ARN`), the keys found then assume it through
//! STS's `AssumeRole`, signed with them.
//!
//! A link that is not set up is noted and passed; a link that is set up and fails ends the
//! search with its reason, since falling through to another identity would sign in as
//! someone the operator did not choose. Endpoints are overridable as the SDKs allow:
//! `AWS_ENDPOINT_URL_STS`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`.

use std::path::PathBuf;

use super::sigv4::Keys;
use crate::secrets::cloud::{Answer, Endpoint, Tried, Vars, endpoint_url, field};
use crate::secrets::{Secret, SourceError};

/// Keys, and where they were found.
pub struct Found {
    pub keys: Keys,
    pub from: String,
}

/// The keys from the first link that has them; when none has, what each link said.
pub async fn find(vars: &Vars, region: &str) -> Result<Found, SourceError> {
    let mut tried = Tried::default();
    if let Some(found) = from_environment(vars, &mut tried) {
        return Ok(found);
    }
    if let Some(found) = from_shared_files(vars, &mut tried) {
        return Ok(found);
    }
    if let Some(found) = web_identity(vars, region, &mut tried).await? {
        return Ok(found);
    }
    if let Some(found) = container(vars, &mut tried).await? {
        return Ok(found);
    }
    match instance_metadata(vars).await {
        Ok(found) => Ok(found),
        Err(why) => {
            tried.note("IMDS", why);
            Err(tried.nothing(
                "AWS",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or run where a role is given",
            ))
        }
    }
}

fn from_environment(vars: &Vars, tried: &mut Tried) -> Option<Found> {
    match (
        vars.get("AWS_ACCESS_KEY_ID"),
        vars.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => Some(Found {
            keys: Keys {
                access_key_id: id.to_string(),
                secret_access_key: Secret::new(secret),
                session_token: vars.get("AWS_SESSION_TOKEN").map(Secret::new),
            },
            from: "the environment (AWS_ACCESS_KEY_ID)".into(),
        }),
        (Some(_), None) => {
            tried.note("env", "AWS_SECRET_ACCESS_KEY unset");
            None
        }
        _ => {
            tried.note("env", "AWS_ACCESS_KEY_ID unset");
            None
        }
    }
}

/// The profile's keys in the credentials file, then in the config file.
fn from_shared_files(vars: &Vars, tried: &mut Tried) -> Option<Found> {
    let profile = vars.get("AWS_PROFILE").unwrap_or("default");
    let files = [
        (
            vars.get("AWS_SHARED_CREDENTIALS_FILE")
                .map(PathBuf::from)
                .or_else(|| vars.home(".aws/credentials")),
            profile.to_string(),
        ),
        (
            vars.get("AWS_CONFIG_FILE")
                .map(PathBuf::from)
                .or_else(|| vars.home(".aws/config")),
            if profile == "default" {
                "default".to_string()
            } else {
                format!("profile {profile}")
            },
        ),
    ];
    for (path, section) in files {
        let Some(path) = path else {
            tried.note("shared files", "HOME unset");
            return None;
        };
        let what = format!("{} profile {profile}", path.display());
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tried.note(&path.display().to_string(), "no such file");
                continue;
            }
            Err(e) => {
                tried.note(&what, e);
                continue;
            }
        };
        let values = profile_values(&text, &section);
        let get = |key: &str| {
            values
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        match (get("aws_access_key_id"), get("aws_secret_access_key")) {
            (Some(id), Some(secret)) => {
                return Some(Found {
                    keys: Keys {
                        access_key_id: id,
                        secret_access_key: Secret::new(secret),
                        session_token: get("aws_session_token").map(Secret::new),
                    },
                    from: what,
                });
            }
            _ if values.is_empty() => tried.note(&what, "no such profile"),
            _ => tried.note(&what, "no aws_access_key_id and aws_secret_access_key"),
        }
    }
    None
}

/// The `key = value` lines of `[section]` in an INI text.
pub(super) fn profile_values(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out
}

/// STS `AssumeRoleWithWebIdentity` with the token file's token: temporary keys for the role.
async fn web_identity(
    vars: &Vars,
    region: &str,
    tried: &mut Tried,
) -> Result<Option<Found>, SourceError> {
    let (Some(role), Some(file)) = (
        vars.get("AWS_ROLE_ARN"),
        vars.get("AWS_WEB_IDENTITY_TOKEN_FILE"),
    ) else {
        let unset = if vars.get("AWS_ROLE_ARN").is_none() {
            "AWS_ROLE_ARN unset"
        } else {
            "AWS_WEB_IDENTITY_TOKEN_FILE unset"
        };
        tried.note("web identity", unset);
        return Ok(None);
    };
    let token = std::fs::read_to_string(file)
        .map_err(|e| SourceError::Missing(format!("web identity token file {file}: {e}")))?;
    let session = vars
        .get("AWS_ROLE_SESSION_NAME")
        .map(str::to_string)
        .unwrap_or_else(|| format!("image-updater-{}", jiff::Timestamp::now().as_second()));
    let url = sts_url(vars, region)?;
    let sts = Endpoint::new("STS");
    let form = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role),
        ("RoleSessionName", session.as_str()),
        ("WebIdentityToken", token.trim()),
    ];
    let answer = sts.send(sts.client()?.post(url).form(&form)).await?;
    Ok(Some(Found {
        keys: sts_keys(&answer, "AssumeRoleWithWebIdentity", role)?,
        from: format!("web identity ({role}, token file {file})"),
    }))
}

/// STS's endpoint for `region`, or the one the environment names.
fn sts_url(vars: &Vars, region: &str) -> Result<reqwest::Url, SourceError> {
    let endpoint = vars
        .first(&["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"])
        .map(str::to_string)
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com/"));
    endpoint_url("STS", &endpoint)
}

/// The temporary keys of an STS answer (XML), or what STS said when it refused.
fn sts_keys(answer: &Answer, action: &str, role: &str) -> Result<Keys, SourceError> {
    let text = String::from_utf8_lossy(&answer.body);
    if !answer.status.is_success() {
        let code = xml_text(&text, "Code").unwrap_or_default();
        let message = xml_text(&text, "Message").unwrap_or_default();
        return Err(SourceError::Invalid(format!(
            "STS refused {action} for {role} (HTTP {}, {code}): {}",
            answer.status,
            message.chars().take(300).collect::<String>()
        )));
    }
    let get = |tag: &str| {
        xml_text(&text, tag)
            .ok_or_else(|| SourceError::Invalid(format!("STS's answer has no {tag}")))
    };
    Ok(Keys {
        access_key_id: get("AccessKeyId")?,
        secret_access_key: Secret::new(get("SecretAccessKey")?),
        session_token: Some(Secret::new(get("SessionToken")?)),
    })
}

/// STS `AssumeRole`, signed with the keys found: the role's temporary keys. For a config that
/// names a role (`aws:REGION:ROLE_ARN`), as a profile's `role_arn` does for AWS's tools.
pub async fn assume_role(
    found: Found,
    role: &str,
    region: &str,
    vars: &Vars,
) -> Result<Found, SourceError> {
    let url = sts_url(vars, region)?;
    let session = format!("image-updater-{}", jiff::Timestamp::now().as_second());
    let body = reqwest::Url::parse_with_params(
        "http://form/",
        [
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", role),
            ("RoleSessionName", session.as_str()),
        ],
    )
    .map_err(|e| SourceError::Invalid(format!("cannot write the request: {e}")))?
    .query()
    .unwrap_or_default()
    .to_string();
    let signed = super::Signed {
        keys: &found.keys,
        region,
        service: "sts",
    };
    let content_type = [(
        "content-type",
        "application/x-www-form-urlencoded; charset=utf-8",
    )];
    let sts = Endpoint::new("STS");
    let answer = signed
        .post(&sts, &url, &content_type, body.as_bytes())
        .await?;
    Ok(Found {
        keys: sts_keys(&answer, "AssumeRole", role)?,
        from: format!("the role {role}, assumed with {}", found.from),
    })
}

/// The text of the first `<tag>` element of a small XML answer, entities undone.
fn xml_text(text: &str, tag: &str) -> Option<String> {
    let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = text[start..].find(&format!("</{tag}>"))?;
    let raw = text[start..start + len].trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// The hosts a full container credentials url may name over plain HTTP, as the SDKs allow:
/// loopback, and the ECS and EKS agents' link-local addresses.
fn plain_http_allowed(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("");
    match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_loopback() || [[169, 254, 170, 2], [169, 254, 170, 23]].contains(&ip.octets())
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23]
        }
        Err(_) => host == "localhost",
    }
}

/// The ECS or EKS Pod Identity agent's keys.
async fn container(vars: &Vars, tried: &mut Tried) -> Result<Option<Found>, SourceError> {
    let url = match (
        vars.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        vars.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(relative), _) => endpoint_url(
            "the container credentials endpoint",
            &format!("http://169.254.170.2{relative}"),
        )?,
        (None, Some(full)) => {
            let url = endpoint_url("the container credentials endpoint", full)?;
            if url.scheme() != "https" && !plain_http_allowed(&url) {
                return Err(SourceError::Invalid(format!(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI {full} is plain HTTP to a host that is \
                     neither loopback nor the ECS or EKS agent: refused, as AWS's SDKs refuse it"
                )));
            }
            url
        }
        (None, None) => {
            tried.note("container endpoint", "unset");
            return Ok(None);
        }
    };
    let authorization = match (
        vars.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        vars.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    ) {
        (Some(file), _) => Some(std::fs::read_to_string(file).map_err(|e| {
            SourceError::Missing(format!("container authorization token file {file}: {e}"))
        })?),
        (None, Some(token)) => Some(token.to_string()),
        (None, None) => None,
    };
    let endpoint = Endpoint::metadata("the container credentials endpoint");
    let mut request = endpoint.client()?.get(url);
    if let Some(token) = authorization {
        request = request.header("authorization", token.trim());
    }
    let answer = endpoint.send(request).await?;
    if !answer.status.is_success() {
        return Err(answer.refusal(endpoint.name, "its keys"));
    }
    let keys = keys_of(&answer.json(endpoint.name)?, endpoint.name)?;
    Ok(Some(Found {
        keys,
        from: "the container credentials endpoint".into(),
    }))
}

/// `AccessKeyId`, `SecretAccessKey` and `Token` of a container endpoint's or IMDS's answer.
fn keys_of(said: &serde_json::Value, name: &str) -> Result<Keys, SourceError> {
    Ok(Keys {
        access_key_id: field(said, name, "AccessKeyId")?.to_string(),
        secret_access_key: Secret::new(field(said, name, "SecretAccessKey")?),
        session_token: said["Token"].as_str().map(Secret::new),
    })
}

/// IMDSv2: a session token by `PUT /latest/api/token`, the role's name, then its keys.
async fn instance_metadata(vars: &Vars) -> Result<Found, String> {
    if vars
        .get("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Err("AWS_EC2_METADATA_DISABLED".into());
    }
    let base = vars
        .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or("http://169.254.169.254")
        .trim_end_matches('/')
        .to_string();
    let imds = Endpoint::metadata("IMDS");
    let client = imds.client().map_err(|e| e.to_string())?;
    let said = |e: SourceError| match e {
        SourceError::Missing(why) => why.trim_start_matches("IMDS ").to_string(),
        other => other.to_string(),
    };
    let answer = imds
        .send(
            client
                .put(format!("{base}/latest/api/token"))
                .header("x-aws-ec2-metadata-token-ttl-seconds", "21600"),
        )
        .await
        .map_err(said)?;
    if !answer.status.is_success() {
        return Err(format!("no session token: HTTP {}", answer.status));
    }
    let token = String::from_utf8(answer.body).map_err(|_| "a session token that is not text")?;
    let get = |path: String| {
        client
            .get(format!(
                "{base}/latest/meta-data/iam/security-credentials/{path}"
            ))
            .header("x-aws-ec2-metadata-token", token.trim())
    };
    let answer = imds.send(get(String::new())).await.map_err(said)?;
    if !answer.status.is_success() {
        return Err(format!("no role: HTTP {}", answer.status));
    }
    let role = String::from_utf8_lossy(&answer.body)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if role.is_empty() || !role.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err("no role attached to the instance".into());
    }
    let answer = imds.send(get(role.clone())).await.map_err(said)?;
    if !answer.status.is_success() {
        return Err(format!("no keys for role {role}: HTTP {}", answer.status));
    }
    let json = answer.json("IMDS").map_err(|e| e.to_string())?;
    Ok(Found {
        keys: keys_of(&json, "IMDS").map_err(|e| e.to_string())?,
        from: format!("instance metadata (role {role})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_as_ini() {
        let text = "[default]\naws_access_key_id = AKIDDEFAULT\n\n[ci]\n# a comment\nAWS_ACCESS_KEY_ID=AKIDCI\naws_secret_access_key = s3cret \n[profile  ci]\nx=1\n";
        let ci = profile_values(text, "ci");
        assert_eq!(
            ci,
            [
                ("aws_access_key_id".to_string(), "AKIDCI".to_string()),
                ("aws_secret_access_key".to_string(), "s3cret".to_string())
            ]
        );
        assert_eq!(profile_values(text, "profile ci").len(), 1);
        assert!(profile_values(text, "prod").is_empty());
    }

    #[test]
    fn sts_answers_are_read() {
        let xml = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><SessionToken>tok&amp;en</SessionToken><AccessKeyId>ASIA1</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(xml_text(xml, "SessionToken").as_deref(), Some("tok&en"));
        assert_eq!(xml_text(xml, "AccessKeyId").as_deref(), Some("ASIA1"));
        assert_eq!(xml_text(xml, "Expiration"), None);
    }

    #[test]
    fn plain_http_goes_only_to_the_agents() {
        for (url, ok) in [
            ("http://127.0.0.1:8080/creds", true),
            ("http://169.254.170.23/v1/credentials", true),
            ("http://[fd00:ec2::23]/v1/credentials", true),
            ("http://example.com/creds", false),
            ("http://169.254.169.254/", false),
        ] {
            assert_eq!(
                plain_http_allowed(&reqwest::Url::parse(url).unwrap()),
                ok,
                "{url}"
            );
        }
    }
}
