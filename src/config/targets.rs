//! `[[images.ALIAS.targets]]`: where an image is written. Each kind takes its own keys, and a
//! key of another kind is an error at that key, so a target cannot be half-understood.
//!
//! A target as written ([`RawTarget`]), as validated ([`Target`]: a relative path inside the
//! repository, the keys of its kind and no others, value paths that parse), and the checks
//! between them, together in this file.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::diagnostic::{Diagnostic, Origin};
use super::validator::{Str, Validator, at};
use crate::reference::Reference;
use crate::suggest::suggest;

// ---- As written ----

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawTarget {
    #[schemars(with = "Option<String>")]
    pub kind: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub file: Option<Str>,
    /// kustomization: the `images[].name` to match; helm: the older spelling of `image`.
    #[schemars(with = "Option<String>")]
    pub name: Option<Str>,
    /// helm, yaml: the path of a value holding `repo:tag`.
    #[schemars(with = "Option<String>")]
    pub image: Option<Str>,
    /// helm, yaml: the path of the tag.
    #[schemars(with = "Option<String>")]
    pub tag: Option<Str>,
    /// helm, yaml: the path of the repository.
    #[schemars(with = "Option<String>")]
    pub repository: Option<Str>,
    /// helm, yaml: the path of the registry host, for charts that keep it apart.
    #[schemars(with = "Option<String>")]
    pub registry: Option<Str>,
    /// helm, yaml: the path of the digest.
    #[schemars(with = "Option<String>")]
    pub digest: Option<Str>,
    /// yaml: which documents to edit, as `path = value` pairs.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub documents: Option<Spanned<BTreeMap<String, Str>>>,
    /// manifest: the container's name.
    #[schemars(with = "Option<String>")]
    pub container: Option<Str>,
    /// marker: a Flux image policy (`namespace:name`) whose `$imagepolicy` markers to follow.
    #[schemars(with = "Option<String>")]
    pub policy: Option<Str>,
}

impl RawTarget {
    /// The keys written besides `kind` and `file`, each with where (`None`: not written).
    fn keys_written(&self) -> [(&'static str, Option<std::ops::Range<usize>>); 9] {
        [
            ("name", self.name.as_ref().map(Spanned::span)),
            ("image", self.image.as_ref().map(Spanned::span)),
            ("tag", self.tag.as_ref().map(Spanned::span)),
            ("repository", self.repository.as_ref().map(Spanned::span)),
            ("registry", self.registry.as_ref().map(Spanned::span)),
            ("digest", self.digest.as_ref().map(Spanned::span)),
            ("documents", self.documents.as_ref().map(Spanned::span)),
            ("container", self.container.as_ref().map(Spanned::span)),
            ("policy", self.policy.as_ref().map(Spanned::span)),
        ]
    }
}

// ---- As validated ----

/// Where an image's tag is written, relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An `images:` entry of a kustomization.yaml, matched by `name`.
    Kustomization { file: PathBuf, name: String },
    /// Paths in a Helm values file (one YAML document).
    Helm { file: PathBuf, values: ImagePaths },
    /// Paths in any YAML file (a HelmRelease's `spec.values`, an Argo Rollout, a CRD): applied
    /// in every document that has them and matches `documents`.
    Yaml {
        file: PathBuf,
        values: ImagePaths,
        documents: Vec<(ValuePath, String)>,
    },
    /// The `image:` of containers in plain Kubernetes manifests; all containers running this
    /// image, or only the one named.
    Manifest {
        file: PathBuf,
        container: Option<String>,
    },
    /// Values marked by a comment on their line: `# image-updater: api` (or `api:tag`,
    /// `api:name`, `api:digest`), or Flux's `# {"$imagepolicy": "ns:policy"}` forms.
    Marker { file: PathBuf, marker: Marker },
    /// Where a chart's version is written, for `[charts]` sources.
    Chart(ChartTarget),
}

impl Target {
    /// The file written, relative to the repository root.
    pub fn file(&self) -> &std::path::Path {
        match self {
            Target::Kustomization { file, .. }
            | Target::Helm { file, .. }
            | Target::Yaml { file, .. }
            | Target::Manifest { file, .. }
            | Target::Marker { file, .. } => file,
            Target::Chart(chart) => chart.file(),
        }
    }
}

/// Where a Helm chart's version is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartTarget {
    /// A Flux `HelmRelease`'s chart template (`kind = "helmrelease"`).
    HelmRelease { file: PathBuf },
    /// A Flux `OCIRepository` holding the chart (`kind = "ocirepository"`).
    OciRepository { file: PathBuf },
    /// An Argo CD `Application` or `ApplicationSet` source (`kind = "argocd"`).
    ArgoCd { file: PathBuf },
    /// A `Chart.yaml` dependency (`kind = "chart-dependency"`).
    ChartDependency { file: PathBuf },
    /// A kustomization's `helmCharts` entry (`kind = "kustomization-helm"`).
    KustomizeHelm { file: PathBuf },
}

impl ChartTarget {
    /// The file written, relative to the repository root.
    pub fn file(&self) -> &std::path::Path {
        match self {
            ChartTarget::HelmRelease { file }
            | ChartTarget::OciRepository { file }
            | ChartTarget::ArgoCd { file }
            | ChartTarget::ChartDependency { file }
            | ChartTarget::KustomizeHelm { file } => file,
        }
    }
}

/// Where an image is written in a values-style file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImagePaths {
    /// The parts of the reference at their own keys. Only `tag` is required; `repository` and
    /// `registry` are written only when the image moves (see `replaces`), `digest` when the
    /// deployment pins one (and cleared when it does not).
    Split {
        tag: ValuePath,
        repository: Option<ValuePath>,
        registry: Option<ValuePath>,
        digest: Option<ValuePath>,
    },
    /// One value holding `repository:tag@digest`.
    Combined { image: ValuePath },
}

/// Which marker comments a marker target follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The image's alias for `# image-updater: NAME`, or Flux's `namespace:policy`.
    pub name: String,
    pub flux: bool,
}

/// A path into YAML: mapping keys, list indexes and list items chosen by a key's value, as in
/// `sidecars[0].image.tag` or `spec.template.spec.containers[name=api].image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuePath(pub Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A mapping key; a key of digits also indexes a list (`sidecars.0.image`), as Helm's
    /// `--set` reads it.
    Key(String),
    /// `[3]`: the list item at this index.
    Index(usize),
    /// `[name=api]`: the one list item whose `key` is `value`.
    Select { key: String, value: String },
}

impl ValuePath {
    /// The path of keys alone, as tests and simple configs write it (`image.tag`).
    pub fn keys(keys: &[&str]) -> ValuePath {
        ValuePath(keys.iter().map(|k| Segment::Key(k.to_string())).collect())
    }
}

impl std::fmt::Display for ValuePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Select { key, value } => write!(f, "[{key}={value}]")?,
            }
        }
        Ok(())
    }
}

// ---- The checks ----

const KINDS: &[&str] = &["kustomization", "helm", "yaml", "manifest", "marker"];
/// The kinds of target that hold a chart's version, for `[charts]` sources.
const CHART_KINDS: &[&str] = &[
    "helmrelease",
    "ocirepository",
    "argocd",
    "chart-dependency",
    "kustomization-helm",
];

impl Validator<'_> {
    /// A target of an image (`chart` false) or of a chart: each takes only its own kinds.
    pub(super) fn target(
        &mut self,
        raw: &Spanned<RawTarget>,
        alias: &str,
        environment: &str,
        reference: &Reference,
        chart: bool,
    ) -> Option<Target> {
        let span = raw.span();
        let t = raw.get_ref();
        let Some(kind) = &t.kind else {
            self.error_hint(
                Origin::Section(span),
                "target has no kind",
                if chart {
                    "add kind = \"helmrelease\", \"ocirepository\", \"argocd\", \"chart-dependency\" or \"kustomization-helm\""
                } else {
                    "add kind = \"kustomization\", \"helm\", \"yaml\", \"manifest\" or \"marker\""
                },
            );
            return None;
        };
        if chart || CHART_KINDS.contains(&kind.get_ref().as_str()) {
            return self.chart_target(t, kind, environment, chart);
        }
        let path = match &t.file {
            Some(file) => self.parse(file, "file", |f| {
                check_target_path(&f.replace("{environment}", environment))
            }),
            None => {
                self.error(Origin::Section(span.clone()), "target has no file");
                None
            }
        };
        let kind_name = kind.get_ref().as_str();
        let allowed: &[&str] = match kind_name {
            "kustomization" => &["name"],
            "helm" => &["name", "image", "tag", "repository", "registry", "digest"],
            "yaml" => &[
                "image",
                "tag",
                "repository",
                "registry",
                "digest",
                "documents",
            ],
            "manifest" => &["container"],
            "marker" => &["policy"],
            other => {
                let hint = suggest(other, KINDS).map(|s| format!("did you mean `{s}`?"));
                self.push(
                    Diagnostic::new(
                        format!(
                            "unknown target kind `{other}`: expected kustomization, helm, yaml, manifest or marker"
                        ),
                        at(kind),
                    )
                    .with_maybe_hint(hint),
                );
                return None;
            }
        };
        let mut ok = true;
        for (key, value) in t.keys_written() {
            if let Some(span) = value
                && !allowed.contains(&key)
            {
                self.error(
                    Origin::File(span),
                    format!("`{key}` does not apply to {kind_name} targets"),
                );
                ok = false;
            }
        }
        match kind_name {
            "kustomization" => Some(Target::Kustomization {
                file: path.filter(|_| ok)?,
                name: t
                    .name
                    .as_ref()
                    .map(|n| n.get_ref().clone())
                    .unwrap_or_else(|| reference.familiar_repository()),
            }),
            "helm" | "yaml" => {
                // `name` is the older spelling of `image` for helm targets.
                let image = t.image.as_ref().or(t.name.as_ref());
                let values = self.image_paths(t, image, span.clone());
                let documents = match &t.documents {
                    Some(d) => self.documents(d),
                    None => Some(Vec::new()),
                };
                let (file, values, documents) = (path.filter(|_| ok)?, values?, documents?);
                Some(if kind_name == "helm" {
                    Target::Helm { file, values }
                } else {
                    Target::Yaml {
                        file,
                        values,
                        documents,
                    }
                })
            }
            "marker" => {
                let marker = match &t.policy {
                    Some(p) => {
                        let valid = p.get_ref().split_once(':').is_some_and(|(ns, name)| {
                            !ns.is_empty() && !name.is_empty() && !name.contains(':')
                        });
                        if !valid {
                            self.error_hint(
                                at(p),
                                format!("`{}` is not a Flux image policy name", p.get_ref()),
                                "write it as `namespace:policy`, as Flux's `$imagepolicy` markers do",
                            );
                            return None;
                        }
                        Marker {
                            name: p.get_ref().clone(),
                            flux: true,
                        }
                    }
                    None => Marker {
                        name: alias.to_string(),
                        flux: false,
                    },
                };
                Some(Target::Marker {
                    file: path.filter(|_| ok)?,
                    marker,
                })
            }
            _ => Some(Target::Manifest {
                file: path.filter(|_| ok)?,
                container: t.container.as_ref().map(|c| c.get_ref().clone()),
            }),
        }
    }

    /// The paths of a helm or yaml target: `tag` (with optional `repository`, `registry`,
    /// `digest`), or `image` for one value holding the whole reference.
    /// A chart's target: the file alone says where the version is, read from the chart's
    /// repository and name.
    fn chart_target(
        &mut self,
        t: &RawTarget,
        kind: &Spanned<String>,
        environment: &str,
        chart: bool,
    ) -> Option<Target> {
        let kind_name = kind.get_ref().as_str();
        if !CHART_KINDS.contains(&kind_name) {
            let hint = if KINDS.contains(&kind_name) {
                Some(format!(
                    "`{kind_name}` writes an image's tag; a chart's version is held by a HelmRelease, an OCIRepository, an Argo CD source, a Chart.yaml dependency or a kustomization's helmCharts"
                ))
            } else {
                suggest(kind_name, CHART_KINDS).map(|s| format!("did you mean `{s}`?"))
            };
            self.push(
                Diagnostic::new(
                    format!(
                        "`{kind_name}` is not a chart target: expected helmrelease, ocirepository, argocd, chart-dependency or kustomization-helm"
                    ),
                    at(kind),
                )
                .with_maybe_hint(hint),
            );
            return None;
        }
        if !chart {
            self.error_hint(
                at(kind),
                format!("`{kind_name}` targets hold a chart's version, not an image's tag"),
                "declare the chart under [charts.NAME] with this target",
            );
            return None;
        }
        let mut ok = true;
        for (key, value) in t.keys_written() {
            if let Some(span) = value {
                self.error_hint(
                    Origin::File(span),
                    format!("`{key}` does not apply to {kind_name} targets"),
                    "a chart target finds the chart by the repository and name of [charts.NAME]",
                );
                ok = false;
            }
        }
        let file = match &t.file {
            Some(file) => self.parse(file, "file", |f| {
                check_target_path(&f.replace("{environment}", environment))
            })?,
            None => {
                self.error(at(kind), "target has no file");
                return None;
            }
        };
        if !ok {
            return None;
        }
        Some(Target::Chart(match kind_name {
            "helmrelease" => ChartTarget::HelmRelease { file },
            "ocirepository" => ChartTarget::OciRepository { file },
            "argocd" => ChartTarget::ArgoCd { file },
            "chart-dependency" => ChartTarget::ChartDependency { file },
            _ => ChartTarget::KustomizeHelm { file },
        }))
    }

    fn image_paths(
        &mut self,
        t: &RawTarget,
        image: Option<&Str>,
        span: std::ops::Range<usize>,
    ) -> Option<ImagePaths> {
        let mut path = |v: Option<&Str>, key: &str| -> Option<Option<ValuePath>> {
            match v {
                Some(v) => self.parse(v, key, parse_value_path).map(Some),
                None => Some(None),
            }
        };
        let parsed = (
            path(image, "image"),
            path(t.tag.as_ref(), "tag"),
            path(t.repository.as_ref(), "repository"),
            path(t.registry.as_ref(), "registry"),
            path(t.digest.as_ref(), "digest"),
        );
        let (Some(image), Some(tag), Some(repository), Some(registry), Some(digest)) = parsed
        else {
            return None;
        };
        match (image, tag) {
            (Some(image), None)
                if repository.is_none() && registry.is_none() && digest.is_none() =>
            {
                Some(ImagePaths::Combined { image })
            }
            (None, Some(tag)) => Some(ImagePaths::Split {
                tag,
                repository,
                registry,
                digest,
            }),
            _ => {
                self.error_hint(
                    Origin::Section(span),
                    "a helm or yaml target needs either `tag` (with optional `repository`, `registry` and `digest`) or `image`",
                    "tag = \"image.tag\" (the chart's other image keys are read beside it), or image = \"spec.template.spec.containers[name=api].image\" for a `repo:tag` value",
                );
                None
            }
        }
    }

    /// `documents = { kind = "Rollout", "metadata.name" = "api" }`: which documents a yaml
    /// target edits.
    fn documents(
        &mut self,
        raw: &Spanned<std::collections::BTreeMap<String, Str>>,
    ) -> Option<Vec<(ValuePath, String)>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (key, value) in raw.get_ref() {
            match parse_value_path(key) {
                Ok(path) => out.push((path, value.get_ref().clone())),
                Err(e) => {
                    self.error(at(value), format!("documents: {e}"));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

/// A path inside the repository: relative, without `..`, so a config cannot write elsewhere.
pub(super) fn check_target_path(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if p.is_absolute() {
        return Err(format!(
            "`{path}` is absolute: write it relative to the repository root"
        ));
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "`{path}` leaves the repository: `..` is not allowed"
        ));
    }
    if path.contains(['{', '}']) {
        return Err(format!(
            "`{path}`: the only placeholder is `{{environment}}`"
        ));
    }
    Ok(p.components().collect())
}

/// `image.tag`, `sidecars[0].image.tag`, `sidecars.0.image.tag`,
/// `spec.template.spec.containers[name=api].image`.
pub fn parse_value_path(text: &str) -> Result<ValuePath, String> {
    let bad = || {
        format!(
            "`{text}` is not a path like `image.tag`, `sidecars[0].image.tag` or `containers[name=api].image`"
        )
    };
    let key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
    let mut segments = Vec::new();
    for part in text.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && (segments.is_empty() || rest.is_empty()) {
            return Err(bad());
        }
        if !key.chars().all(key_char) {
            return Err(bad());
        }
        if !key.is_empty() {
            segments.push(Segment::Key(key.to_string()));
        }
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(bad)?;
            let inner = &rest[1..close];
            let segment = match inner.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() && k.chars().all(key_char) => {
                    if v.contains(['[', ']', '=']) {
                        return Err(bad());
                    }
                    Segment::Select {
                        key: k.to_string(),
                        value: v.to_string(),
                    }
                }
                None if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) => {
                    Segment::Index(inner.parse().map_err(|_| bad())?)
                }
                _ => return Err(bad()),
            };
            segments.push(segment);
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(bad());
            }
        }
    }
    if segments.is_empty() {
        return Err(bad());
    }
    Ok(ValuePath(segments))
}

impl std::str::FromStr for ValuePath {
    type Err = String;

    fn from_str(text: &str) -> Result<ValuePath, String> {
        parse_value_path(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_paths_with_indexes_and_selectors() {
        let p = parse_value_path("spec.template.spec.containers[name=api].image").unwrap();
        assert_eq!(
            p.to_string(),
            "spec.template.spec.containers[name=api].image"
        );
        assert_eq!(
            p.0[4],
            Segment::Select {
                key: "name".into(),
                value: "api".into()
            }
        );
        let p = parse_value_path("sidecars[0].image.tag").unwrap();
        assert_eq!(p.0[1], Segment::Index(0));
        let p = parse_value_path("sidecars.0.image.tag").unwrap();
        assert_eq!(p.0[1], Segment::Key("0".into()));
        for bad in [
            "", "a..b", ".a", "a[", "a[]", "a[x", "a[0]b", "a[=v]", "a b", "[0]",
        ] {
            assert!(parse_value_path(bad).is_err(), "{bad:?}");
        }
    }
}
