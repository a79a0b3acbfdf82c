//! The status page (`[ui]`) in a real browser: Debian's Chromium driven through WebDriver by
//! ChromeDriver, against the real daemon, registry and git server. What the page shows is
//! checked against what the branches hold and what `image-updater status` says; its actions
//! against what the daemon then does; its accessibility by axe-core, run in that browser.
//!
//! Screenshots are written to `target/status-page/`, and also to the folder
//! `IMAGE_UPDATER_SCREENSHOTS` names (the docs' are made so).

mod harness;

use std::path::PathBuf;
use std::time::Duration;

use harness::browser::Browser;
use harness::world::{Daemon, World};

const DEV: &str = "dev/values.yaml";
const PROD: &str = "prod/values.yaml";
const VALUES: &str = "image:\n  repository: REGISTRY/org/api\n  tag: v1.0.0\n";

/// dev and prod; `api` waits an hour in prod (min_age), and is polled every hour, so only
/// the first cycle and the checks the test asks for poll it.
async fn world(ui: &str) -> World {
    let world = World::new(
        &[
            (DEV, VALUES),
            (PROD, VALUES),
            ("web.yaml", "image:\n  tag: 2.0.0\n"),
        ],
        &["deploy/dev", "deploy/prod"],
    )
    .await;
    let host = world.host();
    world.push("org/api", "v1.0.0").await;
    world.push("org/api", "v1.1.0").await;
    world.push("org/web", "2.0.0").await;
    let mut config = world.base_config(&["dev", "prod"]);
    config.push_str(ui);
    config.push_str(&format!(
        r#"
[images.api]
image = "{host}/org/api"
interval = "1h"
[[images.api.targets]]
kind = "helm"
file = "{DEV}"
tag = "image.tag"
[images.api.env.prod]
min_age = "1h"
[[images.api.env.prod.targets]]
kind = "helm"
file = "{PROD}"
tag = "image.tag"

[images.web]
image = "{host}/org/web"
interval = "1h"
environments = ["prod"]
[[images.web.targets]]
kind = "helm"
file = "web.yaml"
tag = "image.tag"
"#
    ));
    world.write_config(&config);
    world
}

fn base(daemon: &Daemon) -> String {
    format!("http://127.0.0.1:{}", daemon.port)
}

fn control_token(world: &World) -> String {
    let text = std::fs::read_to_string(world.state_dir().join("control.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["token"].as_str().unwrap().to_string()
}

fn shots() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../status-page")];
    if let Ok(d) = std::env::var("IMAGE_UPDATER_SCREENSHOTS") {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

async fn screenshot(browser: &Browser, name: &str) {
    for dir in shots() {
        browser.screenshot(&dir.join(name)).await;
    }
}

async fn accessible(browser: &Browser, what: &str) {
    let violations = browser.serious_violations().await;
    assert!(
        violations.is_empty(),
        "axe-core finds serious violations on {what}: {}",
        serde_json::to_string_pretty(&violations).unwrap()
    );
}

fn status(world: &World) -> String {
    let out = world.run(&["status", "--long"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `image-updater status --long` says `needle`.
async fn wait_status(world: &World, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(world);
        if s.contains(needle) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never said {needle:?}:\n{s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whole round in the browser: the matrix shows each branch's tag and why prod waits;
/// signed in with the control token, a hold made on the page keeps the next check from
/// committing and shows in `status` with who made it; release and poll now commit the new
/// tag; a later commit shows up without a reload; axe-core finds nothing serious.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_holds_releases_and_polls_in_a_real_browser() {
    needs!(Registry, Lighttpd, Chromium, AxeCore);
    let world = world("\n[ui]\n").await;
    let daemon = world.start();
    daemon.wait_http().await;
    world
        .wait_for("deploy/dev", DEV, "tag: v1.1.0", &daemon)
        .await;
    let url = base(&daemon);
    let browser = Browser::start().await;

    // Read-only without signing in: the matrix, each cell's tag and state in words.
    browser.goto(&format!("{url}/")).await;
    let table = browser
        .wait_text("table.matrix", "too young", Duration::from_secs(20))
        .await;
    assert!(table.contains("api"), "{table}");
    let dev = browser
        .text("table.matrix tbody tr:nth-child(1) td:nth-child(2)")
        .await;
    assert!(
        dev.contains("up to date") && dev.contains("v1.1.0"),
        "{dev}"
    );
    let prod = browser
        .text("table.matrix tbody tr:nth-child(1) td:nth-child(3)")
        .await;
    // Every tag is new to the daemon, so none has been seen for prod's hour yet.
    assert!(
        prod.contains("waiting") && prod.contains("too young") && prod.contains("min_age 1h"),
        "{prod}"
    );
    let web_dev = browser
        .text("table.matrix tbody tr:nth-child(2) td:nth-child(2)")
        .await;
    assert!(web_dev.contains("not deployed"), "{web_dev}");
    let registries = browser.text("main h2 + table").await;
    assert!(
        registries.contains("local 2 80.00 of 100.00 requests/s (rate_limit)"),
        "{registries}"
    );
    accessible(&browser, "the matrix").await;
    screenshot(&browser, "status-page-matrix.png").await;
    // Without a session the image's page offers no actions.
    browser.goto(&format!("{url}/image/api")).await;
    assert!(
        browser
            .text("main")
            .await
            .contains("Sign in with the control token")
    );

    // Signed in with the control token, by keyboard: the token field, a name, Enter.
    browser.goto(&format!("{url}/")).await;
    browser.click("#token-session").await;
    browser.keys(&control_token(&world)).await;
    browser.keys("\u{e004}ana\u{e007}").await; // Tab, "ana", Enter
    browser
        .wait_text("header", "Signed in as ana", Duration::from_secs(10))
        .await;

    // A hold for dev, made on the page.
    browser.goto(&format!("{url}/image/api")).await;
    browser.fill("#for-dev", "2h").await;
    browser.fill("#reason-dev", "incident 42").await;
    browser.click("#hold-dev").await;
    browser
        .wait_text("p.said", "held by hand by ana", Duration::from_secs(10))
        .await;
    let s = wait_status(&world, "held by hand by ana").await;
    assert!(s.contains("incident 42"), "{s}");
    accessible(&browser, "the image's page").await;
    screenshot(&browser, "status-page-image.png").await;

    // v1.2.0 arrives; poll now checks it: the hold keeps it off the branch, the page says so.
    world.push("org/api", "v1.2.0").await;
    browser.click("#poll-dev").await;
    let dev = browser
        .wait_text(
            "section[aria-labelledby=env-dev]",
            "v1.2.0",
            Duration::from_secs(20),
        )
        .await;
    assert!(
        dev.contains("Candidate\nv1.2.0") && dev.contains("held by hand by ana"),
        "{dev}"
    );
    assert!(
        world.file_on("deploy/dev", DEV).contains("tag: v1.1.0"),
        "a held image was committed"
    );
    assert!(daemon.log().contains("held from the status page"));

    // Release, then poll now: v1.2.0 is committed.
    browser.click("#release-dev").await;
    browser
        .wait_text("p.said", "released", Duration::from_secs(10))
        .await;
    browser.click("#poll-dev").await;
    world
        .wait_for("deploy/dev", DEV, "tag: v1.2.0", &daemon)
        .await;
    assert!(!status(&world).contains("held by hand"));

    // The page on the matrix, left alone: a commit made meanwhile (asked for by the command
    // line) shows up without a reload, which would have lost the mark set here.
    browser.goto(&format!("{url}/")).await;
    browser
        .wait_text(
            "table.matrix tbody tr:nth-child(1) td:nth-child(2)",
            "v1.2.0",
            Duration::from_secs(10),
        )
        .await;
    browser
        .client
        .execute("window.notReloaded = true;", vec![])
        .await
        .unwrap();
    world.push("org/api", "v1.3.0").await;
    let out = world.run(&["poll", "api", "--env", "dev"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    world
        .wait_for("deploy/dev", DEV, "tag: v1.3.0", &daemon)
        .await;
    browser
        .wait_text(
            "table.matrix tbody tr:nth-child(1) td:nth-child(2)",
            "v1.3.0",
            Duration::from_secs(15),
        )
        .await;
    let kept = browser
        .client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(kept, serde_json::json!(true), "the page was reloaded");
    assert!(browser.text("#live").await.contains("Updated"));

    // The image's page now lists the writes, with their commits, and the tags' verdicts.
    browser.goto(&format!("{url}/image/api")).await;
    let page = browser.text("main").await;
    assert!(
        page.contains("v1.2.0 -> v1.3.0") && page.contains("v1.1.0 -> v1.2.0"),
        "{page}"
    );
    assert!(
        page.contains("chosen") && page.contains("ana") && page.contains("release"),
        "{page}"
    );
    browser.close().await;
}

/// A form on another site that posts to the page, opened in a browser signed in to it: the
/// browser says where the post came from, and it is refused; nothing is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_form_post_is_refused() {
    needs!(Registry, Lighttpd, Chromium);
    let world = world("\n[ui]\n").await;
    let daemon = world.start();
    daemon.wait_http().await;
    let url = base(&daemon);
    // Another site: localhost, not 127.0.0.1, on a port of its own.
    let attack = format!(
        "<!doctype html><html lang=en><title>win a prize</title><body><form id=f method=post action=\"{url}/ui/hold\">\
<input name=image value=api><input name=env value=dev><input name=reason value=forged></form>\
<script>document.getElementById('f').submit()</script></body></html>"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = attack.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let site = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let browser = Browser::start().await;
    browser.goto(&format!("{url}/")).await;
    browser.fill("#token-session", &control_token(&world)).await;
    browser.click("form.session button").await;
    browser
        .wait_text("header", "Signed in", Duration::from_secs(10))
        .await;
    browser.goto(&format!("http://localhost:{port}/")).await;
    let refused = browser
        .wait_text("body", "Refused", Duration::from_secs(10))
        .await;
    assert!(refused.contains("another site"), "{refused}");
    assert!(
        !status(&world).contains("held by hand"),
        "a forged hold was made"
    );
    assert!(daemon.log().contains("a post was refused"));
    browser.close().await;
    site.abort();
}

/// Without the control token nothing can act; with `read_token` set, nothing can read
/// without a token either. The JSON is the same rows as `status`, for scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_reads_and_who_acts() {
    needs!(Registry, Lighttpd);
    let world = World::new(&[(DEV, VALUES)], &["deploy/dev"]).await;
    let token_file = world.dir.path().join("read-token");
    std::fs::write(&token_file, "r3ad-token\n").unwrap();
    let world = {
        let w = world;
        let host = w.host();
        w.push("org/api", "v1.0.0").await;
        let mut config = w.base_config(&["dev"]);
        config.push_str(&format!(
            "\n[ui]\nread_token = \"file:{}\"\n\n[images.api]\nimage = \"{host}/org/api\"\n[[images.api.targets]]\nkind = \"helm\"\nfile = \"{DEV}\"\ntag = \"image.tag\"\n",
            token_file.display()
        ));
        w.write_config(&config);
        w
    };
    let daemon = world.start();
    daemon.wait_http().await;
    let url = base(&daemon);
    let control = control_token(&world);
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut r = http.get(format!("{url}{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    // (path, token, status)
    let reads: &[(&str, Option<&str>, u16)] = &[
        ("/", None, 401),
        ("/api/v1/status", None, 401),
        ("/api/v1/status", Some("wrong"), 401),
        ("/api/v1/status", Some("r3ad-token"), 200),
        ("/api/v1/status", Some(&control), 200),
        ("/image/api", Some("r3ad-token"), 200),
        ("/api/v1/images/api", Some("r3ad-token"), 200),
        ("/api/v1/images/nope", Some("r3ad-token"), 404),
    ];
    for (path, token, want) in reads {
        let got = get(path, *token).await.unwrap().status().as_u16();
        assert_eq!(got, *want, "GET {path} with {token:?}");
    }
    let json: serde_json::Value = get("/api/v1/status?env=dev", Some("r3ad-token"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["rows"][0]["image"], "api", "{json}");
    assert_eq!(json["rows"][0]["environment"], "dev", "{json}");
    let post = |token: Option<&str>, form: &[(&str, &str)]| {
        let mut r = http.post(format!("{url}/ui/hold")).form(form);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let form = [
        ("image", "api"),
        ("env", "dev"),
        ("for", "1h"),
        ("by", "ci-bot"),
    ];
    // (token, status)
    let acts: &[(Option<&str>, u16)] =
        &[(None, 401), (Some("r3ad-token"), 403), (Some("wrong"), 401)];
    for (token, want) in acts {
        let got = post(*token, &form).await.unwrap().status().as_u16();
        assert_eq!(got, *want, "POST /ui/hold with {token:?}");
    }
    assert!(!status(&world).contains("held by hand"));
    let done = post(Some(&control), &form).await.unwrap();
    assert_eq!(done.status().as_u16(), 200);
    assert!(status(&world).contains("held by hand by ci-bot"));
    // Bad input is refused with why, and changes nothing.
    let bad: &[&[(&str, &str)]] = &[
        &[("image", "nope"), ("env", "dev")],
        &[("image", "api"), ("env", "staging")],
        &[("image", "api"), ("env", "dev"), ("for", "soon")],
        &[
            ("image", "api"),
            ("env", "dev"),
            ("until", "2001-01-01T00:00:00Z"),
        ],
    ];
    for form in bad {
        let r = post(Some(&control), form).await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{form:?}");
        assert!(r.text().await.unwrap().contains("error"));
    }
    // A form body larger than any the page posts is refused unread.
    let big = "x".repeat(64 * 1024);
    let r = post(Some(&control), &[("image", "api"), ("reason", &big)])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
}

/// Without `[ui]`, there is no page: the listener says where to look instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ui_there_is_no_page() {
    needs!(Registry, Lighttpd);
    let world = world("").await;
    let daemon = world.start();
    daemon.wait_http().await;
    let (code, body) = daemon.get("/").await;
    assert_eq!(code, 404);
    assert!(body.contains("enable it with a [ui] section"), "{body}");
    let (code, _) = daemon.get("/api/v1/status").await;
    assert_eq!(code, 404);
}
