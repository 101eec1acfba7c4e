//! Minting tokens: the claims a publisher or subscriber presents to a hub, signed.
//!
//! A [`TokenRequest`] says what the token grants (publish and subscribe selectors, a payload) and
//! in which [`Format`]: Mercure 1.0 access tokens (RFC 9068 JWTs whose RFC 9396
//! `authorization_details` hold Mercure details), or the draft-07 `mercure` claim that hubs before
//! Mercure 1.0 read. A [`SigningKey`] pins one algorithm to one private key or HMAC secret, and is
//! checked when it is built, so a key that exists can sign. [`mint`] puts the two together.
//!
//! ```
//! use quicksilver_client::token::{mint, Format, Selector, SigningKey, TokenRequest};
//!
//! let key = SigningKey::new("HS256", b"the hub's secret")?;
//! let request = TokenRequest::new(Format::Legacy).publish(Selector::parse("*")?);
//! let token = mint(&request, &key)?;
//! assert_eq!(token.split('.').count(), 3);
//! # Ok::<(), quicksilver_client::token::MintError>(())
//! ```
//!
//! The [`Publisher`](crate::Publisher) and the [`Subscriber`](crate::Subscriber) mint their own
//! tokens from a key and a request, again shortly before each expires. The hub's `quicksilver
//! token` command is built on this module too, and adds only the search for the key in the hub's
//! configuration.
//!
//! Nothing here does I/O; neither keys nor secrets ever appear in errors or `Debug` output.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

/// Default `iss`: the issuer the reference hub's `mercure-token` command and its shipped
/// configuration (`MERCURE_TRUSTED_ISSUERS`) use, so tokens work with a default setup.
pub const DEFAULT_ISSUER: &str = "https://localhost";
/// Default `aud`: the resource identifier a hub derives for `https://localhost`.
pub const DEFAULT_AUDIENCE: &str = "https://localhost/.well-known/mercure";
/// Default lifetime: long enough for a development session, short enough that a token pasted in
/// a chat or a log stops working the same day.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);
/// The `type` of a Mercure entry of `authorization_details` (RFC 9396).
pub const AUTHORIZATION_DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";
/// The header `typ` of RFC 9068 access tokens.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Prefix of a selector given on the command line that is a URL Pattern rather than an exact
/// topic.
pub const URL_PATTERN_PREFIX: &str = "urlpattern:";

/// The algorithm names [`SigningKey::new`] accepts, as written in JWT headers.
const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// Why a token cannot be minted. Each message says what to change, in the words of the
/// `quicksilver token` command (whose options the messages name).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The request grants nothing.
    #[error("the token would grant nothing: give at least one --publish or --subscribe selector")]
    NoSelector,
    /// A selector is the empty string, which matches nothing and which Mercure 1.0 hubs refuse.
    #[error("an empty selector matches nothing: give a topic, `*`, or urlpattern:PATTERN")]
    EmptySelector,
    /// RFC 9068 access tokens must expire.
    #[error(
        "Mercure 1.0 access tokens must expire (RFC 9068): give a lifetime such as \
         --expires-in 1h, or use --legacy for a token without exp"
    )]
    NoExpiry,
    /// The lifetime puts `exp` beyond what a JWT can carry.
    #[error("the lifetime is too long: give one of at most a few centuries")]
    ExpiryTooFar,
    /// Draft-07 tokens know exact topics and URI templates only.
    #[error(
        "`{URL_PATTERN_PREFIX}{pattern}`: draft-07 tokens (--legacy) have no URL Pattern \
         selectors; give the topic or a URI template (https://example.com/books/{{id}}) instead"
    )]
    UrlPatternInLegacy {
        /// The pattern, without its prefix.
        pattern: String,
    },
    /// Mercure 1.0 tokens carry the payload in their subscribe detail, which needs a selector.
    #[error(
        "a Mercure 1.0 token carries --payload in its subscribe rights: give a --subscribe \
         selector too, or use --legacy"
    )]
    PayloadWithoutSubscribe,
    /// The algorithm name is not one a token can be signed with.
    #[error("unsupported algorithm `{alg}`: use one of {}", ALGORITHMS.join(", "))]
    UnknownAlgorithm {
        /// The name as given.
        alg: String,
    },
    /// An HMAC algorithm with an empty secret, with which anyone could sign.
    #[error("{alg} needs a non-empty secret")]
    EmptySecret {
        /// The algorithm.
        alg: &'static str,
    },
    /// A PEM key given as an HMAC secret: almost always a forgotten `--alg`.
    #[error(
        "the key is a PEM key, but {alg} takes a shared secret: give the key's algorithm \
         (--alg RS256, ES256, EdDSA, ...)"
    )]
    PemAsSecret {
        /// The algorithm.
        alg: &'static str,
    },
    /// The key cannot sign with the algorithm.
    #[error("{alg} needs {expected}: {problem}")]
    KeyMismatch {
        /// The algorithm.
        alg: &'static str,
        /// The kind of key the algorithm takes.
        expected: &'static str,
        /// What is wrong with the key given (never the key itself), and how to fix it.
        problem: &'static str,
    },
}

/// The claim layout of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Mercure 1.0: an RFC 9068 access token (`typ: at+jwt`, `iss`, `aud`, `exp`, `iat`, `jti`)
    /// whose `authorization_details` hold one Mercure detail per action.
    #[default]
    Rfc9068,
    /// Draft-07 (hubs before Mercure 1.0; Quicksilver reads both): a `mercure` claim with
    /// `publish`, `subscribe` and `payload`.
    Legacy,
}

/// One topic selector of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A topic compared byte for byte, or `*` for every topic. In draft-07 tokens it may also be
    /// a URI template, which the hub expands.
    Exact(String),
    /// A WHATWG URL Pattern (`https://example.com/books/:id`); Mercure 1.0 only.
    UrlPattern(String),
}

impl Selector {
    /// Reads a selector as written on the command line: `urlpattern:PATTERN` is a URL Pattern,
    /// anything else an exact topic (`*` included).
    pub fn parse(text: &str) -> Result<Self, MintError> {
        let selector = match text.strip_prefix(URL_PATTERN_PREFIX) {
            Some(pattern) => Self::UrlPattern(pattern.to_owned()),
            None => Self::Exact(text.to_owned()),
        };
        if selector.text().is_empty() {
            return Err(MintError::EmptySelector);
        }
        Ok(selector)
    }

    /// The selector's text, without a prefix.
    pub fn text(&self) -> &str {
        match self {
            Self::Exact(text) | Self::UrlPattern(text) => text,
        }
    }

    /// Its `match_type` in a Mercure detail.
    pub fn match_type(&self) -> &'static str {
        match self {
            Self::Exact(_) => "exact",
            Self::UrlPattern(_) => "urlpattern",
        }
    }
}

/// What a token grants, and how it is laid out. Built with [`TokenRequest::new`] and the
/// chained setters; checked by [`mint`].
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRequest {
    format: Format,
    issuer: Option<String>,
    audience: Option<String>,
    subject: Option<String>,
    expires_in: Option<Duration>,
    publish: Vec<Selector>,
    subscribe: Vec<Selector>,
    payload: Option<Value>,
}

impl TokenRequest {
    /// A request in `format` that grants nothing yet and expires after [`DEFAULT_EXPIRES_IN`].
    pub fn new(format: Format) -> Self {
        Self {
            format,
            issuer: None,
            audience: None,
            subject: None,
            expires_in: Some(DEFAULT_EXPIRES_IN),
            publish: Vec::new(),
            subscribe: Vec::new(),
            payload: None,
        }
    }

    /// Adds a topic the token may publish to.
    pub fn publish(mut self, selector: Selector) -> Self {
        self.publish.push(selector);
        self
    }

    /// Adds topics the token may receive private updates of.
    pub fn subscribe(mut self, selector: Selector) -> Self {
        self.subscribe.push(selector);
        self
    }

    /// Sets the payload shared with subscription events (the subscribe detail's `payload`, or
    /// `mercure.payload` in draft-07 tokens).
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Sets `iss`. Mercure 1.0 tokens default to [`DEFAULT_ISSUER`]; draft-07 tokens carry it
    /// only when it is set.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets `aud`. Mercure 1.0 tokens default to [`DEFAULT_AUDIENCE`]; draft-07 tokens carry it
    /// only when it is set.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Sets `sub`: the user or client the token is for (RFC 9068 asks for one).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the lifetime; `None` mints a token without `exp` (draft-07 only).
    pub fn expires_in(mut self, lifetime: Option<Duration>) -> Self {
        self.expires_in = lifetime;
        self
    }

    /// The claim layout.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The lifetime tokens are minted with; `None` for tokens without `exp`.
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_in
    }

    /// Whether the token grants publishing.
    pub fn publishes(&self) -> bool {
        !self.publish.is_empty()
    }

    /// Whether the token grants subscribing.
    pub fn subscribes(&self) -> bool {
        !self.subscribe.is_empty()
    }

    /// Advice on a request that is valid but probably not what was meant, one line each.
    pub fn warnings(&self) -> Vec<String> {
        if self.format == Format::Legacy {
            return Vec::new();
        }
        // Draft-07 habits: a URI template in a Mercure 1.0 exact matcher matches only the
        // template's own text.
        self.publish
            .iter()
            .chain(&self.subscribe)
            .filter_map(|selector| match selector {
                Selector::Exact(text) if text.contains('{') && text.contains('}') => Some(format!(
                    "`{text}` looks like a URI template, but Mercure 1.0 matches it exactly: \
                     use urlpattern:PATTERN (https://example.com/books/:id), or --legacy"
                )),
                _ => None,
            })
            .collect()
    }

    /// The claims of the token, with `now` as `iat` and `jti` as its id.
    fn claims(&self, now: u64, jti: &str) -> Result<Value, MintError> {
        if self.publish.is_empty() && self.subscribe.is_empty() {
            return Err(MintError::NoSelector);
        }
        let expires_at = match self.expires_in {
            // Rounded up, so that a lifetime under a second still leaves the token usable.
            Some(lifetime) => Some(
                now.checked_add(lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0))
                    // RFC 7519 numeric dates are JSON numbers; past 2^53 they lose precision.
                    .filter(|exp| *exp < 1 << 53)
                    .ok_or(MintError::ExpiryTooFar)?,
            ),
            None => None,
        };
        let mut claims = Map::new();
        match self.format {
            Format::Rfc9068 => {
                let expires_at = expires_at.ok_or(MintError::NoExpiry)?;
                if self.payload.is_some() && self.subscribe.is_empty() {
                    return Err(MintError::PayloadWithoutSubscribe);
                }
                let issuer = self.issuer.as_deref().unwrap_or(DEFAULT_ISSUER);
                let audience = self.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE);
                claims.insert("iss".into(), issuer.into());
                claims.insert("aud".into(), audience.into());
                claims.insert("exp".into(), expires_at.into());
                claims.insert("iat".into(), now.into());
                claims.insert("jti".into(), jti.into());
                let mut details = Vec::new();
                for (action, selectors) in
                    [("publish", &self.publish), ("subscribe", &self.subscribe)]
                {
                    if selectors.is_empty() {
                        continue;
                    }
                    let topics: Vec<Value> = selectors
                        .iter()
                        .map(|s| json!({ "match": s.text(), "match_type": s.match_type() }))
                        .collect();
                    let mut detail = json!({
                        "type": AUTHORIZATION_DETAIL_TYPE,
                        "actions": [action],
                        "topics": topics,
                    });
                    if let (Some(payload), "subscribe") = (&self.payload, action) {
                        detail["payload"] = payload.clone();
                    }
                    details.push(detail);
                }
                claims.insert("authorization_details".into(), details.into());
            }
            Format::Legacy => {
                let mut mercure = Map::new();
                for (action, selectors) in
                    [("publish", &self.publish), ("subscribe", &self.subscribe)]
                {
                    if selectors.is_empty() {
                        continue;
                    }
                    let mut topics = Vec::new();
                    for selector in selectors {
                        match selector {
                            Selector::Exact(text) => topics.push(Value::from(text.as_str())),
                            Selector::UrlPattern(pattern) => {
                                return Err(MintError::UrlPatternInLegacy {
                                    pattern: pattern.clone(),
                                })
                            }
                        }
                    }
                    mercure.insert(action.into(), topics.into());
                }
                if let Some(payload) = &self.payload {
                    mercure.insert("payload".into(), payload.clone());
                }
                claims.insert("mercure".into(), mercure.into());
                if let Some(expires_at) = expires_at {
                    claims.insert("exp".into(), expires_at.into());
                }
                // Draft-07 hubs read neither: carried only when asked for.
                if let Some(issuer) = &self.issuer {
                    claims.insert("iss".into(), issuer.as_str().into());
                }
                if let Some(audience) = &self.audience {
                    claims.insert("aud".into(), audience.as_str().into());
                }
            }
        }
        if let Some(subject) = &self.subject {
            claims.insert("sub".into(), subject.as_str().into());
        }
        Ok(claims.into())
    }
}

/// A private key or HMAC secret with the one algorithm it signs with.
///
/// `Debug` shows the algorithm only.
///
/// RSA signing (`RS*`, `PS*`) goes through the `rsa` crate, whose private-key operations are
/// not constant-time (RUSTSEC-2023-0071, the Marvin attack; no fixed version exists): an
/// attacker who can time many signatures over the network could in principle recover the key.
/// Minting a token per request in a web application is such a case: prefer `ES256` or `EdDSA`
/// keys there (or HMAC). Signing locally, as `quicksilver token` does, is not exposed.
#[derive(Clone)]
pub struct SigningKey {
    algorithm: Algorithm,
    /// The algorithm's name, as in JWT headers.
    name: &'static str,
    key: EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("algorithm", &self.name).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Builds a key for the algorithm named `alg` (`HS256`, `RS256`, ..., as in JWT headers):
    /// `material` is the secret's bytes for HMAC, else a PEM private key (PKCS#8 `PRIVATE KEY`,
    /// or PKCS#1 `RSA PRIVATE KEY`). The key signs a test message here, so that a key that does
    /// not fit its algorithm (an ES384 key for ES256, a public key) is refused now, with a
    /// message that says why.
    pub fn new(alg: &str, material: &[u8]) -> Result<Self, MintError> {
        let unknown = || MintError::UnknownAlgorithm { alg: alg.to_owned() };
        let name = ALGORITHMS.into_iter().find(|name| *name == alg).ok_or_else(unknown)?;
        let algorithm: Algorithm = name.parse().map_err(|_| unknown())?;
        let pem = std::str::from_utf8(material).ok().filter(|text| text.contains("-----BEGIN "));
        if algorithm.family() == Algorithm::HS256.family() {
            if material.is_empty() {
                return Err(MintError::EmptySecret { alg: name });
            }
            if pem.is_some() {
                return Err(MintError::PemAsSecret { alg: name });
            }
            // Any non-empty byte string is an HMAC key.
            return Ok(Self { algorithm, name, key: EncodingKey::from_secret(material) });
        }
        let (expected, loaded) = match algorithm {
            Algorithm::ES256 => ("a P-256 EC private key", EncodingKey::from_ec_pem(material)),
            Algorithm::ES384 => ("a P-384 EC private key", EncodingKey::from_ec_pem(material)),
            Algorithm::EdDSA => ("an Ed25519 private key", EncodingKey::from_ed_pem(material)),
            // RS* and PS* (HMAC returned above).
            _ => ("an RSA private key", EncodingKey::from_rsa_pem(material)),
        };
        let mismatch = |problem| MintError::KeyMismatch { alg: name, expected, problem };
        let Some(pem) = pem else {
            return Err(mismatch("the key is not PEM (-----BEGIN PRIVATE KEY----- ...)"));
        };
        let problem = if pem.contains("PUBLIC KEY-----") || pem.contains("CERTIFICATE-----") {
            "this is a public key or certificate: signing needs the private key"
        } else if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            "the key is encrypted: decrypt it first (openssl pkcs8 -in KEY -out PLAIN)"
        } else if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
            "the key is in SEC1 form: convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt -in \
             KEY -out KEY8)"
        } else {
            "the key is of another type or curve"
        };
        let key = Self { algorithm, name, key: loaded.map_err(|_| mismatch(problem))? };
        // `from_rsa_pem` also takes public keys, and the EC loader does not check the curve:
        // signing once is the check that covers every case.
        jsonwebtoken::encode(&Header::new(algorithm), &json!({}), &key.key)
            .map_err(|_| mismatch(problem))?;
        Ok(key)
    }

    /// The name of the algorithm this key signs with, as written in JWT headers (`alg`):
    /// `HS256`, `RS256`, `EdDSA`, ...
    pub fn algorithm(&self) -> &'static str {
        self.name
    }
}

/// Mints the token `request` describes, signed with `key`, issued now.
pub fn mint(request: &TokenRequest, key: &SigningKey) -> Result<String, MintError> {
    mint_at(request, key, SystemTime::now())
}

/// [`mint`] with the issue time given, for tests and reproducible tokens.
pub fn mint_at(
    request: &TokenRequest,
    key: &SigningKey,
    now: SystemTime,
) -> Result<String, MintError> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    // Random, so that a hub or an authorization server can tell two tokens apart (RFC 9068
    // asks for a unique `jti`) and revoke one.
    let jti = uuid::Uuid::new_v4().to_string();
    let claims = request.claims(now, &jti)?;
    let mut header = Header::new(key.algorithm);
    header.typ = match request.format {
        Format::Rfc9068 => Some(ACCESS_TOKEN_TYP.to_owned()),
        // Draft-07 tokens are plain JWTs; their hubs never read `typ`.
        Format::Legacy => None,
    };
    // The key signed once already in `SigningKey::new`, with the same algorithm.
    jsonwebtoken::encode(&header, &claims, &key.key).map_err(|_| MintError::KeyMismatch {
        alg: key.name,
        expected: "a key that can sign",
        problem: "signing failed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-secret-for-the-mint-tests";

    fn claims(token: &str) -> (Value, Value) {
        let part = |i: usize| {
            let text = token.split('.').nth(i).expect("three parts");
            let bytes = base64url(text);
            serde_json::from_slice::<Value>(&bytes).expect("JSON")
        };
        (part(0), part(1))
    }

    /// A small base64url decoder, so that the tests read tokens without trusting the crate
    /// that wrote them.
    fn base64url(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            _ => 63,
        };
        let mut out = Vec::new();
        let (mut bits, mut count) = (0u32, 0);
        for c in text.bytes() {
            bits = bits << 6 | u32::from(value(c));
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
            }
        }
        out
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn rfc9068_layout() {
        let key = SigningKey::new("HS256", SECRET).expect("key");
        let request = TokenRequest::new(Format::Rfc9068)
            .publish(Selector::parse("*").expect("selector"))
            .subscribe(Selector::parse("urlpattern:https://example.com/books/:id").expect("sel"))
            .payload(json!({"user": 1}))
            .subject("alice");
        let (header, claims) = claims(&mint_at(&request, &key, at(1000)).expect("mint"));
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], "HS256");
        assert_eq!(claims["iss"], DEFAULT_ISSUER);
        assert_eq!(claims["aud"], DEFAULT_AUDIENCE);
        assert_eq!((claims["iat"].as_u64(), claims["exp"].as_u64()), (Some(1000), Some(4600)));
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["jti"].as_str().map(str::len), Some(36));
        assert_eq!(
            claims["authorization_details"],
            json!([
                {
                    "type": AUTHORIZATION_DETAIL_TYPE,
                    "actions": ["publish"],
                    "topics": [{"match": "*", "match_type": "exact"}],
                },
                {
                    "type": AUTHORIZATION_DETAIL_TYPE,
                    "actions": ["subscribe"],
                    "topics": [{"match": "https://example.com/books/:id", "match_type": "urlpattern"}],
                    "payload": {"user": 1},
                },
            ])
        );
        assert!(claims.get("mercure").is_none());
    }

    #[test]
    fn legacy_layout() {
        let key = SigningKey::new("HS512", SECRET).expect("key");
        let request = TokenRequest::new(Format::Legacy)
            .subscribe(Selector::parse("https://example.com/books/{id}").expect("selector"))
            .payload(json!("p"))
            .expires_in(None);
        let (header, claims) = claims(&mint_at(&request, &key, at(1000)).expect("mint"));
        assert!(header.get("typ").is_none(), "{header}");
        assert_eq!((header["alg"].as_str(), key.algorithm()), (Some("HS512"), "HS512"));
        assert!(!format!("{key:?}").contains("a-secret"), "{key:?}");
        assert_eq!(
            claims,
            json!({"mercure": {"subscribe": ["https://example.com/books/{id}"], "payload": "p"}})
        );
        assert!(request.warnings().is_empty(), "templates are draft-07 selectors");
    }

    #[test]
    fn refusals() {
        let key = SigningKey::new("HS256", SECRET).expect("key");
        let star = || Selector::parse("*").expect("selector");
        let cases = [
            (TokenRequest::new(Format::Rfc9068), "grant nothing"),
            (TokenRequest::new(Format::Rfc9068).publish(star()).expires_in(None), "must expire"),
            (TokenRequest::new(Format::Rfc9068).publish(star()).payload(json!(1)), "--subscribe"),
            (
                TokenRequest::new(Format::Legacy).publish(Selector::UrlPattern("/a/:b".into())),
                "no URL Pattern",
            ),
            (
                TokenRequest::new(Format::Legacy)
                    .publish(star())
                    .expires_in(Some(Duration::from_secs(u64::MAX))),
                "too long",
            ),
        ];
        for (request, expected) in cases {
            let message = mint(&request, &key).expect_err("refused").to_string();
            assert!(message.contains(expected), "{message:?} should say {expected:?}");
        }
        assert!(matches!(Selector::parse(""), Err(MintError::EmptySelector)));
        assert!(matches!(Selector::parse("urlpattern:"), Err(MintError::EmptySelector)));
    }

    #[test]
    fn template_in_rfc9068_exact_is_warned_about() {
        let request = TokenRequest::new(Format::Rfc9068)
            .subscribe(Selector::parse("https://example.com/books/{id}").expect("selector"));
        let warnings = request.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("urlpattern:"), "{warnings:?}");
    }

    #[test]
    fn keys_are_checked_against_their_algorithm() {
        let cases: [(&str, &[u8], &str); 5] = [
            ("HS999", b"k", "unsupported algorithm"),
            ("HS256", b"", "non-empty"),
            ("HS256", b"-----BEGIN PRIVATE KEY-----\nMC4=\n-----END PRIVATE KEY-----\n", "--alg"),
            ("RS256", b"secret", "not PEM"),
            ("ES256", b"-----BEGIN PUBLIC KEY-----\nMC4=\n-----END PUBLIC KEY-----\n", "public"),
        ];
        for (alg, material, expected) in cases {
            let message = SigningKey::new(alg, material).expect_err("refused").to_string();
            assert!(message.contains(expected), "{alg}: {message:?} should say {expected:?}");
            assert!(!message.contains("secret\n"), "never the key");
        }
    }

    fn fixture(name: &str) -> String {
        // The workspace's key fixtures, shared with the hub's tests.
        let path = format!("{}/../tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).expect("key fixture")
    }

    #[test]
    fn private_keys_sign_with_their_algorithm_only() {
        for (alg, file) in [
            ("RS256", "rsa_private.pem"),
            ("PS512", "rsa_private.pem"),
            ("ES256", "es256_private.pem"),
            ("ES384", "es384_private.pem"),
            ("EdDSA", "ed25519_private.pem"),
        ] {
            let key = SigningKey::new(alg, fixture(file).as_bytes()).expect(alg);
            let request =
                TokenRequest::new(Format::Rfc9068).publish(Selector::parse("*").expect("*"));
            let (header, _) = claims(&mint(&request, &key).expect("mint"));
            assert_eq!(header["alg"], alg);
            assert_eq!(key.algorithm(), alg, "the name written in the header");
            assert_eq!(format!("{key:?}"), format!("SigningKey {{ algorithm: {alg:?}, .. }}"));
        }
        for (alg, file, expected) in [
            ("ES256", "es384_private.pem", "P-256"),
            ("RS256", "es256_private.pem", "RSA"),
            ("EdDSA", "rsa_private.pem", "Ed25519"),
            ("RS256", "rsa_public.pem", "public key"),
            ("ES256", "es256_cert.pem", "certificate"),
        ] {
            let message =
                SigningKey::new(alg, fixture(file).as_bytes()).expect_err(file).to_string();
            assert!(message.contains(expected), "{alg} {file}: {message}");
        }
    }
}
