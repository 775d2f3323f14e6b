//! TLS to the PostgreSQL server, as libpq's `sslmode` and `sslrootcert`
//! ask, with rustls (no libssl at build or run time).
//!
//! postgres's own parser knows `sslmode` disable, prefer and require only,
//! and no `sslrootcert`: [`split`] takes both out of the URL or conninfo
//! (the rest goes to postgres unchanged) and [`connector`] turns them into
//! postgres's `ssl_mode` and a rustls connector:
//!
//! | sslmode | TLS | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `allow`, `prefer` (the default) | when the server offers it, else plain | not checked; with `sslrootcert`, its chain is (as libpq) |
//! | `require` | always | not checked; with `sslrootcert`, its chain is (libpq: "behaves as verify-ca") |
//! | `verify-ca` | always | its chain, up to a root of `sslrootcert` (or the system's); not its name |
//! | `verify-full` | always | its chain and that it is for the host connected to |
//!
//! - `sslrootcert=FILE` is a PEM file of CA certificates; a file that
//!   cannot be read, or holds none, is an error in every mode (libpq
//!   quietly skips a missing one below verify-ca). Without it, verify-ca
//!   and verify-full use the system's store (rustls-native-certs:
//!   `/etc/ssl/certs` on Debian, the ca-certificates package), not
//!   libpq's `~/.postgresql/root.crt`. `sslrootcert=system` names the
//!   system's store and, as in libpq, makes verify-full the default and
//!   refuses a weaker sslmode.
//! - `allow` is `prefer` (TLS first; postgres has no plain-first mode).
//! - A Unix socket never has TLS (libpq ignores sslmode there too).
//! - Client certificates (`sslcert`, `sslkey`) are not supported: postgres
//!   refuses them as unknown options.
//!
//! [`split`] also takes out `target_session_attrs` (postgres knows `any`,
//! `read-write` and `read-only`; libpq 14 added `primary`, which ordersync
//! reads as `read-write`: it writes, so a standby is never wanted), and
//! refuses a URL whose user info holds an unencoded `@` (postgres would
//! take the rest of the password for the host, and print it).

use postgres::config::{Host, SslMode};

#[cfg(feature = "tls")]
use crate::pgurl::Settings;
use crate::pgurl::{Mode, split};

/// What connects: rustls. With `ssl_mode` Disable it is never used.
#[cfg(feature = "tls")]
pub(crate) type Tls = tokio_postgres_rustls::MakeRustlsConnect;
/// Built without the `tls` feature (the fuzz targets' build: no C
/// cryptography library to compile): plain connections only.
#[cfg(not(feature = "tls"))]
pub(crate) type Tls = postgres::NoTls;

/// The postgres configuration of `url` and the connector its TLS settings
/// ask for. The message of an error never quotes the URL.
pub(crate) fn connector(url: &str) -> Result<(postgres::Config, Tls), String> {
    let (rest, settings) = split(url)?;
    // Only postgres's "invalid connection string": its reason may quote a
    // part of the password (the config's check shows it scrubbed).
    let mut config: postgres::Config = rest.parse().map_err(|e: postgres::Error| e.to_string())?;
    if let Some(session) = settings.session {
        config.target_session_attrs(session);
    }
    let unix_only = !config.get_hosts().is_empty()
        && config.get_hostaddrs().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|h| !matches!(h, Host::Tcp(_)));
    config.ssl_mode(match settings.mode {
        _ if unix_only => SslMode::Disable,
        Mode::Disable => SslMode::Disable,
        Mode::Allow | Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    });
    #[cfg(feature = "tls")]
    let tls = match config.get_ssl_mode() {
        // Never used: no roots are read.
        SslMode::Disable => with_rustls::connector(&Settings {
            mode: Mode::Require,
            rootcert: None,
            session: None,
        })?,
        _ => with_rustls::connector(&settings)?,
    };
    #[cfg(not(feature = "tls"))]
    let tls = match config.get_ssl_mode() {
        SslMode::Require => {
            return Err(
                "this ordersync was built without TLS (the cargo feature `tls`): sslmode require, verify-ca and verify-full need it"
                    .into(),
            );
        }
        _ => postgres::NoTls,
    };
    Ok((config, tls))
}

/// The rustls side of [`connector`].
#[cfg(feature = "tls")]
mod with_rustls {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::WebPkiSupportedAlgorithms;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

    use super::Tls;
    use crate::pgurl::{Mode, RootCert, Settings};

    /// The rustls connector for `settings` (aws-lc-rs's cryptography; TLS 1.2
    /// and 1.3; ALPN `postgresql`, as libpq 17 sends).
    pub(super) fn connector(settings: &Settings) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let check_chain = settings.rootcert.is_some() || settings.mode == Mode::VerifyCa;
        let mut config = match settings.mode {
            Mode::VerifyFull => {
                let roots = roots(settings.rootcert.as_ref())?;
                let verifier =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| format!("TLS: {e}"))?;
                builder.with_webpki_verifier(verifier).with_no_client_auth()
            }
            _ => {
                let roots = match check_chain {
                    true => Some(roots(settings.rootcert.as_ref())?),
                    false => None,
                };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoNameCheck {
                        roots,
                        algorithms: provider.signature_verification_algorithms,
                    }))
                    .with_no_client_auth()
            }
        };
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Tls::new(config))
    }

    /// The trusted roots: the file's, or the system's store.
    fn roots(rootcert: Option<&RootCert>) -> Result<Arc<RootCertStore>, String> {
        let mut store = RootCertStore::empty();
        match rootcert {
            Some(RootCert::File(path)) => {
                let shown = path.display();
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("sslrootcert {shown}: {}", pem_error(&e)))?;
                let (added, _) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!(
                        "sslrootcert {shown}: no CA certificate in it (a PEM file of `-----BEGIN CERTIFICATE-----` blocks is expected)"
                    ));
                }
            }
            Some(RootCert::System) | None => {
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
                if store.is_empty() {
                    let why = found
                        .errors
                        .first()
                        .map_or(String::new(), |e| format!(" ({e})"));
                    return Err(format!(
                        "no CA certificate in the system's store{why}: install ca-certificates, or give the server's CA as sslrootcert=FILE"
                    ));
                }
            }
        }
        Ok(Arc::new(store))
    }

    fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
        match e {
            rustls::pki_types::pem::Error::Io(io) => io.to_string(),
            other => format!("not a PEM file: {other:?}"),
        }
    }

    /// The verifier below verify-full: the server's signature of the
    /// handshake is always checked (it holds the key of the certificate it
    /// sent); the certificate's chain up to `roots` only when there are roots
    /// (verify-ca, or sslrootcert given); its name never. Without roots, TLS
    /// keeps the traffic from being read passively, not from a server in the
    /// middle: libpq's sslmode=require.
    #[derive(Debug)]
    struct NoNameCheck {
        roots: Option<Arc<RootCertStore>>,
        algorithms: WebPkiSupportedAlgorithms,
    }

    impl ServerCertVerifier for NoNameCheck {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if let Some(roots) = &self.roots {
                let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_cert_signed_by_trust_anchor(
                    &cert,
                    roots,
                    intermediates,
                    now,
                    self.algorithms.all,
                )?;
            }
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgurl::{RootCert, Settings};
    use postgres::config::TargetSessionAttrs;

    fn settings(mode: Mode, rootcert: Option<&str>) -> Settings {
        Settings {
            mode,
            rootcert: rootcert.map(|r| match r {
                "system" => RootCert::System,
                file => RootCert::File(file.into()),
            }),
            session: None,
        }
    }

    /// Regression (issue 22 §4): `primary`, libpq's newer spelling, was
    /// refused; a standby is refused with the reason.
    #[test]
    fn target_session_attrs_primary_is_read_write() {
        for (url, want) in [
            (
                "postgresql://os@a,b:5433/orders?target_session_attrs=primary",
                TargetSessionAttrs::ReadWrite,
            ),
            (
                "host=a,b target_session_attrs=read-write",
                TargetSessionAttrs::ReadWrite,
            ),
            ("host=a target_session_attrs=any", TargetSessionAttrs::Any),
        ] {
            let (config, _) = connector(url).unwrap();
            assert_eq!(config.get_target_session_attrs(), want, "{url}");
        }
        let e = split("postgresql://a/orders?target_session_attrs=standby").unwrap_err();
        assert!(e.contains("a standby cannot be its server"), "{e}");
        let e = split("host=a password=s3cret target_session_attrs=s3cret").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }

    /// Regression (issue 22 §4): a password with an unencoded `@` was
    /// partly printed as the host. Refused, quoting nothing.
    #[test]
    fn an_unencoded_at_in_the_user_info_is_refused() {
        for url in [
            "postgresql://os:p@ss@db/orders",
            "postgres://os:p@ss@db",
            "postgresql://os:p@ss@db?sslmode=disable",
            "postgresql://os:p@ss/x@db/orders",
        ] {
            let e = split(url).unwrap_err();
            assert!(e.contains("%40"), "{e}");
            assert!(!e.contains("ss@db"), "{e}");
        }
        assert!(split("postgresql://os:p%40ss@db/orders").is_ok());
        assert!(split("host=db password=p@ss@x").is_ok());
    }

    #[test]
    fn the_url_form_loses_sslmode_and_sslrootcert_and_keeps_the_rest() {
        let (rest, s) = split(
            "postgresql://os:s3cret@db:5433/orders?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgresql://os:s3cret@db:5433/orders?application_name=x"
        );
        assert_eq!(s, settings(Mode::VerifyFull, Some("/etc/ca.pem")));
        let (rest, s) =
            split("postgres://db/orders?sslrootcert=/etc/ca.pem&sslmode=require").unwrap();
        assert_eq!(rest, "postgres://db/orders");
        assert_eq!(s, settings(Mode::Require, Some("/etc/ca.pem")));
        // None given: libpq's default, prefer.
        let (rest, s) = split("postgresql://db/orders").unwrap();
        assert_eq!(rest, "postgresql://db/orders");
        assert_eq!(s, settings(Mode::Prefer, None));
        // The last one wins, as in libpq.
        let (_, s) = split("postgresql://db?sslmode=disable&sslmode=verify-ca").unwrap();
        assert_eq!(s.mode, Mode::VerifyCa);
    }

    #[test]
    fn a_password_with_a_question_mark_or_sslmode_in_it_is_not_a_parameter() {
        let (rest, s) =
            split("postgresql://os:a?sslmode=disable@db/orders?sslmode=verify-full").unwrap();
        assert_eq!(rest, "postgresql://os:a?sslmode=disable@db/orders");
        assert_eq!(s.mode, Mode::VerifyFull);
        let c: postgres::Config = rest.parse().unwrap();
        assert_eq!(c.get_password(), Some(&b"a?sslmode=disable"[..]));
    }

    #[test]
    fn the_conninfo_form_loses_sslmode_and_sslrootcert_and_keeps_the_rest() {
        let (rest, s) = split(
            "host=db  sslmode = verify-ca password='a b\\' sslmode=disable' sslrootcert='/etc/my ca.pem' user=os",
        )
        .unwrap();
        assert_eq!(rest, "host=db password='a b\\' sslmode=disable' user=os");
        assert_eq!(s, settings(Mode::VerifyCa, Some("/etc/my ca.pem")));
        let c: postgres::Config = rest.parse().unwrap();
        assert_eq!(c.get_password(), Some(&b"a b' sslmode=disable"[..]));
        let (rest, s) = split("host=/run/postgresql sslmode=disable").unwrap();
        assert_eq!(rest, "host=/run/postgresql");
        assert_eq!(s.mode, Mode::Disable);
        let (rest, s) = split("host=db sslrootcert=a\\ b.pem").unwrap();
        assert_eq!(rest, "host=db");
        assert_eq!(s, settings(Mode::Prefer, Some("a b.pem")));
    }

    #[test]
    fn sslrootcert_system_means_verify_full_and_refuses_less() {
        let (_, s) = split("host=db sslrootcert=system").unwrap();
        assert_eq!(s, settings(Mode::VerifyFull, Some("system")));
        let e = split("postgresql://os:s3cret@db?sslrootcert=system&sslmode=require").unwrap_err();
        assert!(
            e.contains("with sslrootcert=system (use verify-full)"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn a_bad_sslmode_is_named_never_quoted() {
        for url in [
            "postgresql://os:s3cret@db/orders?sslmode=s3cret",
            "host=db password=s3cret sslmode=s3cret",
        ] {
            let e = split(url).unwrap_err();
            assert!(e.starts_with("invalid value for option `sslmode`"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
            let e = connector(url).err().unwrap();
            assert!(!e.contains("s3cret"), "{e}");
        }
        assert!(split("host=db sslrootcert=''").is_err());
        // postgres's reason would quote `cret`, a part of the password.
        let e = connector("host=db password=s3 cret=x").err().unwrap();
        assert_eq!(e, "invalid connection string");
    }

    #[test]
    fn text_that_does_not_parse_is_left_to_postgres() {
        for bad in ["host=db password='open", "=x sslmode=disable", "host db"] {
            assert_eq!(split(bad).unwrap().0, bad);
        }
    }

    #[test]
    fn the_mode_becomes_postgres_ssl_mode() {
        let mode = |url: &str| connector(url).unwrap().0.get_ssl_mode();
        assert_eq!(mode("postgresql://db?sslmode=disable"), SslMode::Disable);
        assert_eq!(mode("postgresql://db?sslmode=allow"), SslMode::Prefer);
        assert_eq!(mode("postgresql://db"), SslMode::Prefer);
        assert_eq!(mode("postgresql://db?sslmode=require"), SslMode::Require);
        assert_eq!(mode("host=db sslmode=verify-ca"), SslMode::Require);
        // A Unix socket never has TLS.
        assert_eq!(
            mode("host=/run/postgresql sslmode=require"),
            SslMode::Disable
        );
    }

    #[test]
    fn an_unreadable_sslrootcert_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = connector(&format!(
            "postgresql://os:s3cret@db?sslmode=require&sslrootcert={}",
            missing.display()
        ))
        .err()
        .unwrap();
        assert!(
            e.starts_with(&format!("sslrootcert {}: ", missing.display())),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = connector(&format!(
            "host=db sslmode=verify-full sslrootcert={}",
            empty.display()
        ))
        .err()
        .unwrap();
        assert!(e.contains("no CA certificate in it"), "{e}");
        // Without TLS, the file is not read.
        assert!(
            connector(&format!(
                "host=db sslmode=disable sslrootcert={}",
                missing.display()
            ))
            .is_ok()
        );
    }
}
