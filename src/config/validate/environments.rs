//! `[environments.NAME]`: the repository and branch each environment is written to, the branch
//! it starts from, its priority when a registry's budget cannot poll every image at its
//! interval, and whether updates are pushed or proposed ([`super::pull_requests`]).

use std::collections::BTreeMap;

use toml::Spanned;

use super::pull_requests::parse_write;
use super::{Validator, at, check_branch};
use crate::config::diagnostic::{Code, Diagnostic, Origin};
use crate::config::model::{Environment, Repository, WriteMode};
use crate::config::raw::RawEnvironment;
use crate::suggest::suggest;

/// The highest `priority` an environment may have.
pub const MAX_PRIORITY: u32 = 1000;

impl Validator<'_> {
    pub(super) fn environments(
        &mut self,
        raw: &BTreeMap<String, Spanned<RawEnvironment>>,
        repositories: &BTreeMap<String, Repository>,
        source_len: usize,
    ) -> BTreeMap<String, Environment> {
        let mut out = BTreeMap::new();
        let repo_names: Vec<&str> = repositories.keys().map(String::as_str).collect();
        for (name, env) in raw {
            let (name, span) = (name.clone(), env.span());
            let env = env.get_ref();
            let repository = match &env.repository {
                Some(r) if repositories.contains_key(r.get_ref()) => Some(r.get_ref().clone()),
                Some(r) => {
                    let hint =
                        suggest(r.get_ref(), &repo_names).map(|s| format!("did you mean `{s}`?"));
                    self.push(
                        Diagnostic::new(
                            format!(
                                "repository `{}` is not defined in [repositories]",
                                r.get_ref()
                            ),
                            at(r),
                        )
                        .with_maybe_hint(hint),
                    );
                    None
                }
                None if repositories.len() == 1 => repositories.keys().next().cloned(),
                None if repositories.is_empty() => {
                    self.error_hint(
                        Origin::Section(source_len..source_len),
                        format!("environment `{name}` needs a git repository, and none is defined"),
                        "add a [repositories.NAME] table with the url of the manifests repository",
                    );
                    None
                }
                None => {
                    self.error_hint(
                        Origin::Section(span.clone()),
                        format!("environment `{name}` does not say which repository it writes to"),
                        format!("add repository = one of {}", repo_names.join(", ")),
                    );
                    None
                }
            };
            let branch = match &env.branch {
                Some(b) => self.parse(b, "branch", check_branch),
                None => {
                    self.error_hint(
                        Origin::Section(span),
                        format!("environment `{name}` has no branch"),
                        format!("add branch = \"deploy/{name}\""),
                    );
                    None
                }
            };
            let base_branch = env
                .base_branch
                .as_ref()
                .and_then(|b| self.parse(b, "base_branch", check_branch));
            let priority = match &env.priority {
                None => Some(0),
                Some(p) => match u32::try_from(*p.get_ref()) {
                    Ok(n) if n <= MAX_PRIORITY => Some(n),
                    _ => {
                        self.error_hint(
                            at(p),
                            format!("priority {} is out of range", p.get_ref()),
                            format!("a whole number from 0 (the default) to {MAX_PRIORITY}; higher is polled first"),
                        );
                        None
                    }
                },
            };
            let write = match &env.write {
                Some(w) => self.parse(w, "write", parse_write),
                None => Some(WriteMode::Push),
            };
            let windows = self.within(Code::Windows, |v| {
                v.windows(
                    env.windows.as_ref(),
                    env.freeze.as_ref(),
                    env.freeze_file.as_ref(),
                )
            });
            if let (Some(repository), Some(branch), Some(priority), Some(write), Some(windows)) =
                (repository, branch, priority, write, windows)
                && let Some(pull_request) = self.within(Code::PullRequests, |v| {
                    v.pull_request(env.pull_request.as_ref(), &name, &branch, &repository)
                })
            {
                out.insert(
                    name.clone(),
                    Environment {
                        name,
                        repository,
                        branch,
                        base_branch,
                        priority,
                        write,
                        pull_request,
                        windows,
                    },
                );
            }
        }
        out
    }
}
