//! `IMAGE_UPDATER_*` overrides. In a file of their own: they set process environment
//! variables, which would leak into other tests running in the same process.

// figment::Jail fixes the closure's error type to figment's own, which is large.
#![allow(clippy::result_large_err)]

use std::path::Path;

use image_updater::config::{self, CredentialRef, LogFormat};

const CONFIG: &str = r#"
[settings]
log_level = "info"

[registries.ghcr]
prefix = "ghcr.io"
credentials = "env:GHCR_TOKEN"

[repositories.manifests]
url = "https://git.example.com/org/manifests.git"

[environments.prod]
branch = "deploy/prod"
"#;

#[test]
fn settings_and_credentials_can_be_overridden() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("IMAGE_UPDATER_SETTINGS__LOG_LEVEL", "debug");
        jail.set_env("IMAGE_UPDATER_SETTINGS__LOG_FORMAT", "json");
        jail.set_env("IMAGE_UPDATER_SETTINGS__INTERVAL", "90s");
        jail.set_env(
            "IMAGE_UPDATER_REGISTRIES__GHCR__CREDENTIALS",
            "file:/run/secrets/ghcr",
        );
        jail.set_env(
            "IMAGE_UPDATER_REPOSITORIES__MANIFESTS__CREDENTIALS",
            "env:GIT_TOKEN",
        );
        let c = config::parse(Path::new("updater.toml"), CONFIG).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(c.settings.log_level, "debug");
        assert_eq!(c.settings.log_format, LogFormat::Json);
        assert_eq!(c.settings.interval.as_secs(), 90);
        assert_eq!(
            c.registries["ghcr"].credentials,
            Some(CredentialRef::File("/run/secrets/ghcr".into()))
        );
        assert_eq!(
            c.repositories["manifests"].credentials,
            Some(CredentialRef::Env("GIT_TOKEN".into()))
        );
        Ok(())
    });
}

#[test]
fn a_bad_override_names_the_variable() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("IMAGE_UPDATER_SETTINGS__INTERVAL", "soon");
        jail.set_env("IMAGE_UPDATER_REGISTRIES__GHCR__CREDENTIALS", "vault:x");
        let d = config::parse(Path::new("updater.toml"), CONFIG).unwrap_err();
        let rendered = d.to_string();
        assert!(
            rendered.contains("--> environment variable IMAGE_UPDATER_SETTINGS__INTERVAL"),
            "{rendered}"
        );
        assert!(
            rendered
                .contains("--> environment variable IMAGE_UPDATER_REGISTRIES__GHCR__CREDENTIALS"),
            "{rendered}"
        );
        Ok(())
    });
}

#[test]
fn an_override_for_an_undefined_section_or_key_is_refused() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("IMAGE_UPDATER_SETTINGS__INTERVALL", "5m");
        jail.set_env("IMAGE_UPDATER_REGISTRIES__QUAY__CREDENTIALS", "env:QUAY");
        let d = config::parse(Path::new("updater.toml"), CONFIG).unwrap_err();
        let rendered = d.to_string();
        assert!(
            rendered.contains("unknown setting `intervall`"),
            "{rendered}"
        );
        assert!(
            rendered.contains("did you mean IMAGE_UPDATER_SETTINGS__INTERVAL?"),
            "{rendered}"
        );
        assert!(
            rendered.contains("registry `quay` is not defined in the file"),
            "{rendered}"
        );
        Ok(())
    });
}

#[test]
fn unrelated_variables_are_ignored() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("IMAGE_UPDATER_CONFIG", "/etc/image-updater/updater.toml");
        config::parse(Path::new("updater.toml"), CONFIG).unwrap_or_else(|d| panic!("{d}"));
        Ok(())
    });
}
