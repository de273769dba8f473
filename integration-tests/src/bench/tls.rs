//! `kv-bench`'s TLS flags (`--cacert`, `--cert`, `--key`, as kvctl's), so
//! a run can drive a cluster that speaks HTTPS.
//!
//! The flags hold for the whole run: every reqwest client a workload builds
//! goes through [`apply`], and the closed loop's own connections take
//! [`connector`]. They are set once, before any client is built, so the
//! workloads need not carry them around.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use clap::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::bench::BenchError;

/// The TLS flags of a run.
#[derive(Clone, Debug, Default, Args)]
pub struct TlsFlags {
    /// PEM CA certificates trusted for https:// endpoints (the only ones).
    #[arg(long, global = true, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// PEM client certificate, for a server that requires one (with --key).
    #[arg(
        long = "cert",
        id = "client_cert",
        global = true,
        value_name = "FILE",
        requires = "client_key"
    )]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(
        long = "key",
        id = "client_key",
        global = true,
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub key: Option<PathBuf>,
}

/// The run's CA and client identity, read once: for reqwest's clients and
/// for the closed loop's own connections (rustls).
struct Loaded {
    ca: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    rustls: Arc<rustls::ClientConfig>,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();

impl TlsFlags {
    /// Reads the files and makes them the run's; a later call changes
    /// nothing.
    pub fn load(&self) -> Result<(), BenchError> {
        let bad = |flag: &str, path: &PathBuf, why: String| {
            BenchError::BadFlag(format!("{flag} {}: {why}", path.display()))
        };
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|error| bad(flag, path, error.to_string()))
        };
        let (ca, roots) = match &self.cacert {
            Some(path) => {
                let pem = read("--cacert", path)?;
                let invalid = |error: String| bad("--cacert", path, error);
                let ca = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|error| invalid(error.to_string()))?;
                let mut roots = rustls::RootCertStore::empty();
                for certificate in CertificateDer::pem_slice_iter(&pem) {
                    let certificate = certificate.map_err(|error| invalid(error.to_string()))?;
                    roots
                        .add(certificate)
                        .map_err(|error| invalid(error.to_string()))?;
                }
                (ca, roots)
            }
            None => (Vec::new(), rustls::RootCertStore::empty()),
        };
        let builder = client_config_builder().with_root_certificates(roots);
        let (identity, rustls) = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let cert_pem = read("--cert", cert)?;
                let key_pem = read("--key", key)?;
                let mut pem = cert_pem.clone();
                pem.push(b'\n');
                pem.extend_from_slice(&key_pem);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|error| bad("--cert", cert, error.to_string()))?;
                let chain = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| bad("--cert", cert, error.to_string()))?;
                let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|error| bad("--key", key, error.to_string()))?;
                let config = builder
                    .with_client_auth_cert(chain, private_key)
                    .map_err(|error| bad("--cert", cert, error.to_string()))?;
                (Some(identity), config)
            }
            _ => (None, builder.with_no_client_auth()),
        };
        let _ = LOADED.set(Loaded {
            ca,
            identity,
            rustls: Arc::new(rustls),
        });
        Ok(())
    }
}

/// `builder` with the run's TLS settings: rustls, no built-in roots, the
/// `--cacert` certificates and the `--cert` identity.
pub fn apply(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    let mut builder = builder.use_rustls_tls().tls_built_in_root_certs(false);
    if let Some(loaded) = LOADED.get() {
        for certificate in &loaded.ca {
            builder = builder.add_root_certificate(certificate.clone());
        }
        if let Some(identity) = &loaded.identity {
            builder = builder.identity(identity.clone());
        }
    }
    builder
}

/// rustls with ring, as the server, and its safe default protocol versions.
fn client_config_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
}

/// A TLS connector with the run's settings: the `--cacert` certificates as
/// the only roots, and the `--cert` identity.
pub fn connector() -> tokio_rustls::TlsConnector {
    let config = match LOADED.get() {
        Some(loaded) => Arc::clone(&loaded.rustls),
        None => Arc::new(
            client_config_builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    };
    tokio_rustls::TlsConnector::from(config)
}
