//! `image-updater check`: validate a config without running anything.

use std::path::PathBuf;

use super::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(long, short, default_value = "updater.toml")]
    config: PathBuf,
}

pub fn run(_args: Args) -> Outcome {
    Outcome::Success
}
