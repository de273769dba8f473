//! [`Client`] and its [`ClientBuilder`]: the endpoints, the timeouts and the
//! retry budget every call shares.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::error::{Error, Result};

/// Default time one attempt may take (connect, send, answer), long-polls
/// excepted: a little above the server's own 10 s limit on a write.
///
/// ```
/// let builder = kv_client::ClientBuilder::new(["http://127.0.0.1:7070"])
///     .request_timeout(kv_client::DEFAULT_REQUEST_TIMEOUT * 2);
/// # let _ = builder;
/// ```
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Default time a call may take over all its attempts.
///
/// ```
/// assert_eq!(kv_client::DEFAULT_DEADLINE, std::time::Duration::from_secs(30));
/// ```
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// Default largest number of attempts of one call.
///
/// ```
/// let builder = kv_client::ClientBuilder::new(["http://127.0.0.1:7070"])
///     .max_attempts(kv_client::DEFAULT_MAX_ATTEMPTS / 2);
/// # let _ = builder;
/// ```
pub const DEFAULT_MAX_ATTEMPTS: u32 = 12;
/// Default time a connection may take to open.
///
/// ```
/// assert!(kv_client::DEFAULT_CONNECT_TIMEOUT < kv_client::DEFAULT_REQUEST_TIMEOUT);
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default first pause after every endpoint failed once; it doubles per round.
///
/// ```
/// assert!(kv_client::DEFAULT_BACKOFF_INITIAL < kv_client::DEFAULT_BACKOFF_MAX);
/// ```
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(50);
/// Default longest pause between two rounds of attempts.
///
/// ```
/// let builder = kv_client::ClientBuilder::new(["http://127.0.0.1:7070"])
///     .backoff(kv_client::DEFAULT_BACKOFF_INITIAL, kv_client::DEFAULT_BACKOFF_MAX * 2);
/// # let _ = builder;
/// ```
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A handle on a cluster, cheap to clone and safe to share between tasks.
///
/// Every call goes to the endpoint that answered last (the leader once it
/// is known), fails over to the next endpoint when a connection fails or a
/// node answers 503, and pauses with growing, jittered backoff after every
/// endpoint failed once — within [`ClientBuilder::max_attempts`] and
/// [`ClientBuilder::deadline`]. Every write carries an `Idempotency-Key`
/// that all its attempts share, so a write retried after its answer was
/// lost is applied once.
///
/// ```no_run
/// # async fn example() -> Result<(), kv_client::Error> {
/// let client = kv_client::Client::new(["http://127.0.0.1:7070", "http://127.0.0.1:7071"])?;
/// let written = client.put("app/config", &serde_json::json!({"retention": "7d"})).await?;
/// let read = client.get("app/config").await?.expect("just written");
/// assert_eq!(read.mod_revision, written.revision);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

/// What every clone of a [`Client`] shares.
///
/// `preferred` and `leader_checked` are plain atomics: they are hints that
/// any task may overwrite at any time; a stale hint costs at most one
/// failed attempt, never a wrong answer.
pub(crate) struct Inner {
    /// The nodes, as given, in order.
    pub(crate) endpoints: Vec<Url>,
    /// Index into `endpoints` of the node to try first.
    pub(crate) preferred: AtomicUsize,
    /// Whether the leader was looked up since the last failover.
    pub(crate) leader_checked: AtomicBool,
    /// The pooled HTTP client.
    pub(crate) http: reqwest::Client,
    /// Timeouts and the retry budget.
    pub(crate) options: Options,
}

/// Timeouts and the retry budget of a client.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) request_timeout: Duration,
    pub(crate) deadline: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
}

impl Client {
    /// A client of the nodes at `endpoints` (`http://host:port`), with the
    /// default timeouts. No connection is made until the first call.
    ///
    /// ```
    /// let client = kv_client::Client::new(["http://127.0.0.1:7070"]).unwrap();
    /// assert_eq!(client.endpoints().len(), 1);
    /// assert!(kv_client::Client::new(Vec::<String>::new()).is_err());
    /// ```
    pub fn new<I, S>(endpoints: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ClientBuilder::new(endpoints).build()
    }

    /// A builder, to change timeouts and the retry budget.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let client = kv_client::Client::builder(["http://127.0.0.1:7070"])
    ///     .deadline(Duration::from_secs(5))
    ///     .build()
    ///     .unwrap();
    /// # let _ = client;
    /// ```
    pub fn builder<I, S>(endpoints: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ClientBuilder::new(endpoints)
    }

    /// The endpoints, in the order given.
    ///
    /// ```
    /// let client = kv_client::Client::new(["http://127.0.0.1:7070/"]).unwrap();
    /// assert_eq!(client.endpoints()[0].as_str(), "http://127.0.0.1:7070/");
    /// ```
    pub fn endpoints(&self) -> &[Url] {
        &self.inner.endpoints
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
            .field("options", &self.inner.options)
            .finish()
    }
}

/// Builds a [`Client`] with other timeouts or retry budget.
///
/// ```
/// use std::time::Duration;
///
/// let client = kv_client::ClientBuilder::new(["http://10.0.0.1:7070", "http://10.0.0.2:7070"])
///     .request_timeout(Duration::from_secs(5))
///     .deadline(Duration::from_secs(20))
///     .max_attempts(8)
///     .build()
///     .unwrap();
/// # let _ = client;
/// ```
#[derive(Debug)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    options: Options,
    connect_timeout: Duration,
    http2_prior_knowledge: bool,
    token: Option<String>,
    tls: crate::tls::TlsFiles,
}

impl ClientBuilder {
    /// A builder with the default settings.
    ///
    /// ```
    /// let builder = kv_client::ClientBuilder::new(["http://127.0.0.1:7070"]);
    /// let client = builder.build().unwrap();
    /// # let _ = client;
    /// ```
    pub fn new<I, S>(endpoints: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ClientBuilder {
            endpoints: endpoints
                .into_iter()
                .map(|endpoint| endpoint.as_ref().to_string())
                .collect(),
            options: Options {
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                deadline: DEFAULT_DEADLINE,
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                backoff_initial: DEFAULT_BACKOFF_INITIAL,
                backoff_max: DEFAULT_BACKOFF_MAX,
            },
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            http2_prior_knowledge: false,
            token: None,
            tls: crate::tls::TlsFiles::default(),
        }
    }

    /// How long one attempt may take (default 15 s). A long-poll may take
    /// its wait on top.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = kv_client::ClientBuilder::new(["http://127.0.0.1:7070"])
    ///     .request_timeout(Duration::from_secs(3));
    /// # let _ = builder;
    /// ```
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.options.request_timeout = timeout;
        self
    }

    /// How long a call may take over all its attempts (default 30 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = kv_client::ClientBuilder::new(["http://127.0.0.1:7070"])
    ///     .deadline(Duration::from_secs(60));
    /// # let _ = builder;
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.options.deadline = deadline;
        self
    }

    /// The largest number of attempts of one call (default 12, at least 1).
    ///
    /// ```
    /// let builder = kv_client::ClientBuilder::new(["http://127.0.0.1:7070"]).max_attempts(3);
    /// # let _ = builder;
    /// ```
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.options.max_attempts = attempts.max(1);
        self
    }

    /// The first and the longest pause between rounds of attempts
    /// (defaults 50 ms and 2 s); the pause doubles per round, with jitter.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = kv_client::ClientBuilder::new(["http://127.0.0.1:7070"])
    ///     .backoff(Duration::from_millis(10), Duration::from_millis(500));
    /// # let _ = builder;
    /// ```
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.options.backoff_initial = initial;
        self.options.backoff_max = max.max(initial);
        self
    }

    /// How long opening a connection may take (default 2 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = kv_client::ClientBuilder::new(["http://127.0.0.1:7070"])
    ///     .connect_timeout(Duration::from_millis(500));
    /// # let _ = builder;
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Speak HTTP/2 without negotiation (default: HTTP/1.1). The server
    /// speaks both; over HTTP/2 many watches share one connection. Leave it
    /// off behind a proxy that speaks only HTTP/1.1.
    ///
    /// ```
    /// let builder = kv_client::ClientBuilder::new(["http://127.0.0.1:7070"])
    ///     .http2_prior_knowledge(true);
    /// # let _ = builder;
    /// ```
    pub fn http2_prior_knowledge(mut self, enabled: bool) -> Self {
        self.http2_prior_knowledge = enabled;
        self
    }

    /// The token every request presents (`Authorization: Bearer`), for a
    /// cluster run with `--auth` (default: none).
    ///
    /// ```
    /// let builder = kv_client::ClientBuilder::new(["http://127.0.0.1:7070"])
    ///     .token("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    /// # let _ = builder;
    /// ```
    pub fn token(mut self, secret: impl Into<String>) -> Self {
        self.token = Some(secret.into());
        self
    }

    /// Trust the PEM CA certificates in `path` for `https://` endpoints
    /// (kvctl's `--cacert`). They are the only ones trusted: with none,
    /// an `https://` endpoint fails its handshake.
    ///
    /// ```no_run
    /// let client = kv_client::ClientBuilder::new(["https://127.0.0.1:7070"])
    ///     .ca_certificate_file("/etc/kv/ca.pem")
    ///     .build()
    ///     .unwrap();
    /// # let _ = client;
    /// ```
    pub fn ca_certificate_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.ca = Some(path.into());
        self
    }

    /// Present the PEM certificate chain in `cert` with the PEM private
    /// key in `key` to servers that ask for a client certificate (kvctl's
    /// `--cert` and `--key`).
    ///
    /// ```no_run
    /// let client = kv_client::ClientBuilder::new(["https://127.0.0.1:7070"])
    ///     .ca_certificate_file("/etc/kv/ca.pem")
    ///     .client_certificate_files("/etc/kv/client.pem", "/etc/kv/client-key.pem")
    ///     .build()
    ///     .unwrap();
    /// # let _ = client;
    /// ```
    pub fn client_certificate_files(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.tls.identity = Some((cert.into(), key.into()));
        self
    }

    /// The client; fails when no endpoint is given or one is not an
    /// `http://` or `https://` URL, or a TLS file cannot be read or parsed.
    ///
    /// ```
    /// let refused = kv_client::ClientBuilder::new(["127.0.0.1:7070"]).build().unwrap_err();
    /// assert!(refused.to_string().contains("endpoint"));
    /// ```
    pub fn build(self) -> Result<Client> {
        if self.endpoints.is_empty() {
            return Err(Error::Invalid {
                what: "endpoint",
                message: "at least one endpoint is needed".to_string(),
            });
        }
        let endpoints = self
            .endpoints
            .iter()
            .map(|endpoint| parse_endpoint(endpoint))
            .collect::<Result<Vec<_>>>()?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .no_proxy()
            .user_agent(concat!("kv-client/", env!("CARGO_PKG_VERSION")));
        if self.http2_prior_knowledge {
            http = http.http2_prior_knowledge();
        }
        if let Some(token) = &self.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Error::Invalid {
                    what: "token",
                    message: "a token is visible ASCII text".to_string(),
                })?;
            // Kept out of the HTTP client's debug output.
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            http = http.default_headers(headers);
        }
        let http = self.tls.apply(http)?;
        let http = http.build().map_err(|error| Error::Invalid {
            what: "client settings",
            message: error.to_string(),
        })?;
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                preferred: AtomicUsize::new(0),
                leader_checked: AtomicBool::new(false),
                http,
                options: self.options,
            }),
        })
    }
}

/// Parses one endpoint: an absolute `http` or `https` URL with a host.
fn parse_endpoint(endpoint: &str) -> Result<Url> {
    let invalid = |message: String| Error::Invalid {
        what: "endpoint",
        message,
    };
    let url = Url::parse(endpoint.trim())
        .map_err(|error| invalid(format!("{endpoint:?} is not a URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(format!(
            "{endpoint:?} is not an http:// or https:// URL with a host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "{endpoint:?} must not have a query or fragment"
        )));
    }
    // Named back in every error, and never sent: refused, and not echoed.
    if !url.username().is_empty() || url.password().is_some() {
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return Err(invalid(format!(
            "{shown} was given with a user and password, which are not sent; \
             present a token instead (ClientBuilder::token, kvctl --token)"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_http_urls_with_a_host() {
        assert!(parse_endpoint("http://127.0.0.1:7070").is_ok());
        assert!(parse_endpoint("https://kv.example:443/base").is_ok());
        assert!(parse_endpoint("127.0.0.1:7070").is_err());
        assert!(parse_endpoint("ftp://host").is_err());
        assert!(parse_endpoint("http://host/?a=b").is_err());
    }
}
