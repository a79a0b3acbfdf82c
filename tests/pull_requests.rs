//! Pull (merge) requests end to end, for each forge: the real binary, the real registry, the
//! real git server (lighttpd + git http-backend) with a protected environment branch, and a
//! test server for each forge's API ([`harness::forge`]) that records every request.
//!
//! One scenario per forge, step by step: the first update opens a request; a newer tag
//! updates the same request; a push to the environment branch is rebuilt over; a request a
//! person merged leads to no duplicate; one closed unmerged holds its version until something
//! newer; the forge down is a clear error, retried, never a direct push; auto-merge merges
//! only once the forge's checks pass.
//!
//! A second scenario per forge looks after a request: `plan` says what it would open or
//! close; drafts stay drafts and are never merged; a hold closes the request with a comment
//! that says why and deletes its branch; a request someone else opened first is adopted
//! (the forge's "already exists" answer); one whose content reached the branch by another way
//! is closed; an image that says `write = "push"` skips the request.

mod harness;

use harness::forge::{APP_ID, FakeForge, INSTALLATION, Kind, OWNER, REPO, TOKEN};
use harness::git::{Person, git};
use harness::world::World;

const OVERLAY: &str = "\
images:
  - name: REGISTRY/org/api
    newTag: v1.0.0
";

const FILE: &str = "prod/kustomization.yaml";
const UPDATE: &str = "image-updater/prod";
const BASE: &str = "deploy/prod";

/// Refuses pushes over http to the environment branch, as branch protection does; the forge's
/// own merges (made in the repository) and people's pushes from a local path pass.
fn protect(world: &World) {
    let hook = world.git.path("manifests").join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nwhile read old new ref; do\n  if [ \"$ref\" = refs/heads/{BASE} ] && [ -n \"$REMOTE_USER\" ]; then\n    echo \"{BASE} is protected: open a pull request\" >&2; exit 1\n  fi\ndone\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn config(world: &World, forge: &FakeForge, auto_merge: bool) -> String {
    let host = world.host();
    let token = world.dir.path().join("forge-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut text = world.base_config(&["prod"]);
    text.push_str(&format!(
        r#"write = "pull-request"

[environments.prod.pull_request]
labels = ["image-updater"]
reviewers = ["bob"]
assignees = ["alice"]
auto_merge = {auto_merge}

[repositories.manifests.forge]
type = "{kind}"
api_url = "{api}"
insecure = true
project = "{OWNER}/{REPO}"
token = "file:{token}"

[images.api]
image = "{host}/org/api"
environments = ["prod"]

[[images.api.targets]]
kind = "kustomization"
file = "{{environment}}/kustomization.yaml"
name = "{host}/org/api"
"#,
        kind = forge.kind.name(),
        api = forge.api_url(),
        token = token.display(),
    ));
    text
}

/// A protected environment branch, a forge of `kind`, the config proposing to it without
/// auto-merge, and `v1.0.0` and `v1.1.0` pushed.
async fn proposing(kind: Kind) -> (World, FakeForge) {
    let world = World::new(&[(FILE, OVERLAY)], &[BASE]).await;
    protect(&world);
    let forge = FakeForge::start(kind, world.git.path("manifests")).await;
    world.write_config(&config(&world, &forge, false));
    world.push("org/api", "v1.0.0").await;
    world.push("org/api", "v1.1.0").await;
    (world, forge)
}

/// `once`; returns its output and whether it succeeded.
fn once(world: &World) -> (bool, String) {
    let out = world.run(&["once"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn once_ok(world: &World) -> String {
    let (ok, text) = once(world);
    assert!(ok, "{text}");
    text
}

fn status_row(world: &World) -> serde_json::Value {
    let out = world.run(&["status", "--output", "json"]);
    assert!(out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows[0].clone()
}

fn head(world: &World, branch: &str) -> String {
    git(
        &world.git.path("manifests"),
        &["rev-parse", &format!("refs/heads/{branch}")],
    )
    .trim()
    .to_string()
}

/// Gitea's lookup of the request from the update branch into the environment's.
const GITEA_LOOKUP: &str = "GET pulls/deploy%2Fprod/image-updater%2Fprod";

/// What finding that no request is open costs on each forge, when the open ones fill `pages`
/// pages of a list (Gitea looks the request up by base and head first, and lists the open
/// ones when that finds none open).
fn find_pages(kind: Kind, pages: usize) -> Vec<String> {
    match kind {
        Kind::GitHub => vec!["GET pulls".into()],
        Kind::GitLab => vec!["GET merge_requests".into()],
        Kind::Gitea => std::iter::once(GITEA_LOOKUP.to_string())
            .chain(std::iter::repeat_n("GET pulls".to_string(), pages))
            .collect(),
    }
}

/// [`find_pages`] with the scenario's two pages of open requests on Gitea.
fn find(kind: Kind) -> Vec<String> {
    find_pages(kind, 2)
}

/// Reading request `n` at the start of a cycle, and again right before its update branch is
/// pushed (the compare-and-swap that keeps a request merged in between from being updated).
fn read(kind: Kind, n: u64) -> Vec<String> {
    vec![get(kind, n), get(kind, n)]
}

fn get(kind: Kind, n: u64) -> String {
    match kind {
        Kind::GitLab => format!("GET merge_requests/{n}"),
        _ => format!("GET pulls/{n}"),
    }
}

/// Opening request `n` with its labels, assignee and reviewer.
fn open(kind: Kind, n: u64) -> Vec<String> {
    match kind {
        Kind::GitHub => vec![
            "POST pulls".into(),
            format!("POST issues/{n}/labels"),
            format!("POST issues/{n}/assignees"),
            format!("POST pulls/{n}/requested_reviewers"),
        ],
        Kind::GitLab => vec![
            "GET users".into(),
            "GET users".into(),
            "POST merge_requests".into(),
        ],
        Kind::Gitea => vec![
            "GET labels".into(),
            "POST pulls".into(),
            format!("POST pulls/{n}/requested_reviewers"),
        ],
    }
}

/// Editing request `n` (GitLab and Gitea read its title first, to keep a draft prefix).
fn edit(kind: Kind, n: u64) -> Vec<String> {
    match kind {
        Kind::GitHub => vec![format!("PATCH pulls/{n}")],
        Kind::GitLab => vec![
            format!("GET merge_requests/{n}"),
            format!("PUT merge_requests/{n}"),
        ],
        Kind::Gitea => vec![format!("GET pulls/{n}"), format!("PATCH pulls/{n}")],
    }
}

fn concat(parts: &[Vec<String>]) -> Vec<String> {
    parts.concat()
}

/// Commenting on request `n`, then closing it.
fn close(kind: Kind, n: u64) -> Vec<String> {
    match kind {
        Kind::GitLab => vec![
            format!("POST merge_requests/{n}/notes"),
            format!("PUT merge_requests/{n}"),
        ],
        _ => vec![
            format!("POST issues/{n}/comments"),
            format!("PATCH pulls/{n}"),
        ],
    }
}

fn exists(world: &World, branch: &str) -> bool {
    std::process::Command::new("git")
        .arg("--git-dir")
        .arg(world.git.path("manifests"))
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}"))
        .output()
        .unwrap()
        .status
        .success()
}

fn stdout(world: &World, args: &[&str]) -> String {
    let out = world.run(args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

async fn scenario(kind: Kind) {
    let world = World::new(&[(FILE, OVERLAY)], &[BASE]).await;
    protect(&world);
    let forge = FakeForge::start(kind, world.git.path("manifests")).await;
    // Gitea lists every open request: others' requests make it two pages.
    let others = if kind == Kind::Gitea { 60 } else { 0 };
    for i in 0..others {
        forge.add_other(&format!("feature/{i}"), "main");
    }
    let n = |k: u64| others + k;
    world.write_config(&config(&world, &forge, false));
    world.push("org/api", "v1.0.0").await;
    world
        .push_from_source("org/api", "v1.1.0", "https://git.example/acme/api")
        .await;
    let base_before = head(&world, BASE);

    // 1. The first update opens a request; the environment branch is not pushed to.
    let mark = forge.log().len();
    let out = once_ok(&world);
    assert!(out.contains("proposed api v1.0.0 -> v1.1.0"), "{out}");
    assert_eq!(
        forge.ops_since(mark),
        concat(&[find(kind), open(kind, n(1))]),
        "{kind:?}"
    );
    assert_eq!(
        head(&world, BASE),
        base_before,
        "the environment branch moved"
    );
    assert!(world.file_on(UPDATE, FILE).contains("newTag: v1.1.0"));
    let pull = forge.pull(n(1));
    assert_eq!((pull.head.as_str(), pull.base.as_str()), (UPDATE, BASE));
    assert!(pull.title.contains("api v1.1.0"), "{}", pull.title);
    assert!(
        pull.body.contains("| api |") && pull.body.contains("`v1.0.0` | `v1.1.0`"),
        "{}",
        pull.body
    );
    assert!(pull.body.contains("sha256:"), "{}", pull.body);
    // The link the image's `org.opencontainers.image.source` label gives.
    assert!(
        pull.body.contains("[source](https://git.example/acme/api)"),
        "{}",
        pull.body
    );
    match kind {
        Kind::GitHub => {
            assert_eq!(pull.labels, vec![serde_json::json!("image-updater")]);
            assert_eq!(pull.assignees, vec![serde_json::json!("alice")]);
            assert_eq!(pull.reviewers, vec![serde_json::json!("bob")]);
        }
        Kind::GitLab => {
            assert_eq!(pull.labels, vec![serde_json::json!("image-updater")]);
            assert_eq!(pull.assignees, vec![serde_json::json!(11)]);
            assert_eq!(pull.reviewers, vec![serde_json::json!(12)]);
        }
        Kind::Gitea => {
            assert_eq!(pull.labels, vec![serde_json::json!(21)]);
            assert_eq!(pull.assignees, vec![serde_json::json!("alice")]);
            assert_eq!(pull.reviewers, vec![serde_json::json!("bob")]);
        }
    }
    let row = status_row(&world);
    assert_eq!(row["current"], "v1.0.0", "{row}");
    assert!(
        row["request"]
            .as_str()
            .unwrap()
            .contains(&format!("/{}", n(1))),
        "{row}"
    );
    let status = world.run(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("OPEN REQUESTS"));
    // Every request carried the forge's token, in the forge's own header.
    assert!(
        forge
            .log()
            .iter()
            .skip(others as usize)
            .all(|l| l.auth.is_some())
    );

    // 2. A newer tag updates the same request in place.
    world.push("org/api", "v1.2.0").await;
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(
        forge.ops_since(mark),
        concat(&[read(kind, n(1)), edit(kind, n(1))])
    );
    assert_eq!(
        forge.pulls().len() as u64,
        n(1),
        "a second request was opened"
    );
    assert!(forge.pull(n(1)).title.contains("api v1.2.0"));
    assert!(world.file_on(UPDATE, FILE).contains("newTag: v1.2.0"));

    // 3. Someone pushes to the environment branch: the update branch is rebuilt on it.
    let person = Person::clone(world.git.path("manifests").to_str().unwrap(), BASE);
    person.commit_and_push("README.md", "hello\n", "docs");
    let moved = head(&world, BASE);
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(forge.ops_since(mark), read(kind, n(1)));
    let parent = git(
        &world.git.path("manifests"),
        &["rev-parse", &format!("refs/heads/{UPDATE}^")],
    );
    assert_eq!(
        parent.trim(),
        moved,
        "the update branch is not on the branch's head"
    );
    assert!(world.file_on(UPDATE, "README.md").contains("hello"));

    // 4. A person merges it: its version counts as written, and nothing is opened again.
    forge.merge_by_person(n(1));
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(
        forge.ops_since(mark),
        concat(&[vec![get(kind, n(1))], find(kind)])
    );
    assert!(world.file_on(BASE, FILE).contains("newTag: v1.2.0"));
    let row = status_row(&world);
    assert_eq!(row["current"], "v1.2.0", "{row}");
    assert_eq!(row["last_update"], "v1.0.0 -> v1.2.0", "{row}");
    assert!(row["request"].is_null(), "{row}");
    once_ok(&world);
    assert_eq!(forge.pulls().len() as u64, n(1), "a duplicate was opened");

    // 5. Closed without merging: that version is held until something newer.
    world.push("org/api", "v1.3.0").await;
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(
        forge.ops_since(mark),
        concat(&[find(kind), open(kind, n(2))])
    );
    forge.close_by_person(n(2));
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(
        forge.ops_since(mark),
        concat(&[vec![get(kind, n(2))], find(kind)])
    );
    let row = status_row(&world);
    assert!(
        row["hold"].as_str().unwrap_or_default().contains("v1.3.0"),
        "{row}"
    );
    once_ok(&world);
    assert_eq!(
        forge.pulls().len() as u64,
        n(2),
        "the closed version was proposed again"
    );
    world.push("org/api", "v1.4.0").await;
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(
        forge.ops_since(mark),
        concat(&[find(kind), open(kind, n(3))])
    );
    assert!(forge.pull(n(3)).title.contains("api v1.4.0"));

    // 6. The forge down: a clear error, nothing pushed anywhere, and a retry that works.
    forge.set_down(true);
    world.push("org/api", "v1.5.0").await;
    let (base_at, update_at) = (head(&world, BASE), head(&world, UPDATE));
    let (ok, out) = once(&world);
    assert!(!ok, "{out}");
    assert!(
        out.contains("HTTP 503") && out.contains("nothing was pushed to deploy/prod"),
        "{out}"
    );
    assert_eq!(
        (head(&world, BASE), head(&world, UPDATE)),
        (base_at.clone(), update_at)
    );
    let row = status_row(&world);
    assert!(
        row["last_error"].as_str().unwrap().contains("HTTP 503"),
        "{row}"
    );
    forge.set_down(false);
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(
        forge.ops_since(mark),
        concat(&[read(kind, n(3)), edit(kind, n(3))])
    );
    assert!(forge.pull(n(3)).title.contains("api v1.5.0"));
    assert_eq!(head(&world, BASE), base_at, "the environment branch moved");

    // 7. Auto-merge: asked at the pushed head; merged only once the checks pass.
    world.write_config(&config(&world, &forge, true));
    let update_head = head(&world, UPDATE);
    let mark = forge.log().len();
    once_ok(&world);
    let merge = match kind {
        Kind::GitHub => vec![get(kind, n(3))],
        Kind::GitLab => vec![
            "GET version".into(),
            format!("PUT merge_requests/{}/merge", n(3)),
        ],
        Kind::Gitea => vec![format!("POST pulls/{}/merge", n(3))],
    };
    assert_eq!(forge.ops_since(mark), concat(&[read(kind, n(3)), merge]));
    let asked = forge.log().last().unwrap().body.clone();
    match kind {
        Kind::GitLab => {
            assert_eq!(asked["sha"], update_head.as_str());
            assert_eq!(asked["auto_merge"], true);
        }
        Kind::Gitea => {
            assert_eq!(asked["head_commit_id"], update_head.as_str());
            assert_eq!(asked["merge_when_checks_succeed"], true);
        }
        Kind::GitHub => {}
    }
    assert!(
        !world.file_on(BASE, FILE).contains("v1.5.0"),
        "merged before the checks passed"
    );
    forge.checks_pass();
    let mark = forge.log().len();
    once_ok(&world);
    let expected = match kind {
        Kind::GitHub => vec![
            get(kind, n(3)),
            get(kind, n(3)),
            get(kind, n(3)),
            format!("PUT pulls/{}/merge", n(3)),
        ],
        _ => concat(&[vec![get(kind, n(3))], find(kind)]),
    };
    assert_eq!(forge.ops_since(mark), expected);
    if kind == Kind::GitHub {
        assert_eq!(
            forge.log().last().unwrap().body["sha"],
            update_head.as_str()
        );
    }
    assert!(world.file_on(BASE, FILE).contains("newTag: v1.5.0"));
    let row = status_row(&world);
    assert_eq!(row["last_update"], "v1.2.0 -> v1.5.0", "{row}");
}

/// `plan`, drafts, closing what is no longer wanted, adopting a request opened elsewhere, and
/// an image that pushes past the request.
async fn looked_after(kind: Kind) {
    let world = World::new(&[(FILE, OVERLAY)], &[BASE]).await;
    protect(&world);
    let forge = FakeForge::start(kind, world.git.path("manifests")).await;
    // No other requests here: every forge's list is one page.
    let find = |kind: Kind| find_pages(kind, 1);
    let noun = match kind {
        Kind::GitLab => "merge request",
        _ => "pull request",
    };
    let drafts = config(&world, &forge, true)
        .replace("auto_merge = true", "auto_merge = true\ndraft = true");
    world.write_config(&drafts);
    world.push("org/api", "v1.0.0").await;
    world.push("org/api", "v1.1.0").await;

    // 1. `plan` says what it would open, and only reads.
    let mark = forge.log().len();
    let out = stdout(&world, &["plan"]);
    assert!(
        out.contains(&format!("would open a {noun} from {UPDATE} into {BASE}")),
        "{out}"
    );
    assert_eq!(forge.ops_since(mark), find(kind));
    assert!(!exists(&world, UPDATE), "plan pushed the update branch");

    // 2. A draft is opened, marked as each forge marks drafts, and never merged.
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(forge.ops_since(mark), concat(&[find(kind), open(kind, 1)]));
    let draft = |title: &str| match kind {
        Kind::GitHub => forge.pull(1).draft,
        Kind::GitLab => title.starts_with("Draft: "),
        Kind::Gitea => title.starts_with("WIP: "),
    };
    assert!(draft(&forge.pull(1).title), "{:?}", forge.pull(1));
    world.push("org/api", "v1.2.0").await;
    forge.checks_pass();
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(
        forge.ops_since(mark),
        concat(&[read(kind, 1), edit(kind, 1)]),
        "a draft was asked to merge"
    );
    let title = forge.pull(1).title;
    assert!(title.contains("v1.2.0") && draft(&title), "{title}");
    assert_eq!(forge.pull(1).state, "open");

    // 3. A hold: `plan` says it would close the request; `once` closes it with a comment
    // that gives the hold's reason, and deletes the update branch.
    stdout(
        &world,
        &["hold", "api", "--env", "prod", "--reason", "release freeze"],
    );
    let mark = forge.log().len();
    let out = stdout(&world, &["plan"]);
    assert!(out.contains(&format!("would close {noun}")), "{out}");
    assert_eq!(forge.ops_since(mark), vec![get(kind, 1)]);
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(
        forge.ops_since(mark),
        concat(&[read(kind, 1), close(kind, 1)])
    );
    let closed = forge.pull(1);
    assert_eq!(closed.state, "closed");
    assert!(!closed.merged);
    assert!(
        closed.comments.len() == 1
            && closed.comments[0].contains("No longer wanted")
            && closed.comments[0].contains("held by `image-updater hold`")
            && closed.comments[0].contains("release freeze"),
        "{:?}",
        closed.comments
    );
    assert!(!exists(&world, UPDATE), "the update branch was left behind");
    assert!(status_row(&world)["request"].is_null());
    // Closed by image-updater, not by a person: no revert hold, and nothing reopened.
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(forge.ops_since(mark), Vec::<String>::new());

    // 4. Released, but another replica opened the request first and the list read before
    // opening did not show it yet: the forge's "already exists" answer leads to adopting that
    // request, given this proposal's title and body.
    stdout(&world, &["release", "api", "--env", "prod"]);
    let theirs = forge.open_unseen(UPDATE, BASE, 1);
    let mark = forge.log().len();
    once_ok(&world);
    let refused = match kind {
        Kind::GitHub => vec!["POST pulls".to_string()],
        Kind::GitLab => vec![
            "GET users".into(),
            "GET users".into(),
            "POST merge_requests".into(),
        ],
        Kind::Gitea => vec!["GET labels".into(), "POST pulls".into()],
    };
    // Gitea looks the request up by base and head, which is not a stale list: found at once.
    let expected = match kind {
        Kind::Gitea => concat(&[vec![GITEA_LOOKUP.to_string()], edit(kind, theirs)]),
        _ => concat(&[find(kind), refused, find(kind), edit(kind, theirs)]),
    };
    assert_eq!(forge.ops_since(mark), expected);
    // The forge's own answer for a request that exists: GitHub 422, GitLab and Gitea 409.
    let answered: Vec<u16> = forge.log()[mark..]
        .iter()
        .filter(|l| l.method == "POST")
        .map(|l| l.status)
        .collect();
    let exists_status = match kind {
        Kind::GitHub => vec![422],
        Kind::GitLab => vec![409],
        Kind::Gitea => vec![],
    };
    assert_eq!(answered, exists_status);
    assert_eq!(
        forge.pulls().len() as u64,
        theirs,
        "a second request was opened"
    );
    let adopted = forge.pull(theirs);
    assert!(
        adopted.title.contains("api v1.2.0") && adopted.body.contains("`v1.0.0` | `v1.2.0`"),
        "{adopted:?}"
    );
    assert!(
        status_row(&world)["request"]
            .as_str()
            .is_some_and(|r| r.ends_with(&format!("/{theirs}"))),
    );

    // 5. A person puts the same value on the branch by hand: the request has nothing left to
    // propose, and is closed saying so.
    let person = Person::clone(world.git.path("manifests").to_str().unwrap(), BASE);
    let by_hand = world.file_on(BASE, FILE).replace("v1.0.0", "v1.2.0");
    person.commit_and_push(FILE, &by_hand, "api v1.2.0 by hand");
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(
        forge.ops_since(mark),
        concat(&[read(kind, theirs), close(kind, theirs)])
    );
    let comments = forge.pull(theirs).comments;
    assert!(
        comments
            .last()
            .unwrap()
            .contains(&format!("is on `{BASE}` now")),
        "{comments:?}"
    );
    assert!(!exists(&world, UPDATE));

    // 6. `write = "push"` on the image: its updates go straight to the branch (unprotected
    // now), and the forge is not asked anything.
    std::fs::remove_file(world.git.path("manifests").join("hooks/pre-receive")).unwrap();
    let pushing = drafts.replace("[images.api]\n", "[images.api]\nwrite = \"push\"\n");
    assert_ne!(pushing, drafts);
    world.write_config(&pushing);
    world.push("org/api", "v1.3.0").await;
    let mark = forge.log().len();
    let out = once_ok(&world);
    assert!(out.contains("v1.2.0 -> v1.3.0"), "{out}");
    assert_eq!(forge.ops_since(mark), Vec::<String>::new());
    assert!(world.file_on(BASE, FILE).contains("newTag: v1.3.0"));
    assert!(!exists(&world, UPDATE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_requests_looked_after() {
    looked_after(Kind::GitHub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_requests_looked_after() {
    looked_after(Kind::GitLab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_requests_looked_after() {
    looked_after(Kind::Gitea).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_pull_requests() {
    scenario(Kind::GitHub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_merge_requests() {
    scenario(Kind::GitLab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_pull_requests() {
    scenario(Kind::Gitea).await;
}

/// A GitHub App: the JWT signed with the app's key (made here with openssl) is traded for an
/// installation token, found on the repository, and the token signs the API calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_app_signs_in_with_installation_tokens() {
    let world = World::new(&[(FILE, OVERLAY)], &[BASE]).await;
    let forge = FakeForge::start(Kind::GitHub, world.git.path("manifests")).await;
    let key = world.dir.path().join("app.pem");
    let public = world.dir.path().join("app.pub.pem");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is installed: apt-get install openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&["genrsa", "-out", key.to_str().unwrap(), "2048"]);
    openssl(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    forge.trust_app(&std::fs::read(&public).unwrap());
    let text = config(&world, &forge, false).replace(
        &format!(
            "token = \"file:{}\"",
            world.dir.path().join("forge-token").display()
        ),
        &format!("app_id = {APP_ID}\napp_key = \"file:{}\"", key.display()),
    );
    assert!(text.contains("app_id"), "{text}");
    world.write_config(&text);
    world.push("org/api", "v1.0.0").await;
    world.push("org/api", "v1.1.0").await;
    once_ok(&world);
    let ops = forge.ops_since(0);
    assert_eq!(
        ops[..3],
        [
            "GET installation".to_string(),
            format!("POST app/installations/{INSTALLATION}/access_tokens"),
            "GET pulls".to_string(),
        ],
        "{ops:?}"
    );
    assert!(ops.contains(&"POST pulls".to_string()), "{ops:?}");
    // The API calls carried the installation token, never the JWT.
    let log = forge.log();
    assert!(
        log[2..]
            .iter()
            .all(|l| l.auth.as_deref() == Some(&format!("Bearer {TOKEN}") as &str))
    );
    assert!(forge.pull(1).title.contains("api v1.1.0"));
}

/// A request merged (by a person, or by the forge's auto-merge) between the bot's read of it
/// and its update: the merged request is left as it merged (no new commit recorded for it, no
/// new title), what merged is read from the branch and counts as written, and the newer tag is
/// proposed afresh in a new request, then deployed when that one merges. Before, the newer tag
/// was taken as deployed, then held as if a person had reverted it, and never deployed.
async fn merge_race(kind: Kind) {
    let (world, forge) = proposing(kind).await;
    once_ok(&world);
    assert!(forge.pull(1).title.contains("api v1.1.0"));
    let proposed_head = head(&world, UPDATE);

    world.push("org/api", "v1.2.0").await;
    forge.merge_after_next_read(1);
    let mark = forge.log().len();
    let out = once_ok(&world);
    // What merged is what the request held when it merged.
    assert!(
        world.file_on(BASE, FILE).contains("newTag: v1.1.0"),
        "{out}"
    );
    let merge_parents = git(
        &world.git.path("manifests"),
        &[
            "rev-list",
            "--parents",
            "-n",
            "1",
            &format!("refs/heads/{BASE}"),
        ],
    );
    assert!(merge_parents.contains(&proposed_head), "{merge_parents}");
    // The merged request is not touched after its merge.
    let merged = forge.pull(1);
    assert!(merged.merged, "{kind:?}");
    assert!(
        merged.title.contains("api v1.1.0") && !merged.title.contains("v1.2.0"),
        "{}",
        merged.title
    );
    let ops = forge.ops_since(mark);
    let edits_of_1 = ops
        .iter()
        .filter(|op| {
            op.starts_with("PATCH pulls/1")
                || op.starts_with("PUT merge_requests/1")
                || op.starts_with("POST issues/1/")
                || op.starts_with("POST merge_requests/1/")
        })
        .count();
    assert_eq!(edits_of_1, 0, "{ops:?}");
    // The newer tag, proposed afresh on the merged branch's new head.
    let second = forge.pull(2);
    assert_eq!(second.state, "open");
    assert!(second.title.contains("api v1.2.0"), "{}", second.title);
    assert!(world.file_on(UPDATE, FILE).contains("newTag: v1.2.0"));
    let row = status_row(&world);
    assert_eq!(row["current"], "v1.1.0", "{row}");
    assert!(row["hold"].is_null(), "{row}");
    assert!(
        row["request"].as_str().unwrap_or_default().ends_with("/2"),
        "{row}"
    );

    // Merged later: deployed.
    forge.merge_by_person(2);
    once_ok(&world);
    assert!(world.file_on(BASE, FILE).contains("newTag: v1.2.0"));
    let row = status_row(&world);
    assert_eq!(row["current"], "v1.2.0", "{row}");
    assert!(row["hold"].is_null(), "{row}");
    assert_eq!(forge.pulls().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_merge_race() {
    merge_race(Kind::GitHub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_merge_race() {
    merge_race(Kind::GitLab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_merge_race() {
    merge_race(Kind::Gitea).await;
}

/// A known request that answers 404 (an admin deleted it, the repository moved): forgotten,
/// and a request is found or opened again, instead of every cycle failing on it.
async fn gone_request(kind: Kind) {
    let (world, forge) = proposing(kind).await;
    once_ok(&world);
    forge.delete(1);
    let out = once_ok(&world);
    assert!(out.contains("is gone") || !out.is_empty(), "{out}");
    let second = forge.pull(2);
    assert_eq!(second.state, "open");
    assert!(second.title.contains("api v1.1.0"), "{}", second.title);
    let row = status_row(&world);
    assert!(
        row["request"].as_str().unwrap_or_default().ends_with("/2"),
        "{row}"
    );
    assert!(row["last_error"].is_null(), "{row}");
    // And it is looked after from then on.
    once_ok(&world);
    assert_eq!(forge.pulls().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_gone_request() {
    gone_request(Kind::GitHub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_gone_request() {
    gone_request(Kind::GitLab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_gone_request() {
    gone_request(Kind::Gitea).await;
}

/// A forge that answers 429 with `Retry-After: 30` gets nothing for those 30 seconds, however
/// often the daemon's cycles come (every second here); then the request is opened. The wait
/// is counted in `/metrics` and shown by `status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_waits_out_a_forges_retry_after() {
    let (world, forge) = proposing(Kind::GitHub).await;
    forge.rate_limit_next(30);
    let daemon = world.start();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while forge.log().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the forge was never asked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let limited_at = std::time::Instant::now();
    assert_eq!(forge.log()[0].status, 429);
    // The window: cycles run every second, and none sends the forge anything.
    tokio::time::sleep(std::time::Duration::from_secs(28)).await;
    assert_eq!(forge.log().len(), 1, "{:?}", forge.ops_since(0));
    let row = status_row(&world);
    assert!(
        row["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("asked to wait"),
        "{row}"
    );
    assert_eq!(
        daemon
            .metric("image_updater_forge_rate_limited_total")
            .await,
        1.0
    );
    // After it: the request is opened.
    world
        .wait_for(UPDATE, FILE, "newTag: v1.1.0", &daemon)
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while forge.pulls().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            forge.ops_since(0)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let first_after = forge.log()[1].clone();
    assert!(
        limited_at.elapsed() >= std::time::Duration::from_secs(29),
        "{first_after:?}"
    );
}

/// A request a person closed (its value held, as a revert is) and then reopened: the person
/// wants it. It is kept open, its value is no longer held, and it is kept current; before, it
/// was closed again with a comment saying its changes were on the branch, which they were not.
async fn reopened_by_a_person(kind: Kind) {
    let (world, forge) = proposing(kind).await;
    once_ok(&world);
    forge.close_by_person(1);
    once_ok(&world);
    let row = status_row(&world);
    assert!(
        row["hold"].as_str().unwrap_or_default().contains("v1.1.0"),
        "{row}"
    );

    forge.reopen_by_person(1);
    let out = once_ok(&world);
    assert!(out.contains("reopened"), "{out}");
    once_ok(&world);
    once_ok(&world);
    let pull = forge.pull(1);
    assert_eq!(pull.state, "open", "{kind:?}: closed again");
    assert!(pull.comments.is_empty(), "{:?}", pull.comments);
    assert!(pull.title.contains("api v1.1.0"), "{}", pull.title);
    assert!(world.file_on(UPDATE, FILE).contains("newTag: v1.1.0"));
    assert_eq!(forge.pulls().len(), 1);
    let row = status_row(&world);
    assert!(row["hold"].is_null(), "{row}");
    assert!(
        row["request"].as_str().unwrap_or_default().ends_with("/1"),
        "{row}"
    );
    // Kept current: a newer tag updates it in place.
    world.push("org/api", "v1.2.0").await;
    once_ok(&world);
    assert!(forge.pull(1).title.contains("api v1.2.0"));
    assert_eq!(forge.pulls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_reopened_by_a_person() {
    reopened_by_a_person(Kind::GitHub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_reopened_by_a_person() {
    reopened_by_a_person(Kind::GitLab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_reopened_by_a_person() {
    reopened_by_a_person(Kind::Gitea).await;
}

/// GitLab before 17.11 knows `merge_when_pipeline_succeeds`, not `auto_merge`, and given only
/// `auto_merge` merges at once where pipelines are not required. The version is read once,
/// and an older GitLab is asked to merge when the pipeline succeeds: nothing merges before
/// the checks pass. A current one gets `auto_merge`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_before_17_11_is_asked_to_merge_when_the_pipeline_succeeds() {
    for (version, field) in [
        ("17.10.4-ee", "merge_when_pipeline_succeeds"),
        ("17.11.0", "auto_merge"),
    ] {
        let world = World::new(&[(FILE, OVERLAY)], &[BASE]).await;
        protect(&world);
        let forge = FakeForge::start(Kind::GitLab, world.git.path("manifests")).await;
        forge.set_gitlab_version(version);
        world.write_config(&config(&world, &forge, true));
        world.push("org/api", "v1.0.0").await;
        world.push("org/api", "v1.1.0").await;
        once_ok(&world);
        let merges: Vec<_> = forge
            .log()
            .into_iter()
            .filter(|l| l.op() == "PUT merge_requests/1/merge")
            .collect();
        assert_eq!(merges.len(), 1, "{version}");
        assert_eq!(
            merges[0].body[field], true,
            "{version}: {:?}",
            merges[0].body
        );
        assert!(
            !world.file_on(BASE, FILE).contains("v1.1.0"),
            "{version}: merged before the pipeline passed"
        );
        assert_eq!(
            forge
                .log()
                .iter()
                .filter(|l| l.op() == "GET version")
                .count(),
            1
        );
        forge.checks_pass();
        once_ok(&world);
        assert!(
            world.file_on(BASE, FILE).contains("newTag: v1.1.0"),
            "{version}"
        );
    }
}

/// A reviewer the forge refuses (422: not a collaborator) no longer fails the cycle after the
/// request was opened: the request is recorded, the refusal shown by `status`, and the reviews
/// asked for again each cycle until the forge accepts.
async fn refused_reviewer(kind: Kind) {
    let world = World::new(&[(FILE, OVERLAY)], &[BASE]).await;
    protect(&world);
    let forge = FakeForge::start(kind, world.git.path("manifests")).await;
    forge.refuse_reviewer(Some("bob"));
    world.write_config(&config(&world, &forge, false));
    world.push("org/api", "v1.0.0").await;
    world.push("org/api", "v1.1.0").await;
    once_ok(&world);
    assert_eq!(forge.pull(1).state, "open");
    assert!(forge.pull(1).reviewers.is_empty());
    let row = status_row(&world);
    assert!(
        row["waiting"]
            .as_str()
            .unwrap_or_default()
            .contains("reviews not requested yet"),
        "{row}"
    );
    assert!(row["last_error"].is_null(), "{row}");
    let asked = |forge: &FakeForge| {
        forge
            .log()
            .iter()
            .filter(|l| l.op() == "POST pulls/1/requested_reviewers")
            .count()
    };
    assert_eq!(asked(&forge), 1);
    once_ok(&world);
    assert_eq!(asked(&forge), 2, "not asked again");
    forge.refuse_reviewer(None);
    once_ok(&world);
    assert_eq!(asked(&forge), 3);
    assert_eq!(forge.pull(1).reviewers, vec![serde_json::json!("bob")]);
    once_ok(&world);
    assert_eq!(asked(&forge), 3, "asked again once accepted");
    let row = status_row(&world);
    assert!(
        !row["waiting"]
            .as_str()
            .unwrap_or_default()
            .contains("reviews not requested"),
        "{row}"
    );
    assert_eq!(forge.pulls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_refused_reviewer() {
    refused_reviewer(Kind::GitHub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_refused_reviewer() {
    refused_reviewer(Kind::Gitea).await;
}

/// Gitea lists 50 pull requests a page and image-updater reads at most 10 pages: with more
/// than 500 newer open pull requests, a request whose record was lost (a new state dir,
/// another replica) was never found again, and opening one failed on Gitea's "already
/// exists". Gitea's lookup by base and head finds it in one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_finds_its_request_behind_500_others() {
    let (world, forge) = proposing(Kind::Gitea).await;
    once_ok(&world);
    for i in 0..520 {
        forge.add_other(&format!("feature/{i}"), "main");
    }
    // The record is lost.
    std::fs::remove_file(world.state_dir().join("requests.json")).unwrap();
    world.push("org/api", "v1.2.0").await;
    let mark = forge.log().len();
    once_ok(&world);
    assert_eq!(
        forge.ops_since(mark),
        concat(&[vec![GITEA_LOOKUP.to_string()], edit(Kind::Gitea, 1)])
    );
    assert!(forge.pull(1).title.contains("api v1.2.0"));
    assert_eq!(forge.pulls().len(), 521);
}

/// `draft = false` after a request was opened as a draft marks it ready: GitHub through its
/// GraphQL API's `markPullRequestReadyForReview` (REST cannot), GitLab and Gitea by taking
/// the draft mark off the title.
async fn draft_false_marks_ready(kind: Kind) {
    let world = World::new(&[(FILE, OVERLAY)], &[BASE]).await;
    protect(&world);
    let forge = FakeForge::start(kind, world.git.path("manifests")).await;
    let drafts = config(&world, &forge, false)
        .replace("auto_merge = false", "auto_merge = false\ndraft = true");
    world.write_config(&drafts);
    world.push("org/api", "v1.0.0").await;
    world.push("org/api", "v1.1.0").await;
    once_ok(&world);
    let is_draft = |p: &harness::forge::Pull| match kind {
        Kind::GitHub => p.draft,
        Kind::GitLab => p.title.starts_with("Draft:"),
        Kind::Gitea => p.title.starts_with("WIP:"),
    };
    assert!(is_draft(&forge.pull(1)), "{:?}", forge.pull(1));
    world.write_config(&config(&world, &forge, false));
    let out = once_ok(&world);
    let pull = forge.pull(1);
    assert!(!is_draft(&pull), "{kind:?}: still a draft: {pull:?}\n{out}");
    assert!(pull.title.contains("api v1.1.0"), "{}", pull.title);
    if kind == Kind::GitHub {
        assert!(
            forge.log().iter().any(|l| l.op() == "POST graphql"),
            "{:?}",
            forge.ops_since(0)
        );
    }
    // Once ready, nothing more is asked.
    let mark = forge.log().len();
    once_ok(&world);
    assert!(
        !forge
            .ops_since(mark)
            .iter()
            .any(|op| op.contains("graphql")),
        "{:?}",
        forge.ops_since(mark)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_draft_false_marks_ready() {
    draft_false_marks_ready(Kind::GitHub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_draft_false_marks_ready() {
    draft_false_marks_ready(Kind::GitLab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_draft_false_marks_ready() {
    draft_false_marks_ready(Kind::Gitea).await;
}

/// The judge of the GitHub test server: GitHub's published REST description refuses, table
/// by table, requests GitHub does not take, and takes the ones image-updater sends.
#[test]
fn githubs_description_judges_requests() {
    use harness::openapi::{github, violation};
    use serde_json::json;
    let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let repo = "/repos/acme/manifests";
    let allowed = [
        (
            "GET",
            format!("{repo}/pulls"),
            q(&[
                ("state", "open"),
                ("head", "acme:image-updater/prod"),
                ("base", "deploy/prod"),
                ("per_page", "100"),
            ]),
            json!(null),
        ),
        (
            "POST",
            format!("{repo}/pulls"),
            q(&[]),
            json!({"title": "t", "head": "h", "base": "b", "body": "x", "draft": false, "maintainer_can_modify": false}),
        ),
        (
            "PATCH",
            format!("{repo}/pulls/3"),
            q(&[]),
            json!({"title": "t", "body": "b", "state": "closed"}),
        ),
        (
            "PUT",
            format!("{repo}/pulls/3/merge"),
            q(&[]),
            json!({"sha": "0123456789abcdef0123456789abcdef01234567", "merge_method": "squash"}),
        ),
        (
            "POST",
            format!("{repo}/pulls/3/requested_reviewers"),
            q(&[]),
            json!({"reviewers": ["bob"]}),
        ),
        (
            "POST",
            format!("{repo}/issues/3/labels"),
            q(&[]),
            json!({"labels": ["image-updater"]}),
        ),
    ];
    for (method, path, query, body) in &allowed {
        assert_eq!(
            violation(github(), method, path, query, body),
            None,
            "{method} {path}"
        );
    }
    let refused = [
        (
            "GET",
            format!("{repo}/pulls"),
            q(&[("state", "merged")]),
            json!(null),
            "is not one of",
        ),
        (
            "GET",
            format!("{repo}/pulls"),
            q(&[("status", "open")]),
            json!(null),
            "query parameter status is not declared",
        ),
        (
            "POST",
            format!("{repo}/pulls"),
            q(&[]),
            json!({"title": "t", "head": "h", "base": "b", "draftt": true}),
            "field draftt is not in the schema",
        ),
        (
            "POST",
            format!("{repo}/pulls"),
            q(&[]),
            json!({"title": "t", "base": "b"}),
            "required field head is missing",
        ),
        (
            "PATCH",
            format!("{repo}/pulls/3"),
            q(&[]),
            json!({"state": "merged"}),
            "is not one of",
        ),
        (
            "PUT",
            format!("{repo}/pulls/3/merge"),
            q(&[]),
            json!({"merge_method": "fast-forward"}),
            "is not one of",
        ),
        (
            "PUT",
            format!("{repo}/pulls/three/merge"),
            q(&[]),
            json!({}),
            "is not integer",
        ),
        (
            "DELETE",
            format!("{repo}/pulls/3"),
            q(&[]),
            json!(null),
            "no such operation",
        ),
        (
            "POST",
            format!("{repo}/pulls/3/reviewers"),
            q(&[]),
            json!({}),
            "no such operation",
        ),
        (
            "GET",
            format!("{repo}/pulls/3"),
            q(&[]),
            json!({"x": 1}),
            "a body the operation does not take",
        ),
    ];
    for (method, path, query, body, why) in &refused {
        let got = violation(github(), method, path, query, body);
        assert!(
            got.as_deref().is_some_and(|g| g.contains(why)),
            "{method} {path}: {got:?}, expected {why}"
        );
    }
}

/// `(method, path, query, body)` the description must take, and the same with what it must
/// answer for ones it must refuse.
type Allowed<'a> = [(
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    serde_json::Value,
)];
type Refused<'a> = [(
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    serde_json::Value,
    &'a str,
)];

fn judge(doc: &serde_json::Value, allowed: &Allowed, refused: &Refused) {
    use harness::openapi::violation;
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    for (method, path, query, body) in allowed {
        assert_eq!(
            violation(doc, method, path, &owned(query), body),
            None,
            "{method} {path}"
        );
    }
    for (method, path, query, body, why) in refused {
        let got = violation(doc, method, path, &owned(query), body);
        assert!(
            got.as_deref().is_some_and(|g| g.contains(why)),
            "{method} {path}: {got:?}, expected {why}"
        );
    }
}

/// The judge of the GitLab test server: the merge request reference's attribute tables, as
/// kept in `tests/oracles/descriptions/gitlab-v4.json`, take what image-updater sends and
/// refuse the misreadings a client could make (labels as a list, a state GitLab does not
/// know, a body without its required fields).
#[test]
fn gitlabs_reference_judges_requests() {
    use serde_json::json;
    let mr = "/projects/acme%2Fmanifests/merge_requests";
    let list = [
        ("state", "opened"),
        ("source_branch", "image-updater/prod"),
        ("target_branch", "deploy/prod"),
        ("per_page", "100"),
    ];
    let allowed: &Allowed = &[
        ("GET", mr, &list, json!(null)),
        (
            "POST",
            mr,
            &[],
            json!({"source_branch": "h", "target_branch": "b", "title": "t", "description": "d",
                   "squash": false, "labels": "a,b", "assignee_ids": [3], "reviewer_ids": [4]}),
        ),
        (
            "GET",
            "/projects/acme%2Fmanifests/merge_requests/7",
            &[],
            json!(null),
        ),
        (
            "PUT",
            "/projects/acme%2Fmanifests/merge_requests/7",
            &[],
            json!({"title": "t", "description": "d", "state_event": "close"}),
        ),
        (
            "PUT",
            "/projects/acme%2Fmanifests/merge_requests/7/merge",
            &[],
            json!({"sha": "0123456789abcdef0123456789abcdef01234567", "squash": true, "auto_merge": true}),
        ),
        (
            "POST",
            "/projects/acme%2Fmanifests/merge_requests/7/notes",
            &[],
            json!({"body": "closed"}),
        ),
        ("GET", "/users", &[("username", "bob")], json!(null)),
        ("GET", "/version", &[], json!(null)),
    ];
    let refused: &Refused = &[
        (
            "GET",
            mr,
            &[("state", "open")],
            json!(null),
            "is not one of",
        ),
        (
            "POST",
            mr,
            &[],
            json!({"source_branch": "h", "target_branch": "b", "title": "t", "labels": ["a"]}),
            "is not string",
        ),
        (
            "POST",
            mr,
            &[],
            json!({"source_branch": "h", "title": "t"}),
            "required field target_branch is missing",
        ),
        (
            "PUT",
            "/projects/acme%2Fmanifests/merge_requests/7",
            &[],
            json!({"state": "closed"}),
            "field state is not in the schema",
        ),
        (
            "PUT",
            "/projects/acme%2Fmanifests/merge_requests/7/merge",
            &[],
            json!({"merge_when_checks_pass": true}),
            "is not in the schema",
        ),
        (
            "POST",
            "/projects/acme%2Fmanifests/merge_requests/7/notes",
            &[],
            json!({"note": "x"}),
            "required field body is missing",
        ),
        (
            "GET",
            mr,
            &[("per_page", "500")],
            json!(null),
            "is above 100",
        ),
        (
            "DELETE",
            "/projects/acme%2Fmanifests/merge_requests/7",
            &[],
            json!(null),
            "no such operation",
        ),
    ];
    judge(harness::openapi::gitlab(), allowed, refused);
}

/// The judge of the Gitea test server: Gitea's own Swagger description (the parts we call,
/// kept in `tests/oracles/descriptions/gitea-v1.json`) takes what image-updater sends and
/// refuses what Gitea would not understand: a merge without `Do`, labels by name, an unknown
/// state.
#[test]
fn giteas_description_judges_requests() {
    use serde_json::json;
    let allowed: &Allowed = &[
        (
            "GET",
            "/repos/acme/manifests/pulls",
            &[("state", "open"), ("limit", "50"), ("page", "2")],
            json!(null),
        ),
        (
            "GET",
            "/repos/acme/manifests/pulls/deploy%2Fprod/image-updater%2Fprod",
            &[],
            json!(null),
        ),
        (
            "POST",
            "/repos/acme/manifests/pulls",
            &[],
            json!({"head": "h", "base": "b", "title": "t", "body": "x", "labels": [1], "assignees": ["bob"]}),
        ),
        (
            "PATCH",
            "/repos/acme/manifests/pulls/4",
            &[],
            json!({"title": "t", "body": "b", "state": "closed"}),
        ),
        (
            "POST",
            "/repos/acme/manifests/pulls/4/merge",
            &[],
            json!({"Do": "squash", "head_commit_id": "abc", "merge_when_checks_succeed": true}),
        ),
        (
            "POST",
            "/repos/acme/manifests/pulls/4/requested_reviewers",
            &[],
            json!({"reviewers": ["bob"]}),
        ),
        (
            "POST",
            "/repos/acme/manifests/issues/4/comments",
            &[],
            json!({"body": "x"}),
        ),
        (
            "GET",
            "/repos/acme/manifests/labels",
            &[("limit", "50")],
            json!(null),
        ),
    ];
    let refused: &Refused = &[
        (
            "POST",
            "/repos/acme/manifests/pulls/4/merge",
            &[],
            json!({"merge_when_checks_succeed": true}),
            "required field Do is missing",
        ),
        (
            "POST",
            "/repos/acme/manifests/pulls/4/merge",
            &[],
            json!({"Do": "fast-forward"}),
            "is not one of",
        ),
        (
            "POST",
            "/repos/acme/manifests/pulls",
            &[],
            json!({"head": "h", "base": "b", "labels": ["image-updater"]}),
            "is not integer",
        ),
        (
            "GET",
            "/repos/acme/manifests/pulls",
            &[("state", "opened")],
            json!(null),
            "is not one of",
        ),
        (
            "PATCH",
            "/repos/acme/manifests/pulls/4",
            &[],
            json!({"draft": false}),
            "field draft is not in the schema",
        ),
        (
            "POST",
            "/repos/acme/manifests/pulls/4/requested_reviewers",
            &[],
            json!(null),
            "the body the operation requires is missing",
        ),
        (
            "POST",
            "/repos/acme/manifests/issues/4/comments",
            &[],
            json!({}),
            "required field body is missing",
        ),
        (
            "GET",
            "/repos/acme/manifests/pulls/four",
            &[],
            json!(null),
            "is not integer",
        ),
    ];
    judge(harness::openapi::gitea(), allowed, refused);
}
