//! Values marked by a comment on their line, so any YAML can say where an image goes without a
//! path in the config:
//!
//! ```yaml
//! image: ghcr.io/org/api:v1.4.0 # image-updater: api
//! tag: v1.4.0                   # image-updater: api:tag
//! repository: ghcr.io/org/api   # image-updater: api:name
//! digest: ""                    # image-updater: api:digest
//! ```
//!
//! Flux's setter comments are read too (`# {"$imagepolicy": "flux-system:podinfo"}`, with
//! `:tag`, `:name` or `:digest`), so a repository automated by Flux's image-automation
//! controller moves over without touching its files. Ownership applies as everywhere: a marked
//! full reference or name must name the image.

use super::{
    Desired, Kind, Owner, at_line, describe_old, is_empty_value, key_at, node_path, set_value,
    split_image,
};
use crate::config::Marker;
use crate::writeback::yaml::{self, Node, Patch, Step, Yaml, YamlError, error};

/// Which part of the reference a marked value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Full,
    Tag,
    Name,
    Digest,
}

/// The marker of a comment, if it is one: its name and part.
fn parse_marker(comment: &str, flux: bool) -> Option<(String, Part)> {
    let text = comment.trim();
    let value = if flux {
        let json: serde_json::Value = serde_json::from_str(text).ok()?;
        json.get("$imagepolicy")?.as_str()?.to_string()
    } else {
        text.strip_prefix("image-updater:")?.trim().to_string()
    };
    // Flux names are `namespace:policy`; ours are an alias. A known suffix names the part.
    let parts = if flux { 2 } else { 1 };
    let pieces: Vec<&str> = value.split(':').collect();
    if pieces.len() == parts {
        return Some((value, Part::Full));
    }
    if pieces.len() == parts + 1 {
        let part = match *pieces.last()? {
            "tag" => Part::Tag,
            "name" => Part::Name,
            "digest" => Part::Digest,
            _ => return None,
        };
        return Some((pieces[..parts].join(":"), part));
    }
    None
}

/// Every scalar value (not key) in `node`, with its steps.
fn scalars<'a>(node: &'a Node, steps: &mut Vec<Step>, out: &mut Vec<(&'a Node, Vec<Step>)>) {
    let mut visit = |step: Step, child: &'a Node, out: &mut Vec<(&'a Node, Vec<Step>)>| {
        steps.push(step);
        match child {
            Node::Scalar { .. } => out.push((child, steps.clone())),
            _ => scalars(child, steps, out),
        }
        steps.pop();
    };
    match node {
        Node::Map { entries, .. } => {
            for (i, (_, v)) in entries.iter().enumerate() {
                visit(Step::Value(i), v, out);
            }
        }
        Node::Seq { items, .. } => {
            for (i, item) in items.iter().enumerate() {
                visit(Step::Item(i), item, out);
            }
        }
        _ => {}
    }
}

fn doc_of(yaml: &Yaml, document: usize) -> &Node {
    &yaml.documents[document]
}

/// Whether the value at `steps` sits under a key that holds a tag (`newTag`, `tag`,
/// `imageTag`), where a whole reference cannot go.
fn holds_tag(doc: &Node, steps: &[Step]) -> bool {
    key_at(doc, steps).is_some_and(|k| k == "tag" || k.ends_with("Tag") || k.ends_with("_tag"))
}

/// The comment after the value's end on its line, if nothing else stands between.
fn comment_after<'s>(source: &'s str, node: &Node) -> Option<&'s str> {
    let Node::Scalar { span, .. } = node else {
        return None;
    };
    let end = yaml::end_of_line(source, span.end);
    let rest = source[span.end..end].trim_start_matches([' ', '\t']);
    rest.strip_prefix('#')
        .map(|c| c.trim_end_matches(['\n', '\r']))
}

/// The values marked by this comment.
pub(super) struct Marked<'a>(pub &'a Marker);

impl Kind for Marked<'_> {
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &Desired,
        patch: &mut Patch,
    ) -> Result<String, YamlError> {
        let marker = self.0;
        let mut marked = Vec::new();
        for (document, doc) in yaml.documents.iter().enumerate() {
            let mut found = Vec::new();
            scalars(doc, &mut Vec::new(), &mut found);
            for (node, steps) in found {
                let Some(comment) = comment_after(source, node) else {
                    continue;
                };
                if let Some((name, part)) = parse_marker(comment, marker.flux)
                    && name == marker.name
                {
                    marked.push((document, node, steps, part));
                }
            }
        }
        let form = if marker.flux {
            format!("# {{\"$imagepolicy\": \"{}\"}}", marker.name)
        } else {
            format!("# image-updater: {}", marker.name)
        };
        if marked.is_empty() {
            return Err(error(format!(
                "no value is marked `{form}` (or with :tag, :name, :digest)"
            )));
        }
        let writes_digest = marked
            .iter()
            .any(|(_, _, _, p)| matches!(p, Part::Full | Part::Digest));
        let mut olds = Vec::new();
        for (document, node, steps, part) in marked {
            let current = node.as_str().unwrap_or_default();
            let path = node_path(document, &steps);
            let what = format!("the value marked `{form}`");
            let at = |m: String| at_line(source, node.start(), m);
            let doc = doc_of(yaml, document);
            let mut set =
                |value: &str| set_value(source, doc, patch, node, path.clone(), value, &what);
            match part {
                Part::Full => {
                    let (repo, tag, digest) = split_image(current);
                    let repo = match desired.owner(repo) {
                        Owner::Ours => repo.to_string(),
                        Owner::Replaced => desired.written.clone(),
                        // `newTag: main-eb4d2f96 # {"$imagepolicy": "ns:app"}`: the marker asks
                        // for a whole reference on a key that holds a tag. Writing one there would
                        // render `app:ghcr.io/org/app:…`; the marker wants its `:tag` form.
                        Owner::Other if holds_tag(doc_of(yaml, document), &steps) => {
                            let tag_form = if marker.flux {
                                format!("# {{\"$imagepolicy\": \"{}:tag\"}}", marker.name)
                            } else {
                                format!("# image-updater: {}:tag", marker.name)
                            };
                            return Err(at(format!(
                                "{what} is {current}, on a key that holds a tag, but the marker asks for the whole image reference: nothing written. Mark it `{tag_form}` to keep the tag there"
                            )));
                        }
                        Owner::Other => return Err(at(desired.not_ours(&what, current).message)),
                    };
                    set(&format!("{repo}{}", desired.suffix()))?;
                    olds.push(describe_old(tag, digest));
                }
                Part::Tag => {
                    if desired.digest.is_some() && !writes_digest {
                        return Err(at(format!(
                            "{what}:tag takes the tag only, and the deployment pins a digest: mark the digest's value with `:digest` too"
                        )));
                    }
                    let tag = desired.tag.clone().unwrap_or_default();
                    set(&tag)?;
                    olds.push(describe_old(Some(current), None));
                }
                Part::Name => match desired.owner(current) {
                    Owner::Ours => {}
                    Owner::Replaced => set(&desired.written)?,
                    Owner::Other => return Err(at(desired.not_ours(&what, current).message)),
                },
                Part::Digest => {
                    let digest = desired.digest.clone().unwrap_or_default();
                    set(&digest)?;
                    if !is_empty_value(current) {
                        olds.push(current.to_string());
                    }
                }
            }
        }
        olds.dedup();
        Ok(if olds.is_empty() {
            "(none)".into()
        } else {
            olds.join(", ")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_comments_in_both_forms() {
        assert_eq!(
            parse_marker(" image-updater: api", false),
            Some(("api".into(), Part::Full))
        );
        assert_eq!(
            parse_marker(" image-updater: api:tag ", false),
            Some(("api".into(), Part::Tag))
        );
        assert_eq!(parse_marker("image-updater: api:other", false), None);
        assert_eq!(
            parse_marker(r#" {"$imagepolicy": "flux-system:podinfo"}"#, true),
            Some(("flux-system:podinfo".into(), Part::Full))
        );
        assert_eq!(
            parse_marker(r#" {"$imagepolicy": "flux-system:podinfo:name"}"#, true),
            Some(("flux-system:podinfo".into(), Part::Name))
        );
        assert_eq!(parse_marker(r#" {"$imagepolicy": "podinfo"}"#, true), None);
    }
}
