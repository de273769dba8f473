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
    let cause = tls_cause(error)?;
    use rustls::{AlertDescription, CertificateError};
    let text = match cause {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            format!("the server's certificate is not valid for this host name ({cause})")
        }
        rustls::Error::InvalidCertificate(_) => format!(
            "the server's certificate is not trusted ({cause}): it is not signed by the CA \
             this client trusts (give the cluster's CA with --cacert)"
        ),
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied,
        ) => format!(
            "the server refused this client's certificate ({cause}): it needs one signed by \
             its CA (give it with --cert and --key)"
        ),
        other => format!("the TLS handshake failed: {other}"),
    };
    Some(text)
}

/// The rustls error somewhere in `error`'s chain of causes. An
/// `io::Error` hides the error it wraps from `source()`, so it is looked
/// into with `get_ref`.
fn tls_cause(error: &reqwest::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if let Some(found) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return Some(found);
            }
        }
        next = current.source();
    }
    None
}
