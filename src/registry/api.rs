//! The distribution API calls we make: list tags, resolve a tag to a digest, and learn what a
//! digest is (its platforms and creation time), through the metadata cache.

// Numbers here come from registries, webhook senders and clocks: no arithmetic that can
// overflow or panic; every operation is checked or saturating.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;

use super::cache::Entry;
use super::client::{Client, RegistryError, Reply};
use super::manifest::{self, Manifest};
use super::metrics::RequestKind;
use crate::reference::Platform;

/// What a manifest digest offers for the platforms asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageInfo {
    /// Every platform is there; `created` is the first platform's image's creation time;
    /// `source` the repository the image says it was built from (the index's annotation, else
    /// that image's).
    Available {
        created: Option<jiff::Timestamp>,
        source: Option<String>,
    },
    /// The image lacks this platform.
    MissingPlatform(String),
}

impl Client {
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.endpoint().base_url)
    }

    pub(super) fn expect_ok(
        &self,
        reply: &Reply,
        what: impl Into<String>,
    ) -> Result<(), RegistryError> {
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
                registry: self.name().to_string(),
                what: what.into(),
            }),
            StatusCode::FORBIDDEN => Err(RegistryError::Unauthorized {
                registry: self.name().to_string(),
                repository: what.into(),
                detail: "forbidden (403)".into(),
            }),
            s => Err(self.error_invalid(format!(
                "unexpected status {} for {}",
                s.as_u16(),
                what.into()
            ))),
        }
    }

    /// Every tag of `repository`, following `Link` pagination to the last page (some registries
    /// return tags oldest first, so stopping early would miss the newest). A page that is not
    /// a complete tag list is an error, never an empty or partial answer.
    pub async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        let mut url = format!(
            "{}?n={}",
            self.url(&format!("{repository}/tags/list")),
            self.tuning().page_size
        );
        let mut seen_urls = HashSet::new();
        let mut seen_tags = HashSet::new();
        let mut tags = Vec::new();
        let tuning = self.tuning().clone();
        let mut bytes = 0usize;
        loop {
            if !seen_urls.insert(url.clone()) {
                return Err(
                    self.error_invalid(format!("tag list pagination of {repository} loops"))
                );
            }
            if seen_urls.len() > tuning.max_pages as usize {
                return Err(self.error_invalid(format!(
                    "tag list of {repository} runs past {} pages; giving up on it",
                    tuning.max_pages
                )));
            }
            // The first page is asked for conditionally when it was the whole list last time
            // and came with an ETag: a registry that keeps it answers 304 and nothing else.
            let first = seen_urls.len() == 1;
            let known = first.then(|| self.listed(&url)).flatten();
            let reply = self
                .get_if(
                    RequestKind::TagList,
                    &url,
                    repository,
                    &[],
                    known.as_ref().map(|(etag, _)| etag.as_str()),
                )
                .await?;
            if reply.status == reqwest::StatusCode::NOT_MODIFIED {
                if let Some((_, tags)) = known {
                    return Ok(tags.to_vec());
                }
                return Err(self.error_invalid(format!(
                    "tag list of {repository}: 304 to a request that was not conditional"
                )));
            }
            self.expect_ok(&reply, format!("repository {repository}"))?;
            bytes = bytes.saturating_add(reply.body.len());
            if bytes > tuning.max_tag_list_bytes {
                return Err(self.error_invalid(format!(
                    "tag list of {repository} is larger than {} bytes; giving up on it",
                    tuning.max_tag_list_bytes
                )));
            }
            let page: Value = serde_json::from_slice(&reply.body).map_err(|e| {
                self.error_invalid(format!("tag list of {repository} is not valid JSON: {e}"))
            })?;
            let list = match page.get("tags") {
                Some(Value::Array(list)) => list.as_slice(),
                Some(Value::Null) => &[],
                _ => {
                    return Err(
                        self.error_invalid(format!("tag list of {repository} has no `tags` array"))
                    );
                }
            };
            for tag in list {
                let tag = tag.as_str().ok_or_else(|| {
                    self.error_invalid(format!(
                        "tag list of {repository} has a tag that is not a string"
                    ))
                })?;
                if seen_tags.insert(tag.to_string()) {
                    tags.push(tag.to_string());
                }
                if tags.len() > tuning.max_tags {
                    return Err(self.error_invalid(format!(
                        "{repository} has more than {} tags; giving up on it (ignore_tags cannot help: every tag is listed)",
                        tuning.max_tags
                    )));
                }
            }
            match reply.header("link").and_then(next_link) {
                Some(next) => {
                    let joined = reqwest::Url::parse(&self.endpoint().base_url)
                        .and_then(|base| base.join(&next))
                        .map_err(|_| {
                            self.error_invalid(format!("bad Link header `{}`", next.escape_debug()))
                        })?;
                    // The next page, and the credentials that go with it, stay on the
                    // registry's own origin.
                    if !self.same_origin(&joined) {
                        return Err(self.error_invalid(format!(
                            "tag list of {repository} links to another origin ({}); not followed",
                            joined.origin().ascii_serialization()
                        )));
                    }
                    url = joined.to_string();
                }
                None => {
                    let single = seen_urls.len() == 1;
                    let first_url = format!(
                        "{}?n={}",
                        self.url(&format!("{repository}/tags/list")),
                        tuning.page_size
                    );
                    let etag = reply.header("etag").filter(|_| single);
                    self.remember_listed(&first_url, etag, &tags);
                    return Ok(tags);
                }
            }
        }
    }

    /// The digest `reference` (a tag) points to now, by HEAD: cheap, and not counted as a pull
    /// by Docker Hub. Falls back to GET for registries that omit `Docker-Content-Digest`.
    pub async fn resolve(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<String, RegistryError> {
        let url = self.url(&format!("{repository}/manifests/{reference}"));
        let reply = self
            .get(
                RequestKind::ManifestHead,
                &url,
                repository,
                manifest::ACCEPT,
            )
            .await?;
        self.expect_ok(&reply, format!("{repository}:{reference}"))?;
        if let Some(digest) = reply.header("docker-content-digest") {
            if !crate::reference::is_valid_digest(digest) {
                return Err(self.error_invalid(format!(
                    "{repository}:{reference}: Docker-Content-Digest `{}` is not a digest",
                    digest.escape_debug()
                )));
            }
            return Ok(digest.to_string());
        }
        let reply = self
            .get(RequestKind::ManifestGet, &url, repository, manifest::ACCEPT)
            .await?;
        self.expect_ok(&reply, format!("{repository}:{reference}"))?;
        Ok(manifest::sha256_digest(&reply.body))
    }

    /// The digest `tag` names now, by a GET of its manifest rather than a HEAD: for a tag just
    /// pushed, whose content is new, the manifest is needed anyway, so one request answers
    /// both (and its config blob is fetched as [`Client::image_info`] would). The digest is
    /// the body's own; a `Docker-Content-Digest` that disagrees is an error.
    pub async fn resolve_fetching(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<String, RegistryError> {
        let url = self.url(&format!("{repository}/manifests/{tag}"));
        let reply = self
            .get(RequestKind::ManifestGet, &url, repository, manifest::ACCEPT)
            .await?;
        self.expect_ok(&reply, format!("{repository}:{tag}"))?;
        let digest = match reply.header("docker-content-digest") {
            Some(said) if said.starts_with("sha256:") => {
                manifest::verify(&reply.body, said)
                    .map_err(|e| self.error_invalid(format!("manifest {repository}:{tag}: {e}")))?;
                said.to_string()
            }
            _ => manifest::sha256_digest(&reply.body),
        };
        if self.cache().get(&digest).is_none() {
            let entry = self.describe(repository, &digest, &reply).await?;
            self.cache().insert(&digest, entry);
        }
        Ok(digest)
    }

    /// What `digest` is, from the cache or the registry (manifest, then config blob).
    async fn entry(&self, repository: &str, digest: &str) -> Result<Entry, RegistryError> {
        if let Some(entry) = self.cache().get(digest) {
            self.metrics().cache(true);
            return Ok(entry);
        }
        self.metrics().cache(false);
        let url = self.url(&format!("{repository}/manifests/{digest}"));
        let reply = self
            .get(RequestKind::ManifestGet, &url, repository, manifest::ACCEPT)
            .await?;
        self.expect_ok(&reply, format!("{repository}@{digest}"))?;
        manifest::verify(&reply.body, digest)
            .map_err(|e| self.error_invalid(format!("manifest {repository}@{digest}: {e}")))?;
        let entry = self.describe(repository, digest, &reply).await?;
        self.cache().insert(digest, entry.clone());
        Ok(entry)
    }

    /// What the manifest `digest` in `reply` is: an index's platforms, or an image's config
    /// (fetched).
    async fn describe(
        &self,
        repository: &str,
        digest: &str,
        reply: &Reply,
    ) -> Result<Entry, RegistryError> {
        let parsed = manifest::parse(&reply.body, reply.header("content-type"))
            .map_err(|e| self.error_invalid(format!("{repository}@{digest}: {e}")))?;
        let entry = match parsed {
            Manifest::Index { entries, source } => Entry::Index {
                entries,
                source: source.map(Into::into),
            },
            Manifest::Image { config, source } => {
                let url = self.url(&format!("{repository}/blobs/{config}"));
                let reply = self
                    .get(RequestKind::BlobGet, &url, repository, &[])
                    .await?;
                self.expect_ok(&reply, format!("config {config} of {repository}"))?;
                manifest::verify(&reply.body, &config).map_err(|e| {
                    self.error_invalid(format!("config {config} of {repository}: {e}"))
                })?;
                let c = manifest::parse_config(&reply.body).map_err(|e| {
                    self.error_invalid(format!("config {config} of {repository}: {e}"))
                })?;
                Entry::Image {
                    created: c.created,
                    platform: c.platform,
                    // The manifest's annotation first, then the config's label.
                    source: source.or(c.source).map(Into::into),
                }
            }
        };
        Ok(entry)
    }

    /// Whether `digest` provides every platform in `platforms`, and when its image was built.
    pub async fn image_info(
        &self,
        repository: &str,
        digest: &str,
        platforms: &[Platform],
    ) -> Result<ImageInfo, RegistryError> {
        match self.entry(repository, digest).await? {
            Entry::Index { entries, source } => {
                let mut created = None;
                let mut source = source.map(String::from);
                for (i, wanted) in platforms.iter().enumerate() {
                    let Some(entry) = entries.iter().find(|e| {
                        e.platform
                            .as_deref()
                            .is_some_and(|p| manifest::platform_matches(p, wanted))
                    }) else {
                        return Ok(ImageInfo::MissingPlatform(wanted.to_string()));
                    };
                    if i == 0 {
                        created = match Box::pin(self.entry(repository, &entry.digest)).await? {
                            Entry::Image {
                                created,
                                source: image_source,
                                ..
                            } => {
                                source = source.or(image_source.map(String::from));
                                created
                            }
                            Entry::Index { .. } => {
                                return Err(self.error_invalid(format!(
                                    "{repository}@{digest}: an index inside an index"
                                )));
                            }
                        };
                    }
                }
                Ok(ImageInfo::Available { created, source })
            }
            Entry::Image {
                created,
                platform,
                source,
            } => {
                // A single-platform image: it must be the only platform asked for.
                if let Some(p) = &platform
                    && let Some(missing) =
                        platforms.iter().find(|w| !manifest::platform_matches(p, w))
                {
                    return Ok(ImageInfo::MissingPlatform(missing.to_string()));
                }
                Ok(ImageInfo::Available {
                    created,
                    source: source.map(String::from),
                })
            }
        }
    }
}

/// The target of `rel="next"` in a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            p.trim()
                .replace(' ', "")
                .eq_ignore_ascii_case("rel=\"next\"")
                || p.trim().eq_ignore_ascii_case("rel=next")
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/org/app/tags/list?last=v1.2&n=100>; rel="next""#).as_deref(),
            Some("/v2/org/app/tags/list?last=v1.2&n=100")
        );
        assert_eq!(
            next_link(r#"<https://r/prev>; rel="prev", <https://r/next>; rel=next"#).as_deref(),
            Some("https://r/next")
        );
        assert_eq!(next_link(r#"<https://r/x>; rel="last""#), None);
    }
}
