//! JWTs for publishers and subscribers.
//!
//! The tool mints its own tokens from `--key` with the claims a hub needs to let it do anything
//! (`publish: ["*"]` or `subscribe: ["*"]`) and no `exp`, so a token never expires during a run.
//! Tokens given on the command line are used as they are.

use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde_json::json;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `{"mercure":{"publish":["*"]}}`.
    Publisher,
    /// `{"mercure":{"subscribe":["*"]}}`.
    Subscriber,
}

/// A token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The key does not fit the algorithm (for example not a PEM private key for RS256).
    #[error("the key is not usable with {alg:?}: {source}")]
    Key {
        /// The algorithm asked for.
        alg: Algorithm,
        /// What jsonwebtoken said.
        source: jsonwebtoken::errors::Error,
    },
    /// Signing failed.
    #[error("signing the token failed: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// Mints a token for `role`, signed with `key` (an HMAC secret, or a PEM private key for the
/// asymmetric algorithms) and `alg`.
pub fn mint(role: Role, alg: Algorithm, key: &[u8]) -> Result<String, TokenError> {
    let key = encoding_key(alg, key).map_err(|source| TokenError::Key { alg, source })?;
    let claims = match role {
        Role::Publisher => json!({ "mercure": { "publish": ["*"] } }),
        Role::Subscriber => json!({ "mercure": { "subscribe": ["*"] } }),
    };
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).map_err(TokenError::Sign)
}

/// Reads `key` the way `alg` needs it.
fn encoding_key(alg: Algorithm, key: &[u8]) -> jsonwebtoken::errors::Result<EncodingKey> {
    match alg.family() {
        AlgorithmFamily::Hmac => Ok(EncodingKey::from_secret(key)),
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(key),
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(key),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn decode(token: &str, alg: Algorithm, key: &[u8]) -> serde_json::Value {
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(
            token,
            &DecodingKey::from_secret(key),
            &validation,
        )
        .expect("the minted token verifies with the same key")
        .claims
    }

    #[test]
    fn publisher_and_subscriber_claims() {
        let publisher = mint(Role::Publisher, Algorithm::HS256, b"k").expect("HS256 mints");
        assert_eq!(
            decode(&publisher, Algorithm::HS256, b"k"),
            json!({ "mercure": { "publish": ["*"] } })
        );
        let subscriber = mint(Role::Subscriber, Algorithm::HS512, b"k").expect("HS512 mints");
        assert_eq!(
            decode(&subscriber, Algorithm::HS512, b"k"),
            json!({ "mercure": { "subscribe": ["*"] } })
        );
        // Hubs refuse an Authorization header shorter than 48 characters (protocol 1.5 #40).
        assert!(publisher.len() + "Bearer ".len() >= 48);
    }

    #[test]
    fn the_header_names_the_algorithm() {
        let token = mint(Role::Publisher, Algorithm::HS384, b"k").expect("HS384 mints");
        let header = jsonwebtoken::decode_header(&token).expect("a JWS header");
        assert_eq!(header.alg, Algorithm::HS384);
    }

    #[test]
    fn a_secret_is_not_an_rsa_key() {
        let error = mint(Role::Publisher, Algorithm::RS256, b"not a pem").expect_err("refused");
        assert!(matches!(error, TokenError::Key { alg: Algorithm::RS256, .. }));
    }
}
