//! A bare mirror of one git repository in the state dir.
//!
//! Network work (fetch, push) goes through the `git` CLI, which already speaks every transport
//! and credential scheme users have; object work (reading files, building trees and commits,
//! updating refs) is done in-process with gix, without a worktree. Credentials reach git through
//! `GIT_CONFIG_*` environment variables: never argv, never a file.
//!
//! Pushes carry a lease (`--force-with-lease=BRANCH:EXPECTED`) and are never forced: if anyone
//! moved the branch since our fetch, the push is rejected and the caller starts over.

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use gix::ObjectId;
use gix::objs::tree::EntryKind;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

pub use super::error::GitError;
use crate::config::Repository;
use crate::secrets::{self, Credential};

/// How long one git command may take before it is killed.
const GIT_TIMEOUT: Duration = Duration::from_secs(300);

fn repo_err(e: impl std::error::Error) -> GitError {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    GitError::Repository(message)
}

/// What happened to a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    Pushed,
    /// Someone else moved the branch first (stale lease, non-fast-forward): fetch and retry.
    Raced(String),
}

/// A bare mirror: `refs/remotes/origin/*` follow the remote's branches.
#[derive(Debug)]
pub struct Mirror {
    dir: PathBuf,
    url: String,
    /// `GIT_CONFIG_*` and ssh settings for every git command.
    env: Vec<(String, String)>,
    /// When the last fetch finished.
    fetched: std::sync::Mutex<Option<std::time::Instant>>,
}

/// A fetch this recent serves every branch update of the repository: the updates of one batch
/// share it. A push is leased on the branch's head, so a change made since is found by a
/// rejected push, which fetches again.
pub const FETCH_FRESH: Duration = Duration::from_secs(5);

impl Mirror {
    /// Opens the mirror of `repo` under `state_dir/git/`, creating it when missing and
    /// recreating it when it is not a usable repository. Credentials are read now, once.
    pub async fn open(state_dir: &Path, repo: &Repository) -> Result<Mirror, GitError> {
        let dir = state_dir.join("git").join(format!("{}.git", repo.name));
        let env = git_env(repo).await?;
        let mirror = Mirror {
            dir,
            url: repo.url.clone(),
            env,
            fetched: std::sync::Mutex::new(None),
        };
        let usable =
            gix::open(&mirror.dir).is_ok() && mirror.git(&["rev-parse", "--git-dir"]).await.is_ok();
        if !usable {
            if mirror.dir.exists() {
                // Only what was once a git repository is removed: anything else in its place
                // is someone's, and stays.
                let was_git = ["HEAD", "objects", "refs"]
                    .iter()
                    .any(|p| mirror.dir.join(p).exists());
                if !was_git {
                    return Err(GitError::Repository(format!(
                        "{} exists and is not a git mirror; move it away (image-updater keeps its mirrors there)",
                        mirror.dir.display()
                    )));
                }
                tracing::warn!(dir = %mirror.dir.display(), "mirror is not a usable repository; recreating it");
                std::fs::remove_dir_all(&mirror.dir).map_err(repo_err)?;
            }
            std::fs::create_dir_all(&mirror.dir).map_err(repo_err)?;
            mirror.git(&["init", "--bare", "--quiet"]).await?;
        }
        // Keep the remote in line with the config, whatever it said before.
        mirror
            .git(&["config", "remote.origin.url", &mirror.url])
            .await?;
        mirror
            .git(&[
                "config",
                "--replace-all",
                "remote.origin.fetch",
                "+refs/heads/*:refs/remotes/origin/*",
            ])
            .await?;
        Ok(mirror)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Brings `refs/remotes/origin/*` (every branch, in one fetch) up to date with the remote.
    pub async fn fetch(&self) -> Result<(), GitError> {
        let started = std::time::Instant::now();
        self.git(&["fetch", "--prune", "--no-tags", "--quiet", "origin"])
            .await?;
        *self.fetched.lock().expect("fetch time lock") = Some(started);
        tracing::debug!(mirror = %self.dir.display(), "fetched");
        Ok(())
    }

    /// The next [`Mirror::fetch_recent`] fetches: another writer may have pushed since the
    /// last fetch (in a cluster, the replica that held the branch's lock before).
    pub fn forget_fetch(&self) {
        *self.fetched.lock().expect("fetch time lock") = None;
    }

    /// [`Mirror::fetch`], unless a fetch started within [`FETCH_FRESH`].
    pub async fn fetch_recent(&self) -> Result<(), GitError> {
        let last = *self.fetched.lock().expect("fetch time lock");
        if last.is_some_and(|at| at.elapsed() < FETCH_FRESH) {
            return Ok(());
        }
        self.fetch().await
    }

    /// The remote's `branch` as of the last fetch.
    pub fn head(&self, branch: &str) -> Result<Option<ObjectId>, GitError> {
        let repo = self.repo()?;
        let name = format!("refs/remotes/origin/{branch}");
        match repo.try_find_reference(name.as_str()).map_err(repo_err)? {
            Some(mut r) => Ok(Some(r.peel_to_id().map_err(repo_err)?.detach())),
            None => Ok(None),
        }
    }

    /// Reads files of `commit`; open once for many reads.
    pub fn reader(&self, commit: ObjectId) -> Result<Reader, GitError> {
        let repo = self.repo()?;
        let tree = repo
            .find_commit(commit)
            .map_err(repo_err)?
            .tree_id()
            .map_err(repo_err)?
            .detach();
        Ok(Reader { repo, tree })
    }

    /// Writes a commit on top of `parent` replacing `files`, and returns its id. No ref moves.
    pub fn commit(
        &self,
        parent: ObjectId,
        files: &[(PathBuf, String, EntryKind)],
        repo_cfg: &Repository,
        message: &str,
    ) -> Result<ObjectId, GitError> {
        let repo = self.repo()?;
        let base_tree = repo
            .find_commit(parent)
            .map_err(repo_err)?
            .tree_id()
            .map_err(repo_err)?;
        let mut editor = repo.edit_tree(base_tree).map_err(repo_err)?;
        for (path, text, kind) in files {
            let blob = repo.write_blob(text.as_bytes()).map_err(repo_err)?;
            let rela = path.to_str().ok_or_else(|| GitError::Path {
                path: path.display().to_string(),
                reason: "not UTF-8".into(),
            })?;
            editor
                .upsert(rela, *kind, blob.detach())
                .map_err(repo_err)?;
        }
        let tree = editor.write().map_err(repo_err)?.detach();
        let signature = gix::actor::Signature {
            name: repo_cfg.author.name.as_str().into(),
            email: repo_cfg.author.email.as_str().into(),
            time: gix::date::Time::now_utc(),
        };
        let mut commit = gix::objs::Commit {
            tree,
            parents: [parent].into_iter().collect(),
            author: signature.clone(),
            committer: signature,
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        if let Some(key) = &repo_cfg.signing_key {
            let signature = super::sign::ssh_sign(&commit, key)?;
            commit
                .extra_headers
                .push(("gpgsig".into(), signature.into()));
        }
        Ok(repo.write_object(&commit).map_err(repo_err)?.detach())
    }

    /// Pushes `commit` to `branch`, leased on the branch being at `expected` (or absent).
    /// On success the mirror's remote-tracking ref is moved by compare-and-swap.
    pub async fn push(
        &self,
        commit: ObjectId,
        branch: &str,
        expected: Option<ObjectId>,
    ) -> Result<Push, GitError> {
        let refname = format!("refs/heads/{branch}");
        let lease = format!(
            "--force-with-lease={refname}:{}",
            expected.map(|e| e.to_string()).unwrap_or_default()
        );
        let refspec = format!("{commit}:{refname}");
        let out = self
            .run(&["push", "--porcelain", "--quiet", &lease, "origin", &refspec])
            .await?;
        match (out.success, rejected(&out.stdout)) {
            (true, None) => {
                self.track(branch, expected, commit)?;
                Ok(Push::Pushed)
            }
            (_, Some(reason)) if is_race(&reason) => Ok(Push::Raced(reason)),
            (_, Some(reason)) => Err(GitError::Command {
                command: "push".into(),
                message: format!("{branch} rejected: {reason}"),
            }),
            (false, None) => Err(self.failure("push", &out.stderr)),
        }
    }

    /// Deletes `branch` on the remote, leased on it being at `expected`: a branch someone moved
    /// since is left alone.
    pub async fn delete(&self, branch: &str, expected: ObjectId) -> Result<Push, GitError> {
        let refname = format!("refs/heads/{branch}");
        let lease = format!("--force-with-lease={refname}:{expected}");
        let refspec = format!(":{refname}");
        let out = self
            .run(&["push", "--porcelain", "--quiet", &lease, "origin", &refspec])
            .await?;
        match (out.success, rejected(&out.stdout)) {
            (true, None) => Ok(Push::Pushed),
            (_, Some(reason)) => Ok(Push::Raced(reason)),
            (false, None) => Err(self.failure("push", &out.stderr)),
        }
    }

    /// A commit's tree and parents.
    pub fn tree_and_parents(
        &self,
        commit: ObjectId,
    ) -> Result<(ObjectId, Vec<ObjectId>), GitError> {
        let repo = self.repo()?;
        let commit = repo.find_commit(commit).map_err(repo_err)?;
        let tree = commit.tree_id().map_err(repo_err)?.detach();
        let parents = commit.parent_ids().map(|p| p.detach()).collect();
        Ok((tree, parents))
    }

    /// Moves `refs/remotes/origin/BRANCH` from `expected` to `new`, failing if it moved.
    fn track(
        &self,
        branch: &str,
        expected: Option<ObjectId>,
        new: ObjectId,
    ) -> Result<(), GitError> {
        // `git push` may have moved it already.
        if self.head(branch)? == Some(new) {
            return Ok(());
        }
        let repo = self.repo()?;
        let name = format!("refs/remotes/origin/{branch}");
        let expected = match expected {
            Some(id) => PreviousValue::MustExistAndMatch(gix::refs::Target::Object(id)),
            None => PreviousValue::MustNotExist,
        };
        repo.edit_reference(RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: "image-updater: pushed".into(),
                },
                expected,
                new: gix::refs::Target::Object(new),
            },
            name: name.as_str().try_into().map_err(repo_err)?,
            deref: false,
        })
        .map_err(repo_err)?;
        Ok(())
    }

    fn repo(&self) -> Result<gix::Repository, GitError> {
        gix::open(&self.dir).map_err(repo_err)
    }

    async fn git(&self, args: &[&str]) -> Result<String, GitError> {
        let out = self.run(args).await?;
        if out.success {
            Ok(out.stdout)
        } else {
            Err(self.failure(args[0], &out.stderr))
        }
    }

    fn failure(&self, command: &str, stderr: &str) -> GitError {
        let message = redact(stderr.trim(), &self.url);
        GitError::Command {
            command: command.into(),
            message: if message.is_empty() {
                "failed without a message".into()
            } else {
                message
            },
        }
    }

    async fn run(&self, args: &[&str]) -> Result<Output, GitError> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("--git-dir")
            .arg(&self.dir)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // Never wait for a person at a prompt.
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "true")
            .env("SSH_ASKPASS", "true")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let command = args[0];
        let child = cmd.spawn().map_err(|e| GitError::Command {
            command: command.into(),
            message: format!("cannot run git: {e}"),
        })?;
        let out = tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| GitError::Command {
                command: command.into(),
                message: format!("timed out after {}s", GIT_TIMEOUT.as_secs()),
            })?
            .map_err(|e| GitError::Command {
                command: command.into(),
                message: e.to_string(),
            })?;
        Ok(Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// The files of one commit.
pub struct Reader {
    repo: gix::Repository,
    tree: ObjectId,
}

impl Reader {
    /// The text of `path` and its mode; `None` when there is no such file. Symlinks anywhere on
    /// the path, directories and submodules are refused: the file must be in the repository.
    pub fn read(&self, path: &Path) -> Result<Option<(String, EntryKind)>, GitError> {
        let tree = self.repo.find_tree(self.tree).map_err(repo_err)?;
        let shown = path.display().to_string();
        let mut prefix = PathBuf::new();
        let components: Vec<_> = path.components().collect();
        for (i, c) in components.iter().enumerate() {
            let Component::Normal(_) = c else {
                return Err(GitError::Path {
                    path: shown,
                    reason: "not a plain relative path".into(),
                });
            };
            prefix.push(c);
            let Some(entry) = tree.lookup_entry_by_path(&prefix).map_err(repo_err)? else {
                return Ok(None);
            };
            let mode = entry.mode();
            let last = i + 1 == components.len();
            if mode.is_link() {
                return Err(GitError::Path {
                    path: shown,
                    reason: format!(
                        "{} is a symlink; targets must be regular files inside the repository",
                        prefix.display()
                    ),
                });
            }
            if !last && !mode.is_tree() {
                return Ok(None);
            }
            if last {
                if !mode.is_blob() {
                    return Err(GitError::Path {
                        path: shown,
                        reason: "not a regular file".into(),
                    });
                }
                let blob = self.repo.find_blob(entry.object_id()).map_err(repo_err)?;
                let text = String::from_utf8(blob.data.clone()).map_err(|_| GitError::Path {
                    path: shown.clone(),
                    reason: "not UTF-8 text".into(),
                })?;
                let kind = if mode.is_executable() {
                    EntryKind::BlobExecutable
                } else {
                    EntryKind::Blob
                };
                return Ok(Some((text, kind)));
            }
        }
        Ok(None)
    }
}

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Rejections that mean "the branch moved under us", which a fetch and a retry resolve.
fn is_race(reason: &str) -> bool {
    [
        "stale info",
        "fetch first",
        "non-fast-forward",
        "cannot lock ref",
        "incorrect old value",
        "failed to update ref",
    ]
    .iter()
    .any(|r| reason.contains(r))
}

/// Why `git push --porcelain` refused a ref, if it did: its lines are
/// `<flag>\t<from>:<to>\t<summary>`, and `!` means rejected.
fn rejected(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find(|l| l.starts_with('!'))
        .map(|l| l.split('\t').nth(2).unwrap_or(l).to_string())
}

/// The environment that gives git the repository's credentials and ssh settings.
async fn git_env(repo: &Repository) -> Result<Vec<(String, String)>, GitError> {
    let mut config: Vec<(String, String)> = vec![
        // No credential helper from the host's git config may prompt or store anything.
        ("credential.helper".into(), String::new()),
        // A redirect is never followed: the credential below would go with it.
        ("http.followRedirects".into(), "false".into()),
    ];
    if let Some(reference) = &repo.credentials {
        let host = url_host(&repo.url);
        let credential = secrets::resolve(reference, &host)
            .await
            .map_err(|e| GitError::Credentials(e.to_string()))?;
        let pair = match credential {
            Some(Credential::Basic { username, password }) => {
                format!("{username}:{}", password.expose())
            }
            // A bare token: the user name most forges accept alongside one.
            Some(Credential::Bearer(token)) => format!("x-access-token:{}", token.expose()),
            None => String::new(),
        };
        if !pair.is_empty() {
            let header = format!(
                "Authorization: Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            // Scoped to the repository's URL as well.
            config.push((format!("http.{}.extraHeader", repo.url), header));
        }
    }
    let mut env: Vec<(String, String)> =
        vec![("GIT_CONFIG_COUNT".into(), config.len().to_string())];
    for (i, (k, v)) in config.into_iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}"), k));
        env.push((format!("GIT_CONFIG_VALUE_{i}"), v));
    }
    let mut ssh = String::from("ssh -o BatchMode=yes -o StrictHostKeyChecking=yes");
    if let Some(key) = &repo.ssh_key {
        ssh.push_str(&format!(
            " -o IdentitiesOnly=yes -i {}",
            shell_quote(&key.display().to_string())
        ));
    }
    if let Some(known) = &repo.known_hosts {
        ssh.push_str(&format!(
            " -o UserKnownHostsFile={}",
            shell_quote(&known.display().to_string())
        ));
    }
    env.push(("GIT_SSH_COMMAND".into(), ssh));
    Ok(env)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The host of an https, ssh or scp-style git url, for credential lookups.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `message` with any `user:password@` of `url` removed.
fn redact(message: &str, url: &str) -> String {
    let mut out = message.to_string();
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, _)) = rest.split_once('@')
        && !userinfo.contains('/')
    {
        out = out.replace(&format!("{scheme}://{userinfo}@"), &format!("{scheme}://"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_git_urls() {
        assert_eq!(
            url_host("https://git.example.com/org/repo.git"),
            "git.example.com"
        );
        assert_eq!(url_host("https://u:p@127.0.0.1:8080/r.git"), "127.0.0.1");
        assert_eq!(url_host("git@github.com:org/repo.git"), "github.com");
        assert_eq!(url_host("ssh://git@host:2222/r"), "host");
    }

    #[test]
    fn userinfo_is_redacted() {
        let url = "https://bot:hunter2@git.example.com/r.git";
        let msg = "fatal: unable to access 'https://bot:hunter2@git.example.com/r.git/': 403";
        assert_eq!(
            redact(msg, url),
            "fatal: unable to access 'https://git.example.com/r.git/': 403"
        );
    }

    #[test]
    fn races_are_told_from_refusals() {
        assert!(is_race("[rejected] (stale info)"));
        assert!(is_race("[rejected] (fetch first)"));
        assert!(!is_race("[remote rejected] (pre-receive hook declined)"));
    }
}
