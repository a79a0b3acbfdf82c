//! One poll of one image in one environment: gather candidates from the registry and choose,
//! making no request the answer does not need.
//!
//! A [`Cycle`] is shared by everything polled in one cycle, so a repository used by three
//! environments is listed once and each tag is resolved to a digest once. Semver, alphabetical
//! and numerical choices need only the tag list; newest-build needs each filtered tag's creation
//! time (cached by digest); and the winner is always checked for the platforms asked for,
//! choosing again if it lacks one.
//!
//! A cycle a push event started also knows what the event said ([`Cycle::with_pushes`]): the
//! pushed tag, so the tags listed a little while ago can stand in for a listing, and its
//! digest, which says whether the content is new (then the manifest is fetched by tag, one
//! request where a HEAD and a GET by digest are two).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::charts::{ChartEntry, ChartRepository, RepositoryError};
use crate::config::{Image, Source};
use crate::reference::Platform;
use crate::registry::{Client, ImageInfo, RegistryError, chart};
use crate::select::{self, Barred, Candidate, Policy, Selection, Strategy, Unavailable};
use crate::verify::{Verdict, VerifyError};

/// A result computed once and shared by everyone who asked for it during the cycle.
type Shared<T, E = RegistryError> = Arc<OnceCell<Result<T, E>>>;
/// A chart repository's charts, by name.
type Charts = Arc<HashMap<String, Vec<ChartEntry>>>;
/// (registry, repository) and (registry, repository, tag).
type RepoKey = (String, String);
type TagKey = (String, String, String);

/// A tag a registry's push event reported, and the digest the event said it was pushed as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedTag {
    pub tag: String,
    pub digest: Option<String>,
}

/// How a tag's digest is asked for.
#[derive(Debug, Clone, Copy)]
enum Resolve {
    /// By a HEAD.
    Polled,
    /// A tag a push event reported: by a GET of its manifest when `fetching` (its content is
    /// new here), else a HEAD; asked again after [`PUSHED_TAG_WAITS`] while not found.
    Pushed { fetching: bool },
}

/// The waits before a pushed tag not found yet is asked for again: a registry may report a
/// push a moment before the tag names it.
const PUSHED_TAG_WAITS: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(300),
    std::time::Duration::from_millis(900),
];

/// Memoizes listings and tag resolutions for the duration of one poll cycle.
#[derive(Default)]
pub struct Cycle {
    tags: Mutex<HashMap<RepoKey, Shared<Arc<Vec<String>>>>>,
    digests: Mutex<HashMap<TagKey, Shared<String>>>,
    /// Chart repositories' indexes, by url.
    indexes: Mutex<HashMap<String, Shared<Charts, RepositoryError>>>,
    /// What push events reported for the repositories this cycle checks, by (registry,
    /// repository).
    pushed: HashMap<RepoKey, Vec<PushedTag>>,
}

impl Cycle {
    pub fn new() -> Cycle {
        Cycle::default()
    }

    /// A cycle that knows what push events said of some repositories, by (registry name,
    /// repository): see [`Cycle::assumed_tags`]. A pushed tag is always asked for, by a GET of
    /// its manifest when its content is new here.
    pub fn with_pushes(pushed: HashMap<(String, String), Vec<PushedTag>>) -> Cycle {
        Cycle {
            pushed,
            ..Cycle::default()
        }
    }

    /// The tags push events reported for `repository` to this cycle.
    pub fn pushed(&self, client: &Client, repository: &str) -> &[PushedTag] {
        // A poll's cycle has none: it builds no key for each tag it resolves.
        if self.pushed.is_empty() {
            return &[];
        }
        self.pushed
            .get(&(client.name().to_string(), repository.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The tags of `repository` without asking the registry, when a push event reported
    /// tags of it: the list the registry gave a little while ago
    /// ([`Client::recent_tags`]), with the pushed tags. `None` when no tag was reported or no
    /// recent list is known. The list may be stale, so a choice made from it stands only when
    /// a pushed tag wins (the caller's rule): a tag it lacks was pushed since (and its own
    /// event, or the next poll, brings it); a tag it still has but the registry deleted could
    /// only matter by winning, and then the tags are listed again.
    pub fn assumed_tags(&self, client: &Client, repository: &str) -> Option<Arc<Vec<String>>> {
        let pushed = self.pushed(client, repository);
        if pushed.is_empty() {
            return None;
        }
        let recent = client.recent_tags(repository)?;
        let mut tags = recent.to_vec();
        for p in pushed {
            if !tags.contains(&p.tag) {
                tags.push(p.tag.clone());
            }
        }
        Some(Arc::new(tags))
    }

    /// The tag list of `repository`, fetched once per cycle however many ask.
    pub async fn tags(
        &self,
        client: &Client,
        repository: &str,
    ) -> Result<Arc<Vec<String>>, RegistryError> {
        let cell = self
            .tags
            .lock()
            .expect("cycle lock")
            .entry((client.name().to_string(), repository.to_string()))
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            let tags = client.list_tags(repository).await.map(Arc::new)?;
            client.remember_tags(repository, &tags);
            Ok(tags)
        })
        .await
        .clone()
    }

    /// [`Cycle::digest`], except for a tag a push event reported: it may have moved, so what
    /// earlier polls learned of it is not reused, and when its content is new here (the
    /// event's digest unknown to the metadata cache, or not said) its manifest is fetched by
    /// tag, one request for the digest and for the manifest the check reads next, where a
    /// HEAD and a GET by digest are two. Either way the digest is what the registry says the
    /// tag names now: the event's digest only tells which request to make.
    async fn digest_now(
        &self,
        client: &Client,
        repository: &str,
        tag: &str,
        reuse: bool,
    ) -> Result<String, RegistryError> {
        let pushed = self.pushed(client, repository);
        let Some(pushed) = pushed.iter().rev().find(|p| p.tag == tag) else {
            return self.digest(client, repository, tag, reuse).await;
        };
        let known = pushed
            .digest
            .as_deref()
            .is_some_and(|d| client.cache().get(d).is_some());
        self.resolved(
            client,
            repository,
            tag,
            Resolve::Pushed { fetching: !known },
        )
        .await
    }

    /// The digest `tag` points to, resolved once per cycle; with `reuse`, what an earlier
    /// poll learned of the tag serves without a request.
    pub async fn digest(
        &self,
        client: &Client,
        repository: &str,
        tag: &str,
        reuse: bool,
    ) -> Result<String, RegistryError> {
        if reuse && let Some(digest) = client.cache().tag(client.name(), repository, tag) {
            return Ok(digest);
        }
        self.resolved(client, repository, tag, Resolve::Polled)
            .await
    }

    /// What `tag` names now, asked once per cycle and learned for later polls.
    async fn resolved(
        &self,
        client: &Client,
        repository: &str,
        tag: &str,
        how: Resolve,
    ) -> Result<String, RegistryError> {
        let cell = self
            .digests
            .lock()
            .expect("cycle lock")
            .entry((
                client.name().to_string(),
                repository.to_string(),
                tag.to_string(),
            ))
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            let mut waits = PUSHED_TAG_WAITS.iter();
            let digest = loop {
                let asked = match how {
                    Resolve::Pushed { fetching: true } => {
                        client.resolve_fetching(repository, tag).await
                    }
                    _ => client.resolve(repository, tag).await,
                };
                match (asked, how, waits.next()) {
                    // Distribution sends a manifest's push event before it links the tag to
                    // it: a pushed tag not found yet is asked for again, a little later.
                    (Err(RegistryError::NotFound { .. }), Resolve::Pushed { .. }, Some(wait)) => {
                        tokio::time::sleep(*wait).await;
                    }
                    (asked, ..) => break asked?,
                }
            };
            client
                .cache()
                .learn_tag(client.name(), repository, tag, &digest);
            Ok(digest)
        })
        .await
        .clone()
    }

    /// The charts `repository`'s index lists, asked for once per cycle however many charts
    /// of it are polled (and, unchanged since the last cycle, answered by a 304).
    pub async fn index(
        &self,
        repository: &ChartRepository,
        wanted: &std::collections::BTreeSet<String>,
    ) -> Result<Charts, RepositoryError> {
        let cell = self
            .indexes
            .lock()
            .expect("cycle lock")
            .entry(repository.url().to_string())
            .or_default()
            .clone();
        cell.get_or_init(|| repository.charts(wanted)).await.clone()
    }

    /// What `tag` was last known to name (this cycle, or an earlier poll), without a request.
    pub fn remembered_digest(
        &self,
        client: &Client,
        repository: &str,
        tag: &str,
    ) -> Option<String> {
        let key = (
            client.name().to_string(),
            repository.to_string(),
            tag.to_string(),
        );
        let this_cycle = self
            .digests
            .lock()
            .expect("cycle lock")
            .get(&key)
            .and_then(|cell| cell.get().and_then(|r| r.as_ref().ok().cloned()));
        this_cycle.or_else(|| client.cache().tag(client.name(), repository, tag))
    }
}

/// The tag a version is pushed under: an image's tag is itself; an OCI chart's version
/// `1.2.3+build.1` is the tag `1.2.3_build.1`, as Helm writes it.
pub fn registry_tag(image: &Image, version: &str) -> String {
    match image.source {
        Source::OciChart => chart::tag_of_version(version),
        _ => version.to_string(),
    }
}

/// The names a repository's tags offer to a policy: the tags of an image; the versions of
/// a chart (tags that name none are not charts Helm pushed, and are left out).
pub fn offered(policy: &Policy, tags: &[String]) -> Vec<String> {
    let signature = crate::registry::signatures::is_signature_tag;
    match policy.names {
        select::Names::ImageTags => tags.iter().filter(|t| !signature(t)).cloned().collect(),
        select::Names::ChartVersions => tags
            .iter()
            .filter(|t| !signature(t))
            .filter_map(|t| chart::version_of_tag(t))
            .collect(),
    }
}

/// The outcome of a poll: every candidate with its verdict, and the winner's digest.
#[derive(Debug, Clone)]
pub struct Choice {
    pub candidates: Vec<Candidate>,
    pub selection: Selection,
    pub digest: Option<String>,
    /// The repository the winner says it was built from.
    pub source: Option<String>,
    /// Tags that won but whose digest failed the `verify` rules, and why, best first.
    pub unverified: Vec<(String, String)>,
}

impl Choice {
    pub fn selected(&self) -> Option<&Candidate> {
        self.selection.selected.map(|i| &self.candidates[i])
    }
}

/// How many digests one poll verifies, walking down the ranked candidates until one passes the
/// `verify` rules. An unsigned build costs four requests on a registry without the referrers
/// API (the tag's HEAD, the API's 404, the referrers tag schema's index, cosign's tag), three
/// on one with it, plus a manifest and a config the first time its digest is seen; a refusal is
/// remembered per digest ([`crate::verify::REFUSED_TTL`]), so a later poll walks past it
/// without a request and goes on below. The budget bounds what one poll spends when a
/// repository has many unsigned builds above its last signed release.
pub const MAX_VERIFIED_PER_POLL: usize = 64;

/// How many metadata lookups run at once for one image.
const PARALLEL_LOOKUPS: usize = 8;

/// Why a tag cannot be chosen yet, or `None`.
pub type NotYet = dyn Fn(&Candidate) -> Option<String> + Send + Sync;

/// Deploy-safety rules that take tags out of the running before the policy chooses.
#[derive(Default)]
pub struct Gate<'a> {
    /// Why a tag cannot be chosen yet (too young), or `None`.
    pub not_yet: Option<&'a NotYet>,
    /// `not_yet` reads creation times, so every filtered tag must be described.
    pub needs_created: bool,
    /// A tag a person reverted, and the reason to show: it and everything below it are held.
    pub held: Option<(&'a str, &'a str)>,
    /// Tags keep their digest (`tags = "immutable"`): a digest learned for a tag in an earlier
    /// poll is reused instead of asked for again. Never for the tag the digest strategy
    /// follows, and never for the winner when `verify` applies: what is verified is what the
    /// tag names at decision time.
    pub reuse_digests: bool,
    /// Signatures the winner's digest must carry ([`crate::verify`]): a winner without them is
    /// marked, and the choice is made again.
    pub verify: Option<(&'a crate::verify::Verifier, &'a crate::config::Verification)>,
}

/// Polls `repository` and chooses a tag under `policy` for `platforms`.
pub async fn choose(
    client: &Client,
    cycle: &Cycle,
    repository: &str,
    policy: &Policy,
    platforms: &[Platform],
) -> Result<Choice, RegistryError> {
    choose_gated(
        client,
        cycle,
        repository,
        policy,
        platforms,
        &Gate::default(),
    )
    .await
}

/// [`choose`], with deploy-safety rules applied to the candidates first.
pub async fn choose_gated(
    client: &Client,
    cycle: &Cycle,
    repository: &str,
    policy: &Policy,
    platforms: &[Platform],
    gate: &Gate<'_>,
) -> Result<Choice, RegistryError> {
    let tags = cycle.tags(client, repository).await?;
    choose_among(client, cycle, repository, &tags, policy, platforms, gate).await
}

/// [`choose_gated`] among `tags`, listed by the caller.
pub async fn choose_among(
    client: &Client,
    cycle: &Cycle,
    repository: &str,
    tags: &[String],
    policy: &Policy,
    platforms: &[Platform],
    gate: &Gate<'_>,
) -> Result<Choice, RegistryError> {
    let mut candidates: Vec<Candidate> = offered(policy, tags)
        .into_iter()
        .map(Candidate::new)
        .collect();
    // The tag the digest strategy follows is mutable by definition.
    let reuse = gate.reuse_digests && !matches!(policy.strategy, Strategy::Digest { .. });
    if policy.strategy.needs_created()
        || gate.needs_created
        || matches!(policy.strategy, Strategy::Digest { .. })
    {
        describe(
            client,
            cycle,
            repository,
            policy,
            platforms,
            &mut candidates,
            reuse,
        )
        .await?;
    }
    gate.bar(policy, &mut candidates);
    // Check the winner's platforms (and signatures); a winner that lacks one is marked and
    // the choice is made again. Each check is a HEAD plus, once per digest ever, a manifest
    // and a config.
    let mut unverified = Vec::new();
    let mut verified_this_poll = 0usize;
    loop {
        let selection = select::select(policy, &candidates);
        let Some(i) = selection.selected else {
            return Ok(Choice {
                candidates,
                selection,
                digest: None,
                source: None,
                unverified,
            });
        };
        if let Some((verifier, rules)) = gate.verify {
            // Below the best candidate, a digest refused a little while ago is skipped without
            // a request (the digest remembered for an immutable tag; a stale one only hides a
            // tag, it never lets one through). The best is always checked again: a signature
            // pushed after its image counts on the next poll.
            if !unverified.is_empty() && reuse {
                let known = match candidates[i].digest.clone() {
                    Some(d) => Some(d),
                    None => cycle.remembered_digest(
                        client,
                        repository,
                        &tag_for(policy, &candidates[i].tag),
                    ),
                };
                if let Some(known) = known {
                    let refused = verifier
                        .refused(client, repository, &known, rules)
                        .await
                        .map_err(|e| verify_error(client, e))?;
                    if let Some(why) = refused {
                        unverified.push((candidates[i].tag.clone(), why.clone()));
                        candidates[i].unavailable = Some(Unavailable::new(Barred::Unverified, why));
                        continue;
                    }
                }
            }
            if verified_this_poll >= MAX_VERIFIED_PER_POLL {
                // The rest wait for the next poll, which walks past this poll's refusals.
                for c in candidates.iter_mut().filter(|c| c.unavailable.is_none()) {
                    c.unavailable = Some(Unavailable::new(
                        Barred::Unverified,
                        format!(
                            "not checked yet: this poll verified {MAX_VERIFIED_PER_POLL} digests above it; the next goes on below them"
                        ),
                    ));
                }
                continue;
            }
        }
        // The digest that is verified must be the one the tag names now: a digest remembered
        // from an earlier poll (`tags = "immutable"`) may have been pushed over since, and
        // verifying it would let the new, unsigned content through under the old signature.
        let digest = match candidates[i].digest.clone() {
            Some(d) if gate.verify.is_none() => d,
            _ => {
                cycle
                    .digest_now(
                        client,
                        repository,
                        &tag_for(policy, &candidates[i].tag),
                        reuse && gate.verify.is_none(),
                    )
                    .await?
            }
        };
        match info(client, repository, &digest, policy, platforms).await? {
            ImageInfo::Available { created, source } => {
                if let Some((verifier, rules)) = gate.verify {
                    verified_this_poll = verified_this_poll.saturating_add(1);
                    match verifier
                        .check(client, repository, &digest, rules)
                        .await
                        .map_err(|e| verify_error(client, e))?
                    {
                        Verdict::Verified(by) => {
                            tracing::debug!(%repository, %digest, "{by}");
                        }
                        Verdict::Rejected(why) => {
                            tracing::debug!(%repository, tag = %candidates[i].tag, %digest, "not eligible: {why}");
                            unverified.push((candidates[i].tag.clone(), why.clone()));
                            candidates[i].unavailable =
                                Some(Unavailable::new(Barred::Unverified, why));
                            continue;
                        }
                    }
                }
                let winner = &mut candidates[i];
                winner.digest = Some(digest.clone());
                winner.created = winner.created.or(created);
                return Ok(Choice {
                    candidates,
                    selection,
                    digest: Some(digest),
                    source,
                    unverified,
                });
            }
            ImageInfo::MissingPlatform(p) => {
                candidates[i].unavailable = Some(Unavailable::new(
                    Barred::Platform,
                    format!("image has no {p} platform"),
                ));
            }
        }
    }
}

impl Gate<'_> {
    /// Marks the candidates the safety rules keep out: too young, or held at or below a
    /// reverted tag.
    fn bar(&self, policy: &Policy, candidates: &mut [Candidate]) {
        if let Some(not_yet) = self.not_yet {
            for c in candidates.iter_mut().filter(|c| c.unavailable.is_none()) {
                c.unavailable = not_yet(c).map(|why| Unavailable::new(Barred::TooYoung, why));
            }
        }
        if let Some((tag, reason)) = self.held {
            select::hold_at_or_below(policy, candidates, tag, reason);
        }
    }
}

/// Chooses a version of the chart `name` from a chart repository's index under `policy`.
/// The index says each version's packaging time and digest, so nothing else is asked; a
/// chart repository has no signatures to check (`verify` is for OCI charts).
pub async fn choose_indexed(
    cycle: &Cycle,
    repository: &ChartRepository,
    wanted: &std::collections::BTreeSet<String>,
    name: &str,
    allow_deprecated: bool,
    policy: &Policy,
    gate: &Gate<'_>,
) -> Result<Choice, RepositoryError> {
    let charts = cycle.index(repository, wanted).await?;
    let entries = charts.get(name).map(Vec::as_slice).unwrap_or_default();
    let mut candidates = crate::charts::candidates(entries, allow_deprecated);
    gate.bar(policy, &mut candidates);
    let selection = select::select(policy, &candidates);
    let digest = selection
        .selected
        .and_then(|i| candidates[i].digest.clone());
    Ok(Choice {
        candidates,
        selection,
        digest,
        source: None,
        unverified: Vec::new(),
    })
}

/// The registry tag of a candidate's name under `policy` (see [`registry_tag`]).
fn tag_for(policy: &Policy, name: &str) -> String {
    match policy.names {
        select::Names::ChartVersions => chart::tag_of_version(name),
        select::Names::ImageTags => name.to_string(),
    }
}

/// What the registry says of `digest`: an image's creation time and platforms, or a chart's
/// packaging time (a chart has no platforms).
async fn info(
    client: &Client,
    repository: &str,
    digest: &str,
    policy: &Policy,
    platforms: &[Platform],
) -> Result<ImageInfo, RegistryError> {
    match policy.names {
        select::Names::ImageTags => client.image_info(repository, digest, platforms).await,
        select::Names::ChartVersions => {
            let (created, source) = client.chart_created(repository, digest).await?;
            Ok(ImageInfo::Available { created, source })
        }
    }
}

/// A verification that could not be made is the image's error this cycle: never a pass.
fn verify_error(client: &Client, e: VerifyError) -> RegistryError {
    match e {
        VerifyError::Registry(e) => e,
        other => RegistryError::Setup {
            registry: client.name().to_string(),
            detail: other.to_string(),
        },
    }
}

/// Fills in digests and creation times for the candidates that pass the tag filters, a few
/// lookups at a time (the registry's rate limit still applies to each request).
async fn describe(
    client: &Client,
    cycle: &Cycle,
    repository: &str,
    policy: &Policy,
    platforms: &[Platform],
    candidates: &mut [Candidate],
    reuse: bool,
) -> Result<(), RegistryError> {
    let wanted: Vec<(usize, String)> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| select::filter(policy, &c.tag).is_ok())
        .map(|(i, c)| (i, c.tag.clone()))
        .collect();
    let mut lookups = futures_util::stream::iter(wanted)
        .map(|(i, tag)| async move {
            let digest = cycle
                .digest_now(client, repository, &tag_for(policy, &tag), reuse)
                .await?;
            let info = info(client, repository, &digest, policy, platforms).await?;
            Ok::<_, RegistryError>((i, digest, info))
        })
        .buffer_unordered(PARALLEL_LOOKUPS);
    while let Some(result) = lookups.next().await {
        let (i, digest, info) = result?;
        let c = &mut candidates[i];
        c.digest = Some(digest);
        match info {
            ImageInfo::Available { created, .. } => c.created = created,
            ImageInfo::MissingPlatform(p) => {
                c.unavailable = Some(Unavailable::new(
                    Barred::Platform,
                    format!("image has no {p} platform"),
                ))
            }
        }
    }
    Ok(())
}
