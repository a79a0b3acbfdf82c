//! A whole installation for end-to-end tests: the real registry, a git server with basic auth
//! (lighttpd + git http-backend) holding a manifests repository, a config file and a state
//! dir, and the real `image-updater` binary run as a subprocess.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::git::{GitServer, PASSWORD, USER, require_lighttpd};
use super::{Auth, PushAuth, Registry, free_port, push_labelled, require_registry};

pub const BIN: &str = env!("CARGO_BIN_EXE_image-updater");

/// Where daemons listen, unless they run on a host of their own.
const LOOPBACK: &str = "127.0.0.1";

pub struct World {
    pub registry: Registry,
    /// How the test's own pushes sign in to the registry.
    pub push_auth: PushAuth,
    pub git: GitServer,
    pub dir: tempfile::TempDir,
    /// Where a daemon started by [`World::start`] serves /metrics.
    pub port: u16,
}

impl World {
    /// A registry and a `manifests` repository with `files` on `main` and `branches`; fails
    /// the test when the registry or lighttpd is not installed.
    pub async fn new(files: &[(&str, &str)], branches: &[&str]) -> World {
        World::with_registry(files, branches, Auth::None, PushAuth::None).await
    }

    /// [`World::new`] with a registry that reports its pushes to a daemon's webhook itself;
    /// returns the `[webhooks]` section that daemon needs and its port (see
    /// [`World::webhooks`]).
    pub async fn notifying(files: &[(&str, &str)], branches: &[&str]) -> (World, String, u16) {
        require_registry();
        require_lighttpd();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}/webhook");
        let registry = Registry::start_notifying(&url, super::webhook::SECRET).await;
        let world = World::around(registry, files, branches, PushAuth::None);
        let (section, _) = world.webhooks_on(port);
        (world, section, port)
    }

    /// [`World::new`] with a registry that signs in with `auth`, pushed to with `push_auth`.
    pub async fn with_registry(
        files: &[(&str, &str)],
        branches: &[&str],
        auth: Auth,
        push_auth: PushAuth,
    ) -> World {
        require_registry();
        require_lighttpd();
        let registry = Registry::start(auth).await;
        World::around(registry, files, branches, push_auth)
    }

    /// A `manifests` repository with `files` on `main` and `branches`, beside `registry`.
    fn around(
        registry: Registry,
        files: &[(&str, &str)],
        branches: &[&str],
        push_auth: PushAuth,
    ) -> World {
        let git = GitServer::http();
        let host = registry.host();
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(p, c)| (p.to_string(), c.replace("REGISTRY", &host)))
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        git.create("manifests", &refs, branches);
        let world = World {
            registry,
            push_auth,
            git,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
        };
        std::fs::write(
            world.dir.path().join("git-credentials"),
            format!("{USER}:{PASSWORD}\n"),
        )
        .unwrap();
        world
    }

    pub fn host(&self) -> String {
        self.registry.host()
    }

    /// Pushes `repo:tag` (a new digest each time); returns the digest.
    pub async fn push(&self, repo: &str, tag: &str) -> String {
        self.push_labelled(repo, tag, serde_json::json!({})).await
    }

    /// [`World::push`] of an image whose config names the repository it was built from.
    pub async fn push_from_source(&self, repo: &str, tag: &str, source: &str) -> String {
        let labels = serde_json::json!({ "org.opencontainers.image.source": source });
        self.push_labelled(repo, tag, labels).await
    }

    async fn push_labelled(&self, repo: &str, tag: &str, labels: serde_json::Value) -> String {
        push_labelled(
            &self.registry.url(),
            &self.push_auth,
            repo,
            Some(tag),
            "2026-01-01T00:00:00Z",
            "linux/amd64",
            labels,
        )
        .await
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("updater.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `[settings]`, the registry, the repository (with the bot's credentials) and `envs`
    /// (each on `deploy/ENV`); images are for the caller to add.
    pub fn base_config(&self, envs: &[&str]) -> String {
        let host = self.host();
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
"#,
            url = self.git.url("manifests"),
            creds = self.dir.path().join("git-credentials").display(),
        );
        for env in envs {
            text.push_str(&format!(
                "\n[environments.{env}]\nbranch = \"deploy/{env}\"\n"
            ));
        }
        text
    }

    /// A `[webhooks]` section on a free port, its secret `hook-s3cret` in a file, and the port.
    pub fn webhooks(&self) -> (String, u16) {
        self.webhooks_on(free_port())
    }

    /// [`World::webhooks`] on `port`.
    pub fn webhooks_on(&self, port: u16) -> (String, u16) {
        let secret_file = self.dir.path().join("webhook-secret");
        std::fs::write(&secret_file, format!("{}\n", super::webhook::SECRET)).unwrap();
        (
            format!(
                "\n[webhooks]\nlisten = \"127.0.0.1:{port}\"\nsecret = \"file:{}\"\n",
                secret_file.display()
            ),
            port,
        )
    }

    /// Writes the config as editors do: a new file renamed over the old one.
    pub fn write_config(&self, text: &str) {
        let tmp = self.dir.path().join(".updater.toml.swp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    /// Runs `image-updater ARGS --config ... --state-dir ...` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `image-updater ARGS --config ... --state-dir ...`, to run as the test needs.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .arg("--state-dir")
            .arg(self.state_dir())
            .env("RUST_LOG", "info");
        command
    }

    /// Starts `image-updater run`, logging to `daemon.log` in the world's directory.
    pub fn start(&self) -> Daemon {
        self.start_with(&self.config_path())
    }

    /// [`World::start`] with the config at `config`.
    pub fn start_with(&self, config: &std::path::Path) -> Daemon {
        self.start_with_env(config, &[])
    }

    /// [`World::start_with`], with extra environment variables for the daemon.
    pub fn start_with_env(&self, config: &std::path::Path, env: &[(&str, &str)]) -> Daemon {
        let log = self.dir.path().join("daemon.log");
        let mut command = Command::new(BIN);
        command.envs(env.iter().copied());
        self.spawn(command, config, &self.state_dir(), log, LOOPBACK, self.port)
    }

    /// Another daemon on the same config, as a replica on another host: its own state dir,
    /// log (`NAME.log`) and port.
    pub fn start_replica(&self, name: &str) -> Daemon {
        let state = self.dir.path().join(format!("state-{name}"));
        let log = self.dir.path().join(format!("{name}.log"));
        let command = Command::new(BIN);
        self.spawn(
            command,
            &self.config_path(),
            &state,
            log,
            LOOPBACK,
            free_port(),
        )
    }

    /// [`World::start_replica`] with its own config file (replicas on one host need their
    /// own webhook ports).
    pub fn start_replica_with(&self, name: &str, config: &std::path::Path) -> Daemon {
        let state = self.dir.path().join(format!("state-{name}"));
        let log = self.dir.path().join(format!("{name}.log"));
        let command = Command::new(BIN);
        self.spawn(command, config, &state, log, LOOPBACK, free_port())
    }

    /// A replica on a host of its own: run inside `ns` with `config`, listening on the
    /// namespace's address.
    pub fn start_replica_in(
        &self,
        ns: &super::netns::Namespace,
        name: &str,
        config: &std::path::Path,
    ) -> Daemon {
        let state = self.dir.path().join(format!("state-{name}"));
        let log = self.dir.path().join(format!("{name}.log"));
        let command = ns.command(BIN);
        self.spawn(command, config, &state, log, &ns.inside, free_port())
    }

    /// `image-updater run` through `command` (the binary, or it run inside a namespace),
    /// listening on `addr:port`, logging to `log`.
    fn spawn(
        &self,
        mut command: Command,
        config: &std::path::Path,
        state: &std::path::Path,
        log: PathBuf,
        addr: &str,
        port: u16,
    ) -> Daemon {
        let child = command
            .args(["run", "--config"])
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .arg("--listen")
            .arg(format!("{addr}:{port}"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            log,
            port,
            addr: addr.into(),
        }
    }

    pub fn file_on(&self, branch: &str, path: &str) -> String {
        self.git.show("manifests", branch, path)
    }

    /// Waits until `path` on `branch` contains `needle`.
    pub async fn wait_for(&self, branch: &str, path: &str, needle: &str, daemon: &Daemon) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.file_on(branch, path).contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{path} never got {needle}; log:\n{}", daemon.log());
    }
}

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub port: u16,
    /// Where it listens: 127.0.0.1, or its address inside a network namespace.
    pub addr: String,
}

impl Daemon {
    /// Waits until the log holds `needle` (the daemon logs an update after pushing it).
    pub async fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(Instant::now() < deadline, "log never said {needle}:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, name: &str) {
        // By PID, never by name.
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{}:{}{path}", self.addr, self.port))
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn wait_http(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if reqwest::get(format!("http://{}:{}/healthz", self.addr, self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("daemon never listened; log:\n{}", self.log());
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn wait_metric(&self, name: &str, at_least: f64) {
        // The daemon may not be listening yet.
        self.wait_http().await;
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
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
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
