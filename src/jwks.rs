//! JWK Sets of trusted issuers (`jwks_uri`): fetched, parsed, refreshed and published.
//!
//! Each distinct `jwks_uri` gets one fetcher, an actor that owns the source (an `https://` URL
//! fetched with reqwest, or a `file://` path read from disk) and the refresh schedule. It
//! publishes every key set it parses through a `tokio::sync::watch` channel, so that
//! [`access_token`](crate::access_token) verification reads the current keys directly and never
//! waits on the actor for a key it already knows. Only a token naming an unknown `kid` (a key
//! rotation, or a forgery) sends the actor a [`refresh`](JwkSetHandle::refresh) request and waits
//! for it, at most the fetch timeout; the actor answers such requests without fetching when it
//! fetched less than `min_refresh_interval` ago, so a flood of made-up `kid`s costs one fetch per
//! interval and no more.
//!
//! The actor runs on a thread of its own with a current-thread runtime (the HTTP server's
//! workers each have their own runtime, and a handle is used from all of them). It stops when
//! every handle is dropped. A failed fetch is logged and keeps the previous keys; the first
//! fetch failing does not stop start-up, the issuer's tokens are refused until keys arrive.
//!
//! Keys are parsed with jsonwebtoken's `jwk` types. Keys this hub cannot or must not use are
//! skipped with a debug log: `use` other than `sig`, `key_ops` without `verify`, symmetric
//! (`oct`) keys, curves other than P-256, P-384 and Ed25519 (jsonwebtoken has no ES512, so
//! P-521 keys are skipped), RSA moduli outside 2048..=4096 bits, and unknown `alg` values.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::jwt::{base64url_decode, usable};

/// How often a JWK Set is fetched again: issuers announce new keys ahead of use, and a key
/// withdrawn upstream stops being trusted within this delay.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The shortest delay between two fetches of one set, whatever asks for them: a stream of
/// tokens with made-up `kid`s must not turn the hub into a load generator for the issuer.
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// How long one fetch may take, and so how long a request with an unknown `kid` may wait.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest JWK Set document read; real sets are a few kilobytes.
pub const MAX_DOCUMENT_SIZE: usize = 1024 * 1024;

/// The most keys kept from one set; the rest are ignored (with a warning).
pub const MAX_KEYS: usize = 100;

/// Refresh requests that may wait for the actor at once; beyond, callers do not wait.
const REQUEST_QUEUE: usize = 64;

/// How JWK Sets are fetched and refreshed; shared by every `jwks_uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksOptions {
    /// Extra PEM CA certificates trusted for `https://` sets, besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// How often a set is fetched again. A shorter `Cache-Control: max-age` shortens it.
    pub refresh_interval: Duration,
    /// The shortest delay between two fetches of a set (unknown `kid`s, `max-age`, retries).
    pub min_refresh_interval: Duration,
    /// The limit on one fetch, and on how long a token with an unknown `kid` waits for one.
    pub fetch_timeout: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            ca_file: None,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
        }
    }
}

/// Why a JWK Set source cannot be used, or why one fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The URI does not parse, or is neither `https://` nor `file://`.
    #[error("jwks_uri must be an https:// or file:// URL: {0}")]
    InvalidUri(&'static str),
    /// The CA file cannot be read or holds no PEM certificate.
    #[error("cannot use the CA file {path}: {reason}")]
    CaFile {
        /// The configured path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The HTTPS client cannot be built.
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
    /// The fetcher's thread or runtime cannot be started.
    #[error("cannot start the JWK Set fetcher: {0}")]
    Start(#[from] std::io::Error),
    /// A fetch failed (I/O, TLS, HTTP status, timeout).
    #[error("fetch failed: {0}")]
    Fetch(String),
    /// The document is larger than [`MAX_DOCUMENT_SIZE`].
    #[error("the document exceeds {MAX_DOCUMENT_SIZE} bytes")]
    TooLarge,
    /// The document is not a JSON object with a `keys` array.
    #[error("not a JWK Set (a JSON object with a \"keys\" array)")]
    NotAJwkSet,
}

/// The family of a usable key, which fixes the algorithms it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn supports(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

/// One usable verification key of a JWK Set.
#[derive(Clone)]
pub struct JwkKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    kind: KeyKind,
    key: DecodingKey,
}

impl JwkKey {
    /// The key's `kid`, if it has one.
    #[cfg(any(test, feature = "unstable-internals"))]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key, for signature verification.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// Whether this key may verify a token signed with `alg`: the key type must match it,
    /// and so must the JWK's own `alg` when it has one.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.kind.supports(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

impl fmt::Debug for JwkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public keys, but there is no reason to print them.
        f.debug_struct("JwkKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The usable keys of one JWK Set at one moment.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<JwkKey>,
    /// False until a fetch succeeded: "no keys yet" is not "no key matches".
    loaded: bool,
}

/// The outcome of looking a token's key up in a [`KeySet`].
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The key to verify with.
    Found(&'a JwkKey),
    /// No key has this `kid` (or, without `kid`, no key fits the algorithm).
    Unknown,
    /// Keys have this `kid` but none of them fits the algorithm.
    WrongAlgorithm,
    /// The token has no `kid` and several keys fit its algorithm.
    Ambiguous,
    /// No fetch of the set has succeeded yet.
    NotLoaded,
}

impl KeySet {
    /// Parses a JWK Set document, skipping (with a debug log) the keys that cannot be used.
    pub fn parse(document: &[u8], source: &str) -> Result<Self, JwksError> {
        let value: Value = serde_json::from_slice(document).map_err(|_| JwksError::NotAJwkSet)?;
        let Some(Value::Array(entries)) = value.get("keys") else {
            return Err(JwksError::NotAJwkSet);
        };
        let mut keys = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            if keys.len() == MAX_KEYS {
                tracing::warn!(
                    mercure.jwks_uri = source,
                    "the JWK Set has more than {MAX_KEYS} usable keys; the rest are ignored"
                );
                break;
            }
            match parse_key(entry) {
                Ok(key) => keys.push(key),
                Err(reason) => {
                    tracing::debug!(mercure.jwks_uri = source, index, reason, "JWK skipped");
                }
            }
        }
        Ok(Self { keys, loaded: true })
    }

    /// How many usable keys the set has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Chooses the key for a token with this `kid` (if any) and algorithm.
    ///
    /// With a `kid`, the first key with that `kid` that fits the algorithm; without, the only
    /// key that fits it (several would make the choice arbitrary).
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        if !self.loaded {
            return Lookup::NotLoaded;
        }
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                let Some(first) = named.next() else {
                    return Lookup::Unknown;
                };
                if first.fits(alg) {
                    return Lookup::Found(first);
                }
                named.find(|k| k.fits(alg)).map_or(Lookup::WrongAlgorithm, Lookup::Found)
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Lookup::Found(key),
                    (Some(_), Some(_)) => Lookup::Ambiguous,
                    (None, _) => Lookup::Unknown,
                }
            }
        }
    }
}

/// Turns one JWK into a usable key, or says why it is skipped.
fn parse_key(entry: &Value) -> Result<JwkKey, &'static str> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|_| "not a JWK")?;
    let common = &jwk.common;
    if common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return Err("`use` is not `sig`");
    }
    if common.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        return Err("`key_ops` does not include `verify`");
    }
    let alg = match common.key_algorithm {
        None => None,
        Some(alg) => Some(Algorithm::try_from(alg).map_err(|_| "unsupported `alg`")?),
    };

    let (kind, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let n = base64url_decode(rsa.n.as_bytes()).ok_or("`n` is not base64url")?;
            let e = base64url_decode(rsa.e.as_bytes()).ok_or("`e` is not base64url")?;
            // The bounds of the RSA crate that verifies (at most 4096 bits, 2 <= e < 2^33),
            // and RFC 7518's minimum of 2048 bits.
            let bits = significant_bits(&n);
            if !(2048..=4096).contains(&bits) {
                return Err("the RSA modulus is not 2048 to 4096 bits long");
            }
            if !(2..=33).contains(&significant_bits(&e)) {
                return Err("the RSA exponent is out of range");
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (kind, size) = match ec.curve {
                EllipticCurve::P256 => (KeyKind::P256, 32),
                EllipticCurve::P384 => (KeyKind::P384, 48),
                _ => return Err("unsupported curve"),
            };
            let x = base64url_decode(ec.x.as_bytes()).ok_or("`x` is not base64url")?;
            let y = base64url_decode(ec.y.as_bytes()).ok_or("`y` is not base64url")?;
            if x.len() != size || y.len() != size {
                return Err("the coordinates do not fit the curve");
            }
            let key =
                DecodingKey::from_ec_components(&ec.x, &ec.y).map_err(|_| "invalid EC key")?;
            (kind, key)
        }
        AlgorithmParameters::OctetKeyPair(okp) => {
            if okp.curve != EllipticCurve::Ed25519 {
                return Err("unsupported curve");
            }
            // jsonwebtoken's Ed25519 verifier slices 32 bytes without checking the length.
            let x = base64url_decode(okp.x.as_bytes()).ok_or("`x` is not base64url")?;
            if x.len() != 32 {
                return Err("an Ed25519 public key is 32 bytes");
            }
            let key = DecodingKey::from_ed_components(&okp.x).map_err(|_| "invalid Ed25519 key")?;
            (KeyKind::Ed25519, key)
        }
        // A shared secret published in a key set would let anyone sign.
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are not accepted"),
        _ => return Err("unsupported key type"),
    };

    if alg.is_some_and(|alg| !kind.supports(alg)) {
        return Err("`alg` does not fit the key type");
    }
    // Building a verifier parses the point (on the curve?) as verification will.
    let probe = match kind {
        KeyKind::Rsa => None,
        KeyKind::P256 => Some(Algorithm::ES256),
        KeyKind::P384 => Some(Algorithm::ES384),
        KeyKind::Ed25519 => Some(Algorithm::EdDSA),
    };
    if probe.is_some_and(|probe| !usable(&key, probe)) {
        return Err("the key is corrupt");
    }
    Ok(JwkKey { kid: common.key_id.clone(), alg, kind, key })
}

/// The bit length of a big-endian unsigned integer.
fn significant_bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|&b| b != 0) {
        None => 0,
        Some(first) => (bytes.len() - first - 1) * 8 + (8 - bytes[first].leading_zeros() as usize),
    }
}

/// The one message of a fetcher.
enum Message {
    /// Fetch now unless a fetch started less than `min_refresh_interval` ago; either way,
    /// answer once the current keys are published.
    Refresh(oneshot::Sender<()>),
}

/// A handle on one JWK Set fetcher: cheap to clone, usable from any thread or runtime.
#[derive(Clone)]
pub struct JwkSetHandle {
    uri: Arc<str>,
    keys: watch::Receiver<Arc<KeySet>>,
    requests: mpsc::Sender<Message>,
    /// Read by tests only.
    #[cfg_attr(not(any(test, feature = "unstable-internals")), allow(dead_code))]
    fetches: Arc<AtomicU64>,
    wait: Duration,
}

impl JwkSetHandle {
    /// The set's URI, as configured.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The current keys; never waits.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.borrow().clone()
    }

    /// Asks for a fetch (which the fetcher skips if it fetched less than
    /// `min_refresh_interval` ago) and waits for it at most the fetch timeout; returns the
    /// keys current then.
    pub async fn refresh(&self) -> Arc<KeySet> {
        let (done, answered) = oneshot::channel();
        // A full queue means many callers are already waiting for the same answer.
        if self.requests.try_send(Message::Refresh(done)).is_ok() {
            // Timing out or the fetcher having stopped both leave the current keys.
            let _ = tokio::time::timeout(self.wait, answered).await;
        }
        self.keys()
    }

    /// How many fetches this set's fetcher has started.
    #[cfg(any(test, feature = "unstable-internals"))]
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for JwkSetHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwkSetHandle").field("uri", &self.uri).finish_non_exhaustive()
    }
}

/// Where a set comes from.
enum Source {
    File(PathBuf),
    Https { url: reqwest::Url, client: reqwest::Client },
}

/// Starts the fetcher of `uri` on a thread of its own; it fetches at once.
pub fn start(uri: &str, options: &JwksOptions) -> Result<JwkSetHandle, JwksError> {
    let (handle, fetcher) = new(uri, options)?;
    // I/O for reqwest, time for the schedule and timeouts.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name("quicksilver-jwks".into())
        .spawn(move || runtime.block_on(fetcher.run()))?;
    Ok(handle)
}

/// The fetcher as a task of the current runtime, whose clock tests may pause.
#[cfg(test)]
pub(crate) fn spawn(uri: &str, options: &JwksOptions) -> Result<JwkSetHandle, JwksError> {
    let (handle, fetcher) = new(uri, options)?;
    tokio::spawn(fetcher.run());
    Ok(handle)
}

/// A fetcher's handle and the actor to run.
fn new(uri: &str, options: &JwksOptions) -> Result<(JwkSetHandle, Fetcher), JwksError> {
    let source = source(uri, options)?;
    let (publish, keys) = watch::channel(Arc::new(KeySet::default()));
    let (requests, received) = mpsc::channel(REQUEST_QUEUE);
    let fetches = Arc::new(AtomicU64::new(0));
    let uri: Arc<str> = Arc::from(uri);
    let handle = JwkSetHandle {
        uri: uri.clone(),
        keys,
        requests,
        fetches: fetches.clone(),
        wait: options.fetch_timeout,
    };
    let fetcher = Fetcher {
        uri,
        source,
        publish,
        requests: received,
        refresh_interval: options.refresh_interval,
        min_refresh_interval: options.min_refresh_interval.min(options.refresh_interval),
        fetch_timeout: options.fetch_timeout,
        last_fetch: None,
        failures: 0,
        fetches,
    };
    Ok((handle, fetcher))
}

/// Checks `uri` and prepares what fetching it needs.
fn source(uri: &str, options: &JwksOptions) -> Result<Source, JwksError> {
    let url = reqwest::Url::parse(uri).map_err(|_| JwksError::InvalidUri("it does not parse"))?;
    match url.scheme() {
        "file" => {
            let path = url.to_file_path().map_err(|()| {
                JwksError::InvalidUri("a file:// URL needs an absolute local path (file:///…)")
            })?;
            Ok(Source::File(path))
        }
        "https" => {
            // Redirects stay on HTTPS; the timeout covers the whole exchange.
            let mut builder = reqwest::Client::builder()
                .https_only(true)
                .timeout(options.fetch_timeout)
                .user_agent(concat!("quicksilver/", env!("CARGO_PKG_VERSION")));
            if let Some(path) = &options.ca_file {
                let ca_error = |reason: String| JwksError::CaFile { path: path.clone(), reason };
                let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
                let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|_| ca_error("it is not a PEM certificate bundle".to_owned()))?;
                if certificates.is_empty() {
                    return Err(ca_error("it holds no certificate".to_owned()));
                }
                for certificate in certificates {
                    builder = builder.add_root_certificate(certificate);
                }
            }
            let client = builder.build().map_err(|e| JwksError::Client(e.to_string()))?;
            Ok(Source::Https { url, client })
        }
        _ => Err(JwksError::InvalidUri("the scheme is neither https nor file")),
    }
}

/// The actor: owns the source and the schedule, publishes key sets.
struct Fetcher {
    uri: Arc<str>,
    source: Source,
    publish: watch::Sender<Arc<KeySet>>,
    requests: mpsc::Receiver<Message>,
    refresh_interval: Duration,
    min_refresh_interval: Duration,
    fetch_timeout: Duration,
    last_fetch: Option<Instant>,
    /// Consecutive failed fetches, for the retry backoff.
    failures: u32,
    fetches: Arc<AtomicU64>,
}

impl Fetcher {
    async fn run(mut self) {
        let mut next = self.fetch().await;
        loop {
            tokio::select! {
                message = self.requests.recv() => match message {
                    // Every handle is gone.
                    None => return,
                    Some(Message::Refresh(done)) => {
                        let recent = self
                            .last_fetch
                            .is_some_and(|at| at.elapsed() < self.min_refresh_interval);
                        if !recent {
                            next = self.fetch().await;
                        }
                        // The asker may have given up waiting.
                        let _ = done.send(());
                    }
                },
                // A deadline rather than a delay, so that requests answered without a fetch
                // do not postpone the scheduled one.
                () = tokio::time::sleep_until(next) => next = self.fetch().await,
            }
        }
    }

    /// Fetches and publishes the set; returns when to fetch next.
    async fn fetch(&mut self) -> Instant {
        let started = Instant::now();
        self.last_fetch = Some(started);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(self.fetch_timeout, self.read()).await {
            Ok(result) => result,
            Err(_) => Err(JwksError::Fetch("timed out".to_owned())),
        };
        match result.and_then(|(document, max_age)| {
            KeySet::parse(&document, &self.uri).map(|set| (set, max_age))
        }) {
            Ok((set, max_age)) => {
                if set.is_empty() {
                    tracing::warn!(mercure.jwks_uri = &*self.uri, "the JWK Set has no usable key");
                } else {
                    tracing::debug!(
                        mercure.jwks_uri = &*self.uri,
                        keys = set.len(),
                        "JWK Set loaded"
                    );
                }
                self.publish.send_replace(Arc::new(set));
                self.failures = 0;
                let interval = max_age.map_or(self.refresh_interval, |max_age| {
                    max_age.clamp(self.min_refresh_interval, self.refresh_interval)
                });
                started + interval
            }
            Err(error) => {
                // The previous keys stay: an issuer briefly unreachable must not lock
                // everyone out.
                tracing::warn!(
                    mercure.jwks_uri = &*self.uri,
                    %error,
                    "cannot load the JWK Set; its issuer's tokens are refused until it loads"
                );
                self.failures = self.failures.saturating_add(1);
                let backoff = self
                    .min_refresh_interval
                    .saturating_mul(1 << self.failures.saturating_sub(1).min(16));
                started + backoff.min(self.refresh_interval)
            }
        }
    }

    /// Reads the document, and the `max-age` its server gave, if any.
    async fn read(&self) -> Result<(Vec<u8>, Option<Duration>), JwksError> {
        match &self.source {
            // A blocking read, on the fetcher's own thread, of a local file.
            Source::File(path) => {
                let file =
                    std::fs::File::open(path).map_err(|e| JwksError::Fetch(e.to_string()))?;
                let mut document = Vec::new();
                file.take(MAX_DOCUMENT_SIZE as u64 + 1)
                    .read_to_end(&mut document)
                    .map_err(|e| JwksError::Fetch(e.to_string()))?;
                if document.len() > MAX_DOCUMENT_SIZE {
                    return Err(JwksError::TooLarge);
                }
                Ok((document, None))
            }
            Source::Https { url, client } => {
                let fetch_error = |e: reqwest::Error| JwksError::Fetch(e.without_url().to_string());
                let mut response = client
                    .get(url.clone())
                    .header(reqwest::header::ACCEPT, "application/jwk-set+json, application/json")
                    .send()
                    .await
                    .map_err(fetch_error)?;
                if !response.status().is_success() {
                    return Err(JwksError::Fetch(format!("HTTP status {}", response.status())));
                }
                if response.content_length().is_some_and(|n| n > MAX_DOCUMENT_SIZE as u64) {
                    return Err(JwksError::TooLarge);
                }
                let max_age = response
                    .headers()
                    .get(reqwest::header::CACHE_CONTROL)
                    .and_then(|value| value.to_str().ok())
                    .and_then(max_age);
                let mut document = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
                    if document.len() + chunk.len() > MAX_DOCUMENT_SIZE {
                        return Err(JwksError::TooLarge);
                    }
                    document.extend_from_slice(&chunk);
                }
                Ok((document, max_age))
            }
        }
    }
}

/// The `max-age` directive of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        value.trim().trim_matches('"').parse().ok().map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use serde_json::json;

    const ES256_PUBLIC: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/es256_public.pem"));
    const RSA_PUBLIC: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/rsa_public.pem"));

    fn ec_jwk() -> Value {
        let key = DecodingKey::from_ec_pem(ES256_PUBLIC.as_bytes()).expect("fixture");
        serde_json::to_value(Jwk::from_decoding_key(&key, None).expect("jwk")).expect("json")
    }

    fn rsa_jwk() -> Value {
        let key = DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).expect("fixture");
        serde_json::to_value(Jwk::from_decoding_key(&key, None).expect("jwk")).expect("json")
    }

    fn parse(keys: Vec<Value>) -> KeySet {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes(), "test").expect("a set")
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let with = |mut jwk: Value, field: &str, value: Value| {
            jwk[field] = value;
            jwk
        };
        let skipped = vec![
            json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}),
            with(ec_jwk(), "use", json!("enc")),
            with(ec_jwk(), "key_ops", json!(["encrypt"])),
            with(ec_jwk(), "alg", json!("ES384")),
            with(ec_jwk(), "alg", json!("ES512")),
            with(ec_jwk(), "alg", json!("RSA-OAEP")),
            with(ec_jwk(), "crv", json!("P-521")),
            with(ec_jwk(), "x", json!("AAAA")),
            with(ec_jwk(), "y", json!("!!!")),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAAAAAAAAA"}),
            json!({"kty": "OKP", "crv": "X25519", "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
            json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
            with(rsa_jwk(), "e", json!("AQAAAAAAAAAB")),
            with(rsa_jwk(), "alg", json!("ES256")),
            json!({"kty": "unknown"}),
            json!("not an object"),
            json!(null),
        ];
        assert!(parse(skipped).is_empty());

        let kept = parse(vec![
            with(ec_jwk(), "use", json!("sig")),
            with(ec_jwk(), "key_ops", json!(["verify"])),
            with(rsa_jwk(), "alg", json!("PS512")),
        ]);
        assert_eq!(kept.len(), 3);
    }

    #[test]
    fn documents_that_are_not_sets_are_errors() {
        for document in ["", "[]", "{}", r#"{"keys": {}}"#, "not json"] {
            assert!(KeySet::parse(document.as_bytes(), "test").is_err(), "{document}");
        }
        assert!(parse(vec![]).is_empty());
        let many: Vec<Value> = (0..MAX_KEYS + 5).map(|_| ec_jwk()).collect();
        assert_eq!(parse(many).len(), MAX_KEYS);
    }

    #[test]
    fn keys_are_selected_by_kid_and_algorithm() {
        let named = |mut jwk: Value, kid: &str| {
            jwk["kid"] = json!(kid);
            jwk
        };
        let set = parse(vec![named(ec_jwk(), "ec"), named(rsa_jwk(), "rsa"), rsa_jwk()]);
        assert!(
            matches!(set.select(Some("ec"), Algorithm::ES256), Lookup::Found(k) if k.kid() == Some("ec"))
        );
        assert!(matches!(set.select(Some("ec"), Algorithm::ES384), Lookup::WrongAlgorithm));
        assert!(matches!(set.select(Some("rsa"), Algorithm::PS256), Lookup::Found(_)));
        assert!(matches!(set.select(Some("nope"), Algorithm::ES256), Lookup::Unknown));
        assert!(matches!(set.select(None, Algorithm::ES256), Lookup::Found(_)));
        assert!(matches!(set.select(None, Algorithm::RS256), Lookup::Ambiguous));
        assert!(matches!(set.select(None, Algorithm::EdDSA), Lookup::Unknown));
        assert!(matches!(KeySet::default().select(None, Algorithm::EdDSA), Lookup::NotLoaded));
    }

    #[test]
    fn cache_control_max_age() {
        assert_eq!(max_age("max-age=60"), Some(Duration::from_secs(60)));
        assert_eq!(
            max_age("public, MAX-AGE = 3600 , must-revalidate"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("s-maxage=5, max-age=x"), None);
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(significant_bits(&[]), 0);
        assert_eq!(significant_bits(&[0, 0]), 0);
        assert_eq!(significant_bits(&[1, 0, 1]), 17);
        assert_eq!(significant_bits(&[0, 0x80, 0]), 16);
    }

    #[test]
    fn uris_must_be_https_or_local_files() {
        let options = JwksOptions::default();
        assert!(matches!(source("file:///etc/jwks.json", &options), Ok(Source::File(_))));
        assert!(matches!(source("https://example.com/jwks", &options), Ok(Source::Https { .. })));
        for uri in ["http://example.com/jwks", "file://remote/jwks.json", "jwks.json", ""] {
            assert!(matches!(source(uri, &options), Err(JwksError::InvalidUri(_))), "{uri}");
        }
    }
}
