//! Regressions found by real files nobody here had written: each test is the minimal
//! reproduction of one finding, named after it, and where a hint is offered, the hint is
//! followed and what it writes is checked (a hint is offered only when following it writes
//! the image). The real-chart shapes behind them (online-boutique's `images.repository`
//! prefix, tempo's and loki's null per-component overrides) are corpus cases rendered by real
//! Helm in `tests/corpus.rs`.

mod harness;

use image_updater::config::{ImagePaths, Marker, Target, ValuePath};
use image_updater::writeback::{Desired, edit};

fn path(p: &str) -> ValuePath {
    p.parse().unwrap()
}

fn image(repository: &str, tag: &str) -> Desired {
    Desired {
        repository: repository.into(),
        written: repository.trim_start_matches("docker.io/library/").into(),
        tag: Some(tag.into()),
        digest: None,
        replaces: Vec::new(),
        chart: None,
    }
}

fn helm(tag: &str, registry: Option<&str>) -> Target {
    Target::Helm {
        file: "values.yaml".into(),
        values: ImagePaths::Split {
            tag: path(tag),
            repository: None,
            registry: registry.map(path),
            digest: None,
        },
    }
}

/// The edited text, or the refusal's message.
fn run(target: &Target, source: &str, desired: &Desired) -> Result<String, String> {
    match edit(target, source, desired) {
        Ok(Some(e)) => Ok(e.new_text),
        Ok(None) => Ok(source.to_string()),
        Err(e) => Err(e.message),
    }
}

/// Finding 1: `registry = "global.hub"` with no repository key beside the tag was silently
/// unused, and istio's chart deployed `registry.example.com/mirror/proxyv2` for an update of
/// `docker.io/istio/proxyv2`.
#[test]
fn finding_1_a_configured_registry_without_a_repository_must_lead_to_the_image() {
    let values = "global:\n  hub: registry.example.com/mirror\n  tag: 1.29.6\n";
    let target = helm("global.tag", Some("global.hub"));
    let err = run(&target, values, &image("docker.io/istio/proxyv2", "1.29.7")).unwrap_err();
    assert_eq!(
        err,
        "line 2: `global.hub` is registry.example.com/mirror, under which the chart renders its own name for the image (registry.example.com/mirror/…), not docker.io/istio/proxyv2: nothing written. If that registry serves the image, name it there (image = \"registry.example.com/mirror/proxyv2\"); otherwise point `registry` at the key that holds the image's registry"
    );
    // The hint, followed: the image is the mirror's, and the tag is written.
    let written = run(
        &target,
        values,
        &image("registry.example.com/mirror/proxyv2", "1.29.7"),
    )
    .unwrap();
    assert_eq!(
        written,
        "global:\n  hub: registry.example.com/mirror\n  tag: 1.29.7\n"
    );
    // A hub the image lives under is fine, in any spelling of Docker Hub.
    for hub in ["docker.io/istio", "index.docker.io/istio/"] {
        let values = format!("global:\n  hub: {hub}\n  tag: 1.29.6\n");
        let written = run(
            &target,
            &values,
            &image("docker.io/istio/proxyv2", "1.29.7"),
        )
        .unwrap();
        assert!(written.contains("tag: 1.29.7"), "{hub}: {written}");
    }
    // A configured path that is not in the file is said, not skipped.
    let err = run(
        &target,
        "global:\n  tag: 1.29.6\n",
        &image("docker.io/istio/proxyv2", "1.29.7"),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "`global.hub`, which the target names as the image's registry, is not in the file: nothing written, since the chart would render its own default registry there. Add `global.hub` with the image's registry, or drop `registry` from the target"
    );
}

/// Finding 2, online-boutique's shape: `images.repository` is a prefix the chart completes
/// with each service's name. The old hint (`replaces = [prefix]`) wrote the frontend's full
/// name there and broke all eleven services.
#[test]
fn finding_2_a_repository_prefix_gets_no_replaces_hint() {
    let values = "images:\n  repository: us-docker.pkg.dev/org/demo\n  tag: \"\"\n";
    let err = run(
        &helm("images.tag", None),
        values,
        &image("us-docker.pkg.dev/org/demo/frontend", "v0.10.7"),
    )
    .unwrap_err();
    assert!(
        err.starts_with(
            "line 2: `images.repository` is us-docker.pkg.dev/org/demo, a prefix of us-docker.pkg.dev/org/demo/frontend rather than its repository"
        ),
        "{err}"
    );
    assert!(!err.contains("replaces"), "no replaces hint: {err}");
}

const MARKED: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
images:
  - name: ghcr.io/org/app
    newTag: main-eb4d2f96-1677468420 # {\"$imagepolicy\": \"flux-system:app\"}
";

/// Finding 2, Flux's shape: a full-reference marker on a tag field. Following the old hint
/// (`replaces`) committed `newTag: ghcr.io/org/app:main-…`, which kustomize renders as
/// `ghcr.io/org/app:ghcr.io/org/app:main-…`. The hint now is the marker's `:tag` form, and
/// following it renders the image (checked with real kustomize).
#[test]
fn finding_2_a_reference_marker_on_a_tag_field_points_to_the_tag_form() {
    needs!(Kubectl);
    let marker = |name: &str| Target::Marker {
        file: "kustomization.yaml".into(),
        marker: Marker {
            name: name.into(),
            flux: true,
        },
    };
    let desired = image("ghcr.io/org/app", "main-1a2b3c4d-1677470000");
    let err = run(&marker("flux-system:app"), MARKED, &desired).unwrap_err();
    assert_eq!(
        err,
        "line 7: the value marked `# {\"$imagepolicy\": \"flux-system:app\"}` is main-eb4d2f96-1677468420, on a key that holds a tag, but the marker asks for the whole image reference: nothing written. Mark it `# {\"$imagepolicy\": \"flux-system:app:tag\"}` to keep the tag there"
    );
    let followed = MARKED.replace("flux-system:app\"", "flux-system:app:tag\"");
    let written = run(&marker("flux-system:app"), &followed, &desired).unwrap();
    assert!(
        written.contains("newTag: main-1a2b3c4d-1677470000 # {"),
        "{written}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = harness::kustomize::stub_tree(tmp.path(), &written, "ghcr.io/org/app:base");
    let rendered = harness::kustomize::build(&dir).unwrap();
    assert_eq!(
        harness::kustomize::images(&rendered),
        ["ghcr.io/org/app:main-1a2b3c4d-1677470000"]
    );
}

/// Finding 3: an empty or null repository beside the tag (traefik's defaults, loki's and
/// tempo's per-component overrides) was read as an image named "" or `null`. The chart falls
/// back to its own default there; only the tag is written.
#[test]
fn finding_3_empty_and_null_repositories_are_the_charts_default() {
    let traefik = "image:\n  registry:\n  repository:\n  tag: v3.7.11\n";
    let written = run(
        &helm("image.tag", None),
        traefik,
        &image("docker.io/library/traefik", "v3.7.12"),
    )
    .unwrap();
    assert_eq!(
        written,
        "image:\n  registry:\n  repository:\n  tag: v3.7.12\n"
    );
    let loki = "write:\n  image:\n    registry: null\n    repository: null\n    tag: null\n";
    let written = run(
        &helm("write.image.tag", None),
        loki,
        &image("docker.io/grafana/loki", "3.5.1"),
    )
    .unwrap();
    assert_eq!(
        written,
        "write:\n  image:\n    registry: null\n    repository: null\n    tag: 3.5.1\n"
    );
}

const ANCHORED: &str = "\
variables:
  GOFLAGS: -mod=mod
build:
  image: &golangImage golang:1.26.7-trixie
  script: [go build ./...]
test:
  image: *golangImage
lint:
  image: *golangImage
vet:
  image: *golangImage
release:
  image: *golangImage
docs:
  image: *golangImage
";

/// Finding 4: a YAML anchor at the target (`image: &golangImage golang:…`, aliased by five
/// jobs) was refused. It is written when every alias stands under the same key; an alias
/// elsewhere is named in the refusal; an alias at the target says where the anchor is.
#[test]
fn finding_4_an_anchored_image_shared_by_five_jobs_is_written_once() {
    let target = Target::Yaml {
        file: "ci.yaml".into(),
        values: ImagePaths::Combined {
            image: path("build.image"),
        },
        documents: Vec::new(),
    };
    let golang = image("docker.io/library/golang", "1.26.8-trixie");
    let written = run(&target, ANCHORED, &golang).unwrap();
    assert_eq!(
        written,
        ANCHORED.replace(
            "&golangImage golang:1.26.7-trixie",
            "&golangImage golang:1.26.8-trixie"
        )
    );
    // An alias under another key would change unasked: refused, naming it.
    let stray = format!("{ANCHORED}env:\n  GO_IMAGE: *golangImage\n");
    let err = run(&target, &stray, &golang).unwrap_err();
    assert!(
        err.contains("line 17 (under `GO_IMAGE`)") && err.contains("nothing is written"),
        "{err}"
    );
    // The alias itself as the target: the anchor's line is named.
    let at_alias = Target::Yaml {
        file: "ci.yaml".into(),
        values: ImagePaths::Combined {
            image: path("test.image"),
        },
        documents: Vec::new(),
    };
    let err = run(&at_alias, ANCHORED, &golang).unwrap_err();
    assert!(
        err.starts_with("line 7: `test.image` is an alias (*) of the value anchored on line 4"),
        "{err}"
    );
}

const JOBS: &str = "\
apiVersion: v1
kind: List
items:
  - apiVersion: batch/v1
    kind: Job
    metadata: {name: build}
    spec:
      template:
        spec:
          containers:
            - name: go
              image: &go golang:1.26.7-trixie
  - apiVersion: batch/v1
    kind: Job
    metadata: {name: test}
    spec:
      template:
        spec:
          containers:
            - name: go
              image: *go
";

/// Findings 4 and 5 in a manifest: a `kind: List` of Jobs is read item by item (it was refused
/// without naming the kind), and the anchored image moves every aliased container with it.
#[test]
fn finding_5_a_list_of_jobs_with_an_anchored_image() {
    let target = Target::Manifest {
        file: "jobs.yaml".into(),
        container: None,
    };
    let written = run(
        &target,
        JOBS,
        &image("docker.io/library/golang", "1.26.8-trixie"),
    )
    .unwrap();
    assert_eq!(
        written,
        JOBS.replace("&go golang:1.26.7-trixie", "&go golang:1.26.8-trixie")
    );
    // An aliased container whose anchor no container holds keeps the old image: refused.
    let elsewhere = JOBS
        .replace("image: &go golang:1.26.7-trixie", "image: busybox:1.36")
        .replace(
            "kind: List\n",
            "kind: List\nx-go: &go golang:1.26.7-trixie\n",
        );
    let err = run(
        &target,
        &elsewhere,
        &image("docker.io/library/golang", "1.26.8-trixie"),
    )
    .unwrap_err();
    assert!(
        err.contains("is an alias (*) of the value anchored on line 3"),
        "{err}"
    );
}

/// Finding 5: a `yaml` target without a `documents` filter refused the whole file when another
/// document had the path with another image; now, as with manifests, that document is left.
#[test]
fn finding_5_a_yaml_target_skips_documents_of_other_images() {
    let two = "\
kind: HelmRelease
spec:
  values:
    image: ghcr.io/org/web:v1.0.0
---
kind: HelmRelease
spec:
  values:
    image: ghcr.io/org/api:v1.0.0
";
    let target = Target::Yaml {
        file: "releases.yaml".into(),
        values: ImagePaths::Combined {
            image: path("spec.values.image"),
        },
        documents: Vec::new(),
    };
    let written = run(&target, two, &image("ghcr.io/org/api", "v1.1.0")).unwrap();
    assert_eq!(
        written,
        two.replace("ghcr.io/org/api:v1.0.0", "ghcr.io/org/api:v1.1.0")
    );
    // No document of the image at all: the refusal names the other image.
    let err = run(&target, two, &image("ghcr.io/org/db", "v1.1.0")).unwrap_err();
    assert!(
        err.contains("runs ghcr.io/org/web:v1.0.0, not ghcr.io/org/db"),
        "{err}"
    );
}

/// Finding 5: the default entry name (the image's) missed an entry that renames to the image
/// and appended a second entry, which never applies. That entry is updated instead.
#[test]
fn finding_5_the_default_kustomization_entry_is_the_one_renamed_to_the_image() {
    let renamed = "images:\n- name: app\n  newName: ghcr.io/org/app\n  newTag: v1.0.0\n";
    let target = Target::Kustomization {
        file: "kustomization.yaml".into(),
        name: "ghcr.io/org/app".into(),
    };
    let written = run(&target, renamed, &image("ghcr.io/org/app", "v1.1.0")).unwrap();
    assert_eq!(written, renamed.replace("v1.0.0", "v1.1.0"));
    // The duplicate-entry message says what kustomize does with two entries.
    let twice =
        "images:\n- name: ghcr.io/org/app\n  newTag: v1\n- name: ghcr.io/org/app\n  newTag: v2\n";
    let err = run(&target, twice, &image("ghcr.io/org/app", "v3")).unwrap_err();
    assert!(
        err.contains("kustomize applies both in turn and the last one wins"),
        "{err}"
    );
}

/// Bitnami's charts render no image whose registry or repository they do not know unless
/// `global.security.allowInsecureImages` is true. A migration into such a file is refused
/// (the corpus case on the published nginx values); with the key true, following the hint, it
/// is written, and real Helm renders exactly the migrated image.
#[test]
fn a_bitnami_migration_needs_the_charts_own_permission() {
    needs!(Helm);
    let chart = harness::helm::corpus().join("bitnami__charts/nginx");
    let values = std::fs::read_to_string(chart.join("values.yaml")).unwrap();
    let allowed = values.replace(
        "    allowInsecureImages: false",
        "    allowInsecureImages: true",
    );
    assert_ne!(allowed, values);
    let target = Target::Helm {
        file: "values.yaml".into(),
        values: ImagePaths::Split {
            tag: path("image.tag"),
            repository: Some(path("image.repository")),
            registry: Some(path("image.registry")),
            digest: None,
        },
    };
    let mut mirror = image("registry.example.com/mirror/nginx", "1.29.2-debian-12-r0");
    mirror.replaces = vec!["docker.io/bitnami/nginx".into()];
    let err = run(&target, &values, &mirror).unwrap_err();
    assert!(
        err.starts_with("line 24: `global.security.allowInsecureImages` is not true"),
        "{err}"
    );
    let written = run(&target, &allowed, &mirror).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, &written).unwrap();
    let rendered = harness::helm::render(&chart, harness::helm::Values::Chart(&file), &[]).unwrap();
    let images: std::collections::BTreeSet<&str> =
        rendered.iter().map(|r| r.image.as_str()).collect();
    assert_eq!(
        images,
        ["registry.example.com/mirror/nginx:1.29.2-debian-12-r0"].into()
    );
}
