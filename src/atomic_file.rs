//! Replacing a file whole: a temporary file beside it, then a rename, so that a reader (the
//! metrics collector, an operator reviewing a saved plan) never sees half a file.

use std::path::Path;

use color_eyre::eyre::{Result, WrapErr};

/// Replaces `path` with `bytes` atomically.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .wrap_err_with(|| format!("cannot create a temporary file in {}", dir.display()))?;
    std::io::Write::write_all(&mut temp, bytes)
        .wrap_err_with(|| format!("cannot write a temporary file in {}", dir.display()))?;
    temp.persist(path)
        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
