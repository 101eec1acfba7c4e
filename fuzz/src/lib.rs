//! Helpers shared by the fuzz targets of `fuzz_targets/`: an independent event stream parser
//! ([`sse`]), a form encoder ([`encode_component`]), the test keys and token signing
//! ([`keys`]), and a hub running in process behind actix-web's test service ([`harness`]).
//!
//! Nothing here is a copy of the hub's code: the targets call the hub's own functions and
//! handlers, and use these helpers to build their inputs and to check what comes out.

pub mod harness;
pub mod keys;
pub mod sse;

/// Form-encodes `text` (`application/x-www-form-urlencoded`): unreserved bytes as they are, a
/// space as `+`, every other byte as `%XX`. Written from the WHATWG URL standard, so that the
/// targets can check the hub's decoder against an encoder that is not the hub's.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Form-encodes `key=value` pairs, joined with `&`.
pub fn encode_form<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .map(|(key, value)| format!("{}={}", encode_component(key), encode_component(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lets panics raised inside the `urlpattern` crate unwind to the hub's `catch_unwind` (see
/// `UrlPatternMatcher::parse`) instead of aborting the fuzzer at once, as libFuzzer's panic hook
/// does for every panic. One that the hub does not catch still ends the run: unwinding out of
/// the target aborts. Call it from the target; the first call installs the hook.
pub fn let_urlpattern_panics_unwind() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_urlpattern =
                info.location().is_some_and(|at| at.file().contains("/urlpattern-"));
            if !in_urlpattern {
                abort(info);
            }
        }));
    });
}

/// Splits `data` at its first `separator`: what comes before, and what comes after (`None`
/// when there is no separator). Targets whose input has several parts use it, so that their
/// seeds stay readable text.
pub fn split_once(data: &[u8], separator: u8) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == separator) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_the_hub_decodes() {
        assert_eq!(encode_component("a b&c=é+"), "a+b%26c%3D%C3%A9%2B");
        assert_eq!(encode_form([("topic", "x y"), ("private", "")]), "topic=x+y&private=");
    }
}
