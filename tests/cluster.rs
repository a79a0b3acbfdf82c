//! Replicas sharing the work through a real etcd (Debian's `etcd-server`): daemons (three, or
//! two) on the same config, the same registry and the same repository, each with its own
//! state dir. Every image is polled by exactly one live replica (counted in each replica's own
//! metrics), and a replica killed with SIGKILL has its images taken over once its lease runs
//! out.

mod harness;

use std::time::{Duration, Instant};

use harness::etcd::Etcd;
use harness::world::{Daemon, World};

const FILE: &str = "dev/kustomization.yaml";
const IMAGES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

fn overlay() -> String {
    let mut text = String::from("images:\n");
    for i in IMAGES {
        text.push_str(&format!("  - name: REGISTRY/org/{i}\n    newTag: v1.0.0\n"));
    }
    text
}

async fn checks(replica: &Daemon, image: &str) -> f64 {
    replica
        .metric(&format!(
            "image_updater_images_checked_total{{image=\"{image}\""
        ))
        .await
}

/// Waits until `replica` sees `n` live members.
async fn members(replica: &Daemon, n: f64) {
    replica.wait_http().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while replica.metric("image_updater_cluster_members").await != n {
        assert!(
            Instant::now() < deadline,
            "never saw {n} members; log:\n{}",
            replica.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The registry with the images at v1.0.0, the repository, and the config: `[cluster]` on
/// `endpoints` with `name` and a `lease`, and every image on `deploy/dev`.
async fn cluster_world(endpoints: &[String], name: &str, lease: &str) -> (World, String) {
    let world = World::new(&[(FILE, &overlay())], &["deploy/dev"]).await;
    let host = world.host();
    let quoted: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let mut config = world.base_config(&["dev"]);
    config.push_str(&format!(
        "\n[cluster]\nendpoints = [{}]\nname = \"{name}\"\nlease = \"{lease}\"\n",
        quoted.join(", ")
    ));
    for i in IMAGES {
        config.push_str(&format!(
            "\n[images.{i}]\nimage = \"{host}/org/{i}\"\n[[images.{i}.targets]]\nkind = \"kustomization\"\nfile = \"{FILE}\"\nname = \"{host}/org/{i}\"\n"
        ));
        world.push(&format!("org/{i}"), "v1.0.0").await;
    }
    world.write_config(&config);
    (world, host)
}

/// Waits until `image` is at `tag` on `deploy/dev`.
async fn written(world: &World, host: &str, image: &str, tag: &str) {
    let needle = format!("{host}/org/{image}\n    newTag: {tag}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !world.file_on("deploy/dev", FILE).contains(&needle) {
        assert!(Instant::now() < deadline, "{image} never reached {tag}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many commits changed `image` to `tag`: each commit's body has a line
/// `ALIAS: REPOSITORY OLD -> NEW` per change.
fn commits_to(world: &World, image: &str, tag: &str) -> usize {
    world
        .git
        .log("manifests", "deploy/dev", "%B")
        .into_iter()
        .filter(|l| l.starts_with(&format!("{image}: ")) && l.ends_with(&format!("-> {tag}")))
        .count()
}

/// [`written`], then, once writes have settled, [`commits_to`].
async fn committed(world: &World, host: &str, image: &str, tag: &str) -> usize {
    written(world, host, image, tag).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    commits_to(world, image, tag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_divide_the_images_and_take_over_a_dead_ones() {
    let etcd = Etcd::start().await;
    let (world, host) = cluster_world(&etcd.endpoints(), "test", "3s").await;
    let mut replicas: Vec<Daemon> = ["one", "two", "three"]
        .iter()
        .map(|name| world.start_replica(name))
        .collect();
    for r in &replicas {
        members(r, 3.0).await;
    }
    // Settled: from here on, each image is polled by one replica only.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut before = Vec::new();
    for i in IMAGES {
        let mut counts = Vec::new();
        for r in &replicas {
            counts.push(checks(r, i).await);
        }
        before.push(counts);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The replica (index) that polled each image.
    let mut owner_of = std::collections::BTreeMap::new();
    for (n, i) in IMAGES.iter().enumerate() {
        let mut pollers = Vec::new();
        for (k, r) in replicas.iter().enumerate() {
            if checks(r, i).await > before[n][k] {
                pollers.push(k);
            }
        }
        assert_eq!(pollers.len(), 1, "{i} polled by replicas {pollers:?}");
        owner_of.insert(*i, pollers[0]);
    }
    // `cluster status` says the same, from etcd: each image's owner is the replica that
    // polled it (a replica's id ends with its process id).
    let out = world.run(&["cluster", "status", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["members"].as_array().unwrap().len(), 3, "{view}");
    for row in view["images"].as_array().unwrap() {
        let image = row["image"].as_str().unwrap();
        let pid = replicas[owner_of[image]].child.id();
        assert!(
            row["owner"].as_str().unwrap().ends_with(&format!("-{pid}")),
            "{row}"
        );
    }
    let text = world.run(&["cluster", "status"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("3 live replicas"));
    const OWNED: &str = "image_updater_cluster_owned_images";
    let mut total = 0.0;
    for r in &replicas {
        total += r.metric(OWNED).await;
    }
    assert_eq!(total, IMAGES.len() as f64);

    // Every image gets a new tag at once: the replicas write deploy/dev in the same moment,
    // one at a time under the branch's cluster lock, so no push has to be retried.
    for i in IMAGES {
        world.push(&format!("org/{i}"), "v1.0.1").await;
    }
    for i in IMAGES {
        written(&world, &host, i, "v1.0.1").await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in IMAGES {
        assert_eq!(commits_to(&world, i, "v1.0.1"), 1, "{i}");
    }
    const RETRIES: &str = "image_updater_git_push_retries_total";
    for r in &replicas {
        assert_eq!(r.metric(RETRIES).await, 0.0);
    }

    // SIGKILL the owner of one image: its lease runs out (3 s), the others take its images,
    // and that image's next tag is committed, once.
    let victim_image = IMAGES[0];
    let mut victim = replicas.remove(owner_of[victim_image]);
    victim.signal("KILL");
    let _ = victim.wait_exit(Duration::from_secs(5));
    let killed = Instant::now();
    world.push(&format!("org/{victim_image}"), "v1.1.0").await;
    for r in &replicas {
        members(r, 2.0).await;
    }
    let needle = format!("{host}/org/{victim_image}\n    newTag: v1.1.0");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !world.file_on("deploy/dev", FILE).contains(&needle) {
        assert!(
            Instant::now() < deadline,
            "{victim_image} was not taken over; logs:\n{}\n{}",
            replicas[0].log(),
            replicas[1].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = killed.elapsed();
    eprintln!("taken over and committed {took:?} after the SIGKILL");
    // A lease (3 s), a read of the members (1 s) and an interval (1 s), with room for a slow
    // machine.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(committed(&world, &host, victim_image, "v1.1.0").await, 1);
    let mut total = 0.0;
    for r in &replicas {
        total += r.metric(OWNED).await;
    }
    assert_eq!(total, IMAGES.len() as f64);
    drop(etcd);
}

/// etcd down for everyone: every replica counts itself out within its lease, and nothing is
/// polled or written (never twice); when etcd is back they rejoin, and the tag pushed during
/// the outage is committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_stops_the_writes_and_none_is_doubled() {
    let mut etcd = Etcd::start().await;
    let (world, host) = cluster_world(&etcd.endpoints(), "outage", "2s").await;
    let one = world.start_replica("one");
    let two = world.start_replica("two");
    members(&one, 2.0).await;
    members(&two, 2.0).await;

    etcd.stop();
    members(&one, 0.0).await;
    members(&two, 0.0).await;
    assert_eq!(one.metric("image_updater_cluster_owned_images").await, 0.0);
    assert_eq!(two.metric("image_updater_cluster_owned_images").await, 0.0);
    const CHECKED: &str = "image_updater_images_checked_total";
    let before = (one.metric(CHECKED).await, two.metric(CHECKED).await);
    world.push("org/a", "v1.1.0").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        (one.metric(CHECKED).await, two.metric(CHECKED).await),
        before,
        "a replica without etcd polled"
    );
    assert!(
        world
            .file_on("deploy/dev", FILE)
            .contains(&format!("{host}/org/a\n    newTag: v1.0.0")),
        "written during the outage"
    );

    etcd.resume().await;
    members(&one, 2.0).await;
    members(&two, 2.0).await;
    assert_eq!(committed(&world, &host, "a", "v1.1.0").await, 1);
}

/// A three-member etcd: one member down keeps the quorum, and the replicas keep their leases
/// and their work; two down loses it, and the replicas stop; with the members back they
/// resume, and the tag pushed meanwhile is committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_etcd_survives_one_member_down_and_stops_without_quorum() {
    let mut etcd = Etcd::cluster(3).await;
    let (world, host) = cluster_world(&etcd.endpoints(), "three", "3s").await;
    let one = world.start_replica("one");
    let two = world.start_replica("two");
    members(&one, 2.0).await;
    members(&two, 2.0).await;
    const CHECKED: &str = "image_updater_images_checked_total";

    // One member down: the quorum holds, and so do the replicas.
    etcd.stop_member(0);
    let before = one.metric(CHECKED).await + two.metric(CHECKED).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    members(&one, 2.0).await;
    members(&two, 2.0).await;
    assert!(
        one.metric(CHECKED).await + two.metric(CHECKED).await > before,
        "polling stopped with two of three etcd members up"
    );

    // Two down: no quorum, no leases, no polls and no writes.
    etcd.stop_member(1);
    members(&one, 0.0).await;
    members(&two, 0.0).await;
    world.push("org/a", "v1.1.0").await;
    let stopped = one.metric(CHECKED).await + two.metric(CHECKED).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        one.metric(CHECKED).await + two.metric(CHECKED).await,
        stopped
    );
    assert!(
        world
            .file_on("deploy/dev", FILE)
            .contains(&format!("{host}/org/a\n    newTag: v1.0.0"))
    );

    // Back: they rejoin, and the tag is committed once.
    etcd.resume_member(0).await;
    etcd.resume_member(1).await;
    members(&one, 2.0).await;
    members(&two, 2.0).await;
    assert_eq!(committed(&world, &host, "a", "v1.1.0").await, 1);
}
