//! `image-updater check`: validate a config without touching a registry or a repository.

use std::path::PathBuf;

use image_updater::config;

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
            for warning in image_updater::daemon::budget::Plan::new(&config).warnings() {
                eprintln!("warning: {warning}");
            }
            Outcome::Success
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            Outcome::Negative
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
            eprintln!(
                "warning: {owner}: credentials env:{var}, but {var} is not set here (it must be where the daemon runs)"
            );
        }
    }
}
