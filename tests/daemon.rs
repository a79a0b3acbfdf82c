//! The daemon as users run it: the real binary as a subprocess, the real registry and a real
//! git server (lighttpd + git http-backend with basic auth) on 127.0.0.1.

mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::git::git;
use harness::world::{BIN, Daemon, World};

const KUSTOMIZATION: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
images:
  - name: REGISTRY/org/api
    newTag: v1.0.0   # managed by image-updater
";

const VALUES: &str = "\
image:
  repository: REGISTRY/org/worker
  tag: v1.0.0
";

/// A world with `prod/kustomization.yaml` (api) and `prod/worker-values.yaml` (worker), both
/// at v1.0.0 in the registry and on deploy/prod.
async fn world() -> World {
    let world = World::new(
        &[
            ("prod/kustomization.yaml", KUSTOMIZATION),
            ("prod/worker-values.yaml", VALUES),
        ],
        &["deploy/prod"],
    )
    .await;
    world.push("org/api", "v1.0.0").await;
    world.push("org/worker", "v1.0.0").await;
    world
}

/// The config: `api` always; `worker` when `with_worker`; api's constraint as given.
fn config(world: &World, api_constraint: &str, with_worker: bool) -> String {
    let host = world.host();
    let mut text = world.base_config(&["prod"]);
    text.push_str(&format!(
        r#"
[images.api]
image = "{host}/org/api"
constraint = "{api_constraint}"
[[images.api.targets]]
kind = "kustomization"
file = "prod/kustomization.yaml"
name = "{host}/org/api"
"#
    ));
    if with_worker {
        text.push_str(&format!(
            r#"
[images.worker]
image = "{host}/org/worker"
constraint = ">=1.0.0"
[[images.worker.targets]]
kind = "helm"
file = "prod/worker-values.yaml"
tag = "image.tag"
"#
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_daemon_commits_new_tags_serves_metrics_and_reloads() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    world.write_config(&config(&world, ">=1.0.0 <2.0.0", false));
    let mut daemon = world.start();
    daemon.wait_http().await;

    // A new tag pushed to the registry is committed.
    world.push("org/api", "v1.1.0").await;
    world
        .wait_for(
            "deploy/prod",
            "prod/kustomization.yaml",
            "newTag: v1.1.0   # managed",
            &daemon,
        )
        .await;
    let subject = world.git.log("manifests", "deploy/prod", "%s")[0].clone();
    assert_eq!(subject, "deploy(prod): api v1.1.0");
    let log = daemon.wait_log(" updated ").await;
    assert!(log.contains("old=v1.0.0 new=v1.1.0"), "{log}");

    // /healthz, /readyz and /metrics answer.
    assert_eq!(daemon.get("/healthz").await, (200, "ok\n".into()));
    assert_eq!(daemon.get("/readyz").await.0, 200);
    let (status, metrics) = daemon.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics
            .contains("image_updater_images_updated_total{image=\"api\",environment=\"prod\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("image_updater_registry_requests_total{registry=\"local\",kind=\"tag_list\""),
        "{metrics}"
    );
    assert!(metrics.contains(
        "image_updater_last_successful_check_timestamp_seconds{image=\"api\",environment=\"prod\"}"
    ));
    assert!(metrics.contains("image_updater_git_pushes_total{repository=\"manifests\",branch=\"deploy/prod\",result=\"success\"} 1"));

    // An edit adds an image and widens a constraint: both take effect without a restart.
    world.push("org/api", "v2.0.0").await;
    world.push("org/worker", "v1.2.0").await;
    world.write_config(&config(&world, ">=1.0.0 <3.0.0", true));
    world
        .wait_for(
            "deploy/prod",
            "prod/kustomization.yaml",
            "newTag: v2.0.0",
            &daemon,
        )
        .await;
    world
        .wait_for(
            "deploy/prod",
            "prod/worker-values.yaml",
            "tag: v1.2.0",
            &daemon,
        )
        .await;
    daemon
        .wait_metric("image_updater_config_reloads_total", 1.0)
        .await;

    // An invalid edit is refused, with line and column, and the old config keeps working.
    let broken = config(&world, ">=1.0.0 <3.0.0", true)
        .replace("constraint = \">=1.0.0\"", "constraint = \">=1.0.0 <<2\"");
    world.write_config(&broken);
    daemon
        .wait_metric("image_updater_config_reload_failures_total", 1.0)
        .await;
    assert_eq!(
        daemon
            .metric("image_updater_config_last_reload_successful")
            .await,
        0.0
    );
    let log = daemon.log();
    assert!(
        log.contains("the new config is invalid; still running the previous one"),
        "{log}"
    );
    assert!(
        log.contains("updater.toml:29:14"),
        "diagnostics carry line:col: {log}"
    );
    world.push("org/api", "v2.1.0").await;
    world
        .wait_for(
            "deploy/prod",
            "prod/kustomization.yaml",
            "newTag: v2.1.0",
            &daemon,
        )
        .await;

    // SIGHUP reloads (the fixed file) even without a file event.
    world.write_config(&config(&world, ">=1.0.0 <3.0.0", true));
    daemon
        .wait_metric("image_updater_config_reloads_total", 2.0)
        .await;
    daemon.signal("HUP");
    daemon
        .wait_metric("image_updater_config_reloads_total", 3.0)
        .await;
    assert_eq!(
        daemon
            .metric("image_updater_config_last_reload_successful")
            .await,
        1.0
    );

    // SIGTERM: a clean exit, well within the grace period.
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(25));
    assert!(status.success(), "{status:?}");
    assert!(daemon.log().contains("stopped"));
    // One commit per change, none twice.
    let subjects = world.git.log("manifests", "deploy/prod", "%s");
    assert_eq!(
        subjects.iter().filter(|s| s.contains("api v2.1.0")).count(),
        1,
        "{subjects:?}"
    );
    assert!(world.dir.path().join("state/status.json").exists());
    assert!(world.dir.path().join("state/cache/metadata.json").exists());
}

/// SIGTERM in the middle of cycles, again and again: the repository is always consistent, and
/// a restart finishes the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_work_leaves_the_repository_consistent() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    world.write_config(&config(&world, ">=1.0.0", true));
    for round in 0..5 {
        world.push("org/api", &format!("v1.{}.0", round + 1)).await;
        world
            .push("org/worker", &format!("v1.{}.0", round + 1))
            .await;
        let mut daemon = world.start();
        // Stop it at a different moment each time, from right away to mid-cycle.
        tokio::time::sleep(Duration::from_millis(100 + 150 * round)).await;
        daemon.signal("TERM");
        daemon.wait_exit(Duration::from_secs(25));
        let fsck = git(&world.git.path("manifests"), &["fsck", "--no-progress"]);
        assert!(!fsck.contains("error"), "{fsck}");
    }
    // Whatever happened, a run to completion ends with both files at the newest tags, each
    // change committed once.
    let once = Command::new(BIN)
        .args(["once", "--config"])
        .arg(world.config_path())
        .arg("--state-dir")
        .arg(world.dir.path().join("state"))
        .output()
        .unwrap();
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert!(
        world
            .file_on("deploy/prod", "prod/kustomization.yaml")
            .contains("newTag: v1.5.0")
    );
    assert!(
        world
            .file_on("deploy/prod", "prod/worker-values.yaml")
            .contains("tag: v1.5.0")
    );
    let subjects = world.git.log("manifests", "deploy/prod", "%s");
    let mut unique = subjects.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        subjects.len(),
        "no commit twice: {subjects:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_plan_and_dry_run() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    world.write_config(&config(&world, ">=1.0.0", true));
    world.push("org/api", "v1.5.0").await;
    world.push("org/worker", "1.10").await;
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(world.config_path())
            .arg("--state-dir")
            .arg(world.dir.path().join("state"))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let plan = run(&["plan"]);
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let diff = String::from_utf8(plan.stdout).unwrap();
    assert!(
        diff.contains("--- a/prod/kustomization.yaml\n+++ b/prod/kustomization.yaml\n"),
        "{diff}"
    );
    assert!(diff.contains("-    newTag: v1.0.0   # managed by image-updater\n+    newTag: v1.5.0   # managed by image-updater\n"), "{diff}");
    assert!(diff.contains("# deploy/prod (prod)"), "{diff}");
    let dry = run(&["once", "--dry-run"]);
    assert!(dry.status.success());
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would update api v1.0.0 -> v1.5.0"));
    assert_eq!(
        world.git.log("manifests", "deploy/prod", "%s"),
        ["initial manifests"]
    );

    let once = run(&["once"]);
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    let out = String::from_utf8(once.stdout).unwrap();
    assert!(
        out.contains("deploy/prod: updated api v1.0.0 -> v1.5.0"),
        "{out}"
    );
    // `1.10` is a short version (1.10.0), and is written quoted so YAML keeps it a string.
    assert_eq!(
        world.git.log("manifests", "deploy/prod", "%s")[0],
        "deploy(prod): api v1.5.0, worker 1.10"
    );
    assert!(
        world
            .file_on("deploy/prod", "prod/worker-values.yaml")
            .ends_with("  tag: \"1.10\"")
    );
    let again = run(&["once"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("everything is up to date"));

    // The registry gone: `once` fails, says why, and writes nothing.
    let (config, state) = (world.config_path(), world.dir.path().join("state"));
    drop(world.registry);
    let failed = Command::new(BIN)
        .args(["once", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("check failed"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert_eq!(world.git.log("manifests", "deploy/prod", "%s").len(), 2);
}

/// What systemd sees with `Type=notify`: READY once running, RELOADING then READY around a
/// reload, WATCHDOG while alive, STOPPING on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaks_the_systemd_notify_protocol() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    world.write_config(&config(&world, ">=1.0.0", false));
    let socket_path = world.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let log = world.dir.path().join("notify-daemon.log");
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(world.config_path())
        .arg("--state-dir")
        .arg(world.dir.path().join("state"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", world.port))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Daemon {
        child,
        log,
        port: world.port,
        addr: "127.0.0.1".into(),
    };
    let mut seen: Vec<String> = Vec::new();
    let mut next = |want: &str| {
        let mut buf = [0u8; 256];
        loop {
            let n = socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {want} after {seen:?}: {e}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(msg.clone());
            if msg.starts_with(want) {
                return msg;
            }
        }
    };
    next("READY=1");
    next("WATCHDOG=1");
    daemon.signal("HUP");
    let reloading = next("RELOADING=1");
    assert!(reloading.contains("\nMONOTONIC_USEC="), "{reloading}");
    next("READY=1");
    daemon.signal("TERM");
    next("STOPPING=1");
    assert!(daemon.wait_exit(Duration::from_secs(25)).success());
}

/// A Kubernetes ConfigMap volume: the file is a symlink through `..data`, and an update swaps
/// `..data` to a new directory by rename. The daemon notices and applies the new config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_symlink_swap_is_a_reload() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let volume = world.dir.path().join("configmap");
    let first = volume.join("..2026_11_24_08_00_00.1");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::write(first.join("updater.toml"), config(&world, ">=1.0.0", false)).unwrap();
    std::os::unix::fs::symlink(first.file_name().unwrap(), volume.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/updater.toml", volume.join("updater.toml")).unwrap();
    let daemon = world.start_with(&volume.join("updater.toml"));
    daemon.wait_metric("image_updater_cycles_total", 1.0).await;

    // The kubelet's update: a new directory, a new `..data` link renamed over the old one.
    world.push("org/worker", "v1.3.0").await;
    let second = volume.join("..2026_11_24_08_05_00.2");
    std::fs::create_dir_all(&second).unwrap();
    std::fs::write(second.join("updater.toml"), config(&world, ">=1.0.0", true)).unwrap();
    std::os::unix::fs::symlink(second.file_name().unwrap(), volume.join("..data_tmp")).unwrap();
    std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    std::fs::remove_dir_all(&first).unwrap();

    daemon
        .wait_metric("image_updater_config_reloads_total", 1.0)
        .await;
    world
        .wait_for(
            "deploy/prod",
            "prod/worker-values.yaml",
            "tag: v1.3.0",
            &daemon,
        )
        .await;
}

/// `log_format = "json"`: one JSON object per line, with the update's fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let text = config(&world, ">=1.0.0", false)
        .replace("[settings]\n", "[settings]\nlog_format = \"json\"\n");
    world.write_config(&text);
    world.push("org/api", "v1.1.0").await;
    let out = world.run(&["once"]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let update = lines
        .iter()
        .find(|l| l["message"] == "updated")
        .expect("an update is logged");
    assert_eq!(update["image"], "api");
    assert_eq!(update["environment"], "prod");
    assert_eq!(update["old"], "v1.0.0");
    assert_eq!(update["new"], "v1.1.0");
    assert!(
        update["reason"]
            .as_str()
            .unwrap()
            .starts_with("selected: highest version")
    );
}

/// The config for [`a_half_written_config_is_never_applied`]: api limited to `<2.0.0` by its
/// last line, so that the file cut before that line is a valid config without the limit.
/// `mark` changes the bytes without changing what they mean.
fn limited(world: &World, mark: &str) -> (String, String) {
    let host = world.host();
    let mut first = format!("# {mark}\n");
    first.push_str(&world.base_config(&["prod"]));
    first.push_str(&format!(
        "\n[images.api]\nimage = \"{host}/org/api\"\ntargets = [{{ kind = \"kustomization\", file = \"prod/kustomization.yaml\", name = \"{host}/org/api\" }}]\n"
    ));
    (first, "constraint = \"<2.0.0\"\n".to_string())
}

/// Writes `parts` to `path` through one open file, pausing `pause` between them.
fn write_slowly(path: &std::path::Path, parts: &(String, String), pause: Duration) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(parts.0.as_bytes()).unwrap();
    file.flush().unwrap();
    std::thread::sleep(pause);
    file.write_all(parts.1.as_bytes()).unwrap();
}

/// A config written in two parts, the first of which is a valid config without api's
/// `<2.0.0` limit, is applied only once finished: written in place with the file held open
/// for 0.5, 2 and 10 seconds between the parts, written elsewhere and renamed into place (an
/// editor), and swapped in as a ConfigMap volume does. v2.0.0 never reaches deploy/prod; each
/// finished file is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_config_is_never_applied() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let whole = |mark: &str| {
        let (a, b) = limited(&world, mark);
        format!("{a}{b}")
    };
    world.write_config(&whole("start"));
    let daemon = world.start();
    daemon.wait_metric("image_updater_cycles_total", 1.0).await;
    world.push("org/api", "v2.0.0").await;
    world.push("org/api", "v1.1.0").await;
    world
        .wait_for("deploy/prod", "prod/kustomization.yaml", "v1.1.0", &daemon)
        .await;
    let mut reloads = daemon.metric("image_updater_config_reloads_total").await;

    // In place, the file held open between the parts.
    let target = world.config_path();
    for pause in [500, 2_000, 10_000] {
        let parts = limited(&world, &format!("in place, {pause} ms"));
        let path = target.clone();
        let pause = Duration::from_millis(pause);
        tokio::task::spawn_blocking(move || write_slowly(&path, &parts, pause))
            .await
            .unwrap();
        reloads = applied(&daemon, reloads + 1.0).await;
    }
    // An editor: a new file written slowly beside it, renamed over it.
    let tmp = target.with_file_name(".updater.toml.swp");
    let parts = limited(&world, "renamed");
    {
        let tmp = tmp.clone();
        tokio::task::spawn_blocking(move || write_slowly(&tmp, &parts, Duration::from_secs(2)))
            .await
            .unwrap();
    }
    std::fs::rename(&tmp, &target).unwrap();
    applied(&daemon, reloads + 1.0).await;
    drop(daemon);

    // A ConfigMap volume: the new directory's file written slowly, then `..data` swapped.
    let volume = world.dir.path().join("configmap");
    let first = volume.join("..2026_12_06_00_00_00.1");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::write(first.join("updater.toml"), whole("mounted")).unwrap();
    std::os::unix::fs::symlink(first.file_name().unwrap(), volume.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/updater.toml", volume.join("updater.toml")).unwrap();
    let daemon = world.start_with(&volume.join("updater.toml"));
    daemon.wait_metric("image_updater_cycles_total", 1.0).await;
    let reloads = daemon.metric("image_updater_config_reloads_total").await;
    let second = volume.join("..2026_12_06_00_05_00.2");
    std::fs::create_dir_all(&second).unwrap();
    let parts = limited(&world, "swapped");
    {
        let file = second.join("updater.toml");
        tokio::task::spawn_blocking(move || write_slowly(&file, &parts, Duration::from_secs(2)))
            .await
            .unwrap();
    }
    std::os::unix::fs::symlink(second.file_name().unwrap(), volume.join("..data_tmp")).unwrap();
    std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    applied(&daemon, reloads + 1.0).await;

    // Cycles ran all along (1 s interval); none saw a config without the limit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = world.git.log("manifests", "deploy/prod", "%B").join("\n");
    assert!(!log.contains("v2.0.0"), "{log}");
    assert!(
        !world
            .file_on("deploy/prod", "prod/kustomization.yaml")
            .contains("v2.0.0")
    );
    assert!(
        !daemon.log().contains("selected: highest version v2.0.0"),
        "{}",
        daemon.log()
    );
}

/// Waits until `daemon` has applied `n` reloads; returns the count.
async fn applied(daemon: &Daemon, n: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = daemon.metric("image_updater_config_reloads_total").await;
        if now >= n {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "never reloaded:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A reload refuses bytes that are not UTF-8, as `check` does, instead of reading them
/// lossily (an `\xff` inside an `ignore_tags` glob would change what it matches): the running
/// config stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refuses_bytes_that_are_not_utf8() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let text = config(&world, ">=1.0.0", false);
    world.write_config(&text);
    let daemon = world.start();
    daemon.wait_metric("image_updater_cycles_total", 1.0).await;
    let mut bytes = text.replace(
        "constraint = \">=1.0.0\"",
        "constraint = \">=1.0.0\"\nignore_tags = [\"v1.1*\"]",
    );
    bytes.push_str("# ");
    let mut raw = bytes.into_bytes();
    let at = raw.windows(4).position(|w| w == b"v1.1").unwrap();
    raw[at + 3] = 0xff;
    std::fs::write(world.config_path(), &raw).unwrap();
    daemon
        .wait_metric("image_updater_config_reload_failures_total", 1.0)
        .await;
    assert!(
        daemon.log().contains("the new config is not UTF-8"),
        "{}",
        daemon.log()
    );
    let out = world.run(&["check", "--config", world.config_path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(
        daemon.metric("image_updater_config_reloads_total").await,
        0.0
    );
}
