//! Selection speed over large tag lists: a registry with 100,000 tags (a busy CI pushing one
//! per commit for years) must not make a poll cycle slow.
//!
//! Run with `cargo bench --bench selection`; figures go into docs/benchmarks.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use image_updater::select::{Candidate, Constraint, Policy, Strategy, TagPattern, select};

/// A realistic mix: releases, release candidates, and CI builds.
fn tags(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| {
            let tag = match i % 4 {
                0 => format!("v{}.{}.{}", i % 7, (i / 7) % 50, i / 350),
                1 => format!("v{}.{}.{}-rc.{}", i % 7, (i / 7) % 50, i / 350, i % 5),
                2 => format!("main-{:07x}", i * 2654435761 % 0xfffffff),
                _ => format!("{}.{}", i % 3, i / 3),
            };
            Candidate {
                created: Some(
                    jiff::Timestamp::from_second(1_600_000_000 + (i as i64 * 37) % 90_000_000)
                        .unwrap(),
                ),
                ..Candidate::new(tag)
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let list = tags(100_000);
    let mut group = c.benchmark_group("select_100k_tags");
    group.throughput(Throughput::Elements(list.len() as u64));
    group.sample_size(20);

    let prod = Policy {
        strategy: Strategy::Semver {
            constraint: Constraint::parse(">=1.0.0 <2.0.0").unwrap(),
            include_prerelease: false,
        },
        names: image_updater::select::Names::ImageTags,
        allow: vec![],
        ignore: vec![TagPattern::parse("regexp:(-rc|-alpha|-beta)").unwrap()],
        extract: None,
    };
    group.bench_function("semver_with_ignore_regexp", |b| {
        b.iter(|| select(black_box(&prod), black_box(&list)))
    });

    let staging = Policy::new(Strategy::Semver {
        constraint: Constraint::parse(">=1.0.0-rc.0 || ^3").unwrap(),
        include_prerelease: false,
    });
    group.bench_function("semver_prerelease_groups", |b| {
        b.iter(|| select(black_box(&staging), black_box(&list)))
    });

    let mut dev = Policy::new(Strategy::NewestBuild);
    dev.allow = vec![TagPattern::parse("regexp:^main-[a-f0-9]{7}$").unwrap()];
    group.bench_function("newest_build_with_allow_regexp", |b| {
        b.iter(|| select(black_box(&dev), black_box(&list)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
