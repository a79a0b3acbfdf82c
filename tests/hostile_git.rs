//! Git and config against hostile input: a git server that redirects, URLs that carry
//! passwords, repository names that climb out of the state dir, tags with escape sequences.

mod harness;

use harness::git::repository;

use std::path::Path;
use std::sync::Arc;

use harness::hostile::{Peer, json};
use harness::world::BIN;
use image_updater::config::{self, CredentialRef};
use image_updater::writeback::Mirror;

/// Finding 4: the git credential followed a redirect to another host. git is told never to
/// follow one, so the other host receives no request at all, let alone the credential.
#[tokio::test]
async fn git_does_not_follow_a_redirect_with_the_credential() {
    let other = Peer::start(
        "127.0.0.2",
        Arc::new(|_, _| json(401, "", &[("WWW-Authenticate", "Basic realm=\"evil\"")])),
    )
    .await;
    let target = other.url();
    let server = Peer::start(
        "127.0.0.1",
        Arc::new(move |req, _| {
            let location = format!("{target}{}", req.path);
            json(302, "", &[("Location", location.as_str())])
        }),
    )
    .await;
    // SAFETY: set once, by this test only.
    unsafe { std::env::set_var("HOSTILE_GIT_CREDS", "bot:s3cret") };
    let state = tempfile::tempdir().unwrap();
    let repo = repository(
        format!("{}/manifests.git", server.url()),
        Some(CredentialRef::Env("HOSTILE_GIT_CREDS".into())),
    );
    let mirror = Mirror::open(state.path(), &repo).await.unwrap();
    let err = mirror.fetch().await.unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
    assert!(!server.requests().is_empty(), "git never asked");
    assert!(other.requests().is_empty(), "{:?}", other.requests());
}

/// Finding 10: `[repositories."../../x"]` put the mirror outside the state dir, and a
/// non-git directory in a mirror's place was deleted.
#[tokio::test]
async fn mirrors_stay_inside_the_state_dir_and_delete_nothing_foreign() {
    let text = r#"
[repositories."../../x"]
url = "https://git.example.com/x.git"
[environments.prod]
repository = "../../x"
branch = "deploy/prod"
"#;
    let d = config::parse(Path::new("updater.toml"), text).unwrap_err();
    assert!(
        d.to_string()
            .contains("repository name `../../x` may use only letters"),
        "{d}"
    );

    let state = tempfile::tempdir().unwrap();
    let foreign = state.path().join("git/manifests.git");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine\n").unwrap();
    let repo = repository("https://git.example.com/m.git".into(), None);
    let err = Mirror::open(state.path(), &repo).await.unwrap_err();
    assert!(err.to_string().contains("is not a git mirror"), "{err}");
    assert_eq!(
        std::fs::read_to_string(foreign.join("notes.txt")).unwrap(),
        "mine\n"
    );
}

/// Finding 11: `http://user:pw@host/...` git URLs were accepted (the password went into git's
/// argv and the mirror's config), and userinfo in `api_url` was echoed. Both are refused,
/// pointing at `credentials`, and the password is not repeated.
#[test]
fn urls_with_passwords_are_refused() {
    let text = r#"
[registries.r]
prefix = "registry.example.com"
api_url = "https://bot:hunter2@registry.example.com"
[repositories.m]
url = "https://bot:hunter2@git.example.com/m.git"
[environments.prod]
repository = "m"
branch = "deploy/prod"
"#;
    let d = config::parse(Path::new("updater.toml"), text).unwrap_err();
    let all = d.to_string();
    assert!(
        all.contains("api_url carries a user name or password"),
        "{all}"
    );
    assert!(
        all.contains("carries a user name or password: put them in `credentials`"),
        "{all}"
    );
    assert!(!all.contains("hunter2"), "{all}");
    // ssh's user name is no secret.
    let ssh = text
        .replace(
            "https://bot:hunter2@git.example.com/m.git",
            "ssh://git@git.example.com/m.git",
        )
        .replace(
            "api_url = \"https://bot:hunter2@registry.example.com\"\n",
            "",
        );
    config::parse(Path::new("updater.toml"), &ssh).unwrap();
}

/// Finding 13: `image-updater test` printed registry tags raw, escape sequences included.
#[test]
fn test_prints_tags_with_escapes_shown_not_sent() {
    use std::io::Write;
    let mut child = std::process::Command::new(BIN)
        .args(["test", "ghcr.io/org/api", "--tags-from", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"v1.0.0\nv2\x1b[2J\x07\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("v2\\u{1b}[2J\\u{7}"), "{text}");
}
