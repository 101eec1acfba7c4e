//! Conformance of `url_pattern` with the WHATWG URL Pattern test data (web-platform-tests'
//! `urlpatterntestdata.json`).
//!
//! The data is not copied into this repository: the `urlpattern` crate ships it in its package
//! (`src/testdata/urlpatterntestdata.json`), which `cargo metadata` locates. Each case is run
//! twice:
//!
//! 1. through `urlpattern::UrlPattern` over our size-limited regex engine (the test hooks of
//!    `quicksilver::url_pattern`), the way the crate's own harness runs it, comparing whether
//!    construction fails and whether the input matches (not the group values);
//! 2. for the cases a Mercure selector can express (one constructor string, a base, string
//!    inputs, no `ignoreCase`), through the public API (`UrlPatternMatcher`, `TopicUrl`), also
//!    checking that every match agrees with `index_key`.

use std::path::PathBuf;
use std::process::Command;

use quicksilver::url_pattern::{
    parse_constructor_string_for_tests, parse_init_for_tests, TopicUrl, UrlPatternMatcher,
};
use serde_json::Value;
use url::Url;
use urlpattern::quirks::{self, StringOrInit};
use urlpattern::{UrlPatternInit, UrlPatternOptions};

/// The base the public API is given for cases whose pattern has none (it then has a protocol,
/// so the base only matters in corner cases, which are counted apart).
const HUB: &str = "https://hub.example/.well-known/mercure";

/// Finds the test data beside the `urlpattern` package's manifest.
fn test_data_path() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let manifest = metadata["packages"]
        .as_array()
        .expect("a package list")
        .iter()
        .find(|package| package["name"] == "urlpattern")
        .and_then(|package| package["manifest_path"].as_str())
        .expect("the urlpattern package in the dependency graph");
    PathBuf::from(manifest)
        .parent()
        .expect("a manifest has a directory")
        .join("src/testdata/urlpatterntestdata.json")
}

/// The outcome of one case.
enum Outcome {
    Passed,
    Skipped(String),
    Failed(String),
}

/// What the public-API check of one case gave.
#[derive(Default)]
struct ApiCounts {
    checked: usize,
    not_expressible: usize,
    base_differs: Vec<String>,
    failures: Vec<String>,
    keyed_matches: usize,
}

/// A case's constructor arguments, sorted as the crate's harness sorts them.
struct PatternArgs {
    input: StringOrInit<'static>,
    base: Option<String>,
    options: Option<UrlPatternOptions>,
}

fn pattern_args(case: &Value) -> Result<PatternArgs, String> {
    let mut args =
        PatternArgs { input: StringOrInit::Init(Default::default()), base: None, options: None };
    for (i, arg) in case["pattern"].as_array().expect("a pattern list").iter().enumerate() {
        // A dictionary with `ignoreCase` is the options argument, wherever it stands.
        if arg.get("ignoreCase").is_some() {
            args.options = Some(serde_json::from_value(arg.clone()).expect("options"));
            continue;
        }
        let value: StringOrInit = serde_json::from_value(arg.clone()).expect("a string or init");
        match (i, value) {
            (0, value) => args.input = value,
            (1, StringOrInit::String(base)) => args.base = Some(base.into_owned()),
            (1, StringOrInit::Init(_)) => {}
            _ => return Err("arguments after the options (JavaScript overloads)".to_owned()),
        }
    }
    Ok(args)
}

/// Builds the pattern's init the way `quirks::process_construct_pattern_input` does, but
/// parsing constructor strings with our regex engine.
fn construct_init(args: &PatternArgs) -> Result<UrlPatternInit, urlpattern::Error> {
    match &args.input {
        StringOrInit::String(pattern) => {
            let base =
                args.base.as_deref().map(Url::parse).transpose().map_err(urlpattern::Error::Url)?;
            parse_constructor_string_for_tests(pattern, base)
        }
        StringOrInit::Init(init) => {
            if args.base.is_some() {
                return Err(urlpattern::Error::BaseUrlWithInit);
            }
            // The crate's own conversion (no regex involved).
            quirks::process_construct_pattern_input(StringOrInit::Init(init.clone()), None)
        }
    }
}

fn run_case(case: &Value, api: &mut ApiCounts) -> Outcome {
    if let Some(reason) = case["skip"].as_str() {
        return Outcome::Skipped(format!("marked skip in the data: {reason}"));
    }
    let expect_construct_error = case["expected_obj"] == "error";
    let args = match pattern_args(case) {
        Ok(args) => args,
        Err(reason) if expect_construct_error => return Outcome::Skipped(reason),
        Err(reason) => return Outcome::Failed(reason),
    };
    let options = args.options.clone().unwrap_or_default();
    let pattern = construct_init(&args).and_then(|init| parse_init_for_tests(init, options));
    let pattern = match (pattern, expect_construct_error) {
        (Err(_), true) => return Outcome::Passed,
        (Ok(_), true) => return Outcome::Failed("constructed, error expected".to_owned()),
        (Err(error), false) => return Outcome::Failed(format!("construction failed: {error}")),
        (Ok(pattern), false) => pattern,
    };

    let inputs = case["inputs"].as_array().cloned().unwrap_or_default();
    let input: StringOrInit = inputs
        .first()
        .map(|input| serde_json::from_value(input.clone()).expect("a string or init input"))
        .unwrap_or_else(|| StringOrInit::Init(Default::default()));
    let input_base = inputs.get(1).map(|base| base.as_str().expect("a base string").to_owned());
    let expected = &case["expected_match"];
    let match_input = quirks::process_match_input(input.clone(), input_base.as_deref());
    let matched = match (match_input, expected == "error") {
        (Err(_), true) => return Outcome::Passed,
        (Ok(_), true) => return Outcome::Failed("match input accepted, error expected".to_owned()),
        (Err(error), false) => return Outcome::Failed(format!("match input refused: {error}")),
        (Ok(None), false) => false,
        (Ok(Some((input, _))), false) => match pattern.test(input) {
            Ok(matched) => matched,
            Err(error) => return Outcome::Failed(format!("test failed: {error}")),
        },
    };
    let expected_match = expected.is_object();
    if matched != expected_match {
        return Outcome::Failed(format!("matched {matched}, expected {expected_match}"));
    }

    check_public_api(case, &args, &input, input_base.as_deref(), expected_match, api);
    Outcome::Passed
}

/// Runs the case through `UrlPatternMatcher` when a Mercure selector can express it.
fn check_public_api(
    case: &Value,
    args: &PatternArgs,
    input: &StringOrInit,
    input_base: Option<&str>,
    expected_match: bool,
    api: &mut ApiCounts,
) {
    let (StringOrInit::String(pattern), StringOrInit::String(topic)) = (&args.input, input) else {
        api.not_expressible += 1;
        return;
    };
    if args.options.as_ref().is_some_and(|options| options.ignore_case) {
        api.not_expressible += 1;
        return;
    }
    let base = Url::parse(args.base.as_deref().unwrap_or(HUB)).expect("a valid base");
    let matcher = match UrlPatternMatcher::parse(pattern, &base) {
        Ok(matcher) => matcher,
        Err(error) => {
            api.failures.push(format!("{case}: refused by the API: {error}"));
            return;
        }
    };
    let topic = match input_base.map(Url::parse) {
        None => TopicUrl::parse(topic, None),
        Some(Ok(input_base)) => TopicUrl::parse(topic, Some(&input_base)),
        // An input base that is not a URL: the standard matches nothing, as does a non-URL.
        Some(Err(_)) => TopicUrl::parse("", None),
    };
    let matched = matcher.matches(&topic);
    api.checked += 1;
    if matched != expected_match {
        if args.base.is_none() {
            // The API always resolves against the hub, the case had no base.
            api.base_differs.push(format!("{pattern} / {topic:?}"));
        } else {
            api.failures.push(format!("{case}: API matched {matched}"));
        }
        return;
    }
    if let (true, Some(key)) = (matched, matcher.index_key()) {
        api.keyed_matches += 1;
        let hostname = topic.hostname().expect("a matched topic is a URL");
        let pathname = topic.pathname().expect("a matched topic is a URL");
        if hostname != key.hostname || !pathname.starts_with(&key.path_prefix) {
            api.failures.push(format!("{case}: index key {key:?} excludes {hostname} {pathname}"));
        }
    }
}

#[test]
fn whatwg_url_pattern_test_data() {
    let path = test_data_path();
    let data = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cases: Vec<Value> = serde_json::from_str(&data).expect("the test data is JSON");

    let (mut passed, mut skipped, mut failed) = (0, Vec::new(), Vec::new());
    let mut api = ApiCounts::default();
    for case in &cases {
        match run_case(case, &mut api) {
            Outcome::Passed => passed += 1,
            Outcome::Skipped(reason) => skipped.push(format!("{reason}: {case}")),
            Outcome::Failed(reason) => failed.push(format!("{reason}: {case}")),
        }
    }

    println!(
        "{} cases: {passed} passed, {} skipped, {} failed",
        cases.len(),
        skipped.len(),
        failed.len()
    );
    for reason in &skipped {
        println!("  skipped: {reason}");
    }
    for reason in &failed {
        println!("  FAILED: {reason}");
    }
    println!(
        "public API: {} cases checked ({} matches agreed with an index key), {} not expressible \
         as a selector, {} differ because the API always has a base, {} failed",
        api.checked,
        api.keyed_matches,
        api.not_expressible,
        api.base_differs.len(),
        api.failures.len()
    );
    for case in &api.base_differs {
        println!("  base differs: {case}");
    }
    for failure in &api.failures {
        println!("  API FAILED: {failure}");
    }

    assert!(failed.is_empty(), "{} cases failed", failed.len());
    assert!(api.failures.is_empty(), "{} public API checks failed", api.failures.len());
    assert!(skipped.len() <= 3, "too many skipped cases");
    assert!(api.base_differs.is_empty(), "too many cases differ by the base");
    assert!(api.checked >= 40, "too few cases reach the public API");
}
