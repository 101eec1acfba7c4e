//! The hub's side of `quicksilver token`: finding the key to sign with in the hub's own
//! configuration (the TOML file and the `MERCURE_*` environment), so that a developer never copies
//! a secret by hand. Only an HMAC secret can serve: for the other algorithms the hub holds a
//! public key, which cannot sign.
//!
//! Minting itself (claims, formats, keys) is the client crate's [`quicksilver_client::token`],
//! which publishers and subscribers use too. Nothing here does I/O beyond reading the
//! configuration file; neither keys nor secrets ever appear in errors or `Debug` output.

use std::collections::HashMap;
use std::path::Path;

use quicksilver_client::token::{MintError, SigningKey, TokenRequest};

use crate::config::{Config, ConfigError, ENV_PREFIX};

/// Why the hub's configuration gives no key to sign a token with. Each message says what to
/// change.
#[derive(Debug, thiserror::Error)]
pub enum HubKeyError {
    /// The configured key does not fit its algorithm.
    #[error(transparent)]
    Mint(#[from] MintError),
    /// The hub's configuration is invalid: the hub would refuse to start with it.
    #[error("invalid hub configuration: {0}")]
    Config(#[from] ConfigError),
    /// The hub's configuration has no key: the hub would generate a random one at each start.
    #[error(
        "no key given and the hub's configuration has none (it would generate a random key at \
         each start): give --key or --key-file, or set MERCURE_JWT_KEY (or --config FILE)"
    )]
    NoConfiguredKey,
    /// The hub's configured key for a role is a public key.
    #[error(
        "the hub's `{setting}` is an {alg} public key, which cannot sign: give the private key \
         with --key-file PATH --alg {alg}"
    )]
    ConfiguredKeyIsPublic {
        /// The setting holding the key.
        setting: &'static str,
        /// Its algorithm.
        alg: String,
    },
    /// Both roles are asked and the hub verifies them with different keys.
    #[error(
        "the hub verifies publishers and subscribers with different keys: mint one token per \
         role, or give the key to sign with (--key or --key-file)"
    )]
    KeysDiffer,
}

/// The key the hub would verify this token with, read from its configuration the way the hub
/// reads it: the optional TOML `file`, then the `MERCURE_*` variables of `env`.
///
/// A token that only publishes is signed with the publisher key, else with the subscriber key;
/// one that does both needs both keys to be the same. The configuration must be one the hub
/// accepts, and the key an HMAC secret: for other algorithms the hub holds a public key.
pub fn hub_key(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    request: &TokenRequest,
) -> Result<SigningKey, HubKeyError> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    // The hub's own checks first, so that its errors read here as they would at start.
    let config = Config::from_sources(file, env.clone())?;
    if config.dev_key.is_some() {
        return Err(HubKeyError::NoConfiguredKey);
    }
    let raw = raw_settings(file, &env)?;
    let setting = |key: &str| raw.get(key).filter(|value| !value.is_empty());
    let jwt_alg = setting("jwt_alg").map_or(crate::config::DEFAULT_JWT_ALG, String::as_str);
    let role = |name: &'static str, alg: &'static str| {
        setting(name)
            .map(|key| (name, key, setting(alg).map_or(jwt_alg, String::as_str)))
            .or_else(|| setting("jwt_key").map(|key| ("jwt_key", key, jwt_alg)))
    };
    let publisher = role("publisher_jwt_key", "publisher_jwt_alg");
    // Without a subscriber key, an anonymous hub verifies subscribers with the publisher key.
    let subscriber = role("subscriber_jwt_key", "subscriber_jwt_alg").or(if config.anonymous {
        publisher
    } else {
        None
    });
    let chosen = match (request.publishes(), request.subscribes()) {
        (true, false) => publisher,
        (true, true) => match (publisher, subscriber) {
            (Some(p), Some(s)) if (p.1, p.2) != (s.1, s.2) => return Err(HubKeyError::KeysDiffer),
            (p, s) => p.or(s),
        },
        _ => subscriber,
    };
    let (setting, key, alg) = chosen.ok_or(HubKeyError::NoConfiguredKey)?;
    if !alg.starts_with("HS") {
        return Err(HubKeyError::ConfiguredKeyIsPublic { setting, alg: alg.to_owned() });
    }
    Ok(SigningKey::new(alg, key.as_bytes())?)
}

/// The settings as the hub's configuration layers them (file, then environment), as strings.
fn raw_settings(
    file: Option<&Path>,
    env: &[(String, String)],
) -> Result<HashMap<String, String>, HubKeyError> {
    // The same layering as `Config::from_sources`: variable names after the prefix are
    // case-insensitive, and a variable beats the file.
    let env_values: HashMap<String, String> = env
        .iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix(ENV_PREFIX)?;
            Some((format!("{ENV_PREFIX}{}", key.to_ascii_uppercase()), value.clone()))
        })
        .collect();
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    let layered = builder
        .add_source(config::Environment::with_prefix("MERCURE").source(Some(env_values)))
        .build()
        .map_err(ConfigError::from)?;
    let keys = [
        "jwt_key",
        "jwt_alg",
        "publisher_jwt_key",
        "publisher_jwt_alg",
        "subscriber_jwt_key",
        "subscriber_jwt_alg",
    ];
    Ok(keys
        .into_iter()
        .filter_map(|key| layered.get_string(key).ok().map(|value| (key.to_owned(), value)))
        .collect())
}

#[cfg(test)]
mod tests {
    use quicksilver_client::token::{Format, Selector};

    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).expect("key fixture")
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn hub_key_follows_the_roles() {
        let publish = TokenRequest::new(Format::Legacy).publish(Selector::Exact("*".into()));
        let subscribe = TokenRequest::new(Format::Legacy).subscribe(Selector::Exact("*".into()));
        let both = publish.clone().subscribe(Selector::Exact("*".into()));
        let split = env(&[
            ("MERCURE_PUBLISHER_JWT_KEY", "p"),
            ("MERCURE_SUBSCRIBER_JWT_KEY", "s"),
            ("MERCURE_SUBSCRIBER_JWT_ALG", "HS512"),
        ]);
        let alg = |request: &TokenRequest| {
            hub_key(None, split.clone(), request).map(|key| key.algorithm())
        };
        assert_eq!(alg(&publish).expect("publisher key"), "HS256");
        assert_eq!(alg(&subscribe).expect("subscriber key"), "HS512");
        assert!(matches!(alg(&both), Err(HubKeyError::KeysDiffer)));
        let shared = env(&[("MERCURE_JWT_KEY", "k")]);
        assert!(hub_key(None, shared, &both).is_ok());
        let anonymous = env(&[("MERCURE_PUBLISHER_JWT_KEY", "p"), ("MERCURE_ANONYMOUS", "1")]);
        assert!(hub_key(None, anonymous, &both).is_ok(), "one key serves both roles");
        assert!(matches!(hub_key(None, env(&[]), &publish), Err(HubKeyError::NoConfiguredKey)));
        let rsa =
            env(&[("MERCURE_JWT_KEY", &fixture("rsa_public.pem")), ("MERCURE_JWT_ALG", "RS256")]);
        let message = hub_key(None, rsa, &publish).expect_err("a public key").to_string();
        assert!(message.contains("`jwt_key`") && message.contains("--key-file"), "{message}");
        let bad = env(&[("MERCURE_JWT_KEY", "k"), ("MERCURE_HEARTBEAT", "soon")]);
        assert!(matches!(hub_key(None, bad, &publish), Err(HubKeyError::Config(_))));
    }
}
