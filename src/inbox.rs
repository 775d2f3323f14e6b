//! The inbox folder (SPEC §3): which files are candidates, when a candidate
//! is ready (unchanged for `settle`, marker present), reading it safely, and
//! where it goes afterwards (`archive/YYYY-MM-DD/` or `errors/` with its
//! report). This is the start of the flow: file → input → store.
//!
//! The truth is always a scan of the folder; file system events, where the
//! daemon has them, only say when to scan.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, InboxConfig};
use crate::fsutil::{Dir, Entry};
use crate::problem::Problem;

/// A regular file in the inbox that may be read once ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    pub mtime: SystemTime,
    /// Device and inode, to tell the file read from anything put at its
    /// name afterwards.
    pub dev_ino: (u64, u64),
    /// The system whose own drop folder it is in; `None` for the shared
    /// inbox.
    pub system: Option<String>,
}

impl Candidate {
    /// The file's name as recorded (exactly once is by this name and the
    /// content's hash) and logged: `acks.csv` in the shared inbox,
    /// `erp/acks.csv` in system erp's own, so files of the same name in two
    /// inboxes are two files. A `/` is never in a file name: the two kinds
    /// never meet.
    pub fn label(&self) -> String {
        match &self.system {
            None => self.name.clone(),
            Some(s) => format!("{s}/{}", self.name),
        }
    }

    /// The name it is kept under in `archive/` and `errors/`: its own name
    /// from the shared inbox, `erp--acks.csv` from system erp's inbox (no
    /// sub-folders there, so the two never share a name by accident). Too
    /// long a name is cut where it is kept (see [`shortened`]).
    pub fn kept_name(&self) -> String {
        match &self.system {
            None => self.name.clone(),
            Some(s) => format!("{s}--{}", self.name),
        }
    }

    /// Whether the name still holds the regular file that was found (not
    /// something renamed over it since: only that file may be moved).
    pub fn still_there(&self) -> bool {
        fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_file() && (m.dev(), m.ino()) == self.dev_ino)
    }
}

/// Lists the candidates of every inbox (the shared one and each system's
/// own), oldest mtime first, then by name. `Err` when the shared inbox
/// cannot be scanned; a system's inbox that cannot be (missing, or not a
/// real folder: a symlink is refused, never followed) is logged once and
/// left out until it can.
pub fn scan_all(config: &Config, noted: &mut HashSet<PathBuf>) -> io::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for (system, dir) in config.inboxes() {
        let Some(system) = system else {
            out.extend(scan(dir, &config.inbox, noted)?);
            continue;
        };
        // O_NOFOLLOW | O_DIRECTORY: a symlink (or a file) at the folder's
        // name is refused, as for every folder shared with partners.
        let found = Dir::open(dir).and_then(|_| scan(dir, &config.inbox, noted));
        match found {
            Ok(found) => {
                if noted.remove(dir) {
                    tracing::info!(system, inbox = %dir.display(), "the system's inbox is readable again");
                }
                out.extend(found.into_iter().map(|c| Candidate {
                    system: Some(system.to_string()),
                    ..c
                }));
            }
            Err(e) => {
                if noted.insert(dir.to_path_buf()) {
                    tracing::error!(system, inbox = %dir.display(), error = %e, "cannot scan the system's inbox; its files wait until it is a real folder again");
                }
            }
        }
    }
    out.sort_by(|a, b| (a.mtime, &a.name).cmp(&(b.mtime, &b.name)));
    Ok(out)
}

/// The longest name kept as is in `errors/`: room for the report's suffix
/// and a numeric suffix within NAME_MAX (255 bytes).
pub const MAX_KEPT_NAME: usize = 255 - ERROR_SUFFIX.len() - 6;

/// A shorter name for `archive/` and `errors/` when `name` is too long to
/// take the report's suffix: its start and its end (the extension) around
/// `…`.
pub fn shortened(name: &str) -> Option<String> {
    if name.len() <= MAX_KEPT_NAME {
        return None;
    }
    let mut head = 150;
    while !name.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = name.len() - 60;
    while !name.is_char_boundary(tail) {
        tail += 1;
    }
    Some(format!("{}…{}", &name[..head], &name[tail..]))
}

/// The prefix of a partner remote's download in progress in an inbox.
pub const PULL_TEMP_PREFIX: &str = ".ordersync-pull-";

/// Lists the candidates, oldest mtime first, then by name. Entries that are
/// never read (symlinks, folders, sockets, names that are not UTF-8) are
/// logged once each, using `noted` to remember them.
pub fn scan(
    dir: &Path,
    cfg: &InboxConfig,
    noted: &mut HashSet<PathBuf>,
) -> io::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            if noted.insert(path.clone()) {
                tracing::warn!(path = ?path, "left alone: file name is not UTF-8");
            }
            continue;
        };
        // A partner remote's download in progress (`remote/transfer.rs`),
        // whatever the ignore patterns say.
        if cfg.ignore.is_match(&name) || name.starts_with(PULL_TEMP_PREFIX) {
            continue;
        }
        if let Some(marker) = &cfg.ready_marker
            && name.ends_with(marker.as_str())
        {
            continue;
        }
        // symlink_metadata: a symlink is never followed.
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !meta.file_type().is_file() {
            if noted.insert(path.clone()) {
                tracing::warn!(path = ?path, kind = kind_of(&meta), "left alone: not a regular file");
            }
            continue;
        }
        out.push(Candidate {
            path,
            name,
            size: meta.len(),
            mtime: meta.modified()?,
            dev_ino: (meta.dev(), meta.ino()),
            system: None,
        });
    }
    out.sort_by(|a, b| (a.mtime, &a.name).cmp(&(b.mtime, &b.name)));
    Ok(out)
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "folder"
    } else {
        "special file"
    }
}

/// Decides when a candidate is ready (SPEC §3): no writer holds it open
/// (as far as the daemon can tell), its size and mtime have not changed for
/// `settle`, and its ready marker exists if one is configured.
///
/// Writers are tracked from OS events where the daemon has them: a file that
/// got a write (or create) event is held back until its close-write event,
/// however long the writer stalls. A close does not prove the file is
/// complete (a killed writer is closed by the kernel too), so stability is
/// required as well. Files with no events seen (found at start-up, after
/// events were lost, in poll mode, in `run --once`) are judged by stability
/// alone, plus the read lease [`read`] takes where the kernel allows.
#[derive(Debug, Default)]
pub struct Settle {
    seen: HashMap<PathBuf, (u64, SystemTime, Instant)>,
    /// Files with a write event and no close-write event since.
    writing: HashSet<PathBuf>,
}

impl Settle {
    /// Splits `candidates` into those ready at `now` (in their order) and
    /// returns when the next of the others could be ready. A file held only
    /// for want of its close event has no deadline: the event wakes the
    /// daemon (or, if it was lost, [`Settle::events_lost`] releases it).
    pub fn ready(
        &mut self,
        candidates: Vec<Candidate>,
        cfg: &InboxConfig,
        now: Instant,
    ) -> (Vec<Candidate>, Option<Instant>) {
        let present: HashSet<&PathBuf> = candidates.iter().map(|c| &c.path).collect();
        self.seen.retain(|p, _| present.contains(p));
        self.writing.retain(|p| present.contains(p));
        let mut ready = Vec::new();
        let mut next: Option<Instant> = None;
        for c in candidates {
            let entry = self
                .seen
                .entry(c.path.clone())
                .or_insert((c.size, c.mtime, now));
            if (entry.0, entry.1) != (c.size, c.mtime) {
                *entry = (c.size, c.mtime, now);
            }
            let due = entry.2 + cfg.settle;
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            if self.writing.contains(&c.path) {
                // Stable, but no close event yet. A close event can be
                // missing without being lost (a file made by link(2) gets
                // none), so ask the kernel: where a read lease can be had,
                // nobody has the file open for writing.
                match writer_check(&c.path) {
                    WriterCheck::None => {
                        tracing::debug!(file = ?c.name, "no close event seen, but no writer has it open");
                        self.writing.remove(&c.path);
                    }
                    WriterCheck::Open | WriterCheck::Unknown => {
                        tracing::debug!(file = ?c.name, "held back: a writer has it open");
                        continue;
                    }
                }
            }
            if let Some(marker) = &cfg.ready_marker
                && !marker_path(&c.path, marker).exists()
            {
                continue;
            }
            ready.push(c);
        }
        (ready, next)
    }

    /// A write (or create) event for `path`: held back until it is closed.
    pub fn written(&mut self, path: &Path) {
        if !self.writing.contains(path) {
            self.writing.insert(path.to_path_buf());
        }
    }

    /// A close-write event for `path`: from now on stability decides.
    pub fn closed(&mut self, path: &Path) {
        self.writing.remove(path);
    }

    /// Events were lost (queue overflow, a full hint channel, a new watch):
    /// every file falls back to stability (and the read lease) until new
    /// events for it are seen, so a lost close event never holds a file
    /// back forever.
    pub fn events_lost(&mut self) {
        self.writing.clear();
    }

    /// Forgets a file (it was moved away).
    pub fn forget(&mut self, path: &Path) {
        self.seen.remove(path);
        self.writing.remove(path);
    }
}

/// `FILE` + marker, e.g. `orders.json.done`.
pub fn marker_path(file: &Path, marker: &str) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(marker);
    PathBuf::from(s)
}

/// What reading a ready candidate gave.
#[derive(Debug)]
pub enum ReadOutcome {
    /// The whole content, unchanged while it was read.
    Content(Vec<u8>),
    /// Larger than `max_file_size`: not read.
    TooLarge(u64),
    /// Not ready after all: it changed or vanished since it was found ready,
    /// it is no longer a regular file, or a writer has it open (the read
    /// lease was refused). Try again later.
    Changed,
}

/// Reads a candidate, at most `max` bytes, checking it did not change.
///
/// The file is opened `O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC`, so a
/// FIFO or device renamed over the candidate since the scan can never block
/// the daemon, and a symlink at the name is not followed; the open file is
/// then checked (fstat) to be the regular file the scan found (size, mtime).
///
/// Where the kernel allows, a read lease (`F_SETLEASE`, `F_RDLCK`) is taken
/// before reading: the kernel refuses it while anyone has the file open for
/// writing, so an upload that stalls longer than `settle` is not read. It is
/// granted for files the daemon's user owns, or to any file with
/// `CAP_LEASE`; where it is refused for lack of permission (or the file
/// system has no leases) reading goes on without it, logged once.
///
/// A writer that opens the file while it is being read breaks the lease:
/// its `open` waits (at most `/proc/sys/fs/lease-break-time`) until the
/// lease is released right after reading, and the kernel notifies the lease
/// holder with `SIGIO`, whose default action would kill the process, so
/// SIGIO is set to be ignored (unless a handler is installed) before the
/// first lease. The signal itself is not needed: after reading,
/// `F_GETLEASE` tells whether a break is pending, and then the file is about
/// to change and is left for later.
pub fn read(c: &Candidate, max: u64) -> io::Result<ReadOutcome> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&c.path)
    {
        Ok(f) => f,
        // Gone, a symlink (ELOOP), a socket or a FIFO-like thing that cannot
        // be opened now (ENXIO): not the candidate any more.
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) =>
        {
            return Ok(ReadOutcome::Changed);
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file()
        || (meta.len(), meta.modified()?, (meta.dev(), meta.ino())) != (c.size, c.mtime, c.dev_ino)
    {
        return Ok(ReadOutcome::Changed);
    }
    // A regular file: blocking reads from here on (O_NONBLOCK only guarded
    // the open; on some network file systems it could make reads fail).
    set_nonblocking(&file, false)?;
    let lease = match Lease::take(&file, &c.name) {
        Ok(l) => l,
        Err(Busy) => {
            tracing::debug!(file = ?c.name, "not ready: a writer has it open (read lease refused)");
            return Ok(ReadOutcome::Changed);
        }
    };
    if meta.len() > max {
        return Ok(ReadOutcome::TooLarge(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&file).take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Ok(ReadOutcome::TooLarge(bytes.len() as u64));
    }
    if lease.as_ref().is_some_and(Lease::breaking) {
        tracing::debug!(file = ?c.name, "not ready: a writer opened it while it was read");
        return Ok(ReadOutcome::Changed);
    }
    drop(lease);
    let after = fs::symlink_metadata(&c.path);
    match after {
        Ok(m) if (m.len(), m.modified()?) == (c.size, c.mtime) && bytes.len() as u64 == c.size => {
            Ok(ReadOutcome::Content(bytes))
        }
        Ok(_) => Ok(ReadOutcome::Changed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ReadOutcome::Changed),
        Err(e) => Err(e),
    }
}

fn set_nonblocking(file: &fs::File, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a file descriptor we own; no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A read lease was refused because someone has the file open for writing.
struct Busy;

/// A read lease held on an open file, released when dropped (closing the
/// file would release it too).
struct Lease<'a> {
    file: &'a fs::File,
}

/// Logged once each: leases refused for permission, and leases not
/// supported at all.
static LEASE_DENIED_LOGGED: AtomicBool = AtomicBool::new(false);
static LEASE_UNSUPPORTED_LOGGED: AtomicBool = AtomicBool::new(false);

impl<'a> Lease<'a> {
    /// Takes a read lease on `file` (opened read-only). `Err(Busy)` when a
    /// writer has it open; `Ok(None)` when leases cannot be had here
    /// (permission, file system): the caller goes on without.
    fn take(file: &'a fs::File, name: &str) -> Result<Option<Lease<'a>>, Busy> {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // A lease break signals SIGIO, whose default action terminates.
        if !sigio_ignored() {
            return Ok(None);
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) } == 0 {
            return Ok(Some(Lease { file }));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // EAGAIN: open for writing somewhere (or mapped writable).
            Some(libc::EAGAIN) => Err(Busy),
            Some(libc::EACCES | libc::EPERM) => {
                if !LEASE_DENIED_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        file = name, error = %e,
                        "no read lease on inbox files not owned by the daemon's user (grant CAP_LEASE); relying on close events and settle"
                    );
                }
                Ok(None)
            }
            _ => {
                note_unsupported(name, &e);
                Ok(None)
            }
        }
    }

    /// Whether a writer has tried to open the file since the lease was
    /// taken: the kernel then reports the lease as going to `F_UNLCK`.
    fn breaking(&self) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a file descriptor we own, no arguments.
        let r = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLEASE) };
        r != libc::F_RDLCK
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a file descriptor we own, integer arguments only.
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
}

/// Makes sure SIGIO, which a lease break sends to the lease holder, cannot
/// kill the process: unless something installed a handler for it, it is set
/// to be ignored (once). `false` if that failed: then no lease is taken.
fn sigio_ignored() -> bool {
    static IGNORED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IGNORED.get_or_init(|| {
        // SAFETY: sigaction with a zeroed struct to read the current
        // disposition, then SIG_IGN (no handler function is installed).
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGIO, std::ptr::null(), &mut old) != 0 {
                return false;
            }
            if old.sa_sigaction != libc::SIG_DFL {
                return true;
            }
            let mut ign: libc::sigaction = std::mem::zeroed();
            ign.sa_sigaction = libc::SIG_IGN;
            libc::sigaction(libc::SIGIO, &ign, std::ptr::null_mut()) == 0
        }
    })
}

fn note_unsupported(name: &str, e: &io::Error) {
    if !LEASE_UNSUPPORTED_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::info!(
            file = name, error = %e,
            "read leases are not available on the inbox's file system; relying on close events and settle"
        );
    }
}

/// What the kernel says about writers of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterCheck {
    /// Nobody has it open for writing (a read lease was granted).
    None,
    /// Someone has it open for writing.
    Open,
    /// Cannot tell (no lease here, or the file is gone or not regular).
    Unknown,
}

/// Asks the kernel, with a read lease taken and released at once, whether
/// anyone has `path` open for writing.
pub fn writer_check(path: &Path) -> WriterCheck {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(file) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    else {
        return WriterCheck::Unknown;
    };
    if !file.metadata().is_ok_and(|m| m.file_type().is_file()) {
        return WriterCheck::Unknown;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    match Lease::take(&file, &name) {
        Ok(Some(_)) => WriterCheck::None,
        Ok(None) => WriterCheck::Unknown,
        Err(Busy) => WriterCheck::Open,
    }
}

/// How many times a name taken between choosing it and using it (a race
/// with whoever else writes there) is chosen again before giving up.
const NAME_RACES: usize = 10;

/// Moves an applied file to `archive/YYYY-MM-DD/` (UTC date of `now`).
/// Neither `archive/` nor the day's folder is followed if it is a symlink:
/// that is an error naming it, and the file stays in the inbox.
///
/// The move is not flushed here: a group of moves is made durable by one
/// [`sync_archived`] (a move lost in a crash leaves an applied file in the
/// inbox, which is then archived without effect).
pub fn archive(
    config: &Config,
    c: &Candidate,
    now: chrono::DateTime<chrono::Utc>,
) -> io::Result<PathBuf> {
    let day = Dir::create(&config.paths.archive)?.sub(&now.format("%Y-%m-%d").to_string(), true)?;
    let mut tries = 0;
    let to = loop {
        // Room for a numeric suffix within NAME_MAX (a partner's prefix can
        // make a name too long for the folder).
        let kept = c.kept_name();
        let kept = if kept.len() > 255 - 6 {
            shortened(&kept).unwrap_or(kept)
        } else {
            kept
        };
        let name = day.free_name(&kept, &[])?;
        match day.move_in_unsynced(&c.path, &name) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < NAME_RACES => tries += 1,
            other => break other?,
        }
    };
    remove_marker(config, c);
    Ok(to)
}

/// Makes the moves of [`archive`] durable: the day's archive folder (of
/// `now`) and the inbox are flushed.
pub fn sync_archived(config: &Config, now: chrono::DateTime<chrono::Utc>) -> io::Result<()> {
    Dir::open(&config.paths.archive)?
        .sub(&now.format("%Y-%m-%d").to_string(), false)?
        .sync()?;
    for (_, inbox) in config.inboxes() {
        crate::fsutil::sync_dir(inbox)?;
    }
    Ok(())
}

/// Moves a rejected file to `errors/` with `<name>.error.txt` beside it,
/// one problem per line. The report is written first: a crash in between
/// leaves the file in the inbox, to be rejected again, never a file without
/// its report (a report left without its file is not counted, see
/// [`error_count`]). A symlinked `errors/` is refused: the file stays in the
/// inbox.
pub fn reject(config: &Config, c: &Candidate, problems: &[Problem]) -> io::Result<PathBuf> {
    let dir = Dir::create(&config.paths.errors)?;
    let mut report = String::new();
    for p in problems {
        report.push_str(&p.to_string().replace(['\r', '\n'], " "));
        report.push('\n');
    }
    let mut tries = 0;
    let to = loop {
        let step = match earlier_report(&dir, &c.kept_name(), &report)? {
            // Written by an earlier attempt whose move failed (a file that
            // cannot be moved is retried): one report, not one per retry.
            Some(name) => dir.move_in(&c.path, &name),
            None => {
                let name = dir.free_name(&c.kept_name(), &[ERROR_SUFFIX])?;
                dir.write_new(&format!("{name}{ERROR_SUFFIX}"), report.as_bytes())
                    .and_then(|_| dir.move_in(&c.path, &name))
            }
        };
        match step {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < NAME_RACES => tries += 1,
            other => break other?,
        }
    };
    remove_marker(config, c);
    Ok(to)
}

/// The name (`kept`, `kept.1`…) whose report, without its file beside it,
/// says exactly `report`: left by an earlier attempt to reject this file
/// that could not move it. Looked for up to the first free name, where
/// [`Dir::free_name`] would put a new one.
fn earlier_report(dir: &Dir, kept: &str, report: &str) -> io::Result<Option<String>> {
    for i in 0u64.. {
        let name = match i {
            0 => kept.to_string(),
            i => format!("{kept}.{i}"),
        };
        let report_name = format!("{name}{ERROR_SUFFIX}");
        let written = match (dir.entry(&name)?, dir.entry(&report_name)?) {
            (None, None) => return Ok(None),
            (None, Some(Entry::File(len))) if len == report.len() as u64 => {
                dir.read_regular(&report_name, len)?
            }
            _ => None,
        };
        if written.as_deref() == Some(report.as_bytes()) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// The suffix of error reports in `errors/`.
pub const ERROR_SUFFIX: &str = ".error.txt";

fn remove_marker(config: &Config, c: &Candidate) {
    if let Some(marker) = &config.inbox.ready_marker {
        let m = marker_path(&c.path, marker);
        if let Err(e) = fs::remove_file(&m)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(marker = %m.display(), error = %e, "could not remove ready marker");
        }
    }
}

/// How many rejected files wait in `errors/`: the files that have their
/// report (`<name>.error.txt`) beside them. Counting reports alone would
/// also count a rejected file that happens to be *named* `x.error.txt`
/// (its own report is `x.error.txt.error.txt`), and a report a crash left
/// without its file. A symlinked `errors/` is not read: 0.
pub fn error_count(config: &Config) -> usize {
    let Ok(names) = Dir::open(&config.paths.errors).and_then(|d| d.names()) else {
        return 0;
    };
    let names: HashSet<&str> = names.iter().map(String::as_str).collect();
    names
        .iter()
        .filter(|n| names.contains(format!("{n}{ERROR_SUFFIX}").as_str()))
        .count()
}

/// A pause that is short but not busy, for drain loops waiting on settle.
pub fn until(next: Option<Instant>, cap: Duration) -> Duration {
    next.map_or(cap, |n| {
        n.saturating_duration_since(Instant::now()).min(cap)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn inbox_cfg(dir: &Path, settle: &str) -> InboxConfig {
        let text = format!("[inbox]\nsettle = \"{settle}\"\n[[systems]]\nid = \"erp\"\n");
        Config::parse(&text, &dir.join("config.toml"))
            .expect("config")
            .inbox
    }

    fn candidate(path: &Path) -> Candidate {
        let m = fs::symlink_metadata(path).unwrap();
        Candidate {
            path: path.to_path_buf(),
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            size: m.len(),
            mtime: m.modified().unwrap(),
            dev_ino: (m.dev(), m.ino()),
            system: None,
        }
    }

    /// A file with a write event is held back while stable, as long as its
    /// writer has it open; once closed (or once events are lost) stability
    /// decides.
    #[test]
    fn a_written_file_waits_for_its_close() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = inbox_cfg(dir.path(), "0s");
        let p = dir.path().join("a.json");
        let mut writer = fs::File::create(&p).unwrap();
        writer.write_all(b"{").unwrap();
        let mut settle = Settle::default();
        settle.written(&p);
        let now = Instant::now();
        let (ready, next) = settle.ready(vec![candidate(&p)], &cfg, now);
        assert!(ready.is_empty(), "held back while its writer has it open");
        assert_eq!(next, None, "no deadline: the close event wakes the loop");
        settle.closed(&p);
        let (ready, _) = settle.ready(vec![candidate(&p)], &cfg, now);
        assert_eq!(ready.len(), 1);

        settle.written(&p);
        settle.events_lost();
        let (ready, _) = settle.ready(vec![candidate(&p)], &cfg, now);
        assert_eq!(ready.len(), 1, "lost events: stability alone");
        drop(writer);
    }

    /// A write event without a close event (a file made by link(2)) is not
    /// held back forever: the read lease shows nobody has it open.
    #[test]
    fn a_written_file_without_writers_is_ready() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = inbox_cfg(dir.path(), "0s");
        let p = dir.path().join("a.json");
        fs::write(&p, b"{}").unwrap();
        let mut settle = Settle::default();
        settle.written(&p);
        let (ready, _) = settle.ready(vec![candidate(&p)], &cfg, Instant::now());
        assert_eq!(ready.len(), 1);
    }

    #[test]
    fn a_file_open_for_writing_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        let mut writer = fs::File::create(&p).unwrap();
        writer.write_all(b"[1,").unwrap();
        let c = candidate(&p);
        assert!(matches!(read(&c, 1 << 20).unwrap(), ReadOutcome::Changed));
        drop(writer);
        assert!(matches!(read(&c, 1 << 20).unwrap(), ReadOutcome::Content(b) if b == b"[1,"));
    }

    /// A FIFO at the candidate's name (renamed over it after the scan) is
    /// neither waited on nor read; neither is a symlink.
    #[test]
    fn special_files_at_a_candidates_name_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        fs::write(&p, b"{}").unwrap();
        let c = candidate(&p);
        fs::remove_file(&p).unwrap();
        let status = std::process::Command::new("mkfifo").arg(&p).status();
        assert!(status.unwrap().success());
        assert!(matches!(read(&c, 1 << 20).unwrap(), ReadOutcome::Changed));
        fs::remove_file(&p).unwrap();
        fs::write(dir.path().join("target"), b"{}").unwrap();
        std::os::unix::fs::symlink(dir.path().join("target"), &p).unwrap();
        assert!(matches!(read(&c, 1 << 20).unwrap(), ReadOutcome::Changed));
    }

    /// A writer opening the file while a lease is held breaks it: the
    /// breaker waits for the lease to go, the holder sees the break pending,
    /// and the SIGIO the kernel sends does not kill this process.
    #[test]
    fn a_lease_break_is_noticed_and_does_not_kill() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        fs::write(&p, b"{}").unwrap();
        let file = fs::File::open(&p).unwrap();
        let Ok(Some(lease)) = Lease::take(&file, "a.json") else {
            eprintln!("skipped: no read lease here");
            return;
        };
        assert!(!lease.breaking());
        let q = p.clone();
        let breaker = std::thread::spawn(move || fs::OpenOptions::new().write(true).open(q));
        let start = Instant::now();
        while !lease.breaking() {
            assert!(start.elapsed() < Duration::from_secs(10), "no lease break");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(lease);
        breaker.join().unwrap().expect("the writer gets its file");
    }
}
