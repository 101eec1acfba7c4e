//! Strict `application/x-www-form-urlencoded` decoding, for publish bodies and query strings.
//!
//! Mercure needs two things common decoders get wrong: a key with an empty value must survive
//! (`private=` makes an update private), and malformed input must be refused rather than guessed
//! at, so a publisher learns about a broken client instead of silently publishing mangled data.
//! Every parse is bounded by a number of pairs (`max_form_fields`): the count is checked before a
//! pair is decoded, so an oversized form costs no more than the limit in allocations.

use thiserror::Error;

/// Why a form or query string could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormError {
    /// A `%` not followed by two hexadecimal digits.
    #[error("invalid percent-encoding near byte {0}: `%` must be followed by two hex digits")]
    BadEscape(usize),
    /// The decoded bytes of a key or value are not UTF-8.
    #[error("the form is not valid UTF-8 once percent-decoded")]
    NotUtf8,
    /// More `key=value` pairs than allowed.
    #[error("more than {0} fields (limit set by max_form_fields)")]
    TooManyFields(usize),
}

/// Decoded `key=value` pairs in their original order (keys may repeat).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Decodes `input`: pairs separated by `&`, `+` meaning a space, `%XX` escapes. A pair without
    /// `=` is a key with an empty value; empty pairs (`a&&b`) are skipped and not counted. More
    /// than `max_fields` pairs is an error.
    pub fn parse(input: &[u8], max_fields: usize) -> Result<Self, FormError> {
        let mut pairs = Vec::new();
        let mut offset = 0;
        for pair in input.split(|&b| b == b'&') {
            if !pair.is_empty() {
                if pairs.len() == max_fields {
                    return Err(FormError::TooManyFields(max_fields));
                }
                let (key, value) = match pair.iter().position(|&b| b == b'=') {
                    Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                    None => (pair, &pair[pair.len()..]),
                };
                let value_offset = offset + key.len() + 1;
                pairs.push((decode(key, offset)?, decode(value, value_offset)?));
            }
            offset += pair.len() + 1;
        }
        Ok(Self(pairs))
    }

    /// The first value of `key`, as the reference hub reads `data`, `id`, `type` and `retry`.
    pub fn first(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order (`topic` repeats for alternate topics).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every `(key, value)` pair, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// Whether `key` is present at all, even with an empty value.
    pub fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

/// Decodes one form-encoded component (`+` is a space, `%XX` an escape, hex digits in either
/// case), such as a path segment of the subscriptions API or a query key checked before logging.
/// Fails as [`Form::parse`] does, with error offsets counted from the start of `text`.
pub fn decode_component(text: &str) -> Result<String, FormError> {
    decode(text.as_bytes(), 0)
}

/// Decodes one percent-encoded URL path segment: `%XX` escapes only, a `+` stays a plus (as
/// Mercure 1.0 encodes the segments of its subscription topics).
pub fn decode_path_segment(text: &str) -> Result<String, FormError> {
    unescape(text.as_bytes(), 0, false)
}

/// Decodes `raw`, the part of a form that starts at byte `offset` (used in error positions).
fn decode(raw: &[u8], offset: usize) -> Result<String, FormError> {
    unescape(raw, offset, true)
}

/// Decodes `%XX` escapes in `raw` (which starts at byte `offset`), and `+` as a space when
/// `plus_is_space` (forms) rather than as itself (paths).
fn unescape(raw: &[u8], offset: usize, plus_is_space: bool) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or(FormError::BadEscape(offset + i))?;
                let (hi, lo) = (hex_value(hex[0]), hex_value(hex[1]));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(FormError::BadEscape(offset + i)),
                }
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8)
}

/// The value of one hexadecimal digit, upper or lower case.
fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Form, FormError> {
        Form::parse(input, 100)
    }

    #[test]
    fn keeps_empty_values_and_order() {
        let form = parse(b"topic=a&private=&topic=b&flag").expect("valid form");
        assert_eq!(form.all("topic").collect::<Vec<_>>(), ["a", "b"]);
        assert!(form.contains("private"));
        assert_eq!(form.first("private"), Some(""));
        assert_eq!(form.first("flag"), Some(""));
        assert_eq!(form.first("missing"), None);
    }

    #[test]
    fn decodes_plus_and_escapes() {
        let form = parse(b"data=a+b%0D%0Ac%3D%26&k%2Bx=%C3%A9").expect("valid form");
        assert_eq!(form.first("data"), Some("a b\r\nc=&"));
        assert_eq!(form.first("k+x"), Some("é"));
    }

    #[test]
    fn skips_empty_pairs() {
        let form = parse(b"&&a=1&&").expect("valid form");
        assert_eq!(form.first("a"), Some("1"));
        assert_eq!(parse(b"").expect("empty form"), Form::default());
    }

    #[test]
    fn counts_pairs_against_the_limit() {
        assert_eq!(Form::parse(b"a&b&&c", 3).expect("three pairs").0.len(), 3);
        assert_eq!(Form::parse(b"a&b&c&d", 3), Err(FormError::TooManyFields(3)));
        // Checked before decoding, so a malformed pair past the limit is not even looked at.
        assert_eq!(Form::parse(b"a&b&%zz", 2), Err(FormError::TooManyFields(2)));
        let message = FormError::TooManyFields(3).to_string();
        assert!(message.contains("max_form_fields"), "{message}");
    }

    #[test]
    fn refuses_bad_escapes_and_invalid_utf8() {
        assert_eq!(parse(b"a=%"), Err(FormError::BadEscape(2)));
        assert_eq!(parse(b"a=%4"), Err(FormError::BadEscape(2)));
        assert_eq!(parse(b"x=1&a=%zz"), Err(FormError::BadEscape(6)));
        assert_eq!(parse(b"a=%FF"), Err(FormError::NotUtf8));
        assert_eq!(parse(b"a=\xff"), Err(FormError::NotUtf8));
    }

    #[test]
    fn decodes_a_path_segment_without_turning_plus_into_a_space() {
        assert_eq!(decode_path_segment("a+b%20c%2Fd").expect("valid"), "a+b c/d");
        assert!(decode_path_segment("%+1").is_err(), "a sign is not a hex digit");
        assert!(decode_path_segment("%zz").is_err() && decode_path_segment("%C3").is_err());
    }

    #[test]
    fn decodes_one_component() {
        assert_eq!(decode_component(""), Ok(String::new()));
        assert_eq!(decode_component("a+b%2B%3d%c3%A9"), Ok("a b+=é".to_owned()));
        // `&` and `=` are not separators here: the component is decoded whole.
        assert_eq!(decode_component("k=v&w"), Ok("k=v&w".to_owned()));
        assert_eq!(decode_component("%41%5a%61%7A"), Ok("AZaz".to_owned()));
        // Offsets count from the start of the component.
        assert_eq!(decode_component("%"), Err(FormError::BadEscape(0)));
        assert_eq!(decode_component("ab%6"), Err(FormError::BadEscape(2)));
        assert_eq!(decode_component("ab%g1"), Err(FormError::BadEscape(2)));
        assert_eq!(decode_component("%E2%82"), Err(FormError::NotUtf8));
    }
}
