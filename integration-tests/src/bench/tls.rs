//! `kv-bench`'s TLS flags (`--cacert`, `--cert`, `--key`, as kvctl's), so
//! a run can drive a cluster that speaks HTTPS.
//!
//! The flags hold for the whole run, and every HTTP client a workload
//! builds goes through [`apply`]; they are set once, before any client is
//! built, so the workloads need not carry them around.

use std::path::PathBuf;
use std::sync::OnceLock;

use clap::Args;

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

/// The run's CA and client identity, read once.
struct Loaded {
    ca: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
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
        let ca = match &self.cacert {
            Some(path) => reqwest::Certificate::from_pem_bundle(&read("--cacert", path)?)
                .map_err(|error| bad("--cacert", path, error.to_string()))?,
            None => Vec::new(),
        };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let mut pem = read("--cert", cert)?;
                pem.push(b'\n');
                pem.extend_from_slice(&read("--key", key)?);
                Some(
                    reqwest::Identity::from_pem(&pem)
                        .map_err(|error| bad("--cert", cert, error.to_string()))?,
                )
            }
            _ => None,
        };
        let _ = LOADED.set(Loaded { ca, identity });
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
