//! Events in and out of the daemon: registry webhooks that trigger a check at once (and are
//! refused without the secret), and cycle notifications delivered to a local receiver.

mod harness;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use harness::webhook::{OVERLAY, SECRET, api, deliver_signed, pushed_event, sign};
use harness::world::World;

async fn world() -> World {
    let world = World::new(&[("prod/kustomization.yaml", OVERLAY)], &["deploy/prod"]).await;
    world.push("org/api", "v1.0.0").await;
    world
}

/// Starts the daemon with `webhooks`, waits for its first cycle (the next poll is an hour
/// away), pushes v1.1.0, and returns the daemon and the registry's event for that push.
async fn started_then_pushed(world: &World, webhooks: &str) -> (harness::world::Daemon, String) {
    let config = format!(
        "{}{webhooks}{}",
        world.base_config(&["prod"]),
        api(&world.host())
    );
    world.write_config(&config);
    let daemon = world.start();
    daemon.wait_metric("image_updater_cycles_total", 1.0).await;
    world.push("org/api", "v1.1.0").await;
    let body = format!(
        r#"{{"events":[{{"action":"push","target":{{"repository":"org/api","tag":"v1.1.0"}},"request":{{"host":"{}"}}}}]}}"#,
        world.host()
    );
    (daemon, body)
}

/// Waits for the daemon to commit v1.1.0 to prod.
async fn v1_1_committed(world: &World, daemon: &harness::world::Daemon) {
    world
        .wait_for(
            "deploy/prod",
            "prod/kustomization.yaml",
            "newTag: v1.1.0",
            daemon,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_event_triggers_an_update_and_a_forged_one_is_refused() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let (webhooks, hook_port) = world.webhooks();
    let (daemon, body) = started_then_pushed(&world, &webhooks).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{hook_port}/webhook");
    let forged = client
        .post(&url)
        .header("x-hub-signature-256", sign("wrong", &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let unsigned = client.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        world
            .file_on("deploy/prod", "prod/kustomization.yaml")
            .contains("newTag: v1.0.0"),
        "nothing without the secret"
    );

    let sent = Instant::now();
    assert_eq!(deliver_signed(&client, &url, &body).await, 202);
    v1_1_committed(&world, &daemon).await;
    eprintln!("push event to pushed commit: {:?}", sent.elapsed());
    let log = daemon.log();
    assert!(log.contains("webhook refused"), "{log}");
    assert!(
        log.contains("checking now: a registry reported a push"),
        "{log}"
    );
}

/// A client that trusts only the CA in `ca`.
fn trusting(ca: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Registries on other hosts send their events over the network: with `tls_certificate` and
/// `tls_key` the webhook listener serves HTTPS with a certificate made by openssl, a renewed
/// certificate is served without a restart, and a broken renewal keeps the previous one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_over_tls_with_a_certificate_renewed_in_place() {
    needs!(Registry, Lighttpd, Openssl);
    let world = world().await;
    let certs = tempfile::tempdir().unwrap();
    let (first, renewed) = (certs.path().join("first"), certs.path().join("renewed"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&renewed).unwrap();
    let first = harness::Tls::generate(&first);
    let renewed = harness::Tls::generate(&renewed);
    let (cert, key) = (
        certs.path().join("webhook.pem"),
        certs.path().join("webhook.key"),
    );
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let (webhooks, hook_port) = world.webhooks();
    let webhooks = format!(
        "{webhooks}tls_certificate = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let (daemon, body) = started_then_pushed(&world, &webhooks).await;
    let url = format!("https://127.0.0.1:{hook_port}/webhook");

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook_port}/webhook"))
        .header("x-hub-signature-256", sign(SECRET, &body))
        .body(body.clone())
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    assert_eq!(deliver_signed(&trusting(&first.ca), &url, &body).await, 202);
    v1_1_committed(&world, &daemon).await;

    // Renewed in place, as certbot or cert-manager do: written beside, renamed over.
    let replace = |from: &std::path::Path, to: &std::path::Path| {
        let tmp = to.with_extension("new");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    };
    tokio::time::sleep(Duration::from_millis(1100)).await;
    replace(&renewed.cert, &cert);
    replace(&renewed.key, &key);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = trusting(&renewed.ca).post(&url).body("{}").send().await;
        if let Ok(answer) = answer {
            assert_eq!(
                answer.status(),
                401,
                "unsigned, over the renewed certificate"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        trusting(&first.ca)
            .post(&url)
            .body("{}")
            .send()
            .await
            .is_err(),
        "the replaced certificate is still served"
    );

    // A broken renewal is logged and the previous certificate stays in use.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = trusting(&renewed.ca)
        .post(&url)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    daemon
        .wait_log("the changed TLS certificate or key does not load")
        .await;

    // A FIFO put in the certificate's place (nobody ever writes to it) hangs nothing: the
    // handshake still presents the last pair, and the operator's port answers.
    let fifo = cert.with_extension("fifo");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    std::fs::rename(&fifo, &cert).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..3 {
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            trusting(&renewed.ca).post(&url).body("{}").send(),
        )
        .await
        .expect("the handshake does not wait for the FIFO")
        .unwrap();
        assert_eq!(answer.status(), 401);
        assert_eq!(daemon.get("/healthz").await.0, 200);
    }
    daemon.wait_log("is not a regular file").await;
}

/// (path, Authorization header, body) of a delivered notification.
type Delivery = (String, Option<String>, String);

#[derive(Clone, Default)]
struct Received {
    bodies: Arc<Mutex<Vec<Delivery>>>,
    /// Answer 500 to the first request of each path, to exercise retries.
    failed_once: Arc<Mutex<Vec<String>>>,
}

async fn receive(
    State(r): State<Received>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let path = uri.path().to_string();
    {
        let mut failed = r.failed_once.lock().unwrap();
        if !failed.contains(&path) {
            failed.push(path);
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    r.bodies.lock().unwrap().push((path, auth, body));
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_a_local_receiver_and_are_retried() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let received = Received::default();
    let app = Router::new()
        .route("/slack", post(receive))
        .route("/audit", post(receive))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The audit receiver's URL and token come from credential references.
    let audit_url = world.dir.path().join("audit-url");
    std::fs::write(&audit_url, format!("http://127.0.0.1:{port}/audit")).unwrap();
    let token = world.dir.path().join("audit-token");
    std::fs::write(&token, "audit-t0ken").unwrap();
    let config = format!(
        "{}\n[notifications.team]\nurl = \"http://127.0.0.1:{port}/slack\"\nformat = \"slack\"\n\n[notifications.audit]\nurl = \"file:{}\"\ncredentials = \"file:{}\"\n{}",
        world.base_config(&["prod"]),
        audit_url.display(),
        token.display(),
        api(&world.host())
    );
    world.write_config(&config);
    world.push("org/api", "v1.1.0").await;
    let out = world.run(&["once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bodies = received.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let slack = bodies.iter().find(|b| b.0 == "/slack").unwrap();
    let text = serde_json::from_str::<serde_json::Value>(&slack.2).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.starts_with("*prod* (deploy/prod)\n• api: v1.0.0 → v1.1.0\ncommit "),
        "{text}"
    );
    let audit = bodies.iter().find(|b| b.0 == "/audit").unwrap();
    assert_eq!(audit.1.as_deref(), Some("Bearer audit-t0ken"));
    let json: serde_json::Value = serde_json::from_str(&audit.2).unwrap();
    assert_eq!(json["environment"], "prod");
    assert_eq!(
        json["updates"][0],
        serde_json::json!({"image": "api", "old": "v1.0.0", "new": "v1.1.0"})
    );
    let commit = world.git.log("manifests", "deploy/prod", "%H")[0].clone();
    assert_eq!(json["commit"], commit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notification not delivered"),
        "the first attempt failed and was retried: {stderr}"
    );

    // A cycle with nothing to say sends nothing.
    let out = world.run(&["once"]);
    assert!(out.status.success());
    assert_eq!(received.bodies.lock().unwrap().len(), 2);
}

/// Holds `n` idle TCP connections to each of `ports` from a separate process on another
/// address (127.0.0.2: another host, as anyone who can reach a pod is not its kubelet),
/// reopening each one the daemon closes, until dropped (killed by its PID).
struct Holder(std::process::Child);

impl Holder {
    fn start(ports: &[u16], n: usize) -> Holder {
        const SCRIPT: &str = r#"
import socket, sys, time, selectors
ports = [int(p) for p in sys.argv[2:]]
n = int(sys.argv[1])
sel = selectors.DefaultSelector()
def open_one(port):
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
            sel.register(s, selectors.EVENT_READ, port)
            return
        except OSError:
            time.sleep(0.01)
for port in ports:
    for _ in range(n):
        open_one(port)
print("holding", flush=True)
while True:
    for key, _ in sel.select(timeout=1):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:
            sel.unregister(s)
            s.close()
            open_one(key.data)
"#;
        let mut args = vec!["-c".to_string(), SCRIPT.to_string(), n.to_string()];
        args.extend(ports.iter().map(u16::to_string));
        let mut child = std::process::Command::new("python3")
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the connection holder");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "holding");
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// 200 idle connections held open (and reopened as they are closed) against each listener by
/// another process on another address: `/healthz` still answers every probe within a second,
/// and signed webhook deliveries are still accepted, because a peer at its own cap makes
/// room from its own idle connections, and at the listener's cap the oldest idle connection
/// does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_keep_probes_or_deliveries_out() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let (webhooks, hook_port) = world.webhooks();
    let (daemon, _) = started_then_pushed(&world, &webhooks).await;
    let holder = Holder::start(&[daemon.port, hook_port], 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut slowest = Duration::ZERO;
    for probe in 0..40 {
        // A fresh connection each time, as a kubelet's probe opens.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let started = Instant::now();
        let answer = client
            .get(format!("http://127.0.0.1:{}/healthz", daemon.port))
            .send()
            .await;
        let took = started.elapsed();
        slowest = slowest.max(took);
        let status = answer.map(|a| a.status().as_u16());
        assert_eq!(
            status.as_ref().ok(),
            Some(&200),
            "probe {probe}: {status:?} after {took:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("slowest of 40 probes: {slowest:?}");
    let url = format!("http://127.0.0.1:{hook_port}/webhook");
    for n in 0..10 {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let body = format!(
            r#"{{"events":[{{"id":"{n}","action":"push","target":{{"repository":"org/api","tag":"v1.1.0"}},"request":{{"host":"{}"}}}}]}}"#,
            world.host()
        );
        let status = deliver_signed(&client, &url, &body).await;
        assert!((200..300).contains(&status), "delivery {n}: {status}");
    }
    v1_1_committed(&world, &daemon).await;
    drop(holder);
}

/// A webhook only makes an image due now: the check it triggers is the decision a poll makes,
/// so min age, a hold and the signature gate keep a pushed tag out just the same, and `test`
/// says which rule. Where the rule can be lifted here (the hold released, the tag signed),
/// the next delivery writes it, so the check did run on the webhook's path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_triggered_check_honours_min_age_a_hold_and_the_signature_gate() {
    needs!(Registry, Lighttpd, Openssl);
    // (rule, the image's extra keys, what `test` says of v1.1.0)
    let cases = [
        ("min_age", "min_age = \"1h\"\n", "too young"),
        ("hold", "", "held by `image-updater hold`"),
        ("verify", "VERIFY", "v1.1.0: no cosign signature for"),
    ];
    for (rule, keys, said) in cases {
        let world = world().await;
        let host = world.host();
        let key = harness::cosign::Key::generate(world.dir.path(), "release");
        let keys = keys.replace(
            "VERIFY",
            &format!(
                "verify = {{ cosign_key = \"file:{}\" }}\n",
                key.public.display()
            ),
        );
        let (webhooks, hook_port) = world.webhooks();
        let image = api(&world.host())
            .replace("interval = \"1h\"\n", &format!("interval = \"1h\"\n{keys}"));
        world.write_config(&format!(
            "{}{webhooks}{image}",
            world.base_config(&["prod"])
        ));
        let daemon = world.start();
        daemon.wait_metric("image_updater_cycles_total", 1.0).await;
        if rule == "hold" {
            let out = world.run(&["hold", "api", "--env", "prod", "--reason", "incident"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let digest = world.push("org/api", "v1.1.0").await;
        // With the digest, as distribution sends it: the check takes the event's word for
        // what the tag names where it may (see the next test), and the rules still apply.
        let body = pushed_event(&host, "org/api", "v1.1.0", &digest);
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{hook_port}/webhook");
        assert_eq!(deliver_signed(&client, &url, &body).await, 202);
        daemon.wait_metric("image_updater_cycles_total", 2.0).await;
        daemon
            .wait_log("checking now: a registry reported a push")
            .await;
        let out = world.run(&["test", "api", "--env", "prod"]);
        let explained = String::from_utf8_lossy(&out.stdout);
        assert!(
            explained.contains(said),
            "{rule}: `test` says:\n{explained}"
        );
        assert!(
            world
                .file_on("deploy/prod", "prod/kustomization.yaml")
                .contains("newTag: v1.0.0"),
            "{rule}: a webhook wrote past the rule; log:\n{}",
            daemon.log()
        );
        // Lifted where it can be, the next delivery writes.
        match rule {
            "hold" => {
                let out = world.run(&["release", "api", "--env", "prod"]);
                assert!(out.status.success());
            }
            "verify" => {
                harness::cosign::sign(&world.registry.url(), &host, "org/api", &digest, &key).await
            }
            _ => continue,
        }
        // Another delivery (a delivery seen before is not acted on again).
        let again = body.replace(r#""action""#, r#""id":"again","action""#);
        assert_eq!(deliver_signed(&client, &url, &again).await, 202);
        v1_1_committed(&world, &daemon).await;
    }
}
