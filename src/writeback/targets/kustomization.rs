//! A kustomization's `images:` entry, written the way `kustomize edit set image NAME=NEW:TAG@DIGEST`
//! writes it, so that what `kustomize build` renders is what the commit says: a tag without a
//! digest drops the old digest, a digest without a tag drops the tag, and `newName` names the
//! image whenever `name` alone would not. New entries get kustomize's key order (digest, name,
//! newName, newTag); existing entries keep theirs.

use super::{
    Desired, Kind, Owner, add_key, at_line, describe_old, entry, is_empty_value, node_path, scalar,
    single_document,
};
use crate::writeback::yaml::{self, Node, Patch, Plain, Step, Yaml, YamlError, error};

/// An `images:` entry, matched by `name`.
pub(super) struct Kustomization<'a> {
    pub name: &'a str,
}

impl Kind for Kustomization<'_> {
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &Desired,
        patch: &mut Patch,
    ) -> Result<String, YamlError> {
        let name = self.name;
        let root = single_document(yaml, "the kustomization")?;
        let Node::Map {
            flow: false,
            entries: root_entries,
            ..
        } = root
        else {
            return Err(error("the kustomization is not a block mapping"));
        };
        let fields = new_entry(name, desired);
        let Some((images_index, images)) = entry(source, root, "images")? else {
            // No `images:` yet: the list goes at the end of the document.
            let at = document_end(source, root);
            let mut text = String::new();
            if at > 0 && !source[..at].ends_with('\n') {
                text.push('\n');
            }
            text.push_str("images:\n");
            text.push_str(&item_lines(&fields, 0, 2));
            patch.add_entry(
                at,
                text,
                node_path(0, &[]),
                "images",
                Plain::Seq(vec![plain_item(&fields)]),
            );
            return Ok("(none)".into());
        };
        let images_path = [Step::Value(images_index)];
        let key = &root_entries[images_index].0;
        match images {
            // `images:`, `images: ~`, `images: []`: the list replaces the empty value.
            Node::Scalar { value, .. } if is_empty_value(value) => {
                fill_empty(source, key, images, &fields, patch, &images_path)?;
                return Ok("(none)".into());
            }
            Node::Seq {
                items,
                flow: true,
                start,
                ..
            } if items.is_empty() => {
                let close = source[*start..]
                    .find(']')
                    .map(|i| start + i + 1)
                    .ok_or_else(|| error("`images: [` is not closed"))?;
                let value = Node::Scalar {
                    value: String::new(),
                    style: yaml::Style::Plain,
                    span: *start..close,
                    decorated: false,
                    tagged: false,
                    anchor: 0,
                };
                fill_empty(source, key, &value, &fields, patch, &images_path)?;
                return Ok("(none)".into());
            }
            Node::Seq { .. } => {}
            _ => {
                return Err(at_line(source, images.start(), "`images:` is not a list"));
            }
        }
        let Node::Seq { items, flow, .. } = images else {
            unreachable!("matched above")
        };
        let mut found = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if scalar(source, item, "name")? == Some(name) {
                found.push((i, item));
            }
        }
        // No entry under the image's own name, but one that renames another name to it
        // (`name: app`, `newName: ghcr.io/org/app`): that entry is what deploys the image, and a
        // second entry under the image's name would never apply. Only when the target did not name
        // another entry, and only when exactly one entry renames to the image.
        if found.is_empty() && desired.owner(name) == Owner::Ours {
            let mut renamed = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(new_name) = scalar(source, item, "newName")?
                    && desired.owner(new_name) == Owner::Ours
                    && let Some(entry_name) = scalar(source, item, "name")?
                {
                    renamed.push((i, item, entry_name));
                }
            }
            if let [(i, item, entry_name)] = renamed.as_slice() {
                let mut path = images_path.to_vec();
                path.push(Step::Item(*i));
                return update(source, entry_name, item, &path, desired, patch);
            }
        }
        match found.as_slice() {
            [] if *flow => Err(at_line(
                source,
                images.start(),
                format!(
                    "`images:` has no entry named {name}, and entries are added only to a block list; add one by hand"
                ),
            )),
            [] => {
                // A new entry after the last one, at the same indentation.
                let last = items.last().expect("an empty block list is a scalar");
                let dash_col = column_of_dash(source, last.start());
                let key_col = yaml::column(source, last.start()).max(dash_col + 2);
                let at = yaml::end_of_line(source, last.end());
                let mut text = String::new();
                if at == source.len() && !source.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&item_lines(&fields, dash_col, key_col));
                patch.add_item(at, text, node_path(0, &images_path), plain_item(&fields));
                Ok("(none)".into())
            }
            [(i, item)] => {
                let mut path = images_path.to_vec();
                path.push(Step::Item(*i));
                update(source, name, item, &path, desired, patch)
            }
            [(_, a), (_, b), ..] => Err(error(format!(
                "`images:` has two entries named {name}, on lines {} and {}: kustomize applies both in turn and the last one wins, so nothing is written; keep one",
                yaml::line(source, a.start()),
                yaml::line(source, b.start())
            ))),
        }
    }
}

/// The entry's keys for `desired`, in kustomize's order.
fn new_entry(name: &str, desired: &Desired) -> Vec<(&'static str, String)> {
    let mut fields = Vec::new();
    if let Some(d) = &desired.digest {
        fields.push(("digest", d.clone()));
    }
    fields.push(("name", name.to_string()));
    if desired.owner(name) != Owner::Ours {
        fields.push(("newName", desired.written.clone()));
    }
    if let Some(t) = &desired.tag {
        fields.push(("newTag", t.clone()));
    }
    fields
}

fn plain_item(fields: &[(&str, String)]) -> Plain {
    Plain::Map(
        fields
            .iter()
            .map(|(k, v)| (Plain::Scalar((*k).into()), Plain::Scalar(v.clone())))
            .collect(),
    )
}

/// `- key: value` lines of a new item, the dash at `dash_col` and the keys at `key_col`.
fn item_lines(fields: &[(&str, String)], dash_col: usize, key_col: usize) -> String {
    let mut text = String::new();
    for (n, (k, v)) in fields.iter().enumerate() {
        let value = yaml::render(v, yaml::Style::Plain);
        if n == 0 {
            let gap = key_col.saturating_sub(dash_col + 1).max(1);
            text.push_str(&format!(
                "{}-{}{k}: {value}\n",
                " ".repeat(dash_col),
                " ".repeat(gap)
            ));
        } else {
            text.push_str(&format!("{}{k}: {value}\n", " ".repeat(key_col)));
        }
    }
    text
}

/// Writes the list in place of an empty `images:` value (`images:`, `images: ~`,
/// `images: []`), on the lines after the key; a comment on the key's line stays there.
fn fill_empty(
    source: &str,
    key: &Node,
    value: &Node,
    fields: &[(&str, String)],
    patch: &mut Patch,
    images_path: &[Step],
) -> Result<(), YamlError> {
    let Node::Scalar { span, .. } = value else {
        return Err(error("internal: not an empty value"));
    };
    let colon = source[key.end()..]
        .find(':')
        .map(|i| key.end() + i + 1)
        .filter(|c| *c <= span.start.max(key.end() + 1))
        .ok_or_else(|| at_line(source, key.start(), "`images:` is not a plain key"))?;
    let end = span.end.max(colon);
    let at = yaml::end_of_line(source, end);
    let col = yaml::column(source, key.start());
    let mut text = String::new();
    if !source[..at].ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&item_lines(fields, col, col + 2));
    patch.replace(
        colon..end,
        String::new(),
        node_path(0, images_path),
        Plain::Seq(vec![plain_item(fields)]),
    );
    patch.splice(at..at, text);
    Ok(())
}

/// Brings an existing entry to `desired`, as `kustomize edit set image` would.
fn update(
    source: &str,
    name: &str,
    item: &Node,
    path: &[Step],
    desired: &Desired,
    patch: &mut Patch,
) -> Result<String, YamlError> {
    if !matches!(item, Node::Map { .. }) {
        return Err(at_line(
            source,
            item.start(),
            format!("images[{name}] is not a mapping"),
        ));
    }
    let new_name = entry(source, item, "newName")?;
    let new_tag = entry(source, item, "newTag")?;
    let digest = entry(source, item, "digest")?;
    if let Some((_, suffix)) = entry(source, item, "tagSuffix")?
        && suffix.as_str().is_some_and(|s| !is_empty_value(s))
    {
        return Err(at_line(
            source,
            suffix.start(),
            format!(
                "images[{name}] has a tagSuffix: kustomize would deploy the new tag with `{}` appended; remove tagSuffix (or put it into the tags)",
                suffix.as_str().unwrap_or_default()
            ),
        ));
    }
    // What kustomize renders for this entry: `newName` when set, else `name`.
    let rendered = new_name
        .and_then(|(_, n)| n.as_str())
        .filter(|n| !is_empty_value(n))
        .unwrap_or(name);
    let rename = match desired.owner(rendered) {
        Owner::Ours => None,
        Owner::Replaced => Some(desired.written.clone()),
        Owner::Other => {
            let line = new_name.map_or(item.start(), |(_, n)| n.start());
            return Err(at_line(
                source,
                line,
                desired.not_ours(&format!("images[{name}]"), rendered),
            ));
        }
    };
    let old = describe_old(
        new_tag.and_then(|(_, t)| t.as_str()),
        digest.and_then(|(_, d)| d.as_str()),
    );
    let mut set = |key: &str,
                   value: Option<&String>,
                   found: Option<(usize, &Node)>|
     -> Result<(), YamlError> {
        let what = format!("images[{name}].{key}");
        match (value, found) {
            (Some(v), Some((i, node))) => {
                let mut p = path.to_vec();
                p.push(Step::Value(i));
                patch.set_scalar(node, node_path(0, &p), v, &what)
            }
            (Some(v), None) => add_key(source, item, node_path(0, path), key, v, patch, &what),
            (None, Some((i, _))) => patch.remove_entry(source, item, node_path(0, path), i, &what),
            (None, None) => Ok(()),
        }
    };
    if rename.is_some() {
        set("newName", rename.as_ref(), new_name)?;
    }
    match (&desired.tag, &desired.digest) {
        (Some(_), _) | (None, Some(_)) => {
            set("newTag", desired.tag.as_ref(), new_tag)?;
            set("digest", desired.digest.as_ref(), digest)?;
        }
        (None, None) => {}
    }
    Ok(old)
}

/// Where the document ends: before a `...` or `---` line after its content, or the end of the
/// file, so that a new key stays in the document.
fn document_end(source: &str, root: &Node) -> usize {
    let mut at = yaml::end_of_line(source, root.end());
    while at < source.len() {
        let line_end = yaml::end_of_line(source, at);
        let line = &source[at..line_end];
        if line.starts_with("...") || line.starts_with("---") {
            return at;
        }
        at = line_end;
    }
    source.len()
}

/// The column of the `-` that introduces the sequence item starting at `item_start`.
fn column_of_dash(source: &str, item_start: usize) -> usize {
    let before = &source[..item_start];
    match before.rfind('-') {
        Some(i) if before[i + 1..].trim().is_empty() => yaml::column(source, i),
        _ => yaml::column(source, item_start).saturating_sub(2),
    }
}
