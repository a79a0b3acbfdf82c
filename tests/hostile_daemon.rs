//! The daemon against faults that once wedged it while it looked healthy: the real binary,
//! registry and git server, and peers written for the tests. Each test shows the safe outcome:
//! the other images are still polled and committed, and `/healthz` tells the truth.

mod harness;

use std::time::{Duration, Instant};

use harness::world::World;
use harness::{Fault, FaultServer};

const OVERLAY: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
images:
  - name: REGISTRY/org/worker
    newTag: v1.0.0
";

async fn world() -> World {
    let world = World::new(&[("prod/kustomization.yaml", OVERLAY)], &["deploy/prod"]).await;
    world.push("org/worker", "v1.0.0").await;
    world.push("org/worker", "v1.1.0").await;
    world.push("org/api", "v2.0.0").await;
    world
}

/// `worker` on the real registry; `api` as given (its own registry, or the real one).
fn config(world: &World, api_image: &str, extra_registry: &str) -> String {
    let host = world.host();
    let mut text = world.base_config(&["prod"]);
    text.push_str(extra_registry);
    text.push_str(&format!(
        r#"
[images.worker]
image = "{host}/org/worker"
[[images.worker.targets]]
kind = "kustomization"
file = "prod/kustomization.yaml"

[images.api]
image = "{api_image}"
[[images.api.targets]]
kind = "kustomization"
file = "prod/api/kustomization.yaml"
"#
    ));
    text
}

/// A panic in one image's poll (injected) fails that image only: the other image is polled
/// and committed, the panic is logged, and the daemon goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_poll_fails_its_image_only() {
    let world = world().await;
    let api = format!("{}/org/api", world.host());
    world.write_config(&config(&world, &api, ""));
    let daemon = world.start_with_env(
        &world.config_path(),
        &[(image_updater::daemon::fault::VAR, "panic:api")],
    );
    world
        .wait_for(
            "deploy/prod",
            "prod/kustomization.yaml",
            "newTag: v1.1.0",
            &daemon,
        )
        .await;
    let log = daemon.wait_log("the poll panicked: fault injected").await;
    assert!(log.contains("image=api"), "{log}");
    // Still polling after the panic: api fails again on its next poll, and /healthz is ok.
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.log().matches("the poll panicked").count() < 2 {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(daemon.get("/healthz").await.0, 200);
}

/// A registry that accepts the connection and never answers used to hold up every other
/// registry's images (one cycle at a time, waiting for the slowest poll). Each registry now
/// has its own lane: worker is committed while api's poll still hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_registry_does_not_delay_another() {
    let world = world().await;
    let hanging = FaultServer::start(vec![Fault::Slow {
        delay: Duration::from_secs(3600),
        status: 200,
        body: "{}".into(),
    }])
    .await;
    let slow_host = format!("127.0.0.1:{}", hanging.port);
    let registry = format!(
        "\n[registries.hanging]\nprefix = \"{slow_host}\"\napi_url = \"{}\"\ninsecure = true\n",
        hanging.url()
    );
    world.write_config(&config(&world, &format!("{slow_host}/org/api"), &registry));
    let started = Instant::now();
    let daemon = world.start();
    world
        .wait_for(
            "deploy/prod",
            "prod/kustomization.yaml",
            "newTag: v1.1.0",
            &daemon,
        )
        .await;
    let took = started.elapsed();
    assert!(
        hanging.requests() >= 1,
        "the hanging registry was never asked"
    );
    // The hanging request alone would take 30 s to time out, four times over.
    assert!(
        took < Duration::from_secs(20),
        "worker waited {took:?} for the hanging registry"
    );
    assert_eq!(daemon.get("/healthz").await.0, 200);
}

/// When polling truly stops (every registry down), `/healthz` turns bad after the allowance,
/// so a liveness probe or systemd's watchdog restarts the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_turns_bad_when_no_poll_succeeds() {
    let mut world = world().await;
    let api = format!("{}/org/api", world.host());
    world.write_config(&config(&world, &api, "").replace(
        "interval = \"1s\"",
        "interval = \"1s\"\nunhealthy_after = 3",
    ));
    let daemon = world.start();
    world
        .wait_for(
            "deploy/prod",
            "prod/kustomization.yaml",
            "newTag: v1.1.0",
            &daemon,
        )
        .await;
    assert_eq!(daemon.get("/healthz").await, (200, "ok\n".into()));
    world.registry.stop();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = daemon.get("/healthz").await;
        if status == 503 {
            assert!(
                body.starts_with("no image polled successfully for"),
                "{body}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still healthy:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
