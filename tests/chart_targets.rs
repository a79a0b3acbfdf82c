//! Chart versions written into files nobody on this team wrote: Flux's, Argo CD's and
//! kustomize's own published examples (`tests/fixtures/charts/`, sources in its SOURCES.md),
//! a Flux example repository's HelmRelease (`../shared/yaml-corpus/`) and published charts'
//! `Chart.yaml` (`../shared/chart-corpus/`), both read in place.
//!
//! Each case is compared byte for byte with the file as it was, but for the one value, and
//! then read by readers that are not ours: every YAML result by PyYAML (the documents must
//! say the new version where the case says, and still say what they said elsewhere), and a
//! chart's `Chart.yaml` by Helm itself (`helm dependency list` through the `helm-python-sdk`
//! wheel, Helm v4's Go SDK), which must see the new version. A kustomization's `helmCharts`
//! is not built with `kubectl kustomize --enable-helm`: that needs a `helm` binary, and this
//! machine has Helm only as the SDK.

mod harness;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use image_updater::config::ChartTarget;
use image_updater::writeback::targets::chart::{ChartVersion, edit};

enum From {
    /// `../shared/yaml-corpus/PATH`.
    YamlCorpus(&'static str),
    /// `../shared/chart-corpus/PATH`.
    ChartCorpus(&'static str),
    /// `tests/fixtures/charts/NAME`.
    Fixture(&'static str),
}

impl From {
    fn path(&self) -> PathBuf {
        match self {
            From::YamlCorpus(p) => harness::shared::dir().join("yaml-corpus").join(p),
            From::ChartCorpus(p) => harness::shared::dir().join("chart-corpus").join(p),
            From::Fixture(p) => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/charts")
                .join(p),
        }
    }
}

enum Expect {
    /// The file with `from` replaced by `to` (once), and PyYAML reading `value` at `path`
    /// of document `doc` (and `kept` still at its path).
    Written {
        from: &'static str,
        to: &'static str,
        read: &'static [(usize, &'static str, &'static str)],
    },
    /// Refused, saying this.
    Refused(&'static str),
}

struct Case {
    name: &'static str,
    file: From,
    target: fn(PathBuf) -> ChartTarget,
    repository: &'static str,
    chart: &'static str,
    version: &'static str,
    expect: Expect,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "flux example repository: a HelmRelease without a version gets one",
            file: From::YamlCorpus(
                "fluxcd__flux2-kustomize-helm-example/apps/base/podinfo/release.yaml",
            ),
            target: |file| ChartTarget::HelmRelease { file },
            repository: "https://stefanprodan.github.io/podinfo",
            chart: "podinfo",
            version: "6.9.2",
            expect: Expect::Written {
                from: "        name: podinfo\n  install:",
                to: "        name: podinfo\n      version: 6.9.2\n  install:",
                read: &[
                    (0, "spec.chart.spec.version", "6.9.2"),
                    (0, "spec.chart.spec.sourceRef.name", "podinfo"),
                    (0, "spec.values.redis.tag", "8.6.2"),
                ],
            },
        },
        Case {
            name: "helm-controller docs: an OCI chart template on a semver range is left to Flux",
            file: From::Fixture("flux-helmrelease-oci-template.yaml"),
            target: |file| ChartTarget::HelmRelease { file },
            repository: "oci://ghcr.io/stefanprodan/charts",
            chart: "podinfo",
            version: "6.5.4",
            expect: Expect::Refused("`ref.semver: 6.5.*` chooses the chart by itself"),
        },
        Case {
            name: "helm-controller docs: an OCIRepository on a semver range is left to Flux",
            file: From::Fixture("flux-ocirepository-chartref.yaml"),
            target: |file| ChartTarget::OciRepository { file },
            repository: "oci://ghcr.io/stefanprodan/charts",
            chart: "podinfo",
            version: "6.5.4",
            expect: Expect::Refused("`ref.semver: >= 6.0.0` chooses the chart by itself"),
        },
        Case {
            name: "argo cd docs: an Application's chart source",
            file: From::Fixture("argocd-sealed-secrets.yaml"),
            target: |file| ChartTarget::ArgoCd { file },
            repository: "https://bitnami.github.io/sealed-secrets",
            chart: "sealed-secrets",
            version: "2.17.2",
            expect: Expect::Written {
                from: "targetRevision: 1.16.1",
                to: "targetRevision: 2.17.2",
                read: &[
                    (0, "spec.source.targetRevision", "2.17.2"),
                    (
                        0,
                        "spec.destination.server",
                        "https://kubernetes.default.svc",
                    ),
                ],
            },
        },
        Case {
            name: "argo cd docs: the same chart name from another repository is not ours",
            file: From::Fixture("argocd-sealed-secrets.yaml"),
            target: |file| ChartTarget::ArgoCd { file },
            repository: "https://charts.example.com",
            chart: "sealed-secrets",
            version: "2.17.2",
            expect: Expect::Refused(
                "no Argo CD Application source in the file installs chart sealed-secrets from https://charts.example.com",
            ),
        },
        Case {
            name: "argo cd docs: an OCI source names the chart in its url",
            file: From::Fixture("argocd-oci-nginx.yaml"),
            target: |file| ChartTarget::ArgoCd { file },
            repository: "oci://registry-1.docker.io/bitnamicharts",
            chart: "nginx",
            version: "22.1.1",
            expect: Expect::Written {
                from: "targetRevision: 1.16.1",
                to: "targetRevision: 22.1.1",
                read: &[(0, "spec.source.targetRevision", "22.1.1")],
            },
        },
        Case {
            name: "argo cd docs: one of several sources; the git one keeps its branch",
            file: From::Fixture("argocd-ingress-nginx-sources.yaml"),
            target: |file| ChartTarget::ArgoCd { file },
            repository: "https://kubernetes.github.io/ingress-nginx",
            chart: "ingress-nginx",
            version: "4.12.0",
            expect: Expect::Written {
                from: "targetRevision: 4.11.3",
                to: "targetRevision: 4.12.0",
                read: &[
                    (0, "spec.sources.0.targetRevision", "4.12.0"),
                    (0, "spec.sources.1.targetRevision", "main"),
                ],
            },
        },
        Case {
            name: "kustomize docs: a helmCharts entry",
            file: From::Fixture("kustomize-helmcharts.yaml"),
            target: |file| ChartTarget::KustomizeHelm { file },
            repository: "https://itzg.github.io/minecraft-server-charts",
            chart: "minecraft",
            version: "4.23.2",
            expect: Expect::Written {
                from: "version: 3.1.3",
                to: "version: 4.23.2",
                read: &[
                    (0, "helmCharts.0.version", "4.23.2"),
                    (0, "helmCharts.0.releaseName", "moria"),
                ],
            },
        },
        Case {
            name: "kube-prometheus-stack: a quoted dependency version keeps its quotes",
            file: From::ChartCorpus(
                "prometheus-community__helm-charts/kube-prometheus-stack/Chart.yaml",
            ),
            target: |file| ChartTarget::ChartDependency { file },
            repository: "https://grafana-community.github.io/helm-charts",
            chart: "grafana",
            version: "12.12.0",
            expect: Expect::Written {
                from: "version: \"12.11.1\"",
                to: "version: \"12.12.0\"",
                read: &[
                    (0, "dependencies.3.version", "12.12.0"),
                    (0, "dependencies.1.version", "8.4.0"),
                ],
            },
        },
        Case {
            name: "argo-cd chart: a dependency whose repository ends in a slash",
            file: From::ChartCorpus("argoproj__argo-helm/argo-cd/Chart.yaml"),
            target: |file| ChartTarget::ChartDependency { file },
            repository: "https://dandydeveloper.github.io/charts",
            chart: "redis-ha",
            version: "4.39.1",
            expect: Expect::Written {
                from: "version: 4.38.0",
                to: "version: 4.39.1",
                read: &[(0, "dependencies.0.version", "4.39.1")],
            },
        },
        Case {
            name: "prometheus chart: a dependency on a range is left to Helm",
            file: From::ChartCorpus("prometheus-community__helm-charts/prometheus/Chart.yaml"),
            target: |file| ChartTarget::ChartDependency { file },
            repository: "https://prometheus-community.github.io/helm-charts",
            chart: "alertmanager",
            version: "1.43.0",
            expect: Expect::Refused("`version: 1.42.*` is a range or a moving tag"),
        },
        Case {
            name: "bitnami nginx: an OCI dependency on a range is left to Helm",
            file: From::ChartCorpus("bitnami__charts/nginx/Chart.yaml"),
            target: |file| ChartTarget::ChartDependency { file },
            repository: "oci://registry-1.docker.io/bitnamicharts",
            chart: "common",
            version: "2.31.4",
            expect: Expect::Refused("`version: 2.x.x` is a range or a moving tag"),
        },
    ]
}

/// What PyYAML reads in `text`: every document, as JSON.
fn pyyaml(text: &str) -> serde_json::Value {
    use std::io::Write;
    let mut child = Command::new(harness::need::PYTHON)
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin)), default=str))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML (Debian's python3-yaml) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn at<'a>(value: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    path.split('.')
        .fold(value, |v, step| match step.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[step],
        })
}

#[test]
fn chart_versions_are_written_where_each_tool_reads_them() {
    needs!(Shared, PyYaml);
    let mut ran = 0;
    for case in cases() {
        let path = case.file.path();
        let before = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {}: {e}", case.name, path.display()));
        let desired = ChartVersion {
            repository: case.repository.into(),
            name: case.chart.into(),
            version: case.version.into(),
        };
        let result = edit(&(case.target)(path.clone()), &before, &desired);
        match case.expect {
            Expect::Written { from, to, read } => {
                let edited = result
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name))
                    .unwrap_or_else(|| panic!("{}: nothing to write", case.name));
                assert_eq!(before.matches(from).count(), 1, "{}: {from}", case.name);
                assert_eq!(
                    edited.new_text,
                    before.replacen(from, to, 1),
                    "{}",
                    case.name
                );
                let documents = pyyaml(&edited.new_text);
                for (doc, path, value) in read {
                    let found = at(&documents[doc], path);
                    assert_eq!(
                        found.as_str(),
                        Some(*value),
                        "{}: {path} is {found}",
                        case.name
                    );
                }
                // Written again, it is already there.
                let again = edit(&(case.target)(path.clone()), &edited.new_text, &desired);
                assert!(matches!(again, Ok(None)), "{}: {again:?}", case.name);
            }
            Expect::Refused(says) => {
                let error = result
                    .err()
                    .unwrap_or_else(|| panic!("{}: written", case.name));
                assert!(
                    error.message.contains(says),
                    "{}: {}",
                    case.name,
                    error.message
                );
            }
        }
        ran += 1;
    }
    assert_eq!(ran, cases().len());
}

/// Helm itself reads the `Chart.yaml` written: `helm dependency list` (through the SDK) on
/// a copy of the published argo-cd chart sees the new version, and says the vendored one
/// no longer matches (what `helm dependency update` then mends, with `Chart.lock`).
#[test]
fn helm_reads_the_dependency_version_written() {
    needs!(Helm);
    let chart = harness::shared::dir().join("chart-corpus/argoproj__argo-helm/argo-cd");
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(&chart)
        .arg(copy.path().join("argo-cd"))
        .status()
        .unwrap();
    assert!(status.success());
    let file = copy.path().join("argo-cd/Chart.yaml");
    let before = std::fs::read_to_string(&file).unwrap();
    let desired = ChartVersion {
        repository: "https://dandydeveloper.github.io/charts".into(),
        name: "redis-ha".into(),
        version: "4.39.1".into(),
    };
    let target = ChartTarget::ChartDependency { file: file.clone() };
    let edited = edit(&target, &before, &desired).unwrap().unwrap();
    std::fs::write(&file, &edited.new_text).unwrap();
    let out = Command::new(harness::helm::python())
        .args([
            "-c",
            "import sys, json, helm_python; print(json.dumps(helm_python.dependency_list(sys.argv[1])))",
        ])
        .arg(copy.path().join("argo-cd"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["name"], "redis-ha");
    assert_eq!(listed[0]["version"], "4.39.1");
    assert_eq!(listed[0]["status"], "wrong version");
}
