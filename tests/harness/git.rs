//! Real git servers on 127.0.0.1, stopped by PID: `git http-backend` behind lighttpd with
//! basic auth, and `git daemon`. Plus a person with a clone, who pushes commits of their own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub const LIGHTTPD: &str = "/usr/sbin/lighttpd";

/// lighttpd in the foreground with `conf` (written to `dir/lighttpd.conf`), its output in
/// `dir/stderr.log`; the caller stops it by PID.
pub fn lighttpd(dir: &Path, conf: &str) -> Child {
    let conf_path = dir.join("lighttpd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
    Command::new(LIGHTTPD)
        .args(["-D", "-f"])
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("lighttpd starts")
}

/// Fails the test, naming the package, when lighttpd is not installed: a test that cannot run
/// must not pass (`.ci/run` installs it).
/// (The benchmarks include this file alone, so it does not go through `need`.)
pub fn require_lighttpd() {
    assert!(
        Path::new(LIGHTTPD).exists(),
        "{LIGHTTPD} is not installed: apt-get install lighttpd"
    );
}

/// Runs git with a fixed identity and no user config; panics with git's message on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_command(dir, args).output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

pub fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Dana Developer")
        .env("GIT_AUTHOR_EMAIL", "dana@example.com")
        .env("GIT_COMMITTER_NAME", "Dana Developer")
        .env("GIT_COMMITTER_EMAIL", "dana@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    cmd
}

/// Bare repositories under one root, served over http (with basic auth) or git://.
pub struct GitServer {
    child: Child,
    pub port: u16,
    pub root: PathBuf,
    dir: tempfile::TempDir,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Daemon,
}

pub const USER: &str = "bot";
pub const PASSWORD: &str = "s3cret-pass";

impl GitServer {
    /// lighttpd running `git http-backend` as CGI; every request needs `bot:s3cret-pass`.
    pub fn http() -> GitServer {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repos");
        std::fs::create_dir_all(&root).unwrap();
        let port = free_port();
        let exec_path = String::from_utf8(
            Command::new("git")
                .arg("--exec-path")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let backend = Path::new(exec_path.trim()).join("git-http-backend");
        std::fs::write(dir.path().join("users"), format!("{USER}:{PASSWORD}\n")).unwrap();
        let conf = format!(
            r#"server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{dir}/error.log"
server.pid-file = "{dir}/lighttpd.pid"
server.modules = ("mod_alias", "mod_auth", "mod_authn_file", "mod_cgi", "mod_setenv")
alias.url = ("/git" => "{backend}")
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.set-environment = ("GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "1", "GIT_CONFIG_GLOBAL" => "/dev/null")
}}
auth.backend = "plain"
auth.backend.plain.userfile = "{dir}/users"
auth.require = ("/git" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
"#,
            root = root.display(),
            dir = dir.path().display(),
            backend = backend.display(),
        );
        let child = lighttpd(dir.path(), &conf);
        let server = GitServer {
            child,
            port,
            root,
            dir,
            kind: Kind::Http,
        };
        server.wait_ready();
        server
    }

    /// `git daemon` with pushes enabled and no authentication.
    pub fn daemon() -> GitServer {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repos");
        std::fs::create_dir_all(&root).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        // The git-daemon binary itself: `git daemon` would run it as a child of its own, which
        // killing `git` by PID would leave behind.
        let exec_path = git(dir.path(), &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .current_dir(dir.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .args([
                "--reuseaddr",
                "--listen=127.0.0.1",
                "--export-all",
                "--enable=receive-pack",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(&root)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("git daemon starts");
        let server = GitServer {
            child,
            port,
            root,
            dir,
            kind: Kind::Daemon,
        };
        server.wait_ready();
        server
    }

    /// The url of repository `name` (without credentials).
    pub fn url(&self, name: &str) -> String {
        match self.kind {
            Kind::Http => format!("http://127.0.0.1:{}/git/{name}.git", self.port),
            Kind::Daemon => format!("git://127.0.0.1:{}/{name}.git", self.port),
        }
    }

    /// The url with `bot:s3cret-pass@`, for a person's clone.
    pub fn url_with_credentials(&self, name: &str) -> String {
        match self.kind {
            Kind::Http => format!(
                "http://{USER}:{PASSWORD}@127.0.0.1:{}/git/{name}.git",
                self.port
            ),
            Kind::Daemon => self.url(name),
        }
    }

    /// The bare repository on the server's disk.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.git"))
    }

    /// Creates repository `name` with `files` committed on `main`, and `branches` made from it.
    pub fn create(&self, name: &str, files: &[(&str, &str)], branches: &[&str]) {
        let bare = self.path(name);
        git(
            &self.root,
            &[
                "init",
                "--bare",
                "--quiet",
                "-b",
                "main",
                bare.to_str().unwrap(),
            ],
        );
        let work = self.dir.path().join(format!("seed-{name}"));
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "--quiet", "-b", "main"]);
        for (path, content) in files {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "--quiet", "-m", "initial manifests"]);
        for b in branches {
            git(&work, &["branch", b]);
        }
        let mut args = vec!["push", "--quiet", bare.to_str().unwrap(), "main"];
        args.extend(branches);
        git(&work, &args);
    }

    /// The text of `path` on `branch`, read from the server's repository.
    pub fn show(&self, name: &str, branch: &str, path: &str) -> String {
        git(&self.path(name), &["show", &format!("{branch}:{path}")])
    }

    /// `git log --format=FORMAT branch` on the server, newest first.
    pub fn log(&self, name: &str, branch: &str, format: &str) -> Vec<String> {
        git(
            &self.path(name),
            &["log", &format!("--format={format}"), branch],
        )
        .lines()
        .map(String::from)
        .collect()
    }

    pub fn log_file(&self) -> String {
        let mut out =
            std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        out.push_str(
            &std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default(),
        );
        out
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "git server did not start on port {}: {}",
            self.port,
            self.log_file()
        );
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        // Child::kill signals this child's PID, never a process found by name.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Someone with a clone of a branch, making their own commits.
pub struct Person {
    pub work: PathBuf,
    branch: String,
    _dir: tempfile::TempDir,
}

impl Person {
    pub fn clone(url: &str, branch: &str) -> Person {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        git(
            dir.path(),
            &[
                "clone",
                "--quiet",
                "--branch",
                branch,
                url,
                work.to_str().unwrap(),
            ],
        );
        Person {
            work,
            branch: branch.into(),
            _dir: dir,
        }
    }

    /// Brings the clone up to date, writes `path`, commits, and pushes, rebasing on whatever
    /// else landed until it sticks.
    pub fn commit_and_push(&self, path: &str, content: &str, message: &str) {
        git(
            &self.work,
            &["pull", "--quiet", "--rebase", "origin", &self.branch],
        );
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "--quiet", "-m", message]);
        for _ in 0..200 {
            let pushed = git_command(&self.work, &["push", "--quiet", "origin", &self.branch])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            if pushed {
                return;
            }
            git(
                &self.work,
                &["pull", "--quiet", "--rebase", "origin", &self.branch],
            );
        }
        panic!("could not push {message} after 200 tries");
    }
}

/// The `manifests` repository at `url` as the daemon's config would give it.
pub fn repository(
    url: String,
    credentials: Option<image_updater::config::CredentialRef>,
) -> image_updater::config::Repository {
    image_updater::config::Repository {
        name: "manifests".into(),
        url,
        credentials,
        author: image_updater::config::Author {
            name: "image-updater".into(),
            email: "bot@example.com".into(),
        },
        commit_message: image_updater::config::template::Template::default(),
        ssh_key: None,
        known_hosts: None,
        signing_key: None,
        forge: None,
    }
}
