//! Noticing that the config changed: the file is watched and SIGHUP asks explicitly.
//!
//! The watch is on the file's directory, not the file: editors that save by writing a new file
//! and renaming it over the old one, `sed -i`, and Kubernetes ConfigMap volumes (which swap a
//! `..data` symlink) all replace the inode a file watch would follow. Events are debounced by
//! the receiver; a change of content is what matters, and the scheduler compares it.

use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};
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
        if event.kind.is_access() {
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
