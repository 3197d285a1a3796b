//! Hot reload of mounted files.

use std::path::{Path, PathBuf};

use super::error::Error;
use crate::tls;

/// Watches the directory that holds `file` and calls `on_change` after changes settle. The
/// directory, not the file: a Secret or ConfigMap volume swaps its `..data` symlink.
pub fn watch_directory_of(
    file: &Path,
    on_change: impl Fn() + Send + 'static,
) -> Result<notify::RecommendedWatcher, Error> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    tls::watch(dir.clone(), on_change).map_err(|source| Error::Watch {
        dir,
        file: file.to_path_buf(),
        source,
    })
}
