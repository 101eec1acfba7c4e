//! Configuration values: arbitrary settings as `MERCURE_*` variables and as a TOML file, through
//! the hub's own loader (`Config::from_sources`), and its value parsers (durations, sizes,
//! trusted proxy networks).
//!
//! Checked:
//! - loading never panics: every bad value is an error;
//! - a secret (`jwt_key`, `publisher_jwt_key`, `subscriber_jwt_key`, `nats_password`,
//!   `nats_token`) never appears in an error message nor in the `Debug` output of the
//!   configuration, and a TOML syntax error never quotes the file;
//! - a size the parser accepts is written back as digits that parse to the same size, and a
//!   duration or size parses the same with spaces around it.
//!
//! The address settings (`addr`, `metrics_addr`, `http_redirect_addr`) are always overridden
//! with IP literals: they resolve host names, and a fuzzer must not send DNS queries. Their
//! values go through the same string accessors as the other settings.

#![no_main]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use quicksilver::config::{self, Config, ConfigError, TrustedProxies};

/// Starts every secret, so that a secret is long and distinctive enough to be searched for.
const MARKER: &str = "QSFUZZSECRET";

/// Settings whose values are secrets.
const SECRETS: [&str; 5] =
    ["jwt_key", "publisher_jwt_key", "subscriber_jwt_key", "nats_password", "nats_token"];

/// The address settings, which resolve host names, set to IP literals (or nothing) by variables
/// that override the input's whatever its spelling: a fuzzer must not send DNS queries.
const ADDRESSES: [(&str, &str); 3] = [
    ("MERCURE_ADDR", "127.0.0.1:8080"),
    ("MERCURE_METRICS_ADDR", "127.0.0.1:9090"),
    ("MERCURE_HTTP_REDIRECT_ADDR", ""),
];

/// [`ADDRESSES`], as variables to pass last.
fn addresses() -> impl Iterator<Item = (String, String)> {
    ADDRESSES.iter().map(|(name, value)| (name.to_string(), value.to_string()))
}

/// The file TOML inputs are written to, one per fuzzing process: in memory (`/dev/shm`) where
/// there is one, since rewriting a file on disk thousands of times a second is most of the
/// cost of an input otherwise.
static TOML_FILE: LazyLock<PathBuf> = LazyLock::new(|| {
    let shm = PathBuf::from("/dev/shm");
    let directory = if shm.is_dir() { shm } else { std::env::temp_dir() };
    directory.join(format!("quicksilver-fuzz-config-{}.toml", std::process::id()))
});

// Input: a first byte choosing the source, then text.
//
// - Environment (even first byte): one `key=value` line per variable. A key that is not a
//   setting is passed as is (the loader must refuse it); a secret's value gets [`MARKER`] in
//   front of it.
// - TOML file (odd first byte): the text, with a line assigning `jwt_key` a value starting
//   with [`MARKER`] inserted after its first line.
//
// Every value (or line) also goes through the value parsers.
fuzz_target!(|data: &[u8]| {
    let Some((&source, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    for line in text.lines() {
        check_parsers(line.split_once('=').map_or(line, |(_, value)| value));
    }
    if source & 1 == 1 {
        from_toml(&text);
    } else {
        from_env(&text);
    }
});

/// Loads settings from variables; a secret never shows in errors nor in `Debug`.
fn from_env(text: &str) {
    let mut secrets = Vec::new();
    let mut others = Vec::new();
    let mut env = Vec::new();
    for line in text.lines() {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        // Errors quote unknown keys (and the variable's name): not secrets.
        others.push(key.to_owned());
        let value = if SECRETS.contains(&key.to_ascii_lowercase().as_str()) {
            let secret = format!("{MARKER}{value}");
            secrets.push(secret.clone());
            secret
        } else {
            others.push(value.to_owned());
            value.to_owned()
        };
        env.push((format!("{}{}", config::ENV_PREFIX, key.to_ascii_uppercase()), value));
    }
    env.extend(addresses());
    let shown = match Config::from_sources(None, env) {
        Ok(config) => format!("{config:?}"),
        Err(error) => format!("{error} {error:?}"),
    };
    for secret in &secrets {
        // Only a secret nothing else holds can be told apart in the output.
        if others.iter().all(|other| !other.contains(secret.as_str())) {
            assert!(!shown.contains(secret.as_str()), "a secret is shown: {shown}");
        }
    }
}

/// Loads settings from a TOML file; a syntax error never quotes the file's secret.
fn from_toml(text: &str) {
    let secret = format!("{MARKER}{}", text.len());
    let (first, after) = text.split_once('\n').unwrap_or((text, ""));
    let file = format!("{first}\njwt_key = {}\n{after}", toml_string(&secret));
    std::fs::write(&*TOML_FILE, &file).expect("the TOML file is written");
    let loaded = Config::from_sources(Some(&TOML_FILE), addresses());
    if let Err(error @ ConfigError::Syntax { .. }) = loaded {
        if !text.contains(MARKER) {
            let shown = error.to_string();
            assert!(!shown.contains(MARKER), "a syntax error shows the secret: {shown}");
        }
    }
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn check_parsers(value: &str) {
    let duration = config::parse_duration(value);
    assert_eq!(config::parse_duration(&format!(" {value} ")), duration);

    let size = config::parse_size(value);
    assert_eq!(config::parse_size(&format!(" {value} ")), size);
    if let Some(size) = size {
        assert_eq!(config::parse_size(&size.to_string()), Some(size));
    }

    if let Ok(proxies) = TrustedProxies::parse(value) {
        // An address listed alone is trusted, IPv4-mapped IPv6 ones (`::ffff:192.0.2.7`)
        // included: this target found them never matching (fixed in src/config/mod.rs).
        for item in value.split([',', ' ']).map(str::trim) {
            if let Ok(address) = item.parse::<IpAddr>() {
                assert!(proxies.contains(address), "{item} listed in {value:?}");
            }
        }
    }
}
