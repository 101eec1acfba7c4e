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
//! Selectors are compiled once into a [`regex::Regex`], whose matching time is linear in the
//! topic's length whatever the selector. Compiling costs time and memory in proportion to the
//! template (about 50 bytes per literal byte and 600 per variable), so there are two entry
//! points:
//!
//! * [`TopicSelector::parse`] for selectors the application signed (JWT claims): no limit but
//!   [`TRUSTED_REGEX_SIZE_LIMIT`], as before;
//! * [`parse_subscription`] for the `topic` parameters of a subscription, which anyone may send:
//!   it enforces [`SelectorLimits`] (topics per subscription, bytes per selector, variables per
//!   template, all from the configuration) *before* compiling, and refuses a template that
//!   compiles to more than [`REGEX_SIZE_LIMIT`].
//!
//! Both share one process-wide cache of compiled templates, bounded in (estimated) bytes; see
//! [`set_cache_size`]. Templates are compiled outside its lock.
//!
//! [RFC 6570]: https://www.rfc-editor.org/rfc/rfc6570

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::{LazyLock, Mutex, MutexGuard};

use regex::{Regex, RegexBuilder};
use thiserror::Error;

pub use crate::access_token::MatchType;
use crate::url_pattern::{UrlPatternError, UrlPatternMatcher};

/// Most bytes the compiled program of one subscriber's selector may take, as the regex crate
/// counts them (its NFA; the whole compiled regex is about 1.5 times that).
///
/// What the default limits admit needs far less: a 4,096-byte selector (`max_selector_length`)
/// with 32 variables (`max_template_variables`) compiles to about 145 KB, each literal byte
/// costing about 32 and each variable about 520. The limit leaves room for an operator who
/// raises either setting a little; beyond it the subscription is refused with a 400, since a
/// silent exact comparison would never match what the subscriber meant.
pub const REGEX_SIZE_LIMIT: usize = 256 << 10;

/// Most bytes the compiled program of a selector signed by the application (a JWT claim) may
/// take. The application is trusted, so this keeps the limit these selectors always had; past
/// it the selector is compared exactly. It admits literals of about 30 KB and the largest
/// expression Go accepts (1001 variables, see `MAX_REPEAT`).
pub const TRUSTED_REGEX_SIZE_LIMIT: usize = 1 << 20;

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
    /// A Mercure 1.0 URL Pattern (`match_urlpattern`, `match_type: urlpattern`), resolved
    /// against the hub's URL. Only Mercure 1.0 requests and tokens make these.
    UrlPattern(UrlPatternMatcher),
}

impl TopicSelector {
    /// Parses a selector the application signed (a JWT claim). Never fails: an invalid
    /// template, or one that compiles to more than [`TRUSTED_REGEX_SIZE_LIMIT`], becomes an
    /// exact selector.
    ///
    /// Selectors from a subscriber's query go through [`parse_subscription`] instead.
    pub fn parse(selector: &str) -> TopicSelector {
        if selector == "*" {
            return TopicSelector::Any;
        }
        // The reference hub does not even try to parse a selector without `{`; such a
        // template could only match itself anyway.
        if selector.contains('{') {
            if let Compiled::Template { regex, .. } = compiled(selector, Trust::Signed) {
                return TopicSelector::Template { raw: selector.to_owned(), regex };
            }
        }
        TopicSelector::Exact(selector.to_owned())
    }

    /// Parses a selector sent by a subscriber, within `limits`.
    ///
    /// Matches exactly like [`TopicSelector::parse`] (an invalid template is still compared
    /// exactly, as the reference hub does), but a selector over `max_length` bytes, a template
    /// with more than `max_variables` variables, or one that compiles to more than
    /// [`REGEX_SIZE_LIMIT`] is refused. The first two are checked before anything is compiled.
    pub fn parse_limited(
        selector: &str,
        limits: &SelectorLimits,
    ) -> Result<TopicSelector, SelectorError> {
        if selector.len() > limits.max_length {
            return Err(SelectorError::TooLong { length: selector.len(), max: limits.max_length });
        }
        if selector == "*" {
            return Ok(TopicSelector::Any);
        }
        let Some(parts) = selector.contains('{').then(|| parse_template(selector)).flatten() else {
            return Ok(TopicSelector::Exact(selector.to_owned()));
        };
        let variables = variable_count(&parts);
        if variables > limits.max_variables {
            return Err(SelectorError::TooManyVariables {
                count: variables,
                max: limits.max_variables,
            });
        }
        match compiled(selector, Trust::Subscriber) {
            Compiled::Template { regex, trusted_only: false } => {
                Ok(TopicSelector::Template { raw: selector.to_owned(), regex })
            }
            Compiled::NotTemplate => Ok(TopicSelector::Exact(selector.to_owned())),
            Compiled::Template { trusted_only: true, .. }
            | Compiled::OverSubscriberLimit
            | Compiled::OverTrustedLimit => {
                Err(SelectorError::TooLarge { limit: REGEX_SIZE_LIMIT })
            }
        }
    }

    /// Parses a Mercure 1.0 matcher of `kind`, which a token signed or (for
    /// [`parse_matchers`]) a subscriber sent. `*` is the wildcard whatever the kind; an exact
    /// matcher is compared byte for byte even when it contains `{`; a URL Pattern is resolved
    /// against `base`.
    pub fn parse_matcher(
        pattern: &str,
        kind: MatchType,
        base: &url::Url,
    ) -> Result<TopicSelector, UrlPatternError> {
        if pattern == "*" {
            return Ok(TopicSelector::Any);
        }
        match kind {
            MatchType::Exact => Ok(TopicSelector::Exact(pattern.to_owned())),
            MatchType::UrlPattern => {
                UrlPatternMatcher::parse(pattern, base).map(TopicSelector::UrlPattern)
            }
        }
    }

    /// The selector as the subscriber wrote it.
    pub fn as_str(&self) -> &str {
        match self {
            TopicSelector::Any => "*",
            TopicSelector::Exact(raw) | TopicSelector::Template { raw, .. } => raw,
            TopicSelector::UrlPattern(pattern) => pattern.as_str(),
        }
    }

    /// The Mercure 1.0 matcher type of this selector (`exact` for `*` and exact strings),
    /// `None` for a draft-07 URI template.
    pub fn match_kind(&self) -> Option<MatchType> {
        match self {
            TopicSelector::Any | TopicSelector::Exact(_) => Some(MatchType::Exact),
            TopicSelector::UrlPattern(_) => Some(MatchType::UrlPattern),
            TopicSelector::Template { .. } => None,
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
            TopicSelector::UrlPattern(pattern) => pattern.matches_str(topic),
        }
    }

    /// True for `*`.
    #[cfg(test)]
    pub fn is_any(&self) -> bool {
        matches!(self, TopicSelector::Any)
    }

    /// For a template, the text before its first expression. Literal text must match byte for
    /// byte, so every topic the template matches starts with it: the router indexes templates by
    /// this prefix. Empty for the other kinds.
    pub fn literal_prefix(&self) -> &str {
        match self {
            TopicSelector::Template { raw, .. } => raw.split('{').next().unwrap_or_default(),
            TopicSelector::Any | TopicSelector::Exact(_) | TopicSelector::UrlPattern(_) => "",
        }
    }

    /// `Some(literal)` when the selector can only match one exact string (not `*`, not a valid
    /// template), so that callers can index exact selectors in a hash map.
    #[cfg(test)]
    pub fn exact(&self) -> Option<&str> {
        match self {
            TopicSelector::Exact(raw) => Some(raw),
            TopicSelector::Any | TopicSelector::Template { .. } | TopicSelector::UrlPattern(_) => {
                None
            }
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

/// Bytes the cache of compiled templates may hold: 16 MiB, about 3,000 typical templates (5 KB
/// each compiled) or 60 of the largest the default limits admit. It only serves templates
/// reused across connections; a miss costs a compilation of a fraction of a millisecond.
pub const DEFAULT_SELECTOR_CACHE_SIZE: usize = 16 << 20;

/// Limits on the topic selectors of one subscription, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectorLimits {
    /// Most `topic` parameters in one subscription (`max_topics_per_subscription`).
    pub max_topics: usize,
    /// Most bytes in one selector (`max_selector_length`).
    pub max_length: usize,
    /// Most variables in one template, all its expressions together
    /// (`max_template_variables`).
    pub max_variables: usize,
}

/// Why a subscription's selectors were refused. Each message names the setting and says what
/// to do, and is meant for the subscriber (it becomes a 400 body).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    /// More `topic` parameters than `max_topics_per_subscription`.
    #[error(
        "too many topic selectors: {count}, the limit is {max} per subscription \
         (max_topics_per_subscription); subscribe with fewer topic parameters, for example \
         with one URI template covering several topics"
    )]
    TooManyTopics {
        /// Topic parameters in the request.
        count: usize,
        /// The configured limit.
        max: usize,
    },
    /// A selector longer than `max_selector_length`.
    #[error(
        "a topic selector is {length} bytes long, the limit is {max} bytes \
         (max_selector_length); use a shorter selector"
    )]
    TooLong {
        /// Bytes in the selector.
        length: usize,
        /// The configured limit.
        max: usize,
    },
    /// A template with more variables than `max_template_variables`.
    #[error(
        "a topic selector has {count} URI template variables, the limit is {max} per selector \
         (max_template_variables); use a template with fewer variables"
    )]
    TooManyVariables {
        /// Variables in all the template's expressions.
        count: usize,
        /// The configured limit.
        max: usize,
    },
    /// A template whose compiled form would exceed [`REGEX_SIZE_LIMIT`].
    #[error(
        "a topic selector compiles to more than {limit} bytes, the hub's limit for one URI \
         template, which the configured max_selector_length and max_template_variables \
         exceed; use a shorter template with fewer variables"
    )]
    TooLarge {
        /// [`REGEX_SIZE_LIMIT`].
        limit: usize,
    },
    /// More Mercure 1.0 matchers than `max_topics_per_subscription`.
    #[error(
        "too many matchers: {count}, the limit is {max} per subscription \
         (max_topics_per_subscription); subscribe with fewer match parameters, for example \
         with one URL pattern covering several topics"
    )]
    TooManyMatchers {
        /// Matchers in the request.
        count: usize,
        /// The configured limit.
        max: usize,
    },
    /// A matcher holding a control character (C0, DEL, C1) or an invisible format character
    /// (Unicode `Cf`), which could hide what a subscription really matches.
    #[error(
        "a matcher contains a control or invisible formatting character (U+{code:04X}); \
         remove it (percent-encode it if the topic really contains it)"
    )]
    ForbiddenCharacter {
        /// The character's code point.
        code: u32,
    },
    /// A `match_urlpattern` value that is not a valid URL Pattern, or one too complex.
    #[error("{0}")]
    UrlPattern(#[from] UrlPatternError),
}

/// Parses the `topic` parameters of a subscription within `limits`: the count first, then
/// each selector (see [`TopicSelector::parse_limited`]).
pub fn parse_subscription(
    topics: &[&str],
    limits: &SelectorLimits,
) -> Result<Vec<TopicSelector>, SelectorError> {
    if topics.len() > limits.max_topics {
        return Err(SelectorError::TooManyTopics { count: topics.len(), max: limits.max_topics });
    }
    topics.iter().map(|topic| TopicSelector::parse_limited(topic, limits)).collect()
}

/// Parses the matchers of a Mercure 1.0 subscription (`match`, `match_exact`,
/// `match_urlpattern`) within `limits`: the count, then each value's length and characters
/// before anything is compiled. URL Patterns are resolved against `base`, the hub's URL.
pub fn parse_matchers(
    matchers: &[(MatchType, &str)],
    limits: &SelectorLimits,
    base: &url::Url,
) -> Result<Vec<TopicSelector>, SelectorError> {
    if matchers.len() > limits.max_topics {
        return Err(SelectorError::TooManyMatchers {
            count: matchers.len(),
            max: limits.max_topics,
        });
    }
    for (_, pattern) in matchers {
        if pattern.len() > limits.max_length {
            return Err(SelectorError::TooLong { length: pattern.len(), max: limits.max_length });
        }
        if let Some(forbidden) = pattern.chars().find(|&c| is_forbidden_in_matcher(c)) {
            return Err(SelectorError::ForbiddenCharacter { code: u32::from(forbidden) });
        }
    }
    matchers
        .iter()
        .map(|&(kind, pattern)| Ok(TopicSelector::parse_matcher(pattern, kind, base)?))
        .collect()
}

/// C0 and C1 controls, DEL, and the Unicode format characters (`Cf`: zero-width joiners,
/// bidirectional overrides, soft hyphen...), which the Mercure 1.0 specification forbids in
/// matchers. Rust's `char::is_control` covers C0, DEL and C1.
pub fn is_forbidden_in_matcher(c: char) -> bool {
    c.is_control() || crate::update::is_format_character(c)
}

/// Sets the bytes the process-wide cache of compiled templates may hold, evicting at once if
/// it holds more. The cache starts at the default `selector_cache_size`; the hub applies its
/// configured value once, when it starts. One hub runs per process, so there is one value in
/// practice.
pub fn set_cache_size(bytes: usize) {
    CACHE.set_budget(bytes);
}

/// Estimated bytes held by the cache of compiled templates; never more than the size set with
/// [`set_cache_size`].
#[cfg(any(test, feature = "unstable-internals"))]
pub fn cache_bytes() -> usize {
    CACHE.bytes()
}

/// Who wrote a selector, which decides the size limit its compilation gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Signed by the application (a JWT claim): [`TRUSTED_REGEX_SIZE_LIMIT`].
    Signed,
    /// Sent by a subscriber: [`REGEX_SIZE_LIMIT`].
    Subscriber,
}

/// What compiling a selector gave, as cached. Templates are first compiled within
/// [`REGEX_SIZE_LIMIT`] and, only for a signed selector that exceeds it, again within
/// [`TRUSTED_REGEX_SIZE_LIMIT`], so one cache entry serves both kinds of callers.
#[derive(Debug, Clone)]
enum Compiled {
    /// Not a template the reference hub would use as one: compared exactly.
    NotTemplate,
    /// A compiled template; `trusted_only` when it exceeds [`REGEX_SIZE_LIMIT`].
    Template {
        /// Anchored at both ends.
        regex: Regex,
        /// Compiled within [`TRUSTED_REGEX_SIZE_LIMIT`] only: refused for subscribers.
        trusted_only: bool,
    },
    /// Exceeds [`REGEX_SIZE_LIMIT`]; not tried with the trusted limit yet.
    OverSubscriberLimit,
    /// Exceeds [`TRUSTED_REGEX_SIZE_LIMIT`] too.
    OverTrustedLimit,
}

/// Compiled templates shared by the whole process: thousands of connections subscribing with
/// the same template cost one compilation and one compiled program (a `Regex` clone shares it).
static CACHE: LazyLock<TemplateCache> =
    LazyLock::new(|| TemplateCache::new(DEFAULT_SELECTOR_CACHE_SIZE));

/// Looks `template` up in the cache, compiling it on a miss.
///
/// The lock is only held to look up and to insert, never while compiling, so that publishers
/// and subscribers with cached selectors do not wait behind a compilation. Two requests
/// compiling the same new template at once both compile it; the second insertion replaces
/// the first, which is harmless.
fn compiled(template: &str, trust: Trust) -> Compiled {
    match CACHE.get(template) {
        // A signed selector may use the larger limit, which was not tried yet.
        Some(Compiled::OverSubscriberLimit) if trust == Trust::Signed => {}
        Some(hit) => return hit,
        None => {}
    }
    let (compiled, bytes) = compile(template, trust);
    CACHE.insert(template, compiled.clone(), bytes);
    compiled
}

/// Parses and compiles `template`, returning the result and an estimate of the heap bytes it
/// holds (see [`estimated_size`]).
fn compile(template: &str, trust: Trust) -> (Compiled, usize) {
    let Some(parts) = parse_template(template) else {
        return (Compiled::NotTemplate, 0);
    };
    let Some(pattern) = template_pattern(&parts) else {
        return (Compiled::NotTemplate, 0);
    };
    let compiled = match build(&pattern, REGEX_SIZE_LIMIT) {
        Ok(regex) => Compiled::Template { regex, trusted_only: false },
        Err(regex::Error::CompiledTooBig(_)) if trust == Trust::Signed => {
            match build(&pattern, TRUSTED_REGEX_SIZE_LIMIT) {
                Ok(regex) => Compiled::Template { regex, trusted_only: true },
                Err(regex::Error::CompiledTooBig(_)) => Compiled::OverTrustedLimit,
                Err(_) => Compiled::NotTemplate,
            }
        }
        Err(regex::Error::CompiledTooBig(_)) => Compiled::OverSubscriberLimit,
        // Our patterns are always valid syntax; should one not be, the selector stays usable
        // as an exact string.
        Err(_) => Compiled::NotTemplate,
    };
    let bytes = match compiled {
        Compiled::Template { .. } => estimated_size(&parts, &pattern),
        _ => 0,
    };
    (compiled, bytes)
}

fn build(pattern: &str, size_limit: usize) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).size_limit(size_limit).dfa_size_limit(REGEX_DFA_SIZE_LIMIT).build()
}

/// Heap bytes of a compiled template's regex, estimated from its parts.
const COMPILED_BASE_BYTES: usize = 5 << 10;
/// Heap bytes per byte of literal text (one NFA state forward, one backward, and more).
const COMPILED_BYTES_PER_LITERAL_BYTE: usize = 64;
/// Heap bytes per value sub-pattern (a character class repeated, with its alternation).
const COMPILED_BYTES_PER_VALUE: usize = 768;

/// An upper estimate of the heap bytes the regex compiled from `parts` holds: its forward
/// and reverse NFAs, one-pass DFA, prefilter and pattern, as the regex engine's own
/// `memory_usage()` reports them, with headroom (from 10 % for large templates to twice for
/// the smallest) for what the allocator adds. Matching caches are
/// not counted: they belong to each clone, and the cached copy is never matched against.
///
/// The cost is linear in the literal bytes and in the value sub-patterns (one per variable
/// of an expression, or two for an exploded one, since `*` replaces the counted repetition);
/// the constants were measured, and a test checks them against the engine.
fn estimated_size(parts: &[Part<'_>], pattern: &str) -> usize {
    let (literal_bytes, values) =
        parts.iter().fold((0usize, 0usize), |(literal, values), part| match part {
            Part::Literal(text) => (literal + text.len(), values),
            Part::Expression(expression) => (literal, values + expression.value_patterns()),
        });
    COMPILED_BASE_BYTES
        .saturating_add(literal_bytes.saturating_mul(COMPILED_BYTES_PER_LITERAL_BYTE))
        .saturating_add(values.saturating_mul(COMPILED_BYTES_PER_VALUE))
        .saturating_add(pattern.len())
}

/// Variables in all the expressions of a template: `{a,b}{/c}` has 3.
fn variable_count(parts: &[Part<'_>]) -> usize {
    parts
        .iter()
        .map(|part| match part {
            Part::Literal(_) => 0,
            Part::Expression(expression) => expression.var_count,
        })
        .sum()
}

/// What one cache entry costs besides its compiled regex: the hash table slot (twice, for the
/// table's spare capacity) and the key's allocation. A test checks it against the types.
const CACHE_ENTRY_OVERHEAD: usize = 192;

/// A cache of compiled templates bounded by their estimated bytes.
///
/// Two generations, each allowed half the budget: entries go into the young one; when it is
/// full it becomes the old one, and the previous old one is dropped whole. A hit in the old
/// generation moves the entry back to the young one, so a template looked up between two
/// rotations survives, while a burst of one-off templates (an attack, or a deployment changing
/// every URL) only pushes out what nobody looked up since the previous rotation. This approximates
/// LRU with O(1) work per operation and no bookkeeping on a young hit, which is the hot path
/// (every publish and subscribe parses the selectors of its token).
struct TemplateCache {
    state: Mutex<Generations>,
}

/// The cache's state, under its lock. Invariant: each generation holds at most `budget / 2`
/// estimated bytes, so both together at most `budget`.
struct Generations {
    budget: usize,
    young: Generation,
    old: Generation,
}

/// Entries and their estimated bytes.
#[derive(Default)]
struct Generation {
    entries: HashMap<Box<str>, Entry>,
    bytes: usize,
}

/// One cached compilation and its estimated cost.
struct Entry {
    compiled: Compiled,
    bytes: usize,
}

impl Generation {
    fn insert(&mut self, key: Box<str>, entry: Entry) {
        self.bytes += entry.bytes;
        if let Some(previous) = self.entries.insert(key, entry) {
            self.bytes -= previous.bytes;
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.bytes -= entry.bytes;
        Some(entry)
    }
}

impl Generations {
    /// Inserts into the young generation, rotating first if it would exceed its half. Returns
    /// what was evicted, for the caller to drop after releasing the lock. An entry larger than
    /// a generation is not cached at all.
    #[must_use]
    fn put(&mut self, key: Box<str>, entry: Entry) -> Option<Generation> {
        let half = self.budget / 2;
        // Two requests may have compiled the same template: keep one copy.
        self.old.remove(&key);
        self.young.remove(&key);
        if entry.bytes > half {
            return None;
        }
        let evicted = (self.young.bytes + entry.bytes > half)
            .then(|| std::mem::replace(&mut self.old, std::mem::take(&mut self.young)));
        self.young.insert(key, entry);
        evicted
    }
}

impl TemplateCache {
    fn new(budget: usize) -> Self {
        let state =
            Generations { budget, young: Generation::default(), old: Generation::default() };
        Self { state: Mutex::new(state) }
    }

    fn lock(&self) -> MutexGuard<'_, Generations> {
        // A poisoned lock only means a panic elsewhere while holding it; the maps are still
        // valid (their byte counts at worst a little off until the next rotation).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached result for `key`, if any.
    fn get(&self, key: &str) -> Option<Compiled> {
        let (found, evicted) = {
            let mut state = self.lock();
            if let Some(entry) = state.young.entries.get(key) {
                return Some(entry.compiled.clone());
            }
            let entry = state.old.remove(key)?;
            let found = entry.compiled.clone();
            (found, state.put(key.into(), entry))
        };
        // Freeing a generation's regexes takes a while: not under the lock.
        drop(evicted);
        Some(found)
    }

    /// Caches `compiled`, which holds an estimated `bytes` besides the entry itself.
    fn insert(&self, key: &str, compiled: Compiled, bytes: usize) {
        let entry = Entry { compiled, bytes: bytes + key.len() + CACHE_ENTRY_OVERHEAD };
        let evicted = self.lock().put(key.into(), entry);
        drop(evicted);
    }

    /// Changes the budget, evicting whatever no longer fits.
    fn set_budget(&self, budget: usize) {
        let evicted = {
            let mut state = self.lock();
            if state.budget == budget {
                return;
            }
            state.budget = budget;
            let half = budget / 2;
            let mut evicted = Vec::new();
            if state.young.bytes > half {
                evicted.push(std::mem::take(&mut state.young));
            }
            if state.old.bytes > half {
                evicted.push(std::mem::take(&mut state.old));
            }
            evicted
        };
        drop(evicted);
    }

    /// Estimated bytes held.
    #[cfg(any(test, feature = "unstable-internals"))]
    fn bytes(&self) -> usize {
        let state = self.lock();
        state.young.bytes + state.old.bytes
    }
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

impl Expression {
    /// Value sub-patterns in this expression's regex (see [`push_expression`]): the first
    /// value, then the separated ones, counted out unless an explode turns them into a `*`.
    fn value_patterns(&self) -> usize {
        if self.var_count > 1 || self.first_explodes {
            if self.any_explodes {
                2
            } else {
                self.var_count
            }
        } else {
            1
        }
    }
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

    // -----------------------------------------------------------------------------------------
    // Limits on subscribers' selectors, and the cache of compiled templates.
    // -----------------------------------------------------------------------------------------

    /// The defaults of the configuration.
    const DEFAULTS: SelectorLimits =
        SelectorLimits { max_topics: 100, max_length: 4096, max_variables: 32 };

    /// `{op v0,v1,...}` with `n` variables.
    fn expression(operator: &str, n: usize) -> String {
        let names: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
        format!("{{{operator}{}}}", names.join(","))
    }

    /// The costliest templates the default limits admit, one per shape: a long literal, many
    /// variables in one expression, many expressions, literals between expressions, multi-byte
    /// characters. `tag` makes them distinct.
    fn largest_admitted(tag: usize) -> Vec<String> {
        let pad = |text: String, filler: &str| {
            let mut text = format!("https://e.com/{tag}/{text}");
            while text.len() + filler.len() <= 4096 {
                text.push_str(filler);
            }
            text
        };
        vec![
            pad(expression("+", 32), "a"),
            pad(expression("/", 32), "%41"),
            pad((0..32).map(|i| format!("{{#v{i}}}")).collect(), "é"),
            format!(
                "https://e.com/{tag}/{}",
                (0..32).map(|i| format!("{}{{?v{i}}}", "😀".repeat(30))).collect::<String>()
            ),
        ]
    }

    #[test]
    fn subscriber_selectors_within_the_limits_parse_as_before() {
        let rows = [
            "*",
            "",
            "https://e.com/books/1",
            "https://e.com/books/{id}",
            "https://e.com/books/{id}/reviews{/rid}{?page,sort}",
            "/.well-known/mercure/subscriptions{/topic}{/subscriber}",
            "https://example.com/hub?topic=faulty{iri",
            "{x,,y}",
            "{var:3}",
            "{/l*,p:4}",
        ];
        let topics =
            ["", "https://e.com/books/1", "https://e.com/books/", "/x/y", "value", "{x,,y}"];
        for raw in rows {
            let trusted = TopicSelector::parse(raw);
            let limited = TopicSelector::parse_limited(raw, &DEFAULTS).expect("within the limits");
            assert_eq!(limited, trusted);
            assert_eq!(limited.exact(), trusted.exact(), "{raw:?}");
            for topic in topics.iter().chain([&raw]) {
                assert_eq!(limited.matches(topic), trusted.matches(topic), "{raw:?} vs {topic:?}");
            }
        }
        // Random selectors, valid and invalid templates alike.
        let pieces = ["{", "}", "{a}", "{/b,c}", "{?d*}", "%41", ",", "x", "/", "é", ":3", "{+e}"];
        let mut rng = Rng(7);
        for _ in 0..2000 {
            let selector: String = (0..rng.below(10)).map(|_| rng.pick(&pieces)).collect();
            let topic: String = (0..rng.below(10)).map(|_| rng.pick(&pieces)).collect();
            let limited = TopicSelector::parse_limited(&selector, &DEFAULTS).expect("small");
            let trusted = TopicSelector::parse(&selector);
            assert_eq!(limited.exact(), trusted.exact(), "{selector:?}");
            assert_eq!(limited.matches(&topic), trusted.matches(&topic), "{selector:?} {topic:?}");
        }
    }

    #[test]
    fn selector_length_limit() {
        let limits = SelectorLimits { max_length: 40, ..DEFAULTS };
        let at_limit = format!("https://e.com/{}{{id}}", "a".repeat(40 - 18));
        assert_eq!(at_limit.len(), 40);
        assert!(TopicSelector::parse_limited(&at_limit, &limits).is_ok());
        let over = format!("{at_limit}b");
        assert_eq!(
            TopicSelector::parse_limited(&over, &limits),
            Err(SelectorError::TooLong { length: 41, max: 40 })
        );
        // Exact selectors and invalid templates too: the limit is on what is read.
        for raw in ["a".repeat(41), format!("{}{{", "a".repeat(40))] {
            assert!(matches!(
                TopicSelector::parse_limited(&raw, &limits),
                Err(SelectorError::TooLong { .. })
            ));
        }
    }

    #[test]
    fn template_variable_limit_counts_every_expression() {
        let limits = SelectorLimits { max_variables: 4, ..DEFAULTS };
        for raw in ["{a,b,c,d}", "{a}{b}{c}{d}", "/x{/a,b*}{?c,d}", "{a:3,b}{+c,d}"] {
            let selector = TopicSelector::parse_limited(raw, &limits).expect("4 variables");
            assert!(matches!(selector, TopicSelector::Template { .. }), "{raw:?}");
        }
        for raw in ["{a,b,c,d,e}", "{a}{b}{c}{d}{e}", "/x{/a,b*}{?c,d}{#e}", "{a*,b*,c*,d*,e*}"] {
            assert_eq!(
                TopicSelector::parse_limited(raw, &limits),
                Err(SelectorError::TooManyVariables { count: 5, max: 4 }),
                "{raw:?}"
            );
        }
        // Not a template: compared exactly, as the reference hub does; nothing to compile.
        let invalid = "{a,b,c,d,e,f";
        assert_eq!(
            TopicSelector::parse_limited(invalid, &limits).expect("exact").exact(),
            Some(invalid)
        );

        // The review's attack: 1,001 variables in ~2 KB.
        let attack = format!("{{/{}}}", vec!["a"; 1001].join(","));
        assert!(attack.len() < DEFAULTS.max_length);
        assert_eq!(
            TopicSelector::parse_limited(&attack, &DEFAULTS),
            Err(SelectorError::TooManyVariables { count: 1001, max: 32 })
        );
    }

    #[test]
    fn topic_count_limit() {
        let limits = SelectorLimits { max_topics: 3, ..DEFAULTS };
        let parsed = parse_subscription(&["a", "{b}", "*"], &limits).expect("3 topics");
        assert_eq!(parsed.len(), 3);
        assert!(parsed[2].is_any());
        assert_eq!(
            parse_subscription(&["a", "b", "c", "d"], &limits),
            Err(SelectorError::TooManyTopics { count: 4, max: 3 })
        );
        let too_long = "x".repeat(5000);
        assert!(matches!(
            parse_subscription(&["a", &too_long], &limits),
            Err(SelectorError::TooLong { length: 5000, .. })
        ));
    }

    #[test]
    fn errors_name_the_setting() {
        let cases = [
            (SelectorError::TooManyTopics { count: 101, max: 100 }, "max_topics_per_subscription"),
            (SelectorError::TooLong { length: 5000, max: 4096 }, "max_selector_length"),
            (SelectorError::TooManyVariables { count: 33, max: 32 }, "max_template_variables"),
            (SelectorError::TooLarge { limit: REGEX_SIZE_LIMIT }, "max_template_variables"),
        ];
        for (error, setting) in cases {
            let message = error.to_string();
            assert!(message.contains(setting), "{message:?} should name {setting}");
        }
    }

    #[test]
    fn the_default_limits_never_reach_the_compiled_size_limit() {
        for raw in largest_admitted(0) {
            assert!(raw.len() <= 4096, "{}", raw.len());
            let selector = TopicSelector::parse_limited(&raw, &DEFAULTS).expect("admitted");
            assert!(matches!(selector, TopicSelector::Template { .. }), "{raw:?}");
            assert!(selector.matches(&raw));
        }
    }

    #[test]
    fn compiled_size_limit_refuses_subscribers_but_not_signed_selectors() {
        // Only reachable with raised limits: 400 variables compile to about 200 KB of NFA...
        let raised = SelectorLimits { max_length: 1 << 20, max_variables: 2000, ..DEFAULTS };
        let fits = |tag: &str| format!("/{tag}{}", expression("/", 400));
        // ...and 1000 to about 500 KB: over REGEX_SIZE_LIMIT, under TRUSTED_REGEX_SIZE_LIMIT.
        let too_large = |tag: &str| format!("/{tag}{}", expression("/", 1000));
        let refused = Err(SelectorError::TooLarge { limit: REGEX_SIZE_LIMIT });

        assert!(TopicSelector::parse_limited(&fits("a"), &raised).is_ok());
        // Whichever kind of caller compiles (and caches) it first.
        assert_eq!(TopicSelector::parse_limited(&too_large("b"), &raised), refused);
        assert!(matches!(TopicSelector::parse(&too_large("b")), TopicSelector::Template { .. }));
        assert_eq!(TopicSelector::parse_limited(&too_large("b"), &raised), refused);
        assert!(matches!(TopicSelector::parse(&too_large("c")), TopicSelector::Template { .. }));
        assert_eq!(TopicSelector::parse_limited(&too_large("c"), &raised), refused);

        // Beyond the trusted limit a signed selector is compared exactly, as before.
        let huge = format!("https://e.com/{}/{{id}}", "a".repeat(40_000));
        assert_eq!(TopicSelector::parse(&huge).exact(), Some(huge.as_str()));
        let raised = SelectorLimits { max_length: 1 << 20, ..DEFAULTS };
        assert_eq!(TopicSelector::parse_limited(&huge, &raised), refused);
    }

    /// The estimate against the engine's own accounting (`regex` wraps this `meta::Regex`,
    /// built the same way): never below it, and not wildly above.
    #[test]
    fn compiled_size_estimate_bounds_the_engine_memory() {
        use regex_automata::meta;
        let mut templates: Vec<String> = vec![
            "{x}".into(),
            "https://example.com/books/{id}".into(),
            "https://example.com/books/{id}/reviews{/rid}{?page,sort}".into(),
            "/.well-known/mercure/subscriptions{/topic}{/subscriber}".into(),
            format!("{{/{}}}", vec!["a"; 1001].join(",")),
            format!("{{/{}*}}", vec!["a"; 100].join(",")),
            format!("{{a*{}}}", ",b".repeat(40)),
        ];
        for operator in ["", "+", "#", ".", "/", ";", "?", "&"] {
            for n in [1, 2, 3, 8, 32, 128] {
                templates.push(expression(operator, n));
                templates.push((0..n).map(|i| format!("{{{operator}v{i}}}")).collect());
            }
        }
        templates.extend(largest_admitted(0));
        for template in &templates {
            let parts = parse_template(template).expect("valid template");
            let pattern = template_pattern(&parts).expect("compilable");
            let regex = meta::Builder::new()
                .configure(
                    meta::Config::new()
                        .match_kind(regex_automata::MatchKind::LeftmostFirst)
                        .utf8_empty(true)
                        .nfa_size_limit(Some(TRUSTED_REGEX_SIZE_LIMIT))
                        .onepass_size_limit(Some(TRUSTED_REGEX_SIZE_LIMIT))
                        .hybrid_cache_capacity(REGEX_DFA_SIZE_LIMIT),
                )
                .build(&pattern)
                .expect("compiles");
            let actual = regex.memory_usage() + pattern.len();
            let estimate = estimated_size(&parts, &pattern);
            assert!(estimate >= actual, "{template:?}: estimate {estimate} < {actual}");
            assert!(estimate <= 3 * actual, "{template:?}: estimate {estimate} > 3 x {actual}");
        }
    }

    /// A stand-in compiled result of `bytes` estimated bytes.
    fn insert(cache: &TemplateCache, key: &str, bytes: usize) {
        cache.insert(key, Compiled::NotTemplate, bytes - key.len() - CACHE_ENTRY_OVERHEAD);
    }

    #[test]
    fn cache_is_bounded_by_bytes() {
        let cache = TemplateCache::new(100_000);
        for i in 0..994 {
            insert(&cache, &format!("k{i:04}"), 7_000);
            assert!(cache.bytes() <= 100_000, "after {i}: {}", cache.bytes());
        }
        // Each generation holds 7 entries of 7,000 bytes within its 50,000: the 14 newest.
        assert_eq!(cache.bytes(), 14 * 7_000);
        assert!(cache.get("k0979").is_none() && cache.get("k0000").is_none());
        assert!(cache.get("k0993").is_some() && cache.get("k0987").is_some());
        // In the old generation: found, and moved to a new young one.
        assert!(cache.get("k0980").is_some());
        assert!(cache.get("k0980").is_some() && cache.get("k0993").is_some());
        assert_eq!(cache.bytes(), 8 * 7_000);

        // Larger than a generation: not cached, nothing evicted.
        insert(&cache, "big", 50_001);
        assert!(cache.get("big").is_none());
        assert_eq!(cache.bytes(), 8 * 7_000);

        // Inserting a key twice (two compilations of one template) counts it once.
        insert(&cache, "k0999", 7_000);
        insert(&cache, "k0999", 7_000);
        assert_eq!(cache.bytes(), 9 * 7_000);

        // A smaller budget evicts at once.
        cache.set_budget(30_000);
        assert!(cache.bytes() <= 30_000);
        cache.set_budget(0);
        assert_eq!(cache.bytes(), 0);
        insert(&cache, "k", 1_000);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn cache_keeps_templates_in_use() {
        let cache = TemplateCache::new(100_000);
        insert(&cache, "hot", 1_000);
        for i in 0..1000 {
            insert(&cache, &format!("one-off {i}"), 5_000);
            // Each lookup in the old generation moves the entry back to the young one.
            assert!(cache.get("hot").is_some(), "evicted after {i}");
            assert!(cache.bytes() <= 100_000);
        }
    }

    #[test]
    fn cache_entry_overhead_covers_the_table() {
        let slot = std::mem::size_of::<(Box<str>, Entry)>() + 1;
        // The table keeps up to one free slot per used one; the key's heap block has a header.
        assert!(2 * slot + 16 <= CACHE_ENTRY_OVERHEAD, "{slot}");
    }

    /// The review's attack, repeated on the process-wide cache: distinct templates at the
    /// largest size the limits admit leave at most the budget behind.
    #[test]
    fn global_cache_stays_within_its_budget() {
        set_cache_size(DEFAULT_SELECTOR_CACHE_SIZE);
        for tag in 0..40 {
            let topics = largest_admitted(1000 + tag);
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            parse_subscription(&topics, &DEFAULTS).expect("admitted");
            assert!(cache_bytes() <= DEFAULT_SELECTOR_CACHE_SIZE, "{}", cache_bytes());
        }
    }
}
