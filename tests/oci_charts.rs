//! OCI charts through the registry client, against the real CNCF registry with charts that
//! real Helm packaged and pushed (`helm push`, through the `helm-python-sdk` wheel): the
//! podinfo chart of `../shared/chart-corpus/` at three versions, one with build metadata.

mod harness;

use std::sync::Arc;

use harness::charts::push_chart;
use harness::{Auth, PushAuth, Registry, push_image};
use image_updater::registry::chart::{tag_of_version, version_of_tag};
use image_updater::registry::{Client, Endpoint, MetadataCache, Metrics, Tuning};

fn client(registry: &Registry) -> Client {
    let endpoint = Endpoint {
        name: "local".into(),
        host: registry.host(),
        base_url: registry.url(),
        credentials: None,
        credentials_implied: false,
        insecure: true,
        ca_file: None,
        rate_limit: 200.0,
        credentials_ttl: std::time::Duration::from_secs(300),
    };
    Client::new(
        endpoint,
        Tuning::default(),
        Arc::new(Metrics::default()),
        Arc::new(MetadataCache::in_memory()),
    )
    .unwrap()
}

/// The versions are the tags read back (`_` as `+`); each version's digest leads to what Helm
/// wrote of it: name, version, when it was packaged, where its sources are.
#[tokio::test]
async fn charts_pushed_by_helm_are_read_as_versions() {
    needs!(Registry, Helm);
    let registry = Registry::start(Auth::None).await;
    let podinfo = harness::shared::dir().join("chart-corpus/stefanprodan__podinfo/podinfo");
    for version in ["6.9.0", "6.9.1", "6.10.0+build.1"] {
        push_chart(&podinfo, version, &registry.host(), "charts");
    }
    let client = client(&registry);
    let tags = client.list_tags("charts/podinfo").await.unwrap();
    let mut versions: Vec<String> = tags.iter().filter_map(|t| version_of_tag(t)).collect();
    versions.sort();
    assert_eq!(versions, ["6.10.0+build.1", "6.9.0", "6.9.1"]);
    let tag = tag_of_version("6.10.0+build.1");
    assert!(tags.contains(&tag), "{tags:?}");
    let digest = client.resolve("charts/podinfo", &tag).await.unwrap();
    let info = client.chart_info("charts/podinfo", &digest).await.unwrap();
    assert_eq!(info.name, "podinfo");
    assert_eq!(info.version, "6.10.0+build.1");
    assert!(info.app_version.is_some());
    let created = info
        .created
        .expect("Helm writes when it packaged the chart");
    let age = jiff::Timestamp::now().as_second() - created.as_second();
    assert!((0..600).contains(&age), "created {created}");
    assert_eq!(
        info.source.as_deref(),
        Some("https://github.com/stefanprodan/podinfo")
    );
}

/// An image is not a chart: its digest is refused, saying what its config is.
#[tokio::test]
async fn an_image_is_not_a_chart() {
    needs!(Registry, Helm);
    let registry = Registry::start(Auth::None).await;
    let digest = push_image(
        &registry.url(),
        &PushAuth::None,
        "charts/podinfo",
        Some("6.9.0"),
        "2026-01-01T00:00:00Z",
        "linux/amd64",
    )
    .await;
    let refused = client(&registry)
        .chart_info("charts/podinfo", &digest)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains(
            "is not a Helm chart: its config is `application/vnd.oci.image.config.v1+json`"
        ),
        "{refused}"
    );
}
