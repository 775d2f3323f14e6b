//! TLS to the PostgreSQL store (src/store/postgres/tls.rs) against a real
//! server that takes TLS only: `.ci/pg-cluster-tls` on 127.0.0.1 with a
//! certificate for `localhost` (its only name) from a CA this test makes
//! with the `openssl` command, and a pg_hba.conf that rejects plain
//! connections. The real `ordersync` binary runs on it with
//! `[store] backend = "postgres"`.
//!
//! Skipped, saying why, without `openssl` or a PostgreSQL server, except
//! under ORDERSYNC_E2E=1, where that fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{TWO_SYSTEMS, Work, order};

/// The TLS-only server and the files the tests give ordersync.
struct Server {
    port: u16,
    /// The cluster's folder (its unix socket, plain, for the tests' admin).
    dir: String,
    /// Holds ca.pem (the server's CA) and other-ca.pem (a CA that signed
    /// nothing of the server's).
    certs: PathBuf,
}

impl Server {
    fn ca(&self) -> String {
        self.certs.join("ca.pem").display().to_string()
    }

    fn other_ca(&self) -> String {
        self.certs.join("other-ca.pem").display().to_string()
    }

    /// A new, empty database, made over the unix socket.
    fn database(&self) -> String {
        let name = format!("ordersync_tls_{}", uuid::Uuid::new_v4().simple());
        let mut admin = postgres::Client::connect(
            &format!(
                "host={} port={} user=postgres dbname=postgres",
                self.dir, self.port
            ),
            postgres::NoTls,
        )
        .expect("the test server's unix socket");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        name
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`NAME.pem`, `NAME.key`), EC P-256, valid for two days.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=ordersync test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// The server's certificate and key, from `ca`, for the name `localhost`
/// only (not 127.0.0.1).
fn make_server_cert(dir: &Path, ca: &str) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = DNS:localhost\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/pg-cluster-tls");

/// The server, started once for this test binary and stopped when it
/// exits; `None`: skipped.
fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    static DIR: OnceLock<String> = OnceLock::new();
    static CERTS: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn stop() {
        if let Some(dir) = DIR.get() {
            let _ = Command::new(SCRIPT).args(["stop", dir]).output();
        }
        if let Some(certs) = CERTS.get() {
            let _ = std::fs::remove_dir_all(certs);
        }
    }
    SERVER
        .get_or_init(|| {
            // `openssl version`: it has no --version (common::have_tool).
            let found = Command::new("openssl")
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                assert!(
                    std::env::var("ORDERSYNC_E2E").as_deref() != Ok("1"),
                    "openssl is needed for the PostgreSQL TLS tests' certificates (apt-get install openssl)"
                );
                eprintln!("skipped: openssl not found");
                return None;
            }
            // Kept until the process exits: the tests read the CA files.
            let certs = tempfile::tempdir().expect("temp dir").keep();
            let _ = CERTS.set(certs.clone());
            // SAFETY: registers a plain function, run at exit.
            unsafe { libc::atexit(stop) };
            make_ca(&certs, "ca");
            make_ca(&certs, "other-ca");
            make_server_cert(&certs, "ca");
            let port = common::free_port();
            let out = Command::new(SCRIPT)
                .args(["start", &port.to_string()])
                .arg(certs.join("server.pem"))
                .arg(certs.join("server.key"))
                .output()
                .expect("run .ci/pg-cluster-tls");
            if !out.status.success() {
                let why = String::from_utf8_lossy(&out.stderr);
                assert!(
                    std::env::var("ORDERSYNC_E2E").as_deref() != Ok("1"),
                    "a PostgreSQL server is needed (apt-get install postgresql): {why}"
                );
                eprintln!("skipped: no PostgreSQL server: {why}");
                return None;
            }
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let _ = DIR.set(dir.clone());
            Some(Server { port, dir, certs })
        })
        .as_ref()
}

/// A folder whose config's store is the PostgreSQL at `url`.
fn work(url: &str) -> Work {
    Work::new(&format!(
        "{TWO_SYSTEMS}\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"
    ))
}

/// `run --once` on a dropped order, which must succeed, and `status`
/// showing it.
fn an_order_goes_through(w: &Work) {
    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    w.run_once();
    let status = w.json(&["status"]);
    assert_eq!(status["orders"], 1, "{status}");
    assert_eq!(w.state("o-1", "erp").as_deref(), Some("written"));
}

/// `run --once`, which must fail: its stderr.
fn refused(w: &Work) -> String {
    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    let out: Output = w.cmd(&["run", "--once"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "run --once succeeded:\n{err}");
    err
}

#[test]
fn verify_full_with_the_servers_ca_runs_over_tls() {
    let Some(s) = server() else { return };
    let url = format!(
        "postgresql://postgres:s3cret@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
        s.port,
        s.database(),
        s.ca()
    );
    let w = work(&url);
    an_order_goes_through(&w);
    // The same with the key=value form.
    let w = work(&format!(
        "host=localhost port={} user=postgres dbname={} sslmode=verify-full sslrootcert='{}'",
        s.port,
        s.database(),
        s.ca()
    ));
    an_order_goes_through(&w);
    // And the library's own connection (Postgres::connect).
    let mut pg = ordersync::store::postgres::Postgres::connect(&url).unwrap();
    pg.check_schema().unwrap();
}

#[test]
fn verify_full_refuses_a_certificate_for_another_name() {
    let Some(s) = server() else { return };
    // 127.0.0.1 is not in the certificate: it is only for localhost.
    let w = work(&format!(
        "postgresql://postgres:s3cret@127.0.0.1:{}/{}?sslmode=verify-full&sslrootcert={}",
        s.port,
        s.database(),
        s.ca()
    ));
    let err = refused(&w);
    assert!(
        err.contains(&format!(
            "PostgreSQL at postgresql://postgres@127.0.0.1:{}/",
            s.port
        )) && err.contains("error performing TLS handshake")
            && err.contains("certificate not valid for name \"127.0.0.1\""),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn verify_ca_accepts_the_chain_whatever_the_name() {
    let Some(s) = server() else { return };
    let w = work(&format!(
        "postgresql://postgres@127.0.0.1:{}/{}?sslmode=verify-ca&sslrootcert={}",
        s.port,
        s.database(),
        s.ca()
    ));
    an_order_goes_through(&w);
}

#[test]
fn verify_full_and_verify_ca_refuse_a_server_of_another_ca() {
    let Some(s) = server() else { return };
    for mode in ["verify-full", "verify-ca"] {
        let w = work(&format!(
            "postgresql://postgres:s3cret@localhost:{}/{}?sslmode={mode}&sslrootcert={}",
            s.port,
            s.database(),
            s.other_ca()
        ));
        let err = refused(&w);
        assert!(
            err.contains("error performing TLS handshake")
                && err.contains("invalid peer certificate: UnknownIssuer"),
            "{mode}: {err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
}

#[test]
fn verify_full_without_sslrootcert_uses_the_systems_roots() {
    let Some(s) = server() else { return };
    // The test CA is in no system store: refused.
    let w = work(&format!(
        "postgresql://postgres@localhost:{}/{}?sslmode=verify-full",
        s.port,
        s.database()
    ));
    let err = refused(&w);
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer")
            || err.contains("no CA certificate in the system's store"),
        "{err}"
    );
}

#[test]
fn require_and_prefer_encrypt_without_checking_the_certificate() {
    let Some(s) = server() else { return };
    // Neither the name (127.0.0.1) nor the CA (in no system store) is
    // checked; the server takes TLS only, so these ran over TLS.
    for query in ["?sslmode=require", "?sslmode=prefer", "?sslmode=allow", ""] {
        let w = work(&format!(
            "postgresql://postgres@127.0.0.1:{}/{}{query}",
            s.port,
            s.database()
        ));
        an_order_goes_through(&w);
    }
}

#[test]
fn require_with_sslrootcert_checks_the_chain_as_libpq_does() {
    let Some(s) = server() else { return };
    // libpq: require with a root certificate file behaves as verify-ca.
    let w = work(&format!(
        "postgresql://postgres@127.0.0.1:{}/{}?sslmode=require&sslrootcert={}",
        s.port,
        s.database(),
        s.other_ca()
    ));
    let err = refused(&w);
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    let w = work(&format!(
        "postgresql://postgres@127.0.0.1:{}/{}?sslmode=require&sslrootcert={}",
        s.port,
        s.database(),
        s.ca()
    ));
    an_order_goes_through(&w);
}

#[test]
fn disable_is_refused_by_a_server_that_takes_tls_only() {
    let Some(s) = server() else { return };
    let w = work(&format!(
        "postgresql://postgres:s3cret@localhost:{}/{}?sslmode=disable&sslrootcert={}",
        s.port,
        s.database(),
        s.ca()
    ));
    let err = refused(&w);
    // pg_hba.conf's `host … reject` line.
    assert!(
        err.contains("pg_hba.conf rejects connection") && err.contains("no encryption"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn a_missing_sslrootcert_is_named() {
    let Some(s) = server() else { return };
    let missing = s.certs.join("missing.pem");
    let w = work(&format!(
        "postgresql://postgres:s3cret@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
        s.port,
        s.database(),
        missing.display()
    ));
    let err = refused(&w);
    assert!(
        err.contains(&format!("sslrootcert {}: No such file", missing.display())),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}
