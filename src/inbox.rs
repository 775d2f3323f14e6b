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
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, InboxConfig};
use crate::fsutil::Dir;
use crate::problem::Problem;

/// A regular file in the inbox that may be read once ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    pub mtime: SystemTime,
}

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
        if cfg.ignore.is_match(&name) {
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

/// Remembers when each candidate was first seen with its current size and
/// mtime; a candidate is ready once that has not changed for `settle`.
#[derive(Debug, Default)]
pub struct Settle {
    seen: HashMap<PathBuf, (u64, SystemTime, Instant)>,
}

impl Settle {
    /// Splits `candidates` into those ready at `now` (in their order) and
    /// returns when the next of the others could be ready.
    pub fn ready(
        &mut self,
        candidates: Vec<Candidate>,
        cfg: &InboxConfig,
        now: Instant,
    ) -> (Vec<Candidate>, Option<Instant>) {
        let present: HashSet<&PathBuf> = candidates.iter().map(|c| &c.path).collect();
        self.seen.retain(|p, _| present.contains(p));
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
            if let Some(marker) = &cfg.ready_marker
                && !marker_path(&c.path, marker).exists()
            {
                continue;
            }
            ready.push(c);
        }
        (ready, next)
    }

    /// Forgets a file (it was moved away).
    pub fn forget(&mut self, path: &Path) {
        self.seen.remove(path);
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
    /// It changed (or vanished) since it was found ready: try again later.
    Changed,
}

/// Reads a candidate, at most `max` bytes, checking it did not change.
pub fn read(c: &Candidate, max: u64) -> io::Result<ReadOutcome> {
    let mut file = match fs::File::open(&c.path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ReadOutcome::Changed),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || (meta.len(), meta.modified()?) != (c.size, c.mtime) {
        return Ok(ReadOutcome::Changed);
    }
    if meta.len() > max {
        return Ok(ReadOutcome::TooLarge(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file).take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Ok(ReadOutcome::TooLarge(bytes.len() as u64));
    }
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

/// How many times a name taken between choosing it and using it (a race
/// with whoever else writes there) is chosen again before giving up.
const NAME_RACES: usize = 10;

/// Moves an applied file to `archive/YYYY-MM-DD/` (UTC date of `now`).
/// Neither `archive/` nor the day's folder is followed if it is a symlink:
/// that is an error naming it, and the file stays in the inbox.
pub fn archive(
    config: &Config,
    c: &Candidate,
    now: chrono::DateTime<chrono::Utc>,
) -> io::Result<PathBuf> {
    let day = Dir::create(&config.paths.archive)?.sub(&now.format("%Y-%m-%d").to_string(), true)?;
    let mut tries = 0;
    let to = loop {
        let name = day.free_name(&c.name, &[])?;
        match day.move_in(&c.path, &name) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < NAME_RACES => tries += 1,
            other => break other?,
        }
    };
    remove_marker(config, c);
    Ok(to)
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
        let name = dir.free_name(&c.name, &[ERROR_SUFFIX])?;
        let step = dir
            .write_new(&format!("{name}{ERROR_SUFFIX}"), report.as_bytes())
            .and_then(|_| dir.move_in(&c.path, &name));
        match step {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < NAME_RACES => tries += 1,
            other => break other?,
        }
    };
    remove_marker(config, c);
    Ok(to)
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
