//! Free and total space of a log directory's file system, for the disk-full alert.

use std::io;
use std::path::Path;

/// The file system holding a log directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDirSpace {
    pub total_bytes: u64,
    /// Space available to the broker's (unprivileged) user, as `df` shows it.
    pub free_bytes: u64,
}

/// `statvfs` on `path`. Cheap (no I/O beyond the file system's superblock), so the snapshot
/// source may call it on every scrape.
pub fn log_dir_space(path: &Path) -> io::Result<LogDirSpace> {
    let s = rustix::fs::statvfs(path).map_err(io::Error::from)?;
    let fragment = s.f_frsize.max(1);
    Ok(LogDirSpace {
        total_bytes: s.f_blocks.saturating_mul(fragment),
        free_bytes: s.f_bavail.saturating_mul(fragment),
    })
}
