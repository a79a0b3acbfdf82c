//! Chart repositories as users publish them: the podinfo chart of `../shared/chart-corpus/`
//! packaged by real Helm at several versions, indexed by Helm's own `helm repo index`
//! (`harness::charts`, through the `helm-python-sdk` wheel), served by lighttpd as static
//! files over HTTP and HTTPS. lighttpd's access log says what each request got.

mod harness;

use std::collections::BTreeSet;

use harness::Tls;
use harness::charts::ChartRepo;
use image_updater::charts::{ChartRepository, RepositoryError, Settings};

fn podinfo() -> std::path::PathBuf {
    harness::shared::dir().join("chart-corpus/stefanprodan__podinfo/podinfo")
}

fn wanted() -> BTreeSet<String> {
    BTreeSet::from(["podinfo".to_string()])
}

/// Versions as the index lists them.
async fn versions(client: &ChartRepository) -> Vec<String> {
    let charts = client.charts(&wanted()).await.unwrap();
    let mut versions: Vec<String> = charts["podinfo"]
        .iter()
        .map(|e| e.version.clone())
        .collect();
    versions.sort();
    versions
}

/// Every poll after the first asks whether the index changed, and an unchanged index costs
/// the repository one 304 and no bytes; a new package changes it, and its version is read.
#[tokio::test]
async fn an_unchanged_index_costs_one_304_per_poll() {
    needs!(Lighttpd, Helm);
    let repo = ChartRepo::start(None);
    repo.publish(&podinfo(), "6.9.0");
    repo.publish(&podinfo(), "6.9.1");
    let client = ChartRepository::new(Settings::new(&repo.url())).unwrap();
    let charts = client.charts(&wanted()).await.unwrap();
    let entries = &charts["podinfo"];
    assert_eq!(entries.len(), 2);
    for entry in entries {
        assert!(entry.created.is_some(), "{entry:?}");
        assert_eq!(
            entry.digest.as_ref().map(String::len),
            Some(64),
            "{entry:?}"
        );
        assert!(entry.urls[0].starts_with(&repo.url()), "{entry:?}");
        assert!(!entry.deprecated);
    }
    for _ in 0..3 {
        assert_eq!(versions(&client).await, ["6.9.0", "6.9.1"]);
    }
    assert_eq!(repo.statuses("/index.yaml", 4), [200, 304, 304, 304]);
    // Helm writes the new index with a later modification time; a second apart, since
    // lighttpd's validators count in seconds.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    repo.publish(&podinfo(), "6.10.0");
    assert_eq!(versions(&client).await, ["6.10.0", "6.9.0", "6.9.1"]);
    assert_eq!(repo.statuses("/index.yaml", 5), [200, 304, 304, 304, 200]);
}

/// Over HTTPS with the repository's CA named (`ca_file`), and refused without it.
#[tokio::test]
async fn https_repositories_are_trusted_through_their_ca_only() {
    needs!(Lighttpd, LighttpdTls, Openssl, Helm);
    let dir = tempfile::tempdir().unwrap();
    let tls = Tls::generate(dir.path());
    let repo = ChartRepo::start(Some(tls.clone()));
    repo.publish(&podinfo(), "6.9.0");
    let mut settings = Settings::new(&repo.url());
    let untrusted = ChartRepository::new(settings.clone()).unwrap();
    let refused = untrusted.charts(&wanted()).await.unwrap_err();
    assert!(
        matches!(refused, RepositoryError::Unreachable { .. }),
        "{refused}"
    );
    settings.ca_file = Some(tls.ca.clone());
    let trusted = ChartRepository::new(settings).unwrap();
    assert_eq!(versions(&trusted).await, ["6.9.0"]);
}

/// A 50 MB index is refused with what to do, without reading it: the limit is 32 MiB.
#[tokio::test]
async fn a_huge_index_is_refused_clearly() {
    needs!(Lighttpd);
    let repo = ChartRepo::start(None);
    let mut huge = String::from("apiVersion: v1\nentries: {}\n");
    let line = format!("# {}\n", "x".repeat(98));
    while huge.len() < 50_000_000 {
        huge.push_str(&line);
    }
    std::fs::write(repo.root.join("index.yaml"), huge).unwrap();
    let client = ChartRepository::new(Settings::new(&repo.url())).unwrap();
    let started = std::time::Instant::now();
    let error = client.charts(&wanted()).await.unwrap_err();
    assert!(matches!(error, RepositoryError::TooLarge { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "chart repository {}: index.yaml is larger than 33554432 bytes; raise the \
             repository's max_index_size if it really is that large",
            repo.url()
        )
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A private repository: refused without credentials, read with them (`file:`); and its
/// credentials go only to its own origin: a repository that redirects elsewhere has its
/// index read there without them.
#[tokio::test]
async fn credentials_go_only_to_the_repositorys_origin() {
    needs!(Lighttpd, Helm);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("charts-credentials");
    std::fs::write(&secret, "reader:chart-s3cret\n").unwrap();
    let reference =
        image_updater::config::CredentialRef::parse(&format!("file:{}", secret.display())).unwrap();
    let private = ChartRepo::guarded("reader", "chart-s3cret");
    private.publish(&podinfo(), "6.9.0");
    let anonymous = ChartRepository::new(Settings::new(&private.url())).unwrap();
    let refused = anonymous.charts(&wanted()).await.unwrap_err();
    assert!(
        matches!(refused, RepositoryError::Status { status: 401, .. }),
        "{refused}"
    );
    let mut settings = Settings::new(&private.url());
    settings.credentials = Some(reference.clone());
    let signed_in = ChartRepository::new(settings).unwrap();
    assert_eq!(versions(&signed_in).await, ["6.9.0"]);

    let elsewhere = ChartRepo::start(None);
    elsewhere.publish(&podinfo(), "6.9.1");
    let moved = ChartRepo::redirecting(&elsewhere.url());
    let mut settings = Settings::new(&moved.url());
    settings.credentials = Some(reference);
    let client = ChartRepository::new(settings).unwrap();
    assert_eq!(versions(&client).await, ["6.9.1"]);
    assert!(
        moved.saw_credentials(),
        "the repository itself was sent them"
    );
    assert!(
        !elsewhere.saw_credentials(),
        "the credentials followed the redirect"
    );
}
