//! Command-line interface: one module per subcommand.
//!
//! Exit codes are part of the interface, so scripts can rely on them: 0 success, 1 a negative
//! answer (invalid config, no tag selected), 2 bad arguments or input that could not be read.

mod check;
mod cluster;
mod daemon;
mod generate;
mod import;
mod poll;
mod status;
mod terminal;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use image_updater::config::{self, Config};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "image-updater", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file and print every problem with file:line:col.
    Check(check::Args),
    /// Show which tag a policy would select for an image, and why each tag was rejected.
    Test(Box<test::Args>),
    /// Run the daemon: poll every image on its schedule and commit what changes.
    Run(daemon::RunArgs),
    /// Run one cycle over every image, then exit (non-zero if any image failed).
    Once(daemon::OnceArgs),
    /// Show what the next cycle would change, as a unified diff per branch; write nothing.
    Plan(daemon::PlanArgs),
    /// Ask the running daemon to check an image now, and print what it did.
    Poll(poll::PollArgs),
    /// Per image and environment: what the branch has, the candidate, and why it waits.
    Status(status::StatusArgs),
    /// Stop updating an image in an environment, until a time or until `release`.
    Hold(status::HoldArgs),
    /// Lift a hold, or a hold image-updater made after a person reverted an update.
    Release(status::ReleaseArgs),
    /// Write an updater.toml from Flux's or Argo CD Image Updater's image automation.
    Import(import::Args),
    /// Replicas sharing the work through `[cluster]`.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions(generate::CompletionsArgs),
    /// Print the man page, image-updater(1), in roff.
    Man,
    /// Print the JSON Schema of updater.toml, for editors (taplo, Even Better TOML).
    Schema,
}

/// The options every command that reads the config and the state dir shares.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// The config file.
    #[arg(
        long,
        short,
        env = "IMAGE_UPDATER_CONFIG",
        default_value = "updater.toml"
    )]
    pub config: PathBuf,
    /// Where mirrors, caches and status live; overrides `settings.state_dir`.
    #[arg(long, env = "IMAGE_UPDATER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// The validated config, or `None` after printing its diagnostics.
    pub fn load(&self) -> Option<Config> {
        match config::load(&self.config) {
            Ok(c) => Some(c),
            Err(d) => {
                eprintln!("{d}");
                None
            }
        }
    }

    /// `--state-dir`, else the config's.
    pub fn state_dir(&self, config: &Config) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| config.settings.state_dir.clone())
    }
}

/// A single-threaded runtime for a command that makes a few requests and exits.
pub fn small_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Outcome of a subcommand, mapped to the documented exit codes.
pub enum Outcome {
    Success,
    Negative,
    Usage,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Test(args) => test::run(*args),
        Command::Run(args) => daemon::run(args),
        Command::Once(args) => daemon::once(args),
        Command::Plan(args) => daemon::plan(args),
        Command::Poll(args) => poll::poll(args),
        Command::Status(args) => status::status(args),
        Command::Hold(args) => status::hold(args),
        Command::Release(args) => status::release(args),
        Command::Cluster(command) => cluster::run(command),
        Command::Import(args) => import::run(args),
        Command::Completions(args) => generate::completions(args),
        Command::Man => generate::man(),
        Command::Schema => generate::schema(),
    };
    match outcome {
        Outcome::Success => ExitCode::SUCCESS,
        Outcome::Negative => ExitCode::from(1),
        Outcome::Usage => ExitCode::from(2),
    }
}
