//! `aws[:REGION]`: Amazon ECR's registry password, from AWS credentials found the way AWS's
//! own tools find them (the chain of [`keys`]), with nothing to install.
//!
//! With the keys, ECR's `GetAuthorizationToken`, signed with Signature Version 4, answers a
//! password for the user `AWS`, good for twelve hours; the registry client keeps it until
//! shortly before then. ECR Public (`public.ecr.aws`) has its own token API, in us-east-1.
//!
//! The endpoint is ECR's for the region (`AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL_ECR_PUBLIC`
//! or `AWS_ENDPOINT_URL` first, as AWS's SDKs allow); the password goes only to the registry
//! it was asked for.

pub mod keys;
pub mod sigv4;

use std::time::{Duration, SystemTime};

use base64::Engine;
use futures_util::future::BoxFuture;

use super::{Answer, Endpoint, Lease, Vars, endpoint_url, renew_at};
use crate::config::credentials::ecr_region;
use crate::secrets::{Credential, Registry, Secret, Source, SourceError};
use sigv4::{Keys, Unsigned, sign_headers};

/// ECR Public's registry host; its token API is in us-east-1 whatever the caller's region.
pub const ECR_PUBLIC: &str = "public.ecr.aws";

pub(crate) struct Aws<'a> {
    pub region: Option<&'a str>,
    /// A role the keys found assume before asking ECR.
    pub role: Option<&'a str>,
}

impl Source for Aws<'_> {
    fn credential<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, SourceError>> {
        Box::pin(async move {
            let lease = lease(self.region, self.role, host, &Vars::from_process()).await?;
            Ok(Some(lease.credential))
        })
    }

    fn lease<'a>(
        &'a self,
        registry: Registry<'a>,
    ) -> BoxFuture<'a, Result<Option<Lease>, SourceError>> {
        Box::pin(async move {
            let vars = Vars::from_process();
            Ok(Some(
                lease(self.region, self.role, registry.host, &vars).await?,
            ))
        })
    }

    fn identity(&self) -> BoxFuture<'_, Result<Option<String>, SourceError>> {
        Box::pin(async move {
            let vars = Vars::from_process();
            let region = self.region.map(str::to_string).unwrap_or_else(|| {
                vars.first(&["AWS_REGION", "AWS_DEFAULT_REGION"])
                    .unwrap_or("us-east-1")
                    .to_string()
            });
            let found = credentials(self.role, &region, &vars).await?;
            Ok(Some(format!("AWS credentials from {}", found.from)))
        })
    }

    fn document(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(async {
            Err(SourceError::Invalid(
                "aws gives registry passwords, not keys: use file:, env: or exec:".into(),
            ))
        })
    }
}

/// ECR's password for the registry `host`, with the keys the chain finds in `vars` (having
/// assumed `role` with them, when one is given).
pub async fn lease(
    region: Option<&str>,
    role: Option<&str>,
    host: &str,
    vars: &Vars,
) -> Result<Lease, SourceError> {
    let public = host.split(':').next() == Some(ECR_PUBLIC);
    let region = if public {
        "us-east-1".to_string()
    } else {
        region_of(region, host, vars)?
    };
    let found = credentials(role, &region, vars).await?;
    let api = if public { Api::PUBLIC } else { Api::PRIVATE };
    let (credential, expires) = password(&api, &found.keys, &region, vars).await?;
    Ok(Lease {
        credential,
        renew_at: renew_at(expires),
    })
}

/// The keys the chain finds, or the temporary keys of `role` assumed with them.
async fn credentials(
    role: Option<&str>,
    region: &str,
    vars: &Vars,
) -> Result<keys::Found, SourceError> {
    let found = keys::find(vars, region).await?;
    match role {
        Some(role) => keys::assume_role(found, role, region, vars).await,
        None => Ok(found),
    }
}

/// The region: the one given, or the one in an ECR host
/// (`123456789012.dkr.ecr.eu-west-1.amazonaws.com`), or `AWS_REGION` / `AWS_DEFAULT_REGION`.
fn region_of(given: Option<&str>, host: &str, vars: &Vars) -> Result<String, SourceError> {
    if let Some(region) = given {
        return Ok(region.to_string());
    }
    if let Some(region) = ecr_region(host) {
        return Ok(region);
    }
    vars.first(&["AWS_REGION", "AWS_DEFAULT_REGION"])
        .map(str::to_string)
        .ok_or_else(|| {
            SourceError::Missing(format!(
                "no AWS region: {host} is not an ECR host that names one, and neither \
                 AWS_REGION nor AWS_DEFAULT_REGION is set; write credentials = \"aws:REGION\""
            ))
        })
}

/// The two token APIs: ECR's and ECR Public's.
struct Api {
    name: &'static str,
    service: &'static str,
    target: &'static str,
    endpoint_vars: [&'static str; 2],
    host: &'static str,
}

impl Api {
    const PRIVATE: Api = Api {
        name: "ECR",
        service: "ecr",
        target: "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        endpoint_vars: ["AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL"],
        host: "api.ecr",
    };
    const PUBLIC: Api = Api {
        name: "ECR Public",
        service: "ecr-public",
        target: "SpencerFrontendService.GetAuthorizationToken",
        endpoint_vars: ["AWS_ENDPOINT_URL_ECR_PUBLIC", "AWS_ENDPOINT_URL"],
        host: "api.ecr-public",
    };
}

/// Who signs a request to AWS, and for what: the keys, the region and the service.
struct Signed<'a> {
    keys: &'a Keys,
    region: &'a str,
    service: &'a str,
}

impl Signed<'_> {
    /// POSTs `body` to `url` with `headers`, signed with Signature Version 4 (the `Host`
    /// header, the url's host and port, is signed too); the request is sent exactly as it
    /// was signed.
    async fn post(
        &self,
        endpoint: &Endpoint<'_>,
        url: &reqwest::Url,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, SourceError> {
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => String::new(),
        };
        let mut signed_headers = vec![("host", host.as_str())];
        signed_headers.extend_from_slice(headers);
        let unsigned = Unsigned {
            method: "POST",
            url: url.as_str(),
            headers: &signed_headers,
            body,
        };
        let signature = sign_headers(
            &unsigned,
            self.keys,
            self.region,
            self.service,
            SystemTime::now(),
        )
        .map_err(SourceError::Invalid)?;
        let mut request = endpoint.client()?.post(url.clone()).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        for (name, value) in &signature {
            request = request.header(name.as_str(), value.as_str());
        }
        endpoint.send(request).await
    }
}

/// `GetAuthorizationToken`: the registry password for the user `AWS`, and when it expires.
async fn password(
    api: &Api,
    keys: &Keys,
    region: &str,
    vars: &Vars,
) -> Result<(Credential, SystemTime), SourceError> {
    let endpoint = vars
        .first(&api.endpoint_vars)
        .map(str::to_string)
        .unwrap_or_else(|| format!("https://{}.{region}.amazonaws.com", api.host));
    let url = endpoint_url(api.name, &endpoint)?;
    let name = format!("{} at {endpoint}", api.name);
    let ecr = Endpoint::new(&name);
    let signed = Signed {
        keys,
        region,
        service: api.service,
    };
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", api.target),
    ];
    let answer = signed.post(&ecr, &url, &headers, b"{}").await?;
    if !answer.status.is_success() {
        return Err(answer.refusal(&name, "GetAuthorizationToken"));
    }
    password_of(&answer.body)
}

/// The password and its expiry from `GetAuthorizationToken`'s answer.
fn password_of(answer: &[u8]) -> Result<(Credential, SystemTime), SourceError> {
    let invalid = |why: &str| SourceError::Invalid(format!("ECR's answer: {why}"));
    let said: serde_json::Value =
        serde_json::from_slice(answer).map_err(|_| invalid("not JSON"))?;
    // ECR answers a list of one; ECR Public, the object itself.
    let data = match &said["authorizationData"] {
        serde_json::Value::Array(list) => list.first().unwrap_or(&serde_json::Value::Null),
        data => data,
    };
    let token = data["authorizationToken"]
        .as_str()
        .ok_or_else(|| invalid("no authorizationToken"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| invalid("the token is not base64 of user:password"))?;
    let (user, password) = decoded
        .split_once(':')
        .filter(|(u, p)| !u.is_empty() && !p.is_empty())
        .ok_or_else(|| invalid("the token is not user:password"))?;
    // Seconds since the epoch, as a number; anything absurd is held to the longest.
    let expires = data["expiresAt"]
        .as_f64()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e11)
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s))
        .unwrap_or_else(|| SystemTime::now() + super::LONGEST);
    Ok((
        Credential::Basic {
            username: user.to_string(),
            password: Secret::new(password),
        },
        expires,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_answers_are_bounded_and_checked() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:pw-from-ecr");
        let answer = format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":1.7e9,"proxyEndpoint":"https://x"}}]}}"#
        );
        let (credential, expires) = password_of(answer.as_bytes()).unwrap();
        assert_eq!(
            credential,
            Credential::Basic {
                username: "AWS".into(),
                password: Secret::new("pw-from-ecr")
            }
        );
        assert_eq!(
            expires,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        // An absurd expiry is held to the longest; a token that is not user:password fails.
        let absurd = answer.replace("1.7e9", "1e300");
        let (_, expires) = password_of(absurd.as_bytes()).unwrap();
        assert!(expires <= SystemTime::now() + super::super::LONGEST);
        let bad = answer.replace(&token, "bm90LWEtcGFpcg==");
        assert!(password_of(bad.as_bytes()).is_err());
        assert!(password_of(b"<html>").is_err());
    }
}
