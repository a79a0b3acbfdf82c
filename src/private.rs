//! Files only the daemon's user may read. The state dir holds mirrors of private manifest
//! repositories, tokens' scopes and the record of what was deployed, so it is created 0700 and
//! every file written into it 0600, whatever the umask (outside systemd nothing else sets one).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and its parents) and makes `dir` itself 0700.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Why the state dir could not be made, with what to do when it is a permission problem (the
/// default `/var/lib/image-updater` needs root, or systemd's StateDirectory).
pub fn state_dir_error(dir: &Path, e: &std::io::Error) -> String {
    let mut text = format!("cannot create the state dir {}: {e}", dir.display());
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        text.push_str(
            "; run as a user who may write there, or set settings.state_dir (or --state-dir) to a directory you own",
        );
    }
    text
}

/// Writes `bytes` to a 0600 temporary file beside `path`, syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |w| w.write_all(bytes))
}

/// [`write_atomically`], with the content written by `fill` through a buffer: a state file of
/// thousands of images is streamed to disk rather than built in memory first (megabytes at
/// every save). `fill` runs before the sync, so a lock it takes is not held across it.
pub fn write_atomically_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    // An existing temporary file keeps its mode on open: make sure.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let mut buffered = std::io::BufWriter::new(f);
    let written = fill(&mut buffered).and_then(|()| buffered.flush());
    let synced = written.and_then(|()| buffered.get_ref().sync_all());
    if let Err(e) = synced {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}

/// Writes `value` as JSON with [`write_atomically_with`].
pub fn write_json_atomically(
    path: &Path,
    value: impl FnOnce(&mut dyn Write) -> serde_json::Result<()>,
) -> std::io::Result<()> {
    write_atomically_with(path, |w| value(w).map_err(std::io::Error::other))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        // SAFETY: the umask is process-wide; this test restores it.
        let old = unsafe { libc::umask(0o000) };
        create_dir(&state).unwrap();
        write_atomically(&state.join("status.json"), b"{}").unwrap();
        unsafe { libc::umask(old) };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("status.json")), 0o600);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        write_json_atomically(&path, |w| serde_json::to_writer(w, &[1, 2])).unwrap();
        let failed = write_atomically_with(&path, |w| {
            w.write_all(b"[3")?;
            Err(std::io::Error::other("serializer gave up"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[1,2]");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
