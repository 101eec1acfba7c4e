//! JWS token verification for the Mercure authorization layer.
//!
//! This module owns everything about tokens: loading the statically configured key of
//! each role (publisher, subscriber), pinning the algorithm that key is used with,
//! verifying signature, `exp` and `nbf`, and extracting the Mercure claims. The
//! authorization layer decides what a verified token may do with them.
//!
//! The rules follow the reference hub (dunglas/mercure v0.21.4):
//!
//! - `HS256`/`HS384`/`HS512` use the configured string's bytes as the secret.
//! - `RS256`/`RS384`/`RS512` use a PEM RSA public key (SPKI `PUBLIC KEY` or PKCS#1
//!   `RSA PUBLIC KEY`) or an X.509 `CERTIFICATE`, whose public key is used.
//! - `ES256`/`ES384` use a PEM EC public key on the matching curve (P-256, P-384), or a
//!   certificate holding one; `EdDSA` a PEM Ed25519 public key or a certificate.
//!   A certificate is only a container for its public key (jsonwebtoken extracts it):
//!   its validity dates, issuer and chain are not checked, as in the reference.
//! - Keys are parsed and checked for their algorithm when the verifier is built, so a
//!   wrong key fails at startup rather than on every request. RSA moduli above 4096
//!   bits are refused there, because the RSA crate refuses them when verifying.
//! - `PS256`/`PS384`/`PS512` are refused with a static key, as in the reference, which
//!   only accepts them through a JWK Set.
//! - The configured algorithm is the only one accepted: a token whose header names
//!   another (`none` included) is rejected before any key is used, which rules out
//!   `alg: none` and HMAC/RSA confusion.
//! - `exp` and `nbf` are enforced when present, with no leeway (a token expires at its
//!   `exp` second, as RFC 7519 says); `iat`, `aud`, `iss` and `sub` are neither checked
//!   nor required, whatever their type.
//! - The `mercure` claim holds `publish`, `subscribe` and `payload`; a claim named
//!   `https://mercure.rocks/` replaces it when present. A wrongly typed Mercure claim
//!   invalidates the token; a missing one grants nothing. Claim names are matched
//!   exactly (Go's JSON decoding in the reference would also match `Mercure`).
//!
//! Neither tokens nor key material ever appear in errors or `Debug` output: errors only
//! say what kind of problem was found.
//!
//! Mercure 1.0 access tokens ([`access_token`](crate::access_token)) reuse this module's
//! key loading (through [`JwtVerifier`]), segment splitting, signature check and claim
//! helpers, which are crate-visible for that purpose only.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

/// The algorithm names accepted in configuration, as listed in error messages.
const ACCEPTED_ALGORITHMS: &str = "HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, EdDSA";

/// The claim that, when present, replaces `mercure` (the reference hub's namespaced form).
const NAMESPACED_CLAIM: &str = "https://mercure.rocks/";

/// One configured verification key with its pinned algorithm.
///
/// Built once from configuration and shared by every request; cloning is cheap enough
/// for that (the key bytes are copied). `Debug` prints the algorithm only, never key
/// material.
#[derive(Clone)]
pub struct JwtVerifier {
    algorithm: Algorithm,
    name: &'static str,
    key: DecodingKey,
}

/// The Mercure part of a verified token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MercureClaims {
    /// `mercure.publish`: topic selectors this token may publish to; None when absent.
    pub publish: Option<Vec<String>>,
    /// `mercure.subscribe`: selectors this token may receive private updates for.
    pub subscribe: Option<Vec<String>>,
    /// `mercure.payload`: arbitrary JSON shared with subscription events.
    pub payload: Option<Value>,
    /// `exp` as seconds since the Unix epoch, if the token has one (subscriber streams end
    /// by then). Fractional values are rounded and values beyond `u64` saturate.
    pub expires_at: Option<u64>,
}

/// Why a configured key and algorithm cannot be used; raised at construction.
///
/// The messages describe what was expected without quoting the key; the caller
/// prefixes the name of the configuration entry.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The algorithm name is not one this hub accepts.
    #[error("unsupported JWT algorithm {alg:?}; expected one of {ACCEPTED_ALGORITHMS}")]
    UnknownAlgorithm {
        /// The configured name, as written.
        alg: String,
    },
    /// RSASSA-PSS algorithms, which the reference hub accepts only with a JWK Set.
    #[error("unexpected signing method: {alg} is only supported with a JWK Set")]
    JwkSetOnly {
        /// The configured algorithm.
        alg: &'static str,
    },
    /// An HMAC algorithm was configured with an empty secret, which anyone could sign with.
    #[error("{alg} needs a non-empty secret")]
    EmptySecret {
        /// The configured algorithm.
        alg: &'static str,
    },
    /// The key does not parse as what the algorithm needs.
    #[error("{alg} needs {expected}: {problem}")]
    InvalidKey {
        /// The configured algorithm.
        alg: &'static str,
        /// What kind of key the algorithm takes.
        expected: &'static str,
        /// What is wrong with the configured value (never the value itself).
        problem: String,
    },
}

/// Why a token was rejected.
///
/// The messages are short, never contain the token, and are safe to show a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS with a JSON header and a JSON object payload.
    #[error("malformed token")]
    Malformed,
    /// The header's `alg` is not the configured algorithm (`none` included).
    #[error("unexpected signing algorithm")]
    WrongAlgorithm,
    /// The signature does not match the configured key.
    #[error("invalid signature")]
    BadSignature,
    /// `exp` is not in the future.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not valid yet")]
    NotYetValid,
    /// A claim this hub reads has the wrong type; the text names the claim.
    #[error("invalid claims: {0}")]
    InvalidClaims(&'static str),
}

impl JwtVerifier {
    /// Builds a verifier for `key` used with the algorithm named `alg`.
    ///
    /// `alg` is the configured algorithm name ("HS256", "RS256", ...), matched exactly.
    /// HMAC algorithms take `key` as a raw secret; the others take PEM (see the module
    /// documentation). The key is fully parsed and checked against the algorithm here,
    /// so a verifier that exists can verify tokens.
    pub fn new(key: &str, alg: &str) -> Result<Self, KeyError> {
        let (algorithm, name) = parse_algorithm(alg)?;
        let key = load_key(algorithm, name, key)?;

        Ok(Self { algorithm, name, key })
    }

    /// The pinned algorithm name, for messages.
    pub fn algorithm(&self) -> &'static str {
        self.name
    }

    /// Verifies signature, alg, exp and nbf and returns the Mercure claims.
    pub fn verify(&self, token: &str) -> Result<MercureClaims, TokenError> {
        self.verify_at(token, unix_now())
    }

    /// [`JwtVerifier::verify`] with the current time given, so tests can pin it.
    fn verify_at(&self, token: &str, now: u64) -> Result<MercureClaims, TokenError> {
        let segments = Segments::split(token)?;

        // The pin: nothing but the configured algorithm is ever used to verify, so a
        // header naming `none`, or HS256 against an RSA key, stops here.
        if header_algorithm(segments.header)? != self.name {
            return Err(TokenError::WrongAlgorithm);
        }

        // jsonwebtoken's `decode` is not used because it also deserialises the payload
        // into its own registered-claims struct, which rejects some wrongly typed claims
        // this hub ignores (`sub` as an array, say) and accepts others: verifying the
        // signature directly keeps every rule in this module.
        verify_signature(&segments, &self.key, self.algorithm)?;

        // Only a payload signed by the configured key is parsed.
        let mut claims = json_object(segments.payload)?;

        let expires_at = numeric_date(claims.get("exp"), "`exp` must be a number")?;
        if expires_at.is_some_and(|exp| exp <= now) {
            return Err(TokenError::Expired);
        }
        let not_before = numeric_date(claims.get("nbf"), "`nbf` must be a number")?;
        if not_before.is_some_and(|nbf| nbf > now) {
            return Err(TokenError::NotYetValid);
        }

        // Like the reference, `mercure` must be well formed even when the namespaced
        // claim replaces it.
        let mut mercure = mercure_claim(claims.remove("mercure"))?;
        if let Some(namespaced) = claims.remove(NAMESPACED_CLAIM).filter(|v| !v.is_null()) {
            mercure = mercure_claim(Some(namespaced))?;
        }
        mercure.expires_at = expires_at;
        Ok(mercure)
    }
}

impl JwtVerifier {
    /// The pinned algorithm, for verifiers built on this one (access tokens).
    pub(crate) fn jwt_algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The loaded key, for verifiers built on this one (access tokens).
    pub(crate) fn key(&self) -> &DecodingKey {
        &self.key
    }
}

/// The segments of a compact JWS, split but not decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segments<'a> {
    /// The base64url header segment.
    pub(crate) header: &'a str,
    /// The base64url payload segment.
    pub(crate) payload: &'a str,
    /// The base64url signature segment.
    pub(crate) signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signed: &'a str,
}

impl<'a> Segments<'a> {
    /// Splits a compact JWS into exactly three segments.
    pub(crate) fn split(token: &'a str) -> Result<Self, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let signed = token.get(..header.len() + 1 + payload.len()).ok_or(TokenError::Malformed)?;
        Ok(Self { header, payload, signature, signed })
    }
}

/// Checks the signature of `segments` with `key` used as `algorithm`, and nothing else.
///
/// The caller has already decided that `algorithm` is the one to use (pinned, or allowed
/// for the key); the header's `alg` is not read here.
pub(crate) fn verify_signature(
    segments: &Segments<'_>,
    key: &DecodingKey,
    algorithm: Algorithm,
) -> Result<(), TokenError> {
    match jsonwebtoken::crypto::verify(
        segments.signature,
        segments.signed.as_bytes(),
        key,
        algorithm,
    ) {
        Ok(true) => Ok(()),
        Ok(false) => Err(TokenError::BadSignature),
        Err(err) => Err(token_error(&err)),
    }
}

/// Decodes a base64url segment holding a JSON object (a header or a payload).
pub(crate) fn json_object(segment: &str) -> Result<Map<String, Value>, TokenError> {
    let json = base64url_decode(segment.as_bytes()).ok_or(TokenError::Malformed)?;
    // A map rather than a struct, which serde would also fill from a JSON array.
    serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier").field("algorithm", &self.name).finish_non_exhaustive()
    }
}

/// Maps a configured algorithm name to jsonwebtoken's algorithm and our static name.
fn parse_algorithm(alg: &str) -> Result<(Algorithm, &'static str), KeyError> {
    let parsed = match alg {
        "HS256" => (Algorithm::HS256, "HS256"),
        "HS384" => (Algorithm::HS384, "HS384"),
        "HS512" => (Algorithm::HS512, "HS512"),
        "RS256" => (Algorithm::RS256, "RS256"),
        "RS384" => (Algorithm::RS384, "RS384"),
        "RS512" => (Algorithm::RS512, "RS512"),
        "ES256" => (Algorithm::ES256, "ES256"),
        "ES384" => (Algorithm::ES384, "ES384"),
        "EdDSA" => (Algorithm::EdDSA, "EdDSA"),
        "PS256" => return Err(KeyError::JwkSetOnly { alg: "PS256" }),
        "PS384" => return Err(KeyError::JwkSetOnly { alg: "PS384" }),
        "PS512" => return Err(KeyError::JwkSetOnly { alg: "PS512" }),
        other => return Err(KeyError::UnknownAlgorithm { alg: other.to_owned() }),
    };
    Ok(parsed)
}

/// The PEM labels each asymmetric family accepts, and how the expected key is described.
struct PemRequirements {
    labels: &'static [&'static str],
    expected: &'static str,
}

const RSA_KEY: PemRequirements = PemRequirements {
    labels: &["PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE"],
    expected: "a PEM-encoded RSA public key (PUBLIC KEY or RSA PUBLIC KEY block) \
               or an X.509 certificate",
};
const P256_KEY: PemRequirements = PemRequirements {
    labels: &["PUBLIC KEY", "CERTIFICATE"],
    expected: "a PEM-encoded EC P-256 public key (PUBLIC KEY block) or an X.509 certificate",
};
const P384_KEY: PemRequirements = PemRequirements {
    labels: &["PUBLIC KEY", "CERTIFICATE"],
    expected: "a PEM-encoded EC P-384 public key (PUBLIC KEY block) or an X.509 certificate",
};
const ED25519_KEY: PemRequirements = PemRequirements {
    labels: &["PUBLIC KEY", "CERTIFICATE"],
    expected: "a PEM-encoded Ed25519 public key (PUBLIC KEY block) or an X.509 certificate",
};

/// Parses `key` for `algorithm` and checks that verification will be able to use it.
///
/// jsonwebtoken's PEM loading is lenient: it accepts RSA private keys as "public" keys,
/// points on the wrong curve and short Ed25519 keys (which later make its verifier
/// panic), and it only parses RSA keys when verifying. Each of those would turn into
/// every token failing, or worse, so they are all caught here.
fn load_key(algorithm: Algorithm, name: &'static str, key: &str) -> Result<DecodingKey, KeyError> {
    let invalid = |req: &PemRequirements, problem: &str| KeyError::InvalidKey {
        alg: name,
        expected: req.expected,
        problem: problem.to_owned(),
    };

    match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            if key.is_empty() {
                return Err(KeyError::EmptySecret { alg: name });
            }
            Ok(DecodingKey::from_secret(key.as_bytes()))
        }
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
            let label = check_pem(name, &RSA_KEY, key)?;
            let decoding = DecodingKey::from_rsa_pem(key.as_bytes())
                .map_err(|_| invalid(&RSA_KEY, unreadable(label)))?;
            // Converting to a JWK parses the RSA key the way verification will, including
            // the RSA crate's 4096-bit modulus limit.
            jsonwebtoken::jwk::Jwk::from_decoding_key(&decoding, Some(algorithm)).map_err(
                |_| invalid(&RSA_KEY, "the RSA key is corrupt or its modulus exceeds 4096 bits"),
            )?;
            Ok(decoding)
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let req = if algorithm == Algorithm::ES256 { &P256_KEY } else { &P384_KEY };
            let label = check_pem(name, req, key)?;
            let decoding = DecodingKey::from_ec_pem(key.as_bytes())
                .map_err(|_| invalid(req, unreadable(label)))?;
            if !usable(&decoding, algorithm) {
                return Err(invalid(req, "the EC key is on another curve or corrupt"));
            }
            Ok(decoding)
        }
        Algorithm::EdDSA => {
            let label = check_pem(name, &ED25519_KEY, key)?;
            let decoding = DecodingKey::from_ed_pem(key.as_bytes())
                .map_err(|_| invalid(&ED25519_KEY, unreadable(label)))?;
            // jsonwebtoken's Ed25519 verifier slices the first 32 bytes without checking
            // the length, so anything else must never reach it.
            if decoding.try_get_as_bytes().map(<[u8]>::len).ok() != Some(32) {
                return Err(invalid(&ED25519_KEY, "an Ed25519 public key is 32 bytes"));
            }
            if !usable(&decoding, algorithm) {
                return Err(invalid(&ED25519_KEY, "the Ed25519 key is corrupt"));
            }
            Ok(decoding)
        }
        // PS* are refused by `parse_algorithm`; this arm covers them and any algorithm a
        // later jsonwebtoken adds.
        _ => Err(KeyError::UnknownAlgorithm { alg: name.to_owned() }),
    }
}

/// Explains a PEM block that jsonwebtoken could not read, given its label.
fn unreadable(label: PemLabel) -> &'static str {
    match label {
        PemLabel::Certificate => {
            "the certificate holds another kind of key or could not be read \
             (configure the PEM public key instead)"
        }
        PemLabel::PublicKey => "the PEM block holds another kind of key or is corrupt",
    }
}

/// Whether jsonwebtoken can build a verifier for `key` and `algorithm`.
pub(crate) fn usable(key: &DecodingKey, algorithm: Algorithm) -> bool {
    // An empty signature never verifies; an error (rather than `Ok(false)`) means the
    // verifier could not be built from the key, which is what is being tested.
    jsonwebtoken::crypto::verify("", b"", key, algorithm).is_ok()
}

/// Which kind of accepted PEM block a key was.
#[derive(Clone, Copy)]
enum PemLabel {
    PublicKey,
    Certificate,
}

/// Checks the label of the first PEM block of `key` against `req`, so that private keys
/// and other blocks are refused with a precise message.
fn check_pem(name: &'static str, req: &PemRequirements, key: &str) -> Result<PemLabel, KeyError> {
    let invalid =
        |problem: String| KeyError::InvalidKey { alg: name, expected: req.expected, problem };
    // A PEM pasted into an environment variable often arrives with its line breaks
    // escaped; nothing parses it then, so say why.
    if key.contains("\\n") && !key.contains('\n') {
        return Err(invalid(
            "the value is not PEM (its line breaks look escaped as \\n)".to_owned(),
        ));
    }
    let Some(label) = pem_label(key) else {
        return Err(invalid("the value is not PEM (no -----BEGIN line)".to_owned()));
    };
    if req.labels.contains(&label) {
        return Ok(if label == "CERTIFICATE" {
            PemLabel::Certificate
        } else {
            PemLabel::PublicKey
        });
    }
    if label.contains("PRIVATE KEY") {
        return Err(invalid(
            "got a private key; configure the matching public key instead".to_owned(),
        ));
    }
    // The label is not secret, but quote it only when it looks like one.
    let looks_like_label = label.len() <= 40
        && label.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
    Err(invalid(if looks_like_label {
        format!("got a PEM block of type {label:?}")
    } else {
        "got a PEM block of an unexpected type".to_owned()
    }))
}

/// The label of the first `-----BEGIN <label>-----` line in `text`, if any.
fn pem_label(text: &str) -> Option<&str> {
    const BEGIN: &str = "-----BEGIN ";
    let rest = text.get(text.find(BEGIN)? + BEGIN.len()..)?;
    let end = rest.find("-----")?;
    let label = rest.get(..end)?;
    (!label.contains('\n')).then_some(label)
}

/// The `alg` of a token's header segment, read before any verification.
fn header_algorithm(header: &str) -> Result<String, TokenError> {
    let json = base64url_decode(header.as_bytes()).ok_or(TokenError::Malformed)?;
    // A map rather than a struct, which serde would also fill from a JSON array.
    let header: Map<String, Value> =
        serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    match header.get("alg") {
        Some(Value::String(alg)) => Ok(alg.clone()),
        _ => Err(TokenError::Malformed),
    }
}

/// Decodes unpadded base64url, as used by JWS compact serialisation; None if invalid.
pub(crate) fn base64url_decode(input: &[u8]) -> Option<Vec<u8>> {
    // A single leftover character cannot encode a whole byte.
    if input.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for &c in input {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            // Keep only the bits not yet emitted, so `acc` never grows past 14 bits.
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Maps an error from jsonwebtoken's signature check to ours.
fn token_error(err: &jsonwebtoken::errors::Error) -> TokenError {
    match err.kind() {
        // The signature segment is not base64url.
        ErrorKind::Base64(_) => TokenError::Malformed,
        // Otherwise no verifier could be built from the key, which construction rules
        // out; the token cannot be verified with the configured key either way.
        _ => TokenError::BadSignature,
    }
}

/// Reads a NumericDate claim (`exp`, `nbf`) as whole seconds since the epoch.
///
/// As tolerant as jsonwebtoken: any JSON number is accepted and fractions are rounded.
/// Negative values are moments before the epoch (so `0`, long past) and values past
/// `u64::MAX` saturate, which float-to-integer `as` casts do by definition. `null` counts
/// as absent, as in the reference.
pub(crate) fn numeric_date(
    value: Option<&Value>,
    err: &'static str,
) -> Result<Option<u64>, TokenError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => secs,
            (None, Some(secs)) => secs.round() as u64,
            (None, None) => return Err(TokenError::InvalidClaims(err)),
        })),
        Some(_) => Err(TokenError::InvalidClaims(err)),
    }
}

/// Interprets a `mercure` (or namespaced) claim; absent or `null` grants nothing.
fn mercure_claim(value: Option<Value>) -> Result<MercureClaims, TokenError> {
    let mut object = match value {
        None | Some(Value::Null) => return Ok(MercureClaims::default()),
        Some(Value::Object(object)) => object,
        Some(_) => return Err(TokenError::InvalidClaims("the Mercure claim must be an object")),
    };
    Ok(MercureClaims {
        publish: string_list(object.remove("publish"), "`publish` must be an array of strings")?,
        subscribe: string_list(
            object.remove("subscribe"),
            "`subscribe` must be an array of strings",
        )?,
        payload: object.remove("payload").filter(|v| !v.is_null()),
        expires_at: None,
    })
}

/// Reads an optional array of strings; `null` counts as absent.
fn string_list(value: Option<Value>, err: &'static str) -> Result<Option<Vec<String>>, TokenError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(TokenError::InvalidClaims(err)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(TokenError::InvalidClaims(err)),
    }
}

/// Seconds since the Unix epoch; a clock set before 1970 reads as the epoch itself.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    macro_rules! fixture {
        ($file:literal) => {
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/", $file))
        };
    }

    const RSA_PRIVATE: &str = fixture!("rsa_private.pem");
    const RSA_PUBLIC: &str = fixture!("rsa_public.pem");
    const RSA_PUBLIC_PKCS1: &str = fixture!("rsa_public_pkcs1.pem");
    const RSA_CERT: &str = fixture!("rsa_cert.pem");
    const RSA_OTHER_PUBLIC: &str = fixture!("rsa_other_public.pem");
    const RSA_8192_PUBLIC: &str = fixture!("rsa8192_public.pem");
    const ES256_PRIVATE: &str = fixture!("es256_private.pem");
    const ES256_PUBLIC: &str = fixture!("es256_public.pem");
    const ES256_CERT: &str = fixture!("es256_cert.pem");
    const ES384_PRIVATE: &str = fixture!("es384_private.pem");
    const ES384_PUBLIC: &str = fixture!("es384_public.pem");
    const ED25519_PRIVATE: &str = fixture!("ed25519_private.pem");
    const ED25519_PUBLIC: &str = fixture!("ed25519_public.pem");

    const SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!";
    const NOW: u64 = 1_700_000_000;

    fn verifier(key: &str, alg: &str) -> JwtVerifier {
        JwtVerifier::new(key, alg).expect("the fixture key loads")
    }

    fn key_error(key: &str, alg: &str) -> String {
        JwtVerifier::new(key, alg).expect_err("the key is refused").to_string()
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, key).expect("signing works")
    }

    fn hs256(claims: &Value) -> String {
        sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET.as_bytes()), claims)
    }

    fn rsa_key() -> EncodingKey {
        EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("RSA private fixture")
    }

    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    /// Builds a token from raw header and payload JSON with the given signature segment.
    fn raw_token(header: &str, payload: &str, signature: &str) -> String {
        format!("{}.{}.{signature}", b64(header.as_bytes()), b64(payload.as_bytes()))
    }

    fn all_rights() -> Value {
        json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}})
    }

    fn assert_all_rights(claims: &MercureClaims) {
        assert_eq!(claims.publish.as_deref(), Some(&["*".to_owned()][..]));
        assert_eq!(claims.subscribe.as_deref(), Some(&["*".to_owned()][..]));
    }

    #[test]
    fn reference_conformance_token_is_accepted() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsiKiJdLCJzdWJzY3JpYmUiOlsiKiJdfX0.bVXdlWXwfw9ySx7-iV5OpUSHo34RkjUdVzDLBcc6l_g";
        let claims = verifier(SECRET, "HS256").verify(token).expect("conformance token");
        assert_all_rights(&claims);
        assert_eq!(claims.payload, None);
        assert_eq!(claims.expires_at, None);
    }

    #[test]
    fn hmac_algorithms_accept_their_tokens() {
        for (name, alg) in
            [("HS256", Algorithm::HS256), ("HS384", Algorithm::HS384), ("HS512", Algorithm::HS512)]
        {
            let token = sign(alg, &EncodingKey::from_secret(SECRET.as_bytes()), &all_rights());
            let claims = verifier(SECRET, name).verify(&token).expect(name);
            assert_all_rights(&claims);
        }
    }

    #[test]
    fn rsa_algorithms_accept_their_tokens_with_every_key_format() {
        let algorithms =
            [("RS256", Algorithm::RS256), ("RS384", Algorithm::RS384), ("RS512", Algorithm::RS512)];
        for (name, alg) in algorithms {
            let token = sign(alg, &rsa_key(), &all_rights());
            for key in [RSA_PUBLIC, RSA_PUBLIC_PKCS1, RSA_CERT] {
                let claims = verifier(key, name).verify(&token).expect(name);
                assert_all_rights(&claims);
            }
        }
    }

    #[test]
    fn ecdsa_algorithms_accept_their_tokens() {
        let es256 = EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).expect("ES256 fixture");
        let token = sign(Algorithm::ES256, &es256, &all_rights());
        assert_all_rights(&verifier(ES256_PUBLIC, "ES256").verify(&token).expect("ES256"));
        assert_all_rights(&verifier(ES256_CERT, "ES256").verify(&token).expect("ES256 cert"));

        let es384 = EncodingKey::from_ec_pem(ES384_PRIVATE.as_bytes()).expect("ES384 fixture");
        let token = sign(Algorithm::ES384, &es384, &all_rights());
        assert_all_rights(&verifier(ES384_PUBLIC, "ES384").verify(&token).expect("ES384"));
    }

    #[test]
    fn eddsa_accepts_its_tokens() {
        let key = EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).expect("Ed25519 fixture");
        let token = sign(Algorithm::EdDSA, &key, &all_rights());
        assert_all_rights(&verifier(ED25519_PUBLIC, "EdDSA").verify(&token).expect("EdDSA"));
    }

    #[test]
    fn wrong_key_is_a_bad_signature() {
        let token = hs256(&all_rights());
        let other = verifier("another secret", "HS256");
        assert_eq!(other.verify(&token), Err(TokenError::BadSignature));

        let token = sign(Algorithm::RS256, &rsa_key(), &all_rights());
        let other = verifier(RSA_OTHER_PUBLIC, "RS256");
        assert_eq!(other.verify(&token), Err(TokenError::BadSignature));

        let es384 = EncodingKey::from_ec_pem(ES384_PRIVATE.as_bytes()).expect("ES384 fixture");
        let token = sign(Algorithm::ES384, &es384, &all_rights());
        // A valid ES384 signature, but over other claims.
        let other = sign(Algorithm::ES384, &es384, &json!({}));
        let (message, _) = token.rsplit_once('.').expect("three segments");
        let (_, signature) = other.rsplit_once('.').expect("three segments");
        let spliced = format!("{message}.{signature}");
        let es384 = verifier(ES384_PUBLIC, "ES384");
        assert_eq!(es384.verify(&spliced), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let token = hs256(&json!({"mercure": {"subscribe": ["a"]}}));
        let parts: Vec<&str> = token.split('.').collect();
        let forged =
            format!("{}.{}.{}", parts[0], b64(br#"{"mercure":{"publish":["*"]}}"#), parts[2]);
        assert_eq!(verifier(SECRET, "HS256").verify(&forged), Err(TokenError::BadSignature));
    }

    #[test]
    fn another_algorithm_in_the_header_is_refused() {
        let hs384 =
            sign(Algorithm::HS384, &EncodingKey::from_secret(SECRET.as_bytes()), &json!({}));
        assert_eq!(verifier(SECRET, "HS256").verify(&hs384), Err(TokenError::WrongAlgorithm));

        let es256 = EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).expect("ES256 fixture");
        let token = sign(Algorithm::ES256, &es256, &json!({}));
        assert_eq!(verifier(RSA_PUBLIC, "RS256").verify(&token), Err(TokenError::WrongAlgorithm));

        let rs384 = sign(Algorithm::RS384, &rsa_key(), &json!({}));
        assert_eq!(verifier(RSA_PUBLIC, "RS256").verify(&rs384), Err(TokenError::WrongAlgorithm));
    }

    #[test]
    fn alg_none_is_refused() {
        let v = verifier(SECRET, "HS256");
        let payload = r#"{"mercure":{"publish":["*"]}}"#;
        for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#, r#"{"alg":"NONE"}"#] {
            for signature in ["", "c2lnbmF0dXJl"] {
                let token = raw_token(header, payload, signature);
                assert_eq!(v.verify(&token), Err(TokenError::WrongAlgorithm), "{header}");
            }
        }
        let hs256_header_no_signature = raw_token(r#"{"alg":"HS256"}"#, payload, "");
        assert_eq!(v.verify(&hs256_header_no_signature), Err(TokenError::BadSignature));
    }

    #[test]
    fn hmac_signed_with_the_rsa_public_key_is_refused() {
        let v = verifier(RSA_PUBLIC, "RS256");
        let public_as_secret = EncodingKey::from_secret(RSA_PUBLIC.as_bytes());

        // The classic confusion attack: an HS256 token keyed with the public PEM.
        let token = sign(Algorithm::HS256, &public_as_secret, &all_rights());
        assert_eq!(v.verify(&token), Err(TokenError::WrongAlgorithm));

        // The same HMAC signature under a header claiming RS256 must not verify either.
        let header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
        let message = format!("{header}.{}", b64(br#"{"mercure":{"publish":["*"]}}"#));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &public_as_secret, Algorithm::HS256)
                .expect("HMAC signing works");
        assert_eq!(v.verify(&format!("{message}.{signature}")), Err(TokenError::BadSignature));
    }

    #[test]
    fn exp_is_enforced_without_leeway() {
        let v = verifier(SECRET, "HS256");
        let past = hs256(&json!({"exp": NOW - 1}));
        assert_eq!(v.verify_at(&past, NOW), Err(TokenError::Expired));
        let now = hs256(&json!({"exp": NOW}));
        assert_eq!(v.verify_at(&now, NOW), Err(TokenError::Expired));
        let next = hs256(&json!({"exp": NOW + 1}));
        assert_eq!(v.verify_at(&next, NOW).expect("valid").expires_at, Some(NOW + 1));

        // And against the real clock.
        let expired = hs256(&json!({"exp": unix_now() - 10}));
        assert_eq!(v.verify(&expired), Err(TokenError::Expired));
        let in_an_hour = unix_now() + 3600;
        let fresh = hs256(&json!({"exp": in_an_hour}));
        assert_eq!(v.verify(&fresh).expect("valid").expires_at, Some(in_an_hour));
    }

    #[test]
    fn nbf_is_enforced_without_leeway() {
        let v = verifier(SECRET, "HS256");
        let future = hs256(&json!({"nbf": NOW + 1}));
        assert_eq!(v.verify_at(&future, NOW), Err(TokenError::NotYetValid));
        let now = hs256(&json!({"nbf": NOW}));
        assert!(v.verify_at(&now, NOW).is_ok());
        let later = hs256(&json!({"nbf": unix_now() + 3600}));
        assert_eq!(v.verify(&later), Err(TokenError::NotYetValid));
    }

    #[test]
    fn token_without_exp_is_accepted() {
        let claims = verifier(SECRET, "HS256").verify(&hs256(&all_rights())).expect("no exp");
        assert_eq!(claims.expires_at, None);
        assert_all_rights(&claims);
    }

    #[test]
    fn numeric_dates_are_parsed_tolerantly() {
        let v = verifier(SECRET, "HS256");
        let float = hs256(&json!({"exp": (NOW + 10) as f64 + 0.4}));
        assert_eq!(v.verify_at(&float, NOW).expect("float exp").expires_at, Some(NOW + 10));
        let null = hs256(&json!({"exp": null, "nbf": null}));
        assert_eq!(v.verify_at(&null, NOW).expect("null exp").expires_at, None);
        let negative_nbf = hs256(&json!({"nbf": -5}));
        assert!(v.verify_at(&negative_nbf, NOW).is_ok());
        let negative_exp = hs256(&json!({"exp": -5}));
        assert_eq!(v.verify_at(&negative_exp, NOW), Err(TokenError::Expired));
        let huge = hs256(&json!({"exp": 1e300}));
        assert_eq!(v.verify_at(&huge, NOW).expect("huge exp").expires_at, Some(u64::MAX));
        for bad in [json!({"exp": "2000000000"}), json!({"nbf": true}), json!({"exp": [1]})] {
            assert!(matches!(v.verify_at(&hs256(&bad), NOW), Err(TokenError::InvalidClaims(_))));
        }
    }

    #[test]
    fn registered_claims_other_than_times_are_ignored() {
        let token = hs256(&json!({
            "aud": "someone-else", "iss": 42, "sub": ["x"], "iat": NOW + 1000, "jti": {},
            "mercure": {"subscribe": ["a"]}
        }));
        let claims = verifier(SECRET, "HS256").verify_at(&token, NOW).expect("ignored claims");
        assert_eq!(claims.subscribe, Some(vec!["a".to_owned()]));
    }

    #[test]
    fn namespaced_claim_replaces_mercure() {
        let v = verifier(SECRET, "HS256");
        let token = hs256(&json!({
            "mercure": {"publish": ["a"], "subscribe": ["b"], "payload": 1},
            "https://mercure.rocks/": {"subscribe": ["c"]}
        }));
        let claims = v.verify(&token).expect("namespaced");
        assert_eq!(
            claims,
            MercureClaims { subscribe: Some(vec!["c".to_owned()]), ..MercureClaims::default() }
        );

        let only_namespaced = hs256(&json!({"https://mercure.rocks/": {"publish": ["d"]}}));
        let claims = v.verify(&only_namespaced).expect("namespaced alone");
        assert_eq!(claims.publish, Some(vec!["d".to_owned()]));

        let null = hs256(&json!({"mercure": {"publish": ["a"]}, "https://mercure.rocks/": null}));
        assert_eq!(v.verify(&null).expect("null namespaced").publish, Some(vec!["a".to_owned()]));
    }

    #[test]
    fn missing_or_null_mercure_claim_grants_nothing() {
        let v = verifier(SECRET, "HS256");
        for claims in [json!({}), json!({"mercure": null}), json!({"mercure": {}})] {
            assert_eq!(v.verify(&hs256(&claims)).expect("no rights"), MercureClaims::default());
        }
        let nulls =
            hs256(&json!({"mercure": {"publish": null, "subscribe": null, "payload": null}}));
        assert_eq!(v.verify(&nulls).expect("null fields"), MercureClaims::default());
        let empty = hs256(&json!({"mercure": {"publish": []}}));
        assert_eq!(v.verify(&empty).expect("empty list").publish, Some(vec![]));
    }

    #[test]
    fn wrongly_typed_claims_invalidate_the_token() {
        let v = verifier(SECRET, "HS256");
        let bad = [
            json!({"mercure": "x"}),
            json!({"mercure": ["*"]}),
            json!({"mercure": {"publish": "*"}}),
            json!({"mercure": {"publish": ["*", 1]}}),
            json!({"mercure": {"publish": [null]}}),
            json!({"mercure": {"subscribe": {"*": true}}}),
            json!({"https://mercure.rocks/": 1}),
            json!({"https://mercure.rocks/": {"subscribe": "*"}}),
            // The reference decodes both claims, so a broken `mercure` counts even when
            // the namespaced claim replaces it.
            json!({"mercure": "x", "https://mercure.rocks/": {"subscribe": ["*"]}}),
        ];
        for claims in bad {
            let result = v.verify(&hs256(&claims));
            assert!(matches!(result, Err(TokenError::InvalidClaims(_))), "{claims}: {result:?}");
        }
    }

    #[test]
    fn payload_of_any_json_type_is_kept() {
        let v = verifier(SECRET, "HS256");
        let payloads = [
            json!("a string"),
            json!(42),
            json!(1.5),
            json!(true),
            json!(["a", 1, null]),
            json!({"user": "https://example.com/users/1", "nested": {"k": [1, 2]}}),
        ];
        for payload in payloads {
            let token = hs256(&json!({"mercure": {"payload": payload}}));
            assert_eq!(v.verify(&token).expect("payload").payload, Some(payload));
        }
    }

    #[test]
    fn garbage_tokens_are_errors_not_panics() {
        let v = verifier(SECRET, "HS256");
        let signed_non_object = |payload: &str| {
            let message = format!("{}.{}", b64(br#"{"alg":"HS256"}"#), b64(payload.as_bytes()));
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256)
                .expect("HMAC signing works");
            format!("{message}.{signature}")
        };
        let huge = "a".repeat(1 << 20);
        let huge_segments = format!("{}.{huge}.{huge}", b64(br#"{"alg":"HS256"}"#));
        let garbage = [
            String::new(),
            ".".to_owned(),
            "..".to_owned(),
            "...".to_owned(),
            "a.b".to_owned(),
            "a.b.c".to_owned(),
            "a.b.c.d".to_owned(),
            huge.clone(),
            huge_segments,
            "!!!.@@@.###".to_owned(),
            "é.é.é".to_owned(),
            "Bearer abc.def.ghi".to_owned(),
            raw_token("not json", "{}", "c2ln"),
            raw_token("[]", "{}", "c2ln"),
            raw_token(r#"{"alg":256}"#, "{}", "c2ln"),
            raw_token(r#"{"typ":"JWT"}"#, "{}", "c2ln"),
            format!("{}=.e30.c2ln", b64(br#"{"alg":"HS256"}"#)),
            raw_token(r#"{"alg":"HS256"}"#, "not json", "c2ln"),
            raw_token(r#"{"alg":"HS256"}"#, "{}", "!!!"),
            signed_non_object("not json"),
            signed_non_object("[1,2]"),
            signed_non_object("\"mercure\""),
            signed_non_object("null"),
        ];
        for token in &garbage {
            let result = v.verify(token);
            assert!(
                matches!(result, Err(TokenError::Malformed | TokenError::BadSignature)),
                "{:?}: {result:?}",
                token.get(..40)
            );
        }
        assert_eq!(v.verify(""), Err(TokenError::Malformed));
        assert_eq!(v.verify(&signed_non_object("[1,2]")), Err(TokenError::Malformed));
    }

    #[test]
    fn errors_do_not_contain_the_token() {
        let v = verifier(SECRET, "HS256");
        let token = hs256(&json!({"mercure": "secret-ish", "exp": 1}));
        for result in [v.verify(&token), v.verify(&format!("{token}x")), v.verify("a.b")] {
            let message = result.expect_err("rejected").to_string();
            for part in token.split('.') {
                assert!(!message.contains(part), "{message}");
            }
        }
    }

    #[test]
    fn pss_is_refused_with_a_static_key() {
        for alg in ["PS256", "PS384", "PS512"] {
            let message = key_error(RSA_PUBLIC, alg);
            assert_eq!(
                message,
                format!("unexpected signing method: {alg} is only supported with a JWK Set")
            );
        }
    }

    #[test]
    fn unknown_algorithms_are_refused_with_the_valid_names() {
        for alg in ["none", "hs256", "Hs256", "HS256 ", "ES512", "RSA", ""] {
            let message = key_error(SECRET, alg);
            assert!(message.contains(&format!("{alg:?}")), "{message}");
            assert!(message.contains(ACCEPTED_ALGORITHMS), "{message}");
        }
    }

    #[test]
    fn empty_hmac_secret_is_refused() {
        for alg in ["HS256", "HS384", "HS512"] {
            assert_eq!(key_error("", alg), format!("{alg} needs a non-empty secret"));
        }
    }

    #[test]
    fn unusable_keys_are_refused_with_a_helpful_message() {
        let not_pem = key_error("not a pem", "RS256");
        assert!(not_pem.starts_with("RS256 needs a PEM-encoded RSA public key"), "{not_pem}");
        assert!(not_pem.contains("not PEM"), "{not_pem}");

        let escaped = RSA_PUBLIC.replace('\n', "\\n");
        assert!(key_error(&escaped, "RS256").contains("escaped"));

        for (key, alg) in
            [(RSA_PRIVATE, "RS256"), (ES256_PRIVATE, "ES256"), (ED25519_PRIVATE, "EdDSA")]
        {
            let message = key_error(key, alg);
            assert!(message.contains("private key"), "{message}");
        }

        let cases = [
            (ES256_PUBLIC, "RS256", "RS256 needs a PEM-encoded RSA public key"),
            (ED25519_PUBLIC, "RS512", "RS512 needs a PEM-encoded RSA public key"),
            (ES256_CERT, "RS256", "RS256 needs a PEM-encoded RSA public key"),
            (RSA_PUBLIC, "ES256", "ES256 needs a PEM-encoded EC P-256 public key"),
            (RSA_CERT, "ES256", "ES256 needs a PEM-encoded EC P-256 public key"),
            (ES384_PUBLIC, "ES256", "ES256 needs a PEM-encoded EC P-256 public key"),
            (ES256_PUBLIC, "ES384", "ES384 needs a PEM-encoded EC P-384 public key"),
            (ES256_PUBLIC, "EdDSA", "EdDSA needs a PEM-encoded Ed25519 public key"),
            (RSA_PUBLIC_PKCS1, "EdDSA", "EdDSA needs a PEM-encoded Ed25519 public key"),
            (SECRET, "ES384", "ES384 needs a PEM-encoded EC P-384 public key"),
        ];
        for (key, alg, expected) in cases {
            let message = key_error(key, alg);
            assert!(message.starts_with(expected), "{alg}: {message}");
        }
    }

    #[test]
    fn rsa_keys_over_4096_bits_are_refused_at_construction() {
        // The RSA crate refuses larger moduli when verifying, so every token would fail.
        let message = key_error(RSA_8192_PUBLIC, "RS256");
        assert!(message.contains("4096 bits"), "{message}");
    }

    #[test]
    fn corrupt_pem_is_refused_not_a_panic() {
        let wrap = |label: &str, body: &str| {
            format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
        };
        let truncated: String = RSA_PUBLIC.lines().take(4).collect::<Vec<_>>().join("\n");
        // An Ed25519 SPKI whose key is 8 bytes instead of 32: jsonwebtoken would panic
        // verifying with it.
        let short_ed25519 = wrap("PUBLIC KEY", "MBIwBQYDK2VwAwkAAAAAAAAAAAA=");
        // An RSA SPKI whose inner key is not a valid PKCS#1 structure.
        let bad_rsa = wrap("PUBLIC KEY", "MBowDQYJKoZIhvcNAQEBBQADCQAwBgIBAAIBAA==");
        let keys = [
            wrap("PUBLIC KEY", "bm90IGRlcg=="),
            wrap("PUBLIC KEY", "!!!"),
            wrap("PUBLIC KEY", ""),
            wrap("CERTIFICATE", "MAA="),
            wrap("RSA PUBLIC KEY", "MAA="),
            wrap("PUBLIC KEY", "MAA="),
            wrap("SOMETHING ELSE", "MAA="),
            wrap("\u{1F600}", "MAA="),
            "-----BEGIN PUBLIC KEY-----".to_owned(),
            "-----BEGIN ".to_owned(),
            truncated,
            short_ed25519,
            bad_rsa,
        ];
        for key in &keys {
            for alg in ["RS256", "ES256", "ES384", "EdDSA"] {
                let message = key_error(key, alg);
                assert!(message.starts_with(&format!("{alg} needs ")), "{message}");
            }
        }
    }

    #[test]
    fn algorithm_and_debug_never_show_the_key() {
        let v = verifier(SECRET, "HS512");
        assert_eq!(v.algorithm(), "HS512");
        let debug = format!("{v:?}");
        assert_eq!(debug, r#"JwtVerifier { algorithm: "HS512", .. }"#);
        assert!(!debug.contains(SECRET));
        assert_eq!(verifier(ED25519_PUBLIC, "EdDSA").algorithm(), "EdDSA");
    }

    #[test]
    fn verifier_is_shareable_across_threads() {
        fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
        assert_shareable::<JwtVerifier>();
        assert_shareable::<TokenError>();
        let v = verifier(RSA_CERT, "RS256");
        let token = sign(Algorithm::RS256, &rsa_key(), &all_rights());
        assert_all_rights(&v.clone().verify(&token).expect("a clone verifies"));
    }

    #[test]
    fn base64url_decoding() {
        assert_eq!(base64url_decode(b""), Some(vec![]));
        assert_eq!(base64url_decode(b"Zg"), Some(b"f".to_vec()));
        assert_eq!(base64url_decode(b"Zm8"), Some(b"fo".to_vec()));
        assert_eq!(base64url_decode(b"Zm9v"), Some(b"foo".to_vec()));
        assert_eq!(base64url_decode(b"-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(base64url_decode(b"Z"), None);
        assert_eq!(base64url_decode(b"Zg=="), None);
        assert_eq!(base64url_decode(b"+/8"), None);
        for bytes in [&b"{\"alg\":\"HS256\"}"[..], &[0, 1, 2, 254, 255][..], b"ab"] {
            assert_eq!(base64url_decode(b64(bytes).as_bytes()).as_deref(), Some(bytes));
        }
    }
}
