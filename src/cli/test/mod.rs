//! `image-updater test IMAGE`: preview which tag a policy selects, and why every other tag was
//! rejected, before putting the policy into the config.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::sync::Arc;

use image_updater::config::{self, CredentialRef};
use image_updater::poll::{self, Cycle};
use image_updater::reference::{Platform, Reference};
use image_updater::registry::{Client, Endpoint, MetadataCache, Tuning};
use image_updater::select::{
    self, Candidate, Constraint, Extract, Policy, Selection, Strategy, StrategyKind, TagPattern,
};
use serde::Serialize;

mod configured;

use super::Outcome;
use super::terminal::safe;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image, e.g. `ghcr.io/org/api`; for the digest strategy, the tag to follow
    /// (`ghcr.io/org/migrator:latest`). With --config, an image's alias runs that image's
    /// policy from the config, as the daemon would.
    image: String,
    /// With --config and an image alias: the environment whose policy is run.
    #[arg(long, value_name = "ENV", requires = "config")]
    env: Option<String>,
    /// semver, newest-build, alphabetical, numerical or digest (default: semver).
    #[arg(long, visible_alias = "update-strategy")]
    strategy: Option<String>,
    /// A Masterminds-style constraint such as ">=1.0.0 <2.0.0" (semver only; empty means any).
    #[arg(long, visible_alias = "semver-constraint")]
    constraint: Option<String>,
    /// Consider prereleases in every `||` group, not only in groups that name one.
    #[arg(long)]
    include_prerelease: bool,
    /// Only tags matching one of these patterns (`regexp:...` or a glob); repeatable.
    #[arg(long)]
    allow_tags: Vec<String>,
    /// Never tags matching any of these patterns (`regexp:...` or a glob); repeatable.
    #[arg(long)]
    ignore_tags: Vec<String>,
    /// A regexp whose first named (or first) group is the sort key.
    #[arg(long)]
    extract: Option<String>,
    /// Platforms to select manifests for, e.g. linux/amd64,linux/arm64 (used with a registry).
    #[arg(long, value_delimiter = ',')]
    platforms: Vec<String>,
    /// Read tags from FILE (or `-` for stdin) instead of a registry: one per line, optionally
    /// followed by an RFC 3339 creation time and a digest.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "registries", "credentials", "insecure"])]
    tags_from: Option<PathBuf>,
    /// Take the registry's settings and credentials from this config file; with an image
    /// alias, its policy too.
    #[arg(long, value_name = "FILE", conflicts_with = "registries")]
    config: Option<PathBuf>,
    /// With an image alias: the state dir whose holds, first sightings and status apply
    /// (default: the config's `settings.state_dir`).
    #[arg(
        long,
        env = "IMAGE_UPDATER_STATE_DIR",
        value_name = "DIR",
        requires = "config"
    )]
    state_dir: Option<PathBuf>,
    /// Like --config, for a file that holds only [registries].
    #[arg(long, value_name = "FILE")]
    registries: Option<PathBuf>,
    /// A credential reference for the registry: env:VAR, file:/path, docker-config, exec:/path.
    #[arg(long, value_name = "REF")]
    credentials: Option<String>,
    /// Allow plain http and skip TLS verification, for a registry not in the config.
    #[arg(long)]
    insecure: bool,
    /// text or json.
    #[arg(long, value_enum, default_value = "text")]
    output: OutputFormat,
}

impl Args {
    /// The policy flags given on the command line, which an alias's config policy replaces.
    fn policy_flags(&self) -> Vec<&'static str> {
        [
            ("--strategy", self.strategy.is_some()),
            ("--constraint", self.constraint.is_some()),
            ("--include-prerelease", self.include_prerelease),
            ("--allow-tags", !self.allow_tags.is_empty()),
            ("--ignore-tags", !self.ignore_tags.is_empty()),
            ("--extract", self.extract.is_some()),
            ("--platforms", !self.platforms.is_empty()),
            ("--credentials", self.credentials.is_some()),
            ("--insecure", self.insecure),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum OutputFormat {
    Text,
    Json,
}

#[derive(Serialize)]
struct Report<'a> {
    image: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    configured: Option<&'a configured::Decision>,
    strategy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    constraint: Option<&'a str>,
    selected: Option<&'a str>,
    tags: Vec<TagReport<'a>>,
}

#[derive(Serialize)]
struct TagReport<'a> {
    tag: &'a str,
    eligible: bool,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<String>,
}

pub fn run(args: Args) -> Outcome {
    if let Some(path) = &args.config {
        match configured::find(&args, path) {
            Ok(Some(found)) => return configured::run(&args, found),
            Ok(None) => {}
            // The config's diagnostics say `error:` each, with file:line:col.
            Err(configured::Refused::Config(diagnostics)) => {
                eprintln!("{}", safe(&diagnostics.to_string()));
                return Outcome::Usage;
            }
            Err(configured::Refused::Usage(message)) => {
                eprintln!("error: {}", safe(&message));
                return Outcome::Usage;
            }
        }
    }
    match prepare(&args) {
        Ok((reference, policy, platforms)) => {
            let outcome = match &args.tags_from {
                Some(path) => read_candidates(path).map(|c| {
                    let selection = select::select(&policy, &c);
                    (c, selection)
                }),
                None => from_registry(&args, &reference, &policy, &platforms),
            };
            match outcome {
                Ok((candidates, selection)) => {
                    let selected =
                        report(&args, &reference, &policy, &candidates, &selection, None);
                    if selected {
                        Outcome::Success
                    } else {
                        Outcome::Negative
                    }
                }
                Err(message) => {
                    eprintln!("error: {}", safe(&message));
                    Outcome::Usage
                }
            }
        }
        Err(message) => {
            eprintln!("error: {}", safe(&message));
            Outcome::Usage
        }
    }
}

/// Lists the image's tags from its registry and chooses as the daemon would.
fn from_registry(
    args: &Args,
    reference: &Reference,
    policy: &Policy,
    platforms: &[Platform],
) -> Result<(Vec<Candidate>, Selection), String> {
    let mut endpoint = match args.config.as_ref().or(args.registries.as_ref()) {
        Some(path) => {
            let config = config::load(path).map_err(|d| format!("{d}"))?;
            config
                .registries
                .values()
                .find(|r| r.prefix == reference.registry())
                .or_else(|| config.registries.values().find(|r| r.default))
                .map(Endpoint::from_config)
                .unwrap_or_else(|| Endpoint::anonymous(reference.registry()))
        }
        None => Endpoint::anonymous(reference.registry()),
    };
    if let Some(text) = &args.credentials {
        endpoint.credentials =
            Some(CredentialRef::parse(text).map_err(|e| format!("--credentials: {e}"))?);
    }
    if args.insecure {
        endpoint.insecure = true;
        if let Some(host) = endpoint.base_url.strip_prefix("https://") {
            endpoint.base_url = format!("http://{host}");
        }
    }
    let client = Client::new(
        endpoint,
        Tuning::default(),
        Arc::default(),
        Arc::new(MetadataCache::in_memory()),
    )
    .map_err(|e| e.to_string())?;
    let runtime = crate::cli::small_runtime()?;
    let choice = runtime
        .block_on(poll::choose(
            &client,
            &Cycle::new(),
            &reference.path,
            policy,
            platforms,
        ))
        .map_err(|e| e.to_string())?;
    Ok((choice.candidates, choice.selection))
}

fn prepare(args: &Args) -> Result<(Reference, Policy, Vec<Platform>), String> {
    let reference =
        Reference::parse(&args.image).map_err(|e| format!("image `{}`: {e}", args.image))?;
    let name = args.strategy.as_deref().unwrap_or("semver");
    let kind: StrategyKind = name.parse().map_err(|e| format!("--strategy: {e}"))?;
    if args.constraint.is_some() && kind != StrategyKind::Semver {
        return Err(format!(
            "--constraint applies to the semver strategy, not `{name}`"
        ));
    }
    // As in the config: only the digest strategy follows a tag, and it must name one.
    match (&reference.tag, kind) {
        (Some(tag), k) if k != StrategyKind::Digest => {
            return Err(format!(
                "image `{}` names the tag `{tag}`, which the {name} strategy would ignore: \
                 drop `:{tag}`, or use --strategy digest to follow that tag",
                args.image
            ));
        }
        (None, StrategyKind::Digest) => {
            return Err(format!(
                "the digest strategy follows one tag, and `{}` names none: write it as `{}:latest` (or the tag to follow)",
                args.image, args.image
            ));
        }
        _ => {}
    }
    let strategy = match kind {
        StrategyKind::Semver => Strategy::Semver {
            constraint: Constraint::parse(args.constraint.as_deref().unwrap_or(""))
                .map_err(|e| format!("--constraint: {e}"))?,
            include_prerelease: args.include_prerelease,
        },
        StrategyKind::NewestBuild => Strategy::NewestBuild,
        StrategyKind::Alphabetical => Strategy::Alphabetical,
        StrategyKind::Numerical => Strategy::Numerical,
        StrategyKind::Digest => Strategy::Digest {
            tag: reference.tag.clone().unwrap_or_default(),
        },
    };
    let patterns = |flag: &str, list: &[String]| {
        list.iter()
            .map(|p| TagPattern::parse(p).map_err(|e| format!("{flag} `{p}`: {e}")))
            .collect::<Result<Vec<_>, _>>()
    };
    let policy = Policy {
        strategy,
        names: image_updater::select::Names::ImageTags,
        allow: patterns("--allow-tags", &args.allow_tags)?,
        ignore: patterns("--ignore-tags", &args.ignore_tags)?,
        extract: args
            .extract
            .as_deref()
            .map(Extract::parse)
            .transpose()
            .map_err(|e| format!("--extract: {e}"))?,
    };
    let mut platforms = args
        .platforms
        .iter()
        .map(|p| Platform::parse(p).map_err(|e| format!("--platforms: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if platforms.is_empty() {
        platforms.push(Platform::default());
    }
    Ok((reference, policy, platforms))
}

/// Reads `TAG [CREATED] [DIGEST]` lines; blank lines and `#` comments are skipped.
fn read_candidates(path: &PathBuf) -> Result<Vec<Candidate>, String> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .map_err(|e| format!("reading tags from stdin: {e}"))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
    }
    let mut candidates = Vec::new();
    for (number, line) in text.as_bytes().lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        let mut fields = line.split_whitespace();
        let Some(tag) = fields.next().filter(|t| !t.starts_with('#')) else {
            continue;
        };
        let mut candidate = Candidate::new(tag);
        for field in fields {
            if field.contains(':') && field.starts_with("sha") {
                candidate.digest = Some(field.to_string());
            } else {
                candidate.created = Some(field.parse().map_err(|e| {
                    format!(
                        "{}:{}: `{field}` is neither an RFC 3339 time nor a digest: {e}",
                        path.display(),
                        number + 1
                    )
                })?);
            }
        }
        candidates.push(candidate);
    }
    Ok(candidates)
}

/// Prints the selection; `true` when a tag was selected.
fn report(
    args: &Args,
    reference: &Reference,
    policy: &Policy,
    candidates: &[Candidate],
    selection: &Selection,
    configured: Option<&configured::Decision>,
) -> bool {
    let selected = selection.selected.map(|i| candidates[i].tag.as_str());
    let constraint = match &policy.strategy {
        Strategy::Semver { constraint, .. } => Some(constraint.as_str()),
        _ => None,
    };
    match args.output {
        OutputFormat::Json => {
            let report = Report {
                image: reference.repository(),
                configured,
                strategy: policy.strategy.name(),
                constraint,
                selected,
                tags: candidates
                    .iter()
                    .zip(&selection.verdicts)
                    .map(|(c, v)| TagReport {
                        tag: &c.tag,
                        eligible: v.eligible,
                        reason: &v.reason,
                        digest: c.digest.as_deref(),
                        created: c.created.map(|t| t.to_string()),
                    })
                    .collect(),
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("report serializes")
            );
        }
        OutputFormat::Text => {
            let constraint = match constraint {
                Some("") => ", no constraint (any release)".to_string(),
                Some(c) => format!(", constraint `{c}`"),
                None => String::new(),
            };
            let say = |line: String| println!("{}", safe(&line));
            match configured {
                Some(d) => say(format!("{:<10}{}", format!("{}:", d.kind), d.source)),
                None => say(format!("image:    {}", reference.repository())),
            }
            if let Some(d) = configured {
                say(format!(
                    "policy:   {} in {} (branch {})",
                    d.alias, d.environment, d.branch
                ));
            }
            say(format!("strategy: {}{constraint}", policy.strategy));
            if let Some(d) = configured {
                for rule in &d.rules {
                    say(format!("rule:     {rule}"));
                }
            }
            say(format!("selected: {}", selected.unwrap_or("(none)")));
            if let Some(digest) = selection
                .selected
                .and_then(|i| candidates[i].digest.as_deref())
            {
                say(format!("digest:   {digest}"));
            }
            if let Some(d) = configured {
                match (&d.writes, &d.waiting) {
                    (Some(w), _) => say(format!("writes:   {w}")),
                    (None, Some(why)) => say(format!("waiting:  {why}")),
                    (None, None) => say("writes:   nothing".into()),
                }
            }
            let width = candidates.iter().map(|c| c.tag.len()).max().unwrap_or(0);
            for (c, v) in candidates.iter().zip(&selection.verdicts) {
                let mark = if selection
                    .selected
                    .is_some_and(|i| candidates[i].tag == c.tag)
                    && v.reason.starts_with("selected")
                {
                    '*'
                } else if v.eligible {
                    '+'
                } else {
                    '-'
                };
                say(format!("  {mark} {:width$}  {}", c.tag, v.reason));
            }
        }
    }
    selected.is_some()
}
