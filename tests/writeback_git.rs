//! Write-back against real git servers on 127.0.0.1: `git http-backend` behind lighttpd with
//! basic auth, and `git daemon`. Commits are checked on the server with the git CLI.

mod harness;

use std::path::PathBuf;
use std::sync::Arc;

use harness::git::{GitServer, PASSWORD, Person, USER, git, repository};
use image_updater::config::{CredentialRef, Environment, Repository, Target};
use image_updater::writeback::{Desired, ImageChange, Mirror, Push, WriteError, write_branch};

const KUSTOMIZATION: &str = "\
# prod overlay
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
images:
  - name: ghcr.io/org/api
    newTag: v1.4.0   # managed by image-updater
";

const VALUES: &str = "\
# values for the worker chart
image:
  repository: ghcr.io/org/worker
  tag: \"1.2.0\"
replicas: 2
";

fn prod() -> Environment {
    Environment {
        name: "prod".into(),
        repository: "manifests".into(),
        branch: "deploy/prod".into(),
        base_branch: Some("main".into()),
        priority: 0,
        write: Default::default(),
        pull_request: image_updater::config::PullRequest::on("image-updater/test"),
        windows: Default::default(),
    }
}

fn api(tag: &str) -> ImageChange {
    ImageChange {
        alias: "api".into(),
        desired: Desired {
            repository: "ghcr.io/org/api".into(),
            written: "ghcr.io/org/api".into(),
            tag: Some(tag.into()),
            digest: None,
            replaces: Vec::new(),
            chart: None,
        },
        targets: vec![Target::Kustomization {
            file: "overlays/prod/kustomization.yaml".into(),
            name: "ghcr.io/org/api".into(),
        }],
        guard: None,
    }
}

fn worker(tag: &str) -> ImageChange {
    ImageChange {
        alias: "worker".into(),
        desired: Desired {
            repository: "ghcr.io/org/worker".into(),
            written: "ghcr.io/org/worker".into(),
            tag: Some(tag.into()),
            digest: None,
            replaces: Vec::new(),
            chart: None,
        },
        targets: vec![Target::Helm {
            file: "charts/worker/values.yaml".into(),
            values: image_updater::config::ImagePaths::Split {
                tag: "image.tag".parse().unwrap(),
                repository: None,
                registry: None,
                digest: None,
            },
        }],
        guard: None,
    }
}

fn seed(server: &GitServer) {
    server.create(
        "manifests",
        &[
            ("overlays/prod/kustomization.yaml", KUSTOMIZATION),
            ("charts/worker/values.yaml", VALUES),
            ("README.md", "manifests\n"),
        ],
        &["deploy/prod"],
    );
}

/// The bot's credentials in a variable of this process, as `env:VAR` reads them.
fn bot_credentials() -> CredentialRef {
    // SAFETY: set once, to the same value, by every test in this file.
    unsafe { std::env::set_var("GIT_BOT_CREDENTIALS", format!("{USER}:{PASSWORD}")) };
    CredentialRef::Env("GIT_BOT_CREDENTIALS".into())
}

fn diff_of_last_commit(server: &GitServer, branch: &str) -> Vec<String> {
    git(
        &server.path("manifests"),
        &["show", "--format=", "--unified=0", branch],
    )
    .lines()
    .filter(|l| {
        (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---")
    })
    .map(String::from)
    .collect()
}

/// The seeded repository served by `git daemon`, and a mirror of it in a fresh state dir.
async fn over_git_daemon() -> (GitServer, tempfile::TempDir, Repository, Mirror) {
    let server = GitServer::daemon();
    seed(&server);
    let state = tempfile::tempdir().unwrap();
    let repo = repository(server.url("manifests"), None);
    let mirror = Mirror::open(state.path(), &repo).await.unwrap();
    (server, state, repo, mirror)
}

#[tokio::test]
async fn one_commit_per_branch_over_http_with_basic_auth() {
    needs!(Lighttpd, SshKeygen);
    harness::git::require_lighttpd();
    let server = GitServer::http();
    seed(&server);
    let state = tempfile::tempdir().unwrap();
    let repo = repository(server.url("manifests"), Some(bot_credentials()));
    let mirror = Mirror::open(state.path(), &repo).await.unwrap();

    let out = write_branch(
        &mirror,
        &repo,
        &prod(),
        &[api("v1.5.0"), worker("1.10")],
        false,
    )
    .await
    .unwrap();
    let commit = out.commit.expect("a commit");
    assert_eq!(out.applied.len(), 2);
    assert_eq!(out.retries, 0);
    assert_eq!(
        server.log("manifests", "deploy/prod", "%H")[0],
        commit.to_string()
    );
    // Exactly the two values changed, in their own style; `1.10` stays a string.
    assert_eq!(
        diff_of_last_commit(&server, "deploy/prod"),
        [
            "-  tag: \"1.2.0\"",
            "+  tag: \"1.10\"",
            "-    newTag: v1.4.0   # managed by image-updater",
            "+    newTag: v1.5.0   # managed by image-updater",
        ]
    );
    let message = server.log("manifests", "deploy/prod", "%B").join("\n");
    assert!(
        message.starts_with("deploy(prod): api v1.5.0, worker 1.10"),
        "{message}"
    );
    assert!(
        message.contains("api: ghcr.io/org/api v1.4.0 -> v1.5.0"),
        "{message}"
    );
    assert!(
        message.contains("worker: ghcr.io/org/worker 1.2.0 -> 1.10"),
        "{message}"
    );
    assert_eq!(
        server.log("manifests", "deploy/prod", "%an <%ae>")[0],
        "image-updater <bot@example.com>"
    );
    // main is untouched.
    assert_eq!(server.log("manifests", "main", "%s"), ["initial manifests"]);

    // The same change again: nothing to commit.
    let again = write_branch(
        &mirror,
        &repo,
        &prod(),
        &[api("v1.5.0"), worker("1.10")],
        false,
    )
    .await
    .unwrap();
    assert_eq!(again.commit, None);
    assert!(again.applied.is_empty());
    assert_eq!(server.log("manifests", "deploy/prod", "%H").len(), 2);

    // The mirror survives a restart, and a corrupt one is rebuilt.
    drop(mirror);
    std::fs::write(state.path().join("git/manifests.git/HEAD"), "garbage").unwrap();
    let mirror = Mirror::open(state.path(), &repo).await.unwrap();
    let out = write_branch(&mirror, &repo, &prod(), &[api("v1.5.1")], false)
        .await
        .unwrap();
    assert!(out.commit.is_some());
    assert!(
        server
            .show(
                "manifests",
                "deploy/prod",
                "overlays/prod/kustomization.yaml"
            )
            .contains("newTag: v1.5.1")
    );
}

#[tokio::test]
async fn without_or_with_wrong_credentials_nothing_is_fetched_or_pushed() {
    needs!(Lighttpd, SshKeygen);
    harness::git::require_lighttpd();
    let server = GitServer::http();
    seed(&server);
    let state = tempfile::tempdir().unwrap();
    let anonymous = repository(server.url("manifests"), None);
    let mirror = Mirror::open(state.path(), &anonymous).await.unwrap();
    let err = write_branch(&mirror, &anonymous, &prod(), &[api("v9.9.9")], false)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("git fetch:"), "{text}");
    assert!(
        text.contains("401")
            || text.contains("Authentication")
            || text.contains("terminal prompts disabled"),
        "{text}"
    );

    // SAFETY: a variable only this test reads.
    unsafe { std::env::set_var("GIT_WRONG_CREDENTIALS", format!("{USER}:not-the-password")) };
    let wrong = repository(
        server.url("manifests"),
        Some(CredentialRef::Env("GIT_WRONG_CREDENTIALS".into())),
    );
    let state = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(state.path(), &wrong).await.unwrap();
    let err = write_branch(&mirror, &wrong, &prod(), &[api("v9.9.9")], false)
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("not-the-password"), "{err}");

    // Nothing reached the branch, and the password never was an argument of this process.
    assert_eq!(
        server.log("manifests", "deploy/prod", "%s"),
        ["initial manifests"]
    );
    let args: Vec<String> = std::env::args().collect();
    assert!(!args.iter().any(|a| a.contains(PASSWORD)));
}

#[tokio::test]
async fn git_daemon_and_a_branch_created_from_its_base() {
    needs!(Lighttpd, SshKeygen);
    let (server, _state, repo, mirror) = over_git_daemon().await;
    let staging = Environment {
        name: "staging".into(),
        repository: "manifests".into(),
        branch: "deploy/staging".into(),
        base_branch: Some("main".into()),
        priority: 0,
        write: Default::default(),
        pull_request: image_updater::config::PullRequest::on("image-updater/test"),
        windows: Default::default(),
    };
    // A dry run says it would create the branch, and creates nothing.
    let plan = write_branch(&mirror, &repo, &staging, &[api("v1.5.0-rc.1")], true)
        .await
        .unwrap();
    assert_eq!(plan.created_from.as_deref(), Some("main"));
    let exists = harness::git::git_command(
        &server.path("manifests"),
        &["rev-parse", "--verify", "-q", "refs/heads/deploy/staging"],
    )
    .status()
    .unwrap();
    assert!(!exists.success(), "a dry run created the branch");
    let out = write_branch(&mirror, &repo, &staging, &[api("v1.5.0-rc.1")], false)
        .await
        .unwrap();
    assert!(out.commit.is_some());
    assert_eq!(out.created_from.as_deref(), Some("main"));
    assert_eq!(
        server.log("manifests", "deploy/staging", "%s"),
        ["deploy(staging): api v1.5.0-rc.1", "initial manifests"]
    );

    let nowhere = Environment {
        branch: "deploy/qa".into(),
        base_branch: None,
        ..staging.clone()
    };
    let err = write_branch(&mirror, &repo, &nowhere, &[api("v1")], false)
        .await
        .unwrap_err();
    assert!(matches!(err, WriteError::NoBranch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "branch deploy/qa does not exist and the environment has no base_branch"
    );
}

#[tokio::test]
async fn a_stale_lease_is_a_race_not_a_force() {
    needs!(Lighttpd, SshKeygen);
    let (server, _state, repo, mirror) = over_git_daemon().await;
    mirror.fetch().await.unwrap();
    let head = mirror.head("deploy/prod").unwrap().unwrap();
    let files = [(
        PathBuf::from("README.md"),
        "ours\n".to_string(),
        gix::objs::tree::EntryKind::Blob,
    )];
    let ours = mirror.commit(head, &files, &repo, "ours\n").unwrap();

    // Someone pushes in between our fetch and our push.
    let person = Person::clone(&server.url_with_credentials("manifests"), "deploy/prod");
    person.commit_and_push("hotfix.txt", "fix\n", "hotfix by hand");
    let theirs = server.log("manifests", "deploy/prod", "%H")[0].clone();

    let push = mirror.push(ours, "deploy/prod", Some(head)).await.unwrap();
    assert!(matches!(push, Push::Raced(_)), "{push:?}");
    assert_eq!(server.log("manifests", "deploy/prod", "%H")[0], theirs);
}

#[tokio::test]
async fn a_human_fixing_the_same_file_does_not_lose_to_the_bot() {
    needs!(Lighttpd, SshKeygen);
    let (server, _state, repo, mirror) = over_git_daemon().await;
    // The person's edit of the same file, a comment elsewhere in it, lands first.
    let person = Person::clone(&server.url("manifests"), "deploy/prod");
    person.commit_and_push(
        "overlays/prod/kustomization.yaml",
        &KUSTOMIZATION.replace("# prod overlay", "# prod overlay (owned by team api)"),
        "document the owner",
    );
    write_branch(&mirror, &repo, &prod(), &[api("v1.5.0")], false)
        .await
        .unwrap();
    let text = server.show(
        "manifests",
        "deploy/prod",
        "overlays/prod/kustomization.yaml",
    );
    assert!(
        text.contains("owned by team api") && text.contains("newTag: v1.5.0   #"),
        "{text}"
    );
}

/// A person pushes to the branch at the same moment as every one of 100 updates. Every one
/// of their commits survives, every update lands exactly once, nothing is force-pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_a_concurrent_writer_100_times_loses_nothing() {
    needs!(Lighttpd, SshKeygen);
    let server = Arc::new(GitServer::daemon());
    seed(&server);
    let state = tempfile::tempdir().unwrap();
    let repo = repository(server.url("manifests"), None);
    let mirror = Mirror::open(state.path(), &repo).await.unwrap();
    let person = Arc::new(Person::clone(&server.url("manifests"), "deploy/prod"));
    let rounds = 100;
    let mut retries = 0;
    for i in 0..rounds {
        let p = person.clone();
        let theirs = tokio::task::spawn_blocking(move || {
            p.commit_and_push(
                &format!("notes/{i}.txt"),
                &format!("{i}\n"),
                &format!("note {i}"),
            )
        });
        let out = write_branch(&mirror, &repo, &prod(), &[api(&format!("v1.5.{i}"))], false)
            .await
            .unwrap();
        theirs.await.unwrap();
        assert!(out.commit.is_some(), "round {i}");
        retries += out.retries;
    }
    let subjects = server.log("manifests", "deploy/prod", "%s");
    for i in 0..rounds {
        assert_eq!(
            subjects
                .iter()
                .filter(|s| **s == format!("note {i}"))
                .count(),
            1,
            "note {i}"
        );
        assert_eq!(
            subjects
                .iter()
                .filter(|s| **s == format!("deploy(prod): api v1.5.{i}"))
                .count(),
            1,
            "update {i}"
        );
    }
    assert_eq!(subjects.len(), 2 * rounds + 1);
    let tree = git(
        &server.path("manifests"),
        &["ls-tree", "-r", "--name-only", "deploy/prod", "notes"],
    );
    assert_eq!(tree.lines().count(), rounds);
    assert!(
        server
            .show(
                "manifests",
                "deploy/prod",
                "overlays/prod/kustomization.yaml"
            )
            .contains("newTag: v1.5.99")
    );
    eprintln!(
        "{rounds} rounds against a concurrent writer: {retries} pushes lost a race and were retried"
    );
}

/// Two daemons with their own mirrors apply the same change at once: one commit, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_make_one_commit() {
    needs!(Lighttpd, SshKeygen);
    let server = GitServer::daemon();
    seed(&server);
    let repo = repository(server.url("manifests"), None);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ma = Mirror::open(a.path(), &repo).await.unwrap();
    let mb = Mirror::open(b.path(), &repo).await.unwrap();
    for i in 0..20 {
        let change = [api(&format!("v2.0.{i}"))];
        let env = prod();
        let (ra, rb) = tokio::join!(
            write_branch(&ma, &repo, &env, &change, false),
            write_branch(&mb, &repo, &env, &change, false)
        );
        // Both may report the commit: made in the same second from the same parent, tree
        // and message, the two are one object, and the second push finds it there.
        let commits: std::collections::BTreeSet<_> = [ra.unwrap().commit, rb.unwrap().commit]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(commits.len(), 1, "round {i}");
    }
    assert_eq!(server.log("manifests", "deploy/prod", "%s").len(), 21);
}

#[tokio::test]
async fn dry_run_reports_files_and_pushes_nothing() {
    needs!(Lighttpd, SshKeygen);
    let (server, _state, repo, mirror) = over_git_daemon().await;
    let out = write_branch(&mirror, &repo, &prod(), &[api("v1.5.0")], true)
        .await
        .unwrap();
    assert_eq!(out.commit, None);
    assert_eq!(out.files.len(), 1);
    assert!(out.files[0].after.contains("newTag: v1.5.0"));
    assert_eq!(
        server.log("manifests", "deploy/prod", "%s"),
        ["initial manifests"]
    );
}

#[tokio::test]
async fn symlinked_and_missing_targets_fail_that_image_only() {
    needs!(Lighttpd, SshKeygen);
    let server = GitServer::daemon();
    seed(&server);
    // A symlink pointing out of the repository, committed by someone.
    let person = Person::clone(&server.url("manifests"), "deploy/prod");
    std::os::unix::fs::symlink("/etc", person.work.join("linked")).unwrap();
    person.commit_and_push("x.txt", "x\n", "add a symlink");
    let state = tempfile::tempdir().unwrap();
    let repo = repository(server.url("manifests"), None);
    let mirror = Mirror::open(state.path(), &repo).await.unwrap();
    let mut through_link = api("v1.5.0");
    through_link.alias = "linked".into();
    through_link.targets = vec![Target::Kustomization {
        file: "linked/kustomization.yaml".into(),
        name: "ghcr.io/org/api".into(),
    }];
    let mut missing = api("v1.5.0");
    missing.alias = "missing".into();
    missing.targets = vec![Target::Kustomization {
        file: "nope/kustomization.yaml".into(),
        name: "ghcr.io/org/api".into(),
    }];
    let out = write_branch(
        &mirror,
        &repo,
        &prod(),
        &[through_link, missing, worker("1.3.0")],
        false,
    )
    .await
    .unwrap();
    assert_eq!(out.applied.len(), 1);
    assert_eq!(out.failed.len(), 2);
    assert!(
        out.failed[0].message.contains("symlink"),
        "{:?}",
        out.failed
    );
    assert!(
        out.failed[1].message.contains("no such file"),
        "{:?}",
        out.failed
    );
    assert!(out.commit.is_some());
}

#[tokio::test]
async fn commits_can_be_signed_with_an_ssh_key() {
    needs!(Lighttpd, SshKeygen);
    let server = GitServer::daemon();
    seed(&server);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("signing");
    let status = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "bot@example.com",
            "-f",
        ])
        .arg(&key)
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "ssh-keygen failed or is not installed: apt-get install openssh-client"
    );
    let public = std::fs::read_to_string(keys.path().join("signing.pub")).unwrap();
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(&allowed, format!("bot@example.com {public}")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut repo = repository(server.url("manifests"), None);
    repo.signing_key = Some(key);
    let mirror = Mirror::open(state.path(), &repo).await.unwrap();
    write_branch(&mirror, &repo, &prod(), &[api("v1.5.0")], false)
        .await
        .unwrap();
    let verify = harness::git::git_command(
        &server.path("manifests"),
        &[
            "-c",
            &format!("gpg.ssh.allowedSignersFile={}", allowed.display()),
            "verify-commit",
            "deploy/prod",
        ],
    )
    .output()
    .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(String::from_utf8_lossy(&verify.stderr).contains("Good \"git\" signature"));
}

/// A digest-following image: the other writer records a newer digest between this writer's
/// decision and its push. The lost race is not blindly replayed over the newer value: the
/// change is withdrawn for the caller to decide again, and the other writer's digest stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_race_is_decided_again_not_replayed() {
    needs!(Lighttpd, SshKeygen);
    const OLD: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    const STALE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const NEWER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    let server = Arc::new(GitServer::daemon());
    let pinned = KUSTOMIZATION.replace(
        "newTag: v1.4.0   # managed by image-updater",
        &format!("newTag: latest\n    digest: {OLD}"),
    );
    server.create(
        "manifests",
        &[("overlays/prod/kustomization.yaml", pinned.as_str())],
        &["deploy/prod"],
    );
    let state = tempfile::tempdir().unwrap();
    let repo = repository(server.url("manifests"), None);
    let mirror = Mirror::open(state.path(), &repo).await.unwrap();
    let person = Arc::new(Person::clone(&server.url("manifests"), "deploy/prod"));
    let newer = pinned.replace(OLD, NEWER);
    // The guard runs after this writer fetched and planned: the other writer pushes then,
    // once, so this writer's push is sure to lose the race.
    let other = person.clone();
    let pushed = Arc::new(std::sync::Once::new());
    let mut change = api("latest");
    change.desired.digest = Some(STALE.into());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (p, s) = (pushed.clone(), seen.clone());
    change.guard = Some(Arc::new(move |current: &str| {
        s.lock().unwrap().push(current.to_string());
        p.call_once(|| {
            other.commit_and_push(
                "overlays/prod/kustomization.yaml",
                &newer,
                "the other writer: api latest@newer",
            )
        });
        image_updater::writeback::Decision::Apply
    }));
    let out =
        tokio::task::spawn(
            async move { write_branch(&mirror, &repo, &prod(), &[change], false).await },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.superseded,
        [image_updater::writeback::Superseded {
            alias: "api".into(),
            current: format!("latest@{NEWER}"),
        }],
        "{out:?}"
    );
    assert_eq!(out.commit, None, "nothing pushed over the newer digest");
    assert!(out.applied.is_empty());
    assert!(out.retries >= 1);
    let file = server.show(
        "manifests",
        "deploy/prod",
        "overlays/prod/kustomization.yaml",
    );
    assert!(file.contains(NEWER) && !file.contains(STALE), "{file}");
    assert_eq!(
        server.log("manifests", "deploy/prod", "%s")[0],
        "the other writer: api latest@newer"
    );
    // The guard saw the old value first, then the other writer's.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], format!("latest@{OLD}"));
    assert!(
        seen.iter().any(|v| v == &format!("latest@{NEWER}")),
        "{seen:?}"
    );
}
