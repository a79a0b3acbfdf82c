//! The binary as scripts and users call it: output formats and exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_image-updater"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("IMAGE_UPDATER_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    // A command that fails on its arguments exits before reading: a broken pipe is fine.
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const TAGS: &str = "v1.4.0\nv1.5.0-rc.1\nv1.5.0\nv2.0.0\nmain-abc1234\n";

#[test]
fn check_accepts_the_example() {
    let out = run(&["check", "--config", "updater.toml.example"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok (5 images, 3 environments"));
}

#[test]
fn check_reports_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updater.toml");
    std::fs::write(
        &path,
        "[repositories.m]\nurl = \"https://x/m.git\"\n[environments.prod]\nbranch = \"deploy/prod\"\n\
         [images.api]\nimage = \"ghcr.io/org/api\"\nstrategyy = \"semver\"\nconstraint = \">=1.0.0 <2.0.0 ||\"\n\
         allow_tags = [\"regexp:^v[0-9+$\"]\ntargets = [{ kind = \"manifest\", file = \"d.yaml\" }]\n",
    )
    .unwrap();
    let out = run(&["check", "--config", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for at in [":7:1", ":8:14", ":9:15"] {
        assert!(
            err.contains(&format!("{}{at}", path.display())),
            "{at} missing in:\n{err}"
        );
    }
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn check_of_a_missing_file_says_so() {
    let out = run(&["check", "--config", "/nonexistent/updater.toml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read /nonexistent/updater.toml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn test_selects_from_stdin_as_json() {
    let out = run(
        &[
            "test",
            "ghcr.io/org/api",
            "--semver-constraint",
            ">=1.0.0 <2.0.0",
            "--tags-from",
            "-",
            "--output",
            "json",
        ],
        Some(TAGS),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["image"], "ghcr.io/org/api");
    assert_eq!(report["strategy"], "semver");
    assert_eq!(report["selected"], "v1.5.0");
    let tags = report["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 5);
    assert_eq!(tags[3]["tag"], "v2.0.0");
    assert_eq!(tags[3]["eligible"], false);
    assert_eq!(tags[3]["reason"], "outside constraint `>=1.0.0 <2.0.0`");
}

#[test]
fn test_text_output_marks_the_winner() {
    let out = run(
        &[
            "test",
            "ghcr.io/org/api",
            "--update-strategy",
            "semver",
            "--ignore-tags",
            "regexp:-rc",
            "--tags-from",
            "-",
        ],
        Some(TAGS),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("selected: v2.0.0"), "{stdout}");
    assert!(stdout.contains("  * v2.0.0"), "{stdout}");
    assert!(
        stdout.contains("strategy: semver, no constraint (any release)"),
        "{stdout}"
    );
    let line = stdout.lines().find(|l| l.contains("v1.5.0-rc.1")).unwrap();
    assert!(line.starts_with("  - v1.5.0-rc.1 "), "{stdout}");
    assert!(
        line.ends_with("  matches ignore_tags `regexp:-rc`"),
        "{stdout}"
    );
}

#[test]
fn test_exits_1_when_nothing_is_selected() {
    let out = run(
        &[
            "test",
            "ghcr.io/org/api",
            "--semver-constraint",
            ">=3",
            "--tags-from",
            "-",
        ],
        Some(TAGS),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("selected: (none)"));
}

#[test]
fn test_exits_2_on_bad_arguments() {
    for args in [
        &[
            "test",
            "ghcr.io/org/api",
            "--semver-constraint",
            ">= bar",
            "--tags-from",
            "-",
        ][..],
        &[
            "test",
            "ghcr.io/org/api",
            "--update-strategy",
            "latest",
            "--tags-from",
            "-",
        ],
        &[
            "test",
            "ghcr.io/org/api",
            "--allow-tags",
            "regexp:(",
            "--tags-from",
            "-",
        ],
        &["test", "ghcr.io/Org/api", "--tags-from", "-"],
        &[
            "test",
            "ghcr.io/org/api",
            "--platforms",
            "linux",
            "--tags-from",
            "-",
        ],
        &["test", "ghcr.io/org/api", "--tags-from", "/nonexistent"],
        &[
            "test",
            "ghcr.io/org/api",
            "--output",
            "yaml",
            "--tags-from",
            "-",
        ],
    ] {
        let out = run(args, Some(TAGS));
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("error"), "{args:?}");
    }
}

#[test]
fn newest_build_reads_creation_times_from_the_tag_file() {
    let tags =
        "main-aaaaaaa 2026-01-01T00:00:00Z\nmain-bbbbbbb 2026-02-01T00:00:00Z\nmain-ccccccc\n";
    let out = run(
        &[
            "test",
            "ghcr.io/org/api",
            "--update-strategy",
            "newest-build",
            "--allow-tags",
            "regexp:^main-[a-f0-9]{7}$",
            "--tags-from",
            "-",
            "--output",
            "json",
        ],
        Some(tags),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["selected"], "main-bbbbbbb");
    assert_eq!(report["tags"][2]["reason"], "creation time unknown");
}

/// `check` says when an `env:` credential's variable is unset here, without failing (the
/// daemon's environment may differ).
#[test]
fn check_warns_about_unset_credential_variables() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("updater.toml");
    std::fs::write(
        &config,
        "[registries.ghcr]\nprefix = \"ghcr.io\"\ncredentials = \"env:IMAGE_UPDATER_TEST_UNSET_TOKEN\"\n\n[repositories.m]\nurl = \"https://git.example.com/m.git\"\n\n[environments.prod]\nrepository = \"m\"\nbranch = \"deploy/prod\"\n\n[images.api]\nimage = \"ghcr.io/org/api\"\n[[images.api.targets]]\nkind = \"manifest\"\nfile = \"api.yaml\"\n",
    )
    .unwrap();
    let out = run(&["check", "--config", config.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "warning[IU1010]: registry ghcr: credentials env:IMAGE_UPDATER_TEST_UNSET_TOKEN, but IMAGE_UPDATER_TEST_UNSET_TOKEN is not set here"
        ),
        "{}",
        text(&out.stderr)
    );
    // `hold` for an environment the image is not deployed to lists the ones it is.
    let out = run(
        &[
            "hold",
            "api",
            "--env",
            "nope",
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr)
            .contains("image `api` is not deployed to `nope`; it is deployed to: prod"),
        "{}",
        text(&out.stderr)
    );
}

/// The man page and the completions come from the parser's own definitions: every subcommand
/// has its section, and the bash script is valid bash that completes the subcommands.
#[test]
fn the_man_page_and_completions_cover_every_subcommand() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_image-updater"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let page = run(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH image-updater 1"),
        "{page}"
    );
    let bash = run(&["completions", "bash"]);
    for sub in [
        "check", "test", "run", "once", "plan", "poll", "status", "hold", "release",
    ] {
        assert!(
            page.contains(&format!(".SH \"IMAGE-UPDATER {}\"", sub.to_uppercase())),
            "no section for {sub}"
        );
        assert!(bash.contains(sub), "bash completions lack {sub}");
    }
    let syntax = Command::new("bash")
        .args(["-n", "-c", &bash])
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    for shell in ["zsh", "fish"] {
        assert!(!run(&["completions", shell]).is_empty());
    }
}

/// Issue: `check` reported target errors only once the image's other errors were fixed. The
/// binary reports both kinds in one run, each at its line, and exits 1.
#[test]
fn check_reports_target_errors_together_with_image_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updater.toml");
    std::fs::write(
        &path,
        r#"[repositories.manifests]
url = "https://git.example.com/org/manifests.git"

[environments.prod]
branch = "deploy/prod"

[images.api]
image = "ghcr.io/org/api"
constraint = ">= banana"
[[images.api.targets]]
kind = "kustomizaton"
file = "k.yaml"
"#,
    )
    .unwrap();
    let out = run(&["check", "--config", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("updater.toml:9:"),
        "the image error at its line:\n{err}"
    );
    assert!(
        err.contains("unknown target kind `kustomizaton`") && err.contains("updater.toml:11:"),
        "the target error at its line, in the same run:\n{err}"
    );
}

/// A config that does not load, through `test ALIAS --env`: its diagnostics as `check` prints
/// them, each headed once (it printed `error: error: …`).
#[test]
fn test_prints_a_bad_configs_diagnostics_as_check_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updater.toml");
    std::fs::write(
        &path,
        "[settings]\ninterval = \"nope\"\n[images.api]\nimage = \"ghcr.io/org/api\"\n",
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let out = run(&["test", "api", "--env", "prod", "--config", path], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("error: error"), "{stderr}");
    assert!(
        stderr.contains("error[IU0100]: interval: `nope` is not a duration"),
        "{stderr}"
    );
    let check = run(&["check", "--config", path], None);
    assert_eq!(text(&check.stderr), stderr);
}
