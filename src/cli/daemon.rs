//! `image-updater run`, `once` and `plan`: the daemon, one cycle, and a preview.

use std::net::SocketAddr;

use image_updater::config::{Config, LogFormat};
use image_updater::daemon::{self, Engine, Report, Shared};

use super::{ConfigArgs, Outcome};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    common: ConfigArgs,
    /// Serve /metrics, /healthz and /readyz here; overrides `settings.listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

#[derive(Debug, clap::Args)]
pub struct OnceArgs {
    #[command(flatten)]
    common: ConfigArgs,
    /// Check and show what would change; commit and push nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    common: ConfigArgs,
}

/// Logs to stderr: text or JSON per the config, level from `RUST_LOG` or `settings.log_level`.
fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let mut filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The file watcher logs every event it sees; with the log written beside the config each
    // log line would be an event that is logged again. Its own lines stop at warnings.
    for quiet in ["notify=warn", "inotify=warn"] {
        filter = filter.add_directive(quiet.parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the async runtime starts")
}

pub fn run(args: RunArgs) -> Outcome {
    daemon::memory::configure();
    let Some(config) = args.common.load() else {
        return Outcome::Negative;
    };
    // Loading a large config is the process's biggest burst of allocations.
    daemon::memory::trim();
    init_logging(&config);
    let options = daemon::Options {
        config_path: args.common.config.clone(),
        state_dir: args.common.state_dir.clone(),
        listen: args.listen,
    };
    match runtime().block_on(daemon::run(options, config)) {
        Ok(()) => Outcome::Success,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            Outcome::Negative
        }
    }
}

/// One cycle over every image; the report, or why it could not start.
fn one_cycle(common: &ConfigArgs, config: Config, dry_run: bool) -> Result<Report, String> {
    let state_dir = common.state_dir(&config);
    image_updater::private::create_dir(&state_dir)
        .map_err(|e| image_updater::private::state_dir_error(&state_dir, &e))?;
    runtime().block_on(async move {
        let shared = Shared::open(state_dir);
        shared.join_cluster_state(&config);
        let engine = Engine::new(std::sync::Arc::new(config), &shared)?;
        let report = engine.cycle(&[], dry_run).await;
        // What the process learned (tokens, digests, status) is kept for the next run.
        shared.save();
        Ok(report)
    })
}

pub fn once(args: OnceArgs) -> Outcome {
    let Some(config) = args.common.load() else {
        return Outcome::Negative;
    };
    init_logging(&config);
    match one_cycle(&args.common, config, args.dry_run) {
        Ok(report) => {
            print_summary(&report, args.dry_run);
            if report.failed() {
                Outcome::Negative
            } else {
                Outcome::Success
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            Outcome::Usage
        }
    }
}

pub fn plan(args: PlanArgs) -> Outcome {
    let Some(config) = args.common.load() else {
        return Outcome::Negative;
    };
    init_logging(&config);
    match one_cycle(&args.common, config, true) {
        Ok(report) => {
            let mut changed = false;
            for b in &report.branches {
                let Ok(outcome) = &b.result else { continue };
                if let Some(base) = &outcome.created_from {
                    changed = true;
                    println!(
                        "# {} ({}): does not exist yet; would be created from {base}",
                        b.branch, b.environment
                    );
                }
                if let Some(request) = &outcome.request {
                    changed = true;
                    println!("# {} ({}): {request}", b.branch, b.environment);
                }
                for f in &outcome.files {
                    changed = true;
                    let path = f.path.display().to_string();
                    let diff = similar::TextDiff::from_lines(&f.before, &f.after);
                    println!("# {} ({})", b.branch, b.environment);
                    print!(
                        "{}",
                        diff.unified_diff()
                            .context_radius(3)
                            .header(&format!("a/{path}"), &format!("b/{path}"))
                    );
                }
            }
            if !changed {
                println!("nothing would change");
            }
            print_unverified(&report);
            print_failures(&report);
            if report.failed() {
                Outcome::Negative
            } else {
                Outcome::Success
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            Outcome::Usage
        }
    }
}

fn print_summary(report: &Report, dry_run: bool) {
    for b in &report.branches {
        let Ok(outcome) = &b.result else { continue };
        for a in &outcome.applied {
            let verb = match (dry_run, outcome.request.is_some()) {
                (true, false) => "would update",
                (false, false) => "updated",
                (true, true) => "would propose",
                (false, true) => "proposed",
            };
            println!("{}: {verb} {} {} -> {}", b.branch, a.alias, a.old, a.new);
        }
        if let Some(base) = &outcome.created_from
            && !dry_run
        {
            println!("{}: created from {base}", b.branch);
        }
        if let Some(commit) = outcome.commit {
            println!("{}: pushed {commit}", b.branch);
        }
        if let Some(request) = &outcome.request {
            println!("{}: {request}", b.branch);
        }
    }
    if report
        .branches
        .iter()
        .all(|b| b.result.as_ref().is_ok_and(|o| o.applied.is_empty()))
        && !report.failed()
    {
        println!("everything is up to date");
    }
    print_unverified(report);
    print_failures(report);
}

/// Tags the `verify` rules kept out, with why: an unsigned release is news for `plan`.
fn print_unverified(report: &Report) {
    for c in &report.checks {
        if let Ok(chosen) = &c.result {
            for line in &chosen.unverified {
                println!("# {} ({}): not eligible: {line}", c.alias, c.environment);
            }
        }
    }
}

fn print_failures(report: &Report) {
    for c in &report.checks {
        if let Err(e) = &c.result {
            eprintln!("{} ({}): check failed: {e}", c.alias, c.environment);
        }
    }
    for b in &report.branches {
        match &b.result {
            Err(e) => eprintln!("{} ({}): {e}", b.branch, b.environment),
            Ok(o) => {
                for f in &o.failed {
                    eprintln!(
                        "{} ({}): {}: {}",
                        f.alias,
                        b.environment,
                        f.file.display(),
                        f.message
                    );
                }
            }
        }
    }
}
