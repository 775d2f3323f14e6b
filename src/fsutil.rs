//! Durable file operations shared by the inbox and the exporter, confined to
//! the configured folders (SPEC §9).
//!
//! Every folder we write into is opened as a [`Dir`]: a file descriptor
//! obtained with `O_DIRECTORY | O_NOFOLLOW`, so a folder replaced by a
//! symlink (by an SFTP partner, say) is refused instead of followed, and every
//! later step (creating, renaming, listing, removing) happens *relative to
//! that descriptor* (`openat`, `renameat2`, `unlinkat`…). A folder swapped
//! for a symlink after it was opened therefore cannot redirect a write: it
//! goes to the folder that was checked, never to where the symlink points.
//! Only the configured folders' own parents are followed as given (the
//! administrator chose them).
//!
//! Nothing is ever overwritten: atomic writes (hidden temporary → fsync →
//! rename → fsync the folder) and moves use `renameat2(RENAME_NOREPLACE)`
//! (or `linkat`, which never replaces either, where a file system lacks it),
//! so whatever sits at the target name — a file, a folder, a symlink, a FIFO
//! — is left alone and the caller gets `AlreadyExists`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

/// Flushes a folder's entries (new names, renames) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What is at a name inside a [`Dir`] (never following a symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A regular file of this size.
    File(u64),
    /// A folder, symlink, FIFO, socket or device: never ours.
    Other(&'static str),
}

/// A configured folder (or a sub-folder of one), opened without following
/// symlinks; every operation is relative to it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "file",
        FileType::Directory => "folder",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice | FileType::BlockDevice => "device",
        _ => "special file",
    }
}

/// The error for a folder that is not a real folder: names it and what it is.
fn refused(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!(
            "{} is {what}, not a real folder: refusing to write into it or delete anything there",
            path.display()
        ),
    )
}

/// Maps the error of opening a folder with `O_NOFOLLOW | O_DIRECTORY`:
/// a symlink or a non-folder at the name becomes a [`refused`] error.
fn open_error(e: Errno, path: &Path, what: Option<Entry>) -> io::Error {
    if e == Errno::LOOP || e == Errno::NOTDIR {
        match what {
            Some(Entry::Other(k)) => refused(path, &format!("a {k}")),
            Some(Entry::File(_)) => refused(path, "a file"),
            None => refused(path, "not a folder"),
        }
    } else {
        io::Error::from(e)
    }
}

fn entry_of(stat: &rustix::fs::Stat) -> Entry {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Entry::File(stat.st_size as u64),
        t => Entry::Other(kind_name(t)),
    }
}

/// A hidden temporary name beside `name` in the same folder:
/// `.<name>.<pid>-<n>.tmp` (what [`Dir::remove_stale_temporaries`] removes).
fn temp_name(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(".{name}.{}-{n}-{nanos}.tmp", std::process::id())
}

impl Dir {
    /// Opens an existing folder; a symlink (even to a folder) or anything
    /// else that is not a real folder is refused with an error naming it.
    pub fn open(path: &Path) -> io::Result<Dir> {
        match rustix::fs::openat(CWD, path, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Dir {
                fd,
                path: path.to_path_buf(),
            }),
            Err(e) => {
                let what = fs::symlink_metadata(path).ok().map(|m| {
                    if m.file_type().is_file() {
                        Entry::File(m.len())
                    } else if m.file_type().is_symlink() {
                        Entry::Other("symlink")
                    } else {
                        Entry::Other("special file")
                    }
                });
                Err(open_error(e, path, what))
            }
        }
    }

    /// Opens a configured folder, creating it (and its parents, which the
    /// configuration names) when nothing is at its name. Something that is
    /// not a real folder at its name is refused, never followed.
    pub fn create(path: &Path) -> io::Result<Dir> {
        if let Err(e) = fs::symlink_metadata(path) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
            fs::create_dir_all(path)?;
        }
        Dir::open(path)
    }

    /// Opens the sub-folder `name` (a single file name), creating it if
    /// `create` and nothing is at its name. A symlink at `name` is refused.
    pub fn sub(&self, name: &str, create: bool) -> io::Result<Dir> {
        let path = self.path.join(name);
        if create {
            match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o777)) {
                Ok(()) => self.sync()?,
                Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Dir { fd, path }),
            Err(e) => Err(open_error(e, &path, self.entry(name).ok().flatten())),
        }
    }

    /// The folder's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path/name`, for messages and for callers that report where a file went.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// What is at `name`, without following a symlink; `None` if nothing.
    pub fn entry(&self, name: &str) -> io::Result<Option<Entry>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(entry_of(&st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads `name` if it is a regular file of at most `max` bytes; `None`
    /// for anything else (missing, larger, a symlink, a FIFO — never
    /// blocked on).
    pub fn read_regular(&self, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::LOOP | Errno::NXIO) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_size as u64 > max {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        File::from(fd).take(max + 1).read_to_end(&mut bytes)?;
        Ok((bytes.len() as u64 <= max).then_some(bytes))
    }

    /// Flushes the folder's entries to disk.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd)?;
        Ok(())
    }

    /// Gives the file `tmp` (in this folder) the name `name` unless that name
    /// is taken by anything at all; then `AlreadyExists` and `tmp` is left.
    fn rename_noclobber(&self, tmp: &str, name: &str) -> io::Result<()> {
        match rustix::fs::renameat_with(&self.fd, tmp, &self.fd, name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            // A file system without RENAME_NOREPLACE: a hard link never
            // replaces either; then drop the temporary name.
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                rustix::fs::linkat(&self.fd, tmp, &self.fd, name, AtFlags::empty())?;
                rustix::fs::unlinkat(&self.fd, tmp, AtFlags::empty())?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a hidden temporary in this folder with the usual
    /// `0666 & !umask` mode (so systems reading the outbox as another user
    /// of the group can read it) and fills it from `fill`, fsynced.
    fn temp(
        &self,
        name: &str,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> io::Result<String> {
        let tmp = temp_name(name);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, tmp.as_str(), flags, Mode::from_raw_mode(0o666))?;
        let mut file = File::from(fd);
        let filled = fill(&mut file).and_then(|()| file.sync_all());
        if let Err(e) = filled {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
        Ok(tmp)
    }

    /// Writes `bytes` to `name` atomically (a reader sees no file or the
    /// whole file; it survives a crash once this returns) **only if nothing
    /// is at `name`**: otherwise `AlreadyExists`, and nothing was changed
    /// (the temporary is removed).
    pub fn write_new(&self, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        let path = self.write_new_unsynced(name, bytes)?;
        self.sync()?;
        Ok(path)
    }

    /// [`Dir::write_new`] without the folder's fsync: the file's content is
    /// durable, its name only after the next [`Dir::sync`]. For groups of
    /// files made durable with one folder fsync.
    pub fn write_new_unsynced(&self, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        self.write_new_unsynced_before(name, bytes, None)
    }

    /// [`Dir::write_new_unsynced`], but the file takes its name only if
    /// `deadline` has not passed by then (checked after its bytes are
    /// written and flushed, just before the rename): otherwise its temporary
    /// is removed and the error is `TimedOut`. For a node of a pair, whose
    /// lease holds until then.
    pub fn write_new_unsynced_before(
        &self,
        name: &str,
        bytes: &[u8],
        deadline: Option<std::time::Instant>,
    ) -> io::Result<PathBuf> {
        let tmp = self.temp(name, |f| f.write_all(bytes))?;
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the time this node's lease allows for writing it ran out first: not written",
            ));
        }
        if let Err(e) = self.rename_noclobber(&tmp, name) {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
        Ok(self.join(name))
    }

    /// Whether `path` is this very folder (a rename within it is synced
    /// once).
    fn is(&self, path: &Path) -> bool {
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        match (rustix::fs::fstat(&self.fd), rustix::fs::stat(path)) {
            (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
            _ => false,
        }
    }

    /// Moves the file `from` into this folder as `name`, durably (the rename
    /// is flushed in both folders), never replacing anything at `name`
    /// (`AlreadyExists`). Across file systems (EXDEV) the file is copied to
    /// a temporary here, fsynced, renamed, and only then removed at its
    /// source.
    pub fn move_in(&self, from: &Path, name: &str) -> io::Result<PathBuf> {
        let to = self.move_in_unsynced(from, name)?;
        self.sync()?;
        if let Some(parent) = from.parent()
            && !self.is(parent)
        {
            sync_dir(parent)?;
        }
        Ok(to)
    }

    /// [`Dir::move_in`] without flushing the two folders: the move may be
    /// lost in a crash until they are synced (the caller syncs them once for
    /// a group of moves). Only for moves whose loss is harmless, such as a
    /// file already recorded as applied (found again, it is archived
    /// without effect).
    pub fn move_in_unsynced(&self, from: &Path, name: &str) -> io::Result<PathBuf> {
        match rustix::fs::renameat_with(CWD, from, &self.fd, name, RenameFlags::NOREPLACE) {
            Ok(()) => {}
            Err(Errno::XDEV) => {
                let mut src = File::open(from)?;
                let tmp = self.temp(name, |f| io::copy(&mut src, f).map(drop))?;
                if let Err(e) = self.rename_noclobber(&tmp, name) {
                    let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
                    return Err(e);
                }
                self.sync()?;
                fs::remove_file(from)?;
            }
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                rustix::fs::linkat(CWD, from, &self.fd, name, AtFlags::empty())?;
                self.sync()?;
                fs::remove_file(from)?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(self.join(name))
    }

    /// The first of `name`, `name.1`, `name.2`… for which nothing is at `X`
    /// nor at any `X<companion>` (e.g. the error report beside a file).
    pub fn free_name(&self, name: &str, companions: &[&str]) -> io::Result<String> {
        let taken = |candidate: &str| -> io::Result<bool> {
            if self.entry(candidate)?.is_some() {
                return Ok(true);
            }
            for c in companions {
                if self.entry(&format!("{candidate}{c}"))?.is_some() {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        if !taken(name)? {
            return Ok(name.to_string());
        }
        for i in 1u64.. {
            let c = format!("{name}.{i}");
            if !taken(&c)? {
                return Ok(c);
            }
        }
        Ok(name.to_string())
    }

    /// The names in this folder (not `.`/`..`; names that are not UTF-8 are
    /// left out).
    pub fn names(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().to_str()
                && name != "."
                && name != ".."
            {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    /// Removes the hidden temporaries (`.<name>.<…>.tmp`, regular files
    /// only) that a killed process left in this folder. Only call this while
    /// no write can be in flight (at start-up, holding the store's lock).
    /// Returns how many.
    pub fn remove_stale_temporaries(&self) -> io::Result<usize> {
        let mut removed = 0;
        for name in self.names()? {
            if name.starts_with('.')
                && name.ends_with(".tmp")
                && matches!(self.entry(&name)?, Some(Entry::File(_)))
            {
                rustix::fs::unlinkat(&self.fd, name.as_str(), AtFlags::empty())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Writes `bytes` to `dir/name` atomically, never replacing anything at
/// `dir/name` (`AlreadyExists`) and refusing a `dir` that is a symlink.
/// See [`Dir::write_new`].
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    Dir::open(dir)?.write_new(name, bytes)
}

/// Removes the hidden temporaries a killed process left in `dir` (a missing
/// folder has none; a symlinked one is refused). See
/// [`Dir::remove_stale_temporaries`].
pub fn remove_stale_temporaries(dir: &Path) -> io::Result<usize> {
    match Dir::open(dir) {
        Ok(d) => d.remove_stale_temporaries(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
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

/// Moves `from` to `dir/name` durably, never replacing anything there and
/// refusing a `dir` that is a symlink. See [`Dir::move_in`].
pub fn move_file(from: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    Dir::open(dir)?.move_in(from, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rename within one folder syncs it once: the folder knows itself,
    /// however its path is spelt, and no other.
    #[test]
    fn a_folder_knows_itself() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("in");
        fs::create_dir(&sub).unwrap();
        let d = Dir::open(&sub).unwrap();
        assert!(d.is(&sub));
        assert!(d.is(&dir.path().join("in/../in")));
        assert!(!d.is(dir.path()));
        assert!(!d.is(&dir.path().join("missing")));
        fs::write(sub.join(".t"), b"x").unwrap();
        d.move_in(&sub.join(".t"), "t").unwrap();
        assert_eq!(fs::read(sub.join("t")).unwrap(), b"x");
    }

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

    #[test]
    fn write_new_never_replaces_anything() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dir::open(dir.path()).unwrap();
        fs::create_dir(dir.path().join("folder")).unwrap();
        fs::write(dir.path().join("target"), "theirs").unwrap();
        std::os::unix::fs::symlink(dir.path().join("target"), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("dangling")).unwrap();
        for name in ["folder", "target", "link", "dangling"] {
            let e = d.write_new(name, b"ours").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{name}");
        }
        assert_eq!(fs::read(dir.path().join("target")).unwrap(), b"theirs");
        assert!(dir.path().join("folder").is_dir());
        // No temporary left behind.
        let mut names = d.names().unwrap();
        names.sort();
        assert_eq!(names, ["dangling", "folder", "link", "target"]);
        d.write_new("new", b"ours").unwrap();
        assert_eq!(fs::read(dir.path().join("new")).unwrap(), b"ours");
    }

    #[test]
    fn symlinked_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::write(real.join(".x.tmp"), "not ours").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = Dir::open(&link).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(Dir::create(&link).is_err());
        assert!(remove_stale_temporaries(&link).is_err());
        let top = Dir::open(dir.path()).unwrap();
        assert!(top.sub("link", true).is_err());
        assert!(write_atomic(&link, "f", b"x").is_err());
        assert_eq!(
            fs::read_dir(&real).unwrap().count(),
            1,
            ".x.tmp removed or f written"
        );
        // A folder that is a real one is fine, and created when missing.
        let sub = top.sub("new", true).unwrap();
        sub.write_new("f", b"x").unwrap();
        assert!(dir.path().join("new/f").is_file());
    }

    #[test]
    fn a_folder_swapped_for_a_symlink_after_opening_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let d = Dir::open(&out).unwrap();
        // Swap it: the old folder moves aside, a symlink takes its name.
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::rename(&out, dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &out).unwrap();
        d.write_new("f", b"x").unwrap();
        assert!(dir.path().join("moved/f").is_file());
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn stale_temporaries_are_removed_but_not_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".a.json.1-2-3.tmp"), "x").unwrap();
        fs::create_dir(dir.path().join(".folder.tmp")).unwrap();
        let target = dir.path().join("keep");
        fs::write(&target, "x").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(".link.tmp")).unwrap();
        let d = Dir::open(dir.path()).unwrap();
        assert_eq!(d.remove_stale_temporaries().unwrap(), 1);
        assert!(target.is_file());
        assert!(dir.path().join(".folder.tmp").is_dir());
    }

    #[test]
    fn move_in_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("in.json");
        fs::write(&from, "new").unwrap();
        let to = dir.path().join("to");
        fs::create_dir(&to).unwrap();
        fs::write(to.join("in.json"), "old").unwrap();
        let d = Dir::open(&to).unwrap();
        assert_eq!(
            d.move_in(&from, "in.json").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(d.free_name("in.json", &[]).unwrap(), "in.json.1");
        d.move_in(&from, "in.json.1").unwrap();
        assert_eq!(fs::read(to.join("in.json")).unwrap(), b"old");
        assert_eq!(fs::read(to.join("in.json.1")).unwrap(), b"new");
        assert!(!from.exists());
    }
}
