//! The environment variables of the legacy standalone hub (dunglas/mercure before its Caddy
//! build: `JWT_KEY`, `ADDR`, ...), for teams moving from it.
//!
//! Quicksilver reads only `MERCURE_*` variables. A legacy variable set without its `MERCURE_*`
//! counterpart is almost always a migration half done, so the hub says at start which setting
//! to use instead (README, "Moving from the legacy hub").

/// A legacy variable and what to set instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Legacy {
    /// The legacy hub's variable.
    pub variable: &'static str,
    /// The Quicksilver setting that replaces it; `None` when there is none.
    pub setting: Option<&'static str>,
    /// What else to know when moving.
    pub note: &'static str,
}

const fn moved(variable: &'static str, setting: &'static str, note: &'static str) -> Legacy {
    Legacy { variable, setting: Some(setting), note }
}

/// Every variable of the legacy hub, with its replacement.
pub const VARIABLES: &[Legacy] = &[
    moved("JWT_KEY", "jwt_key", ""),
    moved("JWT_ALGORITHM", "jwt_alg", ""),
    moved("PUBLISHER_JWT_KEY", "publisher_jwt_key", ""),
    moved("PUBLISHER_JWT_ALGORITHM", "publisher_jwt_alg", ""),
    moved("SUBSCRIBER_JWT_KEY", "subscriber_jwt_key", ""),
    moved("SUBSCRIBER_JWT_ALGORITHM", "subscriber_jwt_alg", ""),
    moved("ALLOW_ANONYMOUS", "anonymous", ""),
    moved("CORS_ALLOWED_ORIGINS", "cors_origins", ""),
    moved("PUBLISH_ALLOWED_ORIGINS", "publish_origins", ""),
    moved("ADDR", "addr", "the default is 127.0.0.1:8080; use 0.0.0.0:PORT for every interface"),
    moved(
        "ACME_HOSTS",
        "acme_hosts",
        "challenges are TLS-ALPN-01 on the hub's own HTTPS port; see acme_directory, acme_email",
    ),
    moved("ACME_CERT_DIR", "acme_cert_dir", "certificates stored by the legacy hub are not read"),
    moved(
        "ACME_HTTP01_ADDR",
        "http_redirect_addr",
        "plain HTTP there is redirected to HTTPS; challenges use TLS-ALPN-01 on the HTTPS port",
    ),
    moved("CERT_FILE", "cert_file", ""),
    moved("KEY_FILE", "key_file", ""),
    moved("COMPRESS", "compress", "event streams are never compressed"),
    moved("DB_PATH", "history_path", "the legacy Bolt file cannot be read: history starts empty"),
    moved("HEARTBEAT_INTERVAL", "heartbeat", ""),
    moved("HISTORY_SIZE", "history_size", ""),
    moved("WRITE_TIMEOUT", "write_timeout", ""),
    moved(
        "READ_TIMEOUT",
        "read_timeout",
        "for the request head; publish bodies have body_read_timeout",
    ),
    moved(
        "USE_FORWARDED_HEADERS",
        "use_forwarded_headers",
        "list your proxies in trusted_proxies: headers from other peers are ignored",
    ),
    moved("DISPATCH_SUBSCRIPTIONS", "subscriptions", ""),
    Legacy {
        variable: "SUBSCRIPTIONS_INCLUDE_IP",
        setting: None,
        note: "subscription events never carry the client's address",
    },
    moved("LOG_FORMAT", "log_format", ""),
    Legacy { variable: "DEBUG", setting: None, note: "set RUST_LOG=debug" },
    moved("DEMO", "ui", "the debugging UI; there are no demo endpoints"),
    moved(
        "TRANSPORT_URL",
        "transport",
        "embedded (with history_path), memory, or nats (with nats_url)",
    ),
];

/// One line per legacy variable set in `env` whose `MERCURE_*` counterpart is not, saying what
/// to set instead.
pub fn advice(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let env: std::collections::HashMap<String, String> = env.into_iter().collect();
    VARIABLES
        .iter()
        .filter(|legacy| env.contains_key(legacy.variable))
        .filter(|legacy| {
            legacy.setting.is_none_or(|setting| {
                !env.contains_key(&format!("MERCURE_{}", setting.to_ascii_uppercase()))
            })
        })
        .map(|legacy| {
            let instead = match legacy.setting {
                Some(setting) => format!(
                    "set MERCURE_{} (setting `{setting}`) instead",
                    setting.to_ascii_uppercase()
                ),
                None => "it has no counterpart".to_owned(),
            };
            let note =
                if legacy.note.is_empty() { String::new() } else { format!("; {}", legacy.note) };
            format!(
                "{} is a variable of the legacy Mercure hub and is ignored: {instead}{note}",
                legacy.variable
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_legacy_variable_alone_is_pointed_to_its_setting() {
        let advice = advice(env(&[("JWT_KEY", "secret"), ("PATH", "/bin")]));
        assert_eq!(
            advice,
            ["JWT_KEY is a variable of the legacy Mercure hub and is ignored: set MERCURE_JWT_KEY \
              (setting `jwt_key`) instead"]
        );
        let advice = super::advice(env(&[("DEBUG", "1")]));
        assert_eq!(advice.len(), 1);
        assert!(advice[0].ends_with("it has no counterpart; set RUST_LOG=debug"), "{advice:?}");
    }

    #[test]
    fn nothing_is_said_once_the_counterpart_is_set() {
        let pairs = [("JWT_KEY", "secret"), ("MERCURE_JWT_KEY", "secret"), ("ADDR", ":80")];
        let advice = advice(env(&pairs));
        assert_eq!(advice.len(), 1, "{advice:?}");
        assert!(advice[0].starts_with("ADDR "), "{advice:?}");
    }

    #[test]
    fn every_setting_named_exists() {
        for legacy in VARIABLES {
            if let Some(setting) = legacy.setting {
                assert!(super::super::KEYS.iter().any(|(key, _)| *key == setting), "{setting}");
            }
        }
    }
}
