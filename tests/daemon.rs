//! The daemon as users run it: the real binary as a subprocess, the real registry and a real
//! git server (lighttpd + git http-backend with basic auth) on 127.0.0.1.

mod harness;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::git::{GitServer, PASSWORD, USER, git, lighttpd_available};
use harness::{Auth, PushAuth, Registry, free_port, push_image, registry_available};

const BIN: &str = env!("CARGO_BIN_EXE_image-updater");

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

/// A registry, a git server with a manifests repository, a config file, a state dir.
struct World {
    registry: Registry,
    git: GitServer,
    dir: tempfile::TempDir,
    port: u16,
}

impl World {
    async fn new() -> Option<World> {
        if !registry_available() || !lighttpd_available() {
            return None;
        }
        let registry = Registry::start(Auth::None).await;
        let git = GitServer::http();
        let host = registry.host();
        git.create(
            "manifests",
            &[
                (
                    "prod/kustomization.yaml",
                    &KUSTOMIZATION.replace("REGISTRY", &host),
                ),
                (
                    "prod/worker-values.yaml",
                    &VALUES.replace("REGISTRY", &host),
                ),
            ],
            &["deploy/prod"],
        );
        let world = World {
            registry,
            git,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
        };
        world.push("org/api", "v1.0.0").await;
        world.push("org/worker", "v1.0.0").await;
        std::fs::write(
            world.dir.path().join("git-credentials"),
            format!("{USER}:{PASSWORD}\n"),
        )
        .unwrap();
        Some(world)
    }

    async fn push(&self, repo: &str, tag: &str) {
        push_image(
            &self.registry.url(),
            &PushAuth::None,
            repo,
            Some(tag),
            "2026-01-01T00:00:00Z",
            "linux/amd64",
        )
        .await;
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("updater.toml")
    }

    /// The config: `api` always; `worker` when `with_worker`; api's constraint as given.
    fn config(&self, api_constraint: &str, with_worker: bool) -> String {
        let host = self.registry.host();
        let mut text = format!(
            r#"[settings]
interval = "1s"
log_level = "image_updater=debug,info"

[registries.local]
prefix = "{host}"
api_url = "http://{host}"
insecure = true
rate_limit = 100

[repositories.manifests]
url = "{url}"
credentials = "file:{creds}"
author = "image-updater <bot@example.com>"

[environments.prod]
branch = "deploy/prod"

[images.api]
image = "{host}/org/api"
constraint = "{api_constraint}"
[[images.api.targets]]
kind = "kustomization"
file = "prod/kustomization.yaml"
name = "{host}/org/api"
"#,
            url = self.git.url("manifests"),
            creds = self.dir.path().join("git-credentials").display(),
        );
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

    fn write_config(&self, text: &str) {
        // As editors do: a new file renamed over the old one.
        let tmp = self.dir.path().join(".updater.toml.swp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    fn start(&self) -> Daemon {
        let log = self.dir.path().join("daemon.log");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(self.config_path())
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            log,
            port: self.port,
        }
    }

    fn file_on_branch(&self, path: &str) -> String {
        self.git.show("manifests", "deploy/prod", path)
    }

    /// Waits until `path` on deploy/prod contains `needle`.
    async fn wait_for(&self, path: &str, needle: &str, daemon: &Daemon) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.file_on_branch(path).contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{path} never got {needle}; log:\n{}", daemon.log());
    }
}

struct Daemon {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        // By PID, never by name.
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn wait_http(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if reqwest::get(format!("http://127.0.0.1:{}/healthz", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("daemon never listened; log:\n{}", self.log());
    }

    async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn wait_metric(&self, name: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.metric(name).await >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name} never reached {at_least}; log:\n{}", self.log());
    }

    /// Waits for the process to exit, at most `within`.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit in {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_daemon_commits_new_tags_serves_metrics_and_reloads() {
    let Some(world) = World::new().await else {
        return;
    };
    world.write_config(&world.config(">=1.0.0 <2.0.0", false));
    let mut daemon = world.start();
    daemon.wait_http().await;

    // A new tag pushed to the registry is committed.
    world.push("org/api", "v1.1.0").await;
    world
        .wait_for(
            "prod/kustomization.yaml",
            "newTag: v1.1.0   # managed",
            &daemon,
        )
        .await;
    let subject = world.git.log("manifests", "deploy/prod", "%s")[0].clone();
    assert_eq!(subject, "deploy(prod): api v1.1.0");
    assert!(
        daemon.log().contains("updated")
            && daemon.log().contains("v1.0.0")
            && daemon.log().contains("v1.1.0")
    );

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
    world.write_config(&world.config(">=1.0.0 <3.0.0", true));
    world
        .wait_for("prod/kustomization.yaml", "newTag: v2.0.0", &daemon)
        .await;
    world
        .wait_for("prod/worker-values.yaml", "tag: v1.2.0", &daemon)
        .await;
    daemon
        .wait_metric("image_updater_config_reloads_total", 1.0)
        .await;

    // An invalid edit is refused, with line and column, and the old config keeps working.
    let broken = world
        .config(">=1.0.0 <3.0.0", true)
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
        .wait_for("prod/kustomization.yaml", "newTag: v2.1.0", &daemon)
        .await;

    // SIGHUP reloads (the fixed file) even without a file event.
    world.write_config(&world.config(">=1.0.0 <3.0.0", true));
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
    let Some(world) = World::new().await else {
        return;
    };
    world.write_config(&world.config(">=1.0.0", true));
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
            .file_on_branch("prod/kustomization.yaml")
            .contains("newTag: v1.5.0")
    );
    assert!(
        world
            .file_on_branch("prod/worker-values.yaml")
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
    let Some(world) = World::new().await else {
        return;
    };
    world.write_config(&world.config(">=1.0.0", true));
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
            .file_on_branch("prod/worker-values.yaml")
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
    let Some(world) = World::new().await else { return };
    world.write_config(&world.config(">=1.0.0", false));
    let socket_path = world.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
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
    let mut daemon = Daemon { child, log, port: world.port };
    let mut seen: Vec<String> = Vec::new();
    let mut next = |want: &str| {
        let mut buf = [0u8; 256];
        loop {
            let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no {want} after {seen:?}: {e}"));
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
