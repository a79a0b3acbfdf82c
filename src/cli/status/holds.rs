//! `image-updater hold` and `release`: the hand brake. They write only the holds (the state
//! dir's `holds.json`, or etcd's holds key in a cluster), which the daemon reads at every
//! cycle, so they take effect without a reload.

use image_updater::config::{self, Config};
use image_updater::state::{ManualHold, this_second};

use super::source::Source;
use crate::cli::{ConfigArgs, Outcome};

#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    /// The image's alias in the config.
    alias: String,
    /// The environment to hold it in.
    #[arg(long)]
    env: String,
    /// Until when (RFC 3339, e.g. 2026-12-01T09:00:00Z); without it, until `release`.
    #[arg(long, value_name = "TIME", conflicts_with = "for_")]
    until: Option<String>,
    /// For how long, e.g. 24h or 3d.
    #[arg(long = "for", id = "for_", value_name = "DURATION")]
    for_: Option<String>,
    /// Why, shown by `status` and in the logs.
    #[arg(long)]
    reason: Option<String>,
    /// Who holds it, remembered with the hold (default: the user running the command).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    #[command(flatten)]
    common: ConfigArgs,
}

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The image's alias in the config.
    alias: String,
    /// The environment to release it in.
    #[arg(long)]
    env: String,
    /// Who releases it, remembered with the release (default: the user running the command).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    #[command(flatten)]
    common: ConfigArgs,
}

/// Checks that `alias` is deployed to `env` in the config.
fn deployed(config: &Config, alias: &str, env: &str) -> Result<(), String> {
    let Some(image) = config.images.get(alias) else {
        let known: Vec<&str> = config.images.keys().map(String::as_str).collect();
        return Err(format!(
            "no image `{alias}` in the config; its images are: {}",
            known.join(", ")
        ));
    };
    if image.deployments.iter().any(|d| d.environment == env) {
        Ok(())
    } else {
        let envs: Vec<&str> = image
            .deployments
            .iter()
            .map(|d| d.environment.as_str())
            .collect();
        Err(format!(
            "image `{alias}` is not deployed to `{env}`; it is deployed to: {}",
            envs.join(", ")
        ))
    }
}

/// The config, when it deploys `alias` to `env`; otherwise the outcome, with what is wrong
/// said on stderr.
fn deploying(common: &ConfigArgs, alias: &str, env: &str) -> Result<Config, Outcome> {
    let config = common.load().ok_or(Outcome::Negative)?;
    deployed(&config, alias, env).map_err(|e| {
        eprintln!("error: {e}");
        Outcome::Usage
    })?;
    Ok(config)
}

/// Where the holds are, or the outcome, with why not said on stderr.
fn open(common: &ConfigArgs, config: &Config) -> Result<Source, Outcome> {
    Source::open(common, config).map_err(|e| {
        eprintln!("error: {e}");
        Outcome::Negative
    })
}

pub fn hold(args: HoldArgs) -> Outcome {
    let config = match deploying(&args.common, &args.alias, &args.env) {
        Ok(config) => config,
        Err(outcome) => return outcome,
    };
    let until = match (&args.until, &args.for_) {
        (Some(t), _) => match t.parse::<jiff::Timestamp>() {
            Ok(t) => Some(t.to_string()),
            Err(e) => {
                eprintln!(
                    "error: --until `{t}`: {e} (expected RFC 3339, e.g. 2026-12-01T09:00:00Z)"
                );
                return Outcome::Usage;
            }
        },
        (None, Some(d)) => match config::parse_duration(d) {
            Ok(d) => Some((this_second() + d).to_string()),
            Err(e) => {
                eprintln!("error: --for `{d}`: {e}");
                return Outcome::Usage;
            }
        },
        (None, None) => None,
    };
    let source = match open(&args.common, &config) {
        Ok(source) => source,
        Err(outcome) => return outcome,
    };
    let hold = ManualHold {
        since: this_second().to_string(),
        until,
        reason: args.reason,
        by: Some(args.by.unwrap_or_else(who)),
    };
    let written = source.update_holds(|holds| holds.hold(&args.alias, &args.env, hold.clone()));
    match written {
        Ok(()) => {
            println!("{} in {}: {}", args.alias, args.env, hold.describe());
            Outcome::Success
        }
        Err(e) => {
            eprintln!("error: {e}");
            Outcome::Negative
        }
    }
}

pub fn release(args: ReleaseArgs) -> Outcome {
    let config = match deploying(&args.common, &args.alias, &args.env) {
        Ok(config) => config,
        Err(outcome) => return outcome,
    };
    let source = match open(&args.common, &config) {
        Ok(source) => source,
        Err(outcome) => return outcome,
    };
    let view = match source.view() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Negative;
        }
    };
    let manual = view
        .holds
        .holds
        .get(&args.alias)
        .is_some_and(|e| e.contains_key(&args.env));
    // A revert hold lives in the daemon's status, which only the daemon writes: ask it to
    // lift it.
    let revert = view.status(&args.alias, &args.env).held;
    if !manual && revert.is_none() {
        println!("{} in {}: nothing is held", args.alias, args.env);
        return Outcome::Negative;
    }
    let by = args.by.unwrap_or_else(who);
    let written = source.update_holds(|holds| {
        holds.release(
            &args.alias,
            &args.env,
            revert.as_ref().map(|r| r.value.as_str()),
            &by,
        );
    });
    if let Err(e) = written {
        eprintln!("error: {e}");
        return Outcome::Negative;
    }
    if manual {
        println!("{} in {}: hold released", args.alias, args.env);
    }
    if let Some(r) = revert {
        println!(
            "{} in {}: {} may be deployed again (from the next cycle)",
            args.alias, args.env, r.value
        );
    }
    Outcome::Success
}

/// Who runs the command, as the holds remember it: `$USER`, or the uid.
fn who() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid {}", real_uid()))
}

/// The real user id, from `/proc/self/status`.
fn real_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into())
}
