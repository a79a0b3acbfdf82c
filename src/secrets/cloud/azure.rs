//! `azure[:CLIENT_ID]`: Azure Container Registry (`NAME.azurecr.io`) with an Azure AD token,
//! found in the order of Azure's `DefaultAzureCredential`:
//!
//! 1. a service principal's secret in the environment (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//!    `AZURE_CLIENT_SECRET`);
//! 2. workload identity (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
//!    as AKS sets them): the federated token as the client assertion;
//! 3. a managed identity, through the instance metadata service (IMDS); the client id in the
//!    config picks a user-assigned identity.
//!
//! Both grants go to Azure AD's v2 token endpoint at `AZURE_AUTHORITY_HOST` (by default
//! `https://login.microsoftonline.com/`); IMDS is at `AZURE_POD_IDENTITY_AUTHORITY_HOST` when
//! set, as Azure's SDKs allow. The AD token is then exchanged at the registry's own
//! `/oauth2/exchange` for an ACR refresh token, which is the registry's password for the user
//! `00000000-0000-0000-0000-000000000000`: the registry's token service (`/oauth2/token`)
//! takes it from there, for each repository's scope, like any registry's.

use std::time::SystemTime;

use base64::Engine;
use futures_util::future::BoxFuture;

use super::{Endpoint, Lease, Tried, Vars, endpoint_url, field, oauth_expiry, renew_at};
use crate::secrets::{Credential, Registry, Secret, Source, SourceError};

/// The user ACR's refresh tokens are sent with.
pub const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";
/// The audience of tokens for ACR.
const SCOPE: &str = "https://containerregistry.azure.net/.default";
const RESOURCE: &str = "https://containerregistry.azure.net/";

pub(crate) struct Azure<'a> {
    pub client_id: Option<&'a str>,
}

impl Source for Azure<'_> {
    fn credential<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, SourceError>> {
        Box::pin(async move {
            let base_url = format!("https://{host}");
            let registry = Registry {
                host,
                base_url: &base_url,
            };
            let lease = lease(self.client_id, registry, &Vars::from_process()).await?;
            Ok(Some(lease.credential))
        })
    }

    fn lease<'a>(
        &'a self,
        registry: Registry<'a>,
    ) -> BoxFuture<'a, Result<Option<Lease>, SourceError>> {
        Box::pin(async move {
            Ok(Some(
                lease(self.client_id, registry, &Vars::from_process()).await?,
            ))
        })
    }

    fn identity(&self) -> BoxFuture<'_, Result<Option<String>, SourceError>> {
        Box::pin(async {
            let token = ad_token(self.client_id, &Vars::from_process()).await?;
            Ok(Some(format!("Azure credentials from {}", token.from)))
        })
    }

    fn document(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(async {
            Err(SourceError::Invalid(
                "azure gives registry passwords, not documents: use file:, env: or exec:".into(),
            ))
        })
    }
}

/// An Azure AD token, its expiry, its tenant when known, and where it came from.
pub struct Token {
    pub token: Secret,
    pub expires: SystemTime,
    pub tenant: Option<String>,
    pub from: String,
}

/// The registry's refresh token, exchanged at the registry for an Azure AD token.
pub async fn lease(
    client_id: Option<&str>,
    registry: Registry<'_>,
    vars: &Vars,
) -> Result<Lease, SourceError> {
    let ad = ad_token(client_id, vars).await?;
    let mut form = vec![
        ("grant_type", "access_token"),
        ("service", registry.host),
        ("access_token", ad.token.expose()),
    ];
    if let Some(tenant) = &ad.tenant {
        form.push(("tenant", tenant));
    }
    let name = format!("the registry's /oauth2/exchange at {}", registry.host);
    let endpoint = Endpoint::new(&name);
    let url = endpoint_url(
        &name,
        &format!(
            "{}/oauth2/exchange",
            registry.base_url.trim_end_matches('/')
        ),
    )?;
    let answer = endpoint
        .send(endpoint.client()?.post(url).form(&form))
        .await?;
    if !answer.status.is_success() {
        return Err(answer.refusal(&name, "the Azure AD token"));
    }
    let said = answer.json(&name)?;
    let refresh = field(&said, &name, "refresh_token")?;
    // The refresh token is a JWT whose `exp` says when it ends (ACR's last three hours);
    // read for timing only, and held to the usual bounds by `renew_at`.
    let expires = claim(refresh, "exp")
        .and_then(|e| e.as_u64())
        .map_or(ad.expires, |s| {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s.min(1 << 40))
        });
    Ok(Lease {
        credential: Credential::Basic {
            username: ACR_USER.into(),
            password: Secret::new(refresh),
        },
        renew_at: renew_at(expires),
    })
}

/// A claim of a JWT's payload, unverified: for timing and hints only, never for trust.
fn claim(jwt: &str, name: &str) -> Option<serde_json::Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let said: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    said.get(name).cloned()
}

/// An Azure AD token for ACR from the first link of the chain that has credentials.
pub async fn ad_token(client_id: Option<&str>, vars: &Vars) -> Result<Token, SourceError> {
    let mut tried = Tried::default();
    let tenant = vars.get("AZURE_TENANT_ID");
    let client = client_id.or(vars.get("AZURE_CLIENT_ID"));
    match (tenant, client, vars.get("AZURE_CLIENT_SECRET")) {
        (Some(tenant), Some(client), Some(secret)) => {
            let form = [("client_secret", secret)];
            let from = format!("the service principal {client} (AZURE_CLIENT_SECRET)");
            return client_credentials(vars, tenant, client, &form, from).await;
        }
        (_, _, None) => tried.note("service principal", "AZURE_CLIENT_SECRET unset"),
        _ => tried.note(
            "service principal",
            "AZURE_TENANT_ID or AZURE_CLIENT_ID unset",
        ),
    }
    match (tenant, client, vars.get("AZURE_FEDERATED_TOKEN_FILE")) {
        (Some(tenant), Some(client), Some(file)) => {
            let assertion = std::fs::read_to_string(file).map_err(|e| {
                SourceError::Missing(format!("AZURE_FEDERATED_TOKEN_FILE {file}: {e}"))
            })?;
            let form = [
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.trim()),
            ];
            let from = format!("workload identity ({client}, token file {file})");
            return client_credentials(vars, tenant, client, &form, from).await;
        }
        (_, _, None) => tried.note("workload identity", "AZURE_FEDERATED_TOKEN_FILE unset"),
        _ => tried.note(
            "workload identity",
            "AZURE_TENANT_ID or AZURE_CLIENT_ID unset",
        ),
    }
    match managed_identity(client_id, vars).await {
        Ok(token) => Ok(token),
        Err(why) => {
            tried.note("managed identity", why);
            Err(tried.nothing(
                "Azure",
                "set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or \
                 AZURE_FEDERATED_TOKEN_FILE, or run with a managed identity",
            ))
        }
    }
}

/// Azure AD's client credentials grant, with a secret or a client assertion.
async fn client_credentials(
    vars: &Vars,
    tenant: &str,
    client: &str,
    proof: &[(&str, &str)],
    from: String,
) -> Result<Token, SourceError> {
    if tenant.is_empty()
        || !tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(SourceError::Invalid(format!(
            "AZURE_TENANT_ID `{}` is not a tenant id or domain",
            tenant.chars().take(64).collect::<String>()
        )));
    }
    let authority = vars
        .get("AZURE_AUTHORITY_HOST")
        .unwrap_or("https://login.microsoftonline.com/");
    let url = format!(
        "{}/{tenant}/oauth2/v2.0/token",
        authority.trim_end_matches('/')
    );
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client),
        ("scope", SCOPE),
    ];
    form.extend_from_slice(proof);
    let name = "Azure AD";
    let endpoint = Endpoint::new(name);
    let answer = endpoint
        .send(
            endpoint
                .client()?
                .post(endpoint_url(name, &url)?)
                .form(&form),
        )
        .await?;
    if !answer.status.is_success() {
        return Err(answer.refusal(name, "a token"));
    }
    let said = answer.json(name)?;
    Ok(Token {
        token: Secret::new(field(&said, name, "access_token")?),
        expires: oauth_expiry(&said),
        tenant: Some(tenant.to_string()),
        from,
    })
}

/// A managed identity's token from IMDS.
async fn managed_identity(client_id: Option<&str>, vars: &Vars) -> Result<Token, String> {
    let base = vars
        .get("AZURE_POD_IDENTITY_AUTHORITY_HOST")
        .unwrap_or("http://169.254.169.254")
        .trim_end_matches('/')
        .to_string();
    let endpoint = Endpoint::metadata("IMDS");
    let client = endpoint.client().map_err(|e| e.to_string())?;
    let mut query = vec![("api-version", "2018-02-01"), ("resource", RESOURCE)];
    if let Some(id) = client_id {
        query.push(("client_id", id));
    }
    let request = client
        .get(format!("{base}/metadata/identity/oauth2/token"))
        .query(&query)
        .header("metadata", "true");
    let answer = endpoint.send(request).await.map_err(|e| match e {
        SourceError::Missing(why) => why.trim_start_matches("IMDS ").to_string(),
        other => other.to_string(),
    })?;
    if !answer.status.is_success() {
        return Err(answer.refusal("IMDS", "a token").to_string());
    }
    let said = answer.json("IMDS").map_err(|e| e.to_string())?;
    let token = field(&said, "IMDS", "access_token").map_err(|e| e.to_string())?;
    let tenant = claim(token, "tid").and_then(|t| t.as_str().map(str::to_string));
    let from = match client_id {
        Some(id) => format!("the managed identity {id}"),
        None => "the managed identity".to_string(),
    };
    Ok(Token {
        token: Secret::new(token),
        expires: oauth_expiry(&said),
        tenant,
        from,
    })
}
