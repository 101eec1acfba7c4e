//! Token verification: the legacy verifier (`JwtVerifier`, `mercure` claims) with a static key of
//! every algorithm it accepts (HS256/384/512, RS256/384/512, ES256, ES384, EdDSA), and Mercure
//! 1.0 access tokens (`TrustedIssuers`) from issuers with those static keys and one with a JWK Set
//! (a `file://` set holding RSA, P-256, P-384 and Ed25519 keys, so RS*, PS*, ES* and EdDSA).
//!
//! Two kinds of input:
//! - raw text, verified as a token by every verifier: only refusals, and no panic;
//! - structured tokens: a header and claims built from fuzzed fields, signed with the test key
//!   of a fuzzed algorithm, then perhaps mutated (header, payload or signature replaced,
//!   signature truncated or taken from another token). RSA and ES384 signing is too slow to do
//!   per input, so those algorithms sign fixed claims once and only the mutations vary.
//!
//! Checked on structured tokens:
//! - a token verifies only when its signed part is exactly what the key of the verifier's
//!   algorithm signed, and its header names that algorithm (no forgery, no algorithm confusion,
//!   `none` never accepted);
//! - the legacy verifier's answer is what the claims say: the expiry and not-before rules, then
//!   the `mercure` claim (replaced by `https://mercure.rocks/` when present), with a wrongly
//!   typed one refused;
//! - an access token is accepted only with an `at+jwt` type, no `crit`, a trusted issuer, the
//!   expected audience and a future expiry.

#![no_main]

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use quicksilver::access_token::{IssuerSpec, JwksOptions, KeySpec, Role, TrustedIssuers};
use quicksilver::jwt::{JwtVerifier, MercureClaims, TokenError};
use quicksilver_fuzz::keys::{self, Algo, ALGORITHMS};
use serde_json::{json, Map, Value};

/// The audience access tokens must name.
const AUDIENCE: &str = "https://hub.example.com/.well-known/mercure";
/// The issuer verifying with the JWK Set.
const JWKS_ISSUER: &str = "https://jwks.example.com";

#[derive(Debug, Arbitrary)]
struct Structured {
    /// Chooses the signing algorithm, weighted towards the cheap ones (see `structured`).
    signer: u8,
    /// Which legacy verifier also checks the token, besides the signer's own.
    other_verifier: u8,
    header: Header,
    claims: Claims,
    mutation: Mutation,
}

#[derive(Debug, Arbitrary)]
struct Header {
    alg: AlgName,
    typ: Option<Typ>,
    /// Whether to name the key (`kid`) of the signing algorithm, another one, or none.
    kid: Option<Kid>,
    crit: bool,
}

#[derive(Debug, Arbitrary)]
enum AlgName {
    Signer,
    Other(u8),
    None,
    Text(String),
}

#[derive(Debug, Arbitrary)]
enum Typ {
    Jwt,
    AccessToken,
    ApplicationAccessToken,
    Upper,
    Text(String),
}

#[derive(Debug, Arbitrary)]
enum Kid {
    Signer,
    Other(u8),
    Text(String),
}

#[derive(Debug, Arbitrary)]
struct Claims {
    exp: Option<Time>,
    nbf: Option<Time>,
    mercure: Option<Mercure>,
    namespaced: Option<Mercure>,
    iss: Option<Issuer>,
    aud: Option<Audience>,
    details: Option<Vec<Detail>>,
}

/// A NumericDate, relative to now so that the verdict does not depend on when it runs.
#[derive(Debug, Arbitrary)]
enum Time {
    /// A minute or more in the past (seconds before now, plus 60).
    Past(u16),
    /// A minute or more in the future.
    Future(u16),
    Fractional(f32),
    Huge,
    Negative(i32),
    Text(String),
    Null,
}

#[derive(Debug, Arbitrary)]
enum Mercure {
    Object { publish: Option<List>, subscribe: Option<List>, payload: Option<String> },
    NotAnObject(i32),
    Null,
}

#[derive(Debug, Arbitrary)]
enum List {
    Strings(Vec<String>),
    WithANumber(Vec<String>),
    NotAList(String),
    Null,
}

#[derive(Debug, Arbitrary)]
enum Issuer {
    /// The issuer whose static key is the signer's.
    Static,
    Jwks,
    Text(String),
}

#[derive(Debug, Arbitrary)]
enum Audience {
    Expected,
    InList(Vec<String>),
    Other(String),
    NotAString(i32),
}

#[derive(Debug, Arbitrary)]
struct Detail {
    mercure_type: bool,
    actions: Vec<String>,
    topics: Vec<(String, Option<String>)>,
}

#[derive(Debug, Arbitrary)]
enum Mutation {
    None,
    Header(Vec<u8>),
    Payload(Vec<u8>),
    Signature(Vec<u8>),
    SignatureText(String),
    Truncate(u8),
    /// The signature of the fixed token of another algorithm.
    Splice(u8),
}

/// Verifiers and fixed tokens, built once.
struct Fixture {
    /// The legacy verifier of each algorithm with a static key, by name.
    legacy: HashMap<&'static str, JwtVerifier>,
    issuers: TrustedIssuers,
    /// An actix system to block on access token verification (async for JWK Set refreshes).
    runtime: actix_web::rt::SystemRunner,
    /// Private keys, by algorithm name.
    signing: HashMap<&'static str, EncodingKey>,
    /// For the algorithms too slow to sign per input: the claims and header they signed.
    fixed: HashMap<&'static str, (Vec<u8>, Vec<u8>, String)>,
}

thread_local! {
    // The actix system is not `Sync`: one fixture per thread (libFuzzer uses one).
    static FIXTURE: Fixture = fixture();
}

fn fixture() -> Fixture {
    let legacy = ALGORITHMS
        .iter()
        .filter_map(|algo| {
            let key = algo.static_key?;
            Some((algo.name, JwtVerifier::new(key, algo.name).expect("the fixture keys load")))
        })
        .collect();
    let directory =
        std::env::temp_dir().join(format!("quicksilver-fuzz-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("a temporary directory");
    let set = directory.join("jwks.json");
    std::fs::write(&set, keys::jwk_set().to_string()).expect("the JWK Set is written");
    let mut specs: Vec<IssuerSpec> = ALGORITHMS
        .iter()
        .filter_map(|algo| {
            Some(IssuerSpec {
                issuer: static_issuer(algo),
                authorization_server: false,
                publisher: Some(KeySpec::Key {
                    key: algo.static_key?.to_owned(),
                    alg: algo.name.to_owned(),
                }),
                subscriber: None,
            })
        })
        .collect();
    specs.push(IssuerSpec {
        issuer: JWKS_ISSUER.to_owned(),
        authorization_server: false,
        publisher: Some(KeySpec::Jwks {
            uri: format!("file://{}", set.display()),
            algorithms: None,
        }),
        subscriber: None,
    });
    let options = JwksOptions {
        refresh_interval: Duration::from_secs(3600),
        min_refresh_interval: Duration::from_secs(3600),
        ..JwksOptions::default()
    };
    let issuers = TrustedIssuers::start(specs, &options).expect("the issuers start");
    let runtime = actix_web::rt::System::new();
    let signing = ALGORITHMS.iter().map(|algo| (algo.name, algo.encoding_key())).collect();
    let mut fixture = Fixture { legacy, issuers, runtime, signing, fixed: HashMap::new() };
    for algo in ALGORITHMS.iter().filter(|algo| !signs_per_input(algo)) {
        let header = json!({"alg": algo.name, "typ": "at+jwt", "kid": algo.kid()}).to_string();
        let claims = json!({
            "iss": JWKS_ISSUER, "aud": AUDIENCE, "exp": now() + 1_000_000,
            "mercure": {"publish": ["*"]},
            "authorization_details": [{
                "type": "https://mercure.rocks/authorization-detail",
                "actions": ["publish"], "topics": [{"match": "*"}],
            }],
        })
        .to_string();
        let token = keys::sign_raw(
            header.as_bytes(),
            claims.as_bytes(),
            &fixture.signing[algo.name],
            algo.alg,
        );
        fixture.fixed.insert(algo.name, (header.into_bytes(), claims.into_bytes(), token));
    }
    // The set is read by its fetcher's thread: wait until a token of each key verifies.
    for (name, (_, _, token)) in &fixture.fixed {
        let verified = (0..500).any(|_| {
            let ok = fixture
                .runtime
                .block_on(fixture.issuers.verify(token, Role::Publisher, AUDIENCE))
                .is_ok();
            if !ok {
                std::thread::sleep(Duration::from_millis(10));
            }
            ok
        });
        assert!(verified, "the fixed {name} token verifies through the JWK Set");
    }
    fixture
}

fn static_issuer(algo: &Algo) -> String {
    format!("https://{}.example.com", algo.name.to_ascii_lowercase())
}

/// HMAC, EdDSA and ES256 sign in microseconds; RSA and P-384 take a millisecond or more.
fn signs_per_input(algo: &Algo) -> bool {
    matches!(
        algo.alg,
        Algorithm::HS256
            | Algorithm::HS384
            | Algorithm::HS512
            | Algorithm::EdDSA
            | Algorithm::ES256
    )
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_secs()
}

// Input: a first byte of 0 for raw text (the rest, as a token: seeds are the tests' tokens),
// anything else for a structured token built from the rest.
fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    FIXTURE.with(|fixture| run(fixture, kind, rest));
});

fn run(fixture: &Fixture, kind: u8, rest: &[u8]) {
    match kind {
        0 => {
            let token = String::from_utf8_lossy(rest);
            for verifier in fixture.legacy.values() {
                // Only the fuzzer's luck could make a valid token: no assertion on the verdict.
                let _ = verifier.verify(&token);
            }
            let _ =
                fixture.runtime.block_on(fixture.issuers.verify(&token, Role::Publisher, AUDIENCE));
            let _ = quicksilver::access_token::is_access_token(&token);
        }
        _ => {
            if let Ok(input) = Unstructured::new(rest).arbitrary() {
                structured(fixture, input);
            }
        }
    }
}

fn structured(fixture: &Fixture, input: Structured) {
    // Seven chances in eight for the algorithms signing each input (HMAC, EdDSA, ES256): with
    // coverage instrumentation, an RSA verification costs as much as a hundred HMAC inputs,
    // and every claim rule is the same whatever the key.
    let cheap: Vec<&Algo> = ALGORITHMS.iter().filter(|algo| signs_per_input(algo)).collect();
    let signer = match input.signer {
        0..=223 => cheap[usize::from(input.signer) % cheap.len()],
        n => &ALGORITHMS[usize::from(n) % ALGORITHMS.len()],
    };
    let now = now();
    let (header, payload) = if signs_per_input(signer) {
        (header_json(&input.header, signer), claims_json(&input.claims, signer, now))
    } else {
        let (header, payload, _) = &fixture.fixed[signer.name];
        (header.clone(), payload.clone())
    };
    let signed = match fixture.fixed.get(signer.name) {
        Some((_, _, token)) => token.clone(),
        None => keys::sign_raw(&header, &payload, &fixture.signing[signer.name], signer.alg),
    };
    let token = mutate(fixture, &signed, &input.mutation);
    // Whether the token's signed part is exactly what `signer`'s key signed, and whether its
    // signature is still the one the key made (another valid one may exist, as ECDSA
    // signatures are malleable, so only the first is a security property).
    let authentic = token.rsplit_once('.').map(|(message, _)| message)
        == signed.rsplit_once('.').map(|(message, _)| message);
    let unchanged = token == signed;
    let header_value: Value = serde_json::from_slice(&header).expect("JSON we wrote");
    let header_alg = header_value.get("alg").and_then(Value::as_str).unwrap_or_default();

    // The nine algorithms with a static key come first in `ALGORITHMS`.
    let others = [signer.name, ALGORITHMS[usize::from(input.other_verifier) % 9].name];
    for name in others {
        let verdict = fixture.legacy.get(name).map(|verifier| verifier.verify(&token));
        let Some(verdict) = verdict else { continue };
        // The verifier's key and algorithm made the signature, and the header says so.
        let genuine = authentic && name == signer.name && header_alg == name;
        if !genuine {
            assert!(verdict.is_err(), "{name} accepted a token it did not sign: {token}");
            continue;
        }
        if let (true, true, Some(expected)) =
            (unchanged, signs_per_input(signer), legacy_model(&input.claims, now))
        {
            assert_eq!(verdict, expected, "{name} on {token}");
        }
    }

    let verdict =
        fixture.runtime.block_on(fixture.issuers.verify(&token, Role::Publisher, AUDIENCE));
    if let Ok(grant) = verdict {
        assert!(authentic, "an access token verified with a signed part nobody signed: {token}");
        let typ = header_value.get("typ").and_then(Value::as_str).unwrap_or_default();
        assert!(
            typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
        );
        assert!(header_value.get("crit").is_none());
        assert_eq!(header_alg, signer.name, "the header names the signing algorithm");
        let claims: Value = serde_json::from_slice(&payload).expect("JSON we wrote");
        let aud = &claims["aud"];
        assert!(aud == AUDIENCE || aud.as_array().is_some_and(|a| a.iter().any(|v| v == AUDIENCE)));
        assert!(grant.expires_at > now, "an expired access token was accepted");
        assert_eq!(Some(grant.issuer.as_str()), claims["iss"].as_str());
        let trusted = grant.issuer == static_issuer(signer) || grant.issuer == JWKS_ISSUER;
        assert!(trusted, "the issuer {} does not hold the {} key", grant.issuer, signer.name);
    }
}

/// Applies a mutation to a signed token.
fn mutate(fixture: &Fixture, token: &str, mutation: &Mutation) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    match mutation {
        Mutation::None => {}
        Mutation::Header(bytes) => parts[0] = keys::b64(bytes),
        Mutation::Payload(bytes) => parts[1] = keys::b64(bytes),
        Mutation::Signature(bytes) => parts[2] = keys::b64(bytes),
        Mutation::SignatureText(text) => parts[2] = text.clone(),
        Mutation::Truncate(n) => {
            let keep = parts[2].len().saturating_sub(usize::from(*n % 8) + 1);
            parts[2].truncate(keep);
        }
        Mutation::Splice(n) => {
            let fixed: Vec<&String> = fixture.fixed.values().map(|(_, _, token)| token).collect();
            let other = fixed[usize::from(*n) % fixed.len()];
            parts[2] = other.rsplit('.').next().unwrap_or_default().to_owned();
        }
    }
    parts.join(".")
}

fn header_json(header: &Header, signer: &Algo) -> Vec<u8> {
    let mut object = Map::new();
    let alg = match &header.alg {
        AlgName::Signer => signer.name.to_owned(),
        AlgName::Other(n) => ALGORITHMS[usize::from(*n) % ALGORITHMS.len()].name.to_owned(),
        AlgName::None => "none".to_owned(),
        AlgName::Text(text) => text.clone(),
    };
    object.insert("alg".into(), alg.into());
    if let Some(typ) = &header.typ {
        let typ = match typ {
            Typ::Jwt => "JWT".to_owned(),
            Typ::AccessToken => "at+jwt".to_owned(),
            Typ::ApplicationAccessToken => "application/at+jwt".to_owned(),
            Typ::Upper => "AT+JWT".to_owned(),
            Typ::Text(text) => text.clone(),
        };
        object.insert("typ".into(), typ.into());
    }
    if let Some(kid) = &header.kid {
        let kid = match kid {
            Kid::Signer => signer.kid().to_owned(),
            Kid::Other(n) => ALGORITHMS[usize::from(*n) % ALGORITHMS.len()].kid().to_owned(),
            Kid::Text(text) => text.clone(),
        };
        object.insert("kid".into(), kid.into());
    }
    if header.crit {
        object.insert("crit".into(), json!(["exp"]));
    }
    Value::Object(object).to_string().into_bytes()
}

fn claims_json(claims: &Claims, signer: &Algo, now: u64) -> Vec<u8> {
    let mut object = Map::new();
    if let Some(exp) = &claims.exp {
        object.insert("exp".into(), time_json(exp, now));
    }
    if let Some(nbf) = &claims.nbf {
        object.insert("nbf".into(), time_json(nbf, now));
    }
    if let Some(mercure) = &claims.mercure {
        object.insert("mercure".into(), mercure_json(mercure));
    }
    if let Some(mercure) = &claims.namespaced {
        object.insert("https://mercure.rocks/".into(), mercure_json(mercure));
    }
    if let Some(iss) = &claims.iss {
        let iss = match iss {
            Issuer::Static => static_issuer(signer),
            Issuer::Jwks => JWKS_ISSUER.to_owned(),
            Issuer::Text(text) => text.clone(),
        };
        object.insert("iss".into(), iss.into());
    }
    if let Some(aud) = &claims.aud {
        let aud = match aud {
            Audience::Expected => json!(AUDIENCE),
            Audience::InList(others) => {
                let mut list: Vec<Value> = others.iter().map(|o| json!(o)).collect();
                list.push(json!(AUDIENCE));
                Value::Array(list)
            }
            Audience::Other(text) => json!(text),
            Audience::NotAString(n) => json!(n),
        };
        object.insert("aud".into(), aud);
    }
    if let Some(details) = &claims.details {
        let details: Vec<Value> = details
            .iter()
            .map(|detail| {
                let kind = if detail.mercure_type {
                    "https://mercure.rocks/authorization-detail"
                } else {
                    "other"
                };
                let topics: Vec<Value> = detail
                    .topics
                    .iter()
                    .map(|(pattern, kind)| match kind {
                        Some(kind) => json!({"match": pattern, "match_type": kind}),
                        None => json!({"match": pattern}),
                    })
                    .collect();
                json!({"type": kind, "actions": detail.actions, "topics": topics})
            })
            .collect();
        object.insert("authorization_details".into(), Value::Array(details));
    }
    Value::Object(object).to_string().into_bytes()
}

fn time_json(time: &Time, now: u64) -> Value {
    match time {
        Time::Past(seconds) => json!(now - 60 - u64::from(*seconds)),
        Time::Future(seconds) => json!(now + 60 + u64::from(*seconds)),
        // JSON has no NaN nor infinity: serde_json writes them as null.
        Time::Fractional(offset) => json!(now as f64 + f64::from(*offset)),
        Time::Huge => json!(1e300),
        Time::Negative(n) => json!(-i64::from(n.unsigned_abs()) - 1),
        Time::Text(text) => json!(text),
        Time::Null => Value::Null,
    }
}

fn mercure_json(mercure: &Mercure) -> Value {
    match mercure {
        Mercure::Object { publish, subscribe, payload } => {
            let mut object = Map::new();
            if let Some(list) = publish {
                object.insert("publish".into(), list_json(list));
            }
            if let Some(list) = subscribe {
                object.insert("subscribe".into(), list_json(list));
            }
            if let Some(payload) = payload {
                object.insert("payload".into(), json!({ "p": payload }));
            }
            Value::Object(object)
        }
        Mercure::NotAnObject(n) => json!(n),
        Mercure::Null => Value::Null,
    }
}

fn list_json(list: &List) -> Value {
    match list {
        List::Strings(items) => json!(items),
        List::WithANumber(items) => {
            let mut items: Vec<Value> = items.iter().map(|i| json!(i)).collect();
            items.push(json!(1));
            Value::Array(items)
        }
        List::NotAList(text) => json!(text),
        List::Null => Value::Null,
    }
}

/// What the legacy verifier must answer for a genuine token with these claims: the order of
/// its checks is `exp` (type, then expiry), `nbf`, then the Mercure claims.
///
/// `None` where it cannot tell: a fractional date within two seconds of `now`, on which the
/// verifier's clock may have ticked since.
fn legacy_model(claims: &Claims, now: u64) -> Option<Result<MercureClaims, TokenError>> {
    let expires_at = match &claims.exp {
        None | Some(Time::Null) => None,
        Some(Time::Fractional(offset)) if !offset.is_finite() => None,
        Some(Time::Text(_)) => {
            return Some(Err(TokenError::InvalidClaims("`exp` must be a number")))
        }
        Some(Time::Past(_)) | Some(Time::Negative(_)) => return Some(Err(TokenError::Expired)),
        // Seconds around now: only a fraction rounding to a past second expires.
        Some(Time::Fractional(offset)) => {
            let exp = as_read(now as f64 + f64::from(*offset)).round();
            if (exp - now as f64).abs() < 2.0 {
                return None;
            }
            if exp <= now as f64 {
                return Some(Err(TokenError::Expired));
            }
            Some(exp as u64)
        }
        Some(Time::Future(seconds)) => Some(now + 60 + u64::from(*seconds)),
        Some(Time::Huge) => Some(u64::MAX),
    };
    match &claims.nbf {
        None | Some(Time::Null) | Some(Time::Past(_)) | Some(Time::Negative(_)) => {}
        Some(Time::Fractional(offset)) if !offset.is_finite() => {}
        Some(Time::Text(_)) => {
            return Some(Err(TokenError::InvalidClaims("`nbf` must be a number")))
        }
        Some(Time::Future(_)) | Some(Time::Huge) => return Some(Err(TokenError::NotYetValid)),
        Some(Time::Fractional(offset)) => {
            let nbf = as_read(now as f64 + f64::from(*offset)).round();
            if (nbf - now as f64).abs() < 2.0 {
                return None;
            }
            if nbf > now as f64 {
                return Some(Err(TokenError::NotYetValid));
            }
        }
    }
    let mercure = mercure_model(claims.mercure.as_ref()).and_then(|mercure| {
        match claims.namespaced.as_ref().filter(|m| !matches!(m, Mercure::Null)) {
            Some(namespaced) => mercure_model(Some(namespaced)),
            None => Ok(mercure),
        }
    });
    Some(mercure.map(|mercure| MercureClaims { expires_at, ..mercure }))
}

/// `value` as the hub reads it back from the token's JSON: serde_json's default float parsing
/// may be one unit in the last place off what it wrote.
fn as_read(value: f64) -> f64 {
    let text = json!(value).to_string();
    serde_json::from_str::<Value>(&text).ok().and_then(|v| v.as_f64()).unwrap_or(value)
}

fn mercure_model(mercure: Option<&Mercure>) -> Result<MercureClaims, TokenError> {
    let (publish, subscribe, payload) = match mercure {
        None | Some(Mercure::Null) => return Ok(MercureClaims::default()),
        Some(Mercure::NotAnObject(_)) => {
            return Err(TokenError::InvalidClaims("the Mercure claim must be an object"))
        }
        Some(Mercure::Object { publish, subscribe, payload }) => (publish, subscribe, payload),
    };
    Ok(MercureClaims {
        publish: list_model(publish.as_ref(), "`publish` must be an array of strings")?,
        subscribe: list_model(subscribe.as_ref(), "`subscribe` must be an array of strings")?,
        payload: payload.as_ref().map(|p| json!({ "p": p })),
        expires_at: None,
    })
}

fn list_model(list: Option<&List>, error: &'static str) -> Result<Option<Vec<String>>, TokenError> {
    match list {
        None | Some(List::Null) => Ok(None),
        Some(List::Strings(items)) => Ok(Some(items.clone())),
        Some(List::WithANumber(_)) | Some(List::NotAList(_)) => {
            Err(TokenError::InvalidClaims(error))
        }
    }
}
