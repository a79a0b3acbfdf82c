//! Properties of tag selection that must hold for any registry content: the winner is always
//! allowed by every rule, is the best of the eligible tags, and does not depend on the order the
//! registry listed the tags in.

use image_updater::select::{
    Candidate, Constraint, Extract, Policy, Strategy as Pick, TagPattern, Version, select,
};
use proptest::prelude::*;

fn version_tag() -> impl Strategy<Value = String> {
    (
        prop::bool::ANY,
        0u64..4,
        0u64..4,
        prop::option::of(0u64..4),
        prop::option::of(prop::sample::select(vec![
            "rc.1", "rc.2", "alpha", "beta.3", "0",
        ])),
    )
        .prop_map(|(v, major, minor, patch, pre)| {
            let mut s = format!("{}{major}.{minor}", if v { "v" } else { "" });
            if let Some(p) = patch {
                s.push_str(&format!(".{p}"));
            }
            if let Some(pre) = pre {
                s.push_str(&format!("-{pre}"));
            }
            s
        })
}

fn any_tag() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => version_tag(),
        1 => "main-[0-9a-f]{7}",
        1 => "[a-z0-9._-]{1,12}",
        1 => "[0-9]{1,4}",
    ]
}

fn constraint() -> impl Strategy<Value = String> {
    let comparator = (
        prop::sample::select(vec!["", "=", "!=", ">", "<", ">=", "<=", "~", "^"]),
        0u64..4,
        prop::option::of(prop::sample::select(vec!["0", "1", "2", "x"])),
        prop::option::of(prop::sample::select(vec!["0", "2", "x"])),
        prop::option::of(prop::sample::select(vec!["rc.1", "0"])),
    )
        .prop_map(|(op, major, minor, patch, pre)| {
            let mut s = format!("{op}{major}");
            if let Some(m) = minor {
                s.push_str(&format!(".{m}"));
                if let Some(p) = patch {
                    s.push_str(&format!(".{p}"));
                }
            }
            if let (Some(pre), false) = (pre, s.contains('x')) {
                s.push_str(&format!("-{pre}"));
            }
            s
        });
    let group = prop::collection::vec(comparator, 1..3).prop_map(|c| c.join(" "));
    prop::collection::vec(group, 1..3).prop_map(|g| g.join(" || "))
}

fn patterns() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "regexp:^v",
            "regexp:-rc",
            "v1.*",
            "*-alpha",
            "regexp:^[0-9]+$",
            "main-*",
        ]),
        0..2,
    )
    .prop_map(|v| v.into_iter().map(String::from).collect())
}

fn compile(list: &[String]) -> Vec<TagPattern> {
    list.iter().map(|p| TagPattern::parse(p).unwrap()).collect()
}

fn candidates(tags: &[String]) -> Vec<Candidate> {
    tags.iter()
        .enumerate()
        .map(|(i, t)| Candidate {
            // Few distinct times, so ties happen and the tag must break them.
            created: Some(
                jiff::Timestamp::from_second(1_700_000_000 + (i as i64 * 7919) % 5).unwrap(),
            ),
            ..Candidate::new(t.clone())
        })
        .collect()
}

fn winner(policy: &Policy, list: &[Candidate]) -> Option<String> {
    select(policy, list).selected.map(|i| list[i].tag.clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn semver_never_selects_outside_the_rules(
        tags in prop::collection::vec(any_tag(), 0..40),
        c in constraint(),
        include_pre in prop::bool::ANY,
        allow in patterns(),
        ignore in patterns(),
    ) {
        let constraint = Constraint::parse(&c).unwrap();
        let policy = Policy {
            strategy: Pick::Semver { constraint: constraint.clone(), include_prerelease: include_pre },
            names: image_updater::select::Names::ImageTags,
            allow: compile(&allow),
            ignore: compile(&ignore),
            extract: None,
        };
        let list = candidates(&tags);
        let selection = select(&policy, &list);
        for (candidate, verdict) in list.iter().zip(&selection.verdicts) {
            if verdict.eligible {
                let v = Version::parse(&candidate.tag).unwrap();
                prop_assert!(constraint.matches(&v, include_pre));
                prop_assert!(!policy.ignore.iter().any(|p| p.is_match(&candidate.tag)));
                prop_assert!(policy.allow.is_empty() || policy.allow.iter().any(|p| p.is_match(&candidate.tag)));
            } else {
                prop_assert!(!verdict.reason.is_empty());
            }
        }
        match selection.selected {
            Some(i) => {
                prop_assert!(selection.verdicts[i].eligible);
                let best = Version::parse(&list[i].tag).unwrap();
                for (candidate, verdict) in list.iter().zip(&selection.verdicts) {
                    if verdict.eligible {
                        prop_assert!(Version::parse(&candidate.tag).unwrap() <= best);
                    }
                }
            }
            None => prop_assert!(selection.verdicts.iter().all(|v| !v.eligible)),
        }
    }

    #[test]
    fn selection_does_not_depend_on_tag_order(
        tags in prop::collection::vec(any_tag(), 1..40),
        c in constraint(),
        ignore in patterns(),
        seed in any::<u64>(),
        which in 0usize..4,
    ) {
        let strategy = match which {
            0 => Pick::Semver { constraint: Constraint::parse(&c).unwrap(), include_prerelease: false },
            1 => Pick::NewestBuild,
            2 => Pick::Alphabetical,
            _ => Pick::Numerical,
        };
        let policy = Policy { strategy, names: image_updater::select::Names::ImageTags, allow: vec![], ignore: compile(&ignore), extract: None };
        let list = candidates(&tags);
        let mut shuffled = list.clone();
        // A deterministic shuffle from the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(winner(&policy, &list), winner(&policy, &shuffled));
    }

    #[test]
    fn extract_keys_rank_numerically(stamps in prop::collection::vec(0u64..5_000_000, 1..30)) {
        let mut policy = Policy::new(Pick::Numerical);
        policy.extract = Some(Extract::parse(r"^main-(?P<ts>\d+)-[a-f0-9]+$").unwrap());
        let tags: Vec<String> = stamps.iter().map(|s| format!("main-{s}-abc")).collect();
        let list = candidates(&tags);
        let max = stamps.iter().max().unwrap();
        prop_assert_eq!(winner(&policy, &list), Some(format!("main-{max}-abc")));
    }
}
