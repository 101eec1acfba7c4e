//! Configuration: one typed [`Config`], layered as defaults < TOML file < `MERCURE_*` variables.
//!
//! Names follow the reference hub's directives so that a migration is a copy of the same values.
//! Everything is validated here, before a port is bound: an unknown key or a bad value stops
//! start-up with a message naming the key, because a typo that silently switches a feature off (as
//! the reference hub v0.21.4 allows) is worse than a refusal to start.

pub mod legacy;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Environment, File, FileFormat, Value};
use thiserror::Error;

use crate::access_token::{IssuerSpec, KeySpec, JWKS_ALGORITHMS};
use crate::jwt::JwtVerifier;
use crate::telemetry::LogFormat;
use crate::topic_selector::SelectorLimits;
pub use crate::topic_selector::DEFAULT_SELECTOR_CACHE_SIZE;

/// Default listen address: loopback, so a development hub is not exposed by accident.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// Default JWT algorithm, as in the reference hub.
pub const DEFAULT_JWT_ALG: &str = "HS256";
/// Default authorization cookie name, as in the reference hub v0.21.x.
pub const DEFAULT_COOKIE_NAME: &str = "mercureAuthorization";
/// Heartbeat: below the 45 s after which the Yaffle EventSource polyfill gives up, and below the
/// 60 s idle timeout of common proxies.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(40);
/// Time a connection may accept no data while the hub has some to send before it is reset: long
/// enough for a client on a poor mobile network, short enough that a frozen reader does not hold
/// its buffers for long.
pub const DEFAULT_DISPATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Maximum lifetime of a subscription stream (randomized to 80–100 % per connection).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(600);
/// Time given to open streams to end after a shutdown signal: below the 30 s Kubernetes gives a
/// pod by default, so the process exits on its own before it would be killed.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Default ACME server: Let's Encrypt's production directory.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Default directory of the ACME account and certificate, relative to the working directory
/// like `history_path`, so that a restart reuses them instead of asking the CA again.
pub const DEFAULT_ACME_CERT_DIR: &str = "acme";
/// Default file of the embedded history store.
pub const DEFAULT_HISTORY_PATH: &str = "quicksilver.redb";
/// Default JetStream stream of the `nats` transport.
pub const DEFAULT_NATS_STREAM: &str = "MERCURE";
/// Time a publication may wait for JetStream's acknowledgement (a stream leader election takes a
/// few seconds) before it is answered 503.
pub const DEFAULT_NATS_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Publish body limit: 1 MiB, as the reference hub's current version; larger bodies get 413.
pub const DEFAULT_MAX_REQUEST_BODY_SIZE: usize = 1024 * 1024;
/// Memory all history replays may hold at once: 64 pages of 1 MiB. Far more than a reconnect
/// storm of small updates needs (subscribers replaying from the same place share pages), and
/// little next to what the connections themselves take.
pub const DEFAULT_REPLAY_MEMORY: usize = 64 * 1024 * 1024;
/// Topics (canonical and alternate) of one update: 1,000, as the reference hub's current version,
/// so no client of it breaks. Each topic costs a match against every subscriber, and without a cap
/// one 1 MiB publish could carry 80,000 of them.
pub const DEFAULT_MAX_TOPICS_PER_UPDATE: usize = 1000;
/// `key=value` pairs in one publish body or query string. A publish needs at most
/// `max_topics_per_update` topics plus five other fields, and a subscription at most a few hundred
/// parameters; 4,096 leaves four times that room while a 1 MiB body of `a&a&…` would otherwise
/// decode into 500,000 pairs (about 40 MB more resident memory per such request, measured).
pub const DEFAULT_MAX_FORM_FIELDS: usize = 4096;
/// Fields of a publish form besides its topics (`data`, `id`, `type`, `retry`, `private`):
/// `max_form_fields` must leave room for them above `max_topics_per_update`.
const OTHER_PUBLISH_FIELDS: usize = 5;
/// Time allowed to receive a publish body once its headers are in. A publisher that trickles its
/// body (slowloris) would otherwise hold its connection and buffer forever. 30 s carries a full
/// 1 MiB body at 300 kbit/s; publishers are usually servers on fast links sending a few KB.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for a request's head (request line and headers), and for a TLS handshake, to
/// arrive. A client that trickles its headers (slowloris) would otherwise hold a connection for
/// ever. It never applies to an open event stream, whose request was read long ago.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of request headers: 64 KiB leaves room for large cookies (browsers cap one at 4 KiB,
/// and an origin rarely sends more than a few) while bounding what one request may hold.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;
/// Topic selectors one token may carry: in a draft-07 token's `mercure.publish` or
/// `mercure.subscribe` claim (each), or in the `publish` (or `subscribe`) details of a
/// Mercure 1.0 access token, which the protocol already bounds to 100 topics. Ten times the
/// selectors of a subscription, so that tokens listing a user's resources keep working, while a
/// token can no longer make the hub compile thousands of templates per request (a 64 KiB header
/// holds about 15,000 short selectors).
pub const DEFAULT_MAX_SELECTORS_PER_TOKEN: usize = 1000;
/// Files the process keeps for itself when `max_connections` is derived from the open-file
/// limit: the store, the listeners, NATS and JWK Set connections, logs, the runtime's own, and
/// the connections being refused (`REFUSALS`).
pub const RESERVED_FILES: u64 = 128;
/// Topic selectors in one subscription: 100, the limit of the reference hub's current version,
/// so that no client written for it is refused.
pub const DEFAULT_MAX_TOPICS_PER_SUBSCRIPTION: usize = 100;
/// Bytes in one topic selector: 4096, the limit of the reference hub's draft-08 topic matcher.
/// Real selectors are URLs of a few hundred bytes.
pub const DEFAULT_MAX_SELECTOR_LENGTH: usize = 4096;
/// Variables in one URI template, all its expressions together. Real templates use 1 to 5
/// (`https://example.com/books/{id}{?page,sort}` has 3); each variable costs about 600 bytes of
/// compiled regex, so 32 keeps a template's variables under about 20 KB.
pub const DEFAULT_MAX_TEMPLATE_VARIABLES: usize = 32;
/// Prefix of the environment variables read as configuration.
pub const ENV_PREFIX: &str = "MERCURE_";

/// Variables that Mercure *client* libraries read (Symfony's MercureBundle, for one, and this
/// repository's client examples: `MERCURE_HUB_URL`, `MERCURE_TOKEN`). They often share an
/// environment with the hub, so they are ignored instead of refused as unknown.
const CLIENT_ENV_VARS: &[&str] =
    &["url", "public_url", "jwt_secret", "jwt_token", "hub_url", "token"];

/// Every accepted key, with a one-line description used in error messages and `--help`.
pub const KEYS: &[(&str, &str)] = &[
    ("addr", "listen address, host:port (default 127.0.0.1:8080)"),
    ("jwt_key", "key for both publishers and subscribers"),
    ("jwt_alg", "algorithm of jwt_key (default HS256)"),
    ("publisher_jwt_key", "publisher key (overrides jwt_key)"),
    ("publisher_jwt_alg", "publisher key algorithm"),
    ("subscriber_jwt_key", "subscriber key (overrides jwt_key)"),
    ("subscriber_jwt_alg", "subscriber key algorithm"),
    ("cert_file", "HTTPS: PEM certificate chain, with key_file; reloaded when it changes"),
    ("key_file", "HTTPS: file of the PEM private key of cert_file"),
    (
        "acme_hosts",
        "HTTPS with automatic certificates (ACME) for these host names, comma-separated",
    ),
    ("acme_directory", "ACME server's directory URL (default Let's Encrypt production)"),
    ("acme_email", "contact address given to the ACME server (optional)"),
    ("acme_cert_dir", "where the ACME account and certificate are kept (default acme)"),
    ("acme_ca_root", "PEM CA to trust for the ACME server's own HTTPS (private ACME servers)"),
    ("http_redirect_addr", "with HTTPS: also listen here for plain HTTP, redirected to HTTPS"),
    (
        "use_forwarded_headers",
        "take the client, scheme and host from proxy headers (trusted_proxies)",
    ),
    ("trusted_proxies", "addresses or networks whose forwarded headers are believed (10.0.0.0/8)"),
    ("protocols", "Mercure protocols served: draft-07 and 1.0, comma-separated (default both)"),
    (
        "trusted_issuers",
        "Mercure 1.0: iss of the RFC 9068 tokens signed with the hub's keys (comma-separated)",
    ),
    (
        "resource_identifier",
        "Mercure 1.0: the hub's URL, expected in tokens' aud (default: from each request)",
    ),
    (
        "issuers",
        "Mercure 1.0: trusted issuers with their own keys or JWK Sets (TOML table, or JSON)",
    ),
    ("jwks_ca", "PEM CA to trust, besides the system's, for the issuers' https:// JWK Sets"),
    ("public_urls", "Mercure 1.0: scheme://host of the hub; other hosts get 421 (default: any)"),
    ("anonymous", "let subscribers without a token receive public updates"),
    ("subscriptions", "publish subscription events and serve the subscriptions API"),
    ("cors_origins", "origins allowed by CORS, space or comma separated, * allowed"),
    ("publish_origins", "origins allowed to publish with the cookie, * allowed"),
    ("cookie_name", "authorization cookie name (default mercureAuthorization)"),
    ("heartbeat", "comment sent after this much silence, 0s = off (default 40s)"),
    ("dispatch_timeout", "a connection accepting no data for this long is reset (default 5s)"),
    ("write_timeout", "maximum stream lifetime, 0s = off (default 600s)"),
    ("drain_timeout", "on SIGTERM, time within which open streams are ended (default 20s)"),
    ("transport", "embedded (durable history, default), memory, or nats (a cluster)"),
    ("nats_url", "NATS servers for transport nats, comma separated (nats://host:4222)"),
    ("nats_stream", "JetStream stream holding the updates (default MERCURE)"),
    ("nats_replicas", "copies of the stream on NATS servers, 1 to 5 (default 1)"),
    ("nats_publish_timeout", "wait for JetStream's acknowledgement, then 503 (default 5s)"),
    ("nats_user", "NATS user name, with nats_password"),
    ("nats_password", "NATS password, with nats_user (never logged)"),
    ("nats_token", "NATS authentication token (never logged)"),
    ("nats_creds", "NATS credentials file (.creds: user JWT and NKey seed)"),
    ("nats_max_age", "with nats: drop updates older than this from the stream (default 0s: none)"),
    ("nats_tls_ca", "PEM file of the CA that signed the NATS servers' certificates (TLS)"),
    ("nats_tls_cert", "PEM client certificate for NATS (TLS), with nats_tls_key"),
    ("nats_tls_key", "PEM private key of nats_tls_cert (never logged)"),
    ("history_path", "file of the embedded store (default quicksilver.redb)"),
    ("history_size", "number of updates kept in history, 0 = all (default 0)"),
    ("max_request_body_size", "publish body limit, e.g. 1MiB, 512KB (default 1MiB)"),
    ("replay_memory", "memory all history replays may hold at once (default 64MiB)"),
    ("max_topics_per_update", "topics of one update, canonical and alternate (default 1000)"),
    ("max_form_fields", "key=value pairs of a publish body or query string (default 4096)"),
    ("read_timeout", "time for a request's head and TLS handshake, 0s = off (default 10s)"),
    ("max_header_size", "most bytes of request headers, names and values (default 64KiB)"),
    ("max_connections", "open connections at once; more get 503 (default: open-file limit - 128)"),
    ("max_streams_per_client", "event streams of one client address at once, 0 = off (default 0)"),
    ("max_selectors_per_token", "topic selectors one token may carry (default 1000)"),
    ("body_read_timeout", "time allowed to receive a publish body, 0s = off (default 30s)"),
    ("max_topics_per_subscription", "most topic selectors in one subscription (default 100)"),
    ("max_selector_length", "most bytes in one subscriber topic selector (default 4096)"),
    ("max_template_variables", "most variables in one subscriber URI template (default 32)"),
    ("selector_cache_size", "memory for compiled URI templates, e.g. 16MiB (default 16MiB)"),
    ("compress", "gzip or brotli for the UI, the subscriptions API and / (default true)"),
    ("ui", "serve the debugging UI at /.well-known/mercure/ui/"),
    ("log_format", "text (default) or json: one JSON object per log line"),
    ("metrics_addr", "serve /metrics on this host:port instead of the hub's address"),
    ("workers", "HTTP worker threads (default: number of CPUs)"),
];

/// Why the configuration was refused. Each variant names the key to fix.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A key no version of Quicksilver knows.
    #[error("unknown setting `{key}`{origin}; valid settings are: {valid}")]
    UnknownKey {
        /// The key as read.
        key: String,
        /// Where it came from, e.g. " (environment variable MERCURE_FOO)".
        origin: String,
        /// The list of valid keys.
        valid: String,
    },
    /// A value that does not parse or is not allowed.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid {
        /// The key to fix.
        key: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {path}: {reason}")]
    Read {
        /// The file, as given.
        path: String,
        /// Why, from the operating system.
        reason: std::io::Error,
    },
    /// The configuration file is not valid TOML. The offending line is never shown: it may hold
    /// a key (`jwt_key = "s3cret` without its closing quote).
    #[error(
        "{path}: invalid TOML at line {line}, column {column}{setting}: {message} (the line is \
         not shown, as it may hold a secret)"
    )]
    Syntax {
        /// The file, as given.
        path: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// ` (setting `jwt_key`)` when the line assigns a known setting, else empty.
        setting: String,
        /// The parser's description of the problem, which names grammar, not input.
        message: String,
    },
    /// The layered sources could not be merged.
    #[error("cannot read the configuration: {0}")]
    Source(#[from] config::ConfigError),
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

/// Where subscriber history lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportKind {
    /// redb file at `history_path`: survives restarts.
    Embedded,
    /// Process memory: fast, lost at exit.
    Memory,
    /// A NATS JetStream stream shared by every node of a cluster.
    Nats(Box<NatsSettings>),
}

/// Where and how the `nats` transport keeps its stream.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// Server URLs; they may carry credentials (`nats://user:password@host`).
    pub servers: Vec<String>,
    /// Name of the JetStream stream; its subjects are `{stream}.>`.
    pub stream: String,
    /// Copies of the stream across servers.
    pub replicas: usize,
    /// How long a publication waits for its acknowledgement before it is answered 503.
    pub publish_timeout: Duration,
    /// How the hub authenticates to NATS, besides credentials in the URLs.
    pub auth: NatsAuth,
    /// Updates older than this leave the stream (`nats_max_age`); `None`: no age limit.
    pub max_age: Option<Duration>,
    /// TLS beyond what `tls://` URLs ask for.
    pub tls: NatsTls,
}

/// TLS to NATS: required as soon as anything here is set (or a URL is `tls://`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsTls {
    /// `nats_tls_ca`: a PEM file of the certificate authorities to trust, besides the system's.
    pub ca: Option<PathBuf>,
    /// `nats_tls_cert` and `nats_tls_key`: a client certificate and its key, both PEM.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl NatsTls {
    /// Whether any TLS setting is given.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }
}

/// How the hub authenticates to NATS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
    /// No credentials, or those in the server URLs.
    #[default]
    None,
    /// `nats_user` and `nats_password`.
    UserPassword(String, Secret),
    /// `nats_token`.
    Token(Secret),
    /// `nats_creds`: a credentials file (user JWT and NKey seed).
    CredentialsFile(PathBuf),
}

impl NatsSettings {
    /// The server URLs with any credentials replaced by `***`, for logs and errors.
    pub fn redacted_servers(&self) -> String {
        let redact = |url: &String| match url.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}"),
                None => url.clone(),
            },
            None => url.clone(),
        };
        self.servers.iter().map(redact).collect::<Vec<_>>().join(",")
    }
}

impl fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSettings")
            .field("servers", &self.redacted_servers())
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("publish_timeout", &self.publish_timeout)
            .field("auth", &self.auth)
            .field("max_age", &self.max_age)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A string that must never be printed (JWT secrets).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret value, for the few places that need it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The validated configuration of one hub process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub addr: SocketAddr,
    /// Verifies publisher tokens.
    pub(crate) publisher: JwtVerifier,
    /// Verifies subscriber tokens.
    pub(crate) subscriber: JwtVerifier,
    /// Set when no key was configured and a development key was generated for both roles.
    pub dev_key: Option<Secret>,
    /// Which protocol versions the hub answers.
    pub protocols: Protocols,
    /// Mercure 1.0: the issuers whose RFC 9068 access tokens are trusted, and how each one's
    /// signatures are verified (`trusted_issuers` use the hub's own keys, `issuers` their own).
    pub(crate) issuers: Vec<IssuerSpec>,
    /// Extra CA for the issuers' `https://` JWK Sets.
    pub jwks_ca: Option<PathBuf>,
    /// Mercure 1.0: the hub's URL (the `aud` tokens must carry, and the base of relative URL
    /// Patterns); `None` derives it from each request as `scheme://host/.well-known/mercure`.
    pub resource_identifier: Option<url::Url>,
    /// Mercure 1.0: the `scheme://host[:port]` the hub answers as; requests for another host
    /// get 421. Empty accepts any host.
    pub public_urls: Vec<String>,
    /// Subscribers without a token receive public updates.
    pub anonymous: bool,
    /// Subscription events and the subscriptions API.
    pub subscriptions: bool,
    /// CORS allow-list (lowercase); empty means no CORS headers.
    pub cors_origins: Vec<String>,
    /// Origins allowed to publish with the authorization cookie (lowercase).
    pub publish_origins: Vec<String>,
    /// Name of the authorization cookie.
    pub cookie_name: String,
    /// Silence after which a comment is sent; `None` = off.
    pub heartbeat: Option<Duration>,
    /// Time a connection may accept no data while the hub has some to send; `None` = off.
    pub dispatch_timeout: Option<Duration>,
    /// Maximum stream lifetime; `None` = off.
    pub write_timeout: Option<Duration>,
    /// After a shutdown signal, streams are ended within this time, then the process exits.
    pub drain_timeout: Duration,
    /// History store.
    pub transport: TransportKind,
    /// File of the embedded store.
    pub history_path: PathBuf,
    /// Updates kept in history; 0 keeps all.
    pub history_size: u64,
    /// Publish body limit in bytes.
    pub max_request_body_size: usize,
    /// Bytes of history pages all replays may hold at once; past it, replays wait.
    pub replay_memory: usize,
    /// Topics of one update; more get 413.
    pub max_topics_per_update: usize,
    /// `key=value` pairs of a publish body (more get 413) or a query string (400).
    pub max_form_fields: usize,
    /// Time allowed to receive a publish body (408 after it); `None` = off.
    pub body_read_timeout: Option<Duration>,
    /// Most `topic` parameters in one subscription.
    pub max_topics_per_subscription: usize,
    /// Most bytes in one topic selector of a subscription.
    pub max_selector_length: usize,
    /// Most variables in one URI template of a subscription, all expressions together.
    pub max_template_variables: usize,
    /// Bytes the process-wide cache of compiled URI templates may hold (an estimate).
    pub selector_cache_size: usize,
    /// Debugging UI.
    pub ui: bool,
    /// Log line format.
    pub log_format: LogFormat,
    /// Separate listener for `/metrics`; `None` serves them on `addr`.
    pub metrics_addr: Option<SocketAddr>,
    /// HTTP worker threads.
    pub workers: usize,
    /// HTTPS from certificate files (`cert_file` and `key_file`); `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// HTTPS with certificates obtained from an ACME server (`acme_hosts`); never set together
    /// with `tls`.
    pub acme: Option<AcmeSettings>,
    /// With HTTPS: a plain HTTP listener whose requests are redirected to HTTPS.
    pub http_redirect_addr: Option<SocketAddr>,
    /// Compress the responses that gain from it (never event streams).
    pub compress: bool,
    /// Time allowed to receive a request's head, and a TLS handshake; `None` waits for ever.
    pub read_timeout: Option<Duration>,
    /// Most bytes of request header names and values.
    pub max_header_size: usize,
    /// Most connections open at once (`max_connections`); `None`: the process's open-file limit
    /// less [`RESERVED_FILES`], read when the server starts. Connections over it are answered 503.
    pub max_connections: Option<usize>,
    /// Most event streams open at once from one client address (`max_streams_per_client`),
    /// behind `trusted_proxies` the forwarded one, IPv6 counted per /64; `None`: no limit.
    pub max_streams_per_client: Option<usize>,
    /// Most topic selectors one token may carry (`max_selectors_per_token`); a token with more
    /// is refused (401).
    pub max_selectors_per_token: usize,
    /// With `use_forwarded_headers`: the peers whose forwarded headers are believed
    /// (`trusted_proxies`); `None` ignores those headers.
    pub trusted_proxies: Option<TrustedProxies>,
}

/// Settings given by name, layered as the binary layers its sources: defaults < the optional
/// TOML file < the `MERCURE_*` variables (only with [`ConfigBuilder::env`]) < the values set
/// here. Made by [`Config::builder`].
#[derive(Debug, Clone, Default)]
#[must_use = "a configuration builder does nothing until `build` is called"]
pub struct ConfigBuilder {
    file: Option<PathBuf>,
    env: bool,
    values: Vec<(String, String)>,
}

impl ConfigBuilder {
    /// Sets `key` (a setting's name, as in the TOML file: `jwt_key`, `transport`,
    /// `cors_origins`...) to `value`, written as in a `MERCURE_*` variable: `30s`, `1MiB`,
    /// `true`, a space- or comma-separated list, JSON for `issuers`.
    pub fn set(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.values.push((key.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Reads this TOML file under the values set here.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Reads the process's `MERCURE_*` variables too, under the values set here.
    pub fn env(mut self) -> Self {
        self.env = true;
        self
    }

    /// Checks the settings as the binary does at start.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut env: Vec<(String, String)> =
            if self.env { std::env::vars().collect() } else { Vec::new() };
        for (key, value) in self.values {
            check_known(&key, " (ConfigBuilder::set)")?;
            env.push((format!("{ENV_PREFIX}{}", key.to_ascii_uppercase()), value));
        }
        Config::from_sources(self.file.as_deref(), env)
    }
}

/// The protocol versions a hub answers (`protocols`): Mercure draft-07 (`topic` parameters,
/// `mercure` claims) and Mercure 1.0 (`match` parameters, RFC 9068 tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    /// Draft-07 requests are served.
    pub draft_07: bool,
    /// Mercure 1.0 requests are served.
    pub v1: bool,
}

impl Protocols {
    /// Both versions: the default, so that clients migrate one by one.
    pub const ALL: Protocols = Protocols { draft_07: true, v1: true };
    const NONE: Protocols = Protocols { draft_07: false, v1: false };
}

/// Addresses and networks (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`) whose forwarded headers are
/// believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses a comma- or space-separated list; an error quotes the entry that is not an address
    /// or network.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for entry in text.split([',', ' ']).map(str::trim).filter(|e| !e.is_empty()) {
            let (address, prefix) = match entry.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (entry, None),
            };
            let address: IpAddr = address
                .parse()
                .map_err(|_| format!("`{entry}` is not an IP address or network (a.b.c.d/n)"))?;
            let bits = if address.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => bits,
                Some(prefix) => {
                    prefix.parse::<u8>().ok().filter(|prefix| *prefix <= bits).ok_or_else(|| {
                        format!("`{entry}`: the prefix length must be 0 to {bits}")
                    })?
                }
            };
            // An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is kept as the IPv4 it is,
            // as `contains` sees such peers: otherwise it could never match.
            let network = match address {
                IpAddr::V6(v6) if prefix >= 96 => v6
                    .to_ipv4_mapped()
                    .map_or((address, prefix), |v4| (IpAddr::V4(v4), prefix - 96)),
                _ => (address, prefix),
            };
            networks.push(network);
        }
        Ok(Self(networks))
    }

    /// Whether no address is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `address` is in one of the networks. An IPv4 address seen as IPv6
    /// (`::ffff:a.b.c.d`, from a dual-stack socket) matches the IPv4 networks.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|(network, prefix)| match (network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                same_prefix(&network.octets(), &address.octets(), *prefix)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                same_prefix(&network.octets(), &address.octets(), *prefix)
            }
            _ => false,
        })
    }
}

/// Whether the first `prefix` bits of `a` and `b` are equal.
fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (bytes, bits) = (usize::from(prefix / 8), prefix % 8);
    if a[..bytes] != b[..bytes] {
        return false;
    }
    bits == 0 || (a[bytes] ^ b[bytes]) >> (8 - bits) == 0
}

/// The certificate files of an HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `cert_file`: the PEM certificate, followed by its chain.
    pub cert_file: PathBuf,
    /// `key_file`: the certificate's PEM private key.
    pub key_file: PathBuf,
}

/// Automatic certificates from an ACME server (`acme_*` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// `acme_hosts`: the host names of the certificate, in the order given.
    pub hosts: Vec<String>,
    /// `acme_directory`: the ACME server's directory URL.
    pub directory: String,
    /// `acme_email`: the account's contact address, if any.
    pub email: Option<String>,
    /// `acme_cert_dir`: where the account credentials and the certificate are kept.
    pub cert_dir: PathBuf,
    /// `acme_ca_root`: a PEM certificate to trust for the ACME server's HTTPS instead of the
    /// system's roots.
    pub ca_root: Option<PathBuf>,
}

impl Config {
    /// Whether the hub serves HTTPS: from certificate files or from an ACME server.
    pub fn https(&self) -> bool {
        self.tls.is_some() || self.acme.is_some()
    }

    /// A builder for a configuration set from code, with the names and the checks of the TOML
    /// file and the `MERCURE_*` variables: what an application embedding the hub starts from.
    ///
    /// ```
    /// use quicksilver::config::Config;
    ///
    /// let config = Config::builder()
    ///     .set("jwt_key", "!ChangeThisMercureHubJWTSecretKey!")
    ///     .set("transport", "memory")
    ///     .set("history_size", 1000)
    ///     .build()?;
    /// assert_eq!(config.history_size, 1000);
    ///
    /// let typo = Config::builder().set("histroy_size", 10).build();
    /// assert!(typo.unwrap_err().to_string().contains("histroy_size"));
    /// # Ok::<(), quicksilver::config::ConfigError>(())
    /// ```
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Loads the configuration from the optional TOML file and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_sources(file, std::env::vars())
    }

    /// Loads the configuration from the optional TOML file and the given environment (tests pass
    /// their own instead of mutating the process environment).
    pub fn from_sources(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut env_values = HashMap::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if CLIENT_ENV_VARS.contains(&key.as_str()) {
                continue;
            }
            check_known(&key, &format!(" (environment variable {name})"))?;
            env_values.insert(format!("MERCURE_{}", key.to_ascii_uppercase()), value);
        }
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            // Read and checked here rather than by the `config` crate, whose TOML errors quote
            // the offending line, secret included.
            let text = read_toml(path)?;
            builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
        }
        let raw: HashMap<String, Value> = builder
            .add_source(Environment::with_prefix("MERCURE").source(Some(env_values)))
            .build()?
            .try_deserialize()?;
        for key in raw.keys() {
            let origin = file.map(|p| format!(" (in {})", p.display())).unwrap_or_default();
            check_known(key, &origin)?;
        }
        Self::from_values(Values(raw))
    }

    fn from_values(values: Values) -> Result<Self, ConfigError> {
        let addr = values.string("addr")?.unwrap_or_else(|| DEFAULT_ADDR.into());
        let jwt_key = values.secret("jwt_key")?;
        let jwt_alg = values.string("jwt_alg")?.unwrap_or_else(|| DEFAULT_JWT_ALG.into());
        let publisher_key = values.secret("publisher_jwt_key")?.or_else(|| jwt_key.clone());
        let subscriber_key = values.secret("subscriber_jwt_key")?.or_else(|| jwt_key.clone());
        let publisher_alg = values.string("publisher_jwt_alg")?.unwrap_or_else(|| jwt_alg.clone());
        let subscriber_alg = values.string("subscriber_jwt_alg")?.unwrap_or(jwt_alg);
        let anonymous = values.bool("anonymous")?.unwrap_or(false);

        // The keys `trusted_issuers` verify access tokens with, as the roles of the hub's own
        // legacy tokens do (the generated development key for both when none is set).
        let mut hub_keys = HubKeys {
            publisher: publisher_key
                .as_ref()
                .map(|key| (key.expose().to_owned(), publisher_alg.clone())),
            subscriber: subscriber_key
                .as_ref()
                .map(|key| (key.expose().to_owned(), subscriber_alg.clone())),
        };
        let (publisher, subscriber, dev_key) = match (publisher_key, subscriber_key) {
            (None, None) => {
                let secret = Secret(random_secret());
                let generated = Some((secret.expose().to_owned(), "HS256".to_owned()));
                hub_keys = HubKeys { publisher: generated.clone(), subscriber: generated };
                let verifier = JwtVerifier::new(secret.expose(), "HS256")
                    .map_err(|e| invalid("jwt_key", e.to_string()))?;
                (verifier.clone(), verifier, Some(secret))
            }
            (Some(publisher), Some(subscriber)) => (
                verifier("publisher_jwt_key", &publisher, &publisher_alg)?,
                verifier("subscriber_jwt_key", &subscriber, &subscriber_alg)?,
                None,
            ),
            (None, Some(_)) => return Err(invalid(
                "publisher_jwt_key",
                "a subscriber key is set but no publisher key: set publisher_jwt_key or jwt_key",
            )),
            (Some(publisher), None) => {
                let publisher = verifier("publisher_jwt_key", &publisher, &publisher_alg)?;
                // Without a subscriber key, only anonymous subscribers could ever connect. The
                // publisher key stands in so that `anonymous` hubs need only one key, but a
                // non-anonymous hub must say which key its subscribers use.
                if !anonymous {
                    return Err(invalid(
                        "subscriber_jwt_key",
                        "no subscriber key: set subscriber_jwt_key or jwt_key, or anonymous = true",
                    ));
                }
                hub_keys.subscriber = hub_keys.publisher.clone();
                (publisher.clone(), publisher, None)
            }
        };

        let max_topics_per_update =
            values.count("max_topics_per_update", DEFAULT_MAX_TOPICS_PER_UPDATE)?;
        let max_form_fields = values.count("max_form_fields", DEFAULT_MAX_FORM_FIELDS)?;
        if max_form_fields < max_topics_per_update.saturating_add(OTHER_PUBLISH_FIELDS) {
            return Err(invalid(
                "max_form_fields",
                format!(
                    "{max_form_fields} leaves no room for the {max_topics_per_update} topics of \
                     max_topics_per_update and the other publish fields: set it to at least {}",
                    max_topics_per_update.saturating_add(OTHER_PUBLISH_FIELDS)
                ),
            ));
        }

        let config = Self {
            addr: parse_addr("addr", &addr)?,
            publisher,
            subscriber,
            dev_key,
            anonymous,
            protocols: values.protocols()?,
            issuers: values.issuers(&hub_keys)?,
            jwks_ca: values.string("jwks_ca")?.filter(|path| !path.is_empty()).map(PathBuf::from),
            resource_identifier: values.resource_identifier()?,
            public_urls: values.public_urls()?,
            subscriptions: values.bool("subscriptions")?.unwrap_or(false),
            cors_origins: values.origins("cors_origins")?,
            publish_origins: values.origins("publish_origins")?,
            cookie_name: values.cookie_name()?,
            heartbeat: values.duration("heartbeat", DEFAULT_HEARTBEAT)?,
            dispatch_timeout: values.duration("dispatch_timeout", DEFAULT_DISPATCH_TIMEOUT)?,
            write_timeout: values.duration("write_timeout", DEFAULT_WRITE_TIMEOUT)?,
            drain_timeout: values
                .duration("drain_timeout", DEFAULT_DRAIN_TIMEOUT)?
                .unwrap_or(Duration::ZERO),
            transport: values.transport()?,
            history_path: values
                .string("history_path")?
                .unwrap_or_else(|| DEFAULT_HISTORY_PATH.into())
                .into(),
            history_size: values.unsigned("history_size")?.unwrap_or(0),
            max_request_body_size: values
                .size("max_request_body_size", DEFAULT_MAX_REQUEST_BODY_SIZE)?,
            replay_memory: values.size("replay_memory", DEFAULT_REPLAY_MEMORY)?,
            max_topics_per_update,
            max_form_fields,
            body_read_timeout: values.duration("body_read_timeout", DEFAULT_BODY_READ_TIMEOUT)?,
            max_topics_per_subscription: values
                .limit("max_topics_per_subscription", DEFAULT_MAX_TOPICS_PER_SUBSCRIPTION)?,
            max_selector_length: values
                .limit("max_selector_length", DEFAULT_MAX_SELECTOR_LENGTH)?,
            max_template_variables: values
                .limit("max_template_variables", DEFAULT_MAX_TEMPLATE_VARIABLES)?,
            selector_cache_size: values.size("selector_cache_size", DEFAULT_SELECTOR_CACHE_SIZE)?,
            ui: values.bool("ui")?.unwrap_or(false),
            log_format: match values.string("log_format")? {
                None => LogFormat::default(),
                Some(text) => text.parse().map_err(|e| invalid("log_format", format!("{e}")))?,
            },
            metrics_addr: values
                .string("metrics_addr")?
                .map(|addr| parse_addr("metrics_addr", &addr))
                .transpose()?,
            workers: match values.unsigned("workers")? {
                Some(0) => return Err(invalid("workers", "must be at least 1")),
                Some(n) => usize::try_from(n).map_err(|_| invalid("workers", "too large"))?,
                None => std::thread::available_parallelism().map_or(1, usize::from),
            },
            trusted_proxies: values.trusted_proxies()?,
            http_redirect_addr: values
                .string("http_redirect_addr")?
                .filter(|addr| !addr.is_empty())
                .map(|addr| parse_addr("http_redirect_addr", &addr))
                .transpose()?,
            compress: values.bool("compress")?.unwrap_or(true),
            read_timeout: values.duration("read_timeout", DEFAULT_READ_TIMEOUT)?,
            max_header_size: values.size("max_header_size", DEFAULT_MAX_HEADER_SIZE)?,
            max_connections: match values.unsigned("max_connections")? {
                None => None,
                Some(0) => return Err(invalid("max_connections", "must be at least 1")),
                Some(n) => {
                    Some(usize::try_from(n).map_err(|_| invalid("max_connections", "too large"))?)
                }
            },
            max_streams_per_client: match values.unsigned("max_streams_per_client")? {
                None | Some(0) => None,
                Some(n) => Some(
                    usize::try_from(n)
                        .map_err(|_| invalid("max_streams_per_client", "too large"))?,
                ),
            },
            max_selectors_per_token: values
                .limit("max_selectors_per_token", DEFAULT_MAX_SELECTORS_PER_TOKEN)?,
            tls: match (
                values.string("cert_file")?.filter(|path| !path.is_empty()),
                values.string("key_file")?.filter(|path| !path.is_empty()),
            ) {
                (None, None) => None,
                (Some(cert), Some(key)) => {
                    Some(TlsFiles { cert_file: cert.into(), key_file: key.into() })
                }
                (Some(_), None) => {
                    return Err(invalid("key_file", "cert_file is set: set key_file too"));
                }
                (None, Some(_)) => {
                    return Err(invalid("cert_file", "key_file is set: set cert_file too"));
                }
            },
            acme: values.acme()?,
        };
        if config.http_redirect_addr.is_some() && !config.https() {
            return Err(invalid(
                "http_redirect_addr",
                "redirects to HTTPS, which needs cert_file and key_file, or acme_hosts",
            ));
        }
        Ok(config)
    }
}

/// Reads the configuration file and checks its TOML syntax, reporting an error by position and
/// setting name only.
fn read_toml(path: &Path) -> Result<String, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|reason| ConfigError::Read { path: shown.clone(), reason })?;
    let Err(error) = toml::de::DeTable::parse(&text) else {
        return Ok(text);
    };
    let start = error.span().map_or(0, |span| span.start);
    let before = text.get(..start).unwrap_or(&text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or_default();
    // The setting assigned on the error line or, for an unterminated multi-line string whose
    // error is reported where the file ends, the last one assigned above it.
    let setting = match assigned_setting(line) {
        Some(key) => format!(" (setting `{key}`)"),
        None => before[..line_start]
            .lines()
            .rev()
            .find_map(assigned_setting)
            .map(|key| format!(" (after setting `{key}`)"))
            .unwrap_or_default(),
    };
    // toml's messages describe the grammar ("string values must be quoted"); should one ever
    // quote the input, it is dropped rather than risk printing a secret.
    let value = line.split_once('=').map_or(line, |(_, value)| value);
    let value = value.trim().trim_matches(['"', '\'']);
    let message = error.message().trim();
    let message = if value.len() >= 3 && message.contains(value) {
        "syntax error".to_owned()
    } else {
        message.to_owned()
    };
    Err(ConfigError::Syntax {
        path: shown,
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        setting,
        message,
    })
}

/// The known setting that `line` assigns (`key = …`), if any: only names from [`KEYS`] are ever
/// returned, so nothing else of the line can be printed through it.
fn assigned_setting(line: &str) -> Option<&'static str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches(['"', '\'']);
    KEYS.iter().map(|(known, _)| *known).find(|known| *known == key)
}

fn check_known(key: &str, origin: &str) -> Result<(), ConfigError> {
    if KEYS.iter().any(|(k, _)| *k == key) {
        return Ok(());
    }
    Err(ConfigError::UnknownKey {
        key: key.to_owned(),
        origin: origin.to_owned(),
        valid: KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "),
    })
}

fn verifier(key: &'static str, secret: &Secret, alg: &str) -> Result<JwtVerifier, ConfigError> {
    JwtVerifier::new(secret.expose(), alg).map_err(|e| invalid(key, e.to_string()))
}

/// 32 random bytes, hex-encoded: a development HMAC key.
fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_addr(key: &'static str, addr: &str) -> Result<SocketAddr, ConfigError> {
    // `:8080` is how the reference hub spells "every interface".
    let full = if addr.starts_with(':') { format!("0.0.0.0{addr}") } else { addr.to_owned() };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| invalid(key, format!("`{addr}` is not a host:port address")))
}

/// The hub's own keys and algorithms by role, which `trusted_issuers` use.
struct HubKeys {
    publisher: Option<(String, String)>,
    subscriber: Option<(String, String)>,
}

/// Keys of one entry of `issuers`.
const ISSUER_KEYS: &[&str] = &[
    "authorization_server",
    "publisher_jwt_key",
    "publisher_jwt_alg",
    "publisher_jwks_uri",
    "subscriber_jwt_key",
    "subscriber_jwt_alg",
    "subscriber_jwks_uri",
    "jwks_algorithms",
];

/// One entry of `issuers`: `{ publisher_jwt_key, publisher_jwt_alg | publisher_jwks_uri,
/// subscriber_…, jwks_algorithms, authorization_server }`.
fn issuer_spec(issuer: String, settings: &serde_json::Value) -> Result<IssuerSpec, ConfigError> {
    let fail = |reason: String| invalid("issuers", format!("issuer {issuer}: {reason}"));
    let serde_json::Value::Object(settings) = settings else {
        return Err(fail("expected a table of settings".into()));
    };
    if let Some(unknown) = settings.keys().find(|key| !ISSUER_KEYS.contains(&key.as_str())) {
        return Err(fail(format!(
            "unknown setting `{unknown}`; valid: {}",
            ISSUER_KEYS.join(", ")
        )));
    }
    let text = |key: &str| -> Result<Option<String>, ConfigError> {
        match settings.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(text)) if text.is_empty() => Ok(None),
            Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(fail(format!("`{key}` must be a string"))),
        }
    };
    let algorithms = match settings.get("jwks_algorithms") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| fail("`jwks_algorithms` must list algorithm names".into()))?,
        ),
        Some(serde_json::Value::String(list)) => {
            Some(list.split([',', ' ']).filter(|a| !a.is_empty()).map(str::to_owned).collect())
        }
        Some(_) => return Err(fail("`jwks_algorithms` must list algorithm names".into())),
    };
    let role = |role: &str| -> Result<Option<KeySpec>, ConfigError> {
        let key = text(&format!("{role}_jwt_key"))?;
        let uri = text(&format!("{role}_jwks_uri"))?;
        match (key, uri) {
            (Some(_), Some(_)) => {
                Err(fail(format!("set {role}_jwt_key or {role}_jwks_uri, not both")))
            }
            (Some(key), None) => Ok(Some(KeySpec::Key {
                key,
                alg: text(&format!("{role}_jwt_alg"))?.unwrap_or_else(|| DEFAULT_JWT_ALG.into()),
            })),
            (None, Some(uri)) => {
                // Checked here too, so that --check-config catches it (fetching starts with the
                // hub).
                let scheme = url::Url::parse(&uri).map(|url| url.scheme().to_owned());
                if !matches!(scheme.as_deref(), Ok("https" | "file")) {
                    return Err(fail(format!(
                        "{role}_jwks_uri `{uri}` must be an https:// or file:// URL"
                    )));
                }
                if let Some(unknown) =
                    algorithms.iter().flatten().find(|alg| !JWKS_ALGORITHMS.contains(&alg.as_str()))
                {
                    return Err(fail(format!(
                        "jwks_algorithms: `{unknown}` is not one of {}",
                        JWKS_ALGORITHMS.join(", ")
                    )));
                }
                Ok(Some(KeySpec::Jwks { uri, algorithms: algorithms.clone() }))
            }
            (None, None) => Ok(None),
        }
    };
    let authorization_server = match settings.get("authorization_server") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(flag)) => *flag,
        Some(_) => return Err(fail("`authorization_server` must be true or false".into())),
    };
    let spec = IssuerSpec {
        publisher: role("publisher")?,
        subscriber: role("subscriber")?,
        issuer: issuer.clone(),
        authorization_server,
    };
    if spec.publisher.is_none() && spec.subscriber.is_none() {
        return Err(fail(
            "set a key (publisher_jwt_key, subscriber_jwt_key) or a JWK Set \
             (publisher_jwks_uri, subscriber_jwks_uri)"
                .into(),
        ));
    }
    Ok(spec)
}

/// Raw values by key, with typed accessors that name the key in their errors.
struct Values(HashMap<String, Value>);

impl Values {
    fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        self.0
            .get(key)
            .map(|v| v.clone().into_string().map_err(|_| invalid(key, "expected a string")))
            .transpose()
    }

    /// The `acme_*` settings; `None` without `acme_hosts`. Refused beside `cert_file` or
    /// `key_file`: the hub would not know which certificate to serve.
    fn acme(&self) -> Result<Option<AcmeSettings>, ConfigError> {
        let text = |key| Ok::<_, ConfigError>(self.string(key)?.filter(|s| !s.trim().is_empty()));
        let Some(hosts) = text("acme_hosts")? else {
            return Ok(None);
        };
        for file in ["cert_file", "key_file"] {
            if text(file)?.is_some() {
                return Err(invalid(
                    "acme_hosts",
                    format!("{file} is set too: use either cert_file and key_file, or acme_hosts"),
                ));
            }
        }
        let hosts: Vec<String> = hosts
            .split(',')
            .map(|host| host.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|host| !host.is_empty())
            .collect();
        for host in &hosts {
            let valid_label = |label: &str| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            if host.len() > 253
                || !host.split('.').all(valid_label)
                || host.parse::<IpAddr>().is_ok()
            {
                return Err(invalid(
                    "acme_hosts",
                    format!("`{host}` is not a DNS host name (no wildcards, no IP addresses)"),
                ));
            }
        }
        let directory = text("acme_directory")?.unwrap_or_else(|| DEFAULT_ACME_DIRECTORY.into());
        if !directory.starts_with("https://") {
            return Err(invalid("acme_directory", "must be an https:// URL"));
        }
        let email = text("acme_email")?;
        if let Some(email) = &email {
            if !email.contains('@') || email.contains(char::is_whitespace) {
                return Err(invalid("acme_email", format!("`{email}` is not an e-mail address")));
            }
        }
        Ok(Some(AcmeSettings {
            hosts,
            directory,
            email,
            cert_dir: text("acme_cert_dir")?.unwrap_or_else(|| DEFAULT_ACME_CERT_DIR.into()).into(),
            ca_root: text("acme_ca_root")?.map(PathBuf::from),
        }))
    }

    fn secret(&self, key: &'static str) -> Result<Option<Secret>, ConfigError> {
        // An empty variable (`MERCURE_JWT_KEY=`) is treated as unset, as shells make them easily.
        Ok(self.string(key)?.filter(|s| !s.is_empty()).map(Secret))
    }

    fn bool(&self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        let Some(value) = self.string(key)? else {
            return Ok(None);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" | "" => Ok(Some(false)),
            _ => Err(invalid(key, format!("`{value}` is not a boolean (use true or false)"))),
        }
    }

    fn unsigned(&self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        let Some(value) = self.string(key)? else {
            return Ok(None);
        };
        value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| invalid(key, format!("`{value}` is not a non-negative integer")))
    }

    /// A count that must be at least 1, with its default.
    fn count(&self, key: &'static str, default: usize) -> Result<usize, ConfigError> {
        match self.unsigned(key)? {
            None => Ok(default),
            Some(0) => Err(invalid(key, "must be at least 1")),
            Some(n) => usize::try_from(n).map_err(|_| invalid(key, "too large")),
        }
    }

    fn duration(
        &self,
        key: &'static str,
        default: Duration,
    ) -> Result<Option<Duration>, ConfigError> {
        let duration = match self.string(key)? {
            None => default,
            Some(value) => parse_duration(&value).ok_or_else(|| {
                invalid(
                    key,
                    format!("`{value}` is not a duration (examples: 500ms, 40s, 1m30s, 0s)"),
                )
            })?,
        };
        Ok(Some(duration).filter(|d| !d.is_zero()))
    }

    /// A count of at least 1, or `default` when unset.
    fn limit(&self, key: &'static str, default: usize) -> Result<usize, ConfigError> {
        match self.unsigned(key)? {
            None => Ok(default),
            Some(0) => Err(invalid(key, "must be at least 1")),
            Some(n) => usize::try_from(n).map_err(|_| invalid(key, "too large")),
        }
    }

    /// A size above 0 (see [`parse_size`]), or `default` when unset.
    fn size(&self, key: &'static str, default: usize) -> Result<usize, ConfigError> {
        match self.string(key)? {
            None => Ok(default),
            Some(value) => parse_size(&value).filter(|&n| n > 0).ok_or_else(|| {
                invalid(
                    key,
                    format!("`{value}` is not a size above 0 (examples: 1MiB, 512KB, 65536)"),
                )
            }),
        }
    }

    /// A list: a TOML array of strings, or one string of items separated by spaces or commas.
    fn list(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        let items: Vec<String> = match self.0.get(key) {
            None => return Ok(Vec::new()),
            Some(value) => match value.clone().into_array() {
                Ok(array) => array
                    .into_iter()
                    .map(|v| v.into_string().map_err(|_| invalid(key, "expected strings")))
                    .collect::<Result<_, _>>()?,
                Err(_) => self.string(key)?.into_iter().collect(),
            },
        };
        Ok(items
            .iter()
            .flat_map(|item| item.split([' ', ',', '\t', '\n']))
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn origins(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        self.list(key)?.iter().map(|origin| validate_origin(key, origin)).collect()
    }

    /// `trusted_proxies`, read only with `use_forwarded_headers`: each needs the other.
    fn trusted_proxies(&self) -> Result<Option<TrustedProxies>, ConfigError> {
        let proxies = TrustedProxies::parse(&self.list("trusted_proxies")?.join(","))
            .map_err(|reason| invalid("trusted_proxies", reason))?;
        match (self.bool("use_forwarded_headers")?.unwrap_or(false), proxies.is_empty()) {
            (true, false) => Ok(Some(proxies)),
            (false, true) => Ok(None),
            (true, true) => Err(invalid(
                "trusted_proxies",
                "use_forwarded_headers is on: list the addresses or networks of your proxies \
                 (for example 10.0.0.0/8); headers from any other peer are ignored",
            )),
            (false, false) => Err(invalid(
                "use_forwarded_headers",
                "trusted_proxies is set: set use_forwarded_headers = true to use it",
            )),
        }
    }

    /// `protocols`: `draft-07` and/or `1.0` (aliases `7`, `legacy`, `8`, `draft-08`).
    fn protocols(&self) -> Result<Protocols, ConfigError> {
        if !self.0.contains_key("protocols") {
            return Ok(Protocols::ALL);
        }
        let names = self.list("protocols")?;
        if names.is_empty() {
            return Err(invalid("protocols", "list draft-07, 1.0 or both"));
        }
        let mut protocols = Protocols::NONE;
        for name in &names {
            match name.to_ascii_lowercase().as_str() {
                "draft-07" | "7" | "legacy" => protocols.draft_07 = true,
                "1.0" | "8" | "draft-08" => protocols.v1 = true,
                _ => {
                    return Err(invalid(
                        "protocols",
                        format!("`{name}` is not a protocol: use draft-07, 1.0 or both"),
                    ))
                }
            }
        }
        Ok(protocols)
    }

    /// `trusted_issuers` (verified with the hub's keys) and `issuers` (their own keys or JWK
    /// Sets): every key is checked here, so that a bad one stops start-up.
    fn issuers(&self, hub_keys: &HubKeys) -> Result<Vec<IssuerSpec>, ConfigError> {
        let key_spec =
            |(key, alg): &(String, String)| KeySpec::Key { key: key.clone(), alg: alg.clone() };
        let mut specs = Vec::new();
        for issuer in self.list("trusted_issuers")? {
            specs.push(IssuerSpec {
                issuer,
                authorization_server: false,
                publisher: hub_keys.publisher.as_ref().map(key_spec),
                subscriber: hub_keys.subscriber.as_ref().map(key_spec),
            });
        }
        let table = match self.0.get("issuers") {
            None => serde_json::Map::new(),
            Some(value) => {
                let json = match value.clone().into_string() {
                    // From the environment: a JSON object.
                    Ok(text) if text.trim().is_empty() => {
                        serde_json::Value::Object(Default::default())
                    }
                    Ok(text) => serde_json::from_str(&text).map_err(|e| {
                        invalid(
                            "issuers",
                            format!("not a JSON object ({e}); see README, Mercure 1.0"),
                        )
                    })?,
                    Err(_) => value
                        .clone()
                        .try_deserialize::<serde_json::Value>()
                        .map_err(|e| invalid("issuers", format!("not a table of issuers: {e}")))?,
                };
                match json {
                    serde_json::Value::Object(table) => table,
                    _ => return Err(invalid("issuers", "expected a table of issuers, by iss")),
                }
            }
        };
        for (issuer, settings) in table {
            specs.push(issuer_spec(issuer, &settings)?);
        }
        for spec in &specs {
            for (role, key) in [("publisher", &spec.publisher), ("subscriber", &spec.subscriber)] {
                if let Some(KeySpec::Key { key, alg }) = key {
                    JwtVerifier::new(key, alg).map_err(|e| {
                        invalid("issuers", format!("issuer {}: {role} key: {e}", spec.issuer))
                    })?;
                }
            }
        }
        Ok(specs)
    }

    fn resource_identifier(&self) -> Result<Option<url::Url>, ConfigError> {
        let Some(text) = self.string("resource_identifier")?.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let url = url::Url::parse(&text).map_err(|e| {
            invalid("resource_identifier", format!("`{text}` is not an absolute URL: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.fragment().is_some() {
            return Err(invalid(
                "resource_identifier",
                format!("`{text}` must be an http or https URL without a fragment"),
            ));
        }
        Ok(Some(url))
    }

    /// `public_urls`: origins (`scheme://host[:port]`), kept as the hub compares them.
    fn public_urls(&self) -> Result<Vec<String>, ConfigError> {
        self.list("public_urls")?
            .iter()
            .map(|text| {
                let url = url::Url::parse(text).ok().filter(|url| {
                    matches!(url.scheme(), "http" | "https") && url.host_str().is_some()
                });
                match url {
                    Some(url) => Ok(url.origin().ascii_serialization()),
                    None => Err(invalid(
                        "public_urls",
                        format!("`{text}` is not an http or https URL such as https://example.com"),
                    )),
                }
            })
            .collect()
    }

    fn cookie_name(&self) -> Result<String, ConfigError> {
        let name = self.string("cookie_name")?.unwrap_or_else(|| DEFAULT_COOKIE_NAME.into());
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if valid {
            Ok(name)
        } else {
            Err(invalid("cookie_name", format!("`{name}` is not a valid cookie name")))
        }
    }

    fn transport(&self) -> Result<TransportKind, ConfigError> {
        match self.string("transport")?.as_deref() {
            None | Some("embedded") => Ok(TransportKind::Embedded),
            Some("memory") => Ok(TransportKind::Memory),
            Some("nats") => Ok(TransportKind::Nats(Box::new(self.nats()?))),
            Some(other) => Err(invalid(
                "transport",
                format!("`{other}` is not a transport (use embedded, memory or nats)"),
            )),
        }
    }

    fn nats(&self) -> Result<NatsSettings, ConfigError> {
        let servers: Vec<String> = self
            .string("nats_url")?
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if servers.is_empty() {
            return Err(invalid("nats_url", "transport nats needs the NATS servers' URLs"));
        }
        let stream = self.string("nats_stream")?.unwrap_or_else(|| DEFAULT_NATS_STREAM.into());
        let valid_name = !stream.is_empty()
            && stream.len() <= 64
            && stream.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(invalid(
                "nats_stream",
                format!("`{stream}` is not a stream name (letters, digits, _ and -, at most 64)"),
            ));
        }
        let replicas = match self.unsigned("nats_replicas")? {
            None => 1,
            Some(n @ 1..=5) => n as usize,
            Some(n) => return Err(invalid("nats_replicas", format!("{n} is not between 1 and 5"))),
        };
        let publish_timeout = self
            .duration("nats_publish_timeout", DEFAULT_NATS_PUBLISH_TIMEOUT)?
            .ok_or_else(|| invalid("nats_publish_timeout", "must be above 0s"))?;
        let auth = match (
            self.string("nats_user")?.filter(|u| !u.is_empty()),
            self.secret("nats_password")?,
            self.secret("nats_token")?,
            self.string("nats_creds")?.filter(|c| !c.is_empty()),
        ) {
            (None, None, None, None) => NatsAuth::None,
            (Some(user), Some(password), None, None) => NatsAuth::UserPassword(user, password),
            (None, None, Some(token), None) => NatsAuth::Token(token),
            (None, None, None, Some(file)) => NatsAuth::CredentialsFile(file.into()),
            (Some(_), None, None, None) => {
                return Err(invalid("nats_password", "nats_user needs nats_password"))
            }
            (None, Some(_), None, None) => {
                return Err(invalid("nats_user", "nats_password needs nats_user"))
            }
            _ => {
                return Err(invalid(
                    "nats_user",
                    "set one way to authenticate to NATS: nats_user with nats_password, \
                     nats_token, or nats_creds",
                ))
            }
        };
        let max_age = self.duration("nats_max_age", Duration::ZERO)?;
        let path = |key| Ok::<_, ConfigError>(self.string(key)?.filter(|p| !p.is_empty()));
        let client = match (path("nats_tls_cert")?, path("nats_tls_key")?) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert.into(), key.into())),
            (Some(_), None) => return Err(invalid("nats_tls_key", "nats_tls_cert needs its key")),
            (None, Some(_)) => {
                return Err(invalid("nats_tls_cert", "nats_tls_key needs its certificate"))
            }
        };
        let tls = NatsTls { ca: path("nats_tls_ca")?.map(PathBuf::from), client };
        Ok(NatsSettings { servers, stream, replicas, publish_timeout, auth, max_age, tls })
    }
}

/// Accepts `*`, `null` or `scheme://host[:port]`, where the host may hold one `*` wildcard
/// (`https://*.example.com`). Lowercased, since origins compare case-insensitively.
fn validate_origin(key: &'static str, origin: &str) -> Result<String, ConfigError> {
    let lower = origin.to_ascii_lowercase();
    if lower == "*" || lower == "null" {
        return Ok(lower);
    }
    let valid = lower.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && !rest.is_empty()
            && !rest.contains(['/', '?', '#', '@'])
            && rest.matches('*').count() <= 1
    });
    if valid {
        Ok(lower)
    } else {
        Err(invalid(
            key,
            format!("`{origin}` is not an origin (use *, null or scheme://host[:port])"),
        ))
    }
}

/// Parses Go-style durations: `0`, `500ms`, `40s`, `1m30s`, `1.5h`, with units ns, us, µs, ms, s,
/// m, h.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Parses sizes: plain bytes, or with a unit B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB.
pub fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number: usize = text[..digits].parse().ok()?;
    let multiplier = match text[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

impl From<&Config> for SelectorLimits {
    fn from(config: &Config) -> Self {
        Self {
            max_topics: config.max_topics_per_subscription,
            max_length: config.max_selector_length,
            max_variables: config.max_template_variables,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_sources(None, env(pairs))
    }

    #[test]
    fn defaults_generate_a_development_key() {
        let config = load(&[]).expect("defaults are valid");
        assert_eq!(config.addr.to_string(), DEFAULT_ADDR);
        assert!(config.dev_key.is_some());
        assert_eq!(config.heartbeat, Some(DEFAULT_HEARTBEAT));
        assert_eq!(config.transport, TransportKind::Embedded);
        assert_eq!(config.cookie_name, DEFAULT_COOKIE_NAME);
        assert_eq!(config.max_request_body_size, 1 << 20);
        assert_eq!(config.max_topics_per_subscription, 100);
        assert_eq!(config.max_selector_length, 4096);
        assert_eq!(config.max_template_variables, 32);
        assert_eq!(config.selector_cache_size, 16 << 20);
    }

    #[test]
    fn selector_limits() {
        let config = load(&[
            ("MERCURE_MAX_TOPICS_PER_SUBSCRIPTION", "10"),
            ("MERCURE_MAX_SELECTOR_LENGTH", "2048"),
            ("MERCURE_MAX_TEMPLATE_VARIABLES", "8"),
            ("MERCURE_SELECTOR_CACHE_SIZE", "4MiB"),
        ])
        .expect("valid configuration");
        assert_eq!(config.max_topics_per_subscription, 10);
        assert_eq!(config.max_selector_length, 2048);
        assert_eq!(config.max_template_variables, 8);
        assert_eq!(config.selector_cache_size, 4 << 20);
    }

    #[test]
    fn connection_and_token_limits() {
        let config = load(&[]).expect("defaults are valid");
        assert_eq!(config.max_connections, None, "derived from the open-file limit");
        assert_eq!(config.max_streams_per_client, None, "off by default");
        assert_eq!(config.max_selectors_per_token, DEFAULT_MAX_SELECTORS_PER_TOKEN);

        let config = load(&[
            ("MERCURE_MAX_CONNECTIONS", "5000"),
            ("MERCURE_MAX_STREAMS_PER_CLIENT", "20"),
            ("MERCURE_MAX_SELECTORS_PER_TOKEN", "50"),
        ])
        .expect("valid configuration");
        assert_eq!(config.max_connections, Some(5000));
        assert_eq!(config.max_streams_per_client, Some(20));
        assert_eq!(config.max_selectors_per_token, 50);
        let off = load(&[("MERCURE_MAX_STREAMS_PER_CLIENT", "0")]).expect("0 turns it off");
        assert_eq!(off.max_streams_per_client, None);

        for (pairs, key) in [
            (&[("MERCURE_MAX_CONNECTIONS", "0")], "`max_connections`"),
            (&[("MERCURE_MAX_CONNECTIONS", "many")], "`max_connections`"),
            (&[("MERCURE_MAX_STREAMS_PER_CLIENT", "-1")], "`max_streams_per_client`"),
            (&[("MERCURE_MAX_SELECTORS_PER_TOKEN", "0")], "`max_selectors_per_token`"),
        ] {
            let error = load(pairs).expect_err("refused").to_string();
            assert!(error.contains(key), "{error}");
        }
    }

    #[test]
    fn reads_environment_variables() {
        let config = load(&[
            ("MERCURE_ADDR", "127.0.0.1:9000"),
            ("MERCURE_JWT_KEY", "secret"),
            ("MERCURE_ANONYMOUS", "1"),
            ("MERCURE_HEARTBEAT", "0s"),
            ("MERCURE_WRITE_TIMEOUT", "1m30s"),
            ("MERCURE_CORS_ORIGINS", "https://A.example.com, http://b.test:8080"),
            ("MERCURE_TRANSPORT", "memory"),
            ("MERCURE_URL", "ignored: read by client libraries"),
            ("MERCURE_HUB_URL", "ignored: read by this repository's client examples"),
            ("MERCURE_TOKEN", "ignored: read by this repository's client examples"),
            ("PATH", "/usr/bin"),
        ])
        .expect("valid configuration");
        assert_eq!(config.addr.port(), 9000);
        assert!(config.anonymous && config.dev_key.is_none());
        assert_eq!(config.heartbeat, None);
        assert_eq!(config.write_timeout, Some(Duration::from_secs(90)));
        assert_eq!(config.cors_origins, ["https://a.example.com", "http://b.test:8080"]);
        assert_eq!(config.transport, TransportKind::Memory);
    }

    #[test]
    fn protocols_resource_identifier_and_public_urls() {
        let config = load(&[("MERCURE_JWT_KEY", "k")]).expect("valid");
        assert_eq!(config.protocols, Protocols::ALL);
        assert_eq!((config.resource_identifier, config.public_urls.len()), (None, 0));
        let config = load(&[
            ("MERCURE_JWT_KEY", "k"),
            ("MERCURE_PROTOCOLS", "1.0"),
            ("MERCURE_RESOURCE_IDENTIFIER", "https://hub.example/.well-known/mercure"),
            ("MERCURE_PUBLIC_URLS", "https://HUB.example:443/, http://127.0.0.1:8080"),
        ])
        .expect("valid");
        assert_eq!(config.protocols, Protocols { draft_07: false, v1: true });
        assert_eq!(config.public_urls, ["https://hub.example", "http://127.0.0.1:8080"]);
        for (key, value, expected) in [
            ("MERCURE_PROTOCOLS", "", "list draft-07, 1.0 or both"),
            ("MERCURE_PROTOCOLS", "draft-09", "`draft-09` is not a protocol"),
            ("MERCURE_RESOURCE_IDENTIFIER", "/relative", "not an absolute URL"),
            ("MERCURE_RESOURCE_IDENTIFIER", "ftp://x/y", "http or https"),
            ("MERCURE_PUBLIC_URLS", "hub.example", "not an http or https URL"),
        ] {
            let error = load(&[("MERCURE_JWT_KEY", "k"), (key, value)]).expect_err(value);
            assert!(error.to_string().contains(expected), "{key}={value}: {error}");
        }
    }

    #[test]
    fn issuers_from_the_file_and_from_json() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hub.toml");
        std::fs::write(
            &path,
            "jwt_key = \"k\"\ntrusted_issuers = \"https://localhost\"\n\
             [issuers.\"https://Auth.example.com/realms/a.b\"]\n\
             authorization_server = true\n\
             subscriber_jwks_uri = \"file:///etc/jwks.json\"\n\
             jwks_algorithms = [\"RS256\"]\n",
        )
        .expect("write config");
        let config = Config::from_sources(Some(&path), env(&[])).expect("valid configuration");
        let own = KeySpec::Key { key: "k".into(), alg: "HS256".into() };
        assert_eq!(
            config.issuers,
            [
                IssuerSpec {
                    issuer: "https://localhost".into(),
                    authorization_server: false,
                    publisher: Some(own.clone()),
                    subscriber: Some(own),
                },
                IssuerSpec {
                    issuer: "https://Auth.example.com/realms/a.b".into(),
                    authorization_server: true,
                    publisher: None,
                    subscriber: Some(KeySpec::Jwks {
                        uri: "file:///etc/jwks.json".into(),
                        algorithms: Some(vec!["RS256".into()]),
                    }),
                },
            ]
        );
        let config = load(&[
            ("MERCURE_JWT_KEY", "k"),
            (
                "MERCURE_ISSUERS",
                r#"{"https://i": {"publisher_jwt_key": "s", "publisher_jwt_alg": "HS512"}}"#,
            ),
        ])
        .expect("valid configuration");
        assert_eq!(
            config.issuers[0].publisher,
            Some(KeySpec::Key { key: "s".into(), alg: "HS512".into() })
        );
        for (bad, expected) in [
            (r#"{"https://i": {}}"#, "set a key"),
            (
                r#"{"https://i": {"publisher_jwt_key": "s", "publisher_jwks_uri": "file:///x"}}"#,
                "not both",
            ),
            (
                r#"{"https://i": {"publisher_jwt_key": "-----BEGIN PUBLIC KEY-----", "publisher_jwt_alg": "RS256"}}"#,
                "publisher key",
            ),
            (r#"{"https://i": {"publisher_key": "s"}}"#, "unknown setting `publisher_key`"),
            ("[1]", "expected a table"),
            (r#"{"https://i": {"subscriber_jwks_uri": "http://idp/jwks"}}"#, "https:// or file://"),
            (
                r#"{"https://i": {"subscriber_jwks_uri": "file:///j", "jwks_algorithms": "HS256"}}"#,
                "`HS256` is not one of",
            ),
            ("{", "not a JSON object"),
        ] {
            let error = load(&[("MERCURE_JWT_KEY", "k"), ("MERCURE_ISSUERS", bad)]).expect_err(bad);
            assert!(error.to_string().contains(expected), "{bad}: {error}");
        }
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hub.toml");
        std::fs::write(
            &path,
            "jwt_key = \"k\"\nheartbeat = \"15s\"\npublish_origins = [\"*\"]\nhistory_size = 10\n",
        )
        .expect("write config");
        let config = Config::from_sources(Some(&path), env(&[("MERCURE_HEARTBEAT", "20s")]))
            .expect("valid configuration");
        assert_eq!(config.heartbeat, Some(Duration::from_secs(20)));
        assert_eq!(config.publish_origins, ["*"]);
        assert_eq!(config.history_size, 10);
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("MERCURE_HEARTBEET", "1s")], "MERCURE_HEARTBEET"),
            (&[("MERCURE_HEARTBEAT", "soon")], "`heartbeat`"),
            (&[("MERCURE_ANONYMOUS", "maybe")], "`anonymous`"),
            (&[("MERCURE_ADDR", "nowhere")], "`addr`"),
            (&[("MERCURE_TRANSPORT", "bolt")], "`transport`"),
            (&[("MERCURE_CORS_ORIGINS", "example.com")], "`cors_origins`"),
            (&[("MERCURE_JWT_KEY", "k"), ("MERCURE_JWT_ALG", "HS999")], "`publisher_jwt_key`"),
            (&[("MERCURE_SUBSCRIBER_JWT_KEY", "k")], "`publisher_jwt_key`"),
            (&[("MERCURE_PUBLISHER_JWT_KEY", "k")], "`subscriber_jwt_key`"),
            (&[("MERCURE_MAX_REQUEST_BODY_SIZE", "lots")], "`max_request_body_size`"),
            (&[("MERCURE_MAX_TOPICS_PER_SUBSCRIPTION", "0")], "`max_topics_per_subscription`"),
            (&[("MERCURE_MAX_SELECTOR_LENGTH", "-1")], "`max_selector_length`"),
            (&[("MERCURE_MAX_TEMPLATE_VARIABLES", "many")], "`max_template_variables`"),
            (&[("MERCURE_SELECTOR_CACHE_SIZE", "0")], "`selector_cache_size`"),
            (&[("MERCURE_USE_FORWARDED_HEADERS", "1")], "`trusted_proxies`"),
            (&[("MERCURE_TRUSTED_PROXIES", "10.0.0.0/8")], "`use_forwarded_headers`"),
            (
                &[
                    ("MERCURE_USE_FORWARDED_HEADERS", "1"),
                    ("MERCURE_TRUSTED_PROXIES", "10.0.0.0/40"),
                ],
                "`trusted_proxies`",
            ),
            (&[("MERCURE_CERT_FILE", "tls.crt")], "`key_file`"),
            (&[("MERCURE_KEY_FILE", "tls.key")], "`cert_file`"),
            (&[("MERCURE_HTTP_REDIRECT_ADDR", "127.0.0.1:8080")], "`http_redirect_addr`"),
            (
                &[
                    ("MERCURE_CERT_FILE", "tls.crt"),
                    ("MERCURE_KEY_FILE", "tls.key"),
                    ("MERCURE_ACME_HOSTS", "hub.example.com"),
                ],
                "`acme_hosts`",
            ),
            (&[("MERCURE_ACME_HOSTS", "*.example.com")], "`acme_hosts`"),
            (&[("MERCURE_ACME_HOSTS", "127.0.0.1")], "`acme_hosts`"),
            (
                &[("MERCURE_ACME_HOSTS", "a.example"), ("MERCURE_ACME_DIRECTORY", "http://x/dir")],
                "`acme_directory`",
            ),
            (
                &[("MERCURE_ACME_HOSTS", "a.example"), ("MERCURE_ACME_EMAIL", "nobody")],
                "`acme_email`",
            ),
        ];
        for (pairs, expected) in cases {
            let message = load(pairs).expect_err("must be refused").to_string();
            assert!(message.contains(expected), "{message:?} should name {expected}");
        }
    }

    #[test]
    fn unknown_file_key_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, "jwt_key = \"k\"\nhearbeat = \"15s\"\n").expect("write config");
        let message = Config::from_sources(Some(&path), env(&[]))
            .expect_err("typo must be refused")
            .to_string();
        assert!(message.contains("`hearbeat`") && message.contains("hub.toml"), "{message}");
    }

    #[test]
    fn toml_syntax_errors_name_the_line_and_setting_but_never_show_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hub.toml");
        let cases = [
            ("transport = \"memory\"\njwt_key = \"s3cret-value\n", 2, "`jwt_key`"),
            (
                "transport = \"memory\"\npublisher_jwt_key = s3cret-value\n",
                2,
                "`publisher_jwt_key`",
            ),
            ("subscriber_jwt_key = 's3cret-value\nanonymous = true\n", 1, "`subscriber_jwt_key`"),
            // Reported where the file ends, after the setting whose string never closes.
            ("jwt_key = \"\"\"s3cret-value\n", 2, "after setting `jwt_key`"),
            ("jwt_key = \"s3cret-value\" extra\n", 1, "`jwt_key`"),
        ];
        for (text, line, setting) in cases {
            std::fs::write(&path, text).expect("write config");
            let message = Config::from_sources(Some(&path), env(&[]))
                .expect_err("invalid TOML must be refused")
                .to_string();
            assert!(!message.contains("s3cret"), "{text:?} leaked: {message}");
            assert!(message.contains(&format!("line {line},")), "{text:?}: {message}");
            assert!(message.contains(setting), "{text:?}: {message}");
            assert!(message.contains("hub.toml"), "{text:?}: {message}");
        }
    }

    #[test]
    fn invalid_secrets_are_never_echoed() {
        let secret = "s3cret-value";
        let cases: &[&[(&str, &str)]] = &[
            &[("MERCURE_JWT_KEY", secret), ("MERCURE_JWT_ALG", "RS256")],
            &[("MERCURE_JWT_KEY", secret), ("MERCURE_JWT_ALG", "ES256")],
            &[("MERCURE_JWT_KEY", secret), ("MERCURE_JWT_ALG", "EdDSA")],
            &[("MERCURE_PUBLISHER_JWT_KEY", secret), ("MERCURE_PUBLISHER_JWT_ALG", "RS256")],
            &[
                ("MERCURE_JWT_KEY", "k"),
                ("MERCURE_SUBSCRIBER_JWT_KEY", secret),
                ("MERCURE_SUBSCRIBER_JWT_ALG", "RS512"),
            ],
            &[("MERCURE_SUBSCRIBER_JWT_KEY", secret)],
            &[("MERCURE_PUBLISHER_JWT_KEY", secret)],
        ];
        for pairs in cases {
            let message = load(pairs).expect_err("must be refused").to_string();
            assert!(!message.contains(secret), "{pairs:?} leaked: {message}");
            assert!(message.contains("jwt_key`"), "{pairs:?} should name the key: {message}");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, "jwt_key = [\"s3cret-value\"]\n").expect("write config");
        let message = Config::from_sources(Some(&path), env(&[])).expect_err("refused").to_string();
        assert!(!message.contains(secret) && message.contains("`jwt_key`"), "{message}");
    }

    #[test]
    fn request_limits() {
        let config = load(&[]).expect("defaults are valid");
        assert_eq!(config.max_topics_per_update, DEFAULT_MAX_TOPICS_PER_UPDATE);
        assert_eq!(config.max_form_fields, DEFAULT_MAX_FORM_FIELDS);
        assert_eq!(config.body_read_timeout, Some(DEFAULT_BODY_READ_TIMEOUT));
        let config = load(&[
            ("MERCURE_MAX_TOPICS_PER_UPDATE", "10"),
            ("MERCURE_MAX_FORM_FIELDS", "15"),
            ("MERCURE_BODY_READ_TIMEOUT", "0s"),
        ])
        .expect("valid limits");
        assert_eq!((config.max_topics_per_update, config.max_form_fields), (10, 15));
        assert_eq!(config.body_read_timeout, None);
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("MERCURE_MAX_TOPICS_PER_UPDATE", "0")], "`max_topics_per_update`"),
            (&[("MERCURE_MAX_TOPICS_PER_UPDATE", "many")], "`max_topics_per_update`"),
            (&[("MERCURE_MAX_FORM_FIELDS", "0")], "`max_form_fields`"),
            (&[("MERCURE_MAX_TOPICS_PER_UPDATE", "5000")], "`max_form_fields`"),
            (&[("MERCURE_BODY_READ_TIMEOUT", "soon")], "`body_read_timeout`"),
        ];
        for (pairs, expected) in cases {
            let message = load(pairs).expect_err("must be refused").to_string();
            assert!(message.contains(expected), "{message:?} should name {expected}");
        }
    }

    #[test]
    fn publisher_key_alone_serves_anonymous_hubs() {
        let config = load(&[("MERCURE_PUBLISHER_JWT_KEY", "k"), ("MERCURE_ANONYMOUS", "true")])
            .expect("valid configuration");
        assert!(config.anonymous);
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let config = load(&[("MERCURE_JWT_KEY", "top-secret-value")]).expect("valid");
        assert!(!format!("{config:?}").contains("top-secret-value"));
        let dev = load(&[]).expect("valid");
        let secret = dev.dev_key.clone().expect("dev key");
        assert!(!format!("{dev:?}").contains(secret.expose()));
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h1m1s"), Some(Duration::from_secs(3661)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        for bad in ["", "10", "s", "1d", "-1s", "1s2"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("512KB"), Some(512_000));
        assert_eq!(parse_size("42"), Some(42));
        assert_eq!(parse_size("1 TB"), None);
    }

    #[test]
    fn nats_settings_are_read_and_checked() {
        let nats = |pairs: &[(&str, &str)]| {
            let mut all = vec![("MERCURE_JWT_KEY", "k"), ("MERCURE_TRANSPORT", "nats")];
            all.extend_from_slice(pairs);
            load(&all)
        };
        let config = nats(&[("MERCURE_NATS_URL", "nats://a:4222, nats://u:secret@b:4222")])
            .expect("valid configuration");
        let TransportKind::Nats(settings) = &config.transport else { panic!("nats") };
        assert_eq!(settings.servers, ["nats://a:4222", "nats://u:secret@b:4222"]);
        assert_eq!((settings.stream.as_str(), settings.replicas), ("MERCURE", 1));
        assert_eq!(settings.publish_timeout, DEFAULT_NATS_PUBLISH_TIMEOUT);
        assert_eq!(settings.redacted_servers(), "nats://a:4222,nats://***@b:4222");
        assert!(!format!("{config:?}").contains("secret"), "never in debug output");
        assert_eq!(settings.auth, NatsAuth::None);
        let url = ("MERCURE_NATS_URL", "nats://a");
        let config = nats(&[url, ("MERCURE_NATS_USER", "hub"), ("MERCURE_NATS_PASSWORD", "pw-x")])
            .expect("user and password");
        let TransportKind::Nats(settings) = &config.transport else { panic!("nats") };
        assert!(matches!(&settings.auth, NatsAuth::UserPassword(user, _) if user == "hub"));
        assert!(!format!("{config:?}").contains("pw-x"), "the password is never printed");
        let config = nats(&[url, ("MERCURE_NATS_TOKEN", "tk-x")]).expect("a token");
        assert!(!format!("{config:?}").contains("tk-x"), "nor the token");
        assert_eq!((settings.max_age, settings.tls.is_set()), (None, false), "by default");
        let config = nats(&[
            url,
            ("MERCURE_NATS_MAX_AGE", "1h"),
            ("MERCURE_NATS_TLS_CA", "/etc/ca.pem"),
            ("MERCURE_NATS_TLS_CERT", "/etc/c.pem"),
            ("MERCURE_NATS_TLS_KEY", "/etc/k.pem"),
        ])
        .expect("an age limit and TLS");
        let TransportKind::Nats(settings) = &config.transport else { panic!("nats") };
        assert_eq!(settings.max_age, Some(Duration::from_secs(3600)));
        assert_eq!(settings.tls.ca.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        assert!(settings.tls.client.is_some());

        for (pairs, expected) in [
            (&[][..], "`nats_url`"),
            (
                &[("MERCURE_NATS_URL", "nats://a"), ("MERCURE_NATS_STREAM", "a.b")][..],
                "`nats_stream`",
            ),
            (
                &[("MERCURE_NATS_URL", "nats://a"), ("MERCURE_NATS_REPLICAS", "7")][..],
                "`nats_replicas`",
            ),
            (
                &[("MERCURE_NATS_URL", "nats://a"), ("MERCURE_NATS_PUBLISH_TIMEOUT", "0s")][..],
                "`nats_publish_timeout`",
            ),
            (&[url, ("MERCURE_NATS_USER", "u")][..], "`nats_password`"),
            (&[url, ("MERCURE_NATS_PASSWORD", "p")][..], "`nats_user`"),
            (&[url, ("MERCURE_NATS_TOKEN", "t"), ("MERCURE_NATS_CREDS", "f")][..], "`nats_user`"),
            (&[url, ("MERCURE_NATS_TLS_CERT", "c.pem")][..], "`nats_tls_key`"),
            (&[url, ("MERCURE_NATS_TLS_KEY", "k.pem")][..], "`nats_tls_cert`"),
            (&[url, ("MERCURE_NATS_MAX_AGE", "forever")][..], "`nats_max_age`"),
        ] {
            let message = nats(pairs).expect_err("must be refused").to_string();
            assert!(message.contains(expected), "{message:?} should name {expected}");
        }
    }
}
