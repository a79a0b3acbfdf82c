//! `image-updater poll ALIAS [--env ENV]`: the running daemon checks an image now (after a
//! hotfix push, say) and this prints what its cycle did.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use image_updater::daemon::control::{ControlFile, PollAnswer};

use super::terminal::safe;
use super::{ConfigArgs, Outcome};

#[derive(Debug, clap::Args)]
pub struct PollArgs {
    /// The image's alias in the config.
    alias: String,
    /// Print only this environment's part (the image is checked in all of its environments).
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    #[command(flatten)]
    common: ConfigArgs,
    /// text or json.
    #[arg(long, value_enum, default_value = "text")]
    output: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Longer than the daemon's own wait for the cycle, so its answer is the one seen.
const TIMEOUT: Duration = Duration::from_secs(330);

pub fn poll(args: PollArgs) -> Outcome {
    let Some(config) = args.common.load() else {
        return Outcome::Usage;
    };
    let state_dir = args.common.state_dir(&config);
    let control = match ControlFile::read(&state_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", safe(&e));
            return Outcome::Usage;
        }
    };
    let runtime = match crate::cli::small_runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Usage;
        }
    };
    let answer = runtime.block_on(ask(&control, &args.alias, args.env.as_deref()));
    match answer {
        Ok(answer) => {
            print(&answer, args.output);
            let failed = answer.checks.iter().any(|c| c.error.is_some())
                || answer.writes.iter().any(|w| w.error.is_some());
            if failed {
                Outcome::Negative
            } else {
                Outcome::Success
            }
        }
        Err(e) => {
            eprintln!("error: {}", safe(&e));
            Outcome::Usage
        }
    }
}

/// Sends the request to the daemon that wrote `control` and waits for its answer.
async fn ask(control: &ControlFile, alias: &str, env: Option<&str>) -> Result<PollAnswer, String> {
    let addr = reachable(control.listen);
    let mut url = reqwest::Url::parse(&format!("http://{addr}/poll")).map_err(|e| e.to_string())?;
    url.query_pairs_mut().append_pair("image", alias);
    if let Some(env) = env {
        url.query_pairs_mut().append_pair("env", env);
    }
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(url)
        .bearer_auth(&control.token)
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot reach the daemon at {addr} (pid {} wrote control.json): {e}",
                control.pid
            )
        })?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        return Err(format!("the daemon answered {status}: {message}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("the daemon's answer: {e}"))
}

/// A wildcard listen address is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

fn print(answer: &PollAnswer, format: Format) {
    if let Format::Json = format {
        println!(
            "{}",
            serde_json::to_string_pretty(answer).expect("the answer serializes")
        );
        return;
    }
    let say = |line: String| println!("{}", safe(&line));
    say(format!("checked {}", answer.image));
    for c in &answer.checks {
        let what = match (&c.error, &c.candidate, &c.waiting) {
            (Some(e), _, _) => format!("failed: {e}"),
            (None, _, Some(w)) => format!("waiting: {w}"),
            (None, Some(candidate), None) => format!(
                "chose {candidate}{}",
                c.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            (None, None, None) => format!(
                "nothing to write{}",
                c.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        };
        say(format!("  {}: {what}", c.environment));
    }
    for w in &answer.writes {
        let what = match (&w.error, &w.update, &w.skipped) {
            (Some(e), _, _) => format!("not written: {e}"),
            (None, Some(update), _) => format!(
                "{update} in {}",
                w.commit
                    .as_deref()
                    .map(|c| &c[..c.len().min(12)])
                    .unwrap_or("the working tree")
            ),
            (None, None, Some(s)) => format!("unchanged, {s}"),
            (None, None, None) => "unchanged".into(),
        };
        say(format!("  {} ({}): {what}", w.branch, w.environment));
    }
    if answer.writes.is_empty() {
        say("  nothing was written".into());
    }
}
