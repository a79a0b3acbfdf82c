//! What a test needs from the machine, checked before it starts.
//!
//! A test whose component is missing fails, naming the package that brings it: a test that
//! cannot run must never pass. A run may opt out explicitly with
//! `IMAGE_UPDATER_TESTS_MISSING=skip`: such tests then return at once, and when the test
//! binary exits it prints how many were skipped and why, so the skip is seen.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The CNCF distribution registry.
    Registry,
    /// lighttpd, serving `git http-backend` with basic auth.
    Lighttpd,
    /// lighttpd's TLS module, for the https redirect test.
    LighttpdTls,
    /// kubectl with kustomize v5 built in.
    Kubectl,
    /// `../shared` beside the checkout: conformance tables and the YAML corpus.
    Shared,
    /// ssh-keygen, for signed commits.
    SshKeygen,
    /// openssl, for test certificates.
    Openssl,
    /// promtool, to check the metrics and the alert rules.
    Promtool,
    /// Debian's python3 with the jsonschema module, to validate configs against the schema.
    Jsonschema,
    /// Debian's python3 with the Prometheus client, whose OpenMetrics parser is strict.
    OpenMetricsParser,
    /// Debian's python3 with PyYAML, a YAML reader that is not ours.
    PyYaml,
    /// etcd, for replicas that share the work.
    Etcd,
    /// Network namespaces with veth links (`ip netns`), for partitions between replicas.
    Netns,
    /// Real Helm: Helm v4's Go SDK in the `helm-python-sdk` wheel, for `render.py` of
    /// `../shared/chart-corpus/`.
    Helm,
    /// Python's `cryptography` for [`PYTHON`]: `tests/oracles/cosign_spec.py` signs with it.
    PythonCryptography,
    /// sigstore-js (`npm ci` in `tests/oracles`) and node, for `tests/oracles/sign.js`.
    SigstoreJs,
    /// Debian's Chromium and ChromeDriver, a real browser for the status page.
    Chromium,
    /// axe-core (`npm ci` in `tests/oracles`), the accessibility checker run in that browser.
    AxeCore,
}

impl Component {
    fn present(self) -> bool {
        match self {
            Component::Registry => Path::new(super::REGISTRY_BINARY).exists(),
            Component::Lighttpd => Path::new(super::git::LIGHTTPD).exists(),
            Component::LighttpdTls => Path::new("/usr/lib/lighttpd/mod_openssl.so").exists(),
            Component::Kubectl => Command::new(super::kustomize::KUBECTL)
                .args(["version", "--client"])
                .output()
                .is_ok_and(|o| o.status.success()),
            Component::Shared => super::shared::dir().join("yaml-corpus").is_dir(),
            Component::SshKeygen => runs("ssh-keygen", &["-?"]),
            Component::Openssl => runs("openssl", &["version"]),
            Component::Promtool => runs("promtool", &["--version"]),
            Component::Jsonschema => Command::new(PYTHON)
                .args(["-c", "import jsonschema, tomllib"])
                .output()
                .is_ok_and(|o| o.status.success()),
            Component::OpenMetricsParser => Command::new(PYTHON)
                .args(["-c", "import prometheus_client.openmetrics.parser"])
                .output()
                .is_ok_and(|o| o.status.success()),
            Component::PyYaml => Command::new(PYTHON)
                .args(["-c", "import yaml"])
                .output()
                .is_ok_and(|o| o.status.success()),
            Component::Etcd => Path::new(super::etcd::ETCD).exists(),
            Component::Netns => {
                let probe = format!("iu-probe-{}", std::process::id());
                let made = Command::new("ip")
                    .args(["netns", "add", &probe])
                    .output()
                    .is_ok_and(|o| o.status.success());
                let _ = Command::new("ip").args(["netns", "del", &probe]).output();
                made
            }
            Component::Helm => {
                super::helm::corpus().join("render.py").exists()
                    && Command::new(super::helm::python())
                        .args(["-c", "import helm_python"])
                        .output()
                        .is_ok_and(|o| o.status.success())
            }
            Component::PythonCryptography => super::sigstore::has_cryptography(),
            Component::SigstoreJs => super::sigstore::has_sigstore_js(),
            Component::Chromium => super::browser::has_chromium(),
            Component::AxeCore => super::browser::axe().exists(),
        }
    }

    /// What is missing, and what brings it.
    fn missing(self) -> &'static str {
        match self {
            Component::Registry => "/usr/bin/docker-registry (apt-get install docker-registry)",
            Component::Lighttpd => "/usr/sbin/lighttpd (apt-get install lighttpd)",
            Component::LighttpdTls => {
                "lighttpd's TLS module (apt-get install lighttpd-mod-openssl)"
            }
            Component::Kubectl => {
                "kubectl with kustomize v5 built in (a current kubectl; Debian's kubernetes-client 1.20 is too old)"
            }
            Component::Shared => {
                "../shared beside the checkout, with conformance/ and yaml-corpus/"
            }
            Component::SshKeygen => "ssh-keygen (apt-get install openssh-client)",
            Component::Openssl => "openssl (apt-get install openssl)",
            Component::Promtool => "promtool (apt-get install prometheus)",
            Component::Jsonschema => {
                "Python's jsonschema for /usr/bin/python3 (apt-get install python3-jsonschema)"
            }
            Component::OpenMetricsParser => {
                "the Prometheus client for /usr/bin/python3 (apt-get install python3-prometheus-client)"
            }
            Component::PyYaml => "PyYAML for /usr/bin/python3 (apt-get install python3-yaml)",
            Component::Etcd => "/usr/bin/etcd (apt-get install etcd-server)",
            Component::Netns => {
                "network namespaces: `ip netns add` (apt-get install iproute2), run as root or with CAP_NET_ADMIN"
            }
            Component::Helm => {
                "Helm's SDK for python3 (pip install helm-python-sdk, or a virtualenv's python named by IMAGE_UPDATER_HELM_PYTHON) and ../shared/chart-corpus"
            }
            Component::PythonCryptography => {
                "Python's cryptography for /usr/bin/python3 (apt-get install python3-cryptography)"
            }
            Component::SigstoreJs => {
                "sigstore-js for tests/oracles/sign.js: node 20.17 or newer with npm (Debian 12's nodejs is 18; NodeSource's packages or nvm), then npm ci --prefix tests/oracles"
            }
            Component::Chromium => {
                "Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
            }
            Component::AxeCore => "axe-core for the browser tests (npm ci --prefix tests/oracles)",
        }
    }
}

fn runs(program: &str, args: &[&str]) -> bool {
    // ssh-keygen -? exits 1 after printing its usage: that it ran is what counts.
    Command::new(program).args(args).output().is_ok()
}

/// The Python that Debian's python3-jsonschema and python3-prometheus-client install for.
pub const PYTHON: &str = "/usr/bin/python3";

/// The tests skipped in this binary, and what they missed.
static SKIPPED: Mutex<Vec<(String, &'static str)>> = Mutex::new(Vec::new());

/// Whether the calling test must stop because something it needs is missing and the run
/// opted out; without the opt-out a missing component fails the test here.
pub fn missing(test: &str, needs: &[Component]) -> bool {
    let Some(absent) = needs.iter().find(|c| !c.present()) else {
        return false;
    };
    if std::env::var("IMAGE_UPDATER_TESTS_MISSING").as_deref() != Ok("skip") {
        panic!(
            "{} is not installed, so this test cannot run (set IMAGE_UPDATER_TESTS_MISSING=skip to skip such tests, counted)",
            absent.missing()
        );
    }
    let mut skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    if skipped.is_empty() {
        // SAFETY: registers a plain function to run at exit; it only reads a static.
        unsafe { libc::atexit(report) };
    }
    skipped.push((test.to_string(), absent.missing()));
    true
}

/// Printed when the test binary exits, after libtest's own summary.
extern "C" fn report() {
    let skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "\nIMAGE_UPDATER_TESTS_MISSING=skip: {} test(s) of this binary did not run:",
        skipped.len()
    );
    for (test, what) in skipped.iter() {
        eprintln!("  skipped {test}: needs {what}");
    }
}

/// Returns from the calling test when a component it needs is missing and the run opted out
/// (see [`missing`]); fails the test when it did not.
#[macro_export]
macro_rules! needs {
    ($($component:ident),+ $(,)?) => {
        if $crate::harness::need::missing(
            std::thread::current().name().unwrap_or("a test"),
            &[$($crate::harness::need::Component::$component),+],
        ) {
            return;
        }
    };
}
