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
    needs!(Registry, Lighttpd);
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
    needs!(Registry, Lighttpd);
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
    needs!(Registry, Lighttpd);
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

/// A daemon with `[webhooks]` on a free port; returns (daemon, webhook port).
fn with_webhooks(world: &World) -> (harness::world::Daemon, u16) {
    let (webhooks, hook_port) = world.webhooks();
    let api = format!("{}/org/api", world.host());
    world.write_config(&format!(
        "{}{webhooks}",
        config(world, &api, "").replace("interval = \"1s\"", "interval = \"1h\"")
    ));
    (world.start(), hook_port)
}

async fn post(port: u16, path: &str, auth: &str, body: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("Authorization", auth)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// One raw exchange: writes `request`, returns what came back within `within`.
async fn raw(port: u16, request: &str, within: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Finding 14: replays were accepted (50 of 50), `bearer` in lower case was refused, and any
/// path starting with `/webhook` was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_replays_paths_and_bearer_case() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let (daemon, port) = with_webhooks(&world);
    daemon.wait_http().await;
    let now = jiff::Timestamp::now();
    let event = |id: &str, at: jiff::Timestamp| {
        format!(
            r#"{{"events":[{{"id":"{id}","timestamp":"{at}","action":"push","target":{{"repository":"org/worker","tag":"v1.1.0"}},"request":{{"host":"{}"}}}}]}}"#,
            world.host()
        )
    };
    let first = event("evt-1", now);
    assert_eq!(
        post(port, "/webhook", "bearer hook-s3cret", &first).await.0,
        202
    );
    let again = post(port, "/webhook", "Bearer hook-s3cret", &first).await;
    assert_eq!(again, (200, r#"{"events":0,"duplicate":true}"#.into()));
    let stale = event("evt-2", now - jiff::SignedDuration::from_hours(2));
    assert_eq!(
        post(port, "/webhook", "Bearer hook-s3cret", &stale).await.0,
        409
    );
    for path in ["/webhookX", "/webhook/x", "/webhooks"] {
        assert_eq!(
            post(port, path, "Bearer hook-s3cret", &first).await.0,
            404,
            "{path}"
        );
    }
}

/// Finding 6: the body was read (1 MiB each) before the signature was checked, and the
/// metrics port read bodies too. Without a proof the webhook answers 401 at once, unread;
/// the metrics port refuses any body; idle connections beyond the cap are closed, and the
/// health endpoint stays responsive; refusals are logged in summary, not one line each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_cannot_exhaust_the_listeners() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let (daemon, port) = with_webhooks(&world);
    daemon.wait_http().await;
    // A 1 MiB body announced, none sent: refused without waiting for it.
    let started = Instant::now();
    let reply = raw(
        port,
        "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A signed request may carry a body, but no more than 64 KiB.
    let reply = raw(
        port,
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: 1048576\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // The metrics port takes no body at all.
    let reply = raw(
        daemon.port,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // 400 idle connections to the webhook port: the ones past the cap are closed at once, and
    // /healthz (its own listener) answers meanwhile.
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    assert_eq!(daemon.get("/healthz").await.0, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(idle);
    // Many refusals, few log lines.
    for _ in 0..50 {
        post(port, "/webhook", "Bearer wrong", "{}").await;
    }
    let lines = daemon.log().matches("webhook refused").count();
    assert!(lines <= 3, "{lines} log lines for 52 refusals");
}

/// Keep-alive must not let a peer hold a connection slot for free: after its request is
/// answered, a connection that sends nothing more is closed within the 5 s head deadline, on
/// the operator's listener and on the webhook's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_kept_alive_connections_are_closed() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let (daemon, hook_port) = with_webhooks(&world);
    daemon.wait_http().await;
    for (port, request) in [
        (daemon.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            hook_port,
            "POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: 0\r\n\r\n",
        ),
    ] {
        // `raw` reads until the daemon closes the connection, at most 10 s.
        let sent = Instant::now();
        let reply = raw(port, request, Duration::from_secs(10)).await;
        let open_for = sent.elapsed();
        assert!(reply.starts_with("HTTP/1.1 "), "{reply}");
        assert!(!reply.contains("connection: close"), "kept alive: {reply}");
        assert!(
            open_for < Duration::from_secs(10),
            "port {port}: still open after 10 s idle"
        );
        assert!(
            open_for >= Duration::from_secs(4),
            "port {port}: closed after {open_for:?}, before the deadline"
        );
    }
}

/// Finding 12: with `log_level = "trace"` and the log beside the config, each log line was a
/// directory event the watcher logged again (30-48 MB/s while idle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logging_beside_the_config_does_not_feed_itself() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let api = format!("{}/org/api", world.host());
    world.write_config(
        &config(&world, &api, "")
            .replace("interval = \"1s\"", "interval = \"1h\"")
            .replace(
                "log_level = \"image_updater=debug,info\"",
                "log_level = \"trace\"",
            ),
    );
    // The harness writes the daemon's log into the config's directory.
    let daemon = world.start();
    daemon.wait_log("running").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = std::fs::metadata(&daemon.log).unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let grown = std::fs::metadata(&daemon.log).unwrap().len() - before;
    assert!(
        grown < 256 * 1024,
        "the log grew {grown} bytes in 3 s while idle"
    );
}

/// Finding 15: outside systemd the state dir was 0755 and its files 0644, though the mirrors
/// hold private manifests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_dir_is_private_whatever_the_umask() {
    needs!(Registry, Lighttpd);
    use std::os::unix::fs::PermissionsExt;
    let world = world().await;
    let api = format!("{}/org/api", world.host());
    world.write_config(&config(&world, &api, ""));
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec '{}' once --config '{}' --state-dir '{}'",
            harness::world::BIN,
            world.config_path().display(),
            world.state_dir().display()
        ))
        .output()
        .unwrap();
    assert!(out.status.code().is_some(), "{out:?}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&world.state_dir()), 0o700);
    let mut files = 0;
    for entry in walk(&world.state_dir()) {
        if entry.is_file() && entry.extension().is_some_and(|e| e == "json") {
            assert_eq!(mode(&entry), 0o600, "{}", entry.display());
            files += 1;
        }
    }
    assert!(files >= 2, "no state files written");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() && !p.ends_with("git") {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
