//! Reading container registries: tags, digests, platforms and creation times, politely.
//!
//! - [`client`]: one client per registry: TLS, credentials, the auth handshake, rate limits,
//!   429 and retry handling; every request goes through it. [`endpoint`]: its settings;
//!   [`budget`]: the registry's own account of its request budget; [`error`]: how a request
//!   fails.
//! - [`api`]: the distribution API calls (tag lists, HEAD for digests, manifests, configs).
//! - [`cache`]: what a digest names, kept forever and across restarts.
//! - [`signatures`]: where cosign attaches what it signs.
//! - [`tokens`]: bearer tokens per scope, one refresh at a time, kept until they expire.
//! - [`auth`], [`manifest`]: wire formats.
//! - [`metrics`]: counters for `/metrics` and the request-count benchmark.
//!
//! One poll of an image (the fewest of these requests that answer "which tag?") is
//! [`crate::poll`]'s; credentials come from [`crate::secrets`], and the default request rate
//! of well-known registries from [`crate::config::limits`].

pub mod api;
pub mod auth;
pub mod budget;
pub mod cache;
pub mod chart;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod manifest;
pub mod metrics;
pub mod signatures;
pub mod tokens;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use api::ImageInfo;
pub use budget::Budget;
pub use cache::MetadataCache;
pub use client::Client;
pub use endpoint::{Endpoint, Tuning};
pub use error::RegistryError;
pub use metrics::{Metrics, RequestKind, Snapshot};
pub use tokens::TokenStore;

use crate::config::{Config, Image};

/// The clients for every registry a config uses, sharing one cache and one set of metrics.
pub struct Registries {
    clients: BTreeMap<String, Client>,
    tuning: Tuning,
    metrics: Arc<Metrics>,
    cache: Arc<MetadataCache>,
    tokens: Arc<TokenStore>,
}

impl Registries {
    pub fn new(tuning: Tuning, metrics: Arc<Metrics>, cache: Arc<MetadataCache>) -> Registries {
        Registries {
            clients: BTreeMap::new(),
            tuning,
            metrics,
            cache,
            tokens: Arc::new(TokenStore::in_memory()),
        }
    }

    /// Every client keeps its tokens in `tokens` (the state dir's, for the daemon and `once`).
    pub fn with_tokens(mut self, tokens: Arc<TokenStore>) -> Registries {
        self.tokens = tokens;
        self
    }

    /// Clients for the config's registries and for every other host its images use.
    pub fn from_config(
        config: &Config,
        tuning: Tuning,
        metrics: Arc<Metrics>,
        cache: Arc<MetadataCache>,
        tokens: Arc<TokenStore>,
    ) -> Result<Registries, RegistryError> {
        let mut registries = Registries::new(tuning, metrics, cache).with_tokens(tokens);
        for r in config.registries.values() {
            registries.add(Endpoint::from_config(r))?;
        }
        for image in config.images.values() {
            // A chart repository's charts are read from its index, not a registry.
            if matches!(image.source, crate::config::Source::ChartIndex(_)) {
                continue;
            }
            if image.registry.is_none() {
                let host = image.reference.registry().to_string();
                if !registries.clients.contains_key(&host) {
                    registries.add(Endpoint::anonymous(&host))?;
                }
            }
        }
        Ok(registries)
    }

    pub fn add(&mut self, endpoint: Endpoint) -> Result<Client, RegistryError> {
        let name = endpoint.name.clone();
        let client = Client::with_tokens(
            endpoint,
            self.tuning.clone(),
            self.metrics.clone(),
            self.cache.clone(),
            self.tokens.clone(),
        )?;
        self.clients.insert(name, client.clone());
        Ok(client)
    }

    /// The client an image is read through.
    pub fn for_image(&self, image: &Image) -> Option<&Client> {
        self.clients.get(&image.registry_key())
    }

    /// The registries that were down at their last request, by name (an image's lane).
    pub fn down(&self) -> impl Iterator<Item = (&str, &Client)> {
        self.clients
            .iter()
            .filter(|(_, c)| c.is_down())
            .map(|(name, c)| (name.as_str(), c))
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn cache(&self) -> &Arc<MetadataCache> {
        &self.cache
    }
}
