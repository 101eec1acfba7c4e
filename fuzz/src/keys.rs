//! The repository's throwaway test keys (`tests/fixtures/jwt`), one per algorithm the hub
//! verifies, and token signing with them.

use jsonwebtoken::{Algorithm, EncodingKey};

/// The HMAC secret of the hub's tests and of the reference hub's examples.
pub const SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!";

macro_rules! fixture {
    ($file:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/jwt/", $file))
    };
}

/// RSA private key (PKCS#8), for RS* and PS*.
pub const RSA_PRIVATE: &str = fixture!("rsa_private.pem");
/// Its public key (SPKI).
pub const RSA_PUBLIC: &str = fixture!("rsa_public.pem");
/// P-256 private key.
pub const ES256_PRIVATE: &str = fixture!("es256_private.pem");
/// Its public key.
pub const ES256_PUBLIC: &str = fixture!("es256_public.pem");
/// P-384 private key.
pub const ES384_PRIVATE: &str = fixture!("es384_private.pem");
/// Its public key.
pub const ES384_PUBLIC: &str = fixture!("es384_public.pem");
/// Ed25519 private key.
pub const ED25519_PRIVATE: &str = fixture!("ed25519_private.pem");
/// Its public key.
pub const ED25519_PUBLIC: &str = fixture!("ed25519_public.pem");

/// The test key pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The HMAC secret [`SECRET`].
    Hmac,
    /// The RSA key, for RS* and PS*.
    Rsa,
    /// The P-256 key.
    P256,
    /// The P-384 key.
    P384,
    /// The Ed25519 key.
    Ed25519,
}

/// One algorithm the hub accepts, with the keys to sign and to verify its tokens.
#[derive(Debug, Clone, Copy)]
pub struct Algo {
    /// The name in a token's header and in the configuration.
    pub name: &'static str,
    /// jsonwebtoken's identifier.
    pub alg: Algorithm,
    /// The key pair it uses.
    pub family: Family,
    /// What `JwtVerifier::new` takes: the secret, or the PEM public key. `None` for PS*, which
    /// the hub only accepts from a JWK Set.
    pub static_key: Option<&'static str>,
}

/// Every algorithm the hub verifies: HS*, RS*, ES256/ES384 and EdDSA with static keys, PS*
/// (and the others) with a JWK Set.
pub const ALGORITHMS: [Algo; 12] = [
    Algo { name: "HS256", alg: Algorithm::HS256, family: Family::Hmac, static_key: Some(SECRET) },
    Algo { name: "HS384", alg: Algorithm::HS384, family: Family::Hmac, static_key: Some(SECRET) },
    Algo { name: "HS512", alg: Algorithm::HS512, family: Family::Hmac, static_key: Some(SECRET) },
    Algo {
        name: "RS256",
        alg: Algorithm::RS256,
        family: Family::Rsa,
        static_key: Some(RSA_PUBLIC),
    },
    Algo {
        name: "RS384",
        alg: Algorithm::RS384,
        family: Family::Rsa,
        static_key: Some(RSA_PUBLIC),
    },
    Algo {
        name: "RS512",
        alg: Algorithm::RS512,
        family: Family::Rsa,
        static_key: Some(RSA_PUBLIC),
    },
    Algo {
        name: "ES256",
        alg: Algorithm::ES256,
        family: Family::P256,
        static_key: Some(ES256_PUBLIC),
    },
    Algo {
        name: "ES384",
        alg: Algorithm::ES384,
        family: Family::P384,
        static_key: Some(ES384_PUBLIC),
    },
    Algo {
        name: "EdDSA",
        alg: Algorithm::EdDSA,
        family: Family::Ed25519,
        static_key: Some(ED25519_PUBLIC),
    },
    Algo { name: "PS256", alg: Algorithm::PS256, family: Family::Rsa, static_key: None },
    Algo { name: "PS384", alg: Algorithm::PS384, family: Family::Rsa, static_key: None },
    Algo { name: "PS512", alg: Algorithm::PS512, family: Family::Rsa, static_key: None },
];

impl Algo {
    /// The private key that signs this algorithm's tokens.
    pub fn encoding_key(&self) -> EncodingKey {
        let key = match self.family {
            Family::Hmac => Ok(EncodingKey::from_secret(SECRET.as_bytes())),
            Family::Rsa => EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()),
            Family::P256 => EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()),
            Family::P384 => EncodingKey::from_ec_pem(ES384_PRIVATE.as_bytes()),
            Family::Ed25519 => EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()),
        };
        key.expect("the fixture keys load")
    }

    /// The key id of this algorithm's key in [`jwk_set`].
    pub fn kid(&self) -> &'static str {
        match self.family {
            Family::Hmac => "hmac",
            Family::Rsa => "rsa",
            Family::P256 => "p256",
            Family::P384 => "p384",
            Family::Ed25519 => "ed25519",
        }
    }
}

/// A JWK Set holding the public keys of every asymmetric algorithm, each with the `kid` of
/// [`Algo::kid`] and no `alg`, so that the RSA key serves RS* and PS* alike.
pub fn jwk_set() -> serde_json::Value {
    let keys: Vec<serde_json::Value> = ["RS256", "ES256", "ES384", "EdDSA"]
        .iter()
        .map(|name| {
            let algo = ALGORITHMS.iter().find(|a| a.name == *name).expect("listed");
            let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&algo.encoding_key(), algo.alg)
                .expect("a JWK from the fixture key");
            let mut jwk = serde_json::to_value(jwk).expect("a JWK serializes");
            let object = jwk.as_object_mut().expect("a JWK is an object");
            object.remove("alg");
            object.insert("kid".into(), algo.kid().into());
            object.insert("use".into(), "sig".into());
            jwk
        })
        .collect();
    serde_json::json!({ "keys": keys })
}

/// Unpadded base64url, as in a compact JWS.
pub fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A compact JWS of exactly these header and payload bytes, signed with `key` as `alg`.
pub fn sign_raw(header: &[u8], payload: &[u8], key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("signing works");
    format!("{message}.{signature}")
}

/// An HS256 token of the hub's secret with these claims (legacy `mercure` claim and others).
pub fn hs256(claims: &serde_json::Value) -> String {
    let header = br#"{"alg":"HS256","typ":"JWT"}"#;
    let payload = serde_json::to_vec(claims).expect("JSON serializes");
    sign_raw(header, &payload, &EncodingKey::from_secret(SECRET.as_bytes()), Algorithm::HS256)
}
