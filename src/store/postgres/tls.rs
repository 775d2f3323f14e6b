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

use std::path::PathBuf;

use postgres::config::{Host, SslMode, TargetSessionAttrs};

/// What connects: rustls. With `ssl_mode` Disable it is never used.
#[cfg(feature = "tls")]
pub(crate) type Tls = tokio_postgres_rustls::MakeRustlsConnect;
/// Built without the `tls` feature (the fuzz targets' build: no C
/// cryptography library to compile): plain connections only.
#[cfg(not(feature = "tls"))]
pub(crate) type Tls = postgres::NoTls;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(value: &str) -> Option<Mode> {
        Some(match value {
            "disable" => Mode::Disable,
            "allow" => Mode::Allow,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            _ => return None,
        })
    }
}

/// Where the trusted roots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RootCert {
    /// `sslrootcert=FILE`: a PEM bundle.
    File(PathBuf),
    /// `sslrootcert=system`, or none given: the system's store.
    System,
}

/// The TLS settings taken out of a URL or conninfo, and the session
/// wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub mode: Mode,
    /// `None`: no `sslrootcert` (the system's store, when one is needed).
    pub rootcert: Option<RootCert>,
    /// `target_session_attrs`, when given.
    pub session: Option<TargetSessionAttrs>,
}

/// `target_session_attrs` as libpq spells it: `primary` (libpq 14) is
/// read as `read-write`, what postgres checks (`SHOW
/// transaction_read_only`); a standby is no use to a process that writes.
fn session_attrs(value: &str) -> Result<TargetSessionAttrs, String> {
    Ok(match value {
        "any" => TargetSessionAttrs::Any,
        "read-write" | "primary" => TargetSessionAttrs::ReadWrite,
        "read-only" => TargetSessionAttrs::ReadOnly,
        "standby" | "prefer-standby" => {
            return Err(
                "target_session_attrs: ordersync writes, so a standby cannot be its server (use read-write or primary)"
                    .into(),
            );
        }
        _ => {
            return Err(
                "invalid value for option `target_session_attrs` (any, read-write, primary or read-only)"
                    .into(),
            );
        }
    })
}

/// `target_session_attrs` as shown in a URL.
pub(crate) fn session_name(attrs: TargetSessionAttrs) -> &'static str {
    match attrs {
        TargetSessionAttrs::ReadWrite => "read-write",
        TargetSessionAttrs::ReadOnly => "read-only",
        _ => "any",
    }
}

/// The message for a bad `sslmode`: postgres's own words, quoting nothing
/// of the text.
const BAD_SSLMODE: &str = "invalid value for option `sslmode` (disable, allow, prefer, require, verify-ca or verify-full)";

/// Takes `sslmode` and `sslrootcert` out of `url` (libpq's URL, or
/// `key=value` conninfo): the rest, for postgres, and the settings. The
/// last of a repeated key wins, as in libpq. Text that does not parse is
/// left as it is, for postgres to report. No message quotes the text.
pub(crate) fn split(url: &str) -> Result<(String, Settings), String> {
    let mut mode = None;
    let mut rootcert = None;
    let mut session = None;
    let mut take = |key: &str, value: String| -> Result<bool, String> {
        match key {
            "sslmode" => mode = Some(Mode::parse(&value).ok_or(BAD_SSLMODE)?),
            "target_session_attrs" => session = Some(session_attrs(&value)?),
            "sslrootcert" => {
                rootcert = Some(match value.as_str() {
                    "system" => RootCert::System,
                    "" => return Err("sslrootcert is empty".into()),
                    _ => RootCert::File(PathBuf::from(value)),
                })
            }
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = match ["postgresql://", "postgres://"]
        .iter()
        .find(|p| url.starts_with(*p))
    {
        Some(_) => split_url(url, &mut take)?,
        None => split_conninfo(url, &mut take)?,
    };
    let mode = match (mode, &rootcert) {
        (None, Some(RootCert::System)) => Mode::VerifyFull,
        (Some(m), Some(RootCert::System)) if m != Mode::VerifyFull => {
            return Err(
                "a weaker sslmode than verify-full may not be used with sslrootcert=system (use verify-full)"
                    .into(),
            );
        }
        (m, _) => m.unwrap_or(Mode::Prefer),
    };
    Ok((
        rest,
        Settings {
            mode,
            rootcert,
            session,
        },
    ))
}

/// The host part of a URL (after the user info, up to the path or the
/// parameters), or `None` for conninfo. A URL whose host part or path
/// holds an `@` is refused: its password holds an `@` not written `%40`, which postgres
/// would read as the end of the password and the start of the host (and
/// messages would show the rest of the password).
pub(crate) fn url_hosts(url: &str) -> Result<Option<&str>, String> {
    let Some(after) = ["postgresql://", "postgres://"]
        .iter()
        .find_map(|p| url.strip_prefix(*p))
    else {
        return Ok(None);
    };
    let rest = after.find('@').map_or(after, |at| &after[at + 1..]);
    // The host and the path: an `@` there (`os:p@ss@db`, `os:p@ss/x@db`)
    // is one of the password's.
    let host_path = &rest[..rest.find('?').unwrap_or(rest.len())];
    let hosts = &host_path[..host_path.find('/').unwrap_or(host_path.len())];
    if host_path.contains('@') {
        return Err(
            "the URL's user info holds an `@` that is not percent-encoded (write `@` in a user name or password as %40)"
                .into(),
        );
    }
    Ok(Some(hosts))
}

/// The URL form: the parameters after the first `?` that follows the
/// user info (everything up to the first `@`, as postgres reads it).
fn split_url(
    url: &str,
    take: &mut dyn FnMut(&str, String) -> Result<bool, String>,
) -> Result<String, String> {
    url_hosts(url)?;
    let after_creds = url.find('@').map_or(0, |at| at + 1);
    let Some(q) = url[after_creds..].find('?').map(|q| after_creds + q) else {
        return Ok(url.to_string());
    };
    let mut kept = Vec::new();
    let mut params = &url[q + 1..];
    while !params.is_empty() {
        // As postgres: the key runs to the first `=`, the value to `&`.
        let Some(eq) = params.find('=') else {
            kept.push(params);
            break;
        };
        let end = params[eq + 1..]
            .find('&')
            .map_or(params.len(), |a| eq + 1 + a);
        let (key, value) = (&params[..eq], &params[eq + 1..end]);
        let known = match (percent_decode(key), percent_decode(value)) {
            (Some(key), Some(value)) => take(&key, value)?,
            _ => false,
        };
        if !known {
            kept.push(&params[..end]);
        }
        params = params.get(end + 1..).unwrap_or("");
    }
    let mut rest = url[..q].to_string();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok(rest)
}

/// `%XX` decoded; `None` when that is not UTF-8 (postgres reports it).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `key=value` form, read as postgres reads it (values in single
/// quotes, `\` escapes); the kept parameters are copied as written.
fn split_conninfo(
    text: &str,
    take: &mut dyn FnMut(&str, String) -> Result<bool, String>,
) -> Result<String, String> {
    let mut kept: Vec<&str> = Vec::new();
    let mut it = text.char_indices().peekable();
    let skip_ws = |it: &mut std::iter::Peekable<std::str::CharIndices>| {
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_ws(&mut it);
        let Some(&(start, _)) = it.peek() else { break };
        let mut key_end = start;
        while let Some((i, c)) = it.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key_end = i + c.len_utf8();
        }
        if key_end == start {
            // No keyword: postgres stops (or fails) here.
            return Ok(text.to_string());
        }
        skip_ws(&mut it);
        if it.next_if(|(_, c)| *c == '=').is_none() {
            // Not `key = value`: postgres says what is wrong.
            return Ok(text.to_string());
        }
        skip_ws(&mut it);
        let mut value = String::new();
        let quoted = it.next_if(|(_, c)| *c == '\'').is_some();
        let mut end = None;
        while let Some((i, c)) = it.next() {
            match c {
                '\'' if quoted => {
                    end = Some(i + 1);
                    break;
                }
                c if c.is_whitespace() && !quoted => {
                    end = Some(i);
                    break;
                }
                '\\' => {
                    if let Some((_, e)) = it.next() {
                        value.push(e);
                    }
                }
                c => value.push(c),
            }
        }
        let end = match end {
            Some(end) => end,
            None if quoted => return Ok(text.to_string()),
            None => text.len(),
        };
        if !take(&text[start..key_end], value)? {
            kept.push(&text[start..end]);
        }
    }
    Ok(kept.join(" "))
}

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

    use super::{Mode, RootCert, Settings, Tls};

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
