//! `image-updater status`, `hold` and `release`: what the daemon knows about each image in
//! each environment, and the hand brake.
//!
//! These read the state dir the daemon writes. `hold` and `release` write only `holds.json`,
//! which the daemon reads at every cycle, so they take effect without a reload.

use image_updater::config::{self, Config};
use image_updater::daemon::safety::human;
use image_updater::daemon::state::{
    Holds, Lift, ManualHold, RequestStore, Status, StatusStore, now,
};
use serde::Serialize;

use super::{ConfigArgs, Outcome};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    common: ConfigArgs,
    /// text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
    /// Only this image (its alias).
    #[arg(long, value_name = "ALIAS")]
    image: Option<String>,
    /// Only this environment.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    /// Every field of each image and environment, on lines of its own, instead of the table.
    #[arg(long)]
    long: bool,
}

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

#[derive(Serialize)]
struct Row {
    image: String,
    environment: String,
    branch: String,
    current: Option<String>,
    candidate: Option<String>,
    /// Why the candidate is not on the branch, when it is not.
    waiting: Option<String>,
    /// Newer tags whose digests failed the `verify` rules, and why.
    unverified: Option<String>,
    /// The open pull (merge) request that proposes the candidate.
    request: Option<String>,
    hold: Option<String>,
    last_check: Option<String>,
    last_update: Option<String>,
    last_update_at: Option<String>,
    last_commit: Option<String>,
    last_error: Option<String>,
    /// How often the image is polled: its interval, stretched when its registry's budget
    /// cannot meet it.
    interval_seconds: f64,
}

pub fn status(args: StatusArgs) -> Outcome {
    let Some(config) = args.common.load() else {
        return Outcome::Negative;
    };
    if let Some(alias) = &args.image
        && !config.images.contains_key(alias)
    {
        let known: Vec<&str> = config.images.keys().map(String::as_str).collect();
        eprintln!(
            "error: no image `{alias}` in the config; its images are: {}",
            known.join(", ")
        );
        return Outcome::Usage;
    }
    if let Some(env) = &args.env
        && !config.environments.contains_key(env)
    {
        let known: Vec<&str> = config.environments.keys().map(String::as_str).collect();
        eprintln!(
            "error: no environment `{env}` in the config; its environments are: {}",
            known.join(", ")
        );
        return Outcome::Usage;
    }
    let state_dir = announce(args.common.state_dir(&config));
    let plan = image_updater::daemon::budget::Plan::new(&config);
    for warning in plan.warnings() {
        eprintln!("warning: {warning}");
    }
    let store = StatusStore::open(&state_dir);
    let holds = Holds::read(&state_dir);
    let mut rows = Vec::new();
    for image in config.images.values() {
        if args.image.as_ref().is_some_and(|a| *a != image.alias) {
            continue;
        }
        for d in &image.deployments {
            if args.env.as_ref().is_some_and(|e| *e != d.environment) {
                continue;
            }
            let s: Status = store.get(&image.alias, &d.environment);
            let manual = holds
                .active(&image.alias, &d.environment)
                .map(describe_hold);
            let revert = s.held.as_ref().map(|h| {
                format!(
                    "revert: {} held since {} (the branch had {})",
                    h.value, h.since, h.found
                )
            });
            let pin = d
                .safety
                .pin
                .as_ref()
                .map(|p| format!("pinned to {p} in the config"));
            rows.push(Row {
                image: image.alias.clone(),
                environment: d.environment.clone(),
                branch: config.environments[&d.environment].branch.clone(),
                current: s.current.clone(),
                candidate: s.candidate.clone(),
                waiting: s.waiting.clone(),
                unverified: s.unverified.clone(),
                request: s.request.clone(),
                hold: manual.or(revert).or(pin),
                last_check: s.last_check.map(|t| t.to_string()),
                last_update: s.last_update.clone(),
                last_update_at: s.last_update_at.clone(),
                last_commit: s.last_commit.clone(),
                last_error: s.last_error.clone(),
                interval_seconds: plan.interval(image).as_secs_f64(),
            });
        }
    }
    if args.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        );
        return Outcome::Success;
    }
    // Values come from registries (tags, error texts): never raw to the terminal.
    let say = |line: String| println!("{}", super::terminal::safe(&line));
    // The open pull requests, one per environment shown.
    let requests = RequestStore::open(&state_dir);
    let open: Vec<String> = config
        .environments
        .keys()
        .filter(|e| args.env.as_ref().is_none_or(|want| want == *e))
        .filter_map(|e| {
            requests
                .get(e)
                .map(|r| format!("{e}: {} {}", r.name(), r.url))
        })
        .collect();
    if !args.long {
        table(&rows).into_iter().for_each(say);
        if !open.is_empty() {
            say(String::new());
            say("OPEN REQUESTS".into());
            open.into_iter().for_each(say);
        }
        return Outcome::Success;
    }
    for line in open {
        say(format!("open: {line}"));
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for r in &rows {
        say(format!("{} in {} ({})", r.image, r.environment, r.branch));
        say(format!("  current:    {}", dash(&r.current)));
        say(format!("  candidate:  {}", dash(&r.candidate)));
        if let Some(w) = &r.waiting {
            say(format!("  waiting:    {w}"));
        }
        if let Some(u) = &r.unverified {
            say(format!("  unverified: {u}"));
        }
        if let Some(u) = &r.request {
            say(format!("  request:    {u}"));
        }
        if let Some(h) = &r.hold {
            say(format!("  hold:       {h}"));
        }
        say(format!(
            "  interval:   {}",
            human(std::time::Duration::from_secs_f64(r.interval_seconds))
        ));
        say(format!("  last check: {}", dash(&r.last_check)));
        if let Some(u) = &r.last_update {
            say(format!(
                "  last update: {u} at {} ({})",
                dash(&r.last_update_at),
                dash(&r.last_commit)
            ));
        }
        if let Some(e) = &r.last_error {
            say(format!("  last error: {e}"));
        }
    }
    Outcome::Success
}

/// One line per image and environment: what runs, what would, when it was checked, and why
/// it waits; digests and commits shortened.
fn table(rows: &[Row]) -> Vec<String> {
    let short = |v: &Option<String>| {
        v.as_deref()
            .map(image_updater::reference::short_digests)
            .unwrap_or_else(|| "-".into())
    };
    let ago = |v: &Option<String>| {
        v.as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .and_then(|t| {
                std::time::Duration::try_from(jiff::Timestamp::now().duration_since(t)).ok()
            })
            .map(|d| format!("{} ago", image_updater::daemon::safety::human(d)))
            .unwrap_or_else(|| "never".into())
    };
    let mut lines = vec![[
        "IMAGE".to_string(),
        "ENV".into(),
        "CURRENT".into(),
        "CANDIDATE".into(),
        "CHECKED".into(),
        "STATE".into(),
    ]];
    for r in rows {
        let state = if let Some(e) = &r.last_error {
            format!("error: {e}")
        } else if let Some(h) = &r.hold {
            h.clone()
        } else if let Some(w) = &r.waiting {
            format!("waiting: {w}")
        } else if r.current.is_some() && r.current == r.candidate {
            "up to date".into()
        } else if r.candidate.is_some() {
            "to be written".into()
        } else {
            "-".into()
        };
        lines.push([
            r.image.clone(),
            r.environment.clone(),
            short(&r.current),
            short(&r.candidate),
            ago(&r.last_check),
            state,
        ]);
    }
    let mut widths = [0usize; 6];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    lines
        .iter()
        .map(|cells| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:w$}  "));
                }
            }
            out
        })
        .collect()
}

fn describe_hold(h: &ManualHold) -> String {
    let until = h.until.as_deref().unwrap_or("released");
    let why = h
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    format!("held by hand since {} until {until}{why}", h.since)
}

pub fn hold(args: HoldArgs) -> Outcome {
    let Some(config) = args.common.load() else {
        return Outcome::Negative;
    };
    if let Err(e) = deployed(&config, &args.alias, &args.env) {
        eprintln!("error: {e}");
        return Outcome::Usage;
    }
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
            Ok(d) => Some((jiff::Timestamp::now() + d).to_string()),
            Err(e) => {
                eprintln!("error: --for `{d}`: {e}");
                return Outcome::Usage;
            }
        },
        (None, None) => None,
    };
    let state_dir = announce(args.common.state_dir(&config));
    let mut holds = Holds::read(&state_dir);
    let hold = ManualHold {
        since: now(),
        until,
        reason: args.reason,
    };
    println!("{} in {}: {}", args.alias, args.env, describe_hold(&hold));
    holds
        .holds
        .entry(args.alias)
        .or_default()
        .insert(args.env, hold);
    write(&holds, &state_dir)
}

pub fn release(args: ReleaseArgs) -> Outcome {
    let Some(config) = args.common.load() else {
        return Outcome::Negative;
    };
    if let Err(e) = deployed(&config, &args.alias, &args.env) {
        eprintln!("error: {e}");
        return Outcome::Usage;
    }
    let state_dir = announce(args.common.state_dir(&config));
    let mut holds = Holds::read(&state_dir);
    let manual = holds
        .holds
        .get_mut(&args.alias)
        .and_then(|e| e.remove(&args.env))
        .is_some();
    // A revert hold lives in status.json, which only the daemon writes: ask it to lift it.
    let revert = StatusStore::open(&state_dir)
        .get(&args.alias, &args.env)
        .held;
    if let Some(r) = &revert {
        holds.lifted.entry(args.alias.clone()).or_default().insert(
            args.env.clone(),
            Lift {
                value: r.value.clone(),
                at: now(),
            },
        );
    }
    match (manual, &revert) {
        (false, None) => {
            println!("{} in {}: nothing is held", args.alias, args.env);
            return Outcome::Negative;
        }
        (true, _) => println!("{} in {}: hold released", args.alias, args.env),
        _ => {}
    }
    if let Some(r) = revert {
        println!(
            "{} in {}: {} may be deployed again (from the next cycle)",
            args.alias, args.env, r.value
        );
    }
    write(&holds, &state_dir)
}

/// Says on stderr which state dir is read, and warns when it holds no daemon state (a
/// different `--state-dir` or `settings.state_dir` than the daemon's, most likely).
fn announce(state_dir: std::path::PathBuf) -> std::path::PathBuf {
    eprintln!("state dir: {}", state_dir.display());
    if !state_dir.join("status.json").exists() {
        eprintln!(
            "warning: {} holds no status.json: no daemon has run with this state dir (is it the one the daemon uses?)",
            state_dir.display()
        );
    }
    state_dir
}

fn write(holds: &Holds, state_dir: &std::path::Path) -> Outcome {
    match holds.write(state_dir) {
        Ok(()) => Outcome::Success,
        Err(e) => {
            eprintln!(
                "error: cannot write {}: {e}",
                Holds::path(state_dir).display()
            );
            Outcome::Usage
        }
    }
}
