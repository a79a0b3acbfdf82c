//! How a registry request fails, for every module that asks a registry something.

use std::time::Duration;

use crate::secrets::CredentialError;

/// Why a registry request failed. Messages name the registry and never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry}: unreachable after {attempts} attempts: {detail}")]
    Unreachable {
        registry: String,
        attempts: u32,
        detail: String,
    },
    #[error("registry {registry}: server error {status} after {attempts} attempts")]
    Server {
        registry: String,
        status: u16,
        attempts: u32,
    },
    #[error("registry {registry}: rate limited (429){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        registry: String,
        retry_after: Option<Duration>,
    },
    #[error(
        "registry {registry}: pull budget nearly spent ({remaining} of {limit} left); not fetching more manifests until it recovers"
    )]
    BudgetExhausted {
        registry: String,
        remaining: u64,
        limit: u64,
    },
    #[error("registry {registry}: access to {repository} denied: {detail}")]
    Unauthorized {
        registry: String,
        repository: String,
        detail: String,
    },
    #[error("registry {registry}: {what} not found")]
    NotFound { registry: String, what: String },
    #[error("registry {registry}: invalid response: {detail}")]
    InvalidResponse { registry: String, detail: String },
    #[error("registry {registry}: {source}")]
    Credentials {
        registry: String,
        source: CredentialError,
    },
    #[error("registry {registry}: {detail}")]
    Setup { registry: String, detail: String },
}
