//! Durable file operations shared by the inbox and the exporter: atomic
//! writes (hidden temporary name → fsync → rename → fsync the folder), and
//! moves that never overwrite (`name`, `name.1`, `name.2`…).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Flushes a folder's entries (new names, renames) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` atomically: a reader sees no file or the
/// whole file, never a part, and the file survives a crash once this returns.
/// An existing file of that name is replaced. The file gets the usual
/// `0666 & !umask` mode (not the temporary file's private 0600), so the
/// systems reading the outbox under another user of the group can read it.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    let path = dir.join(name);
    tmp.persist(&path).map_err(|e| e.error)?;
    sync_dir(dir)?;
    Ok(path)
}

/// Removes the hidden temporaries [`write_atomic`] leaves when the process is
/// killed mid-write (`.<name>.<random>.tmp`). Only call this while no write
/// can be in flight (at start-up, holding the store's lock). Returns how many.
pub fn remove_stale_temporaries(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The first of `name`, `name.1`, `name.2`… for which neither `dir/X` nor
/// any `dir/X<companion>` exists (e.g. the error report beside a file).
pub fn free_name(dir: &Path, name: &str, companions: &[&str]) -> String {
    let taken = |candidate: &str| {
        dir.join(candidate).symlink_metadata().is_ok()
            || companions.iter().any(|c| {
                dir.join(format!("{candidate}{c}"))
                    .symlink_metadata()
                    .is_ok()
            })
    };
    if !taken(name) {
        return name.to_string();
    }
    (1u64..)
        .map(|i| format!("{name}.{i}"))
        .find(|c| !taken(c))
        .unwrap_or_else(|| name.to_string())
}

/// Moves `from` to `dir/name` (the caller picked a free name), durably: the
/// rename is flushed in both folders. Across file systems (EXDEV) the file
/// is copied, fsynced, and only then removed from its source.
pub fn move_file(from: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    let to = dir.join(name);
    match fs::rename(from, &to) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(18) => {
            // EXDEV: a different file system (e.g. an SFTP share mounted apart).
            let tmp = dir.join(format!(".{name}.moving"));
            fs::copy(from, &tmp)?;
            File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &to)?;
            sync_dir(dir)?;
            fs::remove_file(from)?;
        }
        Err(e) => return Err(e),
    }
    sync_dir(dir)?;
    if let Some(parent) = from.parent() {
        sync_dir(parent)?;
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_name_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(free_name(dir.path(), "a.json", &[]), "a.json");
        fs::write(dir.path().join("a.json"), "x").unwrap();
        assert_eq!(free_name(dir.path(), "a.json", &[]), "a.json.1");
        fs::write(dir.path().join("a.json.1.error.txt"), "x").unwrap();
        assert_eq!(free_name(dir.path(), "a.json", &[".error.txt"]), "a.json.2");
    }

    #[test]
    fn atomic_write_honours_the_umask_not_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let p = write_atomic(dir.path(), "out.csv", b"x").unwrap();
        // The same mode as any file created normally under this umask.
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        assert_eq!(mode(&p), mode(&plain), "not the mode of a plain file");
    }

    #[test]
    fn atomic_write_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "out.json", b"{}").unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["out.json"]);
    }
}
