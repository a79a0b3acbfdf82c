//! Golden tests of the YAML editor on realistic files: comments, quotes, flow style, anchors,
//! multiple documents. The output must equal the golden file byte for byte, and the only lines
//! that differ from the input must be the ones holding the value.

use std::path::Path;

use image_updater::config::{ImagePaths, Target, ValuePath};
use image_updater::writeback::{Desired, edit};

fn golden(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name),
    )
    .unwrap()
}

fn desired(repository: &str, tag: Option<&str>, digest: Option<&str>) -> Desired {
    Desired {
        repository: repository.into(),
        written: repository.trim_start_matches("docker.io/library/").into(),
        tag: tag.map(String::from),
        digest: digest.map(String::from),
        replaces: Vec::new(),
        chart: None,
    }
}

/// Only a tag path, the chart's other image keys read beside it.
fn tag_at(p: &str) -> ImagePaths {
    ImagePaths::Split {
        tag: path(p),
        repository: None,
        registry: None,
        digest: None,
    }
}

fn path(p: &str) -> ValuePath {
    p.parse().unwrap()
}

/// Lines that differ, as (line number, before, after); the files must have the same lines
/// apart from insertions checked by the caller.
fn changed_lines(before: &str, after: &str) -> Vec<(usize, String, String)> {
    before
        .lines()
        .zip(after.lines())
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i + 1, a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn kustomization_entry_keeps_its_quotes_and_comment() {
    let input = golden("kustomization.yaml");
    let target = Target::Kustomization {
        file: "k.yaml".into(),
        name: "ghcr.io/org/api".into(),
    };
    let out = edit(
        &target,
        &input,
        &desired("ghcr.io/org/api", Some("v1.5.0"), None),
    )
    .unwrap()
    .unwrap();
    assert_eq!(out.new_text, golden("kustomization.api.expected.yaml"));
    assert_eq!(out.old, "v1.4.0");
    assert_eq!(
        changed_lines(&input, &out.new_text),
        [(
            12,
            "    newTag: \"v1.4.0\"   # pinned by image-updater".into(),
            "    newTag: \"v1.5.0\"   # pinned by image-updater".into()
        )]
    );
}

#[test]
fn kustomization_gains_an_entry_at_its_indentation() {
    let input = golden("kustomization.yaml");
    let target = Target::Kustomization {
        file: "k.yaml".into(),
        name: "ghcr.io/org/migrator".into(),
    };
    let digest = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let out = edit(
        &target,
        &input,
        &desired("ghcr.io/org/migrator", Some("latest"), Some(digest)),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        out.new_text,
        golden("kustomization.new-entry.expected.yaml")
    );
    assert_eq!(out.old, "(none)");
}

#[test]
fn kustomization_gains_an_images_list_like_the_seed_shows() {
    let input = golden("kustomization-bare.yaml");
    let target = Target::Kustomization {
        file: "k.yaml".into(),
        name: "ghcr.io/org/api-service".into(),
    };
    let out = edit(
        &target,
        &input,
        &desired("ghcr.io/org/api-service", Some("v1.5.0"), None),
    )
    .unwrap()
    .unwrap();
    assert_eq!(out.new_text, golden("kustomization-bare.expected.yaml"));
}

#[test]
fn numeric_looking_tags_are_quoted() {
    let input = golden("kustomization.yaml");
    let target = Target::Kustomization {
        file: "k.yaml".into(),
        name: "ghcr.io/org/worker".into(),
    };
    // The entry renders registry.example.com/worker (its newName): that is the image it runs.
    let out = edit(
        &target,
        &input,
        &desired("registry.example.com/worker", Some("1.11"), None),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        changed_lines(&input, &out.new_text),
        [(15, "    newTag: '1.10'".into(), "    newTag: '1.11'".into())]
    );
    // A plain value that would read as a number gets double quotes.
    let plain = "images:\n- name: app\n  newTag: v1\n";
    let target = Target::Kustomization {
        file: "k.yaml".into(),
        name: "app".into(),
    };
    let out = edit(
        &target,
        plain,
        &desired("docker.io/library/app", Some("1.10"), None),
    )
    .unwrap()
    .unwrap();
    assert_eq!(out.new_text, "images:\n- name: app\n  newTag: \"1.10\"\n");
}

#[test]
fn helm_values_split_and_combined_leave_the_rest_alone() {
    let input = golden("values.yaml");
    let web = Target::Helm {
        file: "values.yaml".into(),
        values: ImagePaths::Split {
            tag: path("image.tag"),
            repository: Some(path("image.repository")),
            registry: None,
            digest: None,
        },
    };
    let step1 = edit(
        &web,
        &input,
        &desired("ghcr.io/org/web", Some("2.1.0"), None),
    )
    .unwrap()
    .unwrap();
    assert_eq!(step1.old, "2.0.1");
    let sidecar = Target::Helm {
        file: "values.yaml".into(),
        values: ImagePaths::Combined {
            image: path("sidecar.image"),
        },
    };
    let step2 = edit(
        &sidecar,
        &step1.new_text,
        &desired("docker.io/library/nginx", Some("1.27.3"), None),
    )
    .unwrap()
    .unwrap();
    assert_eq!(step2.old, "1.27.0@sha256:aaaa");
    assert_eq!(step2.new_text, golden("values.expected.yaml"));
    assert_eq!(changed_lines(&input, &step2.new_text).len(), 2);
}

#[test]
fn manifests_update_every_matching_container_in_every_workload() {
    let input = golden("manifests.yaml");
    let target = Target::Manifest {
        file: "m.yaml".into(),
        container: None,
    };
    let out = edit(
        &target,
        &input,
        &desired("ghcr.io/org/api", Some("v1.5.0"), None),
    )
    .unwrap()
    .unwrap();
    assert_eq!(out.new_text, golden("manifests.expected.yaml"));
    assert_eq!(out.old, "v1.4.0, v1.3.9");
    // Only the named container when one is named.
    let named = Target::Manifest {
        file: "m.yaml".into(),
        container: Some("report".into()),
    };
    let out = edit(
        &named,
        &input,
        &desired("ghcr.io/org/api", Some("v1.5.0"), None),
    )
    .unwrap()
    .unwrap();
    assert_eq!(changed_lines(&input, &out.new_text).len(), 1);
}

#[test]
fn an_edit_that_changes_nothing_is_none() {
    let input = golden("values.yaml");
    let web = Target::Helm {
        file: "values.yaml".into(),
        values: tag_at("image.tag"),
    };
    assert!(
        edit(
            &web,
            &input,
            &desired("ghcr.io/org/web", Some("2.0.1"), None)
        )
        .unwrap()
        .is_none()
    );
}

#[test]
fn anchors_aliases_and_block_scalars_are_refused() {
    let input = golden("values.yaml");
    let through_alias = Target::Helm {
        file: "values.yaml".into(),
        values: tag_at("anchors.copy.tag"),
    };
    let err = edit(
        &through_alias,
        &input,
        &desired("ghcr.io/org/web", Some("x"), None),
    )
    .unwrap_err();
    assert!(
        err.message.contains("no `anchors.copy.tag`") || err.message.contains("alias"),
        "{err}"
    );
    let anchored = "image: &img\n  tag: v1\nother: *img\n";
    let target = Target::Helm {
        file: "v.yaml".into(),
        values: tag_at("image.tag"),
    };
    // The mapping holding the tag is anchored and reused: editing it would change `other` too.
    let err = edit(
        &target,
        anchored,
        &desired("ghcr.io/org/web", Some("v2"), None),
    )
    .unwrap_err();
    assert!(
        err.message.contains("more than the intended value") || err.message.contains("anchor"),
        "{err}"
    );
    let anchored_value = "image:\n  tag: &t v1\nother: *t\n";
    let err = edit(
        &target,
        anchored_value,
        &desired("ghcr.io/org/web", Some("v2"), None),
    )
    .unwrap_err();
    assert!(err.message.contains("anchor"), "{err}");
    let block = "image:\n  tag: |\n    v1\n";
    let err = edit(
        &target,
        block,
        &desired("ghcr.io/org/web", Some("v2"), None),
    )
    .unwrap_err();
    assert!(err.message.contains("block scalar"), "{err}");
}

#[test]
fn missing_paths_and_containers_say_what_to_add() {
    let target = Target::Helm {
        file: "v.yaml".into(),
        values: tag_at("image.tag"),
    };
    let err = edit(
        &target,
        "image:\n  repository: x\n",
        &desired("ghcr.io/org/web", Some("v2"), None),
    )
    .unwrap_err();
    assert!(err.message.contains("no `image.tag`"), "{err}");
    let target = Target::Manifest {
        file: "m.yaml".into(),
        container: None,
    };
    let err = edit(
        &target,
        "kind: Pod\nspec:\n  containers:\n  - name: a\n    image: other:1\n",
        &desired("ghcr.io/org/api", Some("v2"), None),
    )
    .unwrap_err();
    assert!(
        err.message
            .contains("no workload container runs ghcr.io/org/api"),
        "{err}"
    );
    let err = edit(
        &target,
        "a: [unclosed\n",
        &desired("ghcr.io/org/api", Some("v2"), None),
    )
    .unwrap_err();
    assert!(err.message.contains("not valid YAML"), "{err}");
}

#[test]
fn values_inside_flow_collections_are_edited_in_place() {
    let target = Target::Helm {
        file: "v.yaml".into(),
        values: tag_at("image.tag"),
    };
    let src = "image: {repository: ghcr.io/org/web, tag: 'v1', pullPolicy: Always}  # flow\nother: [a, b]\n";
    let out = edit(&target, src, &desired("ghcr.io/org/web", Some("v2"), None))
        .unwrap()
        .unwrap();
    assert_eq!(
        out.new_text,
        "image: {repository: ghcr.io/org/web, tag: 'v2', pullPolicy: Always}  # flow\nother: [a, b]\n"
    );
    let kustomization = Target::Kustomization {
        file: "k.yaml".into(),
        name: "app".into(),
    };
    let src = "images: [{name: app, newTag: \"1.0\"}, {name: other, newTag: x}]\n";
    let out = edit(
        &kustomization,
        src,
        &desired("docker.io/library/app", Some("1.1"), None),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        out.new_text,
        "images: [{name: app, newTag: \"1.1\"}, {name: other, newTag: x}]\n"
    );
}

#[test]
fn other_documents_and_separators_are_untouched() {
    let target = Target::Manifest {
        file: "m.yaml".into(),
        container: None,
    };
    let src = "---\n# first\nkind: ConfigMap\ndata: {image: ghcr.io/org/api:v1}\n---\nkind: Pod\nspec:\n  containers:\n  - name: api\n    image: ghcr.io/org/api:v1\n...\n---\nkind: Service\n";
    let out = edit(&target, src, &desired("ghcr.io/org/api", Some("v2"), None))
        .unwrap()
        .unwrap();
    assert_eq!(
        out.new_text,
        src.replace(
            "    image: ghcr.io/org/api:v1",
            "    image: ghcr.io/org/api:v2"
        )
    );
}

fn api(tag: &str) -> Desired {
    desired("ghcr.io/org/api", Some(tag), None)
}

fn yaml_target(values: image_updater::config::ImagePaths, documents: &[(&str, &str)]) -> Target {
    Target::Yaml {
        file: "f.yaml".into(),
        values,
        documents: documents
            .iter()
            .map(|(p, v)| (p.parse().unwrap(), v.to_string()))
            .collect(),
    }
}

#[test]
fn a_rollout_container_is_chosen_by_name_with_a_list_selector() {
    let src = "\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: api
spec:
  template:
    spec:
      containers:
        - name: sidecar
          image: ghcr.io/org/proxy:v3
        - name: api
          image: ghcr.io/org/api:v1.4.0 # the app
";
    let target = yaml_target(
        ImagePaths::Combined {
            image: path("spec.template.spec.containers[name=api].image"),
        },
        &[("kind", "Rollout")],
    );
    let out = edit(&target, src, &api("v1.5.0")).unwrap().unwrap();
    assert_eq!(
        changed_lines(src, &out.new_text),
        [(
            12,
            "          image: ghcr.io/org/api:v1.4.0 # the app".into(),
            "          image: ghcr.io/org/api:v1.5.0 # the app".into()
        )]
    );
    // The manifest target finds the Rollout's pod template too.
    let manifest = Target::Manifest {
        file: "f.yaml".into(),
        container: Some("api".into()),
    };
    assert_eq!(
        edit(&manifest, src, &api("v1.5.0"))
            .unwrap()
            .unwrap()
            .new_text,
        out.new_text
    );
    // Selecting the sidecar by name is refused: it runs another image.
    let sidecar = yaml_target(
        ImagePaths::Combined {
            image: path("spec.template.spec.containers[name=sidecar].image"),
        },
        &[],
    );
    let err = edit(&sidecar, src, &api("v1.5.0")).unwrap_err();
    assert!(
        err.message.starts_with(
            "line 10: `spec.template.spec.containers[name=sidecar].image` runs ghcr.io/org/proxy:v3"
        ),
        "{err}"
    );
}

#[test]
fn list_indexes_in_both_spellings() {
    let src = "sidecars:\n  - image:\n      repository: ghcr.io/org/api\n      tag: v1.4.0\n";
    for p in ["sidecars[0].image.tag", "sidecars.0.image.tag"] {
        let target = Target::Helm {
            file: "v.yaml".into(),
            values: tag_at(p),
        };
        let out = edit(&target, src, &api("v1.5.0")).unwrap().unwrap();
        assert!(out.new_text.contains("tag: v1.5.0"), "{p}");
    }
}

#[test]
fn markers_ours_and_fluxs() {
    let ours = "\
image: ghcr.io/org/api:v1.4.0 # image-updater: api
other: ghcr.io/org/api:v1.4.0
split:
  repository: ghcr.io/org/api # image-updater: api:name
  tag: v1.4.0                 # image-updater: api:tag
";
    let target = Target::Marker {
        file: "f.yaml".into(),
        marker: image_updater::config::Marker {
            name: "api".into(),
            flux: false,
        },
    };
    let out = edit(&target, ours, &api("v1.5.0")).unwrap().unwrap();
    assert_eq!(
        changed_lines(ours, &out.new_text),
        [
            (
                1,
                "image: ghcr.io/org/api:v1.4.0 # image-updater: api".into(),
                "image: ghcr.io/org/api:v1.5.0 # image-updater: api".into()
            ),
            (
                5,
                "  tag: v1.4.0                 # image-updater: api:tag".into(),
                "  tag: v1.5.0                 # image-updater: api:tag".into()
            ),
        ]
    );
    // A tag-only marker cannot carry a pinned digest.
    let pinned = desired("ghcr.io/org/api", Some("v1.5.0"), Some("sha256:aaaa"));
    let only_tag = "tag: v1.4.0 # image-updater: api:tag\n";
    let err = edit(&target, only_tag, &pinned).unwrap_err();
    assert!(
        err.message
            .contains("mark the digest's value with `:digest` too"),
        "{err}"
    );

    let flux = "\
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: podinfo
          image: ghcr.io/stefanprodan/podinfo:6.14.1 # {\"$imagepolicy\": \"flux-system:podinfo\"}
        - name: cache
          image: ghcr.io/org/api:v1.4.0 # {\"$imagepolicy\": \"flux-system:api\"}
";
    let target = Target::Marker {
        file: "f.yaml".into(),
        marker: image_updater::config::Marker {
            name: "flux-system:api".into(),
            flux: true,
        },
    };
    let out = edit(&target, flux, &api("v1.5.0")).unwrap().unwrap();
    assert_eq!(changed_lines(flux, &out.new_text).len(), 1);
    assert!(
        out.new_text
            .contains("ghcr.io/org/api:v1.5.0 # {\"$imagepolicy\": \"flux-system:api\"}")
    );
    // A marker on another image's value is refused.
    let wrong = Target::Marker {
        file: "f.yaml".into(),
        marker: image_updater::config::Marker {
            name: "flux-system:podinfo".into(),
            flux: true,
        },
    };
    let err = edit(&wrong, flux, &api("v1.5.0")).unwrap_err();
    assert!(err.message.starts_with("line 8: "), "{err}");
    // No marker at all says which form it looked for.
    let err = edit(&target, "image: ghcr.io/org/api:v1\n", &api("v2")).unwrap_err();
    assert!(
        err.message
            .contains("# {\"$imagepolicy\": \"flux-system:api\"}"),
        "{err}"
    );
}

#[test]
fn crlf_files_keep_crlf_in_inserted_lines() {
    let src = "resources:\r\n  - deployment.yaml\r\nimages:\r\n  - name: ghcr.io/org/web\r\n    newTag: v1\r\n";
    let target = Target::Kustomization {
        file: "k.yaml".into(),
        name: "ghcr.io/org/api".into(),
    };
    let out = edit(&target, src, &api("v1.5.0")).unwrap().unwrap();
    assert_eq!(
        out.new_text,
        format!("{src}  - name: ghcr.io/org/api\r\n    newTag: v1.5.0\r\n")
    );
}

#[test]
fn empty_values_and_empty_images_are_filled_like_kustomize() {
    let target = Target::Kustomization {
        file: "k.yaml".into(),
        name: "ghcr.io/org/api".into(),
    };
    for (src, want) in [
        (
            "resources: []\nimages:\n",
            "resources: []\nimages:\n- name: ghcr.io/org/api\n  newTag: v1.5.0\n",
        ),
        (
            "images: []\n",
            "images:\n- name: ghcr.io/org/api\n  newTag: v1.5.0\n",
        ),
        (
            "images: ~ # later\n",
            "images: # later\n- name: ghcr.io/org/api\n  newTag: v1.5.0\n",
        ),
        (
            "resources: []\n...\n",
            "resources: []\nimages:\n- name: ghcr.io/org/api\n  newTag: v1.5.0\n...\n",
        ),
        (
            "images:\n- name: ghcr.io/org/api\n  newTag:\n",
            "images:\n- name: ghcr.io/org/api\n  newTag: v1.5.0\n",
        ),
    ] {
        let out = edit(&target, src, &api("v1.5.0")).unwrap().unwrap();
        assert_eq!(out.new_text, want, "{src:?}");
    }
    let empty_tag = "images:\n- name: ghcr.io/org/api\n  newTag:\n";
    assert_eq!(
        edit(&target, empty_tag, &api("v1.5.0"))
            .unwrap()
            .unwrap()
            .old,
        "\"\""
    );
    let helm = Target::Helm {
        file: "v.yaml".into(),
        values: tag_at("image.tag"),
    };
    let out = edit(&helm, "image:\n  tag:\n", &api("v1.5.0"))
        .unwrap()
        .unwrap();
    assert_eq!(out.new_text, "image:\n  tag: v1.5.0\n");
}

#[test]
fn duplicates_are_refused_naming_both_lines() {
    let target = Target::Kustomization {
        file: "k.yaml".into(),
        name: "ghcr.io/org/api".into(),
    };
    let twice =
        "images:\n- name: ghcr.io/org/api\n  newTag: v1\n- name: ghcr.io/org/api\n  newTag: v2\n";
    let err = edit(&target, twice, &api("v3")).unwrap_err();
    assert!(
        err.message
            .contains("two entries named ghcr.io/org/api, on lines 2 and 4"),
        "{err}"
    );
    let key_twice = "image:\n  tag: v1\n  tag: v2\n";
    let helm = Target::Helm {
        file: "v.yaml".into(),
        values: tag_at("image.tag"),
    };
    let err = edit(&helm, key_twice, &api("v3")).unwrap_err();
    assert!(
        err.message
            .contains("`tag` is written twice, on lines 2 and 3"),
        "{err}"
    );
}
