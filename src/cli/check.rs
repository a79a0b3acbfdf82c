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
            Outcome::Success
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            Outcome::Negative
        }
    }
}
