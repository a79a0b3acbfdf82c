//! A host of its own for a replica: a network namespace (`ip netns`, Debian's iproute2) joined
//! to this one by a veth pair, so a network partition can be made by routing, as it happens
//! between machines, while the rest of the test runs on 127.0.0.1.
//!
//! ```text
//!   this namespace                         the replica's namespace
//!   10.77.N.1  registry, git (forwarded) ─┐
//!   10.77.N.5  etcd (forwarded)          ─┴─ veth ── 10.77.N.2  image-updater
//! ```
//!
//! The registry, the git server and etcd stay on 127.0.0.1; small TCP forwarders listen on the
//! veth's addresses and pass connections on. etcd has an address of its own, so a blackhole
//! route to it inside the namespace cuts the replica off from etcd alone: it still reaches the
//! registry and git, which is the partition that could make it write what it no longer owns.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Numbers the namespaces this process makes; with the process id, unique on the machine.
static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Namespace {
    pub name: String,
    /// The replica's address, where its metrics listen.
    pub inside: String,
    /// Where the registry and git are reached from inside.
    pub services: String,
    /// Where etcd is reached from inside.
    pub etcd: String,
    host_link: String,
    forwarders: Vec<tokio::task::JoinHandle<()>>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Namespace {
    /// A namespace with its veth link up; fails the test (naming the package) when network
    /// namespaces cannot be made here.
    pub fn create() -> Namespace {
        super::need::missing("", &[super::need::Component::Netns]);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // A subnet per namespace: 10.77.0.0/16 split by process and count.
        let subnet = (std::process::id().wrapping_mul(7).wrapping_add(n)) % 250 + 1;
        let name = format!("iu-{}-{n}", std::process::id());
        let host_link = format!("iuh{}x{n}", std::process::id() % 100_000);
        let peer = format!("iun{}x{n}", std::process::id() % 100_000);
        let (host_ip, etcd_ip, inside) = (
            format!("10.77.{subnet}.1"),
            format!("10.77.{subnet}.5"),
            format!("10.77.{subnet}.2"),
        );
        ip(&["netns", "add", &name]);
        let ns = Namespace {
            name: name.clone(),
            inside: inside.clone(),
            services: host_ip.clone(),
            etcd: etcd_ip.clone(),
            host_link: host_link.clone(),
            forwarders: Vec::new(),
        };
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_link]);
        ip(&["addr", "add", &format!("{etcd_ip}/24"), "dev", &host_link]);
        ip(&["link", "set", &host_link, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{inside}/24"),
            "dev",
            &peer,
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &peer, "up"]);
        ns
    }

    /// Forwards connections to `listen_ip` (one of this namespace's host-side addresses) on a
    /// free port to `target`; returns the port.
    pub async fn forward(&mut self, listen_ip: &str, target: SocketAddr) -> u16 {
        let listener = tokio::net::TcpListener::bind(format!("{listen_ip}:0"))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        self.forwarders.push(tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
        port
    }

    /// `program` run inside the namespace (`ip netns exec` execs it: the child's PID is the
    /// program's own).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Cuts the replica off from etcd: packets to etcd's address are dropped inside the
    /// namespace, as on a partitioned network; the registry and git stay reachable.
    pub fn cut_etcd(&self) {
        self.blackhole("add");
    }

    /// Heals the partition.
    pub fn heal_etcd(&self) {
        self.blackhole("del");
    }

    fn blackhole(&self, verb: &str) {
        let route = format!("{}/32", self.etcd);
        ip(&[
            "netns",
            "exec",
            &self.name,
            "ip",
            "route",
            verb,
            "blackhole",
            &route,
        ]);
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for f in &self.forwarders {
            f.abort();
        }
        // Deleting the namespace deletes its end of the veth pair, and with it this end.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
    }
}
