//! The config as users write it: the shipped example, the seed article's scenarios, and the
//! diagnostics a mistake produces.

use std::path::Path;

use image_updater::config::{self, Config, Diagnostics, ImagePaths, Origin, Target};
use image_updater::select::{Candidate, Strategy, select};

fn parse(text: &str) -> Result<Config, Diagnostics> {
    config::parse(Path::new("updater.toml"), text)
}

fn locations(d: &Diagnostics) -> Vec<String> {
    d.items.iter().map(|i| d.location(i)).collect()
}

const HEADER: &str = r#"
[repositories.manifests]
url = "https://git.example.com/org/manifests.git"

[environments.dev]
branch = "deploy/dev"

[environments.staging]
branch = "deploy/staging"

[environments.prod]
branch = "deploy/prod"
"#;

#[test]
fn the_shipped_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("updater.toml.example");
    let config = config::load(&path).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(config.environments["prod"].branch, "deploy/prod");
    assert_eq!(
        config.environments["dev"].base_branch.as_deref(),
        Some("main")
    );
    assert_eq!(config.images["api"].registry.as_deref(), Some("ghcr"));
    assert_eq!(
        config.images["proxy"].registry.as_deref(),
        Some("dockerhub")
    );
    assert_eq!(
        config.images["proxy"].reference.repository(),
        "docker.io/library/nginx"
    );
    assert_eq!(
        config.registries["dockerhub"].api_url,
        "https://registry-1.docker.io"
    );
}

#[test]
fn the_seed_per_environment_pattern_selects_what_each_environment_allows() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("updater.toml.example");
    let config = config::load(&path).unwrap();
    let api = &config.images["api"];
    let tags = [
        "v1.4.0",
        "v1.5.0-rc.1",
        "v1.5.0",
        "v2.0.0",
        "main-abc1234",
        "main-def5678",
        "dev-0000000",
    ];
    let candidates: Vec<Candidate> = tags
        .iter()
        .enumerate()
        .map(|(i, t)| Candidate {
            created: Some(jiff::Timestamp::from_second(1_700_000_000 + i as i64).unwrap()),
            ..Candidate::new(*t)
        })
        .collect();
    let chosen = |env: &str| {
        let d = api
            .deployments
            .iter()
            .find(|d| d.environment == env)
            .unwrap();
        select(&d.policy, &candidates)
            .selected
            .map(|i| candidates[i].tag.as_str())
    };
    assert_eq!(chosen("dev"), Some("main-def5678"));
    assert_eq!(chosen("staging"), Some("v1.5.0-rc.1"));
    assert_eq!(chosen("prod"), Some("v1.5.0"));
    let targets = &api.deployments[0].targets;
    assert_eq!(
        targets[0],
        Target::Kustomization {
            file: "apps/api/overlays/dev/kustomization.yaml".into(),
            name: "ghcr.io/org/api".into()
        }
    );
}

#[test]
fn typo_bad_regexp_and_bad_constraint_are_all_reported_with_line_and_column() {
    let text = format!(
        r#"{HEADER}
[images.api]
image = "ghcr.io/org/api"
strategyy = "semver"
constraint = ">=1.0.0 <2.0.0 ||"
allow_tags = ["regexp:^v[0-9+$"]

[[images.api.targets]]
kind = "kustomization"
file = "apps/api/kustomization.yaml"
"#
    );
    let d = parse(&text).unwrap_err();
    assert_eq!(
        locations(&d),
        [
            "updater.toml:16:1",
            "updater.toml:17:14",
            "updater.toml:18:15"
        ],
        "{d}"
    );
    let rendered = d.to_string();
    assert!(
        rendered.contains("unknown key `strategyy` in [images.api]"),
        "{rendered}"
    );
    assert!(rendered.contains("did you mean `strategy`?"), "{rendered}");
    assert!(
        rendered.contains("constraint: an `||` alternative is empty"),
        "{rendered}"
    );
    assert!(
        rendered.contains("invalid regexp: unclosed character class"),
        "{rendered}"
    );
    assert!(rendered.ends_with("3 errors in updater.toml"), "{rendered}");
}

#[test]
fn toml_syntax_errors_keep_their_position() {
    let d = parse("[settings]\ninterval = 5m\n").unwrap_err();
    assert_eq!(locations(&d), ["updater.toml:2:12"], "{d}");
    let d = parse("[settings]\ninterval = 300\n").unwrap_err();
    assert!(d.to_string().contains("invalid type"), "{d}");
    assert_eq!(locations(&d), ["updater.toml:2:12"], "{d}");
}

#[test]
fn unknown_keys_anywhere_are_found() {
    let text = format!(
        r#"{HEADER}
[registries.ghcr]
prefix = "ghcr.io"
api-url = "https://ghcr.io"

[images.api]
image = "ghcr.io/org/api"
[[images.api.targets]]
kind = "helm"
file = "values.yaml"
tags = "image.tag"
[images.api.env.prod]
ignore_tag = ["*-rc*"]
"#
    );
    let d = parse(&text).unwrap_err();
    let messages: Vec<&str> = d.items.iter().map(|i| i.message.as_str()).collect();
    assert!(
        messages.contains(&"unknown key `api-url` in [registries.ghcr]"),
        "{d}"
    );
    assert!(
        messages.contains(&"unknown key `tags` in [images.api.targets[0]]"),
        "{d}"
    );
    assert!(
        messages.contains(&"unknown key `ignore_tag` in [images.api.env.prod]"),
        "{d}"
    );
    assert!(d.to_string().contains("did you mean `api_url`?"), "{d}");
    assert!(d.to_string().contains("did you mean `ignore_tags`?"), "{d}");
}

#[test]
fn unknown_strategy_is_an_error_never_a_fallback() {
    let text = format!(
        "{HEADER}\n[images.api]\nimage = \"ghcr.io/org/api\"\nstrategy = \"semverr\"\ntargets = [{{ kind = \"manifest\", file = \"d.yaml\" }}]\n"
    );
    let d = parse(&text).unwrap_err();
    assert_eq!(d.len(), 1, "{d}");
    assert!(d.items[0].message.contains("did you mean `semver`?"), "{d}");
}

#[test]
fn helm_targets_and_overrides() {
    let text = format!(
        r#"{HEADER}
[images.web]
image = "ghcr.io/org/web"
constraint = "^2"
environments = ["prod"]
platforms = ["linux/arm64/v8"]
[[images.web.targets]]
kind = "helm"
file = "charts/web/values.yaml"
tag = "image.tag"
repository = "image.repository"
[[images.web.targets]]
kind = "helm"
file = "charts/web/values.yaml"
name = "sidecar.image"
"#
    );
    let config = parse(&text).unwrap_or_else(|d| panic!("{d}"));
    let web = &config.images["web"];
    assert_eq!(web.deployments.len(), 1);
    let d = &web.deployments[0];
    assert_eq!(d.platforms[0].to_string(), "linux/arm64/v8");
    assert!(
        matches!(&d.policy.strategy, Strategy::Semver { constraint, .. } if constraint.as_str() == "^2")
    );
    match &d.targets[0] {
        Target::Helm {
            values: ImagePaths::Split {
                tag, repository, ..
            },
            ..
        } => {
            assert_eq!(tag.to_string(), "image.tag");
            assert_eq!(repository.as_ref().unwrap().to_string(), "image.repository");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &d.targets[1],
        Target::Helm {
            values: ImagePaths::Combined { .. },
            ..
        }
    ));
}

#[test]
fn an_environment_switching_strategy_does_not_inherit_the_constraint() {
    let text = format!(
        r#"{HEADER}
[images.api]
image = "ghcr.io/org/api"
constraint = ">=1.0.0 <2.0.0"
targets = [{{ kind = "manifest", file = "{{environment}}/deployment.yaml", container = "api" }}]
[images.api.env.dev]
strategy = "newest-build"
"#
    );
    let config = parse(&text).unwrap_or_else(|d| panic!("{d}"));
    let dev = config.images["api"]
        .deployments
        .iter()
        .find(|d| d.environment == "dev")
        .unwrap();
    assert!(matches!(dev.policy.strategy, Strategy::NewestBuild));
    assert_eq!(
        dev.targets[0],
        Target::Manifest {
            file: "dev/deployment.yaml".into(),
            container: Some("api".into())
        }
    );
}

#[test]
fn digest_strategy_follows_the_tag_in_the_reference() {
    let text = format!(
        "{HEADER}\n[images.migrator]\nimage = \"ghcr.io/org/migrator:latest\"\nstrategy = \"digest\"\ntargets = [{{ kind = \"manifest\", file = \"job.yaml\" }}]\n"
    );
    let config = parse(&text).unwrap_or_else(|d| panic!("{d}"));
    let m = &config.images["migrator"];
    assert_eq!(m.reference.tag, None);
    assert!(
        matches!(&m.deployments[0].policy.strategy, Strategy::Digest { tag } if tag == "latest")
    );

    let tagged = format!(
        "{HEADER}\n[images.api]\nimage = \"ghcr.io/org/api:v1\"\ntargets = [{{ kind = \"manifest\", file = \"d.yaml\" }}]\n"
    );
    let d = parse(&tagged).unwrap_err();
    assert!(
        d.items[0]
            .message
            .contains("names a tag, but the strategy chooses tags"),
        "{d}"
    );
}

#[test]
fn paths_cannot_escape_the_repository() {
    for file in ["../etc/passwd", "/etc/passwd", "a/../../b"] {
        let text = format!(
            "{HEADER}\n[images.api]\nimage = \"ghcr.io/org/api\"\ntargets = [{{ kind = \"manifest\", file = \"{file}\" }}]\n"
        );
        let d = parse(&text).unwrap_err();
        assert!(
            d.items.iter().all(|i| i.message.starts_with("file:")),
            "{file}: {d}"
        );
    }
}

#[test]
fn missing_pieces_point_at_their_section() {
    let text = "[environments.prod]\nbranch = \"deploy/prod\"\n\n[images.api]\nimage = \"ghcr.io/org/api\"\n";
    let d = parse(text).unwrap_err();
    let rendered = d.to_string();
    assert!(
        rendered.contains("environment `prod` needs a git repository"),
        "{rendered}"
    );
    assert!(
        rendered.contains("image `api` has no targets for environment `prod`"),
        "{rendered}"
    );
    assert!(
        d.items
            .iter()
            .any(|i| matches!(i.origin, Origin::Section(_)))
    );
}

#[test]
fn deploy_safety_keys_parse_per_environment_and_promotion_is_checked() {
    let text = format!(
        r#"{HEADER}
[images.api]
image = "ghcr.io/org/api"
min_age = "24h"
age_from = "created"
[[images.api.targets]]
kind = "kustomization"
file = "{{environment}}/kustomization.yaml"
[images.api.env.prod]
promote_from = "staging"
soak = "2d"
pin_digest = true
[images.api.env.dev]
pin = "v1.4.0"
allow_downgrade = true
"#
    );
    let config = parse(&text).unwrap_or_else(|d| panic!("{d}"));
    let by_env = |e: &str| {
        &config.images["api"]
            .deployments
            .iter()
            .find(|d| d.environment == e)
            .unwrap()
            .safety
    };
    let prod = by_env("prod");
    assert_eq!(prod.promote_from.as_deref(), Some("staging"));
    assert_eq!(prod.soak, std::time::Duration::from_secs(2 * 86400));
    assert!(prod.pin_digest);
    assert_eq!(prod.min_age, Some(std::time::Duration::from_secs(86400)));
    assert_eq!(prod.age_from, image_updater::config::AgeFrom::Created);
    assert_eq!(by_env("dev").pin.as_deref(), Some("v1.4.0"));
    assert!(by_env("dev").allow_downgrade && !by_env("staging").allow_downgrade);

    let circle = text.replace(
        "[images.api.env.dev]\npin = \"v1.4.0\"",
        "[images.api.env.staging]\npromote_from = \"prod\"",
    );
    let err = parse(&circle).unwrap_err().to_string();
    assert!(err.contains("goes round in a circle"), "{err}");
    let bad = text
        .replace("age_from = \"created\"", "age_from = \"built\"")
        .replace("soak = \"2d\"", "soak = \"two days\"");
    let err = parse(&bad).unwrap_err();
    let text_err = err.to_string();
    assert!(
        text_err.contains("age_from: `built`: expected \"first-seen\" or \"created\""),
        "{text_err}"
    );
    assert!(text_err.contains("soak:"), "{text_err}");
    assert_eq!(locations(&err).len(), 2);
    let typo = text.replace("pin_digest", "pin_digests");
    let err = parse(&typo).unwrap_err().to_string();
    assert!(err.contains("did you mean `pin_digest`"), "{err}");
}

#[test]
fn targets_of_every_kind_and_their_mistakes() {
    let text = format!(
        r#"{HEADER}
[images.api]
image = "ghcr.io/org/api"
environments = ["prod"]
replaces = ["registry.example.com/old/api"]
[[images.api.targets]]
kind = "yaml"
file = "rollout.yaml"
image = "spec.template.spec.containers[name=api].image"
documents = {{ kind = "Rollout", "metadata.name" = "api" }}
[[images.api.targets]]
kind = "marker"
file = "values.yaml"
[[images.api.targets]]
kind = "marker"
file = "flux.yaml"
policy = "flux-system:api"
[[images.api.targets]]
kind = "helm"
file = "values.yaml"
tag = "sidecars[0].image.tag"
registry = "global.imageRegistry"
digest = "sidecars[0].image.digest"
"#
    );
    let config = parse(&text).unwrap_or_else(|d| panic!("{d}"));
    let api = &config.images["api"];
    assert_eq!(api.replaces, ["registry.example.com/old/api"]);
    let targets = &api.deployments[0].targets;
    assert!(
        matches!(&targets[0], Target::Yaml { documents, .. } if documents.len() == 2),
        "{:?}",
        targets[0]
    );
    assert!(
        matches!(&targets[1], Target::Marker { marker, .. } if marker.name == "api" && !marker.flux)
    );
    assert!(
        matches!(&targets[2], Target::Marker { marker, .. } if marker.name == "flux-system:api" && marker.flux)
    );
    assert!(matches!(
        &targets[3],
        Target::Helm {
            values: ImagePaths::Split {
                registry: Some(_),
                digest: Some(_),
                ..
            },
            ..
        }
    ));

    // Every mistake is reported in one run, at its key.
    let text = format!(
        r#"{HEADER}
[images.api]
image = "ghcr.io/org/api"
replaces = ["ghcr.io/org/api", "old.example.com/api:v1"]
[[images.api.targets]]
kind = "helm"
file = "values.yaml"
tag = "image..tag"
documents = {{ kind = "Rollout" }}
[[images.api.targets]]
kind = "marker"
file = "flux.yaml"
policy = "podinfo"
[[images.api.targets]]
kind = "yaml"
file = "rollout.yaml"
image = "containers[name=api"
"#
    );
    let d = parse(&text).unwrap_err();
    let all = d.to_string();
    for needle in [
        "replaces names the image itself",
        "replaces: `old.example.com/api:v1` names a tag or digest",
        "`documents` does not apply to helm targets",
        "tag: `image..tag` is not a path",
        "`podinfo` is not a Flux image policy name",
        "image: `containers[name=api` is not a path",
    ] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
}

/// Issue: `check` reported a bad file in three rounds (7, then 4, then 1 errors): target
/// errors appeared only once the image's other errors were fixed. All come in one run now.
#[test]
fn check_reports_target_errors_with_image_errors() {
    let text = format!(
        r#"{HEADER}
[images.api]
image = "ghcr.io/org/api"
constraint = ">= banana"
[[images.api.targets]]
kind = "kustomizaton"
file = "k.yaml"

[images.web]
image = "Not A Reference"
[[images.web.targets]]
kind = "helm"
file = "../outside.yaml"
tag = "image.tag"
"#
    );
    let d = parse(&text).unwrap_err();
    let all = d.to_string();
    for needle in [
        "constraint",
        "unknown target kind `kustomizaton`",
        "image: `Not A Reference`",
        "leaves the repository",
    ] {
        assert!(
            all.contains(needle),
            "{needle} missing from one run:\n{all}"
        );
    }
}

#[test]
fn tags_are_immutable_unless_the_image_says_otherwise() {
    let image = |extra: &str| {
        format!(
            "{HEADER}\n[images.api]\nimage = \"ghcr.io/org/api\"\n{extra}\n[[images.api.targets]]\nkind = \"kustomization\"\nfile = \"k.yaml\"\n"
        )
    };
    let config = parse(&image("")).unwrap();
    assert_eq!(
        config.images["api"].tags,
        image_updater::config::Tags::Immutable
    );
    let config = parse(&image("tags = \"mutable\"")).unwrap();
    assert_eq!(
        config.images["api"].tags,
        image_updater::config::Tags::Mutable
    );
    let err = parse(&image("tags = \"sometimes\"")).unwrap_err();
    assert!(
        err.to_string()
            .contains("tags: `sometimes` is neither `immutable` nor `mutable`"),
        "{err}"
    );
    assert_eq!(locations(&err), ["updater.toml:16:8"]);
}

#[test]
fn pull_request_settings_forges_and_their_mistakes() {
    use image_updater::config::{ForgeAuth, ForgeKind, MergeMethod, WriteMode};
    let good = r#"
[repositories.gh]
url = "https://github.com/acme/deploy.git"
credentials = "env:GIT_TOKEN"

[repositories.lab]
url = "git@gitlab.example.com:platform/apps/deploy.git"

[repositories.lab.forge]
type = "gitlab"
token = "file:/run/secrets/gitlab"

[environments.prod]
repository = "gh"
branch = "deploy/prod"
write = "pull-request"

[environments.prod.pull_request]
labels = ["image-updater"]
auto_merge = true
merge_method = "squash"

[environments.lab]
repository = "lab"
branch = "deploy/lab"

[images.api]
image = "ghcr.io/acme/api"
[[images.api.targets]]
kind = "kustomization"
file = "k.yaml"
name = "ghcr.io/acme/api"
[images.api.env.lab]
write = "pull-request"
"#;
    let config = parse(good).unwrap_or_else(|d| panic!("{d}"));
    let prod = &config.environments["prod"];
    assert_eq!(prod.write, WriteMode::PullRequest);
    assert_eq!(prod.pull_request.branch, "image-updater/prod");
    assert_eq!(prod.pull_request.merge_method, MergeMethod::Squash);
    let gh = config.repositories["gh"].forge.as_ref().unwrap();
    assert_eq!(
        (gh.kind, gh.api_url.as_str(), gh.project.as_str()),
        (ForgeKind::GitHub, "https://api.github.com", "acme/deploy")
    );
    assert!(matches!(gh.auth, ForgeAuth::Repository(_)));
    let lab = config.repositories["lab"].forge.as_ref().unwrap();
    assert_eq!(lab.api_url, "https://gitlab.example.com/api/v4");
    assert_eq!(lab.project, "platform/apps/deploy");
    let api_lab = config.images["api"]
        .deployments
        .iter()
        .find(|d| d.environment == "lab")
        .unwrap();
    assert_eq!(api_lab.write, Some(WriteMode::PullRequest));

    // Every mistake at once, each at its place.
    let bad = r#"
[repositories.plain]
url = "https://git.example.com/acme/deploy.git"

[repositories.odd]
url = "https://git.example.com/acme/other.git"

[repositories.odd.forge]
type = "bitbucket"
token = "vault:x"

[environments.prod]
repository = "plain"
branch = "deploy/prod"
write = "pull-reqest"

[environments.stage]
repository = "plain"
branch = "deploy/stage"
write = "pull-request"

[environments.qa]
repository = "plain"
branch = "deploy/qa"

[environments.qa.pull_request]
branch = "deploy/stage"
merge_method = "fast-forward"
labels = ["ok", ""]
"#;
    let d = parse(bad).unwrap_err();
    let text = d.to_string();
    for needle in [
        "`pull-reqest` is not a way to write",
        "`bitbucket` is not a forge",
        "unknown credential source `vault`",
        "environment `stage` proposes pull requests, but repository `plain` has no forge",
        "`fast-forward` is not a merge method",
        "labels: `` is not a name",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let at = locations(&d);
    assert!(
        at.iter().any(|l| l.starts_with("updater.toml:15:")),
        "{at:?}"
    );
    assert!(
        at.iter().any(|l| l.starts_with("updater.toml:9:")),
        "{at:?}"
    );
}

#[test]
fn verify_rules_keys_and_their_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    // A P-256 public key as `cosign generate-key-pair` writes it.
    let key = dir.path().join("cosign.pub");
    std::fs::write(
        &key,
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2ZobFTItyOXob9pKspR0aDSaXjVj\nDEp8brDskB6OnMUx7GQEblD2RDBBmP5TAKvspay2syp4Z+5s2V69vS8OKg==\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let private = dir.path().join("cosign.key");
    std::fs::write(&private, "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nabc\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n").unwrap();
    let good = format!(
        r#"{HEADER}
[images.api]
image = "ghcr.io/acme/api"
verify = {{ cosign_key = "file:{key}" }}
[[images.api.targets]]
kind = "kustomization"
file = "k.yaml"
name = "ghcr.io/acme/api"

[images.api.env.prod.verify]
cosign_keys = ["file:{key}", "env:NEXT_KEY"]
attestation = {{ predicate_type = "https://slsa.dev/provenance/v1", field = "predicate.runDetails.builder.id", equals = "https://github.com/acme/api" }}
"#,
        key = key.display()
    );
    let config = parse(&good).unwrap_or_else(|d| panic!("{d}"));
    let by_env = |env: &str| {
        config.images["api"]
            .deployments
            .iter()
            .find(|d| d.environment == env)
            .unwrap()
            .verify
            .clone()
            .unwrap()
    };
    assert_eq!(by_env("dev").keys.len(), 1);
    assert!(by_env("dev").attestation.is_none());
    let prod = by_env("prod");
    assert_eq!(prod.keys.len(), 2);
    let rule = prod.attestation.as_ref().unwrap();
    assert_eq!(rule.predicate_type, "https://slsa.dev/provenance/v1");
    assert_eq!(
        rule.field.as_ref().unwrap().0,
        "predicate.runDetails.builder.id"
    );

    // Every mistake at once, each at its place.
    let bad = format!(
        r#"{HEADER}
[images.api]
image = "ghcr.io/acme/api"
verify = {{ cosign_key = "file:{private}" }}
[[images.api.targets]]
kind = "kustomization"
file = "k.yaml"
name = "ghcr.io/acme/api"

[images.api.env.dev.verify]
cosign_keys = ["docker-config", "file:{missing}"]

[images.api.env.staging.verify]
attestation = {{ field = "predicate.builder.id" }}

[images.api.env.prod.verify]
cosign_key = "file:{key}"
certificate_identity = "me@example.com"
attestation = {{ predicate_type = "https://slsa.dev/provenance/v1", field = "predicate..id", equals = "x" }}
"#,
        private = private.display(),
        missing = dir.path().join("nope.pub").display(),
        key = key.display(),
    );
    let d = parse(&bad).unwrap_err();
    let text = d.to_string();
    for needle in [
        "cosign_key: it is a private key: give the public half (cosign.pub)",
        "cosign_key: docker's config holds registry logins, not keys",
        "cosign_key: cannot read",
        "verify names no key",
        "keyless verification needs certificate_identity, certificate_oidc_issuer and trusted_root",
        "field: expected a dotted path",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let at = locations(&d);
    assert!(
        at.iter().any(|l| l.starts_with("updater.toml:16:25")),
        "{at:?}"
    );
}

#[test]
fn cluster_settings_and_their_mistakes() {
    let good = format!(
        r#"{HEADER}
[cluster]
endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379/"]
name = "prod-eu"
lease = "15s"
credentials = "env:ETCD_LOGIN"
"#
    );
    let config = parse(&good).unwrap_or_else(|d| panic!("{d}"));
    let cluster = config.cluster.unwrap();
    assert_eq!(
        cluster.endpoints,
        ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    );
    assert_eq!(cluster.name, "prod-eu");
    assert_eq!(cluster.lease, std::time::Duration::from_secs(15));
    let defaults = parse(&format!(
        "{HEADER}\n[cluster]\nendpoints = [\"http://127.0.0.1:2379\"]\n"
    ))
    .unwrap()
    .cluster
    .unwrap();
    // The default name comes from the repositories written to: another set, another name.
    assert!(defaults.name.starts_with("repos-"), "{}", defaults.name);
    assert_eq!(defaults.lease.as_secs(), 10);
    let elsewhere = parse(&format!(
        "{}\n[cluster]\nendpoints = [\"http://127.0.0.1:2379\"]\n",
        HEADER.replace("org/manifests", "other/manifests")
    ))
    .unwrap()
    .cluster
    .unwrap();
    assert!(elsewhere.name.starts_with("repos-"));
    assert_ne!(elsewhere.name, defaults.name);

    let bad = format!(
        r#"{HEADER}
[cluster]
backend = "zookeeper"
endpoints = ["https://etcd.example:2379", "http://user:pw@10.0.0.1:2379", "etcd:2379"]
name = "a/b"
lease = "1s"
members = 3
"#
    );
    let d = parse(&bad).unwrap_err();
    let text = d.to_string();
    for needle in [
        "`zookeeper` is not a cluster backend",
        "[cluster] has https:// endpoints but no ca_file",
        "credentials go in `credentials`",
        "use 1 to 64 letters",
        "a lease is 2s to 300s",
        "unknown key `members`",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(
        locations(&d)
            .iter()
            .any(|l| l.starts_with("updater.toml:16:")),
        "{:?}",
        locations(&d)
    );

    // TLS: https endpoints with etcd's CA, and a client certificate.
    let tls = parse(&format!(
        r#"{HEADER}
[cluster]
endpoints = ["https://etcd-1:2379", "https://etcd-2:2379"]
ca_file = "/etc/image-updater/etcd-ca.pem"
tls_certificate = "/etc/image-updater/etcd-client.pem"
tls_key = "/etc/image-updater/etcd-client.key"
"#
    ))
    .unwrap_or_else(|d| panic!("{d}"))
    .cluster
    .unwrap()
    .tls
    .unwrap();
    assert_eq!(
        tls.ca_file,
        std::path::Path::new("/etc/image-updater/etcd-ca.pem")
    );
    assert!(tls.client.is_some());
    for (section, needle) in [
        (
            "endpoints = [\"https://etcd-1:2379\", \"http://etcd-2:2379\"]\nca_file = \"/ca.pem\"",
            "endpoints mix https:// and http://",
        ),
        (
            "endpoints = [\"https://etcd-1:2379\"]\nca_file = \"ca.pem\"",
            "ca_file: `ca.pem` is not an absolute path",
        ),
        (
            "endpoints = [\"https://etcd-1:2379\"]\nca_file = \"/ca.pem\"\ntls_certificate = \"/c.pem\"",
            "needs both tls_certificate and tls_key",
        ),
        (
            "endpoints = [\"http://etcd-1:2379\"]\nca_file = \"/ca.pem\"",
            "TLS files are set but the endpoints are http://",
        ),
    ] {
        let text = parse(&format!("{HEADER}\n[cluster]\n{section}\n"))
            .unwrap_err()
            .to_string();
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

/// A plain-http forge API needs `insecure = true`, as a registry does: its token would travel
/// in the clear. And nothing `check` prints shows a password written in a URL's userinfo.
#[test]
fn a_plain_http_forge_needs_insecure_and_passwords_are_never_printed() {
    let forge = |extra: &str| {
        format!(
            r#"
[repositories.manifests]
url = "https://git.example.com/org/manifests.git"

[repositories.manifests.forge]
type = "gitea"
api_url = "http://git.example.com/api/v1"
token = "file:/run/secrets/gitea"
{extra}
[environments.dev]
branch = "deploy/dev"
write = "pull-request"
"#
        )
    };
    let err = parse(&forge("")).unwrap_err();
    assert!(err.to_string().contains("insecure = true"), "{err}");
    assert!(parse(&forge("insecure = true")).is_ok());
    let leaky = format!(
        "{}\n[cluster]\nendpoints = [\"http://root:etcd-pw@127.0.0.1:2379\"]\n",
        forge("").replace(
            "http://git.example.com/api/v1",
            "https://bot:forge-pw@git.example.com/api/v1"
        )
    );
    let err = parse(&leaky).unwrap_err().to_string();
    assert!(err.contains("is not an etcd client URL"), "{err}");
    assert!(err.contains("must be a plain url"), "{err}");
    assert!(
        !err.contains("etcd-pw") && !err.contains("forge-pw"),
        "{err}"
    );
}
