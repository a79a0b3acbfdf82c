//! Deploy safety end to end, with the real binary, the real registry and a real git server:
//! reverts respected, pins, holds, minimum age, promotion with soak and digest, no downgrades.

mod harness;

use std::time::Duration;

use harness::git::{Person, git};
use harness::world::World;

const OVERLAY: &str = "\
images:
  - name: REGISTRY/org/api
    newTag: v1.0.0   # managed by image-updater
";

async fn world() -> World {
    let world = World::new(
        &[
            ("staging/kustomization.yaml", OVERLAY),
            ("prod/kustomization.yaml", OVERLAY),
        ],
        &["deploy/staging", "deploy/prod"],
    )
    .await;
    world.push("org/api", "v1.0.0").await;
    world
}

/// The `api` image in `envs`, with `extra` keys at the image level and `env_extra` per env.
fn config(world: &World, envs: &[&str], extra: &str, env_extra: &[(&str, &str)]) -> String {
    let host = world.host();
    let mut text = world.base_config(envs);
    let list: Vec<String> = envs.iter().map(|e| format!("\"{e}\"")).collect();
    text.push_str(&format!(
        r#"
[images.api]
image = "{host}/org/api"
environments = [{list}]
{extra}
[[images.api.targets]]
kind = "kustomization"
file = "{{environment}}/kustomization.yaml"
name = "{host}/org/api"
"#,
        list = list.join(", ")
    ));
    for (env, keys) in env_extra {
        text.push_str(&format!("\n[images.api.env.{env}]\n{keys}\n"));
    }
    text
}

/// `once`, asserting success; returns stdout and stderr together.
fn once(world: &World) -> String {
    let out = world.run(&["once"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

fn status_json(world: &World) -> serde_json::Value {
    let out = world.run(&["status", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(status: &'a serde_json::Value, env: &str) -> &'a serde_json::Value {
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["environment"] == env)
        .unwrap()
}

fn tag_on(world: &World, env: &str) -> String {
    let text = world.file_on(
        &format!("deploy/{env}"),
        &format!("{env}/kustomization.yaml"),
    );
    text.lines()
        .find_map(|l| l.trim().strip_prefix("newTag: "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn commits(world: &World, env: &str) -> usize {
    world
        .git
        .log("manifests", &format!("deploy/{env}"), "%H")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reverted_update_is_held_until_something_newer() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    world.write_config(&config(&world, &["prod"], "", &[]));
    world.push("org/api", "v1.1.0").await;
    once(&world);
    assert_eq!(tag_on(&world, "prod"), "v1.1.0");

    // A person reverts the update on the branch.
    let person = Person::clone(&world.git.url_with_credentials("manifests"), "deploy/prod");
    git(&person.work, &["revert", "--no-edit", "HEAD"]);
    git(&person.work, &["push", "--quiet", "origin", "deploy/prod"]);
    assert_eq!(tag_on(&world, "prod"), "v1.0.0");
    let before = commits(&world, "prod");

    // The next cycles leave the revert alone, and say why.
    let log = once(&world);
    assert!(log.contains("a person changed it back"), "{log}");
    once(&world);
    assert_eq!(commits(&world, "prod"), before);
    assert_eq!(tag_on(&world, "prod"), "v1.0.0");
    let status = status_json(&world);
    let hold = row(&status, "prod")["hold"].as_str().unwrap();
    assert!(hold.starts_with("revert: v1.1.0 held since"), "{hold}");

    // Something newer than the reverted tag is deployed, and the hold goes away.
    world.push("org/api", "v1.2.0").await;
    once(&world);
    assert_eq!(tag_on(&world, "prod"), "v1.2.0");
    assert!(row(&status_json(&world), "prod")["hold"].is_null());

    // A hand edit back counts too; `release` lets the held tag return.
    person.commit_and_push(
        "prod/kustomization.yaml",
        &OVERLAY.replace("REGISTRY", &world.host()),
        "back to v1.0.0 by hand",
    );
    once(&world);
    assert_eq!(tag_on(&world, "prod"), "v1.0.0");
    let out = world.run(&["release", "api", "--env", "prod"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("v1.2.0 may be deployed again"));
    once(&world);
    assert_eq!(tag_on(&world, "prod"), "v1.2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_and_holds_are_respected() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    world.push("org/api", "v1.1.0").await;
    world.write_config(&config(
        &world,
        &["prod"],
        "",
        &[("prod", "pin = \"v1.0.0\"")],
    ));
    once(&world);
    assert_eq!(commits(&world, "prod"), 1, "pinned to what the branch has");
    let status = status_json(&world);
    assert_eq!(
        row(&status, "prod")["hold"],
        "pinned to v1.0.0 in the config"
    );

    world.write_config(&config(
        &world,
        &["prod"],
        "",
        &[("prod", "pin = \"v9.9.9\"")],
    ));
    let out = world.run(&["once"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pinned tag v9.9.9 is not in"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A hold from the command line, then its release.
    world.write_config(&config(&world, &["prod"], "", &[]));
    let out = world.run(&[
        "hold",
        "api",
        "--env",
        "prod",
        "--for",
        "1h",
        "--reason",
        "incident 42",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    once(&world);
    assert_eq!(tag_on(&world, "prod"), "v1.0.0");
    let status = status_json(&world);
    assert!(
        row(&status, "prod")["hold"]
            .as_str()
            .unwrap()
            .contains("incident 42")
    );
    assert!(
        row(&status, "prod")["waiting"]
            .as_str()
            .unwrap()
            .starts_with("held by `image-updater hold` until")
    );
    assert!(
        world
            .run(&["release", "api", "--env", "prod"])
            .status
            .success()
    );
    once(&world);
    assert_eq!(tag_on(&world, "prod"), "v1.1.0");
    // Unknown images and environments are refused.
    assert_eq!(
        world.run(&["hold", "nope", "--env", "prod"]).status.code(),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_younger_than_min_age_waits_then_is_adopted() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    world.write_config(&config(&world, &["prod"], "min_age = \"3s\"", &[]));
    once(&world); // v1.0.0 is now seen.
    world.push("org/api", "v1.1.0").await;
    once(&world);
    assert_eq!(tag_on(&world, "prod"), "v1.0.0");
    let status = status_json(&world);
    let waiting = row(&status, "prod")["waiting"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        waiting.contains(": too young: seen") && waiting.contains("min_age 3s"),
        "{waiting}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    once(&world);
    assert_eq!(tag_on(&world, "prod"), "v1.1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_waits_for_the_soak_and_carries_the_digest() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    world.write_config(&config(
        &world,
        &["staging", "prod"],
        "constraint = \"^1\"",
        &[(
            "prod",
            "promote_from = \"staging\"\nsoak = \"3s\"\npin_digest = true",
        )],
    ));
    let digest = world.push("org/api", "v1.1.0").await;
    once(&world);
    assert_eq!(tag_on(&world, "staging"), "v1.1.0");
    assert_eq!(tag_on(&world, "prod"), "v1.0.0");
    let status = status_json(&world);
    assert!(
        row(&status, "prod")["waiting"]
            .as_str()
            .unwrap()
            .starts_with("soaking: v1.1.0 has been in staging for")
    );

    // Soaked: prod gets exactly what staging ran.
    tokio::time::sleep(Duration::from_secs(3)).await;
    once(&world);
    let prod = world.file_on("deploy/prod", "prod/kustomization.yaml");
    assert!(
        prod.contains("newTag: v1.1.0   # managed by image-updater"),
        "{prod}"
    );
    assert!(
        prod.contains(&format!("digest: {digest}")),
        "the digest staging ran: {prod}"
    );
    // The subject carries the digest shortened, the body in full.
    let short = &digest[..digest.find(':').unwrap() + 13];
    assert!(
        world.git.log("manifests", "deploy/prod", "%s")[0].contains(&format!("api v1.1.0@{short}"))
    );
    assert!(
        world
            .git
            .log("manifests", "deploy/prod", "%b")
            .iter()
            .any(|l| l.contains(&format!("v1.1.0@{digest}")))
    );

    // Staging reverted: nothing more is promoted from it.
    world.push("org/api", "v1.2.0").await;
    once(&world);
    assert_eq!(tag_on(&world, "staging"), "v1.2.0");
    let person = Person::clone(
        &world.git.url_with_credentials("manifests"),
        "deploy/staging",
    );
    git(&person.work, &["revert", "--no-edit", "HEAD"]);
    git(
        &person.work,
        &["push", "--quiet", "origin", "deploy/staging"],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    once(&world);
    assert_eq!(tag_on(&world, "prod"), "v1.1.0");
    let status = status_json(&world);
    let waiting = row(&status, "prod")["waiting"].as_str().unwrap();
    assert!(
        waiting.contains("reverted in staging") || waiting.contains("no longer runs"),
        "{waiting}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_downgrade_unless_allowed() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    world.push("org/api", "v2.0.0").await;
    world.write_config(&config(&world, &["prod"], "constraint = \">=1\"", &[]));
    once(&world);
    assert_eq!(tag_on(&world, "prod"), "v2.0.0");
    // Narrowing the constraint does not roll prod back on its own...
    world.write_config(&config(&world, &["prod"], "constraint = \"^1\"", &[]));
    let log = once(&world);
    assert!(log.contains("ranks below v2.0.0"), "{log}");
    assert_eq!(tag_on(&world, "prod"), "v2.0.0");
    // ...unless the config says so.
    world.write_config(&config(
        &world,
        &["prod"],
        "constraint = \"^1\"\nallow_downgrade = true",
        &[],
    ));
    once(&world);
    assert_eq!(tag_on(&world, "prod"), "v1.0.0");
}
