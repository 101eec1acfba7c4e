//! Rules of the Mercure protocol that hubs and clients share: which values a publisher may not
//! send. Quicksilver's hub applies them to every publication; this crate's
//! [`UpdateBuilder::build`](crate::UpdateBuilder::build) applies them before anything is sent,
//! so that the two never disagree.

use std::sync::LazyLock;

/// The SSE event type of the hub's own events (Mercure 1.0 subscription events): a publisher may
/// not use it.
pub const HUB_EVENT_TYPE: &str = "mercure";

/// The `Last-Event-ID` that means "from the beginning of history": a publisher may not use it as
/// an update's id.
pub const EARLIEST: &str = "earliest";

/// The characters of Unicode's general category Cf (format), Unicode 15.0 to 16.0, as inclusive
/// ranges. Rust's standard library has no general-category lookup, and the list is short and
/// stable (the last addition, U+13439 to U+1343F, came with Unicode 15.0).
const FORMAT_CHARACTERS: [(char, char); 21] = [
    ('\u{AD}', '\u{AD}'),
    ('\u{600}', '\u{605}'),
    ('\u{61C}', '\u{61C}'),
    ('\u{6DD}', '\u{6DD}'),
    ('\u{70F}', '\u{70F}'),
    ('\u{890}', '\u{891}'),
    ('\u{8E2}', '\u{8E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether `c` is a Unicode format (Cf) character: invisible, it can make two different strings
/// look the same (U+200B) or reorder what is displayed (U+202E).
pub fn is_format_character(c: char) -> bool {
    FORMAT_CHARACTERS.iter().any(|&(low, high)| (low..=high).contains(&c))
}

/// The path of the hub, and the root of the namespace reserved for its own events.
const RESERVED_PATH: &str = "/.well-known/mercure";

/// The bases a relative topic is resolved against. Only the path of the result matters, so the
/// host is a placeholder: the hub's URL (how Mercure 1.0 resolves topics for URL Pattern
/// matching), and the bare origin (the reference hub's base when its resource identifier is not
/// a hub URL), so that a relative topic landing in the namespace under either is refused.
static BASES: LazyLock<[url::Url; 2]> = LazyLock::new(|| {
    let base = |text| url::Url::parse(text).expect("a constant, valid absolute URL");
    [base("https://hub.invalid/.well-known/mercure"), base("https://hub.invalid/")]
});

/// Whether `topic`, resolved like a URL, lies in the namespace of the hub's own events: its path,
/// with dot segments removed (the WHATWG parser does it, `%2e` forms included) and `%XX` escapes
/// of unreserved characters decoded, is `/.well-known/mercure` or below it. The host does not
/// matter, since a subscriber's URL Pattern may match a topic on any host. A topic that is not a
/// URL at all is outside unless its resolution lands inside.
pub fn in_reserved_namespace(topic: &str) -> bool {
    // A reference without a path (``, `?x`, `#x`) resolves to the hub's URL itself only because
    // the hub's URL is the base: the empty topic has always been accepted (tests/http.rs), and
    // the hub publishes nothing there. Such topics are resolved against the origin alone.
    let pathless = topic.trim_start().is_empty() || topic.trim_start().starts_with(['?', '#']);
    BASES.iter().skip(usize::from(pathless)).any(|base| {
        base.join(topic).is_ok_and(|url| {
            let path = decode_unreserved(url.path());
            path == RESERVED_PATH
                || path.strip_prefix(RESERVED_PATH).is_some_and(|rest| rest.starts_with('/'))
        })
    })
}

/// `path` with the `%XX` escapes of unreserved characters (letters, digits, `-._~`) decoded;
/// other escapes kept (`%2F` is not a `/`).
fn decode_unreserved(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        let decoded = escape
            .get(1..3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|byte| byte.is_ascii_alphanumeric() || b"-._~".contains(byte));
        match decoded {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &escape[3..];
            }
            None => {
                out.push('%');
                rest = &escape[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_namespace_in_every_spelling() {
        for topic in [
            "/.well-known/mercure",
            "/.well-known/mercure/",
            "/.well-known/mercure/subscriptions/x",
            "/.well-known/%6Dercure/x",
            "/.well-known/%6dercure/x",
            "/%2Ewell-known/mercure",
            "/.well-known/merc%75re",
            "https://evil.example/.well-known/mercure",
            "http://evil.example:8080/.well-known/mercure/x?y#z",
            "urn-like://host/.well-known/mercure",
            "/a/../.well-known/mercure/x",
            "/./.well-known/mercure",
            "/a/%2e%2e/.well-known/mercure",
            "/a/%2E./.well-known/mercure",
            "/a/.%2e/.well-known/mercure",
            "/.well-known/mercure/%2e",
            ".well-known/mercure/x",
            "mercure/x",
            "../.well-known/mercure",
            "\\.well-known\\mercure",
            "https://evil.example\\.well-known\\mercure\\x",
            "//other.example/.well-known/mercure",
            " /.well-known/mercure",
        ] {
            assert!(in_reserved_namespace(topic), "{topic:?} should be reserved");
        }
    }

    #[test]
    fn topics_outside_the_namespace() {
        for topic in [
            "https://example.com/books/1",
            "https://example.com/.well-known/mercure-not/x",
            "/.well-known/mercurex",
            "/.well-known/mercure%2Fx",
            "/.well-known%2Fmercure",
            "/.WELL-KNOWN/mercure",
            "/x/.well-known/mercure",
            "foo bar",
            "",
            "?x",
            "#x",
            "*",
            "urn:uuid:0190-.well-known/mercure",
            "mailto:a@.well-known/mercure",
            "http://[::1",
        ] {
            assert!(!in_reserved_namespace(topic), "{topic:?} is an ordinary topic");
        }
    }

    #[test]
    fn decodes_only_unreserved_escapes() {
        assert_eq!(decode_unreserved("/%41%7a%2D%2e%5F%7E"), "/Az-._~");
        assert_eq!(decode_unreserved("/%2F%20%25%zz%4"), "/%2F%20%25%zz%4");
        assert_eq!(decode_unreserved("/%41%2F%7e%2x%"), "/A%2F~%2x%");
        assert_eq!(decode_unreserved("%%41"), "%A");
        assert_eq!(decode_unreserved("é%C3%A9"), "é%C3%A9");
    }

    #[test]
    fn format_characters_are_unicode_category_cf() {
        for c in ['\u{AD}', '\u{200B}', '\u{202E}', '\u{FEFF}', '\u{E0001}', '\u{E007F}'] {
            assert!(is_format_character(c), "{c:?}");
        }
        for c in ['a', ' ', '\n', '\u{200A}', '\u{2028}', 'é', '\u{1F600}'] {
            assert!(!is_format_character(c), "{c:?}");
        }
    }
}
