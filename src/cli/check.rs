//! `image-updater check`: validate a config without touching a registry or a repository.

use std::path::PathBuf;

use image_updater::config;
use image_updater::config::diagnostic::{self, Code};

use super::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(
        long,
        short,
        env = "IMAGE_UPDATER_CONFIG",
        default_value = "updater.toml"
    )]
    config: PathBuf,
}

pub fn run(args: Args) -> Outcome {
    match config::load(&args.config) {
        Ok(config) => {
            let deployments: usize = config.images.values().map(|i| i.deployments.len()).sum();
            println!(
                "{}: ok ({} images, {} environments, {} image deployments, {} registries, {} repositories)",
                args.config.display(),
                config.images.len(),
                config.environments.len(),
                deployments,
                config.registries.len(),
                config.repositories.len(),
            );
            unset_variables(&config);
            cloud_credentials(&config);
            explain_verification(&config);
            for warning in image_updater::daemon::budget::Plan::new(&config).warnings() {
                eprintln!("{}", diagnostic::warning(Code::Budget, &warning));
            }
            Outcome::Success
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            Outcome::Negative
        }
    }
}

/// Says what each keyless `verify` rule checks, from its trusted root when it is a file: the
/// trusted root decides whether a certificate needs an SCT, and which logs and timestamp
/// authorities may say when it signed.
fn explain_verification(config: &config::Config) {
    use image_updater::trust::trusted_root::TrustedRoot;
    for image in config.images.values() {
        for d in &image.deployments {
            let Some(keyless) = d.verify.as_ref().and_then(|v| v.keyless.as_ref()) else {
                continue;
            };
            let at = format!("{} ({})", image.alias, d.environment);
            let root = match &keyless.trusted_root {
                config::CredentialRef::File(path) => std::fs::read_to_string(path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| TrustedRoot::parse(&text)),
                other => {
                    println!(
                        "{at}: keyless: the trusted root is read from {other} when the daemon runs"
                    );
                    continue;
                }
            };
            let root = match root {
                Ok(root) => root,
                Err(e) => {
                    let says = format!("{at}: trusted root {}: {e}", keyless.trusted_root);
                    eprintln!("{}", diagnostic::warning(Code::TrustedRoot, &says));
                    continue;
                }
            };
            let plural = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            println!(
                "{at}: keyless: a certificate for {} from {} issued by {}; {}; signing time from {} (signed entry timestamp; inclusion proof and checkpoint when present) or {} (RFC 3161), else the certificate must be valid now",
                keyless.identity,
                keyless.issuer,
                plural(
                    root.authorities.len(),
                    "certificate authority",
                    "certificate authorities"
                ),
                if root.ct_logs.is_empty() {
                    "no SCT asked (the trusted root names no CT log)".to_string()
                } else {
                    format!(
                        "an embedded SCT from one of {}",
                        plural(root.ct_logs.len(), "CT log", "CT logs")
                    )
                },
                plural(root.logs.len(), "transparency log", "transparency logs"),
                plural(
                    root.timestamp_authorities.len(),
                    "timestamp authority",
                    "timestamp authorities"
                ),
            );
        }
    }
}

/// Says where each registry signing in with a cloud's credentials would get them here, or
/// warns with what each link of the chain said (the daemon may run where something has
/// them). The registry itself is not asked.
fn cloud_credentials(config: &config::Config) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    for registry in config.registries.values() {
        let Some(reference) = registry.credentials.as_ref().filter(|c| c.is_cloud()) else {
            continue;
        };
        match runtime.block_on(image_updater::secrets::identity(reference)) {
            Ok(Some(from)) => println!("registry {}: {reference}: {from}", registry.name),
            Ok(None) => {}
            Err(why) => {
                let says = format!("registry {}: {why}", registry.name);
                eprintln!("{}", diagnostic::warning(Code::Cloud, &says));
            }
        }
    }
}

/// Warns about `env:` credentials whose variable is not set here. Only a warning: the daemon
/// may run with another environment (systemd's EnvironmentFile, a container's env).
fn unset_variables(config: &config::Config) {
    let mut refs: Vec<(String, &config::CredentialRef)> = Vec::new();
    for r in config.registries.values() {
        refs.extend(
            r.credentials
                .iter()
                .map(|c| (format!("registry {}", r.name), c)),
        );
    }
    for r in config.repositories.values() {
        refs.extend(
            r.credentials
                .iter()
                .map(|c| (format!("repository {}", r.name), c)),
        );
    }
    if let Some(w) = &config.webhooks {
        refs.push(("webhooks".into(), &w.secret));
    }
    for n in config.notifications.values() {
        refs.extend(
            n.credentials
                .iter()
                .map(|c| (format!("notification {}", n.name), c)),
        );
        if let config::NotificationUrl::Secret(c) = &n.url {
            refs.push((format!("notification {}", n.name), c));
        }
    }
    for (owner, reference) in refs {
        if let config::CredentialRef::Env(var) = reference
            && std::env::var_os(var).is_none()
        {
            let says = format!(
                "{owner}: credentials env:{var}, but {var} is not set here (it must be where the daemon runs)"
            );
            eprintln!("{}", diagnostic::warning(Code::Unset, &says));
        }
    }
}
