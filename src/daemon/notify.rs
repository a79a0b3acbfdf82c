//! After each cycle, one message per environment that changed or failed: what was updated
//! (old -> new, commit), what was held back by a revert, and what failed. Sent to every
//! `[notifications.NAME]` receiver as JSON or a Slack-compatible `{"text": ...}`, retried with
//! backoff; a receiver that stays down is logged and skipped, never blocking the next cycle
//! for long.

use std::time::Duration;

use serde::Serialize;

use super::report::Report;
use crate::config::{Config, Notification, NotificationFormat, NotificationUrl};
use crate::secrets::{self, Credential};

const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Message {
    pub environment: String,
    pub branch: String,
    pub repository: String,
    /// The pushed commit, when there is one.
    pub commit: Option<String>,
    pub updates: Vec<Update>,
    pub held: Vec<Problem>,
    pub failures: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Update {
    pub image: String,
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub image: String,
    pub reason: String,
}

/// The messages a cycle's report calls for: environments where something changed, a revert
/// was noticed, or something failed.
pub fn messages(config: &Config, report: &Report) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    for env in config.environments.values() {
        let mut m = Message {
            environment: env.name.clone(),
            branch: env.branch.clone(),
            repository: env.repository.clone(),
            ..Message::default()
        };
        for c in report.checks.iter().filter(|c| c.environment == env.name) {
            if let Err(e) = &c.result {
                m.failures.push(Problem {
                    image: c.alias.clone(),
                    reason: e.to_string(),
                });
            }
        }
        for b in report.branches.iter().filter(|b| b.environment == env.name) {
            match &b.result {
                Ok(o) => {
                    m.commit = o.commit.map(|c| c.to_string());
                    m.updates.extend(o.applied.iter().map(|a| Update {
                        image: a.alias.clone(),
                        old: a.old.clone(),
                        new: a.new.clone(),
                    }));
                    m.held
                        .extend(o.skipped.iter().filter(|s| s.reverted).map(|s| Problem {
                            image: s.alias.clone(),
                            reason: s.reason.clone(),
                        }));
                    m.failures.extend(o.failed.iter().map(|f| Problem {
                        image: f.alias.clone(),
                        reason: format!("{}: {}", f.file.display(), f.message),
                    }));
                }
                Err(e) => m.failures.push(Problem {
                    image: "*".into(),
                    reason: e.to_string(),
                }),
            }
        }
        if !(m.updates.is_empty() && m.held.is_empty() && m.failures.is_empty()) {
            out.push(m);
        }
    }
    out
}

/// The Slack-compatible text of a message.
pub fn text(m: &Message) -> String {
    let mut lines = vec![format!("*{}* ({})", m.environment, m.branch)];
    for u in &m.updates {
        lines.push(format!("• {}: {} → {}", u.image, u.old, u.new));
    }
    if let Some(c) = &m.commit {
        lines.push(format!("commit {}", &c[..c.len().min(12)]));
    }
    for h in &m.held {
        lines.push(format!("⏸ {}: {}", h.image, h.reason));
    }
    for f in &m.failures {
        lines.push(format!("✗ {}: {}", f.image, f.reason));
    }
    lines.join("\n")
}

/// Sends every message to every receiver.
pub async fn send(config: &Config, report: &Report) {
    if config.notifications.is_empty() {
        return;
    }
    let messages = messages(config, report);
    if messages.is_empty() {
        return;
    }
    let Ok(client) = reqwest::Client::builder().timeout(TIMEOUT).build() else {
        return;
    };
    for receiver in config.notifications.values() {
        let (url, token) = match resolve(receiver).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(notification = %receiver.name, error = %e, "cannot send notifications");
                continue;
            }
        };
        for m in &messages {
            let body = match receiver.format {
                NotificationFormat::Json => serde_json::to_value(m).expect("messages serialize"),
                NotificationFormat::Slack => serde_json::json!({ "text": text(m) }),
            };
            deliver(&client, receiver, &url, token.as_deref(), &body).await;
        }
    }
}

async fn resolve(receiver: &Notification) -> Result<(String, Option<String>), String> {
    let url = match &receiver.url {
        NotificationUrl::Plain(u) => u.clone(),
        NotificationUrl::Secret(r) => secrets::resolve(r, "notifications")
            .await
            .map_err(|e| e.to_string())?
            .map(Credential::into_text)
            .ok_or_else(|| format!("{r} is empty"))?,
    };
    let token = match &receiver.credentials {
        Some(r) => secrets::resolve(r, "notifications")
            .await
            .map_err(|e| e.to_string())?
            .map(Credential::into_text),
        None => None,
    };
    Ok((url, token))
}

async fn deliver(
    client: &reqwest::Client,
    receiver: &Notification,
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) {
    let mut wait = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let outcome = match request.send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => format!("HTTP {}", r.status()),
            // Without the URL, which may be the secret.
            Err(e) => e.without_url().to_string(),
        };
        tracing::warn!(notification = %receiver.name, attempt, error = %outcome, "notification not delivered");
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    tracing::error!(notification = %receiver.name, "notification dropped after {ATTEMPTS} attempts");
}
