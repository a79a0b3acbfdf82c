//! One commit per branch per cycle: every image change for an environment's branch is applied
//! to the branch's current head, committed once, and pushed with a lease. A push that loses a
//! race starts over from a fresh fetch, so the other writer's commit is kept and a change that
//! someone else already made is not made twice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use super::git::{GitError, Mirror, Push, Reader};
use super::targets::{Desired, edit};
use crate::config::{Environment, Repository, Target};

/// Images named in a commit's subject line at most (a 50-image update once made a
/// 1,500-character subject).
const SUBJECT_IMAGES: usize = 3;

/// How many times a branch update starts over after losing a push race.
pub const MAX_ATTEMPTS: u32 = 5;

/// The engine's say over replacing the value a file holds now (`v1.4.0`, `v1.4.0@sha256:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Apply,
    /// Leave the file as it is, for this reason (a downgrade, say).
    Skip(String),
    /// Leave it: a person changed it back after image-updater wrote it.
    Reverted(String),
    /// Leave it for now and decide again: the file holds a value another writer put there
    /// after the decision's registry answers were read, and the two cannot be ranked (two
    /// digests of one tag), so writing could put an older value over a newer one.
    Moved(String),
}

/// Called with each target's current value before it is replaced.
pub type Guard = Arc<dyn Fn(&str) -> Decision + Send + Sync>;

/// One image's new value in one environment, and where it is written.
#[derive(Clone)]
pub struct ImageChange {
    pub alias: String,
    pub desired: Desired,
    pub targets: Vec<Target>,
    pub guard: Option<Guard>,
}

impl std::fmt::Debug for ImageChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageChange")
            .field("alias", &self.alias)
            .field("desired", &self.desired)
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

/// An image change left out on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub alias: String,
    /// The value the file holds.
    pub current: String,
    pub reason: String,
    /// A person changed the value back after image-updater wrote it.
    pub reverted: bool,
}

/// An image change that made it into the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub alias: String,
    pub repository: String,
    /// As found in the files (`v1.4.0`; several values joined by `, `).
    pub old: String,
    pub new: String,
    /// What a person must still do, said in the commit: a `Chart.lock` beside a dependency
    /// that moved is rebuilt only by Helm.
    pub notes: Vec<String>,
}

/// An image change that could not be applied; the others still are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub alias: String,
    pub file: PathBuf,
    pub message: String,
}

/// A file as it was and as it will be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: PathBuf,
    pub before: String,
    pub after: String,
    /// The file's mode in the tree, kept by the commit.
    pub kind: EntryKind,
}

/// What a branch update did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The pushed commit; `None` when nothing needed to change.
    pub commit: Option<ObjectId>,
    /// The commit the changes were made on.
    pub parent: Option<ObjectId>,
    pub applied: Vec<Applied>,
    pub failed: Vec<Failed>,
    pub skipped: Vec<Skipped>,
    pub files: Vec<FileChange>,
    /// Pushes that lost a race before this one.
    pub retries: u32,
    /// Images left out because the value they were going to replace was put there by another
    /// writer after they were decided (a lost push race, or a guard's [`Decision::Moved`]):
    /// the caller decides them again, against the value the branch holds now, rather than
    /// write blindly.
    pub superseded: Vec<Superseded>,
    /// The base branch the environment's branch is (or, in a dry run, would be) created from,
    /// when it did not exist.
    pub created_from: Option<String>,
    /// The pull request the changes are proposed in (or, in a dry run, what would be done
    /// with it), when they are proposed rather than pushed.
    pub request: Option<String>,
}

/// An image change withdrawn to be decided again, and the value the branch held when it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    pub alias: String,
    /// The value found: the target's a guard judged, or after a lost race every target's,
    /// joined by `, `.
    pub current: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("branch {branch} does not exist{}", base.as_ref().map(|b| format!(", nor its base branch {b}")).unwrap_or_else(|| " and the environment has no base_branch".into()))]
    NoBranch {
        branch: String,
        base: Option<String>,
    },
    #[error(
        "branch {branch}: still racing another writer after {attempts} attempts; nothing pushed"
    )]
    Contended { branch: String, attempts: u32 },
}

/// Applies `changes` to the environment's branch: fetch, edit, commit, push; with `dry_run`,
/// stops before committing and reports the files it would change.
pub async fn write_branch(
    mirror: &Mirror,
    repo: &Repository,
    env: &Environment,
    changes: &[ImageChange],
    dry_run: bool,
) -> Result<Outcome, WriteError> {
    let mut retries = 0;
    // What each image's targets held when its change was first planned, and the images
    // withdrawn since because that value moved.
    let mut decided_on: Option<BTreeMap<String, String>> = None;
    let mut withdrawn: Vec<Superseded> = Vec::new();
    loop {
        // The batch's first update shares a recent fetch; after a lost race, fetch anew.
        if retries == 0 {
            mirror.fetch_recent().await?;
        } else {
            mirror.fetch().await?;
        }
        let head = mirror.head(&env.branch)?;
        let parent = match (head, &env.base_branch) {
            (Some(h), _) => h,
            (None, Some(base)) => mirror.head(base)?.ok_or_else(|| WriteError::NoBranch {
                branch: env.branch.clone(),
                base: Some(base.clone()),
            })?,
            (None, None) => {
                return Err(WriteError::NoBranch {
                    branch: env.branch.clone(),
                    base: None,
                });
            }
        };
        // The reader holds an open repository, which must not live across the push's await.
        let (mut outcome, files) = {
            let reader = mirror.reader(parent)?;
            let active = |withdrawn: &[Superseded]| -> Vec<ImageChange> {
                changes
                    .iter()
                    .filter(|c| withdrawn.iter().all(|w| w.alias != c.alias))
                    .cloned()
                    .collect()
            };
            let mut outcome = plan(&reader, &active(&withdrawn))?;
            // A freeze file on the branch stops every write to it, and says so per image.
            if let Some(file) = &env.windows.freeze_file
                && matches!(reader.read(file), Ok(Some(_)))
            {
                let reason = format!(
                    "frozen: {} is on {}; writes resume once it is removed",
                    file.display(),
                    env.branch
                );
                let skipped = outcome.applied.drain(..).map(|a| Skipped {
                    alias: a.alias,
                    current: a.old,
                    reason: reason.clone(),
                    reverted: false,
                });
                outcome.skipped.extend(skipped.collect::<Vec<_>>());
                outcome.files.clear();
                outcome.parent = Some(parent);
                return Ok(outcome);
            }
            // Those a guard found moved are withdrawn for good: a retry must not write them.
            withdrawn.append(&mut outcome.superseded);
            match &decided_on {
                None => {
                    decided_on = Some(
                        outcome
                            .applied
                            .iter()
                            .map(|a| (a.alias.clone(), a.old.clone()))
                            .collect(),
                    );
                }
                Some(first) => {
                    let moved: Vec<Superseded> = outcome
                        .applied
                        .iter()
                        // Moved: another value than at the decision, or an edit where the
                        // first attempt had none (the file held the value then).
                        .filter(|a| first.get(&a.alias).is_none_or(|old| *old != a.old))
                        .map(|a| Superseded {
                            alias: a.alias.clone(),
                            current: a.old.clone(),
                        })
                        .collect();
                    if !moved.is_empty() {
                        let images: Vec<&str> = moved.iter().map(|m| m.alias.as_str()).collect();
                        tracing::info!(branch = %env.branch, ?images, "another writer changed these values since they were decided; deciding them again");
                        withdrawn.extend(moved);
                        outcome = plan(&reader, &active(&withdrawn))?;
                        withdrawn.append(&mut outcome.superseded);
                    }
                }
            }
            let files: Vec<_> = outcome
                .files
                .iter()
                .map(|f| (f.path.clone(), f.after.clone(), f.kind))
                .collect();
            (outcome, files)
        };
        outcome.parent = Some(parent);
        outcome.retries = retries;
        outcome.created_from = head.is_none().then(|| env.base_branch.clone()).flatten();
        outcome.superseded = withdrawn.clone();
        // A new branch is pushed even without changes, so the environment exists.
        if dry_run || (outcome.files.is_empty() && head.is_some()) {
            return Ok(outcome);
        }
        let message = message(repo, env, &outcome.applied);
        let commit = if files.is_empty() {
            parent
        } else {
            mirror.commit(parent, &files, repo, &message)?
        };
        match mirror.push(commit, &env.branch, head).await? {
            Push::Pushed => {
                outcome.commit = (commit != parent).then_some(commit);
                return Ok(outcome);
            }
            Push::Raced(reason) => {
                retries += 1;
                tracing::info!(branch = %env.branch, %reason, attempt = retries, "push lost a race; fetching and trying again");
                if retries >= MAX_ATTEMPTS {
                    return Err(WriteError::Contended {
                        branch: env.branch.clone(),
                        attempts: retries,
                    });
                }
            }
        }
    }
}

/// Every change applied to the files `reader` sees, in memory.
pub(super) fn plan(reader: &Reader, changes: &[ImageChange]) -> Result<Outcome, GitError> {
    // Each file as the tree has it (read once), and as the edits so far leave it, so several
    // images editing one file compose.
    let mut originals: BTreeMap<PathBuf, (String, EntryKind)> = BTreeMap::new();
    let mut files: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut outcome = Outcome::default();
    for change in changes {
        let mut olds = Vec::new();
        let mut staged: Vec<(PathBuf, String)> = Vec::new();
        let mut failure = None;
        let mut skip = None;
        let mut moved = None;
        for target in &change.targets {
            let path = target.file().to_path_buf();
            let current = match staged.iter().rev().find(|(p, _)| *p == path) {
                Some((_, text)) => Some(text.clone()),
                None => match files.get(&path).or(originals.get(&path).map(|(t, _)| t)) {
                    Some(text) => Some(text.clone()),
                    None => match reader.read(&path) {
                        Ok(found) => found.map(|(text, kind)| {
                            originals.insert(path.clone(), (text.clone(), kind));
                            text
                        }),
                        // A symlink or a directory where the file should be: this image only.
                        Err(GitError::Path { reason, .. }) => {
                            failure = Some((path, reason));
                            break;
                        }
                        Err(e) => return Err(e),
                    },
                },
            };
            let Some(current) = current else {
                failure = Some((path, "no such file on the branch".to_string()));
                break;
            };
            match edit(target, &current, &change.desired) {
                Ok(Some(e)) => {
                    let decision = change.guard.as_ref().map_or(Decision::Apply, |g| g(&e.old));
                    if let Decision::Moved(reason) = &decision {
                        tracing::info!(image = %change.alias, current = %e.old, "{reason}; deciding again");
                        moved = Some(e.old);
                        break;
                    }
                    if let Decision::Skip(reason) | Decision::Reverted(reason) = &decision {
                        skip = Some(Skipped {
                            alias: change.alias.clone(),
                            current: e.old.clone(),
                            reason: reason.clone(),
                            reverted: matches!(decision, Decision::Reverted(_)),
                        });
                        break;
                    }
                    olds.push(e.old);
                    staged.push((path, e.new_text));
                }
                Ok(None) => {}
                Err(e) => {
                    failure = Some((path, e.message));
                    break;
                }
            }
        }
        if let Some(current) = moved {
            outcome.superseded.push(Superseded {
                alias: change.alias.clone(),
                current,
            });
            continue;
        }
        if let Some(skipped) = skip {
            outcome.skipped.push(skipped);
            continue;
        }
        // An image is written everywhere or nowhere.
        if let Some((file, message)) = failure {
            outcome.failed.push(Failed {
                alias: change.alias.clone(),
                file,
                message,
            });
            continue;
        }
        if staged.is_empty() {
            continue;
        }
        let notes = lock_notes(reader, &change.targets, &staged);
        files.extend(staged);
        olds.dedup();
        outcome.applied.push(Applied {
            alias: change.alias.clone(),
            repository: change.desired.named(),
            old: olds.join(", "),
            new: change.desired.describe(),
            notes,
        });
    }
    outcome.files = files
        .into_iter()
        .filter_map(|(path, after)| {
            // Every edited file was read first.
            let (before, kind) = originals.remove(&path).expect("edited files were read");
            (before != after).then_some(FileChange {
                path,
                before,
                after,
                kind,
            })
        })
        .collect();
    Ok(outcome)
}

/// For each `Chart.yaml` dependency `staged` moves, when a `Chart.lock` stands beside it: the
/// lock still pins the old version (and its digest covers what Helm resolved, which only Helm
/// computes), so `helm dependency build` would refuse it until it is rebuilt.
fn lock_notes(reader: &Reader, targets: &[Target], staged: &[(PathBuf, String)]) -> Vec<String> {
    let mut notes = Vec::new();
    for target in targets {
        let Target::Chart(crate::config::ChartTarget::ChartDependency { file }) = target else {
            continue;
        };
        if !staged.iter().any(|(p, _)| p == file) {
            continue;
        }
        let dir = file.parent().unwrap_or(std::path::Path::new(""));
        let lock = dir.join("Chart.lock");
        if matches!(reader.read(&lock), Ok(Some(_))) {
            let dir = if dir.as_os_str().is_empty() {
                ".".to_string()
            } else {
                dir.display().to_string()
            };
            notes.push(format!(
                "{} still locks the old version: run `helm dependency update {dir}` and commit it",
                lock.display()
            ));
        }
    }
    notes.dedup();
    notes
}

/// The commit message from the repository's template.
pub fn message(repo: &Repository, env: &Environment, applied: &[Applied]) -> String {
    // The subject names a few images; every change is in the body.
    let mut summary = applied
        .iter()
        .take(SUBJECT_IMAGES)
        .map(|a| format!("{} {}", a.alias, crate::reference::short_digests(&a.new)))
        .collect::<Vec<_>>()
        .join(", ");
    if applied.len() > SUBJECT_IMAGES {
        summary.push_str(&format!(
            " and {} more",
            applied.len().saturating_sub(SUBJECT_IMAGES)
        ));
    }
    let changes = applied
        .iter()
        .flat_map(|a| {
            std::iter::once(format!(
                "{}: {} {} -> {}",
                a.alias, a.repository, a.old, a.new
            ))
            .chain(a.notes.iter().map(|n| format!("  {n}")))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let values = BTreeMap::from([
        ("environment", env.name.clone()),
        ("branch", env.branch.clone()),
        ("repository", repo.name.clone()),
        ("summary", summary),
        ("changes", changes),
        ("count", applied.len().to_string()),
    ]);
    let mut text = repo.commit_message.render(&values);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::template::Template;
    use crate::config::{Author, Environment, Repository};

    #[test]
    fn subjects_stay_short_and_bodies_say_everything() {
        let repo = Repository {
            name: "manifests".into(),
            url: "https://git.example.com/m.git".into(),
            credentials: None,
            author: Author {
                name: "bot".into(),
                email: "bot@example.com".into(),
            },
            commit_message: Template::default(),
            ssh_key: None,
            known_hosts: None,
            signing_key: None,
            forge: None,
        };
        let env = Environment {
            name: "prod".into(),
            repository: "manifests".into(),
            branch: "deploy/prod".into(),
            base_branch: None,
            priority: 0,
            write: Default::default(),
            pull_request: crate::config::PullRequest::on("image-updater/test"),
            windows: Default::default(),
        };
        let digest = format!("sha256:{}", "a".repeat(64));
        let applied: Vec<Applied> = (0..5)
            .map(|i| Applied {
                alias: format!("img{i}"),
                repository: format!("ghcr.io/org/img{i}"),
                old: "v1".into(),
                notes: Vec::new(),
                new: if i == 0 {
                    format!("latest@{digest}")
                } else {
                    format!("v{i}")
                },
            })
            .collect();
        let text = message(&repo, &env, &applied);
        let subject = text.lines().next().unwrap();
        assert_eq!(
            subject,
            "deploy(prod): img0 latest@sha256:aaaaaaaaaaaa, img1 v1, img2 v2 and 2 more"
        );
        assert!(text.contains(&format!("img0: ghcr.io/org/img0 v1 -> latest@{digest}")));
        assert!(text.contains("img4: ghcr.io/org/img4 v1 -> v4"));
    }
}
