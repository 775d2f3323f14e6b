//! The rules of one remote's transfers, each step recorded in the store's
//! ledger (`store/ledger.rs`) before the next, so that a process killed at
//! any instant finishes or redoes what it was doing, never twice.
//!
//! **Pull** (a partner's `from` into one of our inboxes). A file is taken
//! once it is ready: its size and mtime held still for `settle`, or its
//! marker is there. It is downloaded to a hidden temporary in the inbox
//! (`.ordersync-pull-<remote>.<uuid>.part`, which the inbox never reads), fsynced,
//! and checked unchanged on the server (a file that grew meanwhile is
//! dropped and waited for again); the ledger records it *pulled*; it takes
//! its name in the inbox (never replacing a file there: a name still taken
//! waits); the remote file is deleted or moved; the ledger records it
//! *done*. A *pulled* file is never downloaded again while the server shows
//! it unchanged: its delete or move is retried instead.
//!
//! **Push** (a system's export files to a partner's `to`). A file whose
//! export is committed (no batch in flight names it) is recorded *pushing*
//! under a hidden remote temporary, uploaded (fsynced where the server
//! offers it), recorded *renaming*, renamed onto its final name with
//! `posix-rename@openssh.com` (one step, replacing), recorded *pushed*, and
//! moved into `outbox/<system>/sent/`. After a crash in *pushing* the same
//! temporary is written again from the start; in *renaming*, the temporary
//! still there means the rename did not happen (it is done now), gone means
//! it did: never two copies, never a temporary left. A system's `.done`
//! markers follow their file.
//!
//! Errors of one file are logged (remote and path, never a secret), counted
//! and leave the others going; errors of the connection or the store end
//! the pass.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::session::{Listed, RemoteError, Session};
use super::status;
use crate::config::{After, Config, PullConfig, PushConfig, Ready, RemoteConfig};
use crate::fsutil::{Dir, Entry};
use crate::inbox::PULL_TEMP_PREFIX;
use crate::store::keys::Direction;
use crate::store::ledger::{Stage, Transfer};
use crate::store::{Store, StoreError};

/// The folder of `outbox/<system>/` that pushed files move into.
pub const SENT: &str = "sent";

/// The suffix of the marker a system's export writes beside a file.
const EXPORT_MARKER: &str = ".done";

/// What ends a pass: the connection, or the store (a fence, an outage).
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("the store: {0}")]
    Store(#[from] StoreError),
}

/// What went wrong with one file: where and what.
#[derive(Debug)]
struct FileError {
    path: String,
    what: String,
    /// The connection or the store failed: the pass ends.
    fatal: Option<Box<PassError>>,
}

impl FileError {
    fn new(path: &str, what: impl Into<String>) -> FileError {
        FileError {
            path: path.to_string(),
            what: what.into(),
            fatal: None,
        }
    }
}

fn remote_err(path: &str, e: RemoteError) -> FileError {
    let what = e.to_string();
    // A timeout leaves the connection unusable.
    let fatal = matches!(e, RemoteError::TimedOut { .. }).then(|| Box::new(PassError::Remote(e)));
    FileError {
        path: path.to_string(),
        what,
        fatal,
    }
}

fn store_err(path: &str, e: StoreError) -> FileError {
    FileError {
        path: path.to_string(),
        what: e.to_string(),
        fatal: Some(Box::new(PassError::Store(e))),
    }
}

fn local_err(path: &str, what: &str, e: io::Error) -> FileError {
    FileError::new(path, format!("{what}: {e}"))
}

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Passed {
    pub pulled: u64,
    pub pushed: u64,
    /// Files that failed (each logged).
    pub errors: u64,
    /// The first of them: where and what.
    pub first_error: Option<String>,
    /// Files were left for the next pass (a pull's share of a pass is
    /// bounded, so that a backlog at the partner never holds up pushes):
    /// it comes at once.
    pub more: bool,
}

/// The most files one pull takes in a pass.
pub const MAX_PULLS_PER_PASS: usize = 500;

/// One remote's transfers.
pub struct Remote {
    pub cfg: RemoteConfig,
    outbox: PathBuf,
    /// The inboxes' ready marker, if the daemon waits for one.
    inbox_marker: Option<String>,
    /// Pull: a remote path's size and mtime, and since when they held.
    seen: HashMap<String, (u64, u32, Instant)>,
    /// Names logged once (unsafe names).
    noted: HashSet<String>,
    /// Remote paths whose pull the ledger has unfinished (pulled, not yet
    /// deleted or moved): looked up whether ready or not. Others are looked
    /// up only once ready, so a big folder costs no store read per file
    /// and poll.
    unfinished_pulls: HashSet<String>,
}

impl Remote {
    pub fn new(cfg: RemoteConfig, config: &Config) -> Remote {
        Remote {
            cfg,
            outbox: config.paths.outbox.clone(),
            inbox_marker: config.inbox.ready_marker.clone(),
            seen: HashMap::new(),
            noted: HashSet::new(),
            unfinished_pulls: HashSet::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The start of this remote's download temporaries in an inbox:
    /// `.ordersync-pull-<remote>.` (a remote's name has no `.`, so no
    /// remote's prefix is another's).
    fn temp_prefix(&self) -> String {
        format!("{PULL_TEMP_PREFIX}{}.", self.cfg.name)
    }

    /// A file failed: one log line naming the remote and the path.
    fn report(&self, e: &FileError, passed: &mut Passed) {
        tracing::warn!(remote = %self.cfg.name, path = %e.path, error = %e.what, "remote transfer failed");
        let what = format!("{}: {}", e.path, e.what);
        status::failed(&self.cfg.name, &what, false);
        passed.errors += 1;
        passed.first_error.get_or_insert(what);
    }

    /// Finishes what the ledger says was left half done (a crash, a lost
    /// connection): run once per connection, before a pass.
    pub async fn resume(&mut self, s: &Session, store: &Store) -> Result<Passed, PassError> {
        let mut passed = Passed::default();
        let unfinished = store_unfinished_transfers(store, &self.cfg.name)?;
        self.unfinished_pulls = unfinished
            .iter()
            .filter(|(d, _, _)| *d == Direction::Pull)
            .map(|(_, name, _)| name.clone())
            .collect();
        // Downloads a kill cut short, before the ledger had them: gone.
        // Only this remote's (its name is in the temporary's): another
        // remote pulling into the same inbox may be downloading now.
        let mine = self.temp_prefix();
        let kept: HashSet<&str> = unfinished
            .iter()
            .filter(|(d, _, _)| *d == Direction::Pull)
            .map(|(_, _, t)| t.temp.as_str())
            .collect();
        let folders: HashSet<&PathBuf> = self.cfg.pulls.iter().map(|p| &p.into).collect();
        for folder in folders {
            let Ok(dir) = Dir::open(folder) else { continue };
            for name in dir.names().unwrap_or_default() {
                let path = dir.join(&name);
                if name.starts_with(&mine)
                    && !kept.contains(path.to_string_lossy().as_ref())
                    && matches!(dir.entry(&name), Ok(Some(Entry::File(_))))
                {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {
                            tracing::info!(remote = %self.cfg.name, file = %path.display(), "removed a download cut short")
                        }
                        Err(e) => {
                            tracing::warn!(remote = %self.cfg.name, file = %path.display(), error = %e, "cannot remove a download cut short")
                        }
                    }
                }
            }
        }
        for (direction, name, t) in unfinished {
            let result = match direction {
                Direction::Pull => self.resume_pull(s, store, &name, &t).await,
                Direction::Push => self.resume_push(s, store, &name, &t).await,
            };
            if let Err(e) = result {
                self.report(&e, &mut passed);
                if let Some(fatal) = e.fatal {
                    return Err(*fatal);
                }
            }
        }
        Ok(passed)
    }

    /// One pass: every pull, then every push.
    pub async fn pass(&mut self, s: &Session, store: &Store) -> Result<Passed, PassError> {
        let mut passed = Passed::default();
        for pull in self.cfg.pulls.clone() {
            self.pull(s, store, &pull, &mut passed).await?;
        }
        for push in self.cfg.pushes.clone() {
            self.push(s, store, &push, &mut passed).await?;
        }
        Ok(passed)
    }

    // ---- pull ----

    async fn pull(
        &mut self,
        s: &Session,
        store: &Store,
        pull: &PullConfig,
        passed: &mut Passed,
    ) -> Result<(), PassError> {
        let mut listed = s.list(&pull.from).await?;
        // Oldest first, as the inbox takes its own.
        listed.sort_by(|a, b| (a.mtime, &a.name).cmp(&(b.mtime, &b.name)));
        let mut taken = 0;
        let marker = match &pull.ready {
            Ready::Marker(m) => Some(m.as_str()),
            Ready::Stable => None,
        };
        let names: HashSet<&str> = listed.iter().map(|f| f.name.as_str()).collect();
        let mut present = HashSet::new();
        for f in &listed {
            let path = remote_join(&pull.from, &f.name);
            if let Some(why) = unsafe_name(&f.name) {
                if self.noted.insert(path.clone()) {
                    tracing::warn!(remote = %self.cfg.name, path = %path.escape_debug(), "left alone on the remote: {why}");
                }
                continue;
            }
            if f.name.starts_with('.')
                || marker.is_some_and(|m| f.name.ends_with(m))
                || !pull.matcher.is_match(&f.name)
            {
                continue;
            }
            present.insert(path.clone());
            let ready = match marker {
                Some(m) => names.contains(format!("{}{m}", f.name).as_str()),
                None => self.stable(&path, f, pull.settle),
            };
            if taken >= MAX_PULLS_PER_PASS {
                // The pushes' turn; the next pass comes at once.
                passed.more = true;
                continue;
            }
            match self.pull_one(s, store, pull, &path, f, ready, marker).await {
                Ok(true) => {
                    passed.pulled += 1;
                    taken += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    self.report(&e, passed);
                    if let Some(fatal) = e.fatal {
                        return Err(*fatal);
                    }
                }
            }
        }
        // Forget what is gone from the folder.
        let from = format!("{}/", pull.from.trim_end_matches('/'));
        self.seen
            .retain(|p, _| !p.starts_with(&from) || present.contains(p));
        Ok(())
    }

    /// Whether `f` held its size and mtime for `settle` (since first seen
    /// so by this process).
    fn stable(&mut self, path: &str, f: &Listed, settle: Duration) -> bool {
        let now = Instant::now();
        let entry = self
            .seen
            .entry(path.to_string())
            .or_insert((f.size, f.mtime, now));
        if (entry.0, entry.1) != (f.size, f.mtime) {
            *entry = (f.size, f.mtime, now);
        }
        now.duration_since(entry.2) >= settle
    }

    /// One listed file: `Ok(true)` when it was pulled now.
    #[allow(clippy::too_many_arguments)]
    async fn pull_one(
        &mut self,
        s: &Session,
        store: &Store,
        pull: &PullConfig,
        path: &str,
        f: &Listed,
        ready: bool,
        marker: Option<&str>,
    ) -> Result<bool, FileError> {
        let remote = self.cfg.name.clone();
        if !ready && !self.unfinished_pulls.contains(path) {
            return Ok(false);
        }
        let earlier = store_transfer(store, &remote, Direction::Pull, path)
            .map_err(|e| store_err(path, e))?;
        if let Some(t) = &earlier
            && t.stage == Stage::Pulled
        {
            // Ours already: into the inbox if not yet there.
            self.place(t, path)?;
            if (t.size, t.mtime) == (f.size, i64::from(f.mtime)) {
                // The same file still on the server: its delete or move
                // failed or was cut short. Never pulled again.
                self.finish_remote(s, pull, path, marker).await?;
                let done = Transfer {
                    stage: Stage::Done,
                    at: now(store),
                    ..t.clone()
                };
                store_record_transfer(store, &remote, Direction::Pull, path, Some(&done))
                    .map_err(|e| store_err(path, e))?;
                self.unfinished_pulls.remove(path);
                return Ok(false);
            }
            // Otherwise the partner put a new file under the same name.
        }
        if !ready {
            return Ok(false);
        }
        let temp = pull
            .into
            .join(format!("{}{}.part", self.temp_prefix(), Uuid::new_v4()));
        let target = pull.into.join(&f.name);
        let deadline = self.cfg.io_timeout * 4 + Duration::from_secs(f.size / (64 << 10));
        let result = async {
            let n = s
                .download(path, &temp, deadline)
                .await
                .map_err(|e| remote_err(path, e))?;
            let now_there = s.stat(path).await.map_err(|e| remote_err(path, e))?;
            if n != f.size || now_there.map(|a| (a.size, a.mtime)) != Some((f.size, f.mtime)) {
                self.seen.remove(path);
                return Err(FileError::new(
                    path,
                    format!(
                        "changed while it was downloaded ({} bytes listed, {n} read): taken again once it holds still",
                        f.size
                    ),
                ));
            }
            let sha256 = sha256_file(&temp).map_err(|e| local_err(path, "reading the download", e))?;
            Ok((n, sha256))
        }
        .await;
        let (n, sha256) = match result {
            Ok(x) => x,
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
        };
        let t = Transfer {
            stage: Stage::Pulled,
            size: n,
            mtime: i64::from(f.mtime),
            sha256,
            temp: temp.to_string_lossy().into_owned(),
            target: target.to_string_lossy().into_owned(),
            at: now(store),
        };
        if let Err(e) = store_record_transfer(store, &remote, Direction::Pull, path, Some(&t)) {
            let _ = std::fs::remove_file(&temp);
            return Err(store_err(path, e));
        }
        self.unfinished_pulls.insert(path.to_string());
        status::transferred(&remote, Direction::Pull, n);
        tracing::info!(remote = %remote, path = %path, into = %target.display(), bytes = n, "pulled");
        self.place(&t, path)?;
        self.finish_remote(s, pull, path, marker).await?;
        let done = Transfer {
            stage: Stage::Done,
            at: now(store),
            ..t
        };
        store_record_transfer(store, &remote, Direction::Pull, path, Some(&done))
            .map_err(|e| store_err(path, e))?;
        self.unfinished_pulls.remove(path);
        Ok(true)
    }

    /// A pulled file's temporary takes its name in the inbox (with the
    /// inbox's ready marker, if it waits for one); done already when the
    /// temporary is gone. A name still taken in the inbox waits.
    fn place(&self, t: &Transfer, path: &str) -> Result<(), FileError> {
        let (temp, target) = (Path::new(&t.temp), Path::new(&t.target));
        let (Some(folder), Some(name)) =
            (target.parent(), target.file_name().and_then(|n| n.to_str()))
        else {
            return Err(FileError::new(path, format!("bad local name {}", t.target)));
        };
        let dir = Dir::open(folder).map_err(|e| local_err(path, "the inbox", e))?;
        if temp.symlink_metadata().is_ok() {
            match dir.move_in(temp, name) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(FileError::new(
                        path,
                        format!(
                            "waiting: {} is still in the inbox under that name",
                            target.display()
                        ),
                    ));
                }
                Err(e) => return Err(local_err(path, "into the inbox", e)),
            }
        }
        if let Some(m) = &self.inbox_marker {
            let marker = format!("{name}{m}");
            if matches!(dir.entry(name), Ok(Some(Entry::File(_))))
                && matches!(dir.entry(&marker), Ok(None))
            {
                match dir.write_new(&marker, b"") {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(local_err(path, "writing the ready marker", e)),
                }
            }
        }
        Ok(())
    }

    /// The remote file (and its marker) deleted or moved once ours.
    async fn finish_remote(
        &self,
        s: &Session,
        pull: &PullConfig,
        path: &str,
        marker: Option<&str>,
    ) -> Result<(), FileError> {
        let mut paths = vec![path.to_string()];
        if let Some(m) = marker {
            paths.push(format!("{path}{m}"));
        }
        for p in &paths {
            let result = match &pull.after {
                After::Delete => s.remove(p).await,
                After::Move(archive) => {
                    let name = p.rsplit('/').next().unwrap_or(p);
                    let to = remote_join(archive, name);
                    match s.rename(p, &to).await {
                        Ok(()) => Ok(()),
                        // A name taken in the archive: kept under another.
                        Err(e) => match s.stat(&to).await {
                            Ok(Some(_)) => {
                                let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
                                s.rename(p, &format!("{to}.{stamp}")).await
                            }
                            _ => Err(e),
                        },
                    }
                }
            };
            if let Err(e) = result {
                // Gone already (a retry after a cut connection): done.
                match s.stat(p).await {
                    Ok(None) => {}
                    _ => return Err(remote_err(p, e)),
                }
            }
        }
        Ok(())
    }

    async fn resume_pull(
        &mut self,
        s: &Session,
        store: &Store,
        path: &str,
        t: &Transfer,
    ) -> Result<(), FileError> {
        self.place(t, path)?;
        let now_there = s.stat(path).await.map_err(|e| remote_err(path, e))?;
        let same = now_there
            .as_ref()
            .is_some_and(|f| (f.size, i64::from(f.mtime)) == (t.size, t.mtime));
        if same {
            let parent = path.rsplit_once('/').map_or("/", |(p, _)| p);
            let Some(pull) = self
                .cfg
                .pulls
                .iter()
                .find(|p| p.from.trim_end_matches('/') == parent.trim_end_matches('/'))
                .cloned()
            else {
                // Its pull is no longer configured: the file stays there.
                return Ok(());
            };
            let marker = match &pull.ready {
                Ready::Marker(m) => Some(m.clone()),
                Ready::Stable => None,
            };
            self.finish_remote(s, &pull, path, marker.as_deref())
                .await?;
        } else if now_there.is_some() {
            // A new file under the name: the listing takes it.
            return Ok(());
        }
        let done = Transfer {
            stage: Stage::Done,
            at: now(store),
            ..t.clone()
        };
        store_record_transfer(store, &self.cfg.name, Direction::Pull, path, Some(&done))
            .map_err(|e| store_err(path, e))?;
        self.unfinished_pulls.remove(path);
        Ok(())
    }

    // ---- push ----

    async fn push(
        &mut self,
        s: &Session,
        store: &Store,
        push: &PushConfig,
        passed: &mut Passed,
    ) -> Result<(), PassError> {
        let folder = self.outbox.join(&push.system);
        let dir = match Dir::open(&folder) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                let e = local_err(&folder.to_string_lossy(), "the outbox", e);
                self.report(&e, passed);
                return Ok(());
            }
        };
        let mut names = match dir.names() {
            Ok(n) => n,
            Err(e) => {
                let e = local_err(&folder.to_string_lossy(), "listing the outbox", e);
                self.report(&e, passed);
                return Ok(());
            }
        };
        names.retain(|n| !n.starts_with('.') && matches!(dir.entry(n), Ok(Some(Entry::File(_)))));
        names.sort();
        // Listed first, then the batches in flight: a file written after
        // the listing waits for the next pass, one whose batch is still in
        // flight is not yet an export (a crash would write its orders
        // again).
        let in_flight: HashSet<String> = store_batches_in_flight(store, &push.system)?
            .into_iter()
            .map(|b| b.file)
            .collect();
        let listed: HashSet<&str> = names.iter().map(String::as_str).collect();
        let (markers, files): (Vec<&String>, Vec<&String>) =
            names.iter().partition(|n| n.ends_with(EXPORT_MARKER));
        let mut pushed_now = HashSet::new();
        for name in files {
            if in_flight.contains(name.as_str()) {
                continue;
            }
            match self.push_one(s, store, push, &dir, name).await {
                Ok(true) => {
                    passed.pushed += 1;
                    pushed_now.insert(name.clone());
                }
                Ok(false) => {}
                Err(e) => {
                    self.report(&e, passed);
                    if let Some(fatal) = e.fatal {
                        return Err(*fatal);
                    }
                }
            }
        }
        // A marker follows its file: once that is delivered and moved.
        for name in markers {
            let file = &name[..name.len() - EXPORT_MARKER.len()];
            if (listed.contains(file) && !pushed_now.contains(file)) || in_flight.contains(file) {
                continue;
            }
            match self.push_one(s, store, push, &dir, name).await {
                Ok(true) => passed.pushed += 1,
                Ok(false) => {}
                Err(e) => {
                    self.report(&e, passed);
                    if let Some(fatal) = e.fatal {
                        return Err(*fatal);
                    }
                }
            }
        }
        Ok(())
    }

    /// One export file: `Ok(true)` when delivered now.
    async fn push_one(
        &mut self,
        s: &Session,
        store: &Store,
        push: &PushConfig,
        dir: &Dir,
        name: &str,
    ) -> Result<bool, FileError> {
        let remote = self.cfg.name.clone();
        let key = format!("{}/{name}", push.system);
        let local = dir.join(name);
        let shown = local.to_string_lossy().into_owned();
        let sha256 = sha256_file(&local).map_err(|e| local_err(&shown, "reading", e))?;
        let size = std::fs::symlink_metadata(&local)
            .map_err(|e| local_err(&shown, "reading", e))?
            .len();
        let mut earlier = store_transfer(store, &remote, Direction::Push, &key)
            .map_err(|e| store_err(&shown, e))?;
        if let Some(t) = earlier.take_if(|t| t.sha256 != sha256)
            && !t.stage.is_finished()
        {
            // The file changed since its transfer began (it should not):
            // the old upload's temporary goes, and it starts anew.
            remove_if_there(s, &t.temp).await?;
        }
        let final_path = remote_join(&push.to, name);
        let mut t = match earlier {
            Some(t) if t.stage == Stage::Pushed => {
                // Delivered before a crash: only the local move is left.
                return sent(dir, name, &shown).map(|()| false);
            }
            Some(t) if t.stage == Stage::Renaming => {
                self.rename_pushed(s, store, &key, &t).await?;
                sent(dir, name, &shown)?;
                return Ok(true);
            }
            // Pushing: the same temporary, written again from the start.
            Some(t) => t,
            None => Transfer {
                stage: Stage::Pushing,
                size,
                mtime: 0,
                sha256,
                temp: remote_join(&push.to, &format!(".{name}.ordersync-{}", Uuid::new_v4())),
                target: final_path.clone(),
                at: now(store),
            },
        };
        store_record_transfer(store, &remote, Direction::Push, &key, Some(&t))
            .map_err(|e| store_err(&shown, e))?;
        let deadline = self.cfg.io_timeout * 4 + Duration::from_secs(size / (64 << 10));
        let n = s
            .upload(&local, &t.temp, deadline)
            .await
            .map_err(|e| remote_err(&t.temp, e))?;
        if n != size {
            return Err(FileError::new(
                &shown,
                format!("changed while it was uploaded ({size} bytes, {n} sent)"),
            ));
        }
        t.stage = Stage::Renaming;
        t.at = now(store);
        store_record_transfer(store, &remote, Direction::Push, &key, Some(&t))
            .map_err(|e| store_err(&shown, e))?;
        self.rename_pushed(s, store, &key, &t).await?;
        status::transferred(&remote, Direction::Push, n);
        tracing::info!(remote = %remote, file = %shown, to = %final_path, bytes = n, "pushed");
        sent(dir, name, &shown)?;
        Ok(true)
    }

    /// A push in *renaming*: the temporary takes the final name if it is
    /// still there (gone: it did already); then *pushed*.
    async fn rename_pushed(
        &self,
        s: &Session,
        store: &Store,
        key: &str,
        t: &Transfer,
    ) -> Result<(), FileError> {
        if s.stat(&t.temp)
            .await
            .map_err(|e| remote_err(&t.temp, e))?
            .is_some()
        {
            s.rename_over(&t.temp, &t.target)
                .await
                .map_err(|e| remote_err(&t.temp, e))?;
        }
        let done = Transfer {
            stage: Stage::Pushed,
            at: now(store),
            ..t.clone()
        };
        store_record_transfer(store, &self.cfg.name, Direction::Push, key, Some(&done))
            .map_err(|e| store_err(&t.target, e))
    }

    async fn resume_push(
        &mut self,
        s: &Session,
        store: &Store,
        key: &str,
        t: &Transfer,
    ) -> Result<(), FileError> {
        let Some((system, name)) = key.split_once('/') else {
            return Ok(());
        };
        let dir = Dir::open(&self.outbox.join(system)).ok();
        let local_there = dir
            .as_ref()
            .is_some_and(|d| matches!(d.entry(name), Ok(Some(Entry::File(_)))));
        if local_there {
            // The pass finishes it (the file may have changed).
            return Ok(());
        }
        match t.stage {
            Stage::Renaming => {
                // Uploaded whole: deliver it.
                self.rename_pushed(s, store, key, t).await
            }
            _ => {
                // Its file is gone from the outbox (an operator): the
                // half-written temporary goes too, and the record.
                remove_if_there(s, &t.temp).await?;
                store_record_transfer(store, &self.cfg.name, Direction::Push, key, None)
                    .map_err(|e| store_err(&t.target, e))
            }
        }
    }
}

/// Removes the remote file at `path` if it is there.
async fn remove_if_there(s: &Session, path: &str) -> Result<(), FileError> {
    if s.stat(path)
        .await
        .map_err(|e| remote_err(path, e))?
        .is_some()
    {
        s.remove(path).await.map_err(|e| remote_err(path, e))?;
    }
    Ok(())
}

/// A delivered export file moves into `sent/` beside it (a name taken
/// there gets a suffix: nothing is replaced).
fn sent(dir: &Dir, name: &str, shown: &str) -> Result<(), FileError> {
    let sent = dir
        .sub(SENT, true)
        .map_err(|e| local_err(shown, "the sent folder", e))?;
    let to = sent
        .free_name(name, &[])
        .map_err(|e| local_err(shown, "the sent folder", e))?;
    sent.move_in(&dir.join(name), &to)
        .map_err(|e| local_err(shown, "moving into sent/", e))?;
    Ok(())
}

/// `folder/name` on the remote side.
pub fn remote_join(folder: &str, name: &str) -> String {
    format!("{}/{name}", folder.trim_end_matches('/'))
}

/// Why a remote name is never taken: a path separator, a dot name of its
/// own, a control character.
pub fn unsafe_name(name: &str) -> Option<&'static str> {
    if name.is_empty() || name == "." || name == ".." {
        Some("not a file name")
    } else if name.contains('/') || name.contains('\\') {
        Some("a path separator in the name")
    } else if name.chars().any(char::is_control) {
        Some("a control character in the name")
    } else if name.len() > 255 {
        Some("a name longer than 255 bytes")
    } else {
        None
    }
}

/// The SHA-256 of a file, streamed, as lowercase hex.
fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The store's clock, UNIX ms.
fn now(store: &Store) -> i64 {
    blocking(|| store.now().timestamp_millis())
}

/// The store's calls block (PostgreSQL's client runs a runtime of its
/// own): off the remote's runtime, whose other tasks (the connection's)
/// go on meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn store_transfer(
    store: &Store,
    remote: &str,
    direction: Direction,
    name: &str,
) -> Result<Option<Transfer>, StoreError> {
    blocking(|| store.transfer(remote, direction, name))
}

fn store_record_transfer(
    store: &Store,
    remote: &str,
    direction: Direction,
    name: &str,
    t: Option<&Transfer>,
) -> Result<(), StoreError> {
    blocking(|| store.record_transfer(remote, direction, name, t))
}

fn store_unfinished_transfers(
    store: &Store,
    remote: &str,
) -> Result<Vec<(Direction, String, Transfer)>, StoreError> {
    blocking(|| store.unfinished_transfers(remote))
}

fn store_batches_in_flight(
    store: &Store,
    system: &str,
) -> Result<Vec<crate::store::Batch>, StoreError> {
    blocking(|| store.batches_in_flight(system))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "..\\x",
            "a\nb",
            "a\u{1b}[31m",
            &"x".repeat(256),
        ] {
            assert!(unsafe_name(bad).is_some(), "{bad:?}");
        }
        for good in ["orders-1.json", "ÄÖ ü.csv", ".hidden", "a..b"] {
            assert_eq!(unsafe_name(good), None, "{good:?}");
        }
    }
}
