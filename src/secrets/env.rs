//! `env:NAME`: an environment variable holding `user:password` or a token (or a document).

use futures_util::future::BoxFuture;

use super::{Credential, Source, SourceError};

pub(super) struct Env<'a>(pub &'a str);

impl Env<'_> {
    fn read(&self) -> Result<String, SourceError> {
        std::env::var(self.0).map_err(|_| {
            SourceError::Missing(format!("environment variable {} is not set", self.0))
        })
    }
}

impl Source for Env<'_> {
    fn credential<'a>(
        &'a self,
        _host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, SourceError>> {
        Box::pin(async move { self.read().map(|v| Credential::from_text(&v)) })
    }

    fn document(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(async move { self.read() })
    }
}
