//! How the harness reaches nodes that speak TLS: which ports speak HTTPS,
//! the CA the harness trusts and the client certificate it presents.
//! The tests make the certificates themselves (see `tests/tls.rs`).

use std::time::Duration;

/// The TLS side of a node or cluster under test, as its HTTP clients see it.
#[derive(Clone, Debug, Default)]
pub struct HarnessTls {
    /// The client port speaks HTTPS.
    pub client_https: bool,
    /// The peer port speaks HTTPS (mutual TLS).
    pub peer_https: bool,
    /// PEM CA certificates the harness's clients trust.
    pub ca_pem: Vec<u8>,
    /// PEM client certificate followed by its key, presented to a node
    /// that requires one (`--tls-client-ca`).
    pub identity_pem: Option<Vec<u8>>,
}

impl HarnessTls {
    /// `https` or `http`, for the client port.
    pub fn client_scheme(&self) -> &'static str {
        if self.client_https {
            "https"
        } else {
            "http"
        }
    }

    /// `https` or `http`, for the peer port.
    pub fn peer_scheme(&self) -> &'static str {
        if self.peer_https {
            "https"
        } else {
            "http"
        }
    }
}

/// A pooled client with no proxy and `timeout` per request that trusts
/// only `tls`'s CA and presents its identity; plain without `tls`.
pub(crate) fn harness_client(tls: Option<&HarnessTls>, timeout: Duration) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().no_proxy().timeout(timeout);
    if let Some(tls) = tls {
        builder = builder.use_rustls_tls().tls_built_in_root_certs(false);
        for certificate in
            reqwest::Certificate::from_pem_bundle(&tls.ca_pem).expect("the test CA is PEM")
        {
            builder = builder.add_root_certificate(certificate);
        }
        if let Some(pem) = &tls.identity_pem {
            builder = builder
                .identity(reqwest::Identity::from_pem(pem).expect("the test identity is PEM"));
        }
    }
    builder.build().expect("the harness's HTTP client builds")
}
