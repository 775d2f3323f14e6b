//! OpenSSH's sshd on 127.0.0.1, for the tests that talk SFTP to it
//! (`sftp.rs`: partners uploading to us; `remote_session.rs`: ordersync
//! as a client of a partner's server).

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for;

pub struct Sshd {
    pub child: Child,
    pub port: u16,
    /// The client's private key (ed25519, no passphrase).
    pub key: PathBuf,
    /// The user it lets in: whoever runs the test.
    pub user: String,
    /// Its folder: `host_key.pub`, `sshd.log`.
    pub dir: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sshd and ssh-keygen are there; under ORDERSYNC_E2E=1 they must be.
pub fn have_sshd() -> bool {
    let there = ["/usr/sbin/sshd", "/usr/bin/ssh-keygen"]
        .iter()
        .all(|p| Path::new(p).is_file());
    assert!(
        there || std::env::var("ORDERSYNC_E2E").as_deref() != Ok("1"),
        "sshd and ssh-keygen are needed (apt-get install openssh-server openssh-client)"
    );
    there
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// OpenSSH's sshd on 127.0.0.1 (a free port) with keys of its own in
/// `dir`, letting in the user running the test with `key`.
pub fn start_sshd(dir: &Path) -> Sshd {
    fs::create_dir_all(dir).unwrap();
    for key in ["host_key", "client_key"] {
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(key)));
    }
    fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    let user = run(Command::new("id").arg("-un")).trim().to_string();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
         PermitRootLogin prohibit-password\nAllowUsers {user}\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
        d = dir.display()
    );
    fs::write(dir.join("sshd_config"), config).unwrap();
    // sshd run by root insists on its privilege separation folder.
    let _ = fs::create_dir_all("/run/sshd");
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("sshd.log")).unwrap())
        .spawn()
        .expect("/usr/sbin/sshd (install openssh-server)");
    wait_for("sshd to listen", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Sshd {
        child,
        port,
        key: dir.join("client_key"),
        user,
        dir: dir.to_path_buf(),
    }
}

/// A known_hosts line for a server on 127.0.0.1:`port` with the public key
/// in `public_key_file` (OpenSSH's `.pub` format).
pub fn known_hosts_line(port: u16, public_key_file: &Path) -> String {
    let text = fs::read_to_string(public_key_file).unwrap();
    let key: Vec<&str> = text.split_whitespace().take(2).collect();
    format!("[127.0.0.1]:{port} {}\n", key.join(" "))
}

/// A partner who hosts its own SFTP server: sshd, a known_hosts file
/// listing its key, and its folders under `root`: `out` (files for us),
/// `done` (what we took, when moved), `in` (what we deliver).
pub struct Partner {
    pub sshd: Sshd,
    pub known_hosts: PathBuf,
    pub root: PathBuf,
}

impl Partner {
    pub fn start(dir: &Path) -> Partner {
        let sshd = start_sshd(&dir.join("ssh"));
        let known_hosts = dir.join("known_hosts");
        fs::write(
            &known_hosts,
            known_hosts_line(sshd.port, &sshd.dir.join("host_key.pub")),
        )
        .unwrap();
        let root = dir.join("partner");
        for f in ["out", "done", "in"] {
            fs::create_dir_all(root.join(f)).unwrap();
        }
        Partner {
            sshd,
            known_hosts,
            root,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}
