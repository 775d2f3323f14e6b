//! Partners who host their own SFTP server (`[[remotes]]`): the connection
//! to one ([`session`]) and its host-key check ([`known_hosts`]), the rules
//! of a pull and a push over the store's ledger ([`transfer`]), a thread
//! per remote ([`task`]), and where each stands ([`status`]).

pub mod known_hosts;
pub mod session;
pub mod status;
pub mod task;
pub mod transfer;

use std::os::unix::fs::PermissionsExt;

use crate::config::{Auth, RemoteConfig};

/// What is wrong with a remote's local files, by config key: a key file
/// that cannot be read, is not a private key, or that group or others may
/// read (refused: a copy of it opens the partner's server); a known_hosts
/// file that cannot be read, has a line that does not parse, or lists no
/// key for the host (every connection would be refused). `ordersync check`
/// reports them; a connection refuses the key file on the same grounds.
pub fn local_problems(remote: &RemoteConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Auth::Identity(file) = &remote.auth
        && let Err(m) = identity_problem(file)
    {
        out.push(("identity", m));
    }
    match known_hosts::keys_for(&remote.known_hosts, &remote.host, remote.port) {
        Ok(0) => out.push((
            "known_hosts",
            format!(
                "{} lists no key for {}: every connection would be refused (add the partner's host key, checked with them)",
                remote.known_hosts.display(),
                known_hosts::host_name(&remote.host, remote.port)
            ),
        )),
        Ok(_) => {}
        Err(e) => out.push(("known_hosts", e.to_string())),
    }
    out
}

/// Why the key file at `file` is refused, if it is.
pub fn identity_problem(file: &std::path::Path) -> Result<(), String> {
    let meta = std::fs::metadata(file)
        .map_err(|e| format!("cannot read the key {}: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(format!("the key {} is not a file", file.display()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the key {} may be read by group or others (mode {mode:04o}): refused; chmod 600 it",
            file.display()
        ));
    }
    russh::keys::load_secret_key(file, None)
        .map(drop)
        .map_err(|e| format!("the key {} cannot be used: {e}", file.display()))
}
