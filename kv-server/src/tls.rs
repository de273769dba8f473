//! TLS on the two listeners and on the calls between nodes (rustls, with
//! the `ring` crypto provider).
//!
//! * The client port speaks HTTPS with `--tls-cert`/`--tls-key`; with
//!   `--tls-client-ca` it also requires a client certificate signed by
//!   that CA.
//! * The peer port speaks mutual TLS with `--peer-tls-cert`/`--peer-tls-key`
//!   and `--peer-tls-ca`: a caller without a certificate signed by that CA
//!   cannot complete the handshake. The same certificate is this node's
//!   identity when it calls the other nodes, and the same CA is the only
//!   one it trusts for them (as etcd's `--peer-*-file` flags): no public
//!   roots are ever trusted.
//!
//! Everything is read and checked at start, so a missing or unparsable
//! file stops the node with an error naming the flag and the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::Config;

/// Why the TLS settings cannot be used; each names the flag and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// One half of a certificate/key pair was given without the other.
    #[error("{given} is set but {missing} is not: give both")]
    Unpaired {
        /// The flag given.
        given: &'static str,
        /// The flag missing.
        missing: &'static str,
    },
    /// A flag that only means something with another one.
    #[error("{given} needs {needs}")]
    Needs {
        /// The flag given.
        given: &'static str,
        /// The flag it needs.
        needs: &'static str,
    },
    /// A file could not be read.
    #[error("{flag} {}: cannot read it: {source}", path.display())]
    Read {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{flag} {}: {reason}", path.display())]
    Pem {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificate, the key or the CA (a key that does
    /// not match its certificate, say).
    #[error("{what}: {source}")]
    Rejected {
        /// The flags involved.
        what: String,
        /// What rustls said.
        source: rustls::Error,
    },
    /// A URL's scheme does not match whether its listener speaks TLS.
    #[error("{flag} {url:?}: {reason}")]
    Scheme {
        /// The flag giving the URL.
        flag: &'static str,
        /// The URL.
        url: String,
        /// What is expected instead.
        reason: String,
    },
}

/// The TLS side of a node, built once at start.
#[derive(Clone, Default)]
pub struct NodeTls {
    /// The client port's acceptor, when it speaks HTTPS.
    pub client: Option<TlsAcceptor>,
    /// The peer port's acceptor, when it speaks mutual TLS.
    pub peer: Option<TlsAcceptor>,
    /// What this node presents and trusts when it calls the other nodes.
    peer_identity: Option<PeerIdentity>,
}

/// The peer certificate chain and key (one PEM buffer, as reqwest takes
/// it) and the peer CA, for the node's outgoing calls; and the same as a
/// connector, for the calls of replicated writes
/// ([`crate::peer_channel`]).
#[derive(Clone)]
struct PeerIdentity {
    cert_and_key_pem: Vec<u8>,
    ca: Vec<CertificateDer<'static>>,
    connector: TlsConnector,
}

impl NodeTls {
    /// Reads and checks the TLS flags of `config`.
    pub fn from_config(config: &Config) -> Result<NodeTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_pair = pair(
            ("--tls-cert", &config.tls_cert),
            ("--tls-key", &config.tls_key),
        )?;
        let peer_pair = pair(
            ("--peer-tls-cert", &config.peer_tls_cert),
            ("--peer-tls-key", &config.peer_tls_key),
        )?;
        if client_pair.is_none() && config.tls_client_ca.is_some() {
            return Err(TlsError::Needs {
                given: "--tls-client-ca",
                needs: "--tls-cert and --tls-key",
            });
        }
        match (&peer_pair, &config.peer_tls_ca) {
            (Some(_), None) => {
                return Err(TlsError::Needs {
                    given: "--peer-tls-cert",
                    needs: "--peer-tls-ca (the CA the other nodes' certificates are signed by)",
                })
            }
            (None, Some(_)) => {
                return Err(TlsError::Needs {
                    given: "--peer-tls-ca",
                    needs: "--peer-tls-cert and --peer-tls-key",
                })
            }
            _ => {}
        }
        let client = match client_pair {
            Some((cert, key)) => {
                let client_ca = match &config.tls_client_ca {
                    Some(path) => Some(read_certificates("--tls-client-ca", path)?),
                    None => None,
                };
                let server = server_config(
                    &provider,
                    Identity::read(("--tls-cert", cert), ("--tls-key", key))?,
                    client_ca,
                    "--tls-cert/--tls-key/--tls-client-ca",
                )?;
                Some(TlsAcceptor::from(Arc::new(server)))
            }
            None => None,
        };
        let (peer, peer_identity) = match (peer_pair, &config.peer_tls_ca) {
            (Some((cert, key)), Some(ca_path)) => {
                let identity = Identity::read(("--peer-tls-cert", cert), ("--peer-tls-key", key))?;
                let ca = read_certificates("--peer-tls-ca", ca_path)?;
                let outgoing = PeerIdentity {
                    cert_and_key_pem: identity.pem.clone(),
                    ca: ca.clone(),
                    connector: client_connector(&provider, &identity, &ca)?,
                };
                let server = server_config(
                    &provider,
                    identity,
                    Some(ca),
                    "--peer-tls-cert/--peer-tls-key/--peer-tls-ca",
                )?;
                (Some(TlsAcceptor::from(Arc::new(server))), Some(outgoing))
            }
            _ => (None, None),
        };
        Ok(NodeTls {
            client,
            peer,
            peer_identity,
        })
    }

    /// Sets up `builder` (the client of the calls between nodes) to trust
    /// only `--peer-tls-ca` and to present `--peer-tls-cert`; without peer
    /// TLS it is left as it is.
    pub fn peer_client(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, reqwest::Error> {
        let Some(identity) = &self.peer_identity else {
            return Ok(builder);
        };
        // Never a call in clear: a member's http:// URL (given before the
        // membership check, or by hand) fails rather than leak the data.
        let mut builder = builder
            .use_rustls_tls()
            .https_only(true)
            .tls_built_in_root_certs(false)
            .identity(reqwest::Identity::from_pem(&identity.cert_and_key_pem)?);
        for ca in &identity.ca {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(ca)?);
        }
        Ok(builder)
    }

    /// The same for the connections of [`crate::peer_channel`]: trusting
    /// only `--peer-tls-ca` and presenting `--peer-tls-cert`; none without
    /// peer TLS.
    pub fn peer_connector(&self) -> Option<TlsConnector> {
        self.peer_identity
            .as_ref()
            .map(|identity| identity.connector.clone())
    }
}

/// A connector presenting `identity` and trusting only `ca`, offering
/// HTTP/1.1 by ALPN.
fn client_connector(
    provider: &Arc<CryptoProvider>,
    identity: &Identity,
    ca: &[CertificateDer<'static>],
) -> Result<TlsConnector, TlsError> {
    let flags = "--peer-tls-cert/--peer-tls-key/--peer-tls-ca";
    let rejected = |source: rustls::Error| TlsError::Rejected {
        what: flags.to_string(),
        source,
    };
    let mut roots = RootCertStore::empty();
    for certificate in ca {
        roots.add(certificate.clone()).map_err(rejected)?;
    }
    let mut config = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(rejected)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Checks that the URL a flag gives speaks TLS exactly when its listener
/// does: an `https://` URL for a plain listener, or an `http://` one for a
/// TLS listener, would send everyone to the wrong protocol.
pub fn check_scheme(flag: &'static str, url: &str, tls: bool) -> Result<(), TlsError> {
    let (expected, reason) = match tls {
        true => (
            "https://",
            "the listener speaks TLS, so its URL must be https://",
        ),
        false => (
            "http://",
            "the listener speaks plain HTTP (no TLS certificate given), so its URL must be http://",
        ),
    };
    match url.starts_with(expected) {
        true => Ok(()),
        false => Err(TlsError::Scheme {
            flag,
            url: url.to_string(),
            reason: reason.to_string(),
        }),
    }
}

/// Both files of a pair, or neither; one alone is refused.
fn pair<'a>(
    cert: (&'static str, &'a Option<PathBuf>),
    key: (&'static str, &'a Option<PathBuf>),
) -> Result<Option<(&'a Path, &'a Path)>, TlsError> {
    match (cert.1, key.1) {
        (Some(cert_path), Some(key_path)) => Ok(Some((cert_path, key_path))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(TlsError::Unpaired {
            given: cert.0,
            missing: key.0,
        }),
        (None, Some(_)) => Err(TlsError::Unpaired {
            given: key.0,
            missing: cert.0,
        }),
    }
}

/// A certificate chain and its key, parsed, with the PEM they came from.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The chain's PEM followed by the key's.
    pem: Vec<u8>,
}

impl Identity {
    fn read(cert: (&'static str, &Path), key: (&'static str, &Path)) -> Result<Identity, TlsError> {
        let chain = read_certificates(cert.0, cert.1)?;
        let key_pem = read(key.0, key.1)?;
        let parsed = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsError::Pem {
            flag: key.0,
            path: key.1.to_path_buf(),
            reason: match error {
                rustls_pki_types::pem::Error::NoItemsFound => {
                    "no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file".to_string()
                }
                other => format!("not a PEM private key: {other:?}"),
            },
        })?;
        let mut pem = read(cert.0, cert.1)?;
        pem.push(b'\n');
        pem.extend_from_slice(&key_pem);
        Ok(Identity {
            chain,
            key: parsed,
            pem,
        })
    }
}

/// The bytes of the file a flag names.
fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

/// The PEM certificates of the file a flag names: at least one.
fn read_certificates(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(flag, path)?;
    let invalid = |reason: String| TlsError::Pem {
        flag,
        path: path.to_path_buf(),
        reason,
    };
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("not a PEM certificate: {error:?}")))?;
    if certificates.is_empty() {
        return Err(invalid(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".to_string(),
        ));
    }
    Ok(certificates)
}

/// A server configuration presenting `identity`, requiring a client
/// certificate signed by `client_ca` when given, and offering HTTP/2 and
/// HTTP/1.1 by ALPN.
fn server_config(
    provider: &Arc<CryptoProvider>,
    identity: Identity,
    client_ca: Option<Vec<CertificateDer<'static>>>,
    flags: &str,
) -> Result<ServerConfig, TlsError> {
    let rejected = |source: rustls::Error| TlsError::Rejected {
        what: flags.to_string(),
        source,
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(rejected)?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in ca {
                roots.add(certificate).map_err(rejected)?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                    .build()
                    .map_err(|error| TlsError::Rejected {
                        what: flags.to_string(),
                        source: rustls::Error::General(error.to_string()),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(identity.chain, identity.key)
        .map_err(rejected)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::Parser;

    use super::*;

    fn config(args: &[&str]) -> Config {
        crate::config::Cli::try_parse_from(std::iter::once("kv-server").chain(args.iter().copied()))
            .expect("the flags parse")
            .config
    }

    fn refusal(args: &[&str]) -> String {
        match NodeTls::from_config(&config(args)) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn without_tls_flags_both_listeners_stay_plain() {
        let tls = NodeTls::from_config(&config(&[])).unwrap();
        assert!(tls.client.is_none() && tls.peer.is_none());
    }

    #[test]
    fn half_pairs_and_flags_missing_their_partner_are_refused_naming_both() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--tls-cert", "a.pem"],
                "--tls-cert is set but --tls-key is not",
            ),
            (
                &["--tls-key", "a.pem"],
                "--tls-key is set but --tls-cert is not",
            ),
            (
                &["--peer-tls-cert", "a.pem"],
                "--peer-tls-cert is set but --peer-tls-key is not",
            ),
            (
                &["--peer-tls-cert", "a.pem", "--peer-tls-key", "b.pem"],
                "--peer-tls-cert needs --peer-tls-ca",
            ),
            (
                &["--peer-tls-ca", "a.pem"],
                "--peer-tls-ca needs --peer-tls-cert",
            ),
            (
                &["--tls-client-ca", "a.pem"],
                "--tls-client-ca needs --tls-cert",
            ),
        ];
        for (args, expected) in cases {
            let why = refusal(args);
            assert!(why.contains(expected), "{args:?}: {why}");
        }
    }

    #[test]
    fn unreadable_and_unparsable_files_are_named_with_their_flag() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::File::create(&garbage)
            .unwrap()
            .write_all(b"not a certificate\n")
            .unwrap();
        let garbage = garbage.to_str().unwrap();
        let missing = dir.path().join("missing.pem");
        let missing = missing.to_str().unwrap();
        let cases: &[(&[&str], &str)] = &[
            (&["--tls-cert", missing, "--tls-key", garbage], "--tls-cert"),
            (
                &["--tls-cert", garbage, "--tls-key", garbage],
                "no PEM certificate",
            ),
        ];
        for (args, expected) in cases {
            let why = refusal(args);
            assert!(why.contains(expected), "{args:?}: {why}");
            assert!(
                why.contains(dir.path().to_str().unwrap()),
                "{args:?} names the file: {why}"
            );
        }
    }

    #[test]
    fn a_url_must_speak_tls_exactly_when_its_listener_does() {
        assert!(check_scheme("--advertise", "https://a:1", true).is_ok());
        assert!(check_scheme("--advertise", "http://a:1", false).is_ok());
        let plain_for_tls = check_scheme("--advertise", "http://a:1", true).unwrap_err();
        assert!(plain_for_tls.to_string().contains("must be https://"));
        let tls_for_plain = check_scheme("--peers", "https://a:1", false).unwrap_err();
        assert!(
            tls_for_plain.to_string().contains("--peers"),
            "{tls_for_plain}"
        );
    }
}
