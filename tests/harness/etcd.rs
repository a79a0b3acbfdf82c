//! A real etcd (Debian's `etcd-server`) on 127.0.0.1: one member, or a cluster of several,
//! each with its data in a temporary directory, stopped and started again by PID to simulate
//! outages (a member down; quorum lost).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub const ETCD: &str = "/usr/bin/etcd";

struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    child: Option<Child>,
}

pub struct Etcd {
    members: Vec<Member>,
    initial_cluster: String,
    /// Served over https with this certificate, checking clients' certificates against
    /// its CA.
    tls: Option<super::Tls>,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// One member.
    pub async fn start() -> Etcd {
        Etcd::cluster(1).await
    }

    /// `n` members forming one cluster.
    pub async fn cluster(n: usize) -> Etcd {
        Etcd::start_with(n, None).await
    }

    /// One member serving clients over https with `tls`'s server certificate, and only to
    /// clients whose certificate its CA signed.
    pub async fn start_tls(tls: super::Tls) -> Etcd {
        Etcd::start_with(1, Some(tls)).await
    }

    async fn start_with(n: usize, tls: Option<super::Tls>) -> Etcd {
        super::need::missing("", &[super::need::Component::Etcd]);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: format!("{scheme}://127.0.0.1:{}", free_port()),
                peer_url: format!("http://127.0.0.1:{}", free_port()),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members,
            initial_cluster,
            tls,
            dir: tempfile::tempdir().unwrap(),
        };
        for i in 0..n {
            etcd.spawn(i);
        }
        for i in 0..n {
            etcd.wait_healthy(i).await;
        }
        etcd
    }

    /// The client URLs of every member, for `[cluster] endpoints`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The first member's client URL.
    pub fn client_url(&self) -> String {
        self.members[0].client_url.clone()
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("etcd-{i}.log")))
            .unwrap();
        let m = &self.members[i];
        let mut command = Command::new(ETCD);
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", &m.name, "--data-dir"])
            .arg(self.dir.path().join(format!("data-{i}")))
            .args(["--listen-client-urls", &m.client_url])
            .args(["--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.peer_url])
            .args(["--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", "image-updater-tests"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.members[i].child = Some(child);
    }

    async fn wait_healthy(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Over TLS the health endpoint wants a client certificate too: a member that
            // accepts connections is up enough, and the replicas wait for their lease.
            if self.tls.is_some() {
                let port = self.members[i].client_url.rsplit(':').next().unwrap();
                if std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok() {
                    return;
                }
                assert!(Instant::now() < deadline, "etcd member {i} did not start");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let health = reqwest::get(format!("{}/health", self.members[i].client_url)).await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "etcd member {i} did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills member `i` (by PID), keeping its data.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its ports and data.
    pub async fn resume_member(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy(i).await;
    }

    /// Every member down: an outage.
    pub fn stop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }

    /// Every member up again.
    pub async fn resume(&mut self) {
        for i in 0..self.members.len() {
            self.spawn(i);
        }
        for i in 0..self.members.len() {
            self.wait_healthy(i).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // By PID.
        self.stop();
    }
}
