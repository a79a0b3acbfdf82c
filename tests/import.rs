//! `image-updater import` on Flux's own published manifests (`tests/fixtures/flux/`, sources
//! in its SOURCES.md): each imported config passes `check`, says what it could not translate,
//! and `plan` on the guide's repository proposes the tag Flux's policy picks, computed by hand
//! from the policy and the tags pushed (listed in the test).

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::world::{BIN, World};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flux")
        .join(name)
}

fn import(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .arg("import")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// `check` on `config`, written to a file; its output.
fn check(config: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("updater.toml");
    std::fs::write(&file, config).unwrap();
    Command::new(BIN)
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap()
}

/// The ImageRepository each policy example of the API reference names (`podinfo`, `minio` in
/// the default namespace); the examples leave it out, so it is written here.
const REPOSITORIES: &str = "\
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata:
  name: podinfo
spec:
  image: ghcr.io/stefanprodan/podinfo
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata:
  name: minio
spec:
  image: docker.io/minio/minio
";

/// Each kind of ImagePolicy in the API reference, imported from standard input: the policy
/// keys it becomes, and what it says it could not translate. Every result passes `check`.
#[test]
fn each_kind_of_image_policy_becomes_its_policy_keys() {
    let cases: &[(&str, &[&str])] = &[
        (
            "policy-semver.yaml",
            &["# strategy = \"semver\"", "# constraint = \">=1.0.0\""],
        ),
        (
            "policy-alphabetical.yaml",
            &["# strategy = \"alphabetical\""],
        ),
        ("policy-numerical.yaml", &["# strategy = \"numerical\""]),
        (
            "policy-rc.yaml",
            &[
                "# constraint = \"^1.x-0\"",
                "# allow_tags = [\"regexp:.*-rc.*\"]",
            ],
        ),
        (
            "policy-minio.yaml",
            &[
                "# strategy = \"alphabetical\"",
                "# extract = '^RELEASE\\.(?P<timestamp>.*)Z$'",
            ],
        ),
    ];
    for (file, lines) in cases {
        let policy = std::fs::read_to_string(fixture(file)).unwrap();
        let out = import(&[], Some(&format!("{REPOSITORIES}---\n{policy}")));
        let (config, said) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{file}: {said}");
        // No automation among the inputs: the image is written commented out, saying why.
        for line in *lines {
            assert!(config.contains(line), "{file}: {line}\n{config}");
        }
        assert!(said.contains("1 ImagePolicy"), "{file}: {said}");
        let checked = check(&config);
        assert!(
            checked.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
}

/// The guide's manifests, from a directory holding the repository: the ImageRepository, the
/// policy, the automation (whose Go template is said, not translated) and the deployment with
/// its marker. The config passes `check`, and `plan` proposes what Flux's policy picks.
///
/// Tags pushed: 5.0.0, 5.0.1, 5.0.3, 5.1.0, 6.0.0. The policy's range `5.0.x` takes
/// 5.0.0 to 5.0.3, so Flux resolves 5.0.3 (the guide says the same: "resolved to 5.0.3").
///
/// The registry is the local one: the manifests' `ghcr.io` is replaced by its address, and
/// the ImageRepository says `insecure: true`, as Flux's own field for a plain-HTTP registry.
/// The git server's credentials are added to the imported config, as a user adds what a
/// Kubernetes secret held (the import says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_guide_imports_and_plans_what_flux_would_pick() {
    needs!(Registry, Lighttpd);
    let read = |name: &str| std::fs::read_to_string(fixture(name)).unwrap();
    let deployment = read("podinfo-deployment.yaml").replace("ghcr.io", "REGISTRY");
    let world = World::new(
        &[("clusters/my-cluster/podinfo-deployment.yaml", &deployment)],
        &[],
    )
    .await;
    let host = world.host();
    for tag in ["5.0.0", "5.0.1", "5.0.3", "5.1.0", "6.0.0"] {
        world.push("stefanprodan/podinfo", tag).await;
    }
    // The repository as a user has it checked out, with the Flux objects beside the app.
    let repo = tempfile::tempdir().unwrap();
    let cluster = repo.path().join("clusters/my-cluster");
    std::fs::create_dir_all(&cluster).unwrap();
    let local = |text: String| text.replace("ghcr.io", &host);
    for (name, text) in [
        (
            "podinfo-registry.yaml",
            local(read("podinfo-registry.yaml"))
                .replace("interval: 5m", "interval: 5m\n  insecure: true"),
        ),
        ("podinfo-policy.yaml", read("podinfo-policy.yaml")),
        (
            "flux-system-automation.yaml",
            read("flux-system-automation.yaml"),
        ),
        (
            "podinfo-deployment.yaml",
            local(read("podinfo-deployment.yaml")),
        ),
    ] {
        std::fs::write(cluster.join(name), text).unwrap();
    }
    let url = world.git.url("manifests");
    let out = import(
        &[repo.path().to_str().unwrap(), "--repository-url", &url],
        None,
    );
    let (config, said) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("read 1 ImageRepository, 1 ImagePolicy, 1 ImageUpdateAutomation"),
        "{said}"
    );
    assert!(
        said.contains(
            "ImageUpdateAutomation flux-system/flux-system: its commit message is a Go template"
        ),
        "{said}"
    );
    for line in [
        "[environments.flux-system]",
        "branch = \"main\"",
        "author = \"fluxcdbot <fluxcdbot@users.noreply.github.com>\"",
        "[images.podinfo]",
        "constraint = \"5.0.x\"",
        "kind = \"marker\"",
        "file = \"clusters/my-cluster/podinfo-deployment.yaml\"",
        "policy = \"flux-system:podinfo\"",
        "# import: its commit message is a Go template",
    ] {
        assert!(config.contains(line), "{line}\n{config}");
    }
    let checked = check(&config);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // What the Kubernetes secret held: the git server's credentials.
    let creds = world.dir.path().join("git-credentials");
    let config = config.replace(
        &format!("url = \"{url}\"\n"),
        &format!(
            "url = \"{url}\"\ncredentials = \"file:{}\"\n",
            creds.display()
        ),
    );
    world.write_config(&config);
    let plan = world.run(&["plan"]);
    let planned = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.status.success(),
        "{planned}{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(
        planned.contains(&format!(
            "+          image: {host}/stefanprodan/podinfo:5.0.3 # {{\"$imagepolicy\": \"flux-system:podinfo\"}}"
        )),
        "{planned}"
    );
}

/// A secret reference, a descending order and a pattern in RE2's dialect that Rust's regex
/// does not read (`\Q…\E`, RE2's quoted literal) are each said, at their place and in the
/// summary; nothing is left out silently.
#[test]
fn what_does_not_translate_is_said() {
    let manifests = "\
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata:
  name: app
  namespace: apps
spec:
  image: registry.example.com/team/app
  secretRef:
    name: regcred
  provider: generic
  exclusionList:
    - '^.*\\.sig$'
    - '^dev-'
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata:
  name: app
  namespace: apps
spec:
  imageRepositoryRef:
    name: app
  filterTags:
    pattern: '^release-\\Q1.2\\E-(?P<n>\\d+)$'
  policy:
    numerical:
      order: desc
";
    let out = import(&["-"], Some(manifests));
    let (config, said) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{said}");
    for note in [
        "ImageRepository apps/app: its credentials are in the Kubernetes secret `regcred`",
        "ImagePolicy apps/app: numerical order `desc` (the lowest wins) has no equivalent",
        "ImagePolicy apps/app: its filterTags pattern does not compile as a Rust regex",
    ] {
        assert!(said.contains(note), "{note}\n{said}");
    }
    assert!(
        config.contains("# ignore_tags = [\"regexp:^dev-\"]"),
        "{config}"
    );
    assert!(check(&config).status.success());
}

fn aiu(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/argocd-image-updater")
        .join(name)
}

/// The config without its comments: what `check` and the daemon read.
fn settings(config: &str) -> String {
    config
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Argo CD Image Updater's migration guide shows one setup twice: as `Application`
/// annotations (v0.x) and as an `ImageUpdater` resource (v1.x). Both import to the same
/// settings, which pass `check`: an environment per application on its branch, each image
/// deployed there with its strategy (`latest` and `newest-build` are our newest-build), its
/// constraint from `image-list`, its tag filters, and a Helm values target with Image
/// Updater's default paths. The pull secret and the unknown source path are said.
#[test]
fn argo_cd_image_updater_annotations_and_resource_import_alike() {
    let mut configs = Vec::new();
    for file in ["annotations.yaml", "imageupdater.yaml"] {
        let out = import(&[aiu(file).to_str().unwrap()], None);
        let (config, said) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{file}: {said}");
        assert!(
            said.contains("image redis: its pull secret `secret:my-namespace/redis-secret#username` belongs to its registry"),
            "{file}: {said}"
        );
        assert!(
            said.contains("`./values.yaml` is relative to the Application's source path, which is not among the inputs"),
            "{file}: {said}"
        );
        for line in [
            "[environments.production-app]\nrepository = \"manifests\"\nbranch = \"main\"",
            "[environments.staging-app]\nrepository = \"manifests\"\nbranch = \"develop\"",
            "[images.production-app-nginx]\nimage = \"nginx\"\nenvironments = [\"production-app\"]\nconstraint = \"1.20\"\nallow_tags = ['regexp:^[0-9]+\\.[0-9]+$']\nignore_tags = [\"latest\", \"dev\"]",
            "[images.redis]\nimage = \"redis\"\nenvironments = [\"production-app\"]\nstrategy = \"newest-build\"",
            "[images.staging-app-nginx]\nimage = \"nginx\"\nenvironments = [\"staging-app\"]\nstrategy = \"newest-build\"",
            "kind = \"helm\"\nfile = \"values.yaml\"\ntag = \"image.tag\"\nrepository = \"image.name\"",
        ] {
            assert!(settings(&config).contains(line), "{file}: {line}\n{config}");
        }
        assert!(check(&config).status.success(), "{file}");
        configs.push(settings(&config));
    }
    assert_eq!(configs[0], configs[1]);
}

/// The registries.conf examples of Image Updater's documentation: each registry with its
/// prefix, url, `default`, `insecure` and `credsexpire`; `env:` credentials kept; a
/// Kubernetes secret, `defaultns` and an `ext:` script said, not translated.
#[test]
fn argo_cd_image_updater_registries_conf_imports() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "registries.yaml",
            &[
                "[registries.docker-hub]\nprefix = \"docker.io\"\napi_url = \"https://registry-1.docker.io\"\ndefault = true",
                "[registries.redhat-quay]\nprefix = \"quay.io\"\napi_url = \"https://quay.io\"\ninsecure = true\ncredentials = \"env:REGISTRY_SECRET\"",
            ],
            &[
                "registry `Docker Hub`: its credentials are in the Kubernetes secret `secret:foo/bar#creds`",
                "registry `Docker Hub`: defaultns `library` has no equivalent",
            ],
        ),
        (
            "registries-acr.yaml",
            &[
                "[registries.acr-name]\nprefix = \"acr-name.azurecr.io\"\napi_url = \"https://acr-name.azurecr.io\"\ndefault = true\ncredentials_ttl = \"1h\"",
            ],
            &["registry `acr-name`: the script `/app/auth/auth.sh` printed the credentials"],
        ),
    ];
    for (file, lines, notes) in cases {
        let out = import(&[aiu(file).to_str().unwrap()], None);
        let (config, said) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{file}: {said}");
        for line in *lines {
            assert!(settings(&config).contains(line), "{file}: {line}\n{config}");
        }
        for note in *notes {
            assert!(said.contains(note), "{file}: {note}\n{said}");
        }
        assert!(check(&config).status.success(), "{file}");
    }
}

/// The forms of the annotations the migration guide does not show, as Image Updater's
/// documentation describes them: `git-branch` as `base:target` (a template of the
/// application's name rendered), a `kustomization` target relative to the source path, a
/// `git:secret:…` write-back method, a `digest` strategy following the tag in `image-list`,
/// an `ext:` script, and a strategy left at the `argocd` write-back method.
#[test]
fn argo_cd_image_updater_branches_targets_and_methods() {
    let manifests = "\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: guestbook-staging
  namespace: argocd
  annotations:
    argocd-image-updater.argoproj.io/image-list: app=ghcr.io/org/guestbook:~1.4, web=ghcr.io/org/web:stable
    argocd-image-updater.argoproj.io/app.kustomize.image-name: org/guestbook
    argocd-image-updater.argoproj.io/web.update-strategy: digest
    argocd-image-updater.argoproj.io/web.platforms: linux/amd64,linux/arm64
    argocd-image-updater.argoproj.io/write-back-method: git:secret:argocd/git-creds
    argocd-image-updater.argoproj.io/git-branch: main:image-updater-{{.AppName}}
    argocd-image-updater.argoproj.io/write-back-target: kustomization:../../base
spec:
  source:
    repoURL: https://github.com/org/deploy.git
    path: apps/guestbook/overlays/staging
    targetRevision: main
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: legacy
  annotations:
    argocd-image-updater.argoproj.io/image-list: ghcr.io/org/legacy
spec:
  source:
    repoURL: https://github.com/org/deploy.git
";
    let out = import(&["-"], Some(manifests));
    let (config, said) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{said}");
    for line in [
        "[repositories.manifests]\nurl = \"https://github.com/org/deploy.git\"",
        "[environments.guestbook-staging]\nrepository = \"manifests\"\nbranch = \"image-updater-guestbook-staging\"\nbase_branch = \"main\"",
        "[images.app]\nimage = \"ghcr.io/org/guestbook\"\nenvironments = [\"guestbook-staging\"]\nconstraint = \"~1.4\"",
        "kind = \"kustomization\"\nfile = \"apps/guestbook/base/kustomization.yaml\"\nname = \"org/guestbook\"",
        "[images.web]\nimage = \"ghcr.io/org/web\"\nenvironments = [\"guestbook-staging\"]\nstrategy = \"digest\"\ntag = \"stable\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]",
    ] {
        assert!(settings(&config).contains(line), "{line}\n{config}");
    }
    for note in [
        "Application argocd/guestbook-staging: write-back-method `git:secret:argocd/git-creds` names its git credentials",
        "Application default/legacy: its write-back method is `argocd` (the default)",
        "Application default/legacy image legacy: Image Updater wrote it to `.argocd-source-APP.yaml`",
    ] {
        assert!(said.contains(note), "{note}\n{said}");
    }
    // The image with no file to write is kept, commented out.
    assert!(config.contains("# [images.legacy]"), "{config}");
    assert!(check(&config).status.success());
}
