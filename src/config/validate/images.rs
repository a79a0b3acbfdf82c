//! `[images.ALIAS]` and `[images.ALIAS.env.ENV]`: an image, its policy and safety rules, and
//! how each environment's keys combine with the image's. A key that means nothing for the
//! strategy it ends up under is an error at that key.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::{Validator, at, parse_duration};
use crate::config::diagnostic::{Code, Diagnostic, Origin};
use crate::config::model::*;
use crate::config::raw::*;
use crate::reference::{Platform, Reference};
use crate::select::{Constraint, Extract, Policy, Strategy, StrategyKind, TagPattern};
use crate::suggest::suggest;

/// A policy key after parsing: not written, written but invalid (already reported), or valid.
#[derive(Debug, Clone)]
enum Field<T> {
    Unset,
    Bad,
    Set(T, Range<usize>),
}

impl<T: Clone> Field<T> {
    fn or(&self, fallback: &Field<T>) -> Field<T> {
        match self {
            Field::Unset => fallback.clone(),
            other => other.clone(),
        }
    }
}

/// An image's or an environment's policy keys, parsed but not yet combined.
#[derive(Debug, Clone)]
struct PartialPolicy {
    strategy: Field<StrategyKind>,
    constraint: Field<Constraint>,
    include_prerelease: Field<bool>,
    tag: Field<String>,
    allow: Field<Vec<TagPattern>>,
    ignore: Field<Vec<TagPattern>>,
    extract: Field<Extract>,
    platforms: Field<Vec<Platform>>,
    targets: Field<Vec<Spanned<RawTarget>>>,
    pin: Field<String>,
    min_age: Field<Duration>,
    age_from: Field<AgeFrom>,
    promote_from: Field<Spanned<String>>,
    soak: Field<Duration>,
    pin_digest: Field<bool>,
    allow_downgrade: Field<bool>,
    write: Field<WriteMode>,
    verify: Field<Arc<Verification>>,
}

impl Validator<'_> {
    pub(super) fn image(
        &mut self,
        alias: &str,
        raw: RawImage,
        span: Range<usize>,
        registries: &BTreeMap<String, Registry>,
        environments: &[&str],
        settings: &Settings,
    ) -> Option<Image> {
        for (key, span) in raw.chart_keys() {
            self.error_hint(
                Origin::File(span),
                format!("`{key}` is a chart's key, not an image's"),
                format!("declare the chart as [charts.{alias}], with its own targets"),
            );
        }
        let reference = match &raw.image {
            Some(text) => self.parse(text, "image", |t| {
                Reference::parse(t).map_err(|e| format!("`{t}`: {e}"))
            }),
            None => {
                self.error_hint(
                    Origin::Section(span.clone()),
                    format!("image `{alias}` has no `image` key"),
                    "add image = \"ghcr.io/org/app\"",
                );
                None
            }
        };
        if reference.as_ref().is_some_and(|r| r.digest.is_some()) {
            let text = raw.image.as_ref().expect("parsed");
            self.error(
                at(text),
                "image must not pin a digest: the strategy chooses what to deploy",
            );
        }
        let tagged = raw
            .image
            .clone()
            .filter(|_| reference.as_ref().is_some_and(|r| r.tag.is_some()));
        self.deployable(
            alias,
            raw,
            span,
            reference,
            tagged,
            Source::Image,
            registries,
            environments,
            settings,
        )
    }

    /// What an image and a chart share once their source is read: the alias, the policy and
    /// safety rules per environment, the targets, promotions. `tagged` is the `image` value
    /// when it names a tag, which only the digest strategy may follow.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::config) fn deployable(
        &mut self,
        alias: &str,
        mut raw: RawImage,
        span: Range<usize>,
        reference: Option<Reference>,
        tagged: Option<Str>,
        source: Source,
        registries: &BTreeMap<String, Registry>,
        environments: &[&str],
        settings: &Settings,
    ) -> Option<Image> {
        let name = alias.to_string();
        let chart = source.is_chart();
        let noun = noun(chart);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            self.error(
                Origin::Section(span.clone()),
                format!("{noun} alias `{name}` may use only letters, digits, `-` and `_`"),
            );
        }
        let image_policy = raw.take_policy();
        let base = self.partial_policy(&image_policy);
        let replaces = self.replaces(raw.replaces.as_ref(), reference.as_ref());
        let interval = match &raw.interval {
            Some(i) => self
                .parse(i, "interval", parse_duration)
                .unwrap_or(settings.interval),
            None => settings.interval,
        };
        let tags = match &raw.tags {
            Some(t) => match t.get_ref().as_str() {
                "immutable" => Tags::Immutable,
                "mutable" => Tags::Mutable,
                other => {
                    self.error_hint(
                        at(t),
                        format!("tags: `{other}` is neither `immutable` nor `mutable`"),
                        "tags = \"mutable\" if the pipeline pushes the same tag again",
                    );
                    Tags::default()
                }
            },
            None => Tags::default(),
        };
        // The environments this image is deployed to.
        let env_names = environments;
        let mut deployed: Vec<String> = Vec::new();
        match &raw.environments {
            Some(list) => {
                for e in list.get_ref() {
                    if environments.contains(&e.get_ref().as_str()) {
                        deployed.push(e.get_ref().clone());
                    } else {
                        let hint =
                            suggest(e.get_ref(), env_names).map(|s| format!("did you mean `{s}`?"));
                        self.push(
                            Diagnostic::new(
                                format!(
                                    "environment `{}` is not defined in [environments]",
                                    e.get_ref()
                                ),
                                at(e),
                            )
                            .with_maybe_hint(hint),
                        );
                    }
                }
            }
            None => deployed = environments.iter().map(|e| e.to_string()).collect(),
        }
        let mut overrides = BTreeMap::new();
        for (env_name, policy) in &raw.env {
            let listed = raw.environments.is_none() || deployed.contains(env_name);
            if !environments.contains(&env_name.as_str()) {
                let hint = suggest(env_name, env_names).map(|s| format!("did you mean `{s}`?"));
                self.push(
                    Diagnostic::new(
                        format!(
                            "[{noun}s.{name}.env.{}]: environment `{}` is not defined",
                            env_name, env_name
                        ),
                        at(policy),
                    )
                    .with_maybe_hint(hint),
                );
            } else if !listed {
                self.error(
                    at(policy),
                    format!("{noun} `{name}` has settings for `{}`, which its `environments` list leaves out", env_name),
                );
            }
            overrides.insert(env_name.clone(), self.partial_policy(policy.get_ref()));
        }
        self.check_applicability(&base, &Field::Unset);
        let Some(reference) = reference else {
            // The image is unusable, but its targets are still checked, so one run of `check`
            // shows their problems too.
            let placeholder = Reference::parse("placeholder.invalid/image").expect("valid");
            for env_name in &deployed {
                let merged = match overrides.get(env_name) {
                    Some(o) => o.merge(&base),
                    None => base.clone(),
                };
                if let Field::Set(list, _) = &merged.targets {
                    for t in list {
                        self.within(Code::Targets, |v| {
                            v.target(t, &name, env_name, &placeholder, chart)
                        });
                    }
                }
            }
            return None;
        };
        // Sized to the environments: a config of 20,000 images keeps these for its lifetime.
        let mut deployments = Vec::with_capacity(deployed.len());
        let mut any_digest = false;
        for env_name in &deployed {
            let over = overrides.get(env_name);
            if let Some(over) = over {
                self.check_applicability(&over.with_fallback_strategy(&base), &base.strategy);
            }
            let merged = match over {
                Some(o) => o.merge(&base),
                None => base.clone(),
            };
            any_digest |= matches!(merged.strategy, Field::Set(StrategyKind::Digest, _));
            if let Some(d) =
                self.deployment(&name, env_name, &merged, &reference, span.clone(), chart)
            {
                deployments.push(d);
            }
        }
        for d in &deployments {
            let Some(from) = &d.safety.promote_from else {
                continue;
            };
            if !deployed.iter().any(|e| e == from) {
                self.error_hint(
                    Origin::Section(span.clone()),
                    format!(
                        "{noun} `{name}` in `{}` promotes from `{from}`, where it is not deployed",
                        d.environment
                    ),
                    format!("deploy `{name}` to `{from}` too, or remove promote_from"),
                );
            }
            // Follow the chain: prod <- staging <- dev must end somewhere.
            let mut seen = vec![d.environment.as_str()];
            let mut at_env = from.as_str();
            while let Some(next) = deployments
                .iter()
                .find(|x| x.environment == at_env)
                .and_then(|x| x.safety.promote_from.as_deref())
            {
                if seen.contains(&at_env) {
                    self.error(
                        Origin::Section(span.clone()),
                        format!(
                            "{noun} `{name}`: promote_from goes round in a circle through `{at_env}`"
                        ),
                    );
                    break;
                }
                seen.push(at_env);
                at_env = next;
            }
        }
        if let Some(text) = tagged.filter(|_| !any_digest) {
            self.error_hint(
                at(&text),
                format!(
                    "image `{}` names a tag, but the strategy chooses tags",
                    text.get_ref()
                ),
                "remove the tag, or use strategy = \"digest\" to follow that tag's digest",
            );
        }
        let registry = registries
            .values()
            .find(|r| r.prefix == reference.registry())
            .or_else(|| registries.values().find(|r| r.default))
            .map(|r| r.name.clone())
            .filter(|_| !matches!(source, Source::ChartIndex(_)));
        Some(Image {
            alias: name,
            reference: Reference {
                tag: None,
                ..reference
            },
            registry,
            interval,
            tags,
            replaces,
            deployments,
            source,
        })
    }

    /// `replaces = ["old.registry/org/api"]`: repositories without tags, other than the image.
    fn replaces(
        &mut self,
        raw: Option<&Spanned<Vec<Str>>>,
        image: Option<&Reference>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for text in raw.map(|l| l.get_ref().as_slice()).unwrap_or_default() {
            let Some(r) = self.parse(text, "replaces", |t| {
                Reference::parse(t).map_err(|e| format!("`{t}`: {e}"))
            }) else {
                continue;
            };
            if r.tag.is_some() || r.digest.is_some() {
                self.error(
                    at(text),
                    format!(
                        "replaces: `{}` names a tag or digest; write the repository alone",
                        text.get_ref()
                    ),
                );
            } else if image.is_some_and(|i| i.repository() == r.repository()) {
                self.error(at(text), "replaces names the image itself");
            } else {
                out.push(r.repository());
            }
        }
        out
    }

    fn partial_policy(&mut self, raw: &RawPolicy) -> PartialPolicy {
        fn field<T>(value: Option<T>, span: Range<usize>) -> Field<T> {
            match value {
                Some(v) => Field::Set(v, span),
                None => Field::Bad,
            }
        }
        let strategy = match &raw.strategy {
            Some(s) => field(
                self.parse(s, "strategy", |t| t.parse::<StrategyKind>()),
                s.span(),
            ),
            None => Field::Unset,
        };
        let constraint = match &raw.constraint {
            Some(c) => field(
                self.parse(c, "constraint", |t| {
                    Constraint::parse(t).map_err(|e| e.to_string())
                }),
                c.span(),
            ),
            None => Field::Unset,
        };
        let include_prerelease = match &raw.include_prerelease {
            Some(b) => Field::Set(*b.get_ref(), b.span()),
            None => Field::Unset,
        };
        let tag = match &raw.tag {
            Some(t) if t.get_ref().is_empty() => {
                self.error(at(t), "tag is empty");
                Field::Bad
            }
            Some(t) => Field::Set(t.get_ref().clone(), t.span()),
            None => Field::Unset,
        };
        let allow = self.patterns(raw.allow_tags.as_ref(), "allow_tags");
        let ignore = self.patterns(raw.ignore_tags.as_ref(), "ignore_tags");
        let extract = match &raw.extract {
            Some(e) => field(
                self.parse(e, "extract", |t| {
                    Extract::parse(t).map_err(|e| e.to_string())
                }),
                e.span(),
            ),
            None => Field::Unset,
        };
        let platforms = match &raw.platforms {
            Some(list) => {
                let parsed: Vec<Option<Platform>> = list
                    .get_ref()
                    .iter()
                    .map(|p| self.parse(p, "platforms", Platform::parse))
                    .collect();
                if list.get_ref().is_empty() {
                    self.error(at(list), "platforms is empty: leave it out for linux/amd64");
                    Field::Bad
                } else {
                    field(parsed.into_iter().collect(), list.span())
                }
            }
            None => Field::Unset,
        };
        let targets = match &raw.targets {
            Some(t) => Field::Set(t.get_ref().clone(), t.span()),
            None => Field::Unset,
        };
        let duration = |v: &mut Self, raw: &Option<Str>, key: &str| match raw {
            Some(d) => field(v.parse(d, key, parse_duration), d.span()),
            None => Field::Unset,
        };
        let min_age = duration(self, &raw.min_age, "min_age");
        let soak = duration(self, &raw.soak, "soak");
        let age_from = match &raw.age_from {
            Some(a) => field(
                self.parse(a, "age_from", |t| match t {
                    "first-seen" => Ok(AgeFrom::FirstSeen),
                    "created" => Ok(AgeFrom::Created),
                    other => Err(format!("`{other}`: expected \"first-seen\" or \"created\"")),
                }),
                a.span(),
            ),
            None => Field::Unset,
        };
        let pin = match &raw.pin {
            Some(t) if !crate::reference::is_valid_tag(t.get_ref()) => {
                self.error(at(t), format!("pin `{}` is not a valid tag", t.get_ref()));
                Field::Bad
            }
            Some(t) => Field::Set(t.get_ref().clone(), t.span()),
            None => Field::Unset,
        };
        let flag = |b: &Option<Spanned<bool>>| match b {
            Some(b) => Field::Set(*b.get_ref(), b.span()),
            None => Field::Unset,
        };
        let write = match &raw.write {
            Some(w) => match self.parse(w, "write", super::pull_requests::parse_write) {
                Some(mode) => Field::Set(mode, w.span()),
                None => Field::Bad,
            },
            None => Field::Unset,
        };
        let verify = match &raw.verify {
            Some(v) => match self.within(Code::Verification, |s| s.verification(v)) {
                Some(rules) => Field::Set(Arc::new(rules), v.span()),
                None => Field::Bad,
            },
            None => Field::Unset,
        };
        PartialPolicy {
            verify,
            strategy,
            constraint,
            include_prerelease,
            tag,
            allow,
            ignore,
            extract,
            platforms,
            targets,
            pin,
            min_age,
            age_from,
            promote_from: match &raw.promote_from {
                Some(p) => Field::Set(p.clone(), p.span()),
                None => Field::Unset,
            },
            soak,
            pin_digest: flag(&raw.pin_digest),
            allow_downgrade: flag(&raw.allow_downgrade),
            write,
        }
    }

    fn patterns(&mut self, list: Option<&Spanned<Vec<Str>>>, key: &str) -> Field<Vec<TagPattern>> {
        let Some(list) = list else {
            return Field::Unset;
        };
        let mut out = Vec::new();
        let mut bad = false;
        for p in list.get_ref() {
            match TagPattern::parse(p.get_ref()) {
                Ok(pattern) => out.push(pattern),
                Err(e) => {
                    bad = true;
                    let hint = (!p.get_ref().starts_with("regexp:")
                        && p.get_ref().contains(['^', '$', '\\']))
                    .then(|| "this looks like a regexp: prefix it with `regexp:`".to_string());
                    self.push(
                        Diagnostic::new(format!("{key}: `{}`: {e}", p.get_ref()), at(p))
                            .with_maybe_hint(hint),
                    );
                }
            }
        }
        if bad {
            Field::Bad
        } else {
            Field::Set(out, list.span())
        }
    }

    /// Keys that only mean something for one strategy must not be written beside another, unless
    /// they are inherited from the image while an environment switches strategy.
    fn check_applicability(
        &mut self,
        policy: &PartialPolicy,
        inherited_strategy: &Field<StrategyKind>,
    ) {
        let strategy = match policy.strategy.or(inherited_strategy) {
            Field::Set(kind, _) => kind,
            Field::Unset => StrategyKind::Semver,
            Field::Bad => return,
        };
        let name = strategy_name(strategy);
        if strategy != StrategyKind::Semver {
            for (key, span) in [
                ("constraint", span_of(&policy.constraint)),
                ("include_prerelease", span_of(&policy.include_prerelease)),
            ] {
                if let Some(span) = span {
                    self.error(
                        Origin::File(span),
                        format!("{key} applies to the semver strategy, not `{name}`"),
                    );
                }
            }
        }
        if strategy != StrategyKind::Digest
            && let Some(span) = span_of(&policy.tag)
        {
            self.error(
                Origin::File(span),
                format!("tag applies to the digest strategy, not `{name}`"),
            );
        }
        if strategy == StrategyKind::Digest {
            for (key, span) in [
                ("allow_tags", span_of(&policy.allow)),
                ("ignore_tags", span_of(&policy.ignore)),
                ("extract", span_of(&policy.extract)),
            ] {
                if let Some(span) = span {
                    self.error(
                        Origin::File(span),
                        format!(
                            "{key} does not apply to the digest strategy, which follows one tag"
                        ),
                    );
                }
            }
        }
    }

    fn deployment(
        &mut self,
        alias: &str,
        environment: &str,
        p: &PartialPolicy,
        reference: &Reference,
        image_span: Range<usize>,
        chart: bool,
    ) -> Option<Deployment> {
        // Targets first: their problems are reported whatever else is wrong with the policy.
        let targets = match &p.targets {
            Field::Set(list, span) if list.is_empty() => {
                self.error(
                    Origin::File(span.clone()),
                    format!("{} `{alias}` has an empty targets list", noun(chart)),
                );
                None
            }
            Field::Set(list, _) => {
                let targets: Vec<Option<Target>> = list
                    .iter()
                    .map(|t| {
                        self.within(Code::Targets, |v| {
                            v.target(t, alias, environment, reference, chart)
                        })
                    })
                    .collect();
                targets.into_iter().collect::<Option<Vec<_>>>()
            }
            Field::Unset => {
                self.error_hint(
                    Origin::Section(image_span.clone()),
                    format!("{} `{alias}` has no targets for environment `{environment}`", noun(chart)),
                    if chart {
                        "add [[charts.NAME.targets]] with kind and file, at the chart or under [charts.NAME.env.ENV]"
                    } else {
                        "add [[images.ALIAS.targets]] with kind and file, at the image or under [images.ALIAS.env.ENV]"
                    },
                );
                None
            }
            Field::Bad => None,
        };
        let strategy = match &p.strategy {
            Field::Set(kind, _) => *kind,
            Field::Unset => StrategyKind::Semver,
            Field::Bad => return None,
        };
        let is = |k| strategy == k;
        let strategy = match strategy {
            StrategyKind::Semver => Strategy::Semver {
                constraint: match &p.constraint {
                    Field::Set(c, _) => c.clone(),
                    Field::Unset => Constraint::parse("").expect("empty constraint"),
                    Field::Bad => return None,
                },
                include_prerelease: matches!(p.include_prerelease, Field::Set(true, _)),
            },
            StrategyKind::NewestBuild => Strategy::NewestBuild,
            StrategyKind::Alphabetical => Strategy::Alphabetical,
            StrategyKind::Numerical => Strategy::Numerical,
            StrategyKind::Digest => Strategy::Digest {
                tag: match (&p.tag, &reference.tag) {
                    (Field::Set(t, _), _) => t.clone(),
                    (Field::Unset, Some(t)) => t.clone(),
                    (Field::Unset, None) => {
                        self.error_hint(
                            Origin::Section(image_span.clone()),
                            format!("image `{alias}` uses the digest strategy in `{environment}` but names no tag to follow"),
                            "add tag = \"stable\", or write the tag in `image`",
                        );
                        return None;
                    }
                    (Field::Bad, _) => return None,
                },
            },
        };
        let list = |f: &Field<Vec<TagPattern>>| match f {
            Field::Set(v, _) => Some(v.clone()),
            Field::Unset => Some(Vec::new()),
            Field::Bad => None,
        };
        let (allow, ignore) = (list(&p.allow)?, list(&p.ignore)?);
        let extract = match &p.extract {
            Field::Set(e, _) if !is(StrategyKind::Digest) => Some(e.clone()),
            Field::Bad => return None,
            _ => None,
        };
        let platforms = match &p.platforms {
            Field::Set(v, _) => v.clone(),
            Field::Unset => vec![Platform::default()],
            Field::Bad => return None,
        };
        let value = |f: &Field<bool>| matches!(f, Field::Set(true, _));
        let promote_from = match &p.promote_from {
            Field::Set(from, _) if from.get_ref() == environment => {
                self.error(
                    at(from),
                    format!("`{environment}` cannot promote from itself"),
                );
                return None;
            }
            Field::Set(from, _) => Some(from.get_ref().clone()),
            _ => None,
        };
        if let (Field::Set(_, span), None) = (&p.soak, &promote_from) {
            self.error_hint(
                Origin::File(span.clone()),
                "soak without promote_from",
                "soak is how long a tag stays in promote_from's environment first",
            );
        }
        let safety = Safety {
            pin: match &p.pin {
                Field::Set(t, _) => Some(t.clone()),
                Field::Bad => return None,
                Field::Unset => None,
            },
            min_age: match &p.min_age {
                Field::Set(d, _) => Some(*d),
                Field::Bad => return None,
                Field::Unset => None,
            },
            age_from: match &p.age_from {
                Field::Set(a, _) => *a,
                Field::Bad => return None,
                Field::Unset => AgeFrom::FirstSeen,
            },
            promote_from,
            soak: match &p.soak {
                Field::Set(d, _) => *d,
                Field::Bad => return None,
                Field::Unset => Duration::ZERO,
            },
            pin_digest: value(&p.pin_digest),
            allow_downgrade: value(&p.allow_downgrade),
        };
        Some(Deployment {
            environment: environment.to_string(),
            policy: Policy {
                strategy,
                names: if chart {
                    crate::select::Names::ChartVersions
                } else {
                    crate::select::Names::ImageTags
                },
                allow,
                ignore,
                extract,
            },
            platforms,
            targets: targets?,
            safety,
            write: match &p.write {
                Field::Set(w, _) => Some(*w),
                Field::Bad => return None,
                Field::Unset => None,
            },
            verify: match &p.verify {
                Field::Set(v, _) => Some(v.clone()),
                Field::Bad => return None,
                Field::Unset => None,
            },
        })
    }
}

impl PartialPolicy {
    /// This environment's keys over the image's.
    fn merge(&self, base: &PartialPolicy) -> PartialPolicy {
        PartialPolicy {
            strategy: self.strategy.or(&base.strategy),
            constraint: self.constraint.or(&base.constraint),
            include_prerelease: self.include_prerelease.or(&base.include_prerelease),
            tag: self.tag.or(&base.tag),
            allow: self.allow.or(&base.allow),
            ignore: self.ignore.or(&base.ignore),
            extract: self.extract.or(&base.extract),
            platforms: self.platforms.or(&base.platforms),
            targets: self.targets.or(&base.targets),
            pin: self.pin.or(&base.pin),
            min_age: self.min_age.or(&base.min_age),
            age_from: self.age_from.or(&base.age_from),
            promote_from: self.promote_from.or(&base.promote_from),
            soak: self.soak.or(&base.soak),
            pin_digest: self.pin_digest.or(&base.pin_digest),
            allow_downgrade: self.allow_downgrade.or(&base.allow_downgrade),
            write: self.write.or(&base.write),
            verify: self.verify.or(&base.verify),
        }
    }

    /// This environment's own keys, judged under the strategy it ends up with.
    fn with_fallback_strategy(&self, base: &PartialPolicy) -> PartialPolicy {
        PartialPolicy {
            strategy: self.strategy.or(&base.strategy),
            ..self.clone()
        }
    }
}

fn noun(chart: bool) -> &'static str {
    if chart { "chart" } else { "image" }
}

fn span_of<T>(f: &Field<T>) -> Option<Range<usize>> {
    match f {
        Field::Set(_, s) => Some(s.clone()),
        _ => None,
    }
}

fn strategy_name(kind: StrategyKind) -> &'static str {
    match kind {
        StrategyKind::Semver => "semver",
        StrategyKind::NewestBuild => "newest-build",
        StrategyKind::Alphabetical => "alphabetical",
        StrategyKind::Numerical => "numerical",
        StrategyKind::Digest => "digest",
    }
}
