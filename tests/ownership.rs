//! Ownership end to end: the real binary, registry and git server. A target that would write
//! over another image (or leave a stale digest deploying) is refused with the file, the line
//! and what to do, and every other image and environment is still committed.

mod harness;

use harness::world::World;

const OVERLAY: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
images:
  - name: REGISTRY/org/api
    newTag: v1.0.0
";

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
spec:
  template:
    spec:
      containers:
        - name: backend
          image: REGISTRY/org/web:v1.0.0
";

const VALUES: &str = "\
image:
  repository: REGISTRY/org/worker
  tag: v1.0.0
  digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_file_line_and_fix_and_the_rest_is_committed() {
    needs!(Registry, Lighttpd);
    let world = World::new(
        &[
            ("dev/kustomization.yaml", OVERLAY),
            ("dev/deployment.yaml", DEPLOYMENT),
            ("prod/kustomization.yaml", OVERLAY),
            ("prod/values.yaml", VALUES),
        ],
        &["deploy/dev", "deploy/prod"],
    )
    .await;
    for (repo, tag) in [
        ("org/api", "v1.1.0"),
        ("org/other", "v2.0.0"),
        ("org/worker", "v1.1.0"),
    ] {
        world.push(repo, tag).await;
    }
    let host = world.host();
    let mut config = world.base_config(&["dev", "prod"]);
    config.push_str(&format!(
        r#"
[images.api]
image = "{host}/org/api"
[[images.api.targets]]
kind = "kustomization"
file = "{{environment}}/kustomization.yaml"

# The backend container runs org/web: writing org/other's tag there would deploy the wrong
# image.
[images.other]
image = "{host}/org/other"
environments = ["dev"]
[[images.other.targets]]
kind = "manifest"
file = "dev/deployment.yaml"
container = "backend"

# The chart would keep deploying the digest beside the tag.
[images.worker]
image = "{host}/org/worker"
environments = ["prod"]
[[images.worker.targets]]
kind = "helm"
file = "prod/values.yaml"
tag = "image.tag"
"#
    ));
    world.write_config(&config);
    let out = world.run(&["once"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "other (dev): dev/deployment.yaml: line 10: Deployment container backend runs {host}/org/web:v1.0.0, not {host}/org/other: nothing written. If {host}/org/other replaces it, add replaces = [\"{host}/org/web\"] to the image"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("worker (prod): prod/values.yaml: line 4: `image.digest` holds sha256:0000000000000000000000000000000000000000000000000000000000000000, which the chart deploys instead of the tag: add digest = \"image.digest\" to the target"),
        "{stderr}"
    );
    // The refused files are untouched; api is committed in both environments.
    // (The harness reads files with `git show`, which it trims.)
    assert_eq!(
        world.file_on("deploy/dev", "dev/deployment.yaml"),
        DEPLOYMENT.replace("REGISTRY", &host).trim_end()
    );
    assert_eq!(
        world.file_on("deploy/prod", "prod/values.yaml"),
        VALUES.replace("REGISTRY", &host).trim_end()
    );
    for env in ["dev", "prod"] {
        let file = world.file_on(
            &format!("deploy/{env}"),
            &format!("{env}/kustomization.yaml"),
        );
        assert!(file.contains("newTag: v1.1.0"), "{env}: {file}");
        assert!(
            stdout.contains(&format!("deploy/{env}: updated api v1.0.0 -> v1.1.0")),
            "{stdout}"
        );
    }

    // With the digest managed, the worker's tag and digest move together.
    let config = config.replace(
        "tag = \"image.tag\"\n",
        "tag = \"image.tag\"\ndigest = \"image.digest\"\n",
    );
    world.write_config(&config);
    let out = world.run(&["once"]);
    let values = world.file_on("deploy/prod", "prod/values.yaml");
    assert!(values.contains("tag: v1.1.0"), "{values}");
    assert!(values.contains("digest: \"\""), "{values}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("updated worker v1.0.0@sha256:0000000000000000000000000000000000000000000000000000000000000000 -> v1.1.0"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The digest `prod/kustomization.yaml` starts with: no build's.
const OLD_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// A world whose `deploy/prod` deploys `org/api:latest` at [`OLD_DIGEST`], and that file as
/// written (with `REGISTRY` for the registry's host).
async fn pinned_to_latest() -> (World, String) {
    let pinned = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n  - name: REGISTRY/org/api\n    newTag: latest\n    digest: {OLD_DIGEST}\n"
    );
    let world = World::new(
        &[("prod/kustomization.yaml", pinned.as_str())],
        &["deploy/prod"],
    )
    .await;
    (world, pinned)
}

/// The `api` image following `latest` by digest into that file.
fn follows_latest(host: &str) -> String {
    format!(
        r#"
[images.api]
image = "{host}/org/api"
strategy = "digest"
tag = "latest"
[[images.api.targets]]
kind = "kustomization"
file = "prod/kustomization.yaml"
"#
    )
}

/// Two writers on one branch, a digest-following image. At the daemon's first push, a
/// `pre-receive` hook on the server plays the other writer: the registry's `latest` moves to a
/// newer build, and the branch moves to a commit that already records it. The daemon's push
/// loses the race; it must decide again (from the registry as it is now) rather than replay
/// its older digest over the newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_race_is_decided_again_against_the_registry() {
    needs!(Registry, Lighttpd);
    let (world, pinned) = pinned_to_latest().await;
    let host = world.host();
    let decided = world.push("org/api", "latest").await;
    let newer = world.push("org/api", "next").await;
    // The newer build's manifest, for the hook to tag as `latest`.
    let manifest = reqwest::Client::new()
        .get(format!(
            "{}/v2/org/api/manifests/next",
            world.registry.url()
        ))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let manifest_file = world.dir.path().join("newer-manifest.json");
    std::fs::write(&manifest_file, &manifest).unwrap();

    // The other writer's commit, on a side branch of the server's repository.
    let bare = world.git.path("manifests");
    let work = world.dir.path().join("other-writer");
    harness::git::git(
        world.dir.path(),
        &[
            "clone",
            "--quiet",
            "-b",
            "deploy/prod",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    std::fs::write(
        work.join("prod/kustomization.yaml"),
        pinned
            .replace("REGISTRY", &host)
            .replace(OLD_DIGEST, &newer),
    )
    .unwrap();
    harness::git::git(
        &work,
        &[
            "commit",
            "--quiet",
            "-am",
            "the other writer: api latest@newer",
        ],
    );
    harness::git::git(
        &work,
        &["push", "--quiet", "origin", "HEAD:refs/heads/other"],
    );
    let other = harness::git::git(&bare, &["rev-parse", "refs/heads/other"]);

    // Once: retag `latest`, and move the branch under the push (a loose ref, as receive-pack
    // forbids ref updates from a quarantined hook), which then fails its old-value check.
    let mark = world.dir.path().join("hook-ran");
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat >/dev/null\n[ -e '{mark}' ] && exit 0\ntouch '{mark}'\ncurl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @'{manifest}' '{registry}/v2/org/api/manifests/latest' >/dev/null || exit 1\nmkdir -p '{bare}/refs/heads/deploy'\necho {other} > '{bare}/refs/heads/deploy/prod'\nexit 0\n",
            mark = mark.display(),
            manifest = manifest_file.display(),
            registry = world.registry.url(),
            bare = bare.display(),
            other = other.trim(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut config = world.base_config(&["prod"]);
    config.push_str(&follows_latest(&host));
    world.write_config(&config);
    let out = world.run(&["once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(mark.exists(), "the hook never ran:\n{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("written by another writer after") && stderr.contains("deciding again"),
        "{stderr}"
    );
    // The branch keeps the other writer's commit and the newer digest; the digest decided
    // before the race was never written.
    let file = world.file_on("deploy/prod", "prod/kustomization.yaml");
    assert!(file.contains(&newer), "{file}");
    assert!(!file.contains(&decided), "{file}");
    assert_eq!(
        world.git.log("manifests", "deploy/prod", "%s")[0],
        "the other writer: api latest@newer"
    );

    // Nothing is left to do, and plan says so.
    let out = world.run(&["plan"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "nothing would change\n"
    );
}

/// The findings of the unseen-charts round end to end, on the real registry and git server:
/// `plan` and `once` refuse a hub the image is not under (finding 1), a repository prefix
/// (finding 2) and an alias at the target (finding 4), with the line and nothing written;
/// they write the tag beside an empty repository (finding 3) and the anchored image every job
/// aliases (finding 4). `--nocapture` prints what a user reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unseen_chart_findings_through_plan_and_once() {
    needs!(Registry, Lighttpd);
    let istio = "global:\n  hub: registry.example.com/mirror\n  tag: 1.29.6\n";
    let boutique = "images:\n  repository: REGISTRY/org/demo\n  tag: \"\"\n";
    let traefik = "image:\n  registry:\n  repository:\n  tag: v3.7.11\n";
    let jobs = "build:\n  image: &go REGISTRY/org/golang:1.26.7\ntest:\n  image: *go\nlint:\n  image: *go\n";
    let world = World::new(
        &[
            ("istio/values.yaml", istio),
            ("boutique/values.yaml", boutique),
            ("traefik/values.yaml", traefik),
            ("ci/jobs.yaml", jobs),
        ],
        &["deploy/prod"],
    )
    .await;
    for (repo, tag) in [
        ("istio/proxyv2", "1.29.7"),
        ("org/demo/frontend", "v0.10.7"),
        ("org/traefik", "v3.7.12"),
        ("org/golang", "1.26.8"),
    ] {
        world.push(repo, tag).await;
    }
    let host = world.host();
    let mut config = world.base_config(&["prod"]);
    config.push_str(&format!(
        r#"
[images.proxy]
image = "{host}/istio/proxyv2"
[[images.proxy.targets]]
kind = "helm"
file = "istio/values.yaml"
tag = "global.tag"
registry = "global.hub"

[images.frontend]
image = "{host}/org/demo/frontend"
[[images.frontend.targets]]
kind = "helm"
file = "boutique/values.yaml"
tag = "images.tag"

[images.traefik]
image = "{host}/org/traefik"
[[images.traefik.targets]]
kind = "helm"
file = "traefik/values.yaml"
tag = "image.tag"

[images.golang]
image = "{host}/org/golang"
[[images.golang.targets]]
kind = "yaml"
file = "ci/jobs.yaml"
image = "build.image"

[images.golang-test]
image = "{host}/org/golang"
[[images.golang-test.targets]]
kind = "yaml"
file = "ci/jobs.yaml"
image = "test.image"
"#
    ));
    world.write_config(&config);
    let plan = world.run(&["plan"]);
    let once = world.run(&["once"]);
    for (what, out) in [("plan", &plan), ("once", &once)] {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!(
            "== image-updater {what} (exit {:?})\n{stdout}{stderr}",
            out.status.code()
        );
        assert_eq!(out.status.code(), Some(1), "{what}: {stdout}\n{stderr}");
        for refusal in [
            "proxy (prod): istio/values.yaml: line 2: `global.hub` is registry.example.com/mirror, under which the chart renders its own name for the image".to_string(),
            format!("frontend (prod): boutique/values.yaml: line 2: `images.repository` is {host}/org/demo, a prefix of {host}/org/demo/frontend rather than its repository"),
            "golang-test (prod): ci/jobs.yaml: line 4: `test.image` is an alias (*) of the value anchored on line 2".to_string(),
        ] {
            assert!(stderr.contains(&refusal), "{what}: {refusal}\n{stderr}");
        }
        assert!(
            !stderr.contains("replaces"),
            "{what}: no replaces hint\n{stderr}"
        );
    }
    // What once wrote: traefik's tag beside the empty repository, the anchored golang image.
    assert_eq!(
        world.file_on("deploy/prod", "traefik/values.yaml"),
        traefik.replace("v3.7.11", "v3.7.12").trim_end()
    );
    assert_eq!(
        world.file_on("deploy/prod", "ci/jobs.yaml"),
        jobs.replace("REGISTRY", &host)
            .replace("1.26.7", "1.26.8")
            .trim_end()
    );
    // The refused files are untouched.
    assert_eq!(
        world.file_on("deploy/prod", "istio/values.yaml"),
        istio.trim_end()
    );
    assert_eq!(
        world.file_on("deploy/prod", "boutique/values.yaml"),
        boutique.replace("REGISTRY", &host).trim_end()
    );
}

/// Two daemons on one branch without `[cluster]`, both following `latest` by digest, one of
/// them reading the registry 1.5 s late (a slow link: a proxy that holds each answer back).
/// `latest` moves a dozen times while both run. Whatever each writes, the branch's history
/// never goes back to an older build: the late daemon's decision, made before the other
/// daemon's newer digest reached the branch, is decided again rather than written over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_without_a_cluster_never_write_an_older_digest() {
    needs!(Registry, Lighttpd);
    let (world, _) = pinned_to_latest().await;
    let host = world.host();
    let mut pushed = vec![world.push("org/api", "latest").await];
    let late = harness::counting::Counting::start_late(
        world.registry.url(),
        std::time::Duration::from_millis(1500),
    )
    .await;
    let prompt = format!("{}{}", world.base_config(&["prod"]), follows_latest(&host));
    let slow = prompt.replace(
        &format!("api_url = \"http://{host}\""),
        &format!("api_url = \"{}\"", late.url()),
    );
    assert_ne!(prompt, slow);
    let (prompt_file, slow_file) = (
        world.dir.path().join("prompt.toml"),
        world.dir.path().join("slow.toml"),
    );
    std::fs::write(&prompt_file, &prompt).unwrap();
    std::fs::write(&slow_file, &slow).unwrap();
    let a = world.start_replica_with("prompt", &prompt_file);
    let b = world.start_replica_with("slow", &slow_file);
    for _ in 0..12 {
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
        pushed.push(world.push("org/api", "latest").await);
    }
    // Both settle on the last build.
    let last = pushed.last().unwrap().clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !world
        .file_on("deploy/prod", "prod/kustomization.yaml")
        .contains(&last)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the last build never reached the branch:\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    drop((a, b));

    // The builds the branch held, oldest commit first, as positions in the push order.
    let commits = world.git.log("manifests", "deploy/prod", "%H");
    let held: Vec<usize> = commits
        .iter()
        .rev()
        .filter_map(|commit| {
            let file = world.file_on(commit, "prod/kustomization.yaml");
            pushed.iter().position(|d| file.contains(d.as_str()))
        })
        .collect();
    eprintln!(
        "{} pushes of latest; the branch held builds {held:?}",
        pushed.len()
    );
    assert!(held.len() >= 2, "{held:?}");
    assert!(
        held.windows(2).all(|w| w[0] <= w[1]),
        "an older build was written over a newer one: {held:?}"
    );
    assert_eq!(held.last(), Some(&(pushed.len() - 1)));
}
