//! Where the loop's file system hints come from. [`watch`] sets up the
//! notify watcher on every inbox; its callback runs on the watcher's
//! thread and does nothing but turn an event into a [`Hint`] ([`hint_of`])
//! and `try_send` it: a full channel drops the hint, an overflow becomes
//! [`Hint::Rescan`], and the loop, which treats hints as hints and scans
//! the folders for the truth, notices both. [`identity`] tells the loop
//! when an inbox folder was replaced (a share remounted), so that it is
//! watched again.
//!
//! Which events hold a file back matters: only a write or a create (a
//! writer has the file open) does, until its close-write event; anything
//! that no close event follows must stay a plain change, or a file would
//! be held back for ever.

use std::path::PathBuf;
use std::sync::mpsc::SyncSender;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::Hint;

/// Turns file system events into hints. The callback only converts and
/// `try_send`s: it never blocks the watcher's thread. A full channel drops
/// the hint; the loop notices (see [`HINTS`](super::HINTS)).
/// Every inbox (the shared one and the systems' own) is watched; if one
/// cannot be, the caller polls them all.
pub(super) fn watch(dirs: &[PathBuf], tx: SyncSender<Hint>) -> notify::Result<RecommendedWatcher> {
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let ev = match res {
            Ok(ev) if !ev.need_rescan() => ev,
            _ => {
                let _ = tx.try_send(Hint::Rescan);
                return;
            }
        };
        match hint_of(&ev.kind) {
            Some(HintKind::Changed) => {
                let _ = tx.try_send(Hint::Changed);
            }
            Some(HintKind::Written) => {
                for p in ev.paths {
                    let _ = tx.try_send(Hint::Written(p));
                }
            }
            Some(HintKind::Closed) => {
                for p in ev.paths {
                    let _ = tx.try_send(Hint::Closed(p));
                }
            }
            None => {}
        }
    })?;
    for dir in dirs {
        w.watch(dir, RecursiveMode::NonRecursive)?;
    }
    Ok(w)
}

enum HintKind {
    Changed,
    Written,
    Closed,
}

/// What an event says. Data written (inotify `IN_MODIFY`, also sent for a
/// truncation) or a file created (`IN_CREATE`) means a writer has it open;
/// `IN_CLOSE_WRITE` that it closed it. Opens and read-only closes say
/// nothing (the daemon's own reads make them) and are not hints. Renames,
/// removals and metadata changes are plain changes: they never hold a file
/// back, since no close event follows them.
fn hint_of(kind: &EventKind) -> Option<HintKind> {
    match kind {
        EventKind::Create(_)
        | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any | ModifyKind::Other) => {
            Some(HintKind::Written)
        }
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(HintKind::Closed),
        EventKind::Access(_) => None,
        _ => Some(HintKind::Changed),
    }
}

/// The identity of a folder: a share unmounted and mounted again, or a
/// folder removed and made again, is another folder, whose events the old
/// watch does not see.
pub(super) fn identity(dir: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}
