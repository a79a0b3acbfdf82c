//! A chart repository's `index.yaml`, read as a stream of YAML events: only the entries of
//! the charts asked for are kept, so an index of tens of megabytes (a large repository's)
//! costs its bytes and the few versions wanted, not a tree of every chart it lists.

use std::collections::{BTreeSet, HashMap};

use saphyr_parser::{Event, Parser};

/// One version of a chart, as the index lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChartEntry {
    pub version: String,
    pub app_version: Option<String>,
    /// When the chart was packaged (RFC 3339, as Helm writes it), if the index says.
    pub created: Option<jiff::Timestamp>,
    /// The package's `sha256` digest, hex.
    pub digest: Option<String>,
    /// The chart's maintainers marked it deprecated.
    pub deprecated: bool,
    pub urls: Vec<String>,
}

/// Why an index could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error("not a chart repository index: {0}")]
    Shape(String),
}

/// Where the reader is in the index.
#[derive(Debug)]
enum At {
    /// Inside the top-level mapping, expecting a key (or reading the value of `key`).
    Top,
    /// Inside `entries`, expecting a chart's name.
    Entries,
    /// Inside a wanted chart's list of versions.
    Versions(String),
    /// Inside one version's mapping.
    Version(String, ChartEntry, Option<String>),
    /// Inside a version's `urls` list.
    Urls(String, ChartEntry),
}

/// The versions of each chart in `wanted` that `text` (an `index.yaml`) lists; a wanted
/// chart it does not list is absent from the answer.
pub fn read(
    text: &str,
    wanted: &BTreeSet<String>,
) -> Result<HashMap<String, Vec<ChartEntry>>, IndexError> {
    let mut out: HashMap<String, Vec<ChartEntry>> = HashMap::new();
    let mut parser = Parser::new_from_str(text);
    let mut at: Vec<At> = Vec::new();
    // A key read in the top mapping or in `entries`, waiting for its value.
    let mut key: Option<String> = None;
    // Depth of a subtree being skipped (a chart not wanted, an unknown field's value).
    let mut skipping = 0usize;
    while let Some(event) = parser.next_event() {
        let (event, _) = event.map_err(|e| IndexError::Yaml(e.to_string()))?;
        if skipping > 0 {
            match event {
                Event::MappingStart(..) | Event::SequenceStart(..) => skipping += 1,
                Event::MappingEnd | Event::SequenceEnd => skipping -= 1,
                _ => {}
            }
            continue;
        }
        match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::Alias(_) => {
                return Err(IndexError::Shape(
                    "an alias (*name) where Helm writes none".into(),
                ));
            }
            Event::MappingStart(..) => match at.last_mut() {
                None => at.push(At::Top),
                Some(At::Top) if key.as_deref() == Some("entries") => {
                    key = None;
                    at.push(At::Entries);
                }
                Some(At::Versions(name)) => {
                    let name = name.clone();
                    at.push(At::Version(name, ChartEntry::default(), None));
                }
                _ => {
                    key = None;
                    if let Some(At::Version(_, _, field)) = at.last_mut() {
                        *field = None;
                    }
                    skipping = 1;
                }
            },
            Event::SequenceStart(..) => match at.last_mut() {
                Some(At::Entries) => match key.take() {
                    Some(name) if wanted.contains(&name) => at.push(At::Versions(name)),
                    _ => skipping = 1,
                },
                Some(At::Version(name, entry, field)) if field.as_deref() == Some("urls") => {
                    let (name, entry) = (name.clone(), std::mem::take(entry));
                    at.pop();
                    at.push(At::Urls(name, entry));
                }
                _ => {
                    key = None;
                    if let Some(At::Version(_, _, field)) = at.last_mut() {
                        *field = None;
                    }
                    skipping = 1;
                }
            },
            Event::SequenceEnd => match at.pop() {
                Some(At::Urls(name, entry)) => at.push(At::Version(name, entry, None)),
                Some(At::Versions(_)) => {}
                other => {
                    return Err(IndexError::Shape(format!(
                        "a list ends where {other:?} was read"
                    )));
                }
            },
            Event::MappingEnd => match at.pop() {
                Some(At::Version(name, entry, _)) => {
                    if entry.version.is_empty() {
                        return Err(IndexError::Shape(format!(
                            "a version of {name} has no `version`"
                        )));
                    }
                    out.entry(name).or_default().push(entry);
                }
                Some(At::Entries) | Some(At::Top) => {}
                other => {
                    return Err(IndexError::Shape(format!(
                        "a mapping ends where {other:?} was read"
                    )));
                }
            },
            Event::Scalar(value, ..) => match at.last_mut() {
                Some(At::Top) | Some(At::Entries) => {
                    // A key; or a scalar value (`apiVersion: v1`, a chart listed as `name: ~`).
                    if key.take().is_none() {
                        key = Some(value.into_owned());
                    }
                }
                Some(At::Version(_, entry, field)) => match field.take() {
                    None => *field = Some(value.into_owned()),
                    Some(name) => {
                        let value = value.into_owned();
                        match name.as_str() {
                            "version" => entry.version = value,
                            "appVersion" => entry.app_version = Some(value),
                            "created" => entry.created = value.parse().ok(),
                            "digest" => entry.digest = Some(value),
                            "deprecated" => entry.deprecated = value == "true",
                            _ => {}
                        }
                    }
                },
                Some(At::Urls(_, entry)) => entry.urls.push(value.into_owned()),
                _ => {
                    return Err(IndexError::Shape(
                        "a value where a mapping was expected".into(),
                    ));
                }
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"apiVersion: v1
entries:
  other:
  - apiVersion: v2
    name: other
    version: 9.9.9
    urls: [other-9.9.9.tgz]
  podinfo:
  - apiVersion: v2
    appVersion: 6.9.2
    created: "2026-11-01T10:00:00.123456789Z"
    description: Podinfo Helm chart for Kubernetes
    digest: 0123abcd
    maintainers:
    - email: x@example.com
      name: x
    name: podinfo
    urls:
    - https://stefanprodan.github.io/podinfo/podinfo-6.9.2.tgz
    version: 6.9.2
  - deprecated: true
    name: podinfo
    urls:
    - podinfo-6.0.0.tgz
    version: 6.0.0
generated: "2026-11-01T10:00:00Z"
"#;

    #[test]
    fn only_the_charts_asked_for_are_kept() {
        let wanted = BTreeSet::from(["podinfo".to_string(), "absent".to_string()]);
        let read = read(INDEX, &wanted).unwrap();
        assert_eq!(read.len(), 1);
        let versions = &read["podinfo"];
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0].version, "6.9.2");
        assert_eq!(versions[0].app_version.as_deref(), Some("6.9.2"));
        assert_eq!(versions[0].digest.as_deref(), Some("0123abcd"));
        assert_eq!(
            versions[0].created.map(|t| t.as_second()),
            Some(
                "2026-11-01T10:00:00Z"
                    .parse::<jiff::Timestamp>()
                    .unwrap()
                    .as_second()
            )
        );
        assert_eq!(
            versions[0].urls,
            ["https://stefanprodan.github.io/podinfo/podinfo-6.9.2.tgz"]
        );
        assert!(versions[1].deprecated && !versions[0].deprecated);
    }

    #[test]
    fn what_is_not_an_index_is_said() {
        let wanted = BTreeSet::from(["a".to_string()]);
        assert!(matches!(
            read("entries:\n  a:\n  - name: a\n", &wanted),
            Err(IndexError::Shape(_))
        ));
        assert!(matches!(
            read("entries: [", &wanted),
            Err(IndexError::Yaml(_))
        ));
        assert!(
            read("apiVersion: v1\nentries: {}\n", &wanted)
                .unwrap()
                .is_empty()
        );
    }
}
