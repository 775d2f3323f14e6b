//! The server's host key against the operator's known_hosts file, strict
//! and failing closed: a missing or unreadable file, or a line that does
//! not parse, is an error (not "unknown key"); a key listed `@revoked` for
//! the host is refused; otherwise the key must be listed for the host
//! (`host`, or `[host]:port` when the port is not 22, as OpenSSH writes
//! them; plain or hashed names). Only exact names match: patterns with
//! `*`, `?` or `!` are never taken as a match. Any key listed for the
//! host counts (an old and a new key side by side while a partner rotates
//! keys).

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::PublicKey;
use russh::keys::ssh_key::known_hosts::{HostPatterns, KnownHosts, Marker};

/// Why a host key is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("cannot read known_hosts {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("known_hosts {path} line {line}: {what}")]
    Line {
        path: String,
        line: usize,
        what: String,
    },
    #[error("the host key of {name} ({fingerprint}) is marked @revoked in {path}")]
    Revoked {
        name: String,
        fingerprint: String,
        path: String,
    },
    #[error(
        "the host key of {name} ({fingerprint}) is not in {path}: refused (a new server, or one whose key changed: check with the partner, then add it)"
    )]
    Unknown {
        name: String,
        fingerprint: String,
        path: String,
    },
}

/// The name OpenSSH writes in known_hosts for `host` and `port`.
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Whether `key` may be accepted for `host`:`port`, by the file at `path`.
pub fn check(path: &Path, host: &str, port: u16, key: &PublicKey) -> Result<(), HostKeyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| HostKeyError::Read {
        path: shown.clone(),
        source,
    })?;
    check_text(&text, &shown, host, port, key)
}

/// [`check`] on the file's text (`path` only names it in errors).
pub fn check_text(
    text: &str,
    path: &str,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<(), HostKeyError> {
    let name = host_name(host, port);
    let fingerprint = key.fingerprint(Default::default()).to_string();
    let mut listed = false;
    for (i, entry) in KnownHosts::new(text).enumerate() {
        let entry = entry.map_err(|e| HostKeyError::Line {
            path: path.to_string(),
            line: i + 1,
            what: e.to_string(),
        })?;
        let for_host = names_host(entry.host_patterns(), &name);
        if !for_host || entry.public_key().key_data() != key.key_data() {
            continue;
        }
        match entry.marker() {
            Some(Marker::Revoked) => {
                return Err(HostKeyError::Revoked {
                    name,
                    fingerprint,
                    path: path.to_string(),
                });
            }
            // A CA's key signs host certificates; it is no host key itself.
            Some(Marker::CertAuthority) => {}
            None => listed = true,
        }
    }
    if listed {
        Ok(())
    } else {
        Err(HostKeyError::Unknown {
            name,
            fingerprint,
            path: path.to_string(),
        })
    }
}

/// How many usable keys (not `@revoked`, not a CA) the file at `path`
/// lists for `host`:`port`; an error for a file that cannot be read or a
/// line that does not parse. For `check`: a file that lists none refuses
/// every connection.
pub fn keys_for(path: &Path, host: &str, port: u16) -> Result<usize, HostKeyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| HostKeyError::Read {
        path: shown.clone(),
        source,
    })?;
    let name = host_name(host, port);
    let mut n = 0;
    for (i, entry) in KnownHosts::new(&text).enumerate() {
        let entry = entry.map_err(|e| HostKeyError::Line {
            path: shown.clone(),
            line: i + 1,
            what: e.to_string(),
        })?;
        if entry.marker().is_none() && names_host(entry.host_patterns(), &name) {
            n += 1;
        }
    }
    Ok(n)
}

/// Whether a line's host patterns name `name` exactly (plain or hashed).
fn names_host(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::Patterns(patterns) => patterns.iter().any(|p| p == name),
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(salt) else {
                return false;
            };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two ed25519 public keys (made with ssh-keygen for this test).
    const A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJznq9a5VkdD/5XvqCpbRzJ2C0DY0c2LM8GyAZFepSpU";
    const B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINO6FDvAOZRg1elUpAYzehtnVggSdNv07vi8kZ9UaMuU";

    fn key(line: &str) -> PublicKey {
        PublicKey::from_openssh(line).expect("a public key")
    }

    fn check(text: &str, host: &str, port: u16, k: &str) -> Result<(), HostKeyError> {
        check_text(text, "kh", host, port, &key(k))
    }

    #[test]
    fn a_listed_key_is_accepted_and_any_other_refused() {
        let text = format!("sftp.acme.example {A}\n[127.0.0.1]:2222 {B}\n");
        assert!(check(&text, "sftp.acme.example", 22, A).is_ok());
        assert!(check(&text, "127.0.0.1", 2222, B).is_ok());
        // The key of another host, the right host on another port, a host
        // not listed at all.
        for (host, port, k) in [
            ("sftp.acme.example", 22, B),
            ("127.0.0.1", 22, B),
            ("other.example", 22, A),
        ] {
            let e = check(&text, host, port, k).unwrap_err();
            assert!(
                matches!(e, HostKeyError::Unknown { .. }),
                "{host}:{port}: {e}"
            );
            assert!(e.to_string().contains("SHA256:"), "{e}");
        }
    }

    #[test]
    fn two_keys_for_one_host_both_count_and_revoked_is_refused() {
        let text = format!("h {A}\nh {B}\n");
        assert!(check(&text, "h", 22, A).is_ok() && check(&text, "h", 22, B).is_ok());
        let text = format!("h {A}\n@revoked h {A}\n");
        let e = check(&text, "h", 22, A).unwrap_err();
        assert!(matches!(e, HostKeyError::Revoked { .. }), "{e}");
    }

    #[test]
    fn patterns_are_never_a_match_and_a_bad_line_is_an_error() {
        let text = format!("*.acme.example {A}\nh* {A}\n");
        assert!(check(&text, "h", 22, A).is_err());
        let e = check(&format!("h {A}\nnot a key line\n"), "h", 22, A).unwrap_err();
        assert!(matches!(e, HostKeyError::Line { line: 2, .. }), "{e}");
    }

    #[test]
    fn a_missing_file_says_so() {
        let e = super::check(Path::new("/nonexistent/known_hosts"), "h", 22, &key(A)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read known_hosts /nonexistent/known_hosts"),
            "{e}"
        );
    }
}
