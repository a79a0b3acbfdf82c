//! Deploy windows and freezes end to end: the real binary, registry and git server, with the
//! clock the windows are judged at set by the test (`IMAGE_UPDATER_CLOCK`, a file holding an
//! instant), so a candidate is shown waiting, then written at the window's opening, across
//! Berlin's change to summer time on 2027-03-28 (CET, UTC+1, to CEST, UTC+2).

mod harness;

use std::process::Output;

use harness::forge::{FakeForge, Kind, OWNER, REPO, TOKEN};
use harness::git::Person;
use harness::world::World;

const VALUES: &str = "image:\n  repository: REGISTRY/org/api\n  tag: v1.0.0\n";
const FILE: &str = "prod/values.yaml";

/// Runs `args` with the windows' clock at `now`.
fn at(world: &World, now: &str, args: &[&str]) -> Output {
    let clock = world.dir.path().join("clock");
    std::fs::write(&clock, now).unwrap();
    world
        .command(args)
        .env("IMAGE_UPDATER_CLOCK", &clock)
        .output()
        .unwrap()
}

fn once_at(world: &World, now: &str) {
    let out = at(world, now, &["once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn status_at(world: &World, now: &str) -> String {
    String::from_utf8_lossy(&at(world, now, &["status", "--long"]).stdout).into_owned()
}

fn tag(world: &World) -> String {
    world.file_on("deploy/prod", FILE)
}

async fn prod(environment: &str) -> World {
    let world = World::new(&[(FILE, VALUES)], &["deploy/prod"]).await;
    let host = world.host();
    world.push("org/api", "v1.0.0").await;
    world.push("org/api", "v1.1.0").await;
    let mut config = world.base_config(&["prod"]);
    config.push_str(environment);
    config.push_str(&format!(
        r#"
[images.api]
image = "{host}/org/api"
[[images.api.targets]]
kind = "helm"
file = "{FILE}"
tag = "image.tag"
"#
    ));
    world.write_config(&config);
    world
}

/// Outside the window the candidate is decided and shown waiting, with when the window
/// opens; nothing is written. The Monday after the change to summer time, 08:30 UTC is
/// 10:30 in Berlin, after the window, though it was inside it the Monday before; 07:15 UTC is
/// 09:15 CEST, inside, and the first run then writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_waits_for_the_window_and_is_written_when_it_opens() {
    needs!(Registry, Lighttpd);
    let world = prod("windows = [\"Mon 09:00-10:00 Europe/Berlin\"]\n").await;
    once_at(&world, "2027-03-22T10:30:00Z");
    assert!(
        tag(&world).contains("tag: v1.0.0"),
        "written outside the window"
    );
    let status = status_at(&world, "2027-03-22T10:30:00Z");
    assert!(
        status.contains("candidate:  v1.1.0")
            && status
                .contains("waiting:    waiting for the window Mon 2027-03-29 09:00 CEST, in 6d20h"),
        "{status}"
    );
    once_at(&world, "2027-03-29T08:30:00Z");
    assert!(
        tag(&world).contains("tag: v1.0.0"),
        "10:30 CEST is after the window"
    );
    once_at(&world, "2027-03-29T07:15:00Z");
    assert!(
        tag(&world).contains("tag: v1.1.0"),
        "09:15 CEST is inside: {}",
        tag(&world)
    );
}

/// A freeze covers its windows: inside it nothing is written and `status` says until when
/// and why; the first run after it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_stops_writes_inside_a_window() {
    needs!(Registry, Lighttpd);
    let world = prod(
        "windows = [\"Mon-Fri 09:00-17:00 Europe/Berlin\"]\n\
         freeze = [{ from = \"2026-12-21\", to = \"2027-01-04\", reason = \"holidays\", tz = \"Europe/Berlin\" }]\n",
    )
    .await;
    // Tuesday 2026-12-22, 11:00 in Berlin: inside the window, inside the freeze.
    once_at(&world, "2026-12-22T10:00:00Z");
    assert!(tag(&world).contains("tag: v1.0.0"));
    let status = status_at(&world, "2026-12-22T10:00:00Z");
    assert!(
        status.contains(
            "waiting:    frozen until 2027-01-04 (holidays): next window Tue 2027-01-05 09:00 CET"
        ),
        "{status}"
    );
    once_at(&world, "2027-01-05T08:00:00Z");
    assert!(tag(&world).contains("tag: v1.1.0"));
}

/// A freeze file on the branch stops writes, whatever the windows say, and says so; once a
/// person removes it, the next run writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_file_on_the_branch_stops_writes() {
    needs!(Registry, Lighttpd);
    let world = prod("freeze_file = \"FROZEN\"\n").await;
    let person = Person::clone(&world.git.url_with_credentials("manifests"), "deploy/prod");
    person.commit_and_push("FROZEN", "incident 4711\n", "freeze prod");
    let out = world.run(&["once"]);
    assert!(out.status.success());
    assert!(tag(&world).contains("tag: v1.0.0"));
    let status = String::from_utf8_lossy(&world.run(&["status", "--long"]).stdout).into_owned();
    assert!(
        status.contains("frozen: FROZEN is on deploy/prod; writes resume once it is removed"),
        "{status}"
    );
    std::fs::remove_file(person.work.join("FROZEN")).unwrap();
    harness::git::git(&person.work, &["commit", "--quiet", "-am", "thaw prod"]);
    harness::git::git(&person.work, &["push", "--quiet", "origin", "deploy/prod"]);
    assert!(world.run(&["once"]).status.success());
    assert!(tag(&world).contains("tag: v1.1.0"));
}

/// In pull-request mode the request is proposed outside the window (people may review it
/// any time), but `auto_merge` merges it only inside the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_merge_waits_for_the_window() {
    needs!(Registry, Lighttpd);
    let world = World::new(&[(FILE, VALUES)], &["deploy/prod"]).await;
    let forge = FakeForge::start(Kind::Gitea, world.git.path("manifests")).await;
    forge.checks_pass();
    let host = world.host();
    world.push("org/api", "v1.0.0").await;
    world.push("org/api", "v1.1.0").await;
    let token = world.dir.path().join("forge-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut config = world.base_config(&["prod"]);
    config.push_str(&format!(
        r#"write = "pull-request"
windows = ["Mon 09:00-10:00 Europe/Berlin"]

[environments.prod.pull_request]
auto_merge = true

[repositories.manifests.forge]
type = "gitea"
api_url = "{api}"
insecure = true
project = "{OWNER}/{REPO}"
token = "file:{token}"

[images.api]
image = "{host}/org/api"
[[images.api.targets]]
kind = "helm"
file = "{FILE}"
tag = "image.tag"
"#,
        api = forge.api_url(),
        token = token.display(),
    ));
    world.write_config(&config);
    once_at(&world, "2027-03-22T10:30:00Z");
    let ops: Vec<String> = forge.ops_since(0);
    assert!(
        ops.iter().any(|o| o.starts_with("POST pulls")),
        "proposed outside the window: {ops:?}"
    );
    assert!(
        !ops.iter().any(|o| o.ends_with("/merge")),
        "merged outside the window: {ops:?}"
    );
    assert!(tag(&world).contains("tag: v1.0.0"));
    let mark = forge.log().len();
    once_at(&world, "2027-03-29T07:15:00Z");
    let ops = forge.ops_since(mark);
    assert!(
        ops.iter().any(|o| o.ends_with("/merge")),
        "merged inside the window: {ops:?}"
    );
    assert!(tag(&world).contains("tag: v1.1.0"), "{}", tag(&world));
}

/// The time zone database is built into the binary: with the system's database out of reach
/// (`TZDIR` naming an empty directory, as on a root without `tzdata`), a window in
/// `Europe/Berlin` still loads.
#[test]
fn time_zones_are_known_without_the_systems_database() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("zoneinfo");
    std::fs::create_dir(&empty).unwrap();
    let config = dir.path().join("updater.toml");
    std::fs::write(
        &config,
        "[repositories.m]\nurl = \"https://git.example.com/m.git\"\n\n\
         [environments.prod]\nbranch = \"deploy/prod\"\nwindows = [\"Mon-Thu 09:00-16:00 Europe/Berlin\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(harness::world::BIN)
        .args(["check", "--config"])
        .arg(&config)
        .env("TZDIR", &empty)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
