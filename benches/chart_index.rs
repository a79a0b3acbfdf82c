//! Reading a large chart repository's index: 30 MB, about 39,000 chart versions across 2,800
//! charts (the size of the largest public indexes), of which one chart is wanted. The index
//! is read as a stream of YAML events keeping only that chart, so the cost is the bytes, not
//! a tree of every chart.
//!
//! Run with `cargo bench --bench chart_index`; figures go into docs/benchmarks.md.

use std::collections::BTreeSet;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use image_updater::charts::index::read;

/// An index shaped like Helm's: per chart, versions with their metadata and urls.
fn index(target_bytes: usize) -> (String, usize) {
    let mut text = String::from("apiVersion: v1\nentries:\n");
    let mut versions = 0usize;
    let mut chart = 0usize;
    while text.len() < target_bytes {
        text.push_str(&format!("  chart-{chart:04}:\n"));
        for v in 0..14 {
            versions += 1;
            text.push_str(&format!(
                "  - apiVersion: v2\n    appVersion: {v}.0.0\n    created: \"2026-0{m}-0{d}T10:00:00.123456789Z\"\n    \
                 dependencies:\n    - name: common\n      repository: oci://registry-1.docker.io/bitnamicharts\n      \
                 tags:\n      - bitnami-common\n      version: 2.x.x\n    description: A chart that does one thing well, \
                 written out at the length real descriptions have, for a realistic index.\n    \
                 digest: {:064x}\n    home: https://example.com/charts/chart-{chart:04}\n    keywords:\n    - one\n    \
                 - two\n    maintainers:\n    - name: Maintainers\n      url: https://example.com\n    name: chart-{chart:04}\n    \
                 sources:\n    - https://github.com/example/chart-{chart:04}\n    urls:\n    \
                 - https://charts.example.com/chart-{chart:04}-{v}.{chart}.0.tgz\n    version: {v}.{chart}.0\n",
                versions,
                m = 1 + v % 9,
                d = 1 + v % 9,
            ));
        }
        chart += 1;
    }
    text.push_str("generated: \"2026-12-01T00:00:00Z\"\n");
    (text, versions)
}

fn bench(c: &mut Criterion) {
    let (text, versions) = index(30_000_000);
    let wanted = BTreeSet::from(["chart-0500".to_string()]);
    assert_eq!(read(&text, &wanted).unwrap()["chart-0500"].len(), 14);
    let mut group = c.benchmark_group(format!("chart_index_{}_versions", versions));
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(10);
    group.bench_function("read_one_chart_of_30MB", |b| {
        b.iter(|| read(black_box(&text), black_box(&wanted)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
