//! The scenarios of the article the product was conceived from, end to end with the real
//! binary, the real registry and git over http with basic auth: a multi-container Deployment
//! with one alias and strategy per image (semver, semver, digest), the kustomization that gains
//! an `images:` list, Helm values at `image.repository` + `image.tag`, and regex filtering of
//! noisy tags.

mod harness;

use harness::world::World;

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  template:
    spec:
      initContainers:
        - name: migrator
          image: REGISTRY/org/migrator:latest
      containers:
        - name: api
          image: REGISTRY/org/api:v2.0.0
        - name: worker
          image: REGISTRY/org/worker:v1.0.0   # the queue worker
";

const KUSTOMIZATION: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- deployment.yaml
- service.yaml
";

const VALUES: &str = "\
image:
  repository: REGISTRY/org/chart-api
  tag: v1.0.0
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_scenarios_end_to_end() {
    needs!(Registry, Lighttpd);
    let world = World::new(
        &[
            ("apps/app/deployment.yaml", DEPLOYMENT),
            ("apps/api-service/kustomization.yaml", KUSTOMIZATION),
            ("charts/api/values.yaml", VALUES),
        ],
        &["deploy/prod"],
    )
    .await;
    for (repo, tags) in [
        ("org/api", &["v2.0.0", "v2.1.0", "v3.0.0"][..]),
        (
            "org/worker",
            &["v1.0.0", "v1.4.0", "v2.0.0", "dev-abc1234"][..],
        ),
        ("org/migrator", &["latest"][..]),
        (
            "org/api-service",
            &["v1.4.0", "v1.5.0", "v1.6.0-rc.1", "dev-abc1234"][..],
        ),
        ("org/chart-api", &["v1.0.0", "v1.1.0", "v1.2.0-beta.1"][..]),
    ] {
        for tag in tags {
            world.push(repo, tag).await;
        }
    }
    let host = world.host();
    let config = format!(
        r#"{base}
# Multi-container: each image its own alias and strategy.
[images.api]
image = "{host}/org/api"
constraint = ">=2.0.0 <3.0.0"
[[images.api.targets]]
kind = "manifest"
file = "apps/app/deployment.yaml"
container = "api"

[images.worker]
image = "{host}/org/worker"
constraint = ">=1.0.0 <2.0.0"
# Only v1.2.3 and v1.2.3-rc.1 shapes; dev builds never.
allow_tags = ["regexp:^v[0-9]+\\.[0-9]+\\.[0-9]+(-rc\\.[0-9]+)?$"]
[[images.worker.targets]]
kind = "manifest"
file = "apps/app/deployment.yaml"
container = "worker"

[images.migrator]
image = "{host}/org/migrator:latest"
strategy = "digest"
[[images.migrator.targets]]
kind = "manifest"
file = "apps/app/deployment.yaml"
container = "migrator"

# Kustomize: the images list is added.
[images.api-service]
image = "{host}/org/api-service"
constraint = ">=1.0.0 <2.0.0"
ignore_tags = ["regexp:(-alpha|-beta|-rc)"]
[[images.api-service.targets]]
kind = "kustomization"
file = "apps/api-service/kustomization.yaml"
name = "{host}/org/api-service"

# Helm values at image.repository and image.tag.
[images.chart-api]
image = "{host}/org/chart-api"
[[images.chart-api.targets]]
kind = "helm"
file = "charts/api/values.yaml"
repository = "image.repository"
tag = "image.tag"
"#,
        base = world.base_config(&["prod"])
    );
    world.write_config(&config);
    let check = std::process::Command::new(harness::world::BIN)
        .args(["check", "--config"])
        .arg(world.config_path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let out = world.run(&["once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One commit carries every image of the branch.
    let subjects = world.git.log("manifests", "deploy/prod", "%s");
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    let body = world.git.log("manifests", "deploy/prod", "%B").join("\n");
    for line in [
        "api: HOST/org/api v2.0.0 -> v2.1.0",
        "api-service: HOST/org/api-service (none) -> v1.5.0",
        "chart-api: HOST/org/chart-api v1.0.0 -> v1.1.0",
        "worker: HOST/org/worker v1.0.0 -> v1.4.0",
    ] {
        assert!(
            body.contains(&line.replace("HOST", &host)),
            "{line} in {body}"
        );
    }

    let deployment = world.file_on("deploy/prod", "apps/app/deployment.yaml");
    assert!(
        deployment.contains(&format!("          image: {host}/org/api:v2.1.0\n")),
        "{deployment}"
    );
    assert!(
        deployment.contains(&format!(
            "          image: {host}/org/worker:v1.4.0   # the queue worker"
        )),
        "{deployment}"
    );
    let migrator_line = deployment
        .lines()
        .find(|l| l.contains("org/migrator"))
        .unwrap()
        .to_string();
    assert!(migrator_line.contains(":latest@sha256:"), "{migrator_line}");
    assert_eq!(
        world.file_on("deploy/prod", "apps/api-service/kustomization.yaml"),
        format!(
            "{}images:\n- name: {host}/org/api-service\n  newTag: v1.5.0",
            KUSTOMIZATION
        )
    );
    assert_eq!(
        world.file_on("deploy/prod", "charts/api/values.yaml"),
        VALUES
            .replace("REGISTRY", &host)
            .replace("tag: v1.0.0", "tag: v1.1.0")
            .trim_end()
    );

    // `latest` is pushed again: the digest strategy follows it, and only the migrator changes.
    world.push("org/migrator", "latest").await;
    let out = world.run(&["once"]);
    assert!(out.status.success());
    let after = world.file_on("deploy/prod", "apps/app/deployment.yaml");
    let new_line = after.lines().find(|l| l.contains("org/migrator")).unwrap();
    assert_ne!(new_line, migrator_line);
    assert_eq!(after.replace(new_line, &migrator_line), deployment);
    assert!(
        world.git.log("manifests", "deploy/prod", "%s")[0]
            .starts_with("deploy(prod): migrator latest@sha256:")
    );

    // Previewing a policy as the article suggests, against the same registry.
    let preview = std::process::Command::new(harness::world::BIN)
        .args([
            "test",
            &format!("{host}/org/worker"),
            "--semver-constraint",
            ">=1.0.0",
            "--config",
        ])
        .arg(world.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&preview.stdout);
    assert!(
        text.contains("selected: v2.0.0") && text.contains("dev-abc1234"),
        "{text}"
    );
}
