//! The registry client facing faults a real registry will not produce on demand: 429s, 5xx
//! bursts, slow and truncated responses, broken pages. Each must end in the right answer or a
//! clear error, within bounded retries, and never in a wrong or partial tag list.

mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Fault, FaultServer};
use image_updater::poll::{Cycle, choose};
use image_updater::registry::{Client, Endpoint, Metrics, RegistryError, RequestKind, Tuning};
use image_updater::select::{Constraint, Policy, Strategy};

const TAGS: &str = r#"{"name":"org/app","tags":["v1.0.0","v1.1.0","v2.0.0"]}"#;

fn tuning() -> Tuning {
    Tuning {
        attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(2),
        request_timeout: Duration::from_millis(400),
        connect_timeout: Duration::from_millis(400),
        ..Tuning::default()
    }
}

/// What fetching a manifest of org/app (by a digest of a's) fails with.
async fn manifest_error(client: &Client) -> RegistryError {
    let digest = format!("sha256:{}", "a".repeat(64));
    client
        .image_info("org/app", &digest, &[Default::default()])
        .await
        .unwrap_err()
}

fn connect(server: &FaultServer, tuning: Tuning) -> (Client, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let endpoint = Endpoint {
        name: "faulty".into(),
        host: format!("127.0.0.1:{}", server.port),
        base_url: server.url(),
        credentials: None,
        insecure: true,
        ca_file: None,
        rate_limit: 1000.0,
        credentials_implied: false,
        credentials_ttl: std::time::Duration::from_secs(300),
    };
    (
        Client::new(endpoint, tuning, metrics.clone(), Arc::default()).unwrap(),
        metrics,
    )
}

#[tokio::test]
async fn waits_out_a_short_retry_after_then_succeeds() {
    let server = FaultServer::start(vec![Fault::too_many("1"), Fault::ok(TAGS)]).await;
    let (client, metrics) = connect(&server, tuning());
    let started = Instant::now();
    let tags = client.list_tags("org/app").await.unwrap();
    assert_eq!(tags, ["v1.0.0", "v1.1.0", "v2.0.0"]);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "did not wait: {:?}",
        started.elapsed()
    );
    let snap = metrics.snapshot();
    assert_eq!(snap.rate_limited["faulty"], 1);
    assert!(snap.rate_limit_wait["faulty"] >= Duration::from_millis(900));
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_long_retry_after_fails_at_once_and_holds_off_later_requests() {
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600));
    let server = FaultServer::start(vec![Fault::too_many(&later), Fault::ok(TAGS)]).await;
    let (client, _) = connect(&server, tuning());
    let err = client.list_tags("org/app").await.unwrap_err();
    match &err {
        RegistryError::RateLimited {
            retry_after: Some(d),
            ..
        } => assert!(*d > Duration::from_secs(3500)),
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains("rate limited (429), retry after"),
        "{err}"
    );
    // The registry asked for an hour: the next call does not even send a request.
    let err = client.list_tags("org/app").await.unwrap_err();
    assert!(matches!(err, RegistryError::RateLimited { .. }), "{err}");
    assert_eq!(server.requests(), 1);
    assert!(client.blocked_until().is_some());
}

#[tokio::test]
async fn a_5xx_burst_is_retried_and_a_persistent_one_is_bounded() {
    let server = FaultServer::start(vec![
        Fault::status(500),
        Fault::status(502),
        Fault::status(503),
        Fault::ok(TAGS),
    ])
    .await;
    let (client, metrics) = connect(&server, tuning());
    assert_eq!(client.list_tags("org/app").await.unwrap().len(), 3);
    assert_eq!(server.requests(), 4);
    assert_eq!(
        metrics
            .snapshot()
            .requests
            .get(&("faulty".into(), RequestKind::TagList, 502)),
        Some(&1)
    );

    let down = FaultServer::start(vec![Fault::status(503)]).await;
    let (client, _) = connect(&down, tuning());
    let err = client.list_tags("org/app").await.unwrap_err();
    assert_eq!(
        err,
        RegistryError::Server {
            registry: "faulty".into(),
            status: 503,
            attempts: 4
        }
    );
    assert_eq!(down.requests(), 4, "bounded retries");
}

#[tokio::test]
async fn slow_responses_time_out_within_bounds() {
    let server = FaultServer::start(vec![Fault::Slow {
        delay: Duration::from_secs(5),
        status: 200,
        body: TAGS.into(),
    }])
    .await;
    let (client, _) = connect(&server, tuning());
    let started = Instant::now();
    let err = client.list_tags("org/app").await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Unreachable { attempts: 4, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.requests(), 4);
}

#[tokio::test]
async fn truncated_bodies_are_retried_and_never_read_as_short_lists() {
    let once = FaultServer::start(vec![
        Fault::Truncated { body: TAGS.into() },
        Fault::ok(TAGS),
    ])
    .await;
    let (client, _) = connect(&once, tuning());
    assert_eq!(client.list_tags("org/app").await.unwrap().len(), 3);

    let always = FaultServer::start(vec![Fault::Truncated { body: TAGS.into() }]).await;
    let (client, _) = connect(&always, tuning());
    let err = client.list_tags("org/app").await.unwrap_err();
    assert!(
        matches!(err, RegistryError::InvalidResponse { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("cut short"), "{err}");
    assert_eq!(always.requests(), 4);
}

#[tokio::test]
async fn bodies_that_are_not_tag_lists_are_errors() {
    for body in [
        r#"{"name":"org/app"}"#,
        "<html>proxy error</html>",
        r#"{"tags":[1,2]}"#,
    ] {
        let server = FaultServer::start(vec![Fault::ok(body)]).await;
        let (client, _) = connect(&server, tuning());
        let err = client.list_tags("org/app").await.unwrap_err();
        assert!(
            matches!(err, RegistryError::InvalidResponse { .. }),
            "{body}: {err}"
        );
    }
    // `"tags": null` is how distribution says "no tags": an empty list, not an error.
    let server = FaultServer::start(vec![Fault::ok(r#"{"name":"org/app","tags":null}"#)]).await;
    let (client, _) = connect(&server, tuning());
    assert_eq!(
        client.list_tags("org/app").await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_broken_second_page_fails_the_poll_instead_of_choosing_from_the_first() {
    let page1 = Fault::Respond {
        status: 200,
        headers: vec![(
            "Link".into(),
            r#"</v2/org/app/tags/list?last=v1.1.0&n=2>; rel="next""#.into(),
        )],
        body: r#"{"name":"org/app","tags":["v1.0.0","v1.1.0"]}"#.into(),
    };
    let server = FaultServer::start(vec![page1, Fault::status(500)]).await;
    let (client, _) = connect(&server, tuning());
    let policy = Policy::new(Strategy::Semver {
        constraint: Constraint::parse("*").unwrap(),
        include_prerelease: false,
    });
    let err = choose(
        &client,
        &Cycle::new(),
        "org/app",
        &policy,
        &[Default::default()],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::Server { status: 500, .. }),
        "{err}"
    );
    let paths: Vec<String> = server
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(paths[1], "/v2/org/app/tags/list?last=v1.1.0&n=2");
}

#[tokio::test]
async fn pages_are_followed_to_the_end() {
    let page = |tags: &str, next: Option<&str>| Fault::Respond {
        status: 200,
        headers: next
            .map(|n| vec![("Link".into(), format!("<{n}>; rel=\"next\""))])
            .unwrap_or_default(),
        body: format!(r#"{{"name":"org/app","tags":{tags}}}"#),
    };
    // Oldest first, as GHCR does: the newest release is on the last page.
    let server = FaultServer::start(vec![
        page(
            r#"["v1.0.0","v1.1.0"]"#,
            Some("/v2/org/app/tags/list?last=v1.1.0&n=2"),
        ),
        page(
            r#"["v1.2.0","v1.3.0"]"#,
            Some("/v2/org/app/tags/list?last=v1.3.0&n=2"),
        ),
        page(r#"["v1.4.0"]"#, None),
    ])
    .await;
    let (client, _) = connect(&server, tuning());
    assert_eq!(
        client.list_tags("org/app").await.unwrap(),
        ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0"]
    );
}

#[tokio::test]
async fn the_last_of_the_pull_budget_is_not_spent() {
    let server = FaultServer::start(vec![Fault::Respond {
        status: 200,
        headers: vec![
            ("ratelimit-limit".into(), "100;w=21600".into()),
            ("ratelimit-remaining".into(), "2;w=21600".into()),
            (
                "Docker-Content-Digest".into(),
                format!("sha256:{}", "a".repeat(64)),
            ),
        ],
        body: TAGS.into(),
    }])
    .await;
    let (client, _) = connect(&server, tuning());
    client.list_tags("org/app").await.unwrap();
    assert!(client.budget().is_low());
    let err = manifest_error(&client).await;
    assert!(
        matches!(
            err,
            RegistryError::BudgetExhausted {
                remaining: 2,
                limit: 100,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(server.requests(), 1, "no manifest GET was sent");
}

/// A pull budget spent for a window that ends within seconds is waited out: the manifest is
/// fetched once the window has passed, instead of failing the image.
#[tokio::test]
async fn a_short_budget_window_is_waited_out() {
    let server = FaultServer::start(vec![
        Fault::Respond {
            status: 200,
            headers: vec![
                ("ratelimit-limit".into(), "100;w=2".into()),
                ("ratelimit-remaining".into(), "0;w=2".into()),
            ],
            body: TAGS.into(),
        },
        Fault::Respond {
            status: 404,
            headers: vec![],
            body: "{}".into(),
        },
    ])
    .await;
    let (client, _) = connect(&server, tuning());
    client.list_tags("org/app").await.unwrap();
    let started = std::time::Instant::now();
    let err = manifest_error(&client).await;
    assert!(
        !matches!(err, RegistryError::BudgetExhausted { .. }),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        server.requests(),
        2,
        "the manifest GET went once the window ended"
    );
}

#[tokio::test]
async fn a_server_that_hangs_up_is_unreachable() {
    let server = FaultServer::start(vec![Fault::Hangup]).await;
    let (client, _) = connect(&server, tuning());
    let err = client.list_tags("org/app").await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    assert_eq!(server.requests(), 4);
}
