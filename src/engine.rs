//! The pipeline, a group of files at a time: read each ready inbox file,
//! parse it, check it and stage its changes; apply the group's changes as
//! one atomic batch, flush, move each file to `archive/` (or, rejected, to
//! `errors/`); then export. Both `run --once` and the daemon drive this.
//!
//! The order of durable steps is what makes crashes harmless: the store
//! records the file (name + hash) with its effects and is flushed *before*
//! the file is moved, so a file found again after a crash is archived
//! without effect.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::export::{self, ExportError};
use crate::fsutil::Dir;
use crate::inbox::{self, Candidate, ReadOutcome, Settle};
use crate::input;
use crate::problem::Problem;
use crate::store::{Applied, ApplyError, Context, Group, SMALL_FILE, Store, StoreError};

/// A failure that stops processing (the file in hand stays in the inbox).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    // The path is quoted and escaped: inbox names may hold newlines. The
    // cause is in the message, and deliberately not a `source`: an error
    // chain printed with `{:#}` would say it twice.
    #[error("{what} {path:?}: {error}")]
    Io {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Export(#[from] ExportError),
}

impl EngineError {
    /// The store's error, if the store is what failed (directly or while
    /// exporting): the same for every file, unlike a file's own trouble.
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            EngineError::Store(e) | EngineError::Export(ExportError::Store(e)) => Some(e),
            _ => None,
        }
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> EngineError + 'a {
    move |error| EngineError::Io {
        what,
        path: path.to_path_buf(),
        error,
    }
}

/// What became of one inbox file.
#[derive(Debug)]
pub enum Outcome {
    /// Applied and archived.
    Applied(PathBuf),
    /// Same name and content as a file applied before: archived, no effect.
    AlreadyApplied(PathBuf),
    /// Rejected to `errors/` with its report.
    Rejected(PathBuf, Vec<Problem>),
    /// It changed or vanished while being read: left for a later scan.
    NotReady,
}

/// The most files one group takes before its flush.
pub const GROUP_FILES: usize = 256;
/// The most bytes one group reads before its flush (a larger file is a
/// group of its own).
pub const GROUP_BYTES: u64 = 16 << 20;
/// How long a group goes on taking files before its flush.
pub const GROUP_TIME: Duration = Duration::from_millis(500);

/// The most bytes of small files a group reads and parses before it
/// stages them (a wave: see [`Engine::process_group`]).
pub const WAVE_BYTES: u64 = 2 << 20;

/// A file read and parsed, not yet staged.
struct Opened<'b> {
    sha256: [u8; 32],
    now: chrono::DateTime<Utc>,
    parsed: input::Parsed<'b>,
}

/// Records what became of file `i` of a group (`c`, staged since `took`):
/// its result, or its place among the files to archive after the flush.
/// `Some(data)` when the store failed, which ends the group: `data` says
/// whether the store refused data ([`StoreError::is_data_error`]) rather
/// than failed.
fn record(
    i: usize,
    c: &Candidate,
    step: Result<Step, EngineError>,
    took: Instant,
    results: &mut [Result<Outcome, EngineError>],
    to_archive: &mut Vec<(usize, Staged)>,
) -> Option<bool> {
    match step {
        Ok(Step::Done(outcome)) => {
            if let Outcome::Rejected(..) = outcome {
                crate::metrics::global().file_rejected(&c.name, took.elapsed());
            }
            results[i] = Ok(outcome);
            None
        }
        Ok(Step::Archive(staged)) => {
            if staged.summary.is_some() {
                crate::metrics::global().file_applied(staged.kind, took.elapsed());
            }
            to_archive.push((i, staged));
            results[i] = Ok(Outcome::NotReady); // replaced after the flush
            None
        }
        Err(e) => {
            let store = e.store_error().map(StoreError::is_data_error);
            results[i] = Err(e);
            store
        }
    }
}

/// What became of a file in a group before the group's flush.
enum Step {
    /// Finished (rejected, or not ready).
    Done(Outcome),
    /// Applied or found applied: to be archived after the flush.
    Archive(Staged),
}

/// A file applied in a group, waiting for the flush.
struct Staged {
    now: chrono::DateTime<Utc>,
    kind: &'static str,
    /// `None`: it had been applied before (same name and content).
    summary: Option<crate::store::Summary>,
}

/// The open store with its configuration.
pub struct Engine {
    pub config: Config,
    pub store: Store,
}

impl Engine {
    /// Creates the folders (never outside the configured ones) and opens the
    /// store. The state folder must be a real folder, not a symlink (fatal).
    /// An outbox, `outbox/<system>`, archive or errors folder that is not a
    /// real folder (a symlink, say) is only logged here: nothing is written
    /// into it or removed from it, and whatever needs it fails and is retried
    /// later (files stay in the inbox, orders stay pending).
    ///
    /// On PostgreSQL a process alone on its store (no `[cluster]`) holds
    /// the writer's lease from here until the engine is dropped, or is
    /// refused naming the process that holds it ([`StoreError::Held`]);
    /// a daemon opens with [`Engine::open_for_daemon`] instead.
    pub fn open(config: Config) -> Result<Engine, EngineError> {
        Engine::open_as(config, true)
    }

    /// [`Engine::open`] for a daemon, which takes the writer's lease when
    /// it leads (`crate::cluster`), not at its opening.
    pub fn open_for_daemon(config: Config) -> Result<Engine, EngineError> {
        Engine::open_as(config, false)
    }

    fn open_as(config: Config, hold: bool) -> Result<Engine, EngineError> {
        let p = &config.paths;
        // The inbox may be a symlink to a folder (it is read, never
        // written into), but it must be a folder.
        if p.inbox.exists() && !p.inbox.is_dir() {
            let e = io::Error::new(io::ErrorKind::NotADirectory, "is not a folder");
            return Err(io_err("the inbox", &p.inbox)(e));
        }
        std::fs::create_dir_all(&p.inbox).map_err(io_err("creating the inbox", &p.inbox))?;
        Dir::create(&p.state).map_err(io_err("opening the state folder", &p.state))?;
        let usable = |dir: &Path, opened: std::io::Result<Dir>| match opened {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!(folder = %dir.display(), error = %e, "folder unusable: nothing is written there until it is a real folder");
                None
            }
        };
        usable(&p.archive, Dir::create(&p.archive));
        // Systems' own inboxes: real folders only, like the others.
        for (_, dir) in config.inboxes().into_iter().skip(1) {
            usable(dir, Dir::create(dir));
        }
        usable(&p.errors, Dir::create(&p.errors));
        if let Some(outbox) = usable(&p.outbox, Dir::create(&p.outbox)) {
            for s in &config.systems {
                if s.transport == crate::config::Transport::Files {
                    usable(&p.outbox.join(&s.id), outbox.sub(&s.id, true));
                }
            }
        }
        let store = Store::open(&p.state, &config.store)?;
        let engine = Engine { config, store };
        let alone = engine.config.cluster.is_none();
        if hold && alone {
            crate::cluster::hold_for_command(&engine, "this command")?;
        }
        // A process cleans when no write of another can be in flight:
        // sled's lock is held here; on PostgreSQL, while it holds the
        // writer's lease.
        if engine.store.postgres().is_none() || (hold && alone) {
            engine.remove_stale_temporaries()?;
        }
        Ok(engine)
    }

    /// Removes the hidden temporaries an interrupted run left in `errors/`
    /// and the outboxes. Only while no write of ours can be in flight: the
    /// store's lock held, or (a node of a pair) the lease just taken. Only
    /// real folders are cleaned, through their descriptors: never where a
    /// symlink points.
    pub fn remove_stale_temporaries(&self) -> Result<(), EngineError> {
        let p = &self.config.paths;
        let mut dirs: Vec<Dir> = Dir::open(&p.errors).into_iter().collect();
        if let Ok(outbox) = Dir::open(&p.outbox) {
            for s in &self.config.systems {
                if s.transport == crate::config::Transport::Files
                    && let Ok(d) = outbox.sub(&s.id, false)
                {
                    dirs.push(d);
                }
            }
        }
        for dir in &dirs {
            let n = dir
                .remove_stale_temporaries()
                .map_err(io_err("cleaning", dir.path()))?;
            if n > 0 {
                tracing::info!(folder = %dir.path().display(), removed = n, "removed temporary files left by an interrupted run");
            }
        }
        Ok(())
    }

    /// Before processing: re-evaluates stored orders for every system whose
    /// eligibility settings changed since the last run (or that is new), so
    /// an order eligible for a system reaches it even if it arrived before
    /// the system was configured so.
    pub fn reconcile_systems(&self) -> Result<(), EngineError> {
        let now = self.store.now().timestamp_millis();
        for system in &self.config.systems {
            let fingerprint = system.eligibility_fingerprint();
            let (queued, dropped) = self.store.reconcile_system(system, &fingerprint, now)?;
            if queued + dropped > 0 {
                tracing::info!(system = %system.id, queued, dropped, "eligibility settings changed: stored orders re-evaluated");
            }
        }
        Ok(())
    }

    /// Processes one ready candidate (a group of one).
    pub fn process(&self, c: &Candidate) -> Result<Outcome, EngineError> {
        let mut results = self.process_group(std::slice::from_ref(c))?;
        results.pop().unwrap_or(Ok(Outcome::NotReady))
    }

    /// Processes ready candidates, in their order, as one group: each file is
    /// checked and its writes staged over the group's (a rejected file's are
    /// dropped and it goes to `errors/` at once: it changes nothing), then
    /// the group's writes are applied as **one** atomic batch and **one**
    /// flush makes them durable, then each applied file is moved to
    /// `archive/`. Durability is paid per group, not per file; exactly-once
    /// holds as for one file (a crash before the flush leaves the files to
    /// be applied again, after it to be archived without effect).
    ///
    /// Small files are taken in waves (up to [`WAVE_BYTES`]): each wave's
    /// files are read and parsed first and the store reads ahead what they
    /// all need ([`Store::read_ahead`]: on PostgreSQL a few round trips for
    /// the wave, not a few per file), then each is staged in turn.
    ///
    /// The group ends after [`GROUP_FILES`] files, [`GROUP_BYTES`] read or
    /// [`GROUP_TIME`], whichever comes first, so it is a bounded step: the
    /// result has one entry per file taken (the others are for the next
    /// call). One file's trouble is its own entry; the others go on. A store
    /// failure ends the group: `Err` when the flush failed (then no applied
    /// file of the group was moved; they stay in the inbox). When the store
    /// refuses the group's commit for its data (not an outage:
    /// [`StoreError::is_data_error`]), the files are applied again one at a
    /// time and the one refused is rejected with the store's message, so a
    /// poison value never holds up the other files.
    pub fn process_group(
        &self,
        cs: &[Candidate],
    ) -> Result<Vec<Result<Outcome, EngineError>>, EngineError> {
        let start = Instant::now();
        let mut results: Vec<Result<Outcome, EngineError>> = Vec::new();
        // Applied (or found applied) and waiting for the group's flush.
        let mut to_archive: Vec<(usize, Staged)> = Vec::new();
        let mut read: u64 = 0;
        let group = self.store.group();
        // A store failure while staging: the file's index, and whether the
        // store refused data (not an outage).
        let mut failed: Option<(usize, bool)> = None;
        let full = |i: usize, read: u64| {
            i > 0 && (i >= GROUP_FILES || read >= GROUP_BYTES || start.elapsed() >= GROUP_TIME)
        };
        let mut i = 0;
        'files: while i < cs.len() && !full(i, read) {
            if cs[i].size > SMALL_FILE as u64 {
                // A big file: staged alone (its chunks commit as they go).
                let took = Instant::now();
                read += cs[i].size;
                results.push(Ok(Outcome::NotReady));
                let step = self.stage(&cs[i], &group);
                if let Some(data) = record(i, &cs[i], step, took, &mut results, &mut to_archive) {
                    failed = Some((i, data));
                    break;
                }
                i += 1;
                continue;
            }
            // A wave: the next small files, read and parsed first, so that
            // the store reads what they all need at once (on PostgreSQL, a
            // few round trips for the wave, not a few per file); then each
            // is staged in turn, as a file alone is.
            let first = i;
            let mut wave_bytes: u64 = 0;
            while i < cs.len()
                && cs[i].size <= SMALL_FILE as u64
                && (i == first || (!full(i, read) && wave_bytes + cs[i].size <= WAVE_BYTES))
            {
                read += cs[i].size;
                wave_bytes += cs[i].size;
                results.push(Ok(Outcome::NotReady));
                i += 1;
            }
            let mut contents: Vec<(usize, Vec<u8>)> = Vec::with_capacity(i - first);
            for w in first..i {
                match self.read(&cs[w]) {
                    Ok(Ok(bytes)) => contents.push((w, bytes)),
                    Ok(Err(outcome)) => {
                        let step = Ok(Step::Done(outcome));
                        record(
                            w,
                            &cs[w],
                            step,
                            Instant::now(),
                            &mut results,
                            &mut to_archive,
                        );
                    }
                    Err(e) => results[w] = Err(e),
                }
            }
            let opened: Vec<(usize, Opened)> = contents
                .iter()
                .map(|(w, bytes)| (*w, self.open_file(&cs[*w], bytes)))
                .collect();
            let labels: Vec<String> = opened.iter().map(|(w, _)| cs[*w].label()).collect();
            let ahead: Vec<(&str, &[u8; 32], &input::Input)> = opened
                .iter()
                .zip(&labels)
                .filter_map(|((_, f), label)| {
                    f.parsed
                        .input
                        .as_ref()
                        .map(|input| (label.as_str(), &f.sha256, input))
                })
                .collect();
            if let (Some(&(w, _)), false) = (opened.first(), ahead.is_empty()) {
                let ctx = self.context(self.store.now().timestamp_millis(), None);
                match self.store.read_ahead(&group, &ahead, &ctx) {
                    Ok(()) => {}
                    // Speed only: each file reads what it needs as it is
                    // staged, and the one the store refuses is found then.
                    Err(e) if e.is_data_error() => {
                        tracing::debug!(error = %e, "reading ahead for a group's files failed; they read one by one");
                    }
                    Err(e) => {
                        results[w] = Err(e.into());
                        failed = Some((w, false));
                        break 'files;
                    }
                }
            }
            drop(ahead);
            for (w, file) in opened {
                let took = Instant::now();
                let step = self.stage_opened(&cs[w], file, &group);
                if let Some(data) = record(w, &cs[w], step, took, &mut results, &mut to_archive) {
                    failed = Some((w, data));
                    break 'files;
                }
            }
        }
        let retry = |group: Group, mut files: Vec<usize>, results: &mut Vec<_>| {
            // The writer's lock goes with the group: each file is staged
            // again in a group of its own.
            drop(group);
            files.sort_unstable();
            self.one_by_one(cs, files, results)
        };
        let staged: Vec<usize> = to_archive.iter().map(|(i, _)| *i).collect();
        let to_archive = match failed {
            None => match group.commit() {
                Ok(()) => to_archive,
                // The store refused the data itself (PostgreSQL: a value an
                // index cannot hold, a constraint): one file's doing, which
                // must not hold up the others. Each is applied again alone,
                // so the good ones land and the one refused goes to errors/.
                Err(e) if e.is_data_error() => {
                    tracing::warn!(error = %e, files = staged.len(), "the store refused the group's changes; applying its files one at a time");
                    retry(group, staged, &mut results)
                }
                // An outage (or anything else): every file waits in the inbox.
                Err(e) => return Err(e.into()),
            },
            // The store refused data while a file was staged: its own read,
            // or the group's commit a big file makes before its chunks.
            // The group's files and that one are applied again alone.
            Some((i, true)) => {
                tracing::warn!(file = ?cs[i].label(), "the store refused data while a file was staged; applying the group's files one at a time");
                retry(group, staged.into_iter().chain([i]).collect(), &mut results)
            }
            // Any other store failure while staging: whether the group's
            // writes were committed (a big file commits them first) is not
            // known, so none of its files is archived: they stay in the
            // inbox, to be applied (or found applied) again.
            Some((_, false)) => {
                drop(group);
                for i in staged {
                    results[i] = Ok(Outcome::NotReady);
                }
                return Ok(results);
            }
        };
        if to_archive.is_empty() {
            return Ok(results);
        }
        self.store.flush()?;
        let mut days = Vec::new();
        // A node of a pair moves inbox files only while it surely still
        // leads (as it writes export files): one frozen after its commit
        // and woken after another took over leaves them to that one, which
        // finds them applied.
        // `None`: to be asked; `Some(None)`: no end (sled).
        let mut deadline: Option<Option<Instant>> = None;
        let mut fenced = false;
        for (i, staged) in to_archive {
            if fenced {
                results[i] = Ok(Outcome::NotReady);
                continue;
            }
            let passed = |d: &Option<Instant>| d.is_some_and(|d| Instant::now() >= d);
            if deadline.as_ref().is_none_or(passed) {
                match self.store.lease_deadline() {
                    Ok(d) => deadline = Some(d),
                    Err(e) => {
                        fenced = true;
                        results[i] = Err(e.into());
                        continue;
                    }
                }
            }
            let day = staged.now.date_naive();
            if !days.iter().any(|(d, _)| *d == day) {
                days.push((day, staged.now));
            }
            results[i] = self.archive(&cs[i], staged);
        }
        // The moves, made durable once for the group.
        for (_, now) in days {
            if let Err(e) = inbox::sync_archived(&self.config, now) {
                tracing::warn!(error = %e, "could not flush the archive folder; a move lost in a crash is redone without effect");
            }
        }
        Ok(results)
    }

    /// After the store refused a group's data ([`StoreError::is_data_error`]):
    /// stages and commits each of the files `files` (indexes into `cs`) in
    /// a group of its own.
    /// A file whose commit the store refuses for its data is rejected to
    /// `errors/` with the store's message as its report; any other store
    /// failure ends the retries (that file and those after it stay in the
    /// inbox). Returns the files committed, to be
    /// flushed and archived.
    fn one_by_one(
        &self,
        cs: &[Candidate],
        files: Vec<usize>,
        results: &mut [Result<Outcome, EngineError>],
    ) -> Vec<(usize, Staged)> {
        let mut committed = Vec::new();
        let mut failed = false;
        for i in files {
            let c = &cs[i];
            if failed {
                // Left for the next scan, as after a failed group.
                results[i] = Ok(Outcome::NotReady);
                continue;
            }
            let group = self.store.group();
            let step = self.stage(c, &group);
            let commit = group.commit();
            results[i] = match (step, commit) {
                (Ok(Step::Archive(s)), Ok(())) => {
                    committed.push((i, s));
                    Ok(Outcome::NotReady) // replaced after the flush
                }
                (Ok(Step::Archive(_)), Err(e)) if e.is_data_error() => {
                    let p = Problem::new(
                        "store",
                        format!("the store refused this file's changes: {e}"),
                    );
                    self.reject(c, vec![p])
                }
                (Ok(Step::Done(outcome)), Ok(())) => Ok(outcome),
                // A small file's data refused while it was staged (a
                // read): nothing of it was written. A big one may have
                // applied chunks already, so it is not rejected: it stays.
                (Err(e), _)
                    if c.size <= SMALL_FILE as u64
                        && e.store_error().is_some_and(StoreError::is_data_error) =>
                {
                    let p = Problem::new(
                        "store",
                        format!("the store refused this file's changes: {e}"),
                    );
                    self.reject(c, vec![p])
                }
                (Err(e), _) => {
                    failed |= e.store_error().is_some();
                    Err(e)
                }
                (_, Err(e)) => {
                    failed = true;
                    Err(e.into())
                }
            };
        }
        committed
    }

    /// Reads, parses and applies one file into `group` (no commit, no
    /// flush). A rejected file is moved to `errors/` here.
    fn stage(&self, c: &Candidate, group: &Group) -> Result<Step, EngineError> {
        match self.read(c)? {
            Ok(bytes) => self.stage_opened(c, self.open_file(c, &bytes), group),
            Err(outcome) => Ok(Step::Done(outcome)),
        }
    }

    /// A file's bytes, or what became of it when it could not be read
    /// whole (changed while read; larger than `max_file_size`: rejected).
    fn read(&self, c: &Candidate) -> Result<Result<Vec<u8>, Outcome>, EngineError> {
        // A big file's check pass logs its progress only after some
        // seconds: say at once that it is being worked on.
        if c.size > SMALL_FILE as u64 {
            tracing::info!(file = ?c.label(), bytes = c.size, "reading and checking a big file");
        } else {
            tracing::debug!(file = ?c.label(), bytes = c.size, "reading");
        }
        let max = self.config.inbox.max_file_size;
        match inbox::read(c, max).map_err(io_err("reading", &c.path))? {
            ReadOutcome::Content(b) => Ok(Ok(b)),
            ReadOutcome::Changed => Ok(Err(Outcome::NotReady)),
            ReadOutcome::TooLarge(n) => {
                let p = Problem::new(
                    "file",
                    format!(
                        "{n} bytes is larger than [inbox] max_file_size ({max} bytes); not read"
                    ),
                );
                self.reject(c, vec![p]).map(Err)
            }
        }
    }

    /// A file's bytes parsed, with their hash and the time they were read.
    fn open_file<'b>(&self, c: &Candidate, bytes: &'b [u8]) -> Opened<'b> {
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        let now = self.store.now();
        let parsed = input::parse(
            &c.name,
            bytes,
            self.config.inbox.encoding,
            now.timestamp_millis(),
        );
        Opened {
            sha256,
            now,
            parsed,
        }
    }

    /// What the rules know of this configuration, for a file from the
    /// drop folder of `only_system` (or the inbox).
    fn context<'c>(&'c self, now: i64, only_system: Option<&'c str>) -> Context<'c> {
        Context {
            now,
            systems: &self.config.systems,
            allow_negative: self.config.inventory.allow_negative,
            only_system,
        }
    }

    /// Applies a parsed file into `group`, or rejects it (to `errors/`).
    fn stage_opened(
        &self,
        c: &Candidate,
        file: Opened,
        group: &Group,
    ) -> Result<Step, EngineError> {
        let Opened {
            sha256,
            now,
            parsed,
        } = file;
        let Some(input) = &parsed.input else {
            return self.reject(c, parsed.problems).map(Step::Done);
        };
        // A system's own inbox takes acks for that system only.
        let ctx = self.context(now.timestamp_millis(), c.system.as_deref());
        match self
            .store
            .apply(group, &c.label(), &sha256, input, &parsed.problems, &ctx)
        {
            // The record may only be in memory, from an apply whose flush
            // failed: the group's flush makes it durable before the file goes.
            Ok(Applied::AlreadyApplied) => Ok(Step::Archive(Staged {
                now,
                kind: input.kind(),
                summary: None,
            })),
            Ok(Applied::Done(s)) => Ok(Step::Archive(Staged {
                now,
                kind: input.kind(),
                summary: Some(s),
            })),
            Err(ApplyError::Rejected(problems)) => self.reject(c, problems).map(Step::Done),
            Err(ApplyError::Interrupted) => {
                tracing::info!(file = ?c.label(), "stopping: the file is left in the inbox and resumed at the next start");
                Ok(Step::Done(Outcome::NotReady))
            }
            Err(ApplyError::Store(e)) => Err(e.into()),
        }
    }

    /// Moves a file whose effects are durable to `archive/`.
    fn archive(&self, c: &Candidate, staged: Staged) -> Result<Outcome, EngineError> {
        if !c.still_there() {
            // Renamed over (or removed) since it was read: what is at the
            // name now was not applied and is not moved; the next scan
            // judges it on its own.
            tracing::warn!(file = ?c.label(), "applied, but replaced at its name before it could be archived: what is there now is left for the next scan");
            return Ok(match staged.summary {
                None => Outcome::AlreadyApplied(c.path.clone()),
                Some(_) => Outcome::Applied(c.path.clone()),
            });
        }
        let to =
            inbox::archive(&self.config, c, staged.now).map_err(io_err("archiving", &c.path))?;
        match staged.summary {
            None => {
                tracing::info!(file = ?c.label(), to = ?to, "already applied (same name and content): archived without effect");
                Ok(Outcome::AlreadyApplied(to))
            }
            Some(s) => {
                tracing::info!(
                    file = ?c.label(), kind = staged.kind, new = s.new_orders, updated = s.updated_orders,
                    duplicates = s.duplicate_orders, acks = s.acks, regulated = s.regulated,
                    stock_rows = s.stock_rows, to = ?to, "applied"
                );
                Ok(Outcome::Applied(to))
            }
        }
    }

    fn reject(&self, c: &Candidate, mut problems: Vec<Problem>) -> Result<Outcome, EngineError> {
        if !c.still_there() {
            // What was judged is gone; whatever is at the name now is not
            // moved with a report that is not about it.
            tracing::warn!(file = ?c.label(), "rejected, but replaced at its name before it could be moved: what is there now is left for the next scan");
            return Ok(Outcome::NotReady);
        }
        // A name too long to take `.error.txt` (NAME_MAX is 255 bytes) could
        // never be rejected under its own name and would stay in the inbox
        // forever. It goes to errors/ under a shortened name instead; the
        // report gives the original one, so nothing is lost.
        let short = inbox::shortened(&c.kept_name());
        let c = &match &short {
            Some(name) => {
                problems.push(Problem::new(
                    "file",
                    format!(
                        "the name is {} bytes, too long to keep beside its report: kept as {name:?}; original name: {:?}",
                        c.kept_name().len(),
                        c.label()
                    ),
                ));
                // Kept under exactly this name, prefix included.
                Candidate {
                    name: name.clone(),
                    system: None,
                    ..c.clone()
                }
            }
            None => c.clone(),
        };
        let to = inbox::reject(&self.config, c, &problems).map_err(io_err("rejecting", &c.path))?;
        tracing::warn!(
            file = ?c.label(), problems = problems.len(), first = ?problems.first().map(ToString::to_string).unwrap_or_default(),
            report = ?format!("{}{}", to.display(), inbox::ERROR_SUFFIX), "rejected"
        );
        Ok(Outcome::Rejected(to, problems))
    }

    /// Writes export files for everything pending.
    pub fn export(&self) -> Result<Vec<PathBuf>, EngineError> {
        Ok(export::export_all(&self.store, &self.config)?)
    }

    /// Exports the systems for which `due(id)` holds, each on its own and at
    /// most `groups` groups of files each: a failing system is reported in
    /// the result and does not stop the others.
    pub fn export_systems(&self, due: impl Fn(&str) -> bool, groups: usize) -> export::Report {
        let took = Instant::now();
        let report = export::export_systems(&self.store, &self.config, due, groups);
        crate::metrics::global().exported(report.written.len(), took.elapsed());
        report
    }

    /// `run --once`: finishes interrupted export batches, then takes every
    /// inbox file as it becomes ready (waiting out `settle`) until none is
    /// left, exporting as it goes. Files waiting for a ready marker that does
    /// not exist are left for a later run. A file that cannot be read or
    /// moved is logged once, left in the inbox and skipped; the others go
    /// on, and it is listed in [`DrainStats::failed`]. A store or export
    /// failure stops the drain.
    pub fn drain(&self) -> Result<DrainStats, EngineError> {
        self.reconcile_systems()?;
        // A system whose export fails does not stop the drain (nor the other
        // systems); the failure is returned at the end.
        let mut export_failed = None;
        self.export_round(&mut export_failed);
        let mut settle = Settle::default();
        let mut noted = HashSet::new();
        let mut stats = DrainStats::default();
        let mut skipped = HashSet::new();
        let inbox_dir = &self.config.paths.inbox;
        loop {
            let mut candidates =
                inbox::scan_all(&self.config, &mut noted).map_err(io_err("scanning", inbox_dir))?;
            candidates.retain(|c| !skipped.contains(&c.path));
            if candidates.is_empty() {
                break;
            }
            let (ready, next) = settle.ready(candidates, &self.config.inbox, Instant::now());
            if ready.is_empty() {
                match next {
                    None => break,
                    Some(_) => std::thread::sleep(inbox::until(next, Duration::from_millis(250))),
                }
                continue;
            }
            let mut rest = &ready[..];
            while !rest.is_empty() {
                let results = self.process_group(rest)?;
                let taken = results.len().clamp(1, rest.len());
                for (c, result) in rest.iter().zip(results) {
                    match result {
                        Ok(outcome) => stats.count(&outcome),
                        Err(e) if e.store_error().is_some() => return Err(e),
                        Err(e) => {
                            tracing::error!(file = ?c.label(), error = %e, "could not process; left in the inbox, going on with the other files");
                            stats.failed.push((c.name.clone(), e.to_string()));
                            skipped.insert(c.path.clone());
                        }
                    }
                    settle.forget(&c.path);
                }
                rest = &rest[taken..];
            }
            stats.export_files += self.export_round(&mut export_failed);
        }
        match export_failed {
            Some(e) => Err(e.into()),
            None => Ok(stats),
        }
    }

    /// Exports every system; logs each failing one and keeps the failures
    /// of this round (none if all went well) in `failed`. Returns how many files were written.
    fn export_round(&self, failed: &mut Option<ExportError>) -> usize {
        let report = self.export_systems(|_| true, usize::MAX);
        for (id, e) in &report.failed {
            tracing::error!(system = %id, error = %e, "export failed; its orders stay pending");
        }
        *failed = (!report.failed.is_empty()).then(|| ExportError::Systems(report.failed));
        report.written.len()
    }
}

/// Counts of what a drain did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainStats {
    pub applied: usize,
    pub already_applied: usize,
    pub rejected: usize,
    pub export_files: usize,
    /// Files that could not be processed and stay in the inbox: name and
    /// why.
    pub failed: Vec<(String, String)>,
}

impl DrainStats {
    /// Counts one outcome.
    pub fn count(&mut self, o: &Outcome) {
        match o {
            Outcome::Applied(_) => self.applied += 1,
            Outcome::AlreadyApplied(_) => self.already_applied += 1,
            Outcome::Rejected(..) => self.rejected += 1,
            Outcome::NotReady => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::inbox::{MAX_KEPT_NAME, shortened};

    #[test]
    fn long_names_are_shortened_on_char_boundaries() {
        assert_eq!(shortened("a.json"), None);
        let long = format!("{}.json", "é".repeat(130));
        let short = shortened(&long).unwrap();
        assert!(short.len() <= MAX_KEPT_NAME, "{}", short.len());
        assert!(short.ends_with("é.json") && short.contains('…'), "{short}");
    }
}
