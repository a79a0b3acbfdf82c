//! A real etcd (Debian's `etcd-server`), one member on 127.0.0.1 with its data in a temporary
//! directory, stopped by PID.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub const ETCD: &str = "/usr/bin/etcd";

pub struct Etcd {
    child: Option<Child>,
    pub client_url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub async fn start() -> Etcd {
        super::need::missing("", &[super::need::Component::Etcd]);
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(ETCD)
            .args(["--name", "test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("etcd.log")).unwrap())
            .spawn()
            .unwrap();
        let etcd = Etcd {
            child: Some(child),
            client_url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let health = reqwest::get(format!("{}/health", etcd.client_url)).await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return etcd;
            }
            assert!(Instant::now() < deadline, "etcd did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // By PID.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
