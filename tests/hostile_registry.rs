//! The registry client against hostile peers (written for the tests, on loopback): every
//! number bounded, credentials only to the registry's own origin, every digest a digest. Each
//! test is one finding of the hostile-peer review and asserts the safe outcome.

mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::hostile::{Handler, Peer, json};
use image_updater::config::CredentialRef;
use image_updater::registry::{Client, Endpoint, Metrics, RegistryError, Tuning};

fn tuning() -> Tuning {
    Tuning {
        attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..Tuning::default()
    }
}

fn connect(peer: &Peer, credentials: Option<CredentialRef>, tuning: Tuning) -> Client {
    let endpoint = Endpoint {
        name: "hostile".into(),
        host: format!("{}:{}", peer.ip, peer.port),
        base_url: peer.url(),
        credentials,
        insecure: true,
        ca_file: None,
        rate_limit: 1000.0,
        credentials_implied: false,
        credentials_ttl: std::time::Duration::from_secs(300),
    };
    Client::new(
        endpoint,
        tuning,
        Arc::new(Metrics::default()),
        Arc::default(),
    )
    .unwrap()
}

fn handler(
    f: impl Fn(&harness::hostile::Seen, usize) -> harness::hostile::Answer + Send + Sync + 'static,
) -> Handler {
    Arc::new(f)
}

/// A registry that asks for Basic credentials, and answers `answer()` once it is sent some.
fn behind_basic(answer: impl Fn() -> harness::hostile::Answer + Send + Sync + 'static) -> Handler {
    handler(move |req, _| match req.header("authorization") {
        Some(_) => answer(),
        None => json(
            401,
            "{}",
            &[("WWW-Authenticate", "Basic realm=\"registry\"")],
        ),
    })
}

/// The credentials in a variable of this process, as `env:VAR` reads them.
fn credentials(var: &str, value: &str) -> CredentialRef {
    // SAFETY: each test sets its own variable, once.
    unsafe { std::env::set_var(var, value) };
    CredentialRef::Env(var.into())
}

const TAGS: &str = r#"{"name":"org/app","tags":["v1.0.0","v1.1.0"]}"#;

/// Finding 1 and 5: a Retry-After of i64::MAX or 10^12 seconds once overflowed `Instant +
/// Duration` (a panic in `once`, a wedged scheduler in `run`) or silenced the registry for
/// millennia. It is now capped at an hour.
#[tokio::test]
async fn an_absurd_retry_after_is_capped_at_an_hour() {
    needs!(Registry, Lighttpd, LighttpdTls, Openssl);
    for value in ["9223372036854775807", "1000000000000"] {
        let value = value.to_string();
        let peer = Peer::start(
            "127.0.0.1",
            handler(move |_, _| json(429, "{}", &[("Retry-After", &value)])),
        )
        .await;
        let client = connect(&peer, None, tuning());
        let started = Instant::now();
        let err = client.list_tags("org/app").await.unwrap_err();
        assert!(
            matches!(err, RegistryError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(3600)),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "it waited");
        let until = client.blocked_until().expect("held off");
        assert!(until <= Instant::now() + Duration::from_secs(3600));
    }
}

/// Finding 1: `"expires_in": 18446744073709551615` overflowed the token's refresh time. The
/// token is now used for at most an hour, and reused meanwhile.
#[tokio::test]
async fn an_absurd_token_lifetime_is_capped() {
    needs!(Registry, Lighttpd, LighttpdTls, Openssl);
    // The realm must be absolute: the handler learns the peer's port once it is bound.
    let port_holder = Arc::new(std::sync::Mutex::new(0u16));
    let p = port_holder.clone();
    let peer = Peer::start(
        "127.0.0.1",
        handler(move |req, _| {
            if req.path.starts_with("/token") {
                return json(
                    200,
                    r#"{"token":"tok","expires_in":18446744073709551615}"#,
                    &[],
                );
            }
            let realm = format!(
                "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"x\"",
                p.lock().unwrap()
            );
            match req.header("authorization") {
                Some("Bearer tok") => json(200, TAGS, &[]),
                _ => json(401, "{}", &[("WWW-Authenticate", &realm)]),
            }
        }),
    )
    .await;
    *port_holder.lock().unwrap() = peer.port;
    let client = connect(&peer, None, tuning());
    assert_eq!(
        client.list_tags("org/app").await.unwrap(),
        ["v1.0.0", "v1.1.0"]
    );
    assert_eq!(
        client.list_tags("org/app").await.unwrap(),
        ["v1.0.0", "v1.1.0"]
    );
    let tokens = peer
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/token"))
        .count();
    assert_eq!(tokens, 1, "the token is reused");
}

/// Finding 2: a `Link: rel=next` that always names a new page kept a poll going for ever. The
/// list now stops at the page cap with an error, never a partial list.
#[tokio::test]
async fn endless_pagination_stops_at_the_page_cap() {
    needs!(Registry, Lighttpd, LighttpdTls, Openssl);
    let peer = Peer::start(
        "127.0.0.1",
        handler(|_, n| {
            let link = format!("</v2/org/app/tags/list?n=2&last=t{n}>; rel=\"next\"");
            json(
                200,
                &format!(r#"{{"name":"org/app","tags":["t{n}"]}}"#),
                &[("Link", &link)],
            )
        }),
    )
    .await;
    let client = connect(
        &peer,
        None,
        Tuning {
            max_pages: 20,
            ..tuning()
        },
    );
    let err = client.list_tags("org/app").await.unwrap_err();
    assert!(err.to_string().contains("runs past 20 pages"), "{err}");
    assert!(peer.requests().len() <= 20, "{}", peer.requests().len());
}

/// Finding 3: a next-page `Link` to another host received the Basic password in clear text.
/// It is not followed, and the other host receives nothing.
#[tokio::test]
async fn a_link_to_another_host_is_not_followed() {
    needs!(Registry, Lighttpd, LighttpdTls, Openssl);
    let other = Peer::start("127.0.0.2", handler(|_, _| json(200, TAGS, &[]))).await;
    let link = format!(
        "<{}/v2/org/app/tags/list?last=v1>; rel=\"next\"",
        other.url()
    );
    let peer = Peer::start(
        "127.0.0.1",
        behind_basic(move || {
            json(
                200,
                r#"{"name":"org/app","tags":["v0"]}"#,
                &[("Link", &link)],
            )
        }),
    )
    .await;
    let client = connect(
        &peer,
        Some(credentials("HOSTILE_LINK_CREDS", "bot:s3cret")),
        tuning(),
    );
    let err = client.list_tags("org/app").await.unwrap_err();
    assert!(err.to_string().contains("links to another origin"), "{err}");
    assert!(other.requests().is_empty(), "{:?}", other.requests());
}

/// Finding 3: a redirect whose target answers 401 with its own realm received `user:password`.
/// Credentials go only to the registry's own origin now.
#[tokio::test]
async fn a_redirect_to_another_host_that_asks_for_credentials_gets_none() {
    needs!(Registry, Lighttpd, LighttpdTls, Openssl);
    for challenge in [
        "Basic realm=\"evil\"",
        "Bearer realm=\"http://127.0.0.2:1/token\"",
    ] {
        let other = Peer::start(
            "127.0.0.2",
            handler(move |_, _| json(401, "{}", &[("WWW-Authenticate", challenge)])),
        )
        .await;
        let location = format!("{}/v2/org/app/tags/list", other.url());
        let peer = Peer::start(
            "127.0.0.1",
            behind_basic(move || json(307, "", &[("Location", &location)])),
        )
        .await;
        let client = connect(
            &peer,
            Some(credentials("HOSTILE_REDIRECT_CREDS", "bot:s3cret")),
            tuning(),
        );
        let err = client.list_tags("org/app").await.unwrap_err();
        assert!(
            err.to_string()
                .contains("sent only to the registry's own origin"),
            "{err}"
        );
        assert!(
            other.authorizations().is_empty(),
            "{:?}",
            other.authorizations()
        );
        assert!(
            other
                .requests()
                .iter()
                .all(|r| !r.path.starts_with("/token")),
            "{:?}",
            other.requests()
        );
    }
}

/// Finding 9: `md5:abc` and `x # y: {z}` from `Docker-Content-Digest` were taken as digests
/// (and committed). A digest must be `sha256:`/`sha384:`/`sha512:` with its hex.
#[tokio::test]
async fn a_digest_header_must_be_a_digest() {
    needs!(Registry, Lighttpd, LighttpdTls, Openssl);
    let good = format!("sha256:{}", "a".repeat(64));
    for (header, ok) in [
        ("md5:abc", false),
        ("x # y: {z}", false),
        (&format!("sha512:{}", "0".repeat(64)), false),
        (&good, true),
    ] {
        let header = header.to_string();
        let peer = Peer::start(
            "127.0.0.1",
            handler(move |_, _| json(200, "", &[("Docker-Content-Digest", &header)])),
        )
        .await;
        let client = connect(&peer, None, tuning());
        let result = client.resolve("org/app", "latest").await;
        assert_eq!(result.is_ok(), ok, "{result:?}");
        if let Err(e) = result {
            assert!(e.to_string().contains("is not a digest"), "{e}");
        }
    }
}

/// Finding 7: 6 million short tags took 3.1 GB. A repository with more tags than the cap is
/// an error for that image, held in memory no further.
#[tokio::test]
async fn a_flood_of_tags_is_refused() {
    needs!(Registry, Lighttpd, LighttpdTls, Openssl);
    let tags: Vec<String> = (0..5000).map(|i| format!("\"t{i}\"")).collect();
    let body = format!(r#"{{"name":"org/app","tags":[{}]}}"#, tags.join(","));
    let peer = Peer::start("127.0.0.1", handler(move |_, _| json(200, &body, &[]))).await;
    let client = connect(
        &peer,
        None,
        Tuning {
            max_tags: 1000,
            ..tuning()
        },
    );
    let err = client.list_tags("org/app").await.unwrap_err();
    assert!(err.to_string().contains("more than 1000 tags"), "{err}");
    let client = connect(
        &peer,
        None,
        Tuning {
            max_tag_list_bytes: 10_000,
            ..tuning()
        },
    );
    let err = client.list_tags("org/app").await.unwrap_err();
    assert!(err.to_string().contains("larger than 10000 bytes"), "{err}");
}

/// Finding 8: an `exec:` helper ran once, so a rotated password failed every poll until a
/// reload. A refused credential is read again, and the request retried once with it.
#[tokio::test]
async fn a_rotated_password_is_read_again_after_a_refusal() {
    needs!(Registry, Lighttpd, LighttpdTls, Openssl);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("password");
    std::fs::write(&secret, "bot:old\n").unwrap();
    let helper = dir.path().join("helper");
    std::fs::write(&helper, format!("#!/bin/sh\ncat '{}'\n", secret.display())).unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let accepted = Arc::new(std::sync::Mutex::new("bot:old".to_string()));
    let a = accepted.clone();
    let peer = Peer::start(
        "127.0.0.1",
        handler(move |req, _| {
            use base64::Engine;
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(a.lock().unwrap().as_str())
            );
            match req.header("authorization") {
                Some(h) if h == want => json(200, TAGS, &[]),
                _ => json(
                    401,
                    "{}",
                    &[("WWW-Authenticate", "Basic realm=\"registry\"")],
                ),
            }
        }),
    )
    .await;
    let exec = CredentialRef::Exec {
        command: helper,
        timeout: Duration::from_secs(5),
    };
    let client = connect(&peer, Some(exec), tuning());
    client.list_tags("org/app").await.unwrap();
    // The password rotates at the registry and in the helper's source.
    *accepted.lock().unwrap() = "bot:new".into();
    std::fs::write(&secret, "bot:new\n").unwrap();
    assert_eq!(
        client.list_tags("org/app").await.unwrap(),
        ["v1.0.0", "v1.1.0"]
    );
    // A wrong password is still refused, once, not retried in a loop.
    *accepted.lock().unwrap() = "bot:other".into();
    let before = peer.requests().len();
    let err = client.list_tags("org/app").await.unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(
        peer.requests().len() - before <= 3,
        "{}",
        peer.requests().len() - before
    );
}

/// Finding 3: an https → http redirect was followed and its tag list committed, with
/// `insecure = false`. A real TLS server (lighttpd with mod_openssl) redirects every request
/// to a plain-http peer, which must receive nothing.
#[tokio::test]
async fn an_https_to_http_redirect_is_refused() {
    needs!(Registry, Lighttpd, LighttpdTls, Openssl);
    harness::git::require_lighttpd();
    let module = std::path::Path::new("/usr/lib/lighttpd/mod_openssl.so");
    assert!(
        module.exists(),
        "lighttpd's TLS module is missing: apt-get install lighttpd-mod-openssl"
    );
    let plain = Peer::start("127.0.0.1", handler(|_, _| json(200, TAGS, &[]))).await;
    let dir = tempfile::tempdir().unwrap();
    let tls = harness::Tls::generate(dir.path());
    let port = harness::free_port();
    let conf = dir.path().join("lighttpd.conf");
    std::fs::write(
        &conf,
        format!(
            r#"server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.modules = ("mod_openssl", "mod_redirect")
server.errorlog = "{root}/error.log"
ssl.engine = "enable"
ssl.pemfile = "{cert}"
ssl.privkey = "{key}"
url.redirect = ("^/(.*)" => "http://127.0.0.1:{plain}/$1")
"#,
            root = dir.path().display(),
            cert = tls.cert.display(),
            key = tls.key.display(),
            plain = plain.port,
        ),
    )
    .unwrap();
    let mut server = std::process::Command::new(harness::git::LIGHTTPD)
        .args(["-D", "-f"])
        .arg(&conf)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "lighttpd did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let endpoint = Endpoint {
        name: "tls".into(),
        host: format!("127.0.0.1:{port}"),
        base_url: format!("https://127.0.0.1:{port}"),
        credentials: Some(credentials("HOSTILE_TLS_CREDS", "bot:s3cret")),
        insecure: false,
        ca_file: Some(tls.ca.clone()),
        rate_limit: 1000.0,
        credentials_implied: false,
        credentials_ttl: Duration::from_secs(300),
    };
    let client = Client::new(
        endpoint,
        tuning(),
        Arc::new(Metrics::default()),
        Arc::default(),
    )
    .unwrap();
    let result = client.list_tags("org/app").await;
    // Stopped by its PID.
    let _ = server.kill();
    let _ = server.wait();
    let err = result.unwrap_err();
    assert!(err.to_string().contains("redirect"), "{err}");
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
}

/// Scale issue: a tag list the registry says has not changed (`ETag`, `If-None-Match`, 304)
/// costs no body. A peer written for this test serves ETags (the distribution registry sends
/// none for tag lists). A 304 to a request that was not conditional is an error, never an empty
/// list, and an ETag that is not a short token is never sent back.
#[tokio::test]
async fn unchanged_tag_lists_are_not_sent_again() {
    let peer = Peer::start(
        "127.0.0.1",
        handler(|req, n| match (n, req.header("if-none-match")) {
            (0, None) => json(200, TAGS, &[("ETag", "\"v1\"")]),
            (1, Some("\"v1\"")) => (304, vec![], vec![]),
            (2, Some("\"v1\"")) => json(
                200,
                r#"{"name":"org/app","tags":["v1.0.0","v1.1.0","v1.2.0"]}"#,
                &[("ETag", "\"has spaces in it\"")],
            ),
            (3, None) => (304, vec![], vec![]),
            _ => json(500, "{}", &[]),
        }),
    )
    .await;
    let client = connect(&peer, None, tuning());
    assert_eq!(
        client.list_tags("org/app").await.unwrap(),
        ["v1.0.0", "v1.1.0"]
    );
    assert_eq!(
        client.list_tags("org/app").await.unwrap(),
        ["v1.0.0", "v1.1.0"]
    );
    assert_eq!(
        client.list_tags("org/app").await.unwrap(),
        ["v1.0.0", "v1.1.0", "v1.2.0"]
    );
    let err = client.list_tags("org/app").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("304 to a request that was not conditional"),
        "{err}"
    );
    let sent: Vec<Option<String>> = peer
        .requests()
        .iter()
        .map(|r| r.header("if-none-match").map(String::from))
        .collect();
    assert_eq!(
        sent,
        [None, Some("\"v1\"".into()), Some("\"v1\"".into()), None]
    );
}
