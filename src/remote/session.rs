//! One connection to a partner's SFTP server: connect and log in within
//! one deadline, the host key checked against the operator's known_hosts
//! ([`super::known_hosts`]), every request under its own timeout, and the
//! operations the pull and push rules need: list a folder, stream a file
//! down into a local temporary (fsynced), stream one up to a remote
//! temporary (fsynced where the server offers `fsync@openssh.com`), and
//! give it its final name with `posix-rename@openssh.com` (SFTP v3's own
//! rename refuses to replace a file).
//!
//! russh has no deadline of its own for the TCP connect, the key exchange
//! or the login: [`Session::connect`] puts the whole handshake under the
//! remote's `connect_timeout`. A transfer has a deadline of its own too; a
//! request that times out leaves the connection unusable, and the caller
//! drops the session and connects again on its next poll.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate, load_secret_key};
use russh_sftp::client::{RawSftpSession, SftpSession};
use russh_sftp::protocol::{OpenFlags, Packet, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use super::known_hosts::{self, HostKeyError};
use crate::config::{Auth, RemoteConfig};

/// Why a remote could not be used; each names the remote's host.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{host}: {source}")]
    HostKey { host: String, source: HostKeyError },
    #[error("{host}: no answer within {0:?}", .timeout)]
    TimedOut { host: String, timeout: Duration },
    #[error("{host}: login as {user} refused")]
    Login { host: String, user: String },
    #[error("{host}: {what}")]
    Failed { host: String, what: String },
}

/// What the host-key check found (russh's handler keeps it for us).
struct Handler {
    known_hosts: PathBuf,
    host: String,
    port: u16,
    refused: Arc<std::sync::Mutex<Option<HostKeyError>>>,
}

impl client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let result = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                known_hosts::check(&self.known_hosts, &self.host, self.port, key)
            }
            // No certificates are asked for (`Preferred::host_key_certificates`
            // is empty): one offered anyway is refused.
            PublicKeyOrCertificate::Certificate(_) => return Ok(false),
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) => {
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Ok(false)
            }
        }
    }
}

/// An open SFTP session on a partner's server.
pub struct Session {
    _ssh: client::Handle<Handler>,
    /// Listing, reading and writing files (pipelined).
    sftp: SftpSession,
    /// Requests the library has no call for (`posix-rename@openssh.com`).
    control: RawSftpSession,
    pub posix_rename: bool,
    pub fsync: bool,
    host: String,
}

/// A file in a remote folder, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    /// Seconds since the epoch, as SFTP v3 gives it.
    pub mtime: u32,
}

impl Session {
    /// Connects and logs in to `remote` within its `connect_timeout`.
    pub async fn connect(remote: &RemoteConfig) -> Result<Session, RemoteError> {
        let host = format!("{}:{}", remote.host, remote.port);
        let failed = |what: String| RemoteError::Failed {
            host: host.clone(),
            what,
        };
        let refused = Arc::new(std::sync::Mutex::new(None));
        let handler = Handler {
            known_hosts: remote.known_hosts.clone(),
            host: remote.host.clone(),
            port: remote.port,
            refused: refused.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(remote.keepalive * 4),
            keepalive_interval: Some(remote.keepalive),
            keepalive_max: 3,
            nodelay: true,
            ..Default::default()
        });
        let sftp_config = russh_sftp::client::Config {
            request_timeout_secs: remote.io_timeout.as_secs().max(1),
            ..Default::default()
        };
        let handshake = async {
            let mut ssh = client::connect(config, (remote.host.as_str(), remote.port), handler)
                .await
                .map_err(
                    |e| match refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        Some(source) => RemoteError::HostKey {
                            host: host.clone(),
                            source,
                        },
                        None => failed(format!("cannot connect: {e}")),
                    },
                )?;
            let logged_in = match &remote.auth {
                Auth::Identity(file) => {
                    super::identity_problem(file).map_err(&failed)?;
                    let key = load_secret_key(file, None).map_err(|e| {
                        failed(format!("cannot read the key {}: {e}", file.display()))
                    })?;
                    let key = Arc::new(key);
                    let hash = if key.algorithm().is_rsa() {
                        ssh.best_supported_rsa_hash()
                            .await
                            .map_err(|e| failed(e.to_string()))?
                            .flatten()
                    } else {
                        None
                    };
                    ssh.authenticate_publickey(&remote.user, PrivateKeyWithHashAlg::new(key, hash))
                        .await
                        .map_err(|e| failed(e.to_string()))?
                        .success()
                }
                Auth::PasswordEnv(var) => {
                    let password = std::env::var(var)
                        .map_err(|_| failed(format!("the password's variable {var} is not set")))?;
                    ssh.authenticate_password(&remote.user, password)
                        .await
                        .map_err(|e| failed(e.to_string()))?
                        .success()
                }
            };
            if !logged_in {
                return Err(RemoteError::Login {
                    host: host.clone(),
                    user: remote.user.clone(),
                });
            }
            // An SFTP channel of the connection.
            let sftp_channel = async || {
                let channel = ssh
                    .channel_open_session()
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                channel
                    .request_subsystem(true, "sftp")
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                Ok::<_, RemoteError>(channel.into_stream())
            };
            // The control channel first: its answer lists the extensions.
            let control =
                RawSftpSession::new_with_config(sftp_channel().await?, sftp_config.clone());
            let version = control.init().await.map_err(|e| failed(e.to_string()))?;
            let has = |n: &str| version.extensions.get(n).is_some_and(|v| v == "1");
            let (posix_rename, fsync) = (has("posix-rename@openssh.com"), has("fsync@openssh.com"));
            let sftp = SftpSession::new_with_config(sftp_channel().await?, sftp_config)
                .await
                .map_err(|e| failed(e.to_string()))?;
            Ok(Session {
                _ssh: ssh,
                sftp,
                control,
                posix_rename,
                fsync,
                host: host.clone(),
            })
        };
        timeout(remote.connect_timeout, handshake)
            .await
            .map_err(|_| RemoteError::TimedOut {
                host: host.clone(),
                timeout: remote.connect_timeout,
            })?
    }

    fn failed(&self, what: String) -> RemoteError {
        RemoteError::Failed {
            host: self.host.clone(),
            what,
        }
    }

    /// The regular files in `dir` (no folders, links or devices).
    pub async fn list(&self, dir: &str) -> Result<Vec<Listed>, RemoteError> {
        let entries = self
            .sftp
            .read_dir(dir)
            .await
            .map_err(|e| self.failed(format!("cannot list {dir}: {e}")))?;
        Ok(entries
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let m = e.metadata();
                Listed {
                    name: e.file_name(),
                    size: m.size.unwrap_or(0),
                    mtime: m.mtime.unwrap_or(0),
                }
            })
            .collect())
    }

    /// Streams the remote file `path` into the new local file `into`
    /// (created, never replaced), fsynced, within `deadline`: its length.
    pub async fn download(
        &self,
        path: &str,
        into: &Path,
        deadline: Duration,
    ) -> Result<u64, RemoteError> {
        let work = async {
            let mut src = self
                .sftp
                .open(path)
                .await
                .map_err(|e| self.failed(format!("cannot open {path}: {e}")))?;
            let mut dst = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(into)
                .await
                .map_err(|e| self.failed(format!("cannot create {}: {e}", into.display())))?;
            let n = tokio::io::copy(&mut src, &mut dst)
                .await
                .map_err(|e| self.failed(format!("reading {path}: {e}")))?;
            dst.sync_all()
                .await
                .map_err(|e| self.failed(format!("fsync {}: {e}", into.display())))?;
            let _ = src.shutdown().await;
            Ok(n)
        };
        timeout(deadline, work)
            .await
            .map_err(|_| RemoteError::TimedOut {
                host: self.host.clone(),
                timeout: deadline,
            })?
    }

    /// Streams the local file `from` to the remote temporary `temp`
    /// (replaced if there), fsynced where the server offers it, within
    /// `deadline`: its length. It takes its final name with
    /// [`Session::rename_over`].
    pub async fn upload(
        &self,
        from: &Path,
        temp: &str,
        deadline: Duration,
    ) -> Result<u64, RemoteError> {
        let work = async {
            let mut src = tokio::fs::File::open(from)
                .await
                .map_err(|e| self.failed(format!("cannot open {}: {e}", from.display())))?;
            let mut dst = self
                .sftp
                .open_with_flags(
                    temp,
                    OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
                )
                .await
                .map_err(|e| self.failed(format!("cannot create {temp}: {e}")))?;
            let n = tokio::io::copy(&mut src, &mut dst)
                .await
                .map_err(|e| self.failed(format!("writing {temp}: {e}")))?;
            if self.fsync {
                dst.sync_all()
                    .await
                    .map_err(|e| self.failed(format!("fsync {temp}: {e}")))?;
            }
            dst.shutdown()
                .await
                .map_err(|e| self.failed(format!("closing {temp}: {e}")))?;
            Ok(n)
        };
        timeout(deadline, work)
            .await
            .map_err(|_| RemoteError::TimedOut {
                host: self.host.clone(),
                timeout: deadline,
            })?
    }

    /// Gives `from` the name `to`, replacing what is there, in one step
    /// (`posix-rename@openssh.com`); refused when the server lacks it.
    pub async fn rename_over(&self, from: &str, to: &str) -> Result<(), RemoteError> {
        if !self.posix_rename {
            return Err(self.failed(
                "the server lacks posix-rename@openssh.com: a file cannot take its name in one step".into(),
            ));
        }
        let mut data = Vec::with_capacity(8 + from.len() + to.len());
        for s in [from, to] {
            data.extend_from_slice(&(s.len() as u32).to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        match self
            .control
            .extended("posix-rename@openssh.com", data)
            .await
        {
            Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
            Ok(Packet::Status(s)) => Err(self.failed(format!(
                "cannot rename {from} to {to}: {:?} {}",
                s.status_code, s.error_message
            ))),
            Ok(other) => Err(self.failed(format!("rename {from}: unexpected answer {other:?}"))),
            Err(e) => Err(self.failed(format!("cannot rename {from} to {to}: {e}"))),
        }
    }

    /// The regular file at `path` (`None`: nothing there, or not a
    /// regular file; a symlink is never followed).
    pub async fn stat(&self, path: &str) -> Result<Option<Listed>, RemoteError> {
        match self.sftp.symlink_metadata(path).await {
            Ok(m) if m.file_type().is_file() => Ok(Some(Listed {
                name: path.rsplit('/').next().unwrap_or(path).to_string(),
                size: m.size.unwrap_or(0),
                mtime: m.mtime.unwrap_or(0),
            })),
            Ok(_) => Ok(None),
            Err(russh_sftp::client::error::Error::Status(s))
                if s.status_code == StatusCode::NoSuchFile =>
            {
                Ok(None)
            }
            Err(e) => Err(self.failed(format!("cannot stat {path}: {e}"))),
        }
    }

    /// Gives `from` the name `to`, refused when something is at `to`
    /// (SFTP v3's rename).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), RemoteError> {
        self.sftp
            .rename(from, to)
            .await
            .map_err(|e| self.failed(format!("cannot rename {from} to {to}: {e}")))
    }

    /// Removes the remote file `path`.
    pub async fn remove(&self, path: &str) -> Result<(), RemoteError> {
        self.sftp
            .remove_file(path)
            .await
            .map_err(|e| self.failed(format!("cannot remove {path}: {e}")))
    }
}
