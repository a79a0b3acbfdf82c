//! `write` and `[environments.NAME.pull_request]`: whether an environment's updates are pushed
//! or proposed, and the request they are proposed in. Whether the repository has a forge to
//! propose them on is checked once images are known ([`Validator::write_modes`]), since an
//! image may ask for pull requests in an environment that pushes.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{Validator, at, check_branch};
use crate::config::diagnostic::Origin;
use crate::config::model::{Config, MergeMethod, PullRequest, WriteMode};
use crate::config::raw::{RawPullRequest, Str};
use crate::config::template::Template;

/// The most labels, reviewers or assignees a request may name: more is a mistake, and each is
/// a request to the forge.
const MAX_NAMES: usize = 20;

pub(super) fn parse_write(text: &str) -> Result<WriteMode, String> {
    match text {
        "push" => Ok(WriteMode::Push),
        "pull-request" => Ok(WriteMode::PullRequest),
        other => Err(format!(
            "`{other}` is not a way to write: expected \"push\" or \"pull-request\""
        )),
    }
}

impl Validator<'_> {
    /// The environment's request settings, with the update branch rendered for it.
    pub(super) fn pull_request(
        &mut self,
        raw: Option<&Spanned<RawPullRequest>>,
        environment: &str,
        branch: &str,
        repository: &str,
    ) -> Option<PullRequest> {
        let values = BTreeMap::from([
            ("environment", environment.to_string()),
            ("branch", branch.to_string()),
            ("repository", repository.to_string()),
        ]);
        let Some(raw) = raw else {
            return Some(defaults(&values));
        };
        let raw = raw.get_ref();
        let update_branch = match &raw.branch {
            Some(t) => self.parse(t, "branch", |text| {
                let template = Template::parse(text)?;
                let used: Vec<&str> = template.variables().collect();
                if let Some(v) = used.iter().find(|v| !values.contains_key(**v)) {
                    return Err(format!(
                        "`{{{v}}}` is not known when the branch is named: use {{environment}}, {{branch}} or {{repository}}"
                    ));
                }
                check_branch(&template.render(&values))
            })?,
            None => defaults(&values).branch,
        };
        let labels = self.names(raw.labels.as_ref(), "labels");
        let reviewers = self.names(raw.reviewers.as_ref(), "reviewers");
        let assignees = self.names(raw.assignees.as_ref(), "assignees");
        let merge_method = match &raw.merge_method {
            Some(m) => self.parse(m, "merge_method", |m| match m {
                "merge" => Ok(MergeMethod::Merge),
                "squash" => Ok(MergeMethod::Squash),
                "rebase" => Ok(MergeMethod::Rebase),
                other => Err(format!(
                    "`{other}` is not a merge method: expected merge, squash or rebase"
                )),
            })?,
            None => MergeMethod::default(),
        };
        let flag = |f: &Option<Spanned<bool>>| f.as_ref().is_some_and(|f| *f.get_ref());
        Some(PullRequest {
            branch: update_branch,
            labels: labels?,
            reviewers: reviewers?,
            assignees: assignees?,
            draft: flag(&raw.draft),
            auto_merge: flag(&raw.auto_merge),
            merge_method,
        })
    }

    /// Labels or user names: non-empty, without control characters, and not too many.
    fn names(&mut self, list: Option<&Spanned<Vec<Str>>>, key: &str) -> Option<Vec<String>> {
        let Some(list) = list else {
            return Some(Vec::new());
        };
        if list.get_ref().len() > MAX_NAMES {
            self.error(
                at(list),
                format!("{key}: at most {MAX_NAMES}, not {}", list.get_ref().len()),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for name in list.get_ref() {
            let text = name.get_ref();
            if text.trim().is_empty() || text.len() > 255 || text.chars().any(char::is_control) {
                self.error(
                    at(name),
                    format!("{key}: `{}` is not a name", text.escape_debug()),
                );
                ok = false;
            } else {
                out.push(text.clone());
            }
        }
        ok.then_some(out)
    }

    /// Every environment or image that proposes its updates has a forge to propose them on,
    /// and no update branch is another environment's branch or another request's.
    pub(super) fn write_modes(
        &mut self,
        config: &Config,
        image_spans: &BTreeMap<String, std::ops::Range<usize>>,
        env_spans: &BTreeMap<String, std::ops::Range<usize>>,
    ) {
        let mut proposing: BTreeMap<&str, Origin> = BTreeMap::new();
        for env in config.environments.values() {
            if env.write == WriteMode::PullRequest {
                let span = env_spans.get(&env.name).cloned().unwrap_or(0..0);
                proposing.entry(&env.name).or_insert(Origin::Section(span));
            }
        }
        for image in config.images.values() {
            for d in &image.deployments {
                if d.write == Some(WriteMode::PullRequest) {
                    let span = image_spans.get(&image.alias).cloned().unwrap_or(0..0);
                    proposing
                        .entry(&d.environment)
                        .or_insert(Origin::Section(span));
                }
            }
        }
        let names: Vec<&str> = proposing.keys().copied().collect();
        for (env_name, origin) in proposing {
            let env = &config.environments[env_name];
            let repo = &config.repositories[&env.repository];
            if repo.forge.is_none() {
                self.error_hint(
                    origin.clone(),
                    format!(
                        "environment `{env_name}` proposes pull requests, but repository `{}` has no forge to open them on",
                        repo.name
                    ),
                    "add [repositories.NAME.forge] with type, api_url and token (github.com, gitlab.com and codeberg.org are known from the url, given credentials)",
                );
            }
            let clash = config.environments.values().find(|other| {
                other.repository == env.repository
                    && (other.branch == env.pull_request.branch
                        || other.base_branch.as_deref() == Some(env.pull_request.branch.as_str())
                        || (other.name != env.name
                            && names.contains(&other.name.as_str())
                            && other.pull_request.branch == env.pull_request.branch))
            });
            if let Some(other) = clash {
                self.error_hint(
                    origin,
                    format!(
                        "environment `{env_name}`: its update branch {} is also a branch of environment `{}`",
                        env.pull_request.branch, other.name
                    ),
                    "name the update branch after the environment: branch = \"image-updater/{environment}\"",
                );
            }
        }
    }
}

fn defaults(values: &BTreeMap<&str, String>) -> PullRequest {
    let template = Template::parse(PullRequest::DEFAULT_BRANCH).expect("the default is valid");
    PullRequest::on(template.render(values))
}
