//! `image-updater status`: what the daemon knows about each image in each environment, read
//! from the state dir it writes or, in a cluster, from etcd; and the hand brake (`hold`,
//! `release`, in [`holds`]).

use image_updater::daemon::overview::{self, Filter, Row};
use image_updater::daemon::safety::human;
use image_updater::state::RequestStore;

use super::{ConfigArgs, Outcome};

mod holds;
mod source;

pub use holds::{HoldArgs, ReleaseArgs, hold, release};
use source::Source;

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
    let view = match Source::open(&args.common, &config).and_then(|s| Ok((s.view()?, s))) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Negative;
        }
    };
    let (view, source) = view;
    let plan = image_updater::daemon::budget::Plan::new(&config);
    for warning in plan.warnings() {
        eprintln!("warning: {warning}");
    }
    let filter = Filter {
        image: args.image.clone(),
        exact: true,
        environment: args.env.clone(),
        state: None,
    };
    let rows = overview::rows(&config, &plan, &view, &view.holds, &filter);
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
    let open: Vec<String> = match source.state_dir() {
        None => Vec::new(),
        Some(state_dir) => {
            let requests = RequestStore::open(state_dir);
            config
                .environments
                .keys()
                .filter(|e| args.env.as_ref().is_none_or(|want| want == *e))
                .filter_map(|e| {
                    requests
                        .get(e)
                        .map(|r| format!("{e}: {} {}", r.name(), r.url))
                })
                .collect()
        }
    };
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
        if let Some(o) = &r.owner {
            say(format!("  owner:      {o}"));
        }
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
    // In a cluster, which replica owns each image.
    let owners = rows.iter().any(|r| r.owner.is_some());
    let mut header = vec![
        "IMAGE".to_string(),
        "ENV".into(),
        "CURRENT".into(),
        "CANDIDATE".into(),
        "CHECKED".into(),
        "STATE".into(),
    ];
    if owners {
        header.insert(5, "OWNER".into());
    }
    let mut lines = vec![header];
    for r in rows {
        let state = r.state_text.clone();
        let mut line = vec![
            r.image.clone(),
            r.environment.clone(),
            short(&r.current),
            short(&r.candidate),
            ago(&r.last_check),
            state,
        ];
        if owners {
            line.insert(5, r.owner.clone().unwrap_or_default());
        }
        lines.push(line);
    }
    let mut widths = vec![0usize; lines[0].len()];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    lines
        .iter()
        .map(|cells| {
            let mut out = String::new();
            for (i, (cell, &w)) in cells.iter().zip(&widths).enumerate() {
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
