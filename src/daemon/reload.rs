//! Noticing that the config changed: the file is watched and SIGHUP asks explicitly.
//!
//! The watch is on the file's directory, not the file: editors that save by writing a new file
//! and renaming it over the old one, `sed -i`, and Kubernetes ConfigMap volumes (which swap a
//! `..data` symlink) all replace the inode a file watch would follow.
//!
//! Only a finished file is a reason to reload: one a writer has closed after writing
//! (inotify's close-after-write), or one renamed into place (an editor's save, a ConfigMap's
//! `..data` swap). Writes alone are not: a writer that pauses between two parts of the file
//! (a slow pipe, a config tool) leaves a first part that may itself be a valid config, without
//! the constraint the rest adds. The scheduler then also waits for the bytes to stay the same
//! (a second guard, for writers that close between parts) and compares the content.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The file (or the directory entry pointing to it) changed.
    File,
    /// SIGHUP: reload even if the file looks the same.
    Signal,
}

/// Watches `config`'s directory and sends [`Trigger::File`] for changes that may concern it.
/// The returned watcher stops watching when dropped.
pub fn watch(
    config: &Path,
    tx: mpsc::Sender<Trigger>,
) -> notify::Result<notify::RecommendedWatcher> {
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    let dir = config
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = config
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !finished(&event.kind) {
            return;
        }
        let concerns_us = event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n == name || n.to_string_lossy().starts_with("..data"))
        });
        if concerns_us {
            // A full channel already holds a trigger: this one adds nothing.
            let _ = tx.try_send(Trigger::File);
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Whether an event says a file is complete: closed after writing, or renamed into place.
/// Creation, writes, attribute changes and opens are not (a file is created empty and written
/// after).
fn finished(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(_))
    )
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, MetadataKind, RenameMode};

    use super::*;

    #[test]
    fn only_a_closed_or_renamed_file_is_finished() {
        for (kind, done) in [
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                true,
            ),
            (EventKind::Modify(ModifyKind::Name(RenameMode::To)), true),
            (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), true),
            (EventKind::Modify(ModifyKind::Data(DataChange::Any)), false),
            (EventKind::Modify(ModifyKind::Any), false),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                false,
            ),
            (EventKind::Create(CreateKind::File), false),
            (EventKind::Access(AccessKind::Open(AccessMode::Any)), false),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                false,
            ),
        ] {
            assert_eq!(finished(&kind), done, "{kind:?}");
        }
    }
}
