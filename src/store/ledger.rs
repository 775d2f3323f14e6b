//! The ledger of partner transfers (`[[remotes]]`): what was pulled from a
//! partner's server and pushed to it, and how far each transfer got, so a
//! transfer interrupted at any instant is finished or redone, never done
//! twice. One record per transfer ([`Key::Transfer`]): a pulled file by its
//! remote path, a pushed one by `system/file`; each change is committed
//! and flushed on its own (fenced on PostgreSQL, as every commit).

use serde::{Deserialize, Serialize};

use super::backend::Value;
use super::keys::{self, Direction, Key};
use super::{Store, StoreError, decode, encode};

/// How far a transfer got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Pull: downloaded and fsynced under the local temporary name `temp`;
    /// renamed into the inbox, or not yet; the remote file not yet deleted
    /// or moved.
    Pulled,
    /// Pull: the remote file deleted or moved: finished.
    Done,
    /// Push: being uploaded to the remote temporary `temp`.
    Pushing,
    /// Push: uploaded whole; `temp` is being renamed onto the final name.
    Renaming,
    /// Push: delivered under its final name: finished.
    Pushed,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Pulled => "pulled",
            Stage::Done => "done",
            Stage::Pushing => "pushing",
            Stage::Renaming => "renaming",
            Stage::Pushed => "pushed",
        }
    }

    /// Whether the transfer is over.
    pub fn is_finished(self) -> bool {
        matches!(self, Stage::Done | Stage::Pushed)
    }
}

/// One transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub stage: Stage,
    /// Bytes.
    pub size: u64,
    /// Pull: the remote file's modification time (seconds since the
    /// epoch) when it was listed; push: 0.
    pub mtime: i64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// Pull: the temporary file's name in the local folder; push: the
    /// temporary's remote path.
    pub temp: String,
    /// Pull: the local folder's file name; push: the final remote path.
    pub target: String,
    /// When this stage was recorded (the store's clock, UNIX ms).
    pub at: i64,
}

impl Transfer {
    pub(super) fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

impl Store {
    /// A transfer of the ledger.
    pub fn transfer(
        &self,
        remote: &str,
        direction: Direction,
        name: &str,
    ) -> Result<Option<Transfer>, StoreError> {
        let key = keys::transfer(remote, direction, name);
        match self.db.get(&key)? {
            Some(v) => Ok(Some(decode(&key, &v)?)),
            None => Ok(None),
        }
    }

    /// Records `transfer` (or removes the record, with `None`), committed
    /// and durable when this returns.
    pub fn record_transfer(
        &self,
        remote: &str,
        direction: Direction,
        name: &str,
        transfer: Option<&Transfer>,
    ) -> Result<(), StoreError> {
        let key = keys::transfer(remote, direction, name);
        {
            let _writer = self.db.lock();
            self.db
                .commit([(key, transfer.map(|t| Value::from(t.encode())))].into())?;
        }
        self.flush()
    }

    /// Every transfer of `remote` not finished, by direction and name: what
    /// a remote's task resumes when it starts.
    pub fn unfinished_transfers(
        &self,
        remote: &str,
    ) -> Result<Vec<(Direction, String, Transfer)>, StoreError> {
        let mut out = Vec::new();
        for (key, value) in self.db.transfers(remote)? {
            if let Key::Transfer {
                direction, name, ..
            } = &key
            {
                let t: Transfer = decode(&key, &value)?;
                if !t.stage.is_finished() {
                    out.push((*direction, name.clone(), t));
                }
            }
        }
        Ok(out)
    }
}
