//! A push event's own word: the pushed tag stands in for listing the tags, and its digest says
//! whether the content is new (then its manifest is fetched by tag); where the event's word
//! cannot stand, the check lists the tags as a poll does. And GitHub's package events are read
//! where GitHub's published description puts the tag and digest.
//!
//! Apart from `tests/events.rs`: these tests make the real registry deliver its own
//! notifications, and running them beside the idle-connection probe test crowds its
//! one-second probes on two cores.

mod harness;

use std::time::Duration;

use harness::webhook::{OVERLAY, api, deliver_signed, pushed_event};
use harness::world::World;

/// Registry requests of each kind the daemon has made that the registry answered (200): tag
/// lists, HEADs, manifest GETs and blob GETs.
async fn requests(daemon: &harness::world::Daemon) -> [f64; 4] {
    let mut counts = [0.0; 4];
    for (i, (kind, method)) in [
        ("tag_list", "GET"),
        ("manifest_head", "HEAD"),
        ("manifest_get", "GET"),
        ("blob_get", "GET"),
    ]
    .iter()
    .enumerate()
    {
        counts[i] = daemon
            .metric(&format!(
                "image_updater_registry_requests_total{{registry=\"local\",kind=\"{kind}\",method=\"{method}\",status=\"200\"}}"
            ))
            .await;
    }
    counts
}

/// Manifest GETs the registry answered 404.
async fn not_found(daemon: &harness::world::Daemon) -> f64 {
    daemon
        .metric("image_updater_registry_requests_total{registry=\"local\",kind=\"manifest_get\",method=\"GET\",status=\"404\"}")
        .await
}

/// Waits until the daemon has started no cycle for two seconds.
async fn settled(daemon: &harness::world::Daemon) {
    let mut last = daemon.metric("image_updater_cycles_total").await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = daemon.metric("image_updater_cycles_total").await;
        if now == last {
            return;
        }
        last = now;
    }
}

/// How many checks a push has triggered so far.
fn reported(daemon: &harness::world::Daemon) -> usize {
    daemon
        .log()
        .matches("checking now: a registry reported a push")
        .count()
}

/// The difference of two request counts, as whole numbers.
fn spent(before: [f64; 4], after: [f64; 4]) -> [i64; 4] {
    std::array::from_fn(|i| (after[i] - before[i]) as i64)
}

/// A push the registry reports itself (distribution's own notification, configured in its
/// `notifications` section: the event's shape, tag and digest are the registry's, not ours;
/// its layer and config pushes and the daemon's own pulls are reported too) is decided
/// without listing the tags: the pushed tag's manifest, fetched by tag (its digest is what the
/// registry serves, not what the event says), and its config are all that is fetched. Where
/// the event's word cannot stand, the check lists the tags as a poll does: a backport below
/// what the branch holds, and a tag the registry does not have. What is written is judged on
/// the git server's branch; the digest reported, against what the registry served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_the_registry_reports_is_decided_without_listing_or_resolving_again() {
    needs!(Registry, Lighttpd);
    let (world, webhooks, port) =
        World::notifying(&[("prod/kustomization.yaml", OVERLAY)], &["deploy/prod"]).await;
    world.push("org/api", "v1.0.0").await;
    // `[ui]` for the daemon's own status rows (the state file is saved every 30 s).
    world.write_config(&format!(
        "{}{webhooks}\n[ui]\n{}",
        world.base_config(&["prod"]),
        api(&world.host())
    ));
    let daemon = world.start();
    daemon.wait_metric("image_updater_cycles_total", 1.0).await;
    // v1.0.0's events, retried by the registry until the daemon listened, are handled first.
    while reported(&daemon) == 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    settled(&daemon).await;

    // (what is pushed, and the tag the branch holds after; the requests it costs: tag lists,
    // HEADs, manifest GETs, blob GETs, answered. Distribution reports a manifest's push a
    // moment before it links the tag, so a GET of the pushed tag may find nothing first and
    // be made again; those are not counted here.)
    let cases = [
        // A new release: its digest's manifest and config, nothing else.
        ("v1.1.0", "v1.1.0", [0, 0, 1, 1]),
        // A backport: the pushed tag does not win, so the tags are listed. What the winner
        // names was learned when it was pushed (tags are immutable by default), and its
        // manifest and config are known.
        ("v1.0.1", "v1.1.0", [1, 0, 0, 0]),
    ];
    let mut digests = Vec::new();
    for (pushed, holds, cost) in cases {
        let (before, checks) = (requests(&daemon).await, reported(&daemon));
        digests.push(world.push("org/api", pushed).await);
        while reported(&daemon) == checks {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        settled(&daemon).await;
        let file = world.file_on("deploy/prod", "prod/kustomization.yaml");
        assert!(
            file.contains(&format!("newTag: {holds}")),
            "{pushed}: the branch has\n{file}\nlog:\n{}",
            daemon.log()
        );
        assert_eq!(
            spent(before, requests(&daemon).await),
            cost,
            "{pushed}: requests (tag lists, HEADs, manifest GETs, blob GETs); log:\n{}",
            daemon.log()
        );
    }

    let url = format!("http://127.0.0.1:{port}/webhook");
    let client = reqwest::Client::new();

    // A mistaken event (signed with the secret: a sender that has it) says v1.2.0 is
    // v1.1.0's digest, known here, beside the registry's own event for it, in either order:
    // what the check reports is the digest the registry serves under the tag.
    let old = digests[0].clone();
    let checks = reported(&daemon);
    let new = world.push("org/api", "v1.2.0").await;
    let mistaken = pushed_event(&world.host(), "org/api", "v1.2.0", &old);
    assert_eq!(deliver_signed(&client, &url, &mistaken).await, 202);
    while reported(&daemon) < checks + 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settled(&daemon).await;
    assert!(
        world
            .file_on("deploy/prod", "prod/kustomization.yaml")
            .contains("newTag: v1.2.0")
    );
    let (_, text) = daemon.get("/api/v1/status").await;
    let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
    let digest = rows["rows"][0]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        digest == new,
        "status reports {digest}, the registry serves {new}: {rows}"
    );

    // An event for a tag the registry does not have: its manifest is not found, so the tags
    // are listed, the tag the branch holds wins again, and nothing is written.
    let (before, missed_before) = (requests(&daemon).await, not_found(&daemon).await);
    let missing = format!("sha256:{}", "0".repeat(64));
    let body = pushed_event(&world.host(), "org/api", "v9.0.0", &missing);
    let checks = reported(&daemon);
    assert_eq!(deliver_signed(&client, &url, &body).await, 202);
    while reported(&daemon) == checks {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settled(&daemon).await;
    let [lists, heads, gets, _] = spent(before, requests(&daemon).await);
    assert_eq!((lists, heads, gets), (1, 0, 0), "log:\n{}", daemon.log());
    // Asked for once, then three times more while the registry might still link it.
    assert_eq!(not_found(&daemon).await - missed_before, 4.0);
    assert!(
        world
            .file_on("deploy/prod", "prod/kustomization.yaml")
            .contains("newTag: v1.2.0")
    );
}

/// The least instance of `schema`: its required properties only, each the least of its
/// kind (the first of an enum, the first of a `oneOf`, an object rather than null).
fn least(schema: &serde_json::Value) -> serde_json::Value {
    use serde_json::{Value, json};
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(first) = schema[key].as_array().and_then(|e| e.first()) {
            return least(first);
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        let mut out = json!({});
        for part in all {
            if let (Value::Object(into), Value::Object(from)) = (&mut out, least(part)) {
                into.extend(from);
            }
        }
        return out;
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds.iter().find(|k| *k != "null").cloned(),
        other => Some(other.clone()),
    };
    match kind.as_ref().and_then(Value::as_str) {
        Some("object") | None if schema["properties"].is_object() || kind.is_none() => {
            let mut out = serde_json::Map::new();
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                out.insert(name.into(), least(&schema["properties"][name]));
            }
            Value::Object(out)
        }
        Some("object") => json!({}),
        Some("string") => json!("x"),
        Some("integer") | Some("number") => json!(1),
        Some("boolean") => json!(false),
        Some("array") => json!([]),
        _ => Value::Null,
    }
}

/// GitHub's package events as GitHub's published description has them (the `x-webhooks` of
/// `@octokit/openapi`): the least instance of each event's schema, with a pushed container's
/// values where the description puts them, is valid against that schema, and is read as the
/// push of that tag with that digest. The digest's place,
/// `package_version.container_metadata.tag.digest`, is the description's, not ours.
#[test]
fn github_package_events_are_read_where_github_describes_them() {
    use image_updater::daemon::webhook::{Pushed, parse};
    let doc = harness::openapi::github();
    let digest = format!("sha256:{}", "ab".repeat(32));
    for (event, key) in [
        ("package-published", "package"),
        ("registry-package-published", "registry_package"),
    ] {
        let schema = &doc["x-webhooks"][event]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        assert!(schema.is_object(), "{event} is not in GitHub's description");
        let tag = &schema["properties"][key]["properties"]["package_version"]["properties"]["container_metadata"]
            ["properties"]["tag"]["properties"];
        assert_eq!(tag["digest"]["type"], "string", "{event}: no tag digest");
        assert_eq!(tag["name"]["type"], "string", "{event}: no tag name");
        let mut body = least(schema);
        let package = &mut body[key];
        package["name"] = "API".into();
        package["package_type"] = "CONTAINER".into();
        package["owner"]["login"] = "Org".into();
        package["package_version"]["container_metadata"] =
            serde_json::json!({ "tag": { "name": "v2", "digest": digest } });
        if let Some(why) = harness::openapi::check(schema, &body, event) {
            panic!("{event}: {why}\n{body:#}");
        }
        assert_eq!(
            parse(body.to_string().as_bytes()).unwrap(),
            [Pushed {
                host: Some("ghcr.io".into()),
                repository: "org/api".into(),
                tag: Some("v2".into()),
                digest: Some(digest.clone()),
            }],
            "{event}"
        );
    }
}
