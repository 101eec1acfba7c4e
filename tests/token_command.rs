//! `quicksilver token`, run as a user would: the real binary with a cleared environment. The
//! printed token is decoded and verified with jsonwebtoken, each refusal is checked for a non-zero
//! exit and a message naming the problem, and a draft-07 token is used against a real hub.
//!
//! Mercure 1.0 (RFC 9068) tokens are checked by decoding only: the hub does not verify them yet.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use common::{free_port, publish_to, HUB, KEY};

const BIN: &str = env!("CARGO_BIN_EXE_quicksilver");

/// What one run of `quicksilver token` produced.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `quicksilver token ARGS` with only `env` in its environment.
fn token(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .arg("token")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the binary");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// The token a successful run printed: one line, nothing else, and no stderr.
#[track_caller]
fn minted(args: &[&str], env: &[(&str, &str)]) -> String {
    let run = token(args, env);
    assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
    assert!(run.stderr.is_empty(), "{args:?} wrote to stderr: {}", run.stderr);
    let token = run.stdout.strip_suffix('\n').expect("a final newline");
    assert!(!token.contains(['\n', ' ']), "one token only: {:?}", run.stdout);
    token.to_owned()
}

/// Asserts a refusal: non-zero exit, nothing on stdout, every `expected` fragment on stderr.
#[track_caller]
fn refused(args: &[&str], env: &[(&str, &str)], expected: &[&str]) {
    let run = token(args, env);
    assert_ne!(run.code, Some(0), "{args:?} should be refused");
    assert!(run.stdout.is_empty(), "{args:?} printed {:?}", run.stdout);
    for fragment in expected {
        assert!(
            run.stderr.contains(fragment),
            "{args:?}: {:?} should say {fragment:?}",
            run.stderr
        );
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

/// Verifies `token` with `key` and `validation`; returns its header `typ` and its claims.
#[track_caller]
fn verify(token: &str, key: &DecodingKey, validation: &Validation) -> (Option<String>, Value) {
    let data = jsonwebtoken::decode::<Value>(token, key, validation).expect("a valid token");
    (data.header.typ, data.claims)
}

/// What a Mercure 1.0 hub with the default identity checks.
fn rfc9068(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&["https://localhost"]);
    validation.set_audience(&["https://localhost/.well-known/mercure"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation
}

/// What a draft-07 hub checks: the signature, and `exp` when present.
fn draft07(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.set_required_spec_claims::<&str>(&[]);
    validation.validate_aud = false;
    validation
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn rfc9068_token_by_default() {
    let token = minted(
        &[
            "--key",
            KEY,
            "--publish",
            "*",
            "--subscribe",
            "https://example.com/books/1",
            "--subscribe",
            "urlpattern:https://example.com/authors/:id",
            "--payload",
            r#"{"user":"alice"}"#,
            "--subject",
            "alice",
        ],
        &[],
    );
    let secret = DecodingKey::from_secret(KEY.as_bytes());
    let (typ, claims) = verify(&token, &secret, &rfc9068(Algorithm::HS256));
    assert_eq!(typ.as_deref(), Some("at+jwt"));
    let exp = claims["exp"].as_u64().expect("exp");
    let iat = claims["iat"].as_u64().expect("iat");
    assert!(exp.abs_diff(now() + 3600) <= 5, "one hour ahead: {exp}");
    assert_eq!(exp - iat, 3600);
    assert_eq!(claims["sub"], "alice");
    assert!(!claims["jti"].as_str().expect("jti").is_empty());
    assert_eq!(
        claims["authorization_details"],
        json!([
            {
                "type": "https://mercure.rocks/authorization-detail",
                "actions": ["publish"],
                "topics": [{"match": "*", "match_type": "exact"}],
            },
            {
                "type": "https://mercure.rocks/authorization-detail",
                "actions": ["subscribe"],
                "topics": [
                    {"match": "https://example.com/books/1", "match_type": "exact"},
                    {"match": "https://example.com/authors/:id", "match_type": "urlpattern"},
                ],
                "payload": {"user": "alice"},
            },
        ])
    );
    assert!(claims.get("mercure").is_none());

    // Each run gets its own id.
    let other = minted(&["--key", KEY, "--publish", "*"], &[]);
    let (_, other) = verify(&other, &secret, &rfc9068(Algorithm::HS256));
    assert_ne!(other["jti"], claims["jti"]);
    assert_eq!(other["authorization_details"].as_array().map(Vec::len), Some(1));
}

#[test]
fn claims_and_lifetime_can_be_chosen() {
    let token = minted(
        &[
            "--key=k",
            "--alg",
            "HS512",
            "--issuer",
            "https://auth.example.com",
            "--audience",
            "https://hub.example.com/.well-known/mercure",
            "--expires-in",
            "30m",
            "--subscribe",
            "*",
        ],
        &[],
    );
    let mut validation = Validation::new(Algorithm::HS512);
    validation.set_issuer(&["https://auth.example.com"]);
    validation.set_audience(&["https://hub.example.com/.well-known/mercure"]);
    let (_, claims) = verify(&token, &DecodingKey::from_secret(b"k"), &validation);
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(exp.abs_diff(now() + 1800) <= 5, "half an hour ahead: {exp}");
    assert!(claims.get("sub").is_none());
}

#[test]
fn legacy_token_has_the_draft07_claim() {
    let token = minted(
        &[
            "--legacy",
            "--key",
            KEY,
            "--publish",
            "https://example.com/books/{id}",
            "--subscribe",
            "*",
            "--payload",
            "[1,2]",
            "--expires-in",
            "0",
        ],
        &[],
    );
    let (typ, claims) =
        verify(&token, &DecodingKey::from_secret(KEY.as_bytes()), &draft07(Algorithm::HS256));
    assert_eq!(typ, None);
    assert_eq!(
        claims,
        json!({"mercure": {
            "publish": ["https://example.com/books/{id}"],
            "subscribe": ["*"],
            "payload": [1, 2],
        }})
    );

    let token = minted(&["--legacy", "--key", KEY, "--publish", "*"], &[]);
    let (_, claims) =
        verify(&token, &DecodingKey::from_secret(KEY.as_bytes()), &draft07(Algorithm::HS256));
    let exp = claims["exp"].as_u64().expect("an exp by default");
    assert!(exp.abs_diff(now() + 3600) <= 5, "{exp}");
}

#[test]
fn private_keys_from_files() {
    for (alg, algorithm, private, public) in [
        ("RS256", Algorithm::RS256, "rsa_private.pem", "rsa_public.pem"),
        ("ES256", Algorithm::ES256, "es256_private.pem", "es256_public.pem"),
        ("EdDSA", Algorithm::EdDSA, "ed25519_private.pem", "ed25519_public.pem"),
    ] {
        let token = minted(&["--alg", alg, "--key-file", &fixture(private), "--publish", "*"], &[]);
        let pem = std::fs::read(fixture(public)).expect("public key");
        let key = match algorithm {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
            _ => DecodingKey::from_ed_pem(&pem),
        }
        .expect("public key");
        let (typ, _) = verify(&token, &key, &rfc9068(algorithm));
        assert_eq!(typ.as_deref(), Some("at+jwt"), "{alg}");
    }
}

#[test]
fn secret_file_ignores_its_final_newline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{KEY}\n")).expect("write the secret");
    let path = path.to_str().expect("UTF-8 path");
    let token = minted(&["--legacy", "--key-file", path, "--publish", "*"], &[]);
    verify(&token, &DecodingKey::from_secret(KEY.as_bytes()), &draft07(Algorithm::HS256));
}

#[test]
fn the_hub_configuration_provides_the_key() {
    let secret = |key: &str| DecodingKey::from_secret(key.as_bytes());
    let env = [("MERCURE_JWT_KEY", "shared")];
    let token = minted(&["--legacy", "--publish", "*", "--subscribe", "*"], &env);
    verify(&token, &secret("shared"), &draft07(Algorithm::HS256));

    // One key per role: a token takes the key of the role it grants.
    let env = [
        ("MERCURE_PUBLISHER_JWT_KEY", "pub"),
        ("MERCURE_SUBSCRIBER_JWT_KEY", "sub"),
        ("MERCURE_SUBSCRIBER_JWT_ALG", "HS384"),
    ];
    let token = minted(&["--publish", "*"], &env);
    verify(&token, &secret("pub"), &rfc9068(Algorithm::HS256));
    let token = minted(&["--subscribe", "*"], &env);
    verify(&token, &secret("sub"), &rfc9068(Algorithm::HS384));
    refused(&["--publish", "*", "--subscribe", "*"], &env, &["different keys", "--key"]);

    // The configuration file, with the environment above it as for the hub.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hub.toml");
    std::fs::write(&path, "jwt_key = \"from-file\"\njwt_alg = \"HS512\"\n").expect("write");
    let path = path.to_str().expect("UTF-8 path");
    let token = minted(&["--config", path, "--publish", "*"], &[]);
    verify(&token, &secret("from-file"), &rfc9068(Algorithm::HS512));
    let token = minted(&["--config", path, "--publish", "*"], &[("MERCURE_JWT_KEY", "env")]);
    verify(&token, &secret("env"), &rfc9068(Algorithm::HS512));
}

#[test]
fn mistakes_are_refused_with_what_to_fix() {
    let key = ["--key", KEY];
    let with_key = |args: &[&'static str]| [&key[..], args].concat();
    refused(&with_key(&[]), &[], &["grant nothing", "--publish", "--subscribe"]);
    refused(&with_key(&["--publish", "*", "--bogus"]), &[], &["unknown option", "--bogus"]);
    refused(&with_key(&["--publish"]), &[], &["--publish needs a value"]);
    refused(&with_key(&["--publish", "*", "--expires-in", "1d"]), &[], &["--expires-in", "`1d`"]);
    refused(&with_key(&["--publish", "*", "--expires-in", "3600"]), &[], &["a unit"]);
    refused(&with_key(&["--publish", "*", "--expires-in", "0"]), &[], &["must expire", "--legacy"]);
    refused(&with_key(&["--subscribe", "*", "--payload", "{user"]), &[], &["--payload", "JSON"]);
    refused(&with_key(&["--publish", "*", "--payload", "1"]), &[], &["--subscribe"]);
    refused(&with_key(&["--publish", ""]), &[], &["empty selector"]);
    refused(
        &with_key(&["--legacy", "--publish", "urlpattern:https://example.com/:id"]),
        &[],
        &["--legacy", "URL Pattern"],
    );
    refused(&with_key(&["--publish", "*", "--alg", "HS1"]), &[], &["unsupported algorithm", "HS1"]);

    // Keys that do not fit the algorithm.
    let rsa = fixture("rsa_private.pem");
    refused(&["--key-file", &rsa, "--publish", "*"], &[], &["PEM key", "--alg"]);
    refused(&["--key-file", &rsa, "--alg", "ES256", "--publish", "*"], &[], &["ES256", "P-256"]);
    let public = fixture("rsa_public.pem");
    refused(&["--key-file", &public, "--alg", "RS256", "--publish", "*"], &[], &["private key"]);
    refused(&["--key", "secret", "--alg", "RS256", "--publish", "*"], &[], &["RS256", "PEM"]);
    refused(&["--key-file", "/nonexistent/key.pem", "--publish", "*"], &[], &["cannot read"]);
    refused(&["--key", "a", "--key-file", &rsa, "--publish", "*"], &[], &["either --key"]);

    // No key anywhere, and keys that cannot sign.
    refused(&["--publish", "*"], &[], &["no key", "--key", "MERCURE_JWT_KEY"]);
    let pem = std::fs::read_to_string(&public).expect("public key");
    let env = [("MERCURE_JWT_KEY", pem.as_str()), ("MERCURE_JWT_ALG", "RS256")];
    refused(&["--publish", "*"], &env, &["`jwt_key`", "public key", "--key-file"]);
    refused(&["--publish", "*"], &[("MERCURE_HEARTBEAT", "soon")], &["`heartbeat`"]);
}

#[test]
fn help_describes_the_command() {
    let run = token(&["--help"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for option in ["--publish", "--subscribe", "urlpattern:", "--legacy", "--key-file", "--alg"] {
        assert!(run.stdout.contains(option), "{option} missing from:\n{}", run.stdout);
    }
    let hub_help = Command::new(BIN).arg("--help").output().expect("run the binary");
    let hub_help = String::from_utf8(hub_help.stdout).expect("UTF-8");
    let (before, _) = hub_help.split_once("Settings:").expect("a settings list");
    assert!(before.contains("quicksilver token"), "{hub_help}");
}

#[test]
fn a_uri_template_is_warned_about_outside_legacy() {
    let args = ["--key", KEY, "--subscribe", "https://example.com/books/{id}"];
    let run = token(&args, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("warning") && run.stderr.contains("urlpattern:"), "{}", run.stderr);
    minted(&[&["--legacy"][..], &args].concat(), &[]);
}

/// A hub process, killed when dropped.
struct Hub(Child);

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the hub binary with `env` on a free port and waits until it accepts connections.
fn start_hub(dir: &Path, env: &[(&str, &str)]) -> (Hub, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .env("MERCURE_ADDR", &addr)
        .env("MERCURE_TRANSPORT", "memory")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the hub");
    let hub = Hub(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the hub does not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    (hub, format!("http://{addr}{HUB}"))
}

#[tokio::test]
async fn a_legacy_token_publishes_on_a_real_hub() {
    // The same environment for the hub and the command: no secret copied by hand.
    let env = [("MERCURE_JWT_KEY", KEY)];
    let dir = tempfile::tempdir().expect("temp dir");
    let (_hub, url) = start_hub(dir.path(), &env);
    let token = minted(&["--legacy", "--publish", "https://example.com/books/{id}"], &env);

    let (status, id) =
        publish_to(&url, &token, &[("topic", "https://example.com/books/1"), ("data", "hi")]).await;
    assert_eq!(status, 200, "{id}");
    assert!(!id.is_empty());
    // The grant is what was asked for, no more.
    let (status, body) =
        publish_to(&url, &token, &[("topic", "https://example.com/authors/1")]).await;
    assert_eq!(status, 403, "{body}");
}
