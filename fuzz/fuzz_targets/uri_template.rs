//! Topic selectors: RFC 6570 URI templates (draft-07 `topic`, `mercure.subscribe` claims) and
//! WHATWG URL Patterns (Mercure 1.0 `match_urlpattern`), parsed and matched by the hub's own
//! `TopicSelector` and `UrlPatternMatcher`.
//!
//! Checked:
//! - any selector parses (as a template or an exact string), keeps its text, matches itself,
//!   and a template only matches topics starting with its literal prefix (the router's index
//!   relies on it);
//! - a subscriber's selector (`parse_limited`) matches exactly as a signed one (`parse`) does;
//! - a generated valid template is parsed as a template, and matches every expansion of it
//!   made by an RFC 6570 expander written here (strings and lists, every operator, explode and
//!   prefix modifiers, undefined variables);
//! - a URL pattern that parses never panics when matched, and a topic it matches has the
//!   hostname and pathname prefix of its index key.

#![no_main]

use std::sync::LazyLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use quicksilver::topic_selector::{SelectorLimits, TopicSelector};
use quicksilver::url_pattern::{TopicUrl, UrlPatternMatcher};

#[derive(Debug, Arbitrary)]
enum Part {
    /// Literal text (characters a template may not hold are dropped).
    Literal(String),
    /// An expression: its operator (an index in [`OPERATORS`]) and variables.
    Expression(u8, Vec<Variable>),
}

#[derive(Debug, Arbitrary)]
struct Variable {
    /// An index in [`NAMES`].
    name: u8,
    modifier: Modifier,
    /// `None`: undefined.
    value: Option<Value>,
}

#[derive(Debug, Arbitrary)]
enum Modifier {
    None,
    Explode,
    /// `:length`, 1 to 9999.
    Prefix(u16),
}

#[derive(Debug, Arbitrary)]
enum Value {
    Text(String),
    List(Vec<String>),
}

/// Variable names, valid in RFC 6570 (dots, digits, underscores and percent-encoded bytes).
const NAMES: [&str; 6] = ["a", "b", "id", "x.y", "v_1", "%41b"];

/// RFC 6570's operator table (appendix A): operator, first, separator, named, if empty,
/// reserved characters allowed.
const OPERATORS: [(&str, &str, &str, bool, &str, bool); 8] = [
    ("", "", ",", false, "", false),
    ("+", "", ",", false, "", true),
    ("#", "#", ",", false, "", true),
    (".", ".", ".", false, "", false),
    ("/", "/", "/", false, "", false),
    (";", ";", ";", true, "", false),
    ("?", "?", "&", true, "=", false),
    ("&", "&", "&", true, "=", false),
];

/// Generous limits: `parse_limited` then refuses nothing the fuzzer can build in 4 KB but
/// over-sized compilations.
const LIMITS: SelectorLimits =
    SelectorLimits { max_topics: 100, max_length: 1 << 20, max_variables: 10_000 };

static HUB_URL: LazyLock<url::Url> = LazyLock::new(|| {
    url::Url::parse("https://hub.example.com/.well-known/mercure").expect("a valid URL")
});

// Input: a selector as anyone may write one, a topic, and a URL pattern, one per line (so that
// seeds are the tests' selectors and topics as text); the bytes after the third line build a
// valid template and the values it is expanded with.
fuzz_target!(|data: &[u8]| {
    quicksilver_fuzz::let_urlpattern_panics_unwind();
    let mut lines = data.splitn(4, |&b| b == b'\n');
    let mut line = || String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let (selector, topic, pattern) = (line(), line(), line());
    let rest = lines.next().unwrap_or_default();
    let parts: Vec<Part> = Unstructured::new(rest).arbitrary().unwrap_or_default();

    check_selector(&selector, &[&topic]);

    let (template, expansion) = build(&parts);
    let parsed = TopicSelector::parse(&template);
    // Without an expression it is a literal, compared exactly.
    let is_template = matches!(parsed, TopicSelector::Template { .. });
    assert_eq!(is_template, template.contains('{'), "{template:?} is a valid template");
    assert!(parsed.matches(&expansion), "{template:?} matches its expansion {expansion:?}");
    check_selector(&template, &[&expansion, &topic]);

    check_pattern(&pattern, &[&topic, &selector, &expansion]);
});

/// The invariants of any selector, against a few topics.
fn check_selector(raw: &str, topics: &[&str]) {
    let signed = TopicSelector::parse(raw);
    assert_eq!(signed.as_str(), raw);
    assert!(signed.matches(raw), "{raw:?} matches itself");
    let prefix = signed.literal_prefix();
    assert!(raw.starts_with(prefix));
    let subscriber = TopicSelector::parse_limited(raw, &LIMITS);
    for topic in topics {
        let matched = signed.matches(topic);
        if matched && *topic != raw {
            assert!(topic.starts_with(prefix), "{topic:?} matched {raw:?} without its prefix");
        }
        if let Ok(subscriber) = &subscriber {
            assert_eq!(subscriber.matches(topic), matched, "{raw:?} against {topic:?}");
        }
    }
}

/// A URL pattern's invariants, against a few topics.
fn check_pattern(pattern: &str, topics: &[&str]) {
    let Ok(matcher) = UrlPatternMatcher::parse(pattern, &HUB_URL) else {
        return;
    };
    assert_eq!(matcher.as_str(), pattern);
    let key = matcher.index_key();
    for topic in topics {
        let parsed = TopicUrl::parse(topic, Some(&HUB_URL));
        let matched = matcher.matches(&parsed);
        assert_eq!(matched, matcher.matches_str(topic));
        if let (true, Some(key)) = (matched, &key) {
            assert_eq!(parsed.hostname(), Some(key.hostname.as_str()), "{pattern:?} {topic:?}");
            let path = parsed.pathname().unwrap_or_default();
            assert!(path.starts_with(&key.path_prefix), "{pattern:?} {topic:?} {key:?}");
        }
    }
}

/// Builds a valid template from `parts`, and its expansion.
fn build(parts: &[Part]) -> (String, String) {
    let mut template = String::new();
    let mut expansion = String::new();
    for part in parts {
        match part {
            Part::Literal(text) => {
                let literal: String = text.chars().filter(|&c| is_literal(c)).collect();
                template.push_str(&literal);
                expansion.push_str(&literal);
            }
            // An expression needs at least one variable.
            Part::Expression(_, variables) if variables.is_empty() => {}
            Part::Expression(operator, variables) => {
                let operator = OPERATORS[usize::from(*operator) % OPERATORS.len()];
                // A few variables per expression are enough to cover the separators.
                let variables = &variables[..variables.len().min(8)];
                template.push('{');
                template.push_str(operator.0);
                let specs: Vec<String> = variables.iter().map(varspec).collect();
                template.push_str(&specs.join(","));
                template.push('}');
                expansion.push_str(&expand(operator, variables));
            }
        }
    }
    (template, expansion)
}

fn name(variable: &Variable) -> &'static str {
    NAMES[usize::from(variable.name) % NAMES.len()]
}

/// The prefix length of a variable, if it has one (1 to 9999, as RFC 6570 allows).
fn prefix_length(variable: &Variable) -> Option<usize> {
    match variable.modifier {
        Modifier::Prefix(n) => Some(usize::from(n) % 9999 + 1),
        _ => None,
    }
}

fn varspec(variable: &Variable) -> String {
    match (&variable.modifier, prefix_length(variable)) {
        (_, Some(n)) => format!("{}:{n}", name(variable)),
        (Modifier::Explode, _) => format!("{}*", name(variable)),
        _ => name(variable).to_owned(),
    }
}

/// Characters a template literal may hold (RFC 6570 section 2.1), conservatively: visible
/// ASCII but the excluded ones (and `%`, which would need two hex digits after it), and
/// non-ASCII letters and digits of the Basic Multilingual Plane.
fn is_literal(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_graphic() && !"\"'%<>\\^`{|}".contains(c);
    }
    c.is_alphanumeric() && ('\u{A0}'..='\u{D7FF}').contains(&c)
}

/// RFC 6570 section 3.2.1 expansion of one expression (level 4, without associative arrays).
fn expand(operator: (&str, &str, &str, bool, &str, bool), variables: &[Variable]) -> String {
    let (_, first, separator, named, if_empty, reserved) = operator;
    let mut items = Vec::new();
    for variable in variables {
        let name = name(variable);
        let value = match (&variable.value, prefix_length(variable)) {
            (None, _) => continue,
            // Prefixes only apply to strings: a list's first item stands in for it.
            (Some(Value::List(list)), Some(_)) => match list.first() {
                Some(text) => Value::Text(text.clone()),
                None => continue,
            },
            (Some(Value::Text(text)), _) => Value::Text(text.clone()),
            // An empty list is undefined.
            (Some(Value::List(list)), None) if list.is_empty() => continue,
            (Some(Value::List(list)), None) => Value::List(list.clone()),
        };
        let explode = matches!(variable.modifier, Modifier::Explode);
        items.push(match value {
            Value::Text(text) => {
                let text = match prefix_length(variable) {
                    Some(n) => text.chars().take(n).collect(),
                    None => text,
                };
                match (named, text.is_empty()) {
                    (true, true) => format!("{name}{if_empty}"),
                    (true, false) => format!("{name}={}", encode(&text, reserved)),
                    (false, _) => encode(&text, reserved),
                }
            }
            Value::List(list) if explode => list
                .iter()
                .map(|item| match named {
                    true if item.is_empty() => format!("{name}{if_empty}"),
                    true => format!("{name}={}", encode(item, reserved)),
                    false => encode(item, reserved),
                })
                .collect::<Vec<_>>()
                .join(separator),
            Value::List(list) => {
                let joined =
                    list.iter().map(|item| encode(item, reserved)).collect::<Vec<_>>().join(",");
                if named {
                    format!("{name}={joined}")
                } else {
                    joined
                }
            }
        });
    }
    if items.is_empty() {
        String::new()
    } else {
        format!("{first}{}", items.join(separator))
    }
}

/// Percent-encodes what `reserved` (the `+` and `#` operators) does not let through:
/// unreserved characters always pass, reserved ones and existing `%XX` triplets only then.
fn encode(text: &str, reserved: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let triplet = byte == b'%'
            && bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else if reserved && b":/?#[]@!$&'()*+,;=".contains(&byte) {
            out.push(char::from(byte));
        } else if reserved && triplet {
            out.push_str(&text[i..i + 3]);
            i += 2;
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
        i += 1;
    }
    out
}
