//! Replicas sharing the work through a real etcd (Debian's `etcd-server`): daemons (three, or
//! two) on the same config, the same registry and the same repository, each with its own
//! state dir. Every image is polled by exactly one live replica (counted in each replica's own
//! metrics, and at a counting proxy in front of the registry, which tells replicas apart by
//! their User-Agent), together within the registry's `rate_limit`; a replica killed with
//! SIGKILL has its images taken over once its lease runs out, with what it knew (holds, revert
//! holds, first sightings) kept in etcd; a webhook received by one replica reaches the owner.

mod harness;

use std::time::{Duration, Instant};

use harness::counting::Counting;
use harness::etcd::Etcd;
use harness::git::Person;
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

/// The checks `replica` made that succeeded (a cycle refused for want of etcd counts its
/// checks as failed).
async fn succeeded(replica: &Daemon) -> f64 {
    replica.metric("image_updater_images_checked_total").await
        - replica.metric("image_updater_images_failed_total").await
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

/// Replicas `one`, `two` and `three` on the world's config, once each sees all three.
async fn three_replicas(world: &World) -> Vec<Daemon> {
    let replicas: Vec<Daemon> = ["one", "two", "three"]
        .iter()
        .map(|name| world.start_replica(name))
        .collect();
    for r in &replicas {
        members(r, 3.0).await;
    }
    replicas
}

/// `[cluster]` on `endpoints`, with `name` and a `lease`.
fn cluster_section(endpoints: &[String], name: &str, lease: &str) -> String {
    let quoted: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "\n[cluster]\nendpoints = [{}]\nname = \"{name}\"\nlease = \"{lease}\"\n",
        quoted.join(", ")
    )
}

/// The registry with the images at v1.0.0, the repository, and the config: `[cluster]` on
/// `endpoints` with `name` and a `lease`, and every image on `deploy/dev`.
async fn cluster_world(endpoints: &[String], name: &str, lease: &str) -> (World, String) {
    let world = World::new(&[(FILE, &overlay())], &["deploy/dev"]).await;
    let host = world.host();
    let mut config = world.base_config(&["dev"]);
    config.push_str(&cluster_section(endpoints, name, lease));
    for i in IMAGES {
        config.push_str(&format!(
            "\n[images.{i}]\nimage = \"{host}/org/{i}\"\n[[images.{i}.targets]]\nkind = \"kustomization\"\nfile = \"{FILE}\"\nname = \"{host}/org/{i}\"\n"
        ));
        world.push(&format!("org/{i}"), "v1.0.0").await;
    }
    world.write_config(&config);
    (world, host)
}

/// Whether `image` is at `tag` on `deploy/dev`.
fn is_at(world: &World, host: &str, image: &str, tag: &str) -> bool {
    world
        .file_on("deploy/dev", FILE)
        .contains(&format!("{host}/org/{image}\n    newTag: {tag}"))
}

/// `config` (from [`cluster_world`], with a 3 s lease) with `keys` added to `[cluster]`.
fn in_cluster(config: &str, keys: &str) -> String {
    let lease = "lease = \"3s\"\n";
    assert!(config.contains(lease));
    config.replace(lease, &format!("{lease}{keys}"))
}

/// Waits until `image` is at `tag` on `deploy/dev`.
async fn written(world: &World, host: &str, image: &str, tag: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_at(world, host, image, tag) {
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

/// The registry's requests per second in [`replicas_divide_the_images_and_take_over_a_dead_ones`]:
/// less than the six images polled every second need, so the budget decides.
const RATE: f64 = 6.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_divide_the_images_and_take_over_a_dead_ones() {
    let etcd = Etcd::start().await;
    // A 6 s lease: each renewal may take 2 s. With 3 s (1 s a renewal), a CI machine busy
    // building beside the suite made a replica count itself out and rejoin inside the
    // measured window, which moves images between replicas as it should, but not here.
    let (world, host) = cluster_world(&etcd.endpoints(), "test", "6s").await;
    // The replicas reach the registry through the counting proxy, at RATE requests a second.
    let proxy = Counting::start(world.registry.url()).await;
    let config = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace(
            &format!("api_url = \"http://{host}\""),
            &format!("api_url = \"{}\"", proxy.url()),
        )
        .replace("rate_limit = 100", &format!("rate_limit = {RATE}"));
    assert!(config.contains(&proxy.url()));
    world.write_config(&config);
    let started = Instant::now();
    let mut replicas = three_replicas(&world).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut before = Vec::new();
    for i in IMAGES {
        let mut counts = Vec::new();
        for r in &replicas {
            counts.push(checks(r, i).await);
        }
        before.push(counts);
    }
    // Long enough for a replica that owns four of the six images, with a third of RATE, to
    // poll each of them at least once (the ids, and so the division, differ from run to run).
    tokio::time::sleep(Duration::from_secs(10)).await;
    // The replica (index) that polled each image.
    let mut owner_of = std::collections::BTreeMap::new();
    for (n, i) in IMAGES.iter().enumerate() {
        let mut pollers = Vec::new();
        for (k, r) in replicas.iter().enumerate() {
            if checks(r, i).await > before[n][k] {
                pollers.push(k);
            }
        }
        assert_eq!(
            pollers.len(),
            1,
            "{i} polled by replicas {pollers:?}; the replicas' logs:\n{}",
            replicas
                .iter()
                .map(|r| r.log())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        owner_of.insert(*i, pollers[0]);
    }
    // The registry saw the same: each repository asked for by one replica, the one whose
    // metrics counted it (a replica names itself, HOST-PID, in its User-Agent). From the
    // very start: a replica polls only once the others started with it had time to join,
    // so none polls every image while it is briefly alone.
    let seen = proxy.since(started);
    for i in IMAGES {
        let mut agents: Vec<&str> = seen
            .iter()
            .filter(|s| s.repository == format!("org/{i}"))
            .map(|s| s.agent.as_str())
            .collect();
        agents.sort();
        agents.dedup();
        let pid = replicas[owner_of[i]].child.id();
        assert_eq!(agents.len(), 1, "org/{i} asked for by {agents:?}");
        assert!(agents[0].ends_with(&format!("-{pid})")), "{agents:?}");
    }
    // Together within the registry's rate, from the first request on: at most RATE a second,
    // plus the bursts the replicas' limiters start with (RATE slots each, spent one per
    // request while a replica is alone, and one per live replica after).
    let all = proxy.since(started);
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{} registry requests in {seconds:.1}s from three replicas, rate_limit {RATE}",
        all.len()
    );
    assert!(
        all.len() as f64 <= RATE * seconds + 2.0 * RATE,
        "{} requests in {seconds:.1}s",
        all.len()
    );
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

    // SIGKILL the owner of one image: its lease runs out (6 s), the others take its images,
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_at(&world, &host, victim_image, "v1.1.0") {
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
    // A lease (6 s), a read of the members (1 s) and an interval (1 s), with room for a slow
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

/// etcd down for all three replicas: each counts itself out within its lease, and nothing is
/// polled or written (never twice); when etcd is back they rejoin, and the tag pushed during
/// the outage is committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_stops_the_writes_and_none_is_doubled() {
    let mut etcd = Etcd::start().await;
    let (world, host) = cluster_world(&etcd.endpoints(), "outage", "2s").await;
    let replicas = [
        world.start_replica("one"),
        world.start_replica("two"),
        world.start_replica("three"),
    ];
    for r in &replicas {
        members(r, 3.0).await;
    }

    etcd.stop();
    let mut before = Vec::new();
    for r in &replicas {
        members(r, 0.0).await;
        assert_eq!(r.metric("image_updater_cluster_owned_images").await, 0.0);
    }
    // A cycle that started before the outage ends (it cannot write: no lock).
    tokio::time::sleep(Duration::from_secs(1)).await;
    for r in &replicas {
        before.push(succeeded(r).await);
    }
    world.push("org/a", "v1.1.0").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (r, before) in replicas.iter().zip(before) {
        assert_eq!(succeeded(r).await, before, "a replica without etcd polled");
    }
    assert!(
        is_at(&world, &host, "a", "v1.0.0"),
        "written during the outage"
    );

    etcd.resume().await;
    for r in &replicas {
        members(r, 3.0).await;
    }
    assert_eq!(committed(&world, &host, "a", "v1.1.0").await, 1);
}

/// A three-member etcd (etcd's default timings, and a 9 s lease that rides out the election
/// when the member lost was the leader): one member down keeps the quorum, and the replicas
/// keep their leases, through another member, and their work; two down loses it, and the
/// replicas stop; with the members back they resume, and the tag pushed meanwhile is
/// committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_etcd_survives_one_member_down_and_stops_without_quorum() {
    let mut etcd = Etcd::cluster(3).await;
    let (world, host) = cluster_world(&etcd.endpoints(), "three", "9s").await;
    let replicas = [
        world.start_replica("one"),
        world.start_replica("two"),
        world.start_replica("three"),
    ];
    let checked = || async {
        let mut total = 0.0;
        for r in &replicas {
            total += succeeded(r).await;
        }
        total
    };
    for r in &replicas {
        members(r, 3.0).await;
    }

    // One member down: the quorum holds, and so do the replicas: none counts itself out
    // (each follows one etcd member until a request through it fails, then another).
    etcd.stop_member(0);
    let before = checked().await;
    let until = Instant::now() + Duration::from_secs(6);
    let mut outs = 0;
    while Instant::now() < until {
        for r in &replicas {
            if r.metric("image_updater_cluster_members").await != 3.0 {
                outs += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for r in &replicas {
        members(r, 3.0).await;
    }
    assert_eq!(
        outs, 0,
        "a replica counted itself out with two of three etcd members up"
    );
    // They were on the member that stopped (each starts with the first endpoint), and kept
    // their leases through another.
    assert!(
        replicas
            .iter()
            .any(|r| r.log().contains("the lease is kept through another")),
        "{}",
        replicas[0].log()
    );
    assert!(
        checked().await > before,
        "polling stopped with two of three etcd members up"
    );

    // Two down: no quorum, no leases, no polls and no writes.
    etcd.stop_member(1);
    for r in &replicas {
        members(r, 0.0).await;
    }
    world.push("org/a", "v1.1.0").await;
    // A cycle that started before the quorum was lost ends (it cannot write: no lock).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = checked().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        checked().await,
        stopped,
        "{}\n{}\n{}",
        replicas[0].log(),
        replicas[1].log(),
        replicas[2].log()
    );
    assert!(is_at(&world, &host, "a", "v1.0.0"));

    // Back: they rejoin, and the tag is committed once.
    etcd.resume_member(0).await;
    etcd.resume_member(1).await;
    for r in &replicas {
        members(r, 3.0).await;
    }
    assert_eq!(committed(&world, &host, "a", "v1.1.0").await, 1);
}

/// `image-updater status --output json` run beside the replicas: with `[cluster]` it reads
/// etcd, so it shows every image whoever owns it. The row of `image` in dev.
fn status_of(world: &World, image: &str) -> serde_json::Value {
    let out = world.run(&["status", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["image"] == image)
        .cloned()
        .unwrap()
}

/// Waits until `image`'s row satisfies `ok`.
async fn status_until(
    world: &World,
    image: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = status_of(world, image);
        if ok(&row) {
            return row;
        }
        assert!(Instant::now() < deadline, "{image} never {what}: {row}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The replica among `replicas` that `row` names as the owner.
fn owner_index(row: &serde_json::Value, replicas: &[Daemon]) -> usize {
    let owner = row["owner"].as_str().unwrap();
    replicas
        .iter()
        .position(|r| owner.ends_with(&format!("-{}", r.child.id())))
        .unwrap_or_else(|| panic!("owner {owner} is none of the replicas"))
}

/// What replicas share through etcd: a hold given beside them stops the owner, `status`
/// shows every image and its owner, a webhook received by a replica that does not own the
/// image reaches the one that does, and the replica that takes over a SIGKILLed one's image
/// keeps holding a value a person reverted, with the tags' first sightings it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_holds_reverts_sightings_and_pushes() {
    let etcd = Etcd::start().await;
    let (world, host) = cluster_world(&etcd.endpoints(), "shared", "3s").await;
    // Image d is polled once an hour: only a webhook brings its next tag in time.
    let base = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace("[images.d]\n", "[images.d]\ninterval = \"1h\"\n");
    // Each replica listens for webhooks on its own port.
    let (hooks_one, port_one) = world.webhooks();
    let (hooks_two, port_two) = world.webhooks();
    world.write_config(&format!("{base}{hooks_one}"));
    let two_config = world.dir.path().join("two.toml");
    std::fs::write(&two_config, format!("{base}{hooks_two}")).unwrap();
    let mut replicas = vec![
        world.start_replica("one"),
        world.start_replica_with("two", &two_config),
    ];
    for r in &replicas {
        members(r, 2.0).await;
    }
    // Every image's record is in etcd, each with its owner.
    for i in IMAGES {
        let row = status_until(&world, i, "was checked", |r| !r["last_check"].is_null()).await;
        owner_index(&row, &replicas);
    }

    // A hold given beside the replicas keeps a's new tag out, whoever owns a.
    let out = world.run(&["hold", "a", "--env", "dev", "--reason", "release freeze"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    world.push("org/a", "v1.1.0").await;
    let row = status_until(&world, "a", "saw v1.1.0", |r| r["candidate"] == "v1.1.0").await;
    assert!(
        row["hold"].as_str().unwrap().contains("release freeze"),
        "{row}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(is_at(&world, &host, "a", "v1.0.0"));
    let out = world.run(&["release", "a", "--env", "dev"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(committed(&world, &host, "a", "v1.1.0").await, 1);

    // A push reported to the replica that does not own d reaches the one that does.
    let d_owner = owner_index(&status_of(&world, "d"), &replicas);
    let port = [port_one, port_two][1 - d_owner];
    world.push("org/d", "v1.1.0").await;
    let event = format!(
        r#"{{"events":[{{"action":"push","target":{{"repository":"org/d","tag":"v1.1.0"}},"request":{{"host":"{host}"}}}}]}}"#
    );
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhook"))
        .header("authorization", "Bearer hook-s3cret")
        .body(event)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    assert_eq!(committed(&world, &host, "d", "v1.1.0").await, 1);
    assert!(
        replicas[d_owner]
            .log()
            .contains("another replica received a push"),
        "{}",
        replicas[d_owner].log()
    );

    // A person reverts b: its owner holds the reverted value.
    world.push("org/b", "v1.1.0").await;
    written(&world, &host, "b", "v1.1.0").await;
    let person = Person::clone(&world.git.url_with_credentials("manifests"), "deploy/dev");
    let reverted = world.file_on("deploy/dev", FILE).replace(
        &format!("{host}/org/b\n    newTag: v1.1.0"),
        &format!("{host}/org/b\n    newTag: v1.0.0"),
    );
    person.commit_and_push(FILE, &reverted, "Roll b back");
    let row = status_until(&world, "b", "held the revert", |r| {
        r["hold"]
            .as_str()
            .is_some_and(|h| h.starts_with("revert: v1.1.0"))
    })
    .await;
    // The owner's record of b, as the next owner will read it.
    let store = image_updater::cluster::store::Store::new(cluster_config(&etcd, "shared"));
    let before = store.record("b").await.unwrap().unwrap();
    let first_seen = before.seen["v1.1.0"];

    // SIGKILL b's owner: the other takes b over, still holds the revert, and keeps the first
    // sighting of v1.1.0.
    let victim = owner_index(&row, &replicas);
    let mut killed = replicas.remove(victim);
    killed.signal("KILL");
    let _ = killed.wait_exit(Duration::from_secs(5));
    members(&replicas[0], 1.0).await;
    let survivor = replicas[0].child.id();
    let row = status_until(&world, "b", "was taken over", |r| {
        r["owner"]
            .as_str()
            .unwrap()
            .ends_with(&format!("-{survivor}"))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let record = store.record("b").await.unwrap().unwrap();
        if record.by != before.by {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "b's record was never written by the new owner"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(after.seen["v1.1.0"], first_seen);
    assert!(
        row["hold"].as_str().unwrap().starts_with("revert: v1.1.0"),
        "{row}"
    );
    // Several of the survivor's polls later, b is still where the person put it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(is_at(&world, &host, "b", "v1.0.0"));
    assert_eq!(commits_to(&world, "b", "v1.1.0"), 1);
    let row = status_of(&world, "b");
    assert!(
        row["hold"].as_str().unwrap().starts_with("revert: v1.1.0"),
        "{row}"
    );
    assert!(
        replicas[0].log().contains("took over the image's record"),
        "{}",
        replicas[0].log()
    );
}

/// The `[cluster]` the tests' configs name, for reading etcd as the replicas do.
fn cluster_config(etcd: &Etcd, name: &str) -> image_updater::config::Cluster {
    image_updater::config::Cluster {
        endpoints: etcd.endpoints(),
        name: name.into(),
        named: true,
        lease: Duration::from_secs(3),
        credentials: None,
        tls: None,
    }
}

/// etcd over https, checking clients' certificates: a replica with the CA and a client
/// certificate joins and writes; one whose CA did not sign etcd's certificate stays outside,
/// owning and writing nothing, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_etcd_over_tls_with_client_certificates() {
    let certs = tempfile::tempdir().unwrap();
    let tls = harness::Tls::generate(certs.path());
    let (client_cert, client_key) = tls.client(certs.path(), "replica");
    let ca = tls.ca.clone();
    let etcd = Etcd::start_tls(tls).await;
    assert!(etcd.client_url().starts_with("https://"));
    let (world, host) = cluster_world(&etcd.endpoints(), "tls", "3s").await;
    let base = std::fs::read_to_string(world.config_path()).unwrap();
    let with_files = |ca: &std::path::Path| {
        in_cluster(
            &base,
            &format!(
                "ca_file = \"{}\"\ntls_certificate = \"{}\"\ntls_key = \"{}\"\n",
                ca.display(),
                client_cert.display(),
                client_key.display()
            ),
        )
    };
    world.write_config(&with_files(&ca));
    let one = world.start_replica("one");
    members(&one, 1.0).await;
    world.push("org/a", "v1.1.0").await;
    assert_eq!(committed(&world, &host, "a", "v1.1.0").await, 1);

    // Another CA: the replica cannot trust etcd, so it never joins.
    let other = tempfile::tempdir().unwrap();
    let stranger = harness::Tls::generate(other.path());
    let wrong = world.dir.path().join("wrong-ca.toml");
    std::fs::write(&wrong, with_files(&stranger.ca)).unwrap();
    let two = world.start_replica_with("two", &wrong);
    let line = never_joins(&two).await;
    assert!(line.contains("invalid peer certificate"), "{line}");
    members(&one, 1.0).await;
}

/// Waits until `replica` says it has no etcd lease, checks it owns nothing, and returns the
/// line that says why.
async fn never_joins(replica: &Daemon) -> String {
    replica.wait_http().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !replica.log().contains("cluster: no etcd lease") {
        assert!(Instant::now() < deadline, "{}", replica.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        replica.metric("image_updater_cluster_owned_images").await,
        0.0
    );
    let said = replica.log();
    let line = said
        .lines()
        .find(|l| l.contains("cluster: no etcd lease"))
        .unwrap();
    eprintln!("{line}");
    line.to_string()
}

/// A network partition: three replicas, each on a host of its own (a network namespace);
/// the owner of an image is cut off from etcd by a blackhole route while it still reaches the
/// registry and git. It counts itself out and writes nothing; the others take its images
/// over and commit the new tag once; healed, it rejoins and nothing is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_partitioned_from_etcd_stops_and_the_others_take_over() {
    let etcd = Etcd::start().await;
    let (world, host) = cluster_world(&etcd.endpoints(), "partition", "3s").await;
    let base = std::fs::read_to_string(world.config_path()).unwrap();
    let git_url = world.git.url("manifests");
    let git_addr = git_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let etcd_addr = etcd.client_url().trim_start_matches("http://").to_string();
    let mut spaces = Vec::new();
    let mut replicas = Vec::new();
    let mut git_ports = Vec::new();
    for name in ["one", "two", "three"] {
        let mut ns = harness::netns::Namespace::create();
        let (services, etcd_ip) = (ns.services.clone(), ns.etcd.clone());
        let registry_port = ns.forward(&services, host.parse().unwrap()).await;
        let git_port = ns.forward(&services, git_addr.parse().unwrap()).await;
        let etcd_port = ns.forward(&etcd_ip, etcd_addr.parse().unwrap()).await;
        let config = base
            .replace(
                &format!("api_url = \"http://{host}\""),
                &format!("api_url = \"http://{services}:{registry_port}\""),
            )
            .replace(&git_addr, &format!("{services}:{git_port}"))
            .replace(&etcd.client_url(), &format!("http://{etcd_ip}:{etcd_port}"));
        let path = world.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        replicas.push(world.start_replica_in(&ns, name, &path));
        spaces.push(ns);
        git_ports.push(git_port);
    }
    for r in &replicas {
        members(r, 3.0).await;
    }
    let row = status_until(&world, "a", "was checked", |r| !r["last_check"].is_null()).await;
    let cut = owner_index(&row, &replicas);
    const UPDATED: &str = "image_updater_images_updated_total";
    let updated = replicas[cut].metric(UPDATED).await;

    spaces[cut].cut_etcd();
    let partitioned = Instant::now();
    world.push("org/a", "v1.1.0").await;
    // Cut off, it counts itself out; the others see two members and take a over.
    members(&replicas[cut], 0.0).await;
    eprintln!(
        "counted itself out {:?} after the cut",
        partitioned.elapsed()
    );
    for (k, r) in replicas.iter().enumerate() {
        if k != cut {
            members(r, 2.0).await;
        }
    }
    eprintln!(
        "the others saw two members {:?} after the cut",
        partitioned.elapsed()
    );
    assert_eq!(committed(&world, &host, "a", "v1.1.0").await, 1);
    // It could have written: git is still reachable from its host. It did not.
    let reachable = spaces[cut]
        .command("git")
        .args([
            "ls-remote",
            &world.git.url_with_credentials("manifests").replace(
                &git_addr,
                &format!("{}:{}", spaces[cut].services, git_ports[cut]),
            ),
        ])
        .output()
        .unwrap();
    assert!(
        reachable.status.success(),
        "{}",
        String::from_utf8_lossy(&reachable.stderr)
    );
    assert_eq!(replicas[cut].metric(UPDATED).await, updated);
    assert!(replicas[cut].log().contains("cluster: no etcd lease"));

    // Healed: it rejoins, and the next tag is committed once.
    spaces[cut].heal_etcd();
    for r in &replicas {
        members(r, 3.0).await;
    }
    world.push("org/a", "v1.2.0").await;
    assert_eq!(committed(&world, &host, "a", "v1.2.0").await, 1);
    assert_eq!(commits_to(&world, "a", "v1.1.0"), 1);
}

/// The update branch's copy of the overlay, once it exists.
fn on_update_branch(world: &World) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(world.git.path("manifests"))
        .args(["show", &format!("refs/heads/image-updater/dev:{FILE}")])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Pull requests with replicas: the environment's one request is shared through etcd, so the
/// images both replicas own are proposed together in it (not one replica's in place of the
/// other's); when a person closes it unmerged, every image's owner holds the closed values,
/// and no request is opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_propose_in_one_pull_request_and_respect_its_closing() {
    use harness::forge::{FakeForge, Kind, OWNER, REPO, TOKEN};
    let etcd = Etcd::start().await;
    let (world, host) = cluster_world(&etcd.endpoints(), "requests", "3s").await;
    let forge = FakeForge::start(Kind::GitHub, world.git.path("manifests")).await;
    let token = world.dir.path().join("forge-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let config = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace(
            "[environments.dev]\nbranch = \"deploy/dev\"\n",
            "[environments.dev]\nbranch = \"deploy/dev\"\nwrite = \"pull-request\"\n",
        );
    world.write_config(&format!(
        "{config}\n[repositories.manifests.forge]\ntype = \"github\"\ninsecure = true\napi_url = \"{}\"\nproject = \"{OWNER}/{REPO}\"\ntoken = \"file:{}\"\n",
        forge.api_url(),
        token.display()
    ));
    // Both replicas must own some of the images: ownership hashes the replicas' ids (host
    // and process id), so one in 32 pairs gives one replica all six; then it is replaced.
    let mut replicas = vec![world.start_replica("one"), world.start_replica("two")];
    for attempt in 0.. {
        for r in &replicas {
            members(r, 2.0).await;
        }
        let mut owners = std::collections::BTreeSet::new();
        for i in IMAGES {
            let row = status_until(&world, i, "was checked", |r| !r["last_check"].is_null()).await;
            owners.insert(owner_index(&row, &replicas));
        }
        if owners.len() == 2 {
            break;
        }
        assert!(attempt < 5, "one replica owned every image five times");
        // Stopped, it revokes its lease: the members are the two replicas from here on.
        let mut replaced = replicas.pop().unwrap();
        replaced.signal("TERM");
        let _ = replaced.wait_exit(Duration::from_secs(10));
        members(&replicas[0], 1.0).await;
        replicas.push(world.start_replica(&format!("two-{attempt}")));
    }

    for i in IMAGES {
        world.push(&format!("org/{i}"), "v1.1.0").await;
    }
    let every = |text: &str| {
        IMAGES
            .iter()
            .all(|i| text.contains(&format!("{host}/org/{i}\n    newTag: v1.1.0")))
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while !on_update_branch(&world).is_some_and(|t| every(&t)) {
        assert!(
            Instant::now() < deadline,
            "the request never proposed every image: {:?}\n{}\n{}",
            on_update_branch(&world),
            replicas[0].log(),
            replicas[1].log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Settled: one request, proposing all six, and it stays so.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(every(&on_update_branch(&world).unwrap()));
    let pulls = forge.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(pulls[0].state, "open");
    for i in IMAGES {
        assert!(
            pulls[0].body.contains(&format!("org/{i}")),
            "{}",
            pulls[0].body
        );
    }
    assert!(world.file_on("deploy/dev", FILE).contains("newTag: v1.0.0"));

    // A person closes it: every image is held at the values it proposed, whoever owns it.
    forge.close_by_person(pulls[0].number);
    for i in IMAGES {
        status_until(&world, i, "held the closed value", |r| {
            r["hold"]
                .as_str()
                .is_some_and(|h| h.starts_with("revert: v1.1.0"))
        })
        .await;
    }
    // Several polls later, no request was opened again, and nothing reached the branch.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(forge.pulls().len(), 1, "{:?}", forge.pulls());
    for i in IMAGES {
        let row = status_of(&world, i);
        assert!(
            row["hold"]
                .as_str()
                .is_some_and(|h| h.starts_with("revert: v1.1.0")),
            "{row}"
        );
    }
    assert!(!world.file_on("deploy/dev", FILE).contains("v1.1.0"));
}

/// etcd with authentication on: a replica signs in with the `user:password` its
/// `credentials` reference names, holding only read-write on `/image-updater/`, joins and
/// writes; one with a wrong password never gets a lease and says why, without the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sign_in_to_etcd_with_credentials() {
    use etcd_client::{Client, Permission};
    let etcd = Etcd::start().await;
    let mut admin = Client::connect(etcd.endpoints(), None).await.unwrap();
    admin.user_add("root", "root-pw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("updater").await.unwrap();
    admin
        .role_grant_permission(
            "updater",
            Permission::read_write("/image-updater/").with_prefix(),
        )
        .await
        .unwrap();
    admin.user_add("updater", "s3cret-pw", None).await.unwrap();
    admin.user_grant_role("updater", "updater").await.unwrap();
    admin.auth_enable().await.unwrap();

    let (world, host) = cluster_world(&etcd.endpoints(), "auth", "3s").await;
    let login = world.dir.path().join("etcd-login");
    std::fs::write(&login, "updater:s3cret-pw\n").unwrap();
    let base = std::fs::read_to_string(world.config_path()).unwrap();
    let with_login = |file: &std::path::Path| {
        in_cluster(
            &base,
            &format!("credentials = \"file:{}\"\n", file.display()),
        )
    };
    world.write_config(&with_login(&login));
    let one = world.start_replica("one");
    members(&one, 1.0).await;
    world.push("org/a", "v1.1.0").await;
    assert_eq!(committed(&world, &host, "a", "v1.1.0").await, 1);
    // `status` beside it signs in with the same login.
    assert!(status_of(&world, "a")["owner"].is_string());

    let wrong_login = world.dir.path().join("wrong-login");
    std::fs::write(&wrong_login, "updater:not-the-password\n").unwrap();
    let wrong = world.dir.path().join("wrong.toml");
    std::fs::write(&wrong, with_login(&wrong_login)).unwrap();
    let two = world.start_replica_with("two", &wrong);
    let line = never_joins(&two).await;
    assert!(line.contains("authentication failed"), "{line}");
    assert!(!two.log().contains("not-the-password"));
    members(&one, 1.0).await;
}

/// Another writer holds deploy/dev's cluster lock for longer than an etcd request may take
/// (2 s): the replica's write waits for it, asking again, and commits once it is released
/// rather than giving up until its next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_the_branch_lock_past_a_request_timeout() {
    use etcd_client::{Client, LockOptions};
    let etcd = Etcd::start().await;
    let (world, host) = cluster_world(&etcd.endpoints(), "wait", "3s").await;
    // Only a's polls matter here: the others are polled hourly.
    let config = std::fs::read_to_string(world.config_path()).unwrap();
    let mut config = config.replace("interval = \"1s\"", "interval = \"1h\"");
    config = config.replace("[images.a]\n", "[images.a]\ninterval = \"1s\"\n");
    world.write_config(&config);
    let one = world.start_replica("one");
    members(&one, 1.0).await;
    let mut other = Client::connect(etcd.endpoints(), None).await.unwrap();
    let lease = other.lease_grant(30, None).await.unwrap().id();
    let held = other
        .lock(
            "/image-updater/wait/locks/manifests/deploy/dev",
            Some(LockOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    world.push("org/a", "v1.1.0").await;
    // Held for 5 s: longer than two request timeouts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(is_at(&world, &host, "a", "v1.0.0"));
    other.unlock(held.key()).await.unwrap();
    assert_eq!(committed(&world, &host, "a", "v1.1.0").await, 1);
    assert!(
        !one.log().contains("branch update skipped"),
        "{}",
        one.log()
    );
}

/// Polls per image over `window`, for each replica of `replicas`: the index of each replica
/// that checked it.
async fn pollers(replicas: &[&Daemon], window: Duration) -> Vec<Vec<usize>> {
    let mut before = Vec::new();
    for i in IMAGES {
        let mut counts = Vec::new();
        for r in replicas {
            counts.push(checks(r, i).await);
        }
        before.push(counts);
    }
    tokio::time::sleep(window).await;
    let mut out = Vec::new();
    for (n, i) in IMAGES.iter().enumerate() {
        let mut who = Vec::new();
        for (k, r) in replicas.iter().enumerate() {
            if checks(r, i).await > before[n][k] {
                who.push(k);
            }
        }
        out.push(who);
    }
    out
}

/// Waits until `replica`'s `/readyz` fails, and returns what it says.
async fn unready(replica: &Daemon) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = replica.get("/readyz").await;
        if code == 503 && body.contains("member key") {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {code} {body}; log:\n{}",
            replica.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Two deployments with different configs (their own registry, repository and images) on one
/// etcd under the same cluster name: each divides work only with its own replicas, so every
/// image is polled by exactly one replica of its own deployment; each sees the other's as a
/// foreign member, in `cluster status`, the log, the metric and `/readyz` (red after the
/// lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_on_one_cluster_name_keep_to_their_own_images() {
    let etcd = Etcd::start().await;
    let (first, _) = cluster_world(&etcd.endpoints(), "shared", "3s").await;
    let (second, _) = cluster_world(&etcd.endpoints(), "shared", "3s").await;
    let a1 = first.start_replica("a1");
    let a2 = first.start_replica("a2");
    let b1 = second.start_replica("b1");
    members(&a1, 2.0).await;
    members(&a2, 2.0).await;
    members(&b1, 1.0).await;
    a1.wait_log("does not divide work with").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a = pollers(&[&a1, &a2], Duration::from_secs(5)).await;
    let b = pollers(&[&b1], Duration::from_secs(1)).await;
    for (n, i) in IMAGES.iter().enumerate() {
        assert_eq!(a[n].len(), 1, "first deployment's {i} polled by {:?}", a[n]);
        assert_eq!(b[n], [0], "second deployment's {i} polled by {:?}", b[n]);
    }
    assert_eq!(
        a1.metric("image_updater_cluster_foreign_members").await,
        1.0
    );
    assert_eq!(
        b1.metric("image_updater_cluster_foreign_members").await,
        2.0
    );
    let said = unready(&a1).await;
    assert!(said.contains("1 cluster member key"), "{said}");
    unready(&b1).await;
    let out = first.run(&["cluster", "status", "--output", "json"]);
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["members"].as_array().unwrap().len(), 2, "{view}");
    assert_eq!(view["foreign"][0]["why"], "other_work", "{view}");
    let text = String::from_utf8_lossy(&first.run(&["cluster", "status"]).stdout).to_string();
    assert!(text.contains("1 member key not counted"), "{text}");
    assert!(text.contains("its config has other images"), "{text}");
}

/// A member key written by hand without a lease (`etcdctl put …/members/ghost ghost-1`) is not
/// believed: the real replicas poll every image between them, and the key is reported in
/// `cluster status`, the log, the metric and the health endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_key_without_a_lease_is_not_believed() {
    let etcd = Etcd::start().await;
    let (world, _) = cluster_world(&etcd.endpoints(), "ghosts", "3s").await;
    let (mut client, r1, r2) = two_replicas_after(
        &etcd,
        &world,
        "/image-updater/ghosts/members/ghost",
        "ghost-1",
    )
    .await;
    r1.wait_log("its key has no lease").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polled = pollers(&[&r1, &r2], Duration::from_secs(5)).await;
    for (n, i) in IMAGES.iter().enumerate() {
        assert_eq!(polled[n].len(), 1, "{i} polled by {:?}", polled[n]);
    }
    assert_eq!(
        r1.metric("image_updater_cluster_foreign_members").await,
        1.0
    );
    unready(&r1).await;
    let out = world.run(&["cluster", "status", "--output", "json"]);
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["foreign"][0]["id"], "ghost", "{view}");
    assert_eq!(view["foreign"][0]["why"], "no_lease", "{view}");
    // Removed, the probes are green again.
    client
        .delete("/image-updater/ghosts/members/ghost", None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while r1.get("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "{}", r1.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// An unreadable `images/ALIAS` record stops nothing but that image's record: every image is
/// still checked, and the owner writes a readable record over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_record_is_written_again_by_the_owner() {
    let etcd = Etcd::start().await;
    let (world, _) = cluster_world(&etcd.endpoints(), "records", "3s").await;
    let (mut client, r1, r2) = two_replicas_after(
        &etcd,
        &world,
        "/image-updater/records/images/a",
        "{not json",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = client
            .get("/image-updater/records/images/a", None)
            .await
            .unwrap();
        let value = got.kvs().first().map(|kv| kv.value().to_vec());
        if value
            .as_deref()
            .is_some_and(|v| serde_json::from_slice::<serde_json::Value>(v).is_ok())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never rewritten; logs:\n{}\n----\n{}",
            r1.log(),
            r2.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let polled = pollers(&[&r1, &r2], Duration::from_secs(4)).await;
    for (n, i) in IMAGES.iter().enumerate() {
        assert_eq!(polled[n].len(), 1, "{i} polled by {:?}", polled[n]);
    }
    let logs = format!("{}{}", r1.log(), r2.log());
    assert!(logs.contains("the image's record does not read"), "{logs}");
    // The share is logged when the members change, not at every read of them (once a second).
    for r in [&r1, &r2] {
        let lines = r
            .log()
            .matches("cluster: images owned by this replica")
            .count();
        assert!(lines <= 4, "{lines} lines:\n{}", r.log());
    }
}

/// `key` put in etcd as `value` (without a lease, as a person or a tool would), then two
/// replicas started and seeing each other; the etcd client is returned for more.
async fn two_replicas_after(
    etcd: &Etcd,
    world: &World,
    key: &str,
    value: &str,
) -> (etcd_client::Client, Daemon, Daemon) {
    let mut client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    client.put(key, value, None).await.unwrap();
    let r1 = world.start_replica("r1");
    let r2 = world.start_replica("r2");
    members(&r1, 2.0).await;
    members(&r2, 2.0).await;
    (client, r1, r2)
}

/// Without `[cluster] name`, the name is derived from the repositories; a replica does not
/// join while etcd holds keys under `image-updater`, the name earlier versions used by
/// default (a hold kept there would be out of its sight), and says how to go on. Naming the
/// cluster `image-updater` joins it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_cluster_name_does_not_hide_what_the_earlier_default_kept() {
    let etcd = Etcd::start().await;
    let (world, _) = cluster_world(&etcd.endpoints(), "image-updater", "3s").await;
    let named = std::fs::read_to_string(world.config_path()).unwrap();
    world.write_config(&named.replace("name = \"image-updater\"\n", ""));
    let mut client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    client
        .put("/image-updater/image-updater/holds", "{}", None)
        .await
        .unwrap();
    let derived = world.start_replica("derived");
    let log = derived
        .wait_log("the cluster name earlier versions used")
        .await;
    assert!(
        log.contains("name = \\\"image-updater\\\"") || log.contains("name = \"image-updater\""),
        "{log}"
    );
    assert_eq!(derived.metric("image_updater_cluster_members").await, 0.0);
    drop(derived);
    world.write_config(&named);
    let joined = world.start_replica("named");
    members(&joined, 1.0).await;
}

/// Builds each image of [`a_takeover_decides_from_the_last_owners_record`] has.
const BUILDS: usize = 40;

/// Issue: from `kill -9` of a replica to the commit of an image it owned took 9.5 to 92 s:
/// the replica taking the image over knew none of its tags' digests and creation times, and
/// asked the registry for every candidate again (a few requests a build for `newest-build`)
/// at its share of the rate, in a cycle that held up its own images too. The owner's record
/// now carries what it resolved, and images taken over are polled in a lane of their own.
///
/// Three replicas on real etcd (6 s lease, 2 s interval), six images with 40 `main-*` builds
/// each; the owners resolve them at a generous rate, then the rate drops to 8 requests a
/// second (a cold takeover of one image would need 120 of them, 45 s at a replica's share).
/// The replica that owns the most images is killed with SIGKILL, and every image gets a
/// newer build: each of the dead replica's images is committed within lease + interval + 5 s
/// of the kill, and the others' within interval + 5 s of the push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_decides_from_the_last_owners_record() {
    const LEASE: u64 = 6;
    const INTERVAL: u64 = 2;
    let etcd = Etcd::start().await;
    let mut overlay = String::from("images:\n");
    for i in IMAGES {
        overlay.push_str(&format!(
            "  - name: REGISTRY/org/{i}\n    newTag: main-000\n"
        ));
    }
    let world = World::new(&[(FILE, &overlay)], &["deploy/dev"]).await;
    let host = world.host();
    let base = world.registry.url();
    let push = |image: &str, n: usize| {
        let (base, repo) = (base.clone(), format!("org/{image}"));
        async move {
            harness::push_labelled(
                &base,
                &harness::PushAuth::None,
                &repo,
                Some(&format!("main-{n:03}")),
                &format!("2026-01-01T{:02}:{:02}:00Z", n / 60, n % 60),
                "linux/amd64",
                serde_json::json!({}),
            )
            .await
        }
    };
    for i in IMAGES {
        for n in 1..BUILDS {
            push(i, n).await;
        }
    }
    let mut config = world
        .base_config(&["dev"])
        .replace("interval = \"1s\"", &format!("interval = \"{INTERVAL}s\""));
    config.push_str(&cluster_section(
        &etcd.endpoints(),
        "takeover",
        &format!("{LEASE}s"),
    ));
    for i in IMAGES {
        config.push_str(&format!(
            "\n[images.{i}]\nimage = \"{host}/org/{i}\"\nstrategy = \"newest-build\"\nallow_tags = [\"regexp:^main-[0-9]{{3}}$\"]\n[[images.{i}.targets]]\nkind = \"kustomization\"\nfile = \"{FILE}\"\nname = \"{host}/org/{i}\"\n"
        ));
    }
    world.write_config(&config);
    let mut replicas = three_replicas(&world).await;
    let last = format!("main-{:03}", BUILDS - 1);
    for i in IMAGES {
        written(&world, &host, i, &last).await;
    }
    // Records published after the owners' next checks; then the rate drops.
    tokio::time::sleep(Duration::from_secs(2 * INTERVAL + 1)).await;
    world.write_config(&config.replace("rate_limit = 100", "rate_limit = 8"));
    for r in &replicas {
        r.wait_log("config reloaded").await;
    }
    let out = world.run(&["cluster", "status", "--output", "json"]);
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut owned: Vec<Vec<&str>> = vec![Vec::new(); replicas.len()];
    for row in view["images"].as_array().unwrap() {
        let image = IMAGES
            .iter()
            .find(|i| row["image"] == **i)
            .expect("a configured image");
        owned[owner_index(row, &replicas)].push(image);
    }
    let victim = (0..replicas.len()).max_by_key(|k| owned[*k].len()).unwrap();
    let lost = owned[victim].clone();
    let kept: Vec<&str> = IMAGES
        .iter()
        .copied()
        .filter(|i| !lost.contains(i))
        .collect();
    let mut dead = replicas.remove(victim);
    dead.signal("KILL");
    let _ = dead.wait_exit(Duration::from_secs(5));
    let killed = Instant::now();
    let newest = format!("main-{BUILDS:03}");
    for i in IMAGES {
        push(i, BUILDS).await;
    }
    let pushed = Instant::now();
    let mut at = std::collections::BTreeMap::new();
    let deadline = killed + Duration::from_secs(90);
    while at.len() < IMAGES.len() && Instant::now() < deadline {
        for i in IMAGES {
            if !at.contains_key(i) && is_at(&world, &host, i, &newest) {
                let since = if lost.contains(&i) { killed } else { pushed };
                at.insert(i, since.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "kill -9 of the owner of {lost:?}: committed {:?} after the kill; the others' {:?} after the push",
        lost.iter().map(|i| at.get(i)).collect::<Vec<_>>(),
        kept.iter().map(|i| at.get(i)).collect::<Vec<_>>()
    );
    let logs = || {
        replicas
            .iter()
            .map(|r| r.log())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    for i in &lost {
        let took = at.get(i).copied().unwrap_or(Duration::MAX);
        assert!(
            took <= Duration::from_secs(LEASE + INTERVAL + 5),
            "{i}, taken over, committed after {took:?}; logs:\n{}",
            logs()
        );
    }
    for i in &kept {
        let took = at.get(i).copied().unwrap_or(Duration::MAX);
        assert!(
            took <= Duration::from_secs(INTERVAL + 5),
            "{i}, not taken over, committed after {took:?}; logs:\n{}",
            logs()
        );
    }
    for i in IMAGES {
        assert_eq!(commits_to(&world, i, &newest), 1, "{i}");
    }
}
