//! Topic selectors: deciding whether an update's topic is one a subscriber asked for.
//!
//! This module owns the whole matching rule of the Mercure protocol: the `*` wildcard, exact
//! comparison, and [RFC 6570] URI templates. The router uses it to pick the subscribers an
//! update goes to, and authorization uses it to check a topic against the selectors granted by
//! a JWT (see [`matches_any`]).
//!
//! Subscribers must see the same updates as with the reference hub, so template matching does
//! not follow RFC 6570 to the letter: it reproduces what the reference hub does, which is to
//! parse the selector with github.com/yosida95/uritemplate v3.0.2 and match topics against
//! that library's `Template.Regexp()`. The observable consequences, all deliberate:
//!
//! * every expression is optional as a whole: `/books/{id}` matches `/books/`;
//! * a prefix modifier does not limit the length: `{var:3}` behaves like `{var}`;
//! * the named operators (`;`, `?`, `&`) do not check the variable names, they only let `=`
//!   into the values: `{?topic}` matches `?anything=x`;
//! * outside literals only ASCII can match: a raw `é` in a topic never matches an expression,
//!   its percent-encoded form `%C3%A9` does;
//! * a selector that is not a valid template (unbalanced braces, bad variable name, bad
//!   operator, bad prefix length, a character not allowed in a template...) is compared
//!   exactly, as the reference hub does.
//!
//! Selectors are compiled once by [`TopicSelector::parse`] into a [`regex::Regex`], whose
//! matching time is linear in the topic's length whatever the selector.
//!
//! [RFC 6570]: https://www.rfc-editor.org/rfc/rfc6570

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::{LazyLock, Mutex};

use regex::{Regex, RegexBuilder};

/// Most bytes the compiled program of one selector may take.
///
/// Selectors come from subscribers, so one could send a huge one to eat the hub's memory;
/// past this limit the selector is treated as an exact string instead. Real selectors, URLs of
/// a few hundred bytes, need a few kilobytes; the limit still admits literals of about 30 KB
/// and the largest expression Go accepts (1001 variables, see [`MAX_REPEAT`]).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Most bytes the lazy DFA cache of one selector may grow to (the regex crate falls back to a
/// slower, cache-free engine past it, so this bounds memory without changing results).
const REGEX_DFA_SIZE_LIMIT: usize = 1 << 20;

/// Largest bounded repetition count Go's `regexp` accepts.
///
/// The reference hub turns `{/a,b,c}` into a separator group repeated `{0,2}` times, so an
/// expression with more than 1001 variables yields a pattern Go refuses (and the reference hub
/// panics on). Such a selector is treated as an exact string here.
const MAX_REPEAT: usize = 1000;

/// A parsed, compiled topic selector. Cheap to match; compile once, reuse.
///
/// Two selectors are equal, and hash the same, when they were written the same way. Clippy's
/// `mutable_key_type` lint flags maps keyed by this type because [`Regex`] keeps a cache pool
/// inside; that is a false positive, as `Hash` and `Eq` only read the raw string.
#[derive(Debug, Clone)]
pub enum TopicSelector {
    /// `*`: matches every topic.
    Any,
    /// Matches only this exact string: a selector without `{`, or an invalid URI template.
    Exact(String),
    /// A valid URI template; matches itself and every topic its regex accepts.
    Template {
        /// The selector as the subscriber wrote it.
        raw: String,
        /// The compiled form of `raw`, anchored at both ends.
        regex: Regex,
    },
}

impl TopicSelector {
    /// Parses a selector. Never fails: an invalid template becomes an exact selector.
    pub fn parse(selector: &str) -> TopicSelector {
        if selector == "*" {
            return TopicSelector::Any;
        }
        // The reference hub does not even try to parse a selector without `{`; such a
        // template could only match itself anyway.
        if selector.contains('{') {
            if let Some(regex) = compiled(selector) {
                return TopicSelector::Template { raw: selector.to_owned(), regex };
            }
        }
        TopicSelector::Exact(selector.to_owned())
    }

    /// The selector as the subscriber wrote it.
    pub fn as_str(&self) -> &str {
        match self {
            TopicSelector::Any => "*",
            TopicSelector::Exact(raw) | TopicSelector::Template { raw, .. } => raw,
        }
    }

    /// Whether `topic` matches this selector.
    ///
    /// `*` matches everything (even the empty topic); otherwise a topic equal to the selector
    /// matches (so a template matches itself), and a template also matches every topic its
    /// regex accepts.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicSelector::Any => true,
            TopicSelector::Exact(raw) => raw == topic,
            TopicSelector::Template { raw, regex } => raw == topic || regex.is_match(topic),
        }
    }

    /// True for `*`.
    pub fn is_any(&self) -> bool {
        matches!(self, TopicSelector::Any)
    }

    /// For a template, the text before its first expression. Literal text must match byte for
    /// byte, so every topic the template matches starts with it: the router indexes templates by
    /// this prefix. Empty for the other kinds.
    pub fn literal_prefix(&self) -> &str {
        match self {
            TopicSelector::Template { raw, .. } => raw.split('{').next().unwrap_or_default(),
            TopicSelector::Any | TopicSelector::Exact(_) => "",
        }
    }

    /// `Some(literal)` when the selector can only match one exact string (not `*`, not a valid
    /// template), so that callers can index exact selectors in a hash map.
    pub fn exact(&self) -> Option<&str> {
        match self {
            TopicSelector::Exact(raw) => Some(raw),
            TopicSelector::Any | TopicSelector::Template { .. } => None,
        }
    }
}

impl PartialEq for TopicSelector {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TopicSelector {}

impl Hash for TopicSelector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for TopicSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `topic` matches any of `selectors` (convenience for authorization checks).
pub fn matches_any<'a>(
    selectors: impl IntoIterator<Item = &'a TopicSelector>,
    topic: &str,
) -> bool {
    selectors.into_iter().any(|selector| selector.matches(topic))
}

/// Compiled templates shared between subscribers: thousands of connections subscribing with the
/// same template then cost one compilation and one compiled program (a `Regex` clone shares it).
/// Cleared when full, which bounds its memory without bookkeeping on the hot path.
static COMPILED: LazyLock<Mutex<HashMap<String, Option<Regex>>>> = LazyLock::new(Mutex::default);
/// Distinct templates kept compiled.
const COMPILED_CAPACITY: usize = 10_000;

fn compiled(template: &str) -> Option<Regex> {
    // A poisoned lock only means a panic elsewhere while holding it; the map is still valid.
    let mut cache = COMPILED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(regex) = cache.get(template) {
        return regex.clone();
    }
    let regex = compile_template(template);
    if cache.len() >= COMPILED_CAPACITY {
        cache.clear();
    }
    cache.insert(template.to_owned(), regex.clone());
    regex
}

/// Parses `template` and compiles it, or `None` if it is not a template the reference hub
/// would use as one.
fn compile_template(template: &str) -> Option<Regex> {
    let parts = parse_template(template)?;
    let pattern = template_pattern(&parts)?;
    RegexBuilder::new(&pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
        .ok()
}

/// An expression operator (RFC 6570 §2.2), the character right after `{`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    /// No operator: `{var}`.
    Simple,
    /// `{+var}`
    Reserved,
    /// `{#var}`
    Fragment,
    /// `{.var}`
    Label,
    /// `{/var}`
    PathSegment,
    /// `{;var}`
    PathParameter,
    /// `{?var}`
    Query,
    /// `{&var}`
    QueryContinuation,
}

impl Operator {
    /// The operator a character stands for, if it is one this library implements.
    fn from_char(c: char) -> Option<Operator> {
        Some(match c {
            '+' => Operator::Reserved,
            '#' => Operator::Fragment,
            '.' => Operator::Label,
            '/' => Operator::PathSegment,
            ';' => Operator::PathParameter,
            '?' => Operator::Query,
            '&' => Operator::QueryContinuation,
            _ => return None,
        })
    }

    /// What the expansion starts with when at least one variable is defined.
    fn prefix(self) -> &'static str {
        match self {
            Operator::Simple | Operator::Reserved => "",
            Operator::Fragment => "#",
            Operator::Label => ".",
            Operator::PathSegment => "/",
            Operator::PathParameter => ";",
            Operator::Query => "?",
            Operator::QueryContinuation => "&",
        }
    }

    /// What separates the expansions of two variables, or two exploded items.
    fn separator(self) -> &'static str {
        match self {
            Operator::Simple | Operator::Reserved | Operator::Fragment => ",",
            Operator::Label => ".",
            Operator::PathSegment => "/",
            Operator::PathParameter => ";",
            Operator::Query | Operator::QueryContinuation => "&",
        }
    }

    /// Whether values are written as `name=value`.
    fn is_named(self) -> bool {
        matches!(self, Operator::PathParameter | Operator::Query | Operator::QueryContinuation)
    }

    /// Whether reserved characters may appear unencoded in values.
    fn allows_reserved(self) -> bool {
        matches!(self, Operator::Reserved | Operator::Fragment)
    }
}

/// What the regex needs to know about one `{...}` expression.
///
/// Variable names and prefix lengths are validated while parsing but then dropped: the
/// reference hub's regex ignores both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expression {
    operator: Operator,
    /// Number of variables; at least 1.
    var_count: usize,
    /// Whether the first variable has the explode modifier (`*`).
    first_explodes: bool,
    /// Whether any variable has the explode modifier.
    any_explodes: bool,
}

/// A piece of a parsed template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    /// Text outside braces, matched as is.
    Literal(&'a str),
    /// A `{...}` expression.
    Expression(Expression),
}

/// Splits a template into literals and expressions, or `None` where yosida95/uritemplate
/// rejects it.
fn parse_template(template: &str) -> Option<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut literal_start = 0;
    let mut pos = 0;
    while let Some(c) = template[pos..].chars().next() {
        match c {
            '{' => {
                if literal_start < pos {
                    parts.push(Part::Literal(&template[literal_start..pos]));
                }
                let body_start = pos + 1;
                // Neither brace is allowed inside an expression, so the first `}` closes it
                // and a `{` before it makes parse_expression fail.
                let body_end = body_start + template[body_start..].find('}')?;
                parts.push(Part::Expression(parse_expression(&template[body_start..body_end])?));
                pos = body_end + 1;
                literal_start = pos;
            }
            '%' => {
                if !starts_with_pct_encoded(&template.as_bytes()[pos..]) {
                    return None;
                }
                pos += 3;
            }
            c if is_literal_char(c) => pos += c.len_utf8(),
            _ => return None,
        }
    }
    if literal_start < template.len() {
        parts.push(Part::Literal(&template[literal_start..]));
    }
    Some(parts)
}

/// Parses what is between `{` and `}`.
fn parse_expression(body: &str) -> Option<Expression> {
    let (operator, variable_list) = match body.chars().next()? {
        // RFC 6570 keeps these for future extensions; the library refuses them.
        '=' | ',' | '!' | '@' | '|' => return None,
        c => match Operator::from_char(c) {
            // Every operator is ASCII, so slicing after one byte is safe.
            Some(operator) => (operator, &body[1..]),
            None => (Operator::Simple, body),
        },
    };
    let mut expression =
        Expression { operator, var_count: 0, first_explodes: false, any_explodes: false };
    for varspec in variable_list.split(',') {
        let explode = parse_varspec(varspec)?;
        if expression.var_count == 0 {
            expression.first_explodes = explode;
        }
        expression.any_explodes |= explode;
        expression.var_count += 1;
    }
    Some(expression)
}

/// Validates one `name`, `name*` or `name:length`, returning whether it explodes.
fn parse_varspec(varspec: &str) -> Option<bool> {
    if let Some(name) = varspec.strip_suffix('*') {
        return is_valid_varname(name).then_some(true);
    }
    if let Some((name, max_length)) = varspec.split_once(':') {
        return (is_valid_varname(name) && is_valid_max_length(max_length)).then_some(false);
    }
    is_valid_varname(varspec).then_some(false)
}

/// RFC 6570 `varname`: ASCII letters, digits, `_` and percent-encoded triplets, with single
/// dots between them.
fn is_valid_varname(name: &str) -> bool {
    if name.is_empty() || name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return false;
    }
    let bytes = name.as_bytes();
    let mut pos = 0;
    while let Some(&byte) = bytes.get(pos) {
        match byte {
            b'%' if starts_with_pct_encoded(&bytes[pos..]) => pos += 3,
            b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' | b'_' | b'.' => pos += 1,
            _ => return false,
        }
    }
    true
}

/// A prefix length as the library accepts it: 1 to 9999, without leading zeros.
fn is_valid_max_length(digits: &str) -> bool {
    (1..=4).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `bytes` starts with `%` and two hexadecimal digits.
fn starts_with_pct_encoded(bytes: &[u8]) -> bool {
    matches!(bytes, [b'%', high, low, ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit())
}

/// Characters allowed raw in a template literal: RFC 6570 §2.1 (with erratum 6937, which lets
/// `'` in), which excludes controls, space, `"`, `<`, `>`, `\`, `^`, `` ` ``, `|`, braces,
/// and non-ASCII characters outside `ucschar` and `iprivate`. `%` only starts a triplet.
fn is_literal_char(c: char) -> bool {
    match c {
        '!' | '#' | '$' | '&'..=';' | '=' | '?'..='[' | ']' | '_' | 'a'..='z' | '~' => true,
        // ucschar and iprivate in the Basic Multilingual Plane.
        '\u{A0}'..='\u{D7FF}'
        | '\u{E000}'..='\u{F8FF}'
        | '\u{F900}'..='\u{FDCF}'
        | '\u{FDF0}'..='\u{FFEF}' => true,
        // Beyond it: every plane except its last two code points (noncharacters), and except
        // the start of plane 14 (tags and variation selectors).
        _ => {
            let code = u32::from(c);
            code >= 0x1_0000 && code & 0xFFFF <= 0xFFFD && !(0xE_0000..0xE_1000).contains(&code)
        }
    }
}

/// Unreserved characters (RFC 3986 §2.3), as the inside of a regex character class.
const UNRESERVED_CLASS: &str = r"0-9A-Za-z\-._~";

/// Reserved characters (RFC 3986 §2.2), as the inside of a regex character class.
const RESERVED_CLASS: &str = r"!#$&'()*+,/:;=?@\[\]";

/// The anchored regex pattern that yosida95/uritemplate's `Template.Regexp()` builds, or
/// `None` if Go's `regexp` would refuse it.
fn template_pattern(parts: &[Part<'_>]) -> Option<String> {
    let mut pattern = String::from("^");
    for part in parts {
        match part {
            Part::Literal(text) => pattern.push_str(&regex::escape(text)),
            Part::Expression(expression) => push_expression(&mut pattern, expression)?,
        }
    }
    pattern.push('$');
    Some(pattern)
}

/// Appends the pattern of one expression.
///
/// The shape is `(?:PREFIX VALUE (?:SEP VALUE){0,n-1})?` for `n` variables, with `*` instead
/// of `{0,n-1}` as soon as one explodes: the whole expression may be absent, and only the
/// separators between variables are counted, not the values themselves. Since values accept
/// `,` (and `.` is unreserved), only the `/`, `;`, `?` and `&` operators really limit how many
/// segments match.
fn push_expression(pattern: &mut String, expression: &Expression) -> Option<()> {
    let operator = expression.operator;
    let named = operator.is_named();
    pattern.push_str("(?:");
    pattern.push_str(&regex::escape(operator.prefix()));
    // An exploded variable may be an associative array, expanded as `key=value` pairs, hence
    // `=` even in unnamed operators. The library only checks the first variable here...
    push_value(pattern, operator, named || expression.first_explodes);
    if expression.var_count > 1 || expression.first_explodes {
        pattern.push_str("(?:");
        pattern.push_str(&regex::escape(operator.separator()));
        // ...and any variable here, where an explode also lifts the count limit.
        push_value(pattern, operator, named || expression.any_explodes);
        pattern.push(')');
        if expression.any_explodes {
            pattern.push('*');
        } else {
            let max = expression.var_count - 1;
            if max > MAX_REPEAT {
                return None;
            }
            // Writing to a String cannot fail.
            let _ = write!(pattern, "{{0,{max}}}");
        }
    }
    pattern.push_str(")?");
    Some(())
}

/// Appends the pattern of one (possibly empty) value: allowed ASCII characters or
/// percent-encoded triplets.
fn push_value(pattern: &mut String, operator: Operator, allow_equals: bool) {
    pattern.push_str("(?:[");
    pattern.push_str(UNRESERVED_CLASS);
    if operator.allows_reserved() {
        pattern.push_str(RESERVED_CLASS);
    } else {
        // `,` joins the items of a list even where reserved characters are encoded.
        pattern.push(',');
        if allow_equals {
            pattern.push('=');
        }
    }
    pattern.push_str("]|%[0-9A-Fa-f]{2})*");
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Asserts every `(selector, topic, expected)` row, reporting all failures at once.
    fn assert_table(rows: &[(&str, &str, bool)]) {
        let failures: Vec<String> = rows
            .iter()
            .filter(|(selector, topic, expected)| {
                TopicSelector::parse(selector).matches(topic) != *expected
            })
            .map(|(selector, topic, expected)| {
                format!("{selector:?} vs {topic:?}: expected {expected}")
            })
            .collect();
        assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
    }

    #[test]
    fn reference_hub_vectors() {
        assert_table(&[
            ("https://e.com/books/{id}", "https://e.com/books/1", true),
            ("https://e.com/books/{id}", "https://e.com/books/1/2", false),
            ("https://e.com/books/{id}", "https://e.com/books/", true),
            ("https://e.com/{+p}", "https://e.com/a/b", true),
            (
                "https://e.com/users/foo/{?topic}",
                "https://e.com/users/foo/?topic=https%3A%2F%2Fe.com%2Fbooks%2F1",
                true,
            ),
            (
                "https://example.com/hub?topic=faulty{iri",
                "https://example.com/hub?topic=faulty{iri",
                true,
            ),
            (
                "https://example.com/hub?topic=faulty{iri",
                "https://example.com/hub?topic=faultyx",
                false,
            ),
            ("*", "", true),
            ("*", "https://e.com/books/1", true),
            ("*", "{*}", true),
        ]);
        assert!(TopicSelector::parse("https://example.com/hub?topic=faulty{iri").exact().is_some());
    }

    /// Cases from dunglas/mercure v0.21.4 (subscriber, subscription, subscribe and topic
    /// selector cache tests).
    #[test]
    fn mercure_hub_cases() {
        let subscriptions = "/.well-known/mercure/subscriptions";
        let by_topic = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";
        let by_both = "/.well-known/mercure/subscriptions/{topic}/{subscriber}";
        let foo = "/.well-known/mercure/subscriptions/foo{/subscriber}";
        let subscription = "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bfoo%7D/urn%3Auuid%3A5e9410a2-7a3c-4a5b-8f5e-2d8b1f6c0e11";
        assert_table(&[
            ("https://example.com/books/{id}", "https://example.com/books/1", true),
            ("https://example.com/books/{id}", "https://example.com/no-match", false),
            ("https://example.com/books/{id}", "https://example.com/not-subscribed", false),
            (
                "https://example.com/users/foo/{?topic}",
                "https://example.com/users/foo/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1",
                true,
            ),
            (
                "https://example.com/users/foo/{?topic}",
                "https://example.com/users/bar/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1",
                false,
            ),
            ("https://example.com/users/foo/{?topic}", "https://example.com/books/1", false),
            ("bar", "foo", false),
            ("foo", "foo", true),
            ("https://example.com/{foo}/bar", "https://example.com/foo/bar", true),
            ("https://example.com/{foo}/bar", "https://example.com/foo/bar/baz", false),
            (
                "https://example.com/{fistname}/{lastname}",
                "https://example.com/kevin/dunglas",
                true,
            ),
            ("https://example.com/foo/bar", "https://example.com/foo/bar", true),
            ("https://example.com/reviews/{id}", "https://example.com/reviews/22", true),
            ("https://example.com/reviews/{id}", "https://example.com/books/1", false),
            ("https://example.com/foos/{id}", "https://example.com/foos/a", true),
            (by_topic, subscription, true),
            (by_topic, subscriptions, true),
            (by_topic, "/.well-known/mercure/subscriptions/notexist/urn%3Auuid%3A1", true),
            (by_topic, "/.well-known/mercure/subscriptions/a/b/c", false),
            (by_both, subscription, true),
            (by_both, "/.well-known/mercure/subscriptions/https://example.com/1", false),
            (foo, "/.well-known/mercure/subscriptions/foo/urn%3Auuid%3A1", true),
            (foo, "/.well-known/mercure/subscriptions/foo", true),
            (foo, subscriptions, false),
            (foo, "/.well-known/mercure/subscriptions/bar", false),
            (foo, "/.well-known/mercure/subscriptions/bar/baz", false),
            ("/1/{2}", "/1/3", true),
            ("/1/{2}", "/2/3", false),
        ]);
    }

    /// Every expansion of yosida95/uritemplate's test table (RFC 6570 §3.2 examples and its
    /// own extras): `TestTemplateRegexp` asserts that the regex accepts all of them, including
    /// the ones its own matcher rejects.
    #[test]
    fn yosida95_expansions_match() {
        let rows: &[(&str, &str)] = &[
            ("'{count}'", "'one,two,three'"),
            ("{count}", "one,two,three"),
            ("{count*}", "one,two,three"),
            ("{/count}", "/one,two,three"),
            ("{/count*}", "/one/two/three"),
            ("{;count}", ";count=one,two,three"),
            ("{;count*}", ";count=one;count=two;count=three"),
            ("{?count}", "?count=one,two,three"),
            ("{?count*}", "?count=one&count=two&count=three"),
            ("{&count*}", "&count=one&count=two&count=three"),
            ("{var}", "value"),
            ("{hello}", "Hello%20World%21"),
            ("{half}", "50%25"),
            ("O{empty}X", "OX"),
            ("O{undef}X", "OX"),
            ("{x,y}", "1024,768"),
            ("{x,hello,y}", "1024,Hello%20World%21,768"),
            ("?{x,empty}", "?1024,"),
            ("?{x,undef}", "?1024"),
            ("?{undef,y}", "?768"),
            ("{var:3}", "val"),
            ("{var:30}", "value"),
            ("{list}", "red,green,blue"),
            ("{list*}", "red,green,blue"),
            ("{keys}", "semi,%3B,dot,.,comma,%2C"),
            ("{keys*}", "semi=%3B,dot=.,comma=%2C"),
            ("{+var}", "value"),
            ("{+hello}", "Hello%20World!"),
            ("{+half}", "50%25"),
            ("{base}index", "http%3A%2F%2Fexample.com%2Fhome%2Findex"),
            ("{+base}index", "http://example.com/home/index"),
            ("O{+empty}X", "OX"),
            ("O{+undef}X", "OX"),
            ("{+path}/here", "/foo/bar/here"),
            ("here?ref={+path}", "here?ref=/foo/bar"),
            ("up{+path}{var}/here", "up/foo/barvalue/here"),
            ("{+x,hello,y}", "1024,Hello%20World!,768"),
            ("{+path,x}/here", "/foo/bar,1024/here"),
            ("{+path:6}/here", "/foo/b/here"),
            ("{+list}", "red,green,blue"),
            ("{+list*}", "red,green,blue"),
            ("{+keys}", "semi,;,dot,.,comma,,"),
            ("{+keys*}", "semi=;,dot=.,comma=,"),
            ("{#var}", "#value"),
            ("{#hello}", "#Hello%20World!"),
            ("{#half}", "#50%25"),
            ("foo{#empty}", "foo#"),
            ("foo{#undef}", "foo"),
            ("{#x,hello,y}", "#1024,Hello%20World!,768"),
            ("{#path,x}/here", "#/foo/bar,1024/here"),
            ("{#path:6}/here", "#/foo/b/here"),
            ("{#list}", "#red,green,blue"),
            ("{#list*}", "#red,green,blue"),
            ("{#keys}", "#semi,;,dot,.,comma,,"),
            ("{#keys*}", "#semi=;,dot=.,comma=,"),
            ("{.who}", ".fred"),
            ("{.who,who}", ".fred.fred"),
            ("{.half,who}", ".50%25.fred"),
            ("www{.dom*}", "www.example.com"),
            ("X{.var}", "X.value"),
            ("X{.empty}", "X."),
            ("X{.undef}", "X"),
            ("X{.var:3}", "X.val"),
            ("X{.list}", "X.red,green,blue"),
            ("X{.list*}", "X.red.green.blue"),
            ("X{.keys}", "X.semi,%3B,dot,.,comma,%2C"),
            ("X{.keys*}", "X.semi=%3B.dot=..comma=%2C"),
            ("X{.empty_keys}", "X"),
            ("X{.empty_keys*}", "X"),
            ("{/who}", "/fred"),
            ("{/who,who}", "/fred/fred"),
            ("{/half,who}", "/50%25/fred"),
            ("{/who,dub}", "/fred/me%2Ftoo"),
            ("{/var}", "/value"),
            ("{/var,empty}", "/value/"),
            ("{/var,undef}", "/value"),
            ("{/var,x}/here", "/value/1024/here"),
            ("{/var:1,var}", "/v/value"),
            ("{/list}", "/red,green,blue"),
            ("{/list*}", "/red/green/blue"),
            ("{/list*,path:4}", "/red/green/blue/%2Ffoo"),
            ("{/keys}", "/semi,%3B,dot,.,comma,%2C"),
            ("{/keys*}", "/semi=%3B/dot=./comma=%2C"),
            ("{;who}", ";who=fred"),
            ("{;half}", ";half=50%25"),
            ("{;empty}", ";empty"),
            ("{;v,empty,who}", ";v=6;empty;who=fred"),
            ("{;v,bar,who}", ";v=6;who=fred"),
            ("{;x,y}", ";x=1024;y=768"),
            ("{;x,y,empty}", ";x=1024;y=768;empty"),
            ("{;x,y,undef}", ";x=1024;y=768"),
            ("{;hello:5}", ";hello=Hello"),
            ("{;list}", ";list=red,green,blue"),
            ("{;list*}", ";list=red;list=green;list=blue"),
            ("{;keys}", ";keys=semi,%3B,dot,.,comma,%2C"),
            ("{;keys*}", ";semi=%3B;dot=.;comma=%2C"),
            ("{?who}", "?who=fred"),
            ("{?half}", "?half=50%25"),
            ("{?x,y}", "?x=1024&y=768"),
            ("{?x,y,empty}", "?x=1024&y=768&empty="),
            ("{?x,y,undef}", "?x=1024&y=768"),
            ("{?var:3}", "?var=val"),
            ("{?list}", "?list=red,green,blue"),
            ("{?list*}", "?list=red&list=green&list=blue"),
            ("{?keys}", "?keys=semi,%3B,dot,.,comma,%2C"),
            ("{?keys*}", "?semi=%3B&dot=.&comma=%2C"),
            ("{&who}", "&who=fred"),
            ("{&half}", "&half=50%25"),
            ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
            ("{&x,y,empty}", "&x=1024&y=768&empty="),
            ("{&x,y,undef}", "&x=1024&y=768"),
            ("{&var:3}", "&var=val"),
            ("{&list}", "&list=red,green,blue"),
            ("{&list*}", "&list=red&list=green&list=blue"),
            ("{&keys}", "&keys=semi,%3B,dot,.,comma,%2C"),
            ("{&keys*}", "&semi=%3B&dot=.&comma=%2C"),
            ("{special_chars}", "2001%3Adb8%3A%3A35"),
        ];
        for (template, expansion) in rows {
            let selector = TopicSelector::parse(template);
            assert!(
                matches!(selector, TopicSelector::Template { .. }),
                "{template:?} should be a valid template"
            );
            assert!(selector.matches(expansion), "{template:?} vs {expansion:?}");
            assert!(expansion.starts_with(selector.literal_prefix()), "{template:?} prefix");
        }
    }

    #[test]
    fn yosida95_non_matches() {
        let dictionary = "https://example.com/dictionary/{term:1}/{term}";
        assert_table(&[
            ("https://example.com/foo{?bar}", "https://example.com/foobaz", false),
            ("https://example.com/foo{?bar}", "https://example.com/foo?bar=baz", true),
            (dictionary, "https://example.com/dictionary/c/cat", true),
            (dictionary, "https://example.com/dictionary/c/a/cat", false),
        ]);
    }

    #[test]
    fn operators() {
        assert_table(&[
            // Simple: no prefix, one segment, `,`-joined lists.
            ("{x}", "", true),
            ("{x}", "abc-._~09", true),
            ("{x}", "a,b,c", true),
            ("{x}", "a=b", false),
            ("{x}", "a/b", false),
            ("{x}", "a b", false),
            ("{x,y}", "1024,768", true),
            ("{x,y}", "1024,768,1", true),
            ("{x,y}", "1024=768", false),
            // Reserved: reserved characters pass through, but nothing else does.
            ("{+x}", "/a/b?c=d&e#f", true),
            ("{+x}", "!#$&'()*+,/:;=?@[]", true),
            ("{+x}", "a b", false),
            ("{+x}", "a\"b", false),
            ("{+x}", "<a>", false),
            ("{+x}", "{a}", false),
            ("{+x}", "a|b", false),
            ("{+x}", "a\\b", false),
            ("{+x}", "a^b", false),
            ("{+x,y}", "/a,/b", true),
            // Fragment: like reserved, after a `#`.
            ("{#x}", "#/a/b?c", true),
            ("{#x}", "#", true),
            ("{#x}", "", true),
            ("{#x}", "/a", false),
            ("a{#x}", "a#b#c", true),
            // Label: `.`-prefixed; `.` is unreserved, so no count limit.
            ("X{.x}", "X.a", true),
            ("X{.x}", "X", true),
            ("X{.x}", "Xa", false),
            ("X{.x}", "X.a.b.c", true),
            ("X{.x}", "X.a/b", false),
            // Path segments: one per variable unless exploded.
            ("{/x}", "/a", true),
            ("{/x}", "/", true),
            ("{/x}", "", true),
            ("{/x}", "a", false),
            ("{/x}", "/a/b", false),
            ("{/x,y}", "/a/b", true),
            ("{/x,y}", "/a/b/c", false),
            ("{/x,y,z}", "/a/b/c", true),
            ("{/x,y,z}", "/a//", true),
            ("{/x,y,z}", "/a/b/c/d", false),
            ("{/x*}", "/a/b/c/d", true),
            ("{/x,y*}", "/a/b/c/d", true),
            ("{/x*}", "/a=1/b=2", true),
            ("{/x}", "/a=1", false),
            ("{/x,y}", "/a/b=1", false),
            ("{/x,y*}", "/a/b=1", true),
            // The library lets `=` in the first value only if the first variable explodes.
            ("{/x,y*}", "/b=1/c=2", false),
            ("{/x*,y}", "/b=1/c=2", true),
            // Path parameters: named, so `=` is allowed, but names are not checked.
            ("{;x}", ";x=1", true),
            ("{;x}", ";x", true),
            ("{;x}", ";y=1", true),
            ("{;x}", ";x=1;y=2", false),
            ("{;x,y}", ";x=1;y=2", true),
            ("{;x*}", ";x=1;x=2;x=3", true),
            ("{;x}", "x=1", false),
            // Query: named, `&`-separated.
            ("{?x}", "?x=1", true),
            ("{?x}", "?anything=1", true),
            ("{?x}", "?x=", true),
            ("{?x}", "?", true),
            ("{?x}", "", true),
            ("{?x}", "x=1", false),
            ("{?x}", "?x=1&y=2", false),
            ("{?x,y}", "?x=1&y=2", true),
            ("{?x,y}", "?x=1&y=2&z=3", false),
            ("{?x*}", "?x=1&y=2&z=3", true),
            ("{?x}", "?x=a/b", false),
            ("{?x}", "?x=a%2Fb", true),
            ("{?x}", "?x=a,b,c", true),
            // Query continuation.
            ("?fixed=yes{&x}", "?fixed=yes&x=1", true),
            ("?fixed=yes{&x}", "?fixed=yes", true),
            ("?fixed=yes{&x}", "?fixed=yes&x=1&y=2", false),
            ("?fixed=yes{&x,y}", "?fixed=yes&x=1&y=2", true),
            ("?fixed=yes{&x*}", "?fixed=yes&x=1&x=2&x=3", true),
            // Prefix modifiers do not limit the length.
            ("{x:3}", "abcdef", true),
            ("{/x:1,y}", "/value/value", true),
            ("{?x:2}", "?x=abcdef", true),
            // Several expressions, each optional.
            ("https://e.com{/a}{/b}{?c,d}", "https://e.com", true),
            ("https://e.com{/a}{/b}{?c,d}", "https://e.com/1/2?c=3&d=4", true),
            ("https://e.com{/a}{/b}{?c,d}", "https://e.com?c=3", true),
            ("https://e.com{/a}{/b}{?c,d}", "https://e.com/1/2/3", false),
            ("{x}{y}", "ab", true),
            ("{x}/{y}", "/", true),
        ]);
    }

    /// Which single ASCII characters each operator accepts raw in a value.
    #[test]
    fn value_characters_per_operator() {
        const UNRESERVED: &str =
            "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        const RESERVED: &str = "!#$&'()*+,/:;=?@[]";
        let cases: &[(&str, &str, &str)] = &[
            // (template, what goes before the value, characters accepted besides unreserved)
            ("{x}", "", ","),
            ("{x,y}", "", ","),
            ("{x*}", "", ",="),
            ("{+x}", "", RESERVED),
            ("{#x}", "#", RESERVED),
            ("{.x}", ".", ","),
            ("{/x}", "/", ","),
            // An exploded path also accepts more segments, empty ones included.
            ("{/x*}", "/", ",=/"),
            ("{;x}", ";", ",="),
            ("{?x}", "?", ",="),
            ("{&x}", "&", ",="),
        ];
        for (template, prefix, extra) in cases {
            let selector = TopicSelector::parse(template);
            for byte in 0..=0x7f_u8 {
                let c = char::from(byte);
                let topic = format!("{prefix}{c}");
                let expected = UNRESERVED.contains(c) || extra.contains(c);
                assert_eq!(selector.matches(&topic), expected, "{template:?} vs {topic:?}");
            }
        }
    }

    #[test]
    fn percent_encoding_and_non_ascii() {
        assert_table(&[
            ("https://e.com/{id}", "https://e.com/caf%C3%A9", true),
            ("https://e.com/{id}", "https://e.com/caf%c3%a9", true),
            ("https://e.com/{id}", "https://e.com/café", false),
            ("https://e.com/{+id}", "https://e.com/café", false),
            ("https://e.com/{id}", "https://e.com/%", false),
            ("https://e.com/{id}", "https://e.com/%4", false),
            ("https://e.com/{id}", "https://e.com/%4G", false),
            ("https://e.com/{id}", "https://e.com/%2F%2f", true),
            ("https://e.com/{id}", "https://e.com/日本", false),
            ("https://e.com/{id}", "https://e.com/%E6%97%A5%E6%9C%AC", true),
            // Literals are matched as written: raw non-ASCII, and case-sensitive triplets.
            ("https://e.com/café/{id}", "https://e.com/café/1", true),
            ("https://e.com/café/{id}", "https://e.com/caf%C3%A9/1", false),
            ("https://e.com/%2F/{id}", "https://e.com/%2F/1", true),
            ("https://e.com/%2F/{id}", "https://e.com/%2f/1", false),
            ("https://e.com/日本/{id}", "https://e.com/日本/1", true),
        ]);
    }

    #[test]
    fn literals_are_escaped() {
        assert_table(&[
            ("https://e.com/a.b/{id}", "https://e.com/a.b/1", true),
            ("https://e.com/a.b/{id}", "https://e.com/aXb/1", false),
            ("https://e.com/?q={id}", "https://e.com/?q=1", true),
            ("https://e.com/?q={id}", "https://e.com/q=1", false),
            ("https://e.com/(a)/{id}", "https://e.com/(a)/1", true),
            ("https://e.com/(a)/{id}", "https://e.com/a/1", false),
            ("https://e.com/a*/{id}", "https://e.com/aaa/1", false),
            ("https://e.com/a+/{id}", "https://e.com/aa/1", false),
            ("https://e.com/a+/{id}", "https://e.com/a+/1", true),
            ("https://e.com/[a]$/{id}", "https://e.com/[a]$/1", true),
            ("https://e.com/[a]$/{id}", "https://e.com/a/1", false),
            ("'{count}'", "'a'", true),
            ("^{x}", "^a", false),
            ("{x}$", "a", false),
        ]);
    }

    /// What yosida95/uritemplate's parser rejects: such selectors only match themselves.
    #[test]
    fn invalid_templates_are_exact() {
        let invalid = [
            "https://example.com/hub?topic=faulty{iri",
            "{",
            "}",
            "{}",
            "{{}}",
            "{{x}}",
            "{x}}",
            "{x",
            "x{",
            "{x{y}}",
            "{/}",
            "{+}",
            "{?}",
            "{,}",
            "{x,}",
            "{,x}",
            "{x,,y}",
            // Reserved and unknown operators.
            "{=x}",
            "{!x}",
            "{@x}",
            "{|x}",
            "{$x}",
            "{-x}",
            // Variable names.
            "{x y}",
            "{x-y}",
            "{é}",
            "{..x}",
            "{x.}",
            "{x..y}",
            "{.x.}",
            "{/.x}",
            "{x%}",
            "{x%4}",
            "{x%GG}",
            // Modifiers.
            "{var:0}",
            "{var:00}",
            "{var:01}",
            "{var:10000}",
            "{var:99999}",
            "{var:}",
            "{var:-1}",
            "{var:a}",
            "{var:3*}",
            "{var*:3}",
            "{var**}",
            "{var:3:4}",
            "{*}",
            "{:3}",
            // Characters not allowed in a literal.
            "https://e.com/a b/{id}",
            "https://e.com/a\"b/{id}",
            "https://e.com/<a>/{id}",
            "https://e.com/a\\b/{id}",
            "https://e.com/a^b/{id}",
            "https://e.com/a`b/{id}",
            "https://e.com/a|b/{id}",
            "https://e.com/a}b/{id}",
            "https://e.com/a%/{id}",
            "https://e.com/a%4/{id}",
            "https://e.com/a%zz/{id}",
            "https://e.com/\t/{id}",
            "https://e.com/\u{7f}/{id}",
            "https://e.com/\u{85}/{id}",
            "https://e.com/\u{fdd0}/{id}",
            "https://e.com/\u{fffd}/{id}",
            "https://e.com/\u{ffff}/{id}",
            "https://e.com/\u{1fffe}/{id}",
            "https://e.com/\u{e0001}/{id}",
        ];
        for raw in invalid {
            let selector = TopicSelector::parse(raw);
            assert_eq!(selector.exact(), Some(raw), "{raw:?} should be exact");
            assert!(selector.matches(raw), "{raw:?} should match itself");
            assert!(!selector.matches(""), "{raw:?} should not match the empty topic");
        }
        assert!(!TopicSelector::parse("{x").matches("x"));
        assert!(!TopicSelector::parse("{var:0}").matches("value"));
        assert!(!TopicSelector::parse("https://e.com/a b/{id}").matches("https://e.com/a b/1"));
    }

    /// Unusual templates yosida95/uritemplate accepts.
    #[test]
    fn valid_edge_templates() {
        let valid = [
            "{a.b}",
            "{a.b.c}",
            "{%41}",
            "{a%2Eb}",
            "{_}",
            "{A9}",
            "{.a}",
            "{var:1}",
            "{var:9999}",
            "{x,y*,z:3}",
            "'{x}'",
            "https://e.com/\u{a0}/{id}",
            "https://e.com/\u{e000}/{id}",
            "https://e.com/\u{fdcf}\u{fdf0}/{id}",
            "https://e.com/\u{1f600}/{id}",
            "https://e.com/\u{e1000}/{id}",
            "https://e.com/\u{10fffd}/{id}",
            "{x}{y}{z}",
        ];
        for raw in valid {
            let selector = TopicSelector::parse(raw);
            assert!(
                matches!(selector, TopicSelector::Template { .. }),
                "{raw:?} should be a template"
            );
            assert_eq!(selector.exact(), None);
            assert_eq!(selector.as_str(), raw);
        }
    }

    #[test]
    fn template_matches_itself() {
        for raw in ["https://e.com/{id}", "{/a,b}", "{?x}{&y}", "X{.x:3}"] {
            let selector = TopicSelector::parse(raw);
            assert!(selector.matches(raw), "{raw:?}");
        }
        // Through the exact comparison only: braces never match an expression.
        assert!(!TopicSelector::parse("https://e.com/{id}").matches("https://e.com/{x}"));
    }

    #[test]
    // Hash and Eq only read the raw string, so the regex's cache pool (the interior mutability
    // the lint sees) cannot change a key.
    #[allow(clippy::mutable_key_type)]
    fn api() {
        let any = TopicSelector::parse("*");
        assert!(any.is_any());
        assert_eq!(any.as_str(), "*");
        assert_eq!(any.exact(), None);
        assert_eq!(any.to_string(), "*");

        let exact = TopicSelector::parse("https://e.com/books/1");
        assert!(!exact.is_any());
        assert_eq!(exact.exact(), Some("https://e.com/books/1"));
        assert_eq!(exact.to_string(), "https://e.com/books/1");

        let template = TopicSelector::parse("https://e.com/books/{id}");
        assert!(!template.is_any());
        assert_eq!(template.exact(), None);
        assert_eq!(template.as_str(), "https://e.com/books/{id}");
        assert_eq!(template.to_string(), "https://e.com/books/{id}");

        // `**` and ` *` are ordinary exact selectors.
        assert_eq!(TopicSelector::parse("**").exact(), Some("**"));
        assert!(!TopicSelector::parse(" *").matches("x"));
        assert_eq!(TopicSelector::parse("").exact(), Some(""));
        assert!(TopicSelector::parse("").matches(""));

        assert_eq!(template.clone(), TopicSelector::parse("https://e.com/books/{id}"));
        assert_ne!(template, exact);
        let set: HashSet<TopicSelector> = [
            TopicSelector::parse("*"),
            TopicSelector::parse("*"),
            TopicSelector::parse("https://e.com/books/{id}"),
            template.clone(),
            exact.clone(),
        ]
        .into_iter()
        .collect();
        assert_eq!(set.len(), 3);
        assert!(set.contains(&template));

        let selectors = [exact, template];
        assert!(matches_any(&selectors, "https://e.com/books/1"));
        assert!(matches_any(&selectors, "https://e.com/books/2"));
        assert!(!matches_any(&selectors, "https://e.com/reviews/1"));
        assert!(!matches_any(&[], "https://e.com/books/1"));
        assert!(matches_any(selectors.iter().chain([&any]), "anything"));
    }

    /// A tiny deterministic generator (SplitMix64), so failures are reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            // n is small, so the modulo bias is irrelevant here.
            usize::try_from(self.next() % u64::try_from(n).expect("n fits in u64"))
                .expect("below n fits in usize")
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }

        /// Up to five pieces of `alphabet`, possibly none.
        fn string(&mut self, alphabet: &[&str]) -> String {
            (0..self.below(6)).map(|_| self.pick(alphabet)).collect()
        }
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let pieces = [
            "{",
            "}",
            "{{",
            "}}",
            "{/}",
            "{var:0}",
            "{var:99999}",
            "{x",
            "x}",
            "%",
            "%4",
            "%41",
            ",",
            "*",
            ":",
            ":3",
            "=",
            "?",
            "#",
            ".",
            "..",
            "é",
            "\u{fffd}",
            "\u{10ffff}",
            "\0",
            " ",
            "a",
            "/",
            "+",
            ";",
            "&",
            "!",
            "@",
            "|",
        ];
        let mut rng = Rng(42);
        for _ in 0..3000 {
            let mut selector = String::new();
            for _ in 0..rng.below(12) {
                selector.push_str(rng.pick(&pieces));
            }
            let mut topic = String::new();
            for _ in 0..rng.below(12) {
                topic.push_str(rng.pick(&pieces));
            }
            let parsed = TopicSelector::parse(&selector);
            assert_eq!(parsed.as_str(), selector);
            assert!(parsed.matches(&selector));
            let _ = parsed.matches(&topic);
        }

        // A huge literal exceeds the regex size limit: exact, not an error.
        let huge = format!("https://e.com/{}/{{id}}", "a".repeat(100_000));
        assert_eq!(TopicSelector::parse(&huge).exact(), Some(huge.as_str()));
        let many_expressions = "{/a}".repeat(3_000);
        assert!(TopicSelector::parse(&many_expressions).matches(&many_expressions));
        assert!(!TopicSelector::parse(&"{".repeat(100_000)).matches(""));

        // Go's regexp accepts at most {0,1000}, so 1001 variables is the most that compiles.
        let vars = |n: usize| format!("{{/{}}}", vec!["a"; n].join(","));
        let largest = TopicSelector::parse(&vars(1001));
        assert!(matches!(largest, TopicSelector::Template { .. }));
        assert!(largest.matches("/a/b/c"));
        assert!(TopicSelector::parse(&vars(1002)).exact().is_some());
        // With an explode there is no counted repetition, whatever the number of variables.
        let exploded = format!("{{/{}*}}", vec!["a"; 5000].join(","));
        assert!(TopicSelector::parse(&exploded).matches("/a/b/c"));
    }

    /// Expands templates covering every operator with random values through an independent
    /// RFC 6570 implementation, and checks that each expansion matches.
    ///
    /// Variable kinds go by the name's first letter: `l`/`m` lists, `k` associative arrays,
    /// `p` ASCII strings (uritemplate-next cuts prefixes by bytes and would panic inside a
    /// multi-byte character), anything else arbitrary strings.
    ///
    /// Two known false negatives of the reference library are avoided: in `.`, `/` and simple
    /// expressions the first value may not contain `=` unless the first variable is exploded,
    /// so exploded associative arrays only come first there; and exploded keys are not
    /// encoded, so keys are unreserved.
    #[test]
    fn expansions_always_match() {
        use uritemplate::UriTemplate;

        let templates = [
            "{s}",
            "{s,t}",
            "{l}",
            "{l*}",
            "{k}",
            "{k*}",
            "{p:3}",
            "{k*,s}",
            "{s,l*}",
            "{s,l,m}",
            "{+s}",
            "{+s,t}",
            "{+l*}",
            "{+k}",
            "{+k*}",
            "{+p:2}/here",
            "{+s,l*,k*}",
            "{#s}",
            "{#s,t}",
            "{#l*}",
            "{#k*}",
            "{#p:5}",
            "X{.s}",
            "{.s,t}",
            "www{.l*}",
            "X{.k}",
            "X{.k*}",
            "{.p:1,s}",
            "{/s}",
            "{/s,t}",
            "{/s,l}",
            "{/l*}",
            "{/l*,p:4}",
            "{/k}",
            "{/k*}",
            "{;s}",
            "{;s,t,l}",
            "{;l*}",
            "{;k}",
            "{;k*}",
            "{;p:5}",
            "{?s}",
            "{?s,t}",
            "{?l}",
            "{?l*}",
            "{?k}",
            "{?k*}",
            "{?p:3,l*}",
            "{?s,k*,t}",
            "?fixed=yes{&s}",
            "{&s,t}",
            "{&l*}",
            "{&k*}",
            "https://example.com/books/{s}/reviews{/l*}{?k*}{#t}",
            "https://e.com/a.b(c)*[d]+$'/{s}{&t}",
            "/.well-known/mercure/subscriptions{/s}{/t}",
        ];
        let fragments = [
            "a",
            "Z",
            "0",
            "-",
            ".",
            "_",
            "~",
            "!",
            "#",
            "$",
            "&",
            "'",
            "(",
            ")",
            "*",
            "+",
            ",",
            "/",
            ":",
            ";",
            "=",
            "?",
            "@",
            "[",
            "]",
            " ",
            "%",
            "%41",
            "%e9",
            "%4",
            "\"",
            "<",
            ">",
            "\\",
            "^",
            "`",
            "{",
            "|",
            "}",
            "\0",
            "\n",
            "é",
            "日本",
            "😀",
            "https://e.com/x?y=z",
        ];
        let ascii = ["a", "Z", "0", "-", ".", "~", "/", "?", "=", "&", ",", " ", "%", "%41", "+"];
        let unreserved = ["a", "Z", "0", "-", ".", "_", "~"];

        let mut rng = Rng(0x5EED);
        for raw in templates {
            let selector = TopicSelector::parse(raw);
            assert!(
                matches!(selector, TopicSelector::Template { .. }),
                "{raw:?} should be a valid template"
            );
            let mut template = UriTemplate::new(raw);
            for _ in 0..25 {
                for name in ["s", "t", "p", "l", "m", "k"] {
                    // Undefined now and then.
                    if rng.below(5) == 0 {
                        template.delete(name);
                        continue;
                    }
                    match name {
                        "l" | "m" => {
                            let list: Vec<String> =
                                (0..rng.below(4)).map(|_| rng.string(&fragments)).collect();
                            template.set(name, list)
                        }
                        "k" => {
                            let pairs: Vec<(String, String)> = (0..rng.below(4))
                                .map(|_| (rng.string(&unreserved), rng.string(&fragments)))
                                .collect();
                            template.set(name, pairs)
                        }
                        "p" => template.set(name, rng.string(&ascii)),
                        _ => template.set(name, rng.string(&fragments)),
                    };
                }
                let expansion = template.build();
                assert!(expansion.starts_with(selector.literal_prefix()), "{raw:?} prefix");
                assert!(
                    selector.matches(&expansion),
                    "{raw:?} should match its expansion {expansion:?}"
                );
            }
        }
    }
}
