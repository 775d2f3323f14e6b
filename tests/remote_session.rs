//! ordersync as the client of a partner's SFTP server (issue 23), the
//! connection alone (`remote::session`): against OpenSSH's sshd on
//! 127.0.0.1. The host key is checked against the known_hosts the config
//! names (an unknown or changed key is refused, naming the host and the
//! key's fingerprint); a wrong identity is refused; a server that accepts
//! the connection and never speaks is given up at `connect_timeout`; a
//! file goes up under a temporary name, takes its final name over an
//! existing file in one step, and comes down whole.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::sshd::{have_sshd, known_hosts_line, run, start_sshd};
use ordersync::config::Config;
use ordersync::remote::session::{RemoteError, Session};

/// A config with one remote on 127.0.0.1:`port`.
fn remote(
    dir: &Path,
    port: u16,
    user: &str,
    key: &Path,
    known_hosts: &Path,
    connect: &str,
) -> ordersync::config::RemoteConfig {
    let text = format!(
        "[[systems]]\nid = \"erp\"\n[[remotes]]\nname = \"acme\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{user}\"\n\
         identity = \"{}\"\nknown_hosts = \"{}\"\nconnect_timeout = \"{connect}\"\nio_timeout = \"5s\"\n\
         [[remotes.push]]\nsystem = \"erp\"\nto = \"/in\"\n",
        key.display(),
        known_hosts.display()
    );
    let c = Config::parse(&text, &dir.join("config.toml")).expect("a valid config");
    c.remotes.into_iter().next().unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_partners_server_is_used_only_with_its_listed_key() {
    if !have_sshd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sshd = start_sshd(&dir.path().join("ssh"));
    let known = dir.path().join("known_hosts");
    fs::write(
        &known,
        known_hosts_line(sshd.port, &sshd.dir.join("host_key.pub")),
    )
    .unwrap();
    let rt = rt();

    // The listed key: in, and both extensions offered (OpenSSH).
    let r = remote(dir.path(), sshd.port, &sshd.user, &sshd.key, &known, "10s");
    let s = rt.block_on(Session::connect(&r)).expect("connected");
    assert!(s.posix_rename && s.fsync);

    // Up under a temporary name, then over an existing file in one step.
    let remote_dir = dir.path().join("remote");
    fs::create_dir(&remote_dir).unwrap();
    let rd = remote_dir.to_str().unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(dir.path().join("big.bin"), &big).unwrap();
    fs::write(remote_dir.join("final.json"), b"old").unwrap();
    rt.block_on(async {
        let n = s
            .upload(
                &dir.path().join("big.bin"),
                &format!("{rd}/.final.json.tmp"),
                Duration::from_secs(30),
            )
            .await
            .expect("uploaded");
        assert_eq!(n, big.len() as u64);
        s.rename_over(
            &format!("{rd}/.final.json.tmp"),
            &format!("{rd}/final.json"),
        )
        .await
        .expect("renamed over the old file");
    });
    assert_eq!(fs::read(remote_dir.join("final.json")).unwrap(), big);
    assert!(!remote_dir.join(".final.json.tmp").exists());

    // Listed, and down whole into a new local file (never over one).
    let listed = rt.block_on(s.list(rd)).expect("listed");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].name.as_str(), listed[0].size),
        ("final.json", big.len() as u64)
    );
    let local = dir.path().join("down.json");
    let n = rt
        .block_on(s.download(&format!("{rd}/final.json"), &local, Duration::from_secs(30)))
        .expect("downloaded");
    assert_eq!(n, big.len() as u64);
    assert_eq!(fs::read(&local).unwrap(), big);
    assert!(
        rt.block_on(s.download(&format!("{rd}/final.json"), &local, Duration::from_secs(30)))
            .is_err()
    );
    rt.block_on(s.remove(&format!("{rd}/final.json")))
        .expect("removed");
    assert!(!remote_dir.join("final.json").exists());
    drop(s);

    // A changed host key (another key listed for the host): refused,
    // naming the host and the fingerprint.
    let other = dir.path().join("other");
    run(std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other));
    let changed = dir.path().join("known_hosts.changed");
    fs::write(
        &changed,
        known_hosts_line(sshd.port, &dir.path().join("other.pub")),
    )
    .unwrap();
    let e = rt
        .block_on(Session::connect(&remote(
            dir.path(),
            sshd.port,
            &sshd.user,
            &sshd.key,
            &changed,
            "10s",
        )))
        .err()
        .expect("refused");
    assert!(matches!(e, RemoteError::HostKey { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("[127.0.0.1]:{}", sshd.port)) && text.contains("SHA256:"),
        "{text}"
    );

    // A known_hosts file that is not there: refused, saying so.
    let e = rt
        .block_on(Session::connect(&remote(
            dir.path(),
            sshd.port,
            &sshd.user,
            &sshd.key,
            &dir.path().join("nope"),
            "10s",
        )))
        .err()
        .expect("refused");
    assert!(e.to_string().contains("cannot read known_hosts"), "{e}");

    // A key the server does not know: the login is refused.
    let e = rt
        .block_on(Session::connect(&remote(
            dir.path(),
            sshd.port,
            &sshd.user,
            &other,
            &known,
            "10s",
        )))
        .err()
        .expect("refused");
    assert!(matches!(e, RemoteError::Login { .. }), "{e}");
}

/// A server that accepts the connection and never speaks is given up at
/// `connect_timeout` (russh has no deadline of its own).
#[test]
fn a_server_that_never_speaks_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let known = dir.path().join("known_hosts");
    fs::write(&known, "").unwrap();
    let key = dir.path().join("key");
    fs::write(&key, "").unwrap();
    let began = Instant::now();
    let e = rt()
        .block_on(Session::connect(&remote(
            dir.path(),
            port,
            "u",
            &key,
            &known,
            "2s",
        )))
        .err()
        .expect("given up");
    assert!(matches!(e, RemoteError::TimedOut { .. }), "{e}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    drop(silent);
}
