//! Chart sources end to end: the real binary, the CNCF registry holding charts that real Helm
//! packaged and pushed, a chart repository whose `index.yaml` Helm generated, served by
//! lighttpd, and the real git server. What is checked is what the files say afterwards and
//! what the servers were asked (lighttpd's access log), not what the engine meant to do.

mod harness;

use harness::charts::{ChartRepo, push_chart};
use harness::git::Person;
use harness::world::World;

/// Flux's own `HelmRelease` shape (the Helm controller's guide), with the `HelmRepository` it
/// names in the same file.
fn helm_release(url: &str) -> String {
    format!(
        "\
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: podinfo
  namespace: flux-system
spec:
  interval: 5m
  url: {url}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: default
spec:
  interval: 10m
  chart:
    spec:
      chart: podinfo
      version: \"6.9.0\" # pinned by image-updater
      sourceRef:
        kind: HelmRepository
        name: podinfo
        namespace: flux-system
  values:
    replicaCount: 2
"
    )
}

/// A chart that depends on podinfo from the registry, as `helm create` lays one out.
fn chart_yaml(host: &str) -> String {
    format!(
        "\
apiVersion: v2
name: shop
version: 0.1.0
dependencies:
  - name: podinfo
    version: 6.9.0
    repository: oci://{host}/charts
  - name: redis
    version: 19.0.0
    repository: https://charts.bitnami.com/bitnami
"
    )
}

/// What `helm dependency update` leaves beside the chart; only Helm can rebuild it.
const LOCK: &str = "\
dependencies:
- name: podinfo
  repository: oci://REGISTRY/charts
  version: 6.9.0
digest: sha256:4f6a4d6f5ad1b5d46b0a7b1dfc8a5b0f9a6e5e2c1d1b0f0e6f1c2d3e4f5a6b7c
generated: \"2026-11-30T10:00:00Z\"
";

fn podinfo() -> std::path::PathBuf {
    harness::shared::dir().join("chart-corpus/stefanprodan__podinfo/podinfo")
}

fn config(world: &World, repo_url: &str) -> String {
    let host = world.host();
    let mut config = world.base_config(&["dev"]);
    config.push_str(&format!(
        r#"
[charts.podinfo-oci]
chart = "oci://{host}/charts/podinfo"
[[charts.podinfo-oci.targets]]
kind = "chart-dependency"
file = "dev/shop/Chart.yaml"

[charts.podinfo]
repository = "{repo_url}"
name = "podinfo"
constraint = "~6"
[[charts.podinfo.targets]]
kind = "helmrelease"
file = "dev/podinfo.yaml"
"#
    ));
    config
}

/// One `once` writes both charts' versions, each where its files name it, byte for byte; the
/// version from the registry is read back from its tag (`+` pushed as `_`); the other
/// dependency of the chart (another repository) is untouched. A second `once` finds nothing
/// to do, and asks the chart repository with the validators of the first: a 304.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_writes_chart_versions_from_a_registry_and_a_repository() {
    needs!(Registry, Lighttpd, Helm);
    let repo = ChartRepo::start(None);
    for version in ["6.9.0", "6.9.1", "7.0.0"] {
        repo.publish(&podinfo(), version);
    }
    let world = World::new(
        &[
            ("dev/podinfo.yaml", &helm_release(&repo.url())),
            ("dev/shop/Chart.yaml", &chart_yaml("REGISTRY")),
            ("dev/shop/Chart.lock", LOCK),
        ],
        &["deploy/dev"],
    )
    .await;
    for version in ["6.9.0", "6.10.0+build.1"] {
        push_chart(&podinfo(), version, &world.host(), "charts");
    }
    let host = world.host();
    world.write_config(&config(&world, &repo.url()));
    // `plan` shows what `once` will write, per chart, before anything is committed.
    let plan = world.run(&["plan"]);
    let planned = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{planned}");
    for line in [
        "-      version: \"6.9.0\" # pinned by image-updater",
        "+      version: \"6.9.1\" # pinned by image-updater",
        "-    version: 6.9.0",
        "+    version: 6.10.0+build.1",
    ] {
        assert!(planned.contains(line), "{line}: {planned}");
    }
    let out = world.run(&["once"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        world.file_on("deploy/dev", "dev/podinfo.yaml"),
        helm_release(&repo.url())
            .replace("\"6.9.0\" # pinned", "\"6.9.1\" # pinned")
            .trim_end()
    );
    assert_eq!(
        world.file_on("deploy/dev", "dev/shop/Chart.yaml"),
        chart_yaml(&host)
            .replace("    version: 6.9.0\n", "    version: 6.10.0+build.1\n")
            .trim_end()
    );
    let log = world.git.log("manifests", "deploy/dev", "%B").join("\n");
    assert!(
        log.contains(&format!(
            "podinfo: chart podinfo from {} 6.9.0 -> 6.9.1",
            repo.url()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "podinfo-oci: chart podinfo from oci://{host}/charts 6.9.0 -> 6.10.0+build.1\n  \
             dev/shop/Chart.lock still locks the old version: run `helm dependency update dev/shop` and commit it"
        )),
        "{log}"
    );
    assert_eq!(
        world.file_on("deploy/dev", "dev/shop/Chart.lock"),
        LOCK.replace("REGISTRY", &host).trim_end()
    );
    let status = world.run(&["status"]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("podinfo-oci") && shown.contains("6.10.0+build.1"),
        "{shown}"
    );

    // A person takes the repository's chart back to 6.9.0: the next run leaves it there, as
    // it leaves an image's revert.
    let person = Person::clone(&world.git.url_with_credentials("manifests"), "deploy/dev");
    let reverted = helm_release(&repo.url());
    person.commit_and_push("dev/podinfo.yaml", &reverted, "podinfo back to 6.9.0");
    let again = world.run(&["once"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        world.file_on("deploy/dev", "dev/podinfo.yaml"),
        reverted.trim_end(),
        "the revert stands"
    );
    let status = world.run(&["status", "--long"]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(shown.contains("a person changed it back"), "{shown}");
    // `plan` and each `once` are a new process: one full fetch each (a daemon's later polls
    // are 304s).
    assert_eq!(repo.statuses("/index.yaml", 3), [200, 200, 200]);
}

/// The daemon polls an unchanged chart repository with the validators of its last answer: one
/// request per poll, each a 304 after the first, counted at the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_repository_costs_one_304_per_poll() {
    needs!(Registry, Lighttpd, Helm);
    let repo = ChartRepo::start(None);
    repo.publish(&podinfo(), "6.9.0");
    let world = World::new(
        &[
            ("dev/podinfo.yaml", &helm_release(&repo.url())),
            ("dev/shop/Chart.yaml", &chart_yaml("127.0.0.1:1")),
        ],
        &["deploy/dev"],
    )
    .await;
    let mut config = world.base_config(&["dev"]);
    config.push_str(&format!(
        r#"
[charts.podinfo]
repository = "{}"
name = "podinfo"
interval = "1s"
[[charts.podinfo.targets]]
kind = "helmrelease"
file = "dev/podinfo.yaml"
"#,
        repo.url()
    ));
    world.write_config(&config);
    let daemon = world.start();
    daemon
        .wait_metric("image_updater_images_checked_total", 4.0)
        .await;
    let counted = daemon
        .metric(&format!(
            "image_updater_chart_repository_requests_total{{repository=\"{}\",status=\"304\"}}",
            repo.url()
        ))
        .await;
    let statuses = repo.statuses("/index.yaml", 4);
    assert!(statuses.len() >= 4, "{statuses:?}");
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(
        statuses[1..].iter().all(|s| *s == 304),
        "every later poll is a 304: {statuses:?}"
    );
    assert!(counted >= 3.0, "the metrics count the 304s too: {counted}");
}

/// A chart repository whose index is larger than the limit is refused, saying so and how to
/// raise it; the image and the other chart in the same config are still written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_index_is_refused_and_other_sources_keep_working() {
    needs!(Registry, Lighttpd, Helm);
    let huge = ChartRepo::start(None);
    huge.publish(&podinfo(), "6.9.1");
    {
        // Helm's index, then 50 MB of other charts' entries after it.
        use std::io::Write;
        let mut index = std::fs::OpenOptions::new()
            .append(true)
            .open(huge.root.join("index.yaml"))
            .unwrap();
        let filler = "  - name: filler\n    version: 1.0.0\n    urls: [filler-1.0.0.tgz]\n";
        let mut text = String::from("# padding\n");
        while text.len() < 50 << 20 {
            text.push_str(filler);
        }
        index.write_all(text.as_bytes()).unwrap();
    }
    let world = World::new(
        &[
            ("dev/podinfo.yaml", &helm_release(&huge.url())),
            ("dev/shop/Chart.yaml", &chart_yaml("127.0.0.1:1")),
            (
                "dev/values.yaml",
                "image:\n  repository: REGISTRY/org/api\n  tag: v1.0.0\n",
            ),
        ],
        &["deploy/dev"],
    )
    .await;
    let host = world.host();
    world.push("org/api", "v1.1.0").await;
    let mut config = world.base_config(&["dev"]);
    config.push_str(&format!(
        r#"
[charts.podinfo]
repository = "{}"
name = "podinfo"
[[charts.podinfo.targets]]
kind = "helmrelease"
file = "dev/podinfo.yaml"

[images.api]
image = "{host}/org/api"
[[images.api.targets]]
kind = "helm"
file = "dev/values.yaml"
tag = "image.tag"
"#,
        huge.url()
    ));
    world.write_config(&config);
    let out = world.run(&["once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "chart repository {}: index.yaml is larger than 33554432 bytes; raise the repository's max_index_size",
            huge.url()
        )),
        "{stderr}"
    );
    assert!(
        world
            .file_on("deploy/dev", "dev/values.yaml")
            .contains("tag: v1.1.0"),
        "the image is written whatever the chart repository does"
    );
    assert!(
        world
            .file_on("deploy/dev", "dev/podinfo.yaml")
            .contains("\"6.9.0\""),
        "nothing written for the refused chart"
    );
}

/// The digest `tag` of `repository` names in the world's registry, as the registry says it.
async fn digest_of(world: &World, repository: &str, tag: &str) -> String {
    let response = reqwest::Client::new()
        .head(format!(
            "{}/v2/{repository}/manifests/{tag}",
            world.registry.url()
        ))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    response.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string()
}

/// An OCI chart under `verify` is written only at a version whose digest the key signed, as
/// cosign signs a chart (`cosign sign --key` on the chart's digest): the newer, unsigned
/// version waits, and `test` says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_signed_chart_versions_are_written() {
    needs!(Registry, Lighttpd, Helm);
    let world = World::new(
        &[("dev/shop/Chart.yaml", &chart_yaml("REGISTRY"))],
        &["deploy/dev"],
    )
    .await;
    let host = world.host();
    for version in ["6.9.1", "6.10.0"] {
        push_chart(&podinfo(), version, &host, "charts");
    }
    let key = harness::cosign::Key::generate(world.dir.path(), "ours");
    let signed = digest_of(&world, "charts/podinfo", "6.9.1").await;
    harness::cosign::sign(
        &world.registry.url(),
        &host,
        "charts/podinfo",
        &signed,
        &key,
    )
    .await;
    let mut config = world.base_config(&["dev"]);
    config.push_str(&format!(
        r#"
[charts.podinfo]
chart = "oci://{host}/charts/podinfo"
verify = {{ cosign_key = "file:{}" }}
[[charts.podinfo.targets]]
kind = "chart-dependency"
file = "dev/shop/Chart.yaml"
"#,
        key.public.display()
    ));
    world.write_config(&config);
    let out = world.run(&["once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = world.file_on("deploy/dev", "dev/shop/Chart.yaml");
    assert!(file.contains("    version: 6.9.1\n"), "{file}");
    let test = world.run(&["test", "podinfo", "--env", "dev"]);
    let said = String::from_utf8_lossy(&test.stdout);
    assert!(
        said.contains("- 6.10.0  no cosign signature for sha256:"),
        "{said}"
    );
    assert!(
        said.starts_with(&format!("chart:    podinfo from oci://{host}/charts\n")),
        "{said}"
    );
}

/// A chart is promoted between environments as an image is: prod takes what dev was given,
/// not the newest version dev's own constraint keeps out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_versions_are_promoted_from_dev_to_prod() {
    needs!(Registry, Lighttpd, Helm);
    let world = World::new(
        &[
            ("dev/shop/Chart.yaml", &chart_yaml("REGISTRY")),
            ("prod/shop/Chart.yaml", &chart_yaml("REGISTRY")),
        ],
        &["deploy/dev", "deploy/prod"],
    )
    .await;
    let host = world.host();
    push_chart(&podinfo(), "6.9.1", &host, "charts");
    let mut config = world.base_config(&["dev", "prod"]);
    config.push_str(&format!(
        r#"
[charts.podinfo]
chart = "oci://{host}/charts/podinfo"
[charts.podinfo.env.dev]
constraint = "6.9.x"
[charts.podinfo.env.prod]
promote_from = "dev"
[[charts.podinfo.targets]]
kind = "chart-dependency"
file = "{{environment}}/shop/Chart.yaml"
"#
    ));
    world.write_config(&config);
    // A newer version dev's constraint keeps out is not what prod gets either.
    push_chart(&podinfo(), "6.10.0", &host, "charts");
    let out = world.run(&["once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for env in ["dev", "prod"] {
        let file = world.file_on(&format!("deploy/{env}"), &format!("{env}/shop/Chart.yaml"));
        assert!(file.contains("    version: 6.9.1\n"), "{env}: {file}");
    }
}
