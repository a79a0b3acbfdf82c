//! `file:/path`: a file holding `user:password` or a token (trailing newline ignored), or a
//! document (a PEM key) as it is.

use std::path::Path;

use futures_util::future::BoxFuture;

use super::{Credential, Source, SourceError};

pub(super) struct File<'a>(pub &'a Path);

impl File<'_> {
    async fn read(&self) -> Result<String, SourceError> {
        tokio::fs::read_to_string(self.0)
            .await
            .map_err(|e| SourceError::Missing(format!("cannot read {}: {e}", self.0.display())))
    }
}

impl Source for File<'_> {
    fn credential<'a>(
        &'a self,
        _host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, SourceError>> {
        Box::pin(async move { self.read().await.map(|text| Credential::from_text(&text)) })
    }

    fn document(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(self.read())
    }
}
