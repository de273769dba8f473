//! TLS settings of a [`Client`](crate::Client): the CA to trust and the
//! client certificate to present, and plain words for a failed handshake.
//!
//! Only the CA given is trusted: the client carries no public root
//! certificates, since a cluster's certificates come from its operator's
//! own CA. A handshake that fails is reported as [`Error::Tls`], which
//! says what was wrong (an untrusted server certificate, a refused client
//! certificate) instead of a bare "error sending request".

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The TLS files a builder was given.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsFiles {
    /// PEM CA certificates to trust (`--cacert`).
    pub(crate) ca: Option<PathBuf>,
    /// PEM client certificate chain and key (`--cert`, `--key`).
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// Reads the files into `builder`: rustls with no built-in roots, the
    /// CA as the only root, the client certificate as the identity.
    pub(crate) fn apply(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder> {
        let mut builder = builder.use_rustls_tls().tls_built_in_root_certs(false);
        if let Some(path) = &self.ca {
            let pem = read("CA file", path)?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|error| invalid("CA file", path, &error.to_string()))?;
            if certificates.is_empty() {
                return Err(invalid("CA file", path, "no PEM certificate in the file"));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some((cert_path, key_path)) = &self.identity {
            let mut pem = read("client certificate", cert_path)?;
            pem.push(b'\n');
            pem.extend_from_slice(&read("client key", key_path)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|error| {
                invalid(
                    "client certificate",
                    cert_path,
                    &format!("with key {}: {error}", key_path.display()),
                )
            })?;
            builder = builder.identity(identity);
        }
        Ok(builder)
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| invalid(what, path, &error.to_string()))
}

fn invalid(what: &'static str, path: &Path, why: &str) -> Error {
    Error::Invalid {
        what,
        message: format!("{}: {why}", path.display()),
    }
}

/// What went wrong in the TLS handshake behind `error`, in plain words,
/// if TLS is what failed.
pub(crate) fn describe_failure(error: &reqwest::Error) -> Option<String> {
    use rustls::{AlertDescription, CertificateError};
    let refused = |alert: &dyn std::fmt::Display| {
        format!(
            "the server refused this client's certificate ({alert}): it needs one signed by \
             its CA (give it with --cert and --key)"
        )
    };
    let text = match tls_cause(error)? {
        Cause::Rustls(
            cause @ rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ),
        ) => format!("the server's certificate is not valid for this host name ({cause})"),
        Cause::Rustls(cause @ rustls::Error::InvalidCertificate(_)) => format!(
            "the server's certificate is not trusted ({cause}): it is not signed by the CA \
             this client trusts (give the cluster's CA with --cacert)"
        ),
        Cause::Rustls(
            cause @ rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::AccessDenied,
            ),
        ) => refused(cause),
        Cause::Rustls(other) => format!("the TLS handshake failed: {other}"),
        Cause::Alert(text)
            if CLIENT_CERTIFICATE_ALERTS
                .iter()
                .any(|name| text.ends_with(name)) =>
        {
            refused(&text)
        }
        Cause::Alert(text) => format!("the TLS connection failed: {text}"),
    };
    Some(text)
}

/// The alerts a server sends when it does not accept the client's
/// certificate (or the lack of one).
const CLIENT_CERTIFICATE_ALERTS: &[&str] = &[
    "CertificateRequired",
    "BadCertificate",
    "UnknownCA",
    "CertificateUnknown",
    "AccessDenied",
];

/// A TLS failure found in a chain of causes.
enum Cause<'a> {
    /// rustls's own error, from the handshake.
    Rustls(&'a rustls::Error),
    /// An alert the server sent after the handshake (TLS 1.3 checks the
    /// client's certificate then), which reaches us only as text:
    /// `received fatal alert: CertificateRequired`.
    Alert(String),
}

/// The TLS failure somewhere in `error`'s chain of causes. An `io::Error`
/// skips the error it wraps in `source()` (and they nest), so it is looked
/// into with `get_ref` instead.
fn tls_cause(error: &reqwest::Error) -> Option<Cause<'_>> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(Cause::Rustls(found));
        }
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => {
                let inner = io.get_ref()?;
                let text = inner.to_string();
                if text.starts_with("received fatal alert: ") {
                    return Some(Cause::Alert(text));
                }
                Some(inner as &(dyn std::error::Error + 'static))
            }
            None => current.source(),
        };
    }
    None
}
