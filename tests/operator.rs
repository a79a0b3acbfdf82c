//! The operator's day: config files written the ways people write them, and commands run from
//! wherever people run them. The real binary, registry and git server.

mod harness;

use std::io::Write;
use std::time::Duration;

use harness::world::{BIN, World};

const OVERLAY: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
images:
  - name: REGISTRY/org/app
    newTag: v1.0.0
";

async fn world() -> World {
    let world = World::new(&[("dev/kustomization.yaml", OVERLAY)], &["deploy/dev"]).await;
    for tag in ["v1.0.0", "v1.5.0", "v2.0.0"] {
        world.push("org/app", tag).await;
    }
    world
}

/// `app` allows any 1.x or later, but dev is held below 2.0.0 by its own section.
fn config(world: &World, comment: &str) -> (String, String) {
    let host = world.host();
    let head = format!(
        "{}\n# {comment}\n[images.app]\nimage = \"{host}/org/app\"\nconstraint = \">=1.0.0\"\n[[images.app.targets]]\nkind = \"kustomization\"\nfile = \"dev/kustomization.yaml\"\n",
        world.base_config(&["dev"])
    );
    let tail = "\n[images.app.env.dev]\nconstraint = \">=1.0.0 <2.0.0\"\n".to_string();
    (head, tail)
}

/// Issue: a config written in place in two steps was applied half-written: the first part
/// (without dev's section) is valid on its own, and v2.0.0 reached deploy/dev. A file is now
/// applied only once its bytes have held still for a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_written_in_two_steps_is_applied_only_when_complete() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let (head, tail) = config(&world, "first");
    world.write_config(&format!("{head}{tail}"));
    let daemon = world.start();
    world
        .wait_for(
            "deploy/dev",
            "dev/kustomization.yaml",
            "newTag: v1.5.0",
            &daemon,
        )
        .await;
    // Rewritten in place, cut at the line before dev's section, as `cp` or a shell loop would.
    let (head, tail) = config(&world, "second");
    let mut file = std::fs::File::create(world.config_path()).unwrap();
    file.write_all(head.as_bytes()).unwrap();
    file.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    file.write_all(tail.as_bytes()).unwrap();
    drop(file);
    daemon.wait_log("config reloaded").await;
    // A few cycles on the new config (interval 1s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let history = harness::git::git(
        &world.git.path("manifests"),
        &["log", "-p", "deploy/dev", "--", "dev/kustomization.yaml"],
    );
    assert!(
        !history.contains("v2.0.0"),
        "v2.0.0 reached dev:\n{history}"
    );
    assert_eq!(
        daemon.log().matches("config reloaded").count(),
        1,
        "{}",
        daemon.log()
    );
}

/// Issue: an empty file, a lone BOM, or a file without [images] was accepted and dropped every
/// image. Such a reload is refused; a file that declares an empty [images] means it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_drops_everything_needs_the_file_to_say_so() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let (head, tail) = config(&world, "first");
    world.write_config(&format!("{head}{tail}"));
    let daemon = world.start();
    world
        .wait_for(
            "deploy/dev",
            "dev/kustomization.yaml",
            "newTag: v1.5.0",
            &daemon,
        )
        .await;
    for (i, text) in ["", "\u{feff}", &world.base_config(&["dev"])]
        .iter()
        .enumerate()
    {
        world.write_config(text);
        let refusals = i + 1;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while daemon.log().matches("has no [images] at all").count() < refusals
            && daemon.log().matches("has no [environments] at all").count() < refusals
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{text:?} was not refused:\n{}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(
        !daemon.log().contains("config reloaded"),
        "{}",
        daemon.log()
    );
    // Saying so: an empty [images] table.
    world.write_config(&format!("{}\n[images]\n", world.base_config(&["dev"])));
    daemon.wait_log("config reloaded").await;
    assert!(
        daemon.log().contains("reload: image app removed"),
        "{}",
        daemon.log()
    );
}

/// Issue: a relative `state_dir` followed the current directory: `status` from elsewhere
/// printed nothing and `hold` wrote a holds.json the daemon never read. Paths are now relative
/// to the config file, and the commands say which state dir they read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_state_dir_is_beside_the_config() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let (head, tail) = config(&world, "first");
    let text =
        format!("{head}{tail}").replacen("[settings]\n", "[settings]\nstate_dir = \"state\"\n", 1);
    world.write_config(&text);
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(world.config_path())
            .current_dir(elsewhere.path())
            .output()
            .unwrap()
    };
    assert!(run(&["once"]).status.success());
    let state = world.dir.path().join("state");
    assert!(state.join("status.json").exists());
    let status = run(&["status"]);
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(
        stderr.contains(&format!("state dir: {}", state.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    // One table row per image and environment, with a header.
    let table = String::from_utf8_lossy(&status.stdout).into_owned();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE") && lines[0].ends_with("STATE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("app") && lines[1].contains("v1.5.0") && lines[1].contains("ago"),
        "{table}"
    );
    // Filters, and an unknown name lists the known ones.
    let only = run(&["status", "--image", "app", "--env", "dev"]);
    assert_eq!(String::from_utf8_lossy(&only.stdout).lines().count(), 2);
    let wrong = run(&["status", "--env", "nope"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("its environments are: dev"));
    assert!(run(&["hold", "app", "--env", "dev"]).status.success());
    assert!(state.join("holds.json").exists());
    assert!(!elsewhere.path().join("state").exists());
    // A state dir with nothing in it is named, with a warning.
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["status", "--config"])
        .arg(world.config_path())
        .arg("--state-dir")
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no status.json"));
}

/// `app` in dev (below 2.0.0) and in prod (any 1.x or later, a day old from first sight).
fn two_environments(world: &World) -> String {
    let (head, tail) = config(world, "two environments");
    format!("{head}{tail}\n[images.app.env.prod]\nmin_age = \"1d\"\n")
        .replacen("[images.app]\n", "[images.app]\ninterval = \"1h\"\n", 1)
        .replacen(
            &world.base_config(&["dev"]),
            &world.base_config(&["dev", "prod"]),
            1,
        )
        .replacen(
            "file = \"dev/kustomization.yaml\"\n",
            "file = \"dev/kustomization.yaml\"\n[[images.app.env.prod.targets]]\nkind = \"kustomization\"\nfile = \"prod/kustomization.yaml\"\n",
            1,
        )
}

async fn two_environment_world() -> World {
    let world = World::new(
        &[
            ("dev/kustomization.yaml", OVERLAY),
            ("prod/kustomization.yaml", OVERLAY),
        ],
        &["deploy/dev", "deploy/prod"],
    )
    .await;
    for tag in ["v1.0.0", "v1.5.0", "v2.0.0"] {
        world.push("org/app", tag).await;
    }
    world.write_config(&two_environments(&world));
    world
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue: `test` could not run the config's own policy. `test ALIAS --env ENV` runs the
/// daemon's decision for that environment, with its holds and safety rules, and says which
/// applied; the held-back candidate shows in `status` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_runs_an_environments_policy_from_the_config() {
    needs!(Registry, Lighttpd);
    let world = two_environment_world().await;
    let dev = world.run(&["test", "app", "--env", "dev"]);
    let (out, err) = text(&dev);
    assert_eq!(dev.status.code(), Some(0), "{out}{err}");
    assert!(
        out.contains("policy:   app in dev (branch deploy/dev)"),
        "{out}"
    );
    assert!(out.contains("constraint `>=1.0.0 <2.0.0`"), "{out}");
    assert!(out.contains("selected: v1.5.0"), "{out}");
    assert!(out.contains("writes:   v1.5.0"), "{out}");
    assert!(out.contains("rule:     no downgrade"), "{out}");
    assert!(out.contains("- v2.0.0"), "{out}");
    // prod takes the image's constraint, and its minimum age keeps every tag out for now.
    let prod = world.run(&["test", "app", "--env", "prod", "--output", "json"]);
    let (out, err) = text(&prod);
    assert_eq!(prod.status.code(), Some(1), "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["environment"], "prod");
    assert!(json["writes"].is_null(), "{out}");
    assert!(
        json["rules"][0]
            .as_str()
            .unwrap()
            .starts_with("min_age: a tag must be 1d"),
        "{out}"
    );
    assert!(
        json["tags"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["reason"].as_str().unwrap().contains("too young")),
        "{out}"
    );
    // The environment must be named when there are several, and the policy is the config's.
    let (code, err) = {
        let o = world.run(&["test", "app"]);
        (o.status.code(), text(&o).1)
    };
    assert_eq!(code, Some(2));
    assert!(err.contains("name one with --env: dev, prod"), "{err}");
    let o = world.run(&["test", "app", "--env", "dev", "--strategy", "numerical"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("drop --strategy"), "{}", text(&o).1);
    let o = world.run(&["test", "app", "--env", "qa"]);
    assert!(
        text(&o).1.contains("it is deployed to: dev, prod"),
        "{}",
        text(&o).1
    );
    // A hold: nothing would be written, and the candidate it holds back is still shown.
    assert!(
        world
            .run(&["hold", "app", "--env", "dev", "--reason", "incident 42"])
            .status
            .success()
    );
    let held = world.run(&["test", "app", "--env", "dev"]);
    let (out, _) = text(&held);
    assert_eq!(held.status.code(), Some(1), "{out}");
    assert!(
        out.contains("rule:     hold: `image-updater hold` is in force"),
        "{out}"
    );
    assert!(
        out.contains("waiting:  held by `image-updater hold`"),
        "{out}"
    );
    assert!(out.contains("selected: v1.5.0"), "{out}");
    assert!(world.run(&["once"]).status.success());
    assert!(
        world
            .file_on("deploy/dev", "dev/kustomization.yaml")
            .contains("v1.0.0")
    );
    let status = world.run(&[
        "status", "--image", "app", "--env", "dev", "--output", "json",
    ]);
    let (out, _) = text(&status);
    assert!(out.contains("\"candidate\": \"v1.5.0\""), "{out}");
    assert!(out.contains("incident 42"), "{out}");
}

/// Issue: after a hotfix push there was no way to say "check this image now" but a webhook.
/// `poll ALIAS` asks the running daemon, authenticated by the token in its state dir, and
/// prints what the image's cycle did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_checks_an_image_now_and_says_what_it_did() {
    needs!(Registry, Lighttpd);
    let world = two_environment_world().await;
    let daemon = world.start();
    world
        .wait_for(
            "deploy/dev",
            "dev/kustomization.yaml",
            "newTag: v1.5.0",
            &daemon,
        )
        .await;
    world.push("org/app", "v1.5.1").await;
    // The interval is an hour: only the poll brings v1.5.1.
    let polled = world.run(&["poll", "app", "--env", "dev"]);
    let (out, err) = text(&polled);
    assert_eq!(
        polled.status.code(),
        Some(0),
        "{out}{err}\n{}",
        daemon.log()
    );
    assert!(out.contains("dev: chose v1.5.1"), "{out}");
    assert!(
        out.contains("deploy/dev (dev): v1.5.0 -> v1.5.1 in "),
        "{out}"
    );
    assert!(!out.contains("prod"), "{out}");
    assert!(
        world
            .file_on("deploy/dev", "dev/kustomization.yaml")
            .contains("newTag: v1.5.1")
    );
    // Names the running config does not have are refused with the known ones.
    let o = world.run(&["poll", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("no image `nope` in the running config (images: app)"),
        "{}",
        text(&o).1
    );
    let o = world.run(&["poll", "app", "--env", "qa"]);
    assert!(
        text(&o).1.contains("environments: dev, prod"),
        "{}",
        text(&o).1
    );
    // Without the token, or with another, nothing is polled.
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/poll?image=app", daemon.port);
    for token in [None, Some("0".repeat(64))] {
        let mut request = client.post(&url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        assert_eq!(request.send().await.unwrap().status().as_u16(), 401);
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(world.state_dir().join("control.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

/// Issue: a registry's default budget served ~1,500 images per 5 minutes and images past that
/// silently fell behind. The intervals are now planned within the budget: `check` warns with
/// the numbers, every interval is stretched alike, and the metrics show it and the lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_images_than_the_budget_stretches_intervals_and_says_so() {
    needs!(Registry, Lighttpd);
    let mut overlay =
        String::from("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n");
    for i in 0..6 {
        overlay.push_str(&format!(
            "  - name: REGISTRY/org/app{i}\n    newTag: v1.0.0\n"
        ));
    }
    let world = World::new(&[("dev/kustomization.yaml", &overlay)], &["deploy/dev"]).await;
    let host = world.host();
    // Six repositories polled every second need 6 requests/s; rate_limit 2 leaves 1.6.
    let mut toml = world
        .base_config(&["dev"])
        .replace("rate_limit = 100", "rate_limit = 2");
    for i in 0..6 {
        world.push(&format!("org/app{i}"), "v1.0.0").await;
        toml.push_str(&format!(
            "\n[images.app{i}]\nimage = \"{host}/org/app{i}\"\n[[images.app{i}.targets]]\nkind = \"kustomization\"\nfile = \"dev/kustomization.yaml\"\n"
        ));
    }
    world.write_config(&toml);
    let check = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(world.config_path())
        .output()
        .unwrap();
    let (_, err) = text(&check);
    assert!(check.status.success(), "{err}");
    assert!(
        err.contains("warning[IU1000]: registry local: 6 image(s) on 6 repositories need 6.0 requests/s at their intervals, and polls may use 1.6 (80% of 2 requests/s, rate_limit): every interval is stretched 3.75x"),
        "{err}"
    );
    let status = world.run(&["status", "--output", "json"]);
    let (out, err) = text(&status);
    assert!(err.contains("stretched 3.75x"), "{err}");
    assert!(out.contains("\"interval_seconds\": 3.75"), "{out}");
    let daemon = world.start();
    // The first polls cost 4 requests each (tag list, HEAD, manifest, config): 2.5 s apart at
    // 1.6 requests/s, 15 s for the six, and said so.
    daemon
        .wait_metric("image_updater_poll_lag_seconds_count", 6.0)
        .await;
    assert!(
        daemon.log().contains("every interval is stretched 3.75x"),
        "{}",
        daemon.log()
    );
    assert!(
        daemon
            .log()
            .contains("first polls spread over 15s at the registry's request budget"),
        "{}",
        daemon.log()
    );
    let (_, metrics) = daemon.get("/metrics").await;
    assert!(
        metrics.contains(
            "image_updater_registry_poll_interval_stretch_ratio{registry=\"local\"} 3.75\n"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("image_updater_poll_interval_seconds{image=\"app0\"} 3.75\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("image_updater_poll_lag_seconds_bucket{le=\"+Inf\",registry=\"local\"}")
    );
    // Polled at the stretched interval, not every second. Second polls wait for the first
    // round's end (15 s), then come every 3.75 s: about 16 polls in the 16 s after the first
    // round, where every second would be 96.
    let before = daemon.metric("image_updater_images_checked_total").await;
    tokio::time::sleep(Duration::from_secs(16)).await;
    let polls = daemon.metric("image_updater_images_checked_total").await - before;
    assert!((6.0..=40.0).contains(&polls), "{polls} polls in 16 s");
}

/// Issue: each branch update fetched the repository again, one `git fetch` per branch per
/// batch. One fetch (every branch at once) now serves the batch's updates of a repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fetch_serves_every_branch_of_a_batch() {
    needs!(Registry, Lighttpd);
    let envs = ["dev", "staging", "prod"];
    let files: Vec<(String, String)> = envs
        .iter()
        .map(|e| (format!("{e}/kustomization.yaml"), OVERLAY.to_string()))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let branches: Vec<String> = envs.iter().map(|e| format!("deploy/{e}")).collect();
    let branches: Vec<&str> = branches.iter().map(String::as_str).collect();
    let world = World::new(&files, &branches).await;
    world.push("org/app", "v1.5.0").await;
    let host = world.host();
    let mut toml = format!(
        "{}\n[images.app]\nimage = \"{host}/org/app\"\n",
        world.base_config(&envs)
    );
    for e in envs {
        toml.push_str(&format!(
            "[[images.app.env.{e}.targets]]\nkind = \"kustomization\"\nfile = \"{e}/kustomization.yaml\"\n"
        ));
    }
    world.write_config(&toml);
    let out = std::process::Command::new(BIN)
        .args(["once", "--config"])
        .arg(world.config_path())
        .arg("--state-dir")
        .arg(world.state_dir())
        .env("RUST_LOG", "image_updater=debug")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    for e in envs {
        assert!(
            world
                .file_on(&format!("deploy/{e}"), &format!("{e}/kustomization.yaml"))
                .contains("newTag: v1.5.0"),
            "{e}: {log}"
        );
    }
    assert_eq!(log.matches("fetched").count(), 1, "{log}");
}
