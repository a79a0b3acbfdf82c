//! What `image-updater check` prints for configs people get wrong, one snapshot a mistake
//! (the `insta` crate): a change to any message, code, location or hint is a reviewed diff
//! of `tests/snapshots/`, not an accident. Each case is a config a user could write; the
//! table covers every concern that owns a section, and the warnings of a config that loads.
//!
//! `cargo insta review` (or `INSTA_UPDATE=always cargo test --test check_output`) accepts a
//! deliberate change.

use std::process::Command;

/// A config that loads, to which each case adds its mistake.
const BASE: &str = r#"[registries.ghcr]
prefix = "ghcr.io"

[repositories.manifests]
url = "https://git.example.com/org/manifests.git"

[environments.prod]
repository = "manifests"
branch = "deploy/prod"

[images.api]
image = "ghcr.io/org/api"
environments = ["prod"]

[[images.api.targets]]
kind = "kustomization"
file = "overlays/prod/kustomization.yaml"
"#;

/// `(name, config)`: the snapshot's name, and the whole file `check` reads.
fn cases() -> Vec<(&'static str, String)> {
    vec![
        ("not_toml", "[settings\ninterval = 5m\n".to_string()),
        (
            "unknown_key_with_a_suggestion",
            BASE.replace("environments = [\"prod\"]", "environments = [\"prod\"]\nstrategyy = \"semver\""),
        ),
        (
            "every_problem_in_one_run",
            format!(
                "[settings]\ninterval = \"nope\"\n\n{}",
                BASE.replace("file = \"overlays/prod/kustomization.yaml\"", "file = \"/etc/kustomization.yaml\"")
                    .replace("branch = \"deploy/prod\"", "branch = \"deploy..prod\"")
                    .replace("environments = [\"prod\"]", "environments = [\"prod\", \"stagin\"]\nallow_tags = [\"regexp:(\"]")
            ),
        ),
        (
            "a_pull_request_without_a_forge",
            BASE.replace("branch = \"deploy/prod\"", "branch = \"deploy/prod\"\nwrite = \"pull-request\""),
        ),
        (
            "credentials_in_a_url",
            BASE.replace("prefix = \"ghcr.io\"", "prefix = \"ghcr.io\"\napi_url = \"https://bot:s3cret@ghcr.io\""),
        ),
        (
            "a_verify_key_that_names_no_source",
            BASE.replace("environments = [\"prod\"]", "environments = [\"prod\"]\n\n[images.api.verify]\ncosign_key = \"keys/cosign.pub\""),
        ),
        (
            "a_cluster_without_endpoints",
            format!("{BASE}\n[cluster]\nendpoints = []\n"),
        ),
        (
            "webhooks_without_a_secret",
            format!("{BASE}\n[webhooks]\nlisten = \"127.0.0.1:9000\"\n"),
        ),
        (
            "an_ecr_registry_where_no_aws_credentials_are",
            BASE.replace("prefix = \"ghcr.io\"", "prefix = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com\"")
                .replace("image = \"ghcr.io/org/api\"", "image = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/org/api\""),
        ),
        (
            "an_artifact_registry_where_no_google_credentials_are",
            BASE.replace("prefix = \"ghcr.io\"", "prefix = \"europe-docker.pkg.dev\"")
                .replace("image = \"ghcr.io/org/api\"", "image = \"europe-docker.pkg.dev/project/repo/api\""),
        ),
        (
            "an_acr_registry_where_no_azure_credentials_are",
            BASE.replace("prefix = \"ghcr.io\"", "prefix = \"team.azurecr.io\"")
                .replace("image = \"ghcr.io/org/api\"", "image = \"team.azurecr.io/org/api\""),
        ),
        (
            "charts_written_wrong",
            format!(
                "{BASE}\n[charts.ingress]\nrepository = \"ftp://charts.example.com\"\nplatforms = [\"linux/arm64\"]\n\
                 [[charts.ingress.targets]]\nkind = \"helm\"\nfile = \"values.yaml\"\n\n\
                 [charts.podinfo]\nchart = \"oci://ghcr.io/org/charts/podinfo:6.9.0\"\nname = \"podinfo\"\n\
                 [[charts.podinfo.targets]]\nkind = \"helmrelease\"\nfile = \"podinfo.yaml\"\ntag = \"spec.chart.spec.version\"\n\n\
                 [[images.api.targets]]\nkind = \"argocd\"\nfile = \"app.yaml\"\n"
            ),
        ),
        (
            "deploy_windows_written_wrong",
            BASE.replace(
                "branch = \"deploy/prod\"",
                "branch = \"deploy/prod\"\nwindows = [\"Mon-Thu 9-16 Europe/Berlin\", \"Fri 09:00-12:00 Europe/Berln\"]\n\
                 freeze = [{ from = \"2027-01-04\", to = \"2026-12-20\" }, { to = \"2027-02-01\", reson = \"x\" }]",
            ),
        ),
        (
            "ui_written_wrong",
            format!("{BASE}\n[ui]\nread_token = \"s3cret\"\npage_size = 5000\nenabeld = true\n"),
        ),
        (
            "warnings_of_a_config_that_loads",
            BASE.replace("environments = [\"prod\"]", "environments = [\"prod\"]\ninterval = \"10s\"")
                .replace("prefix = \"ghcr.io\"", "prefix = \"ghcr.io\"\nrate_limit = 0.01\ncredentials = \"env:IMAGE_UPDATER_TEST_UNSET_TOKEN\""),
        ),
    ]
}

#[test]
fn check_says_what_is_wrong_with_each_config() {
    let mut ran = 0;
    for (name, config) in cases() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("updater.toml"), &config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_image-updater"))
            .args(["check", "--config", "updater.toml"])
            .current_dir(dir.path())
            .env_remove("IMAGE_UPDATER_CONFIG")
            .env_remove("IMAGE_UPDATER_TEST_UNSET_TOKEN")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws/credentials",
            )
            .env("AWS_CONFIG_FILE", "/nonexistent/aws/config")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CLOUDSDK_CONFIG", "/nonexistent/gcloud")
            .env("GCE_METADATA_HOST", "127.0.0.1:9")
            .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
            .output()
            .expect("image-updater runs");
        let said = format!(
            "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        insta::assert_snapshot!(name, said, &config);
        ran += 1;
    }
    assert_eq!(ran, cases().len());
}
