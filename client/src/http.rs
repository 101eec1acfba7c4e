//! What the publisher and the subscriber share about talking to a hub: reading its refusals
//! (`Retry-After`, `WWW-Authenticate`, the text of the body), the HTTP client they use when the
//! caller gives none, and the jitter added to their waits.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};

/// The most bytes of a refusal's body kept for its message: the hub's are one sentence, and
/// anything else (an HTML error page from a proxy) must not fill the caller's logs.
const MESSAGE_LIMIT: usize = 1024;

/// How long a connection to the hub may take to open: longer means the hub is out of reach.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the body of a refusal may take to arrive.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The hub's explanation of a refusal: the start of the body, as text, trimmed. What cannot be
/// read (an error, or a body slower than [`MESSAGE_TIMEOUT`]) is left out: the status already
/// says what happened.
pub(crate) async fn message(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    let read = async {
        while bytes.len() < MESSAGE_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(MESSAGE_TIMEOUT, read).await;
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(MESSAGE_LIMIT)]).into_owned();
    let trimmed = text.trim_end().len();
    text.truncate(trimmed);
    text.trim_start().to_owned()
}

/// `Retry-After` in delta-seconds, the form hubs send. An HTTP date is not read (the caller's
/// own backoff applies then).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// The `WWW-Authenticate` challenge of a 401 or 403, as sent.
pub(crate) fn challenge(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(WWW_AUTHENTICATE)?;
    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// `delay` plus up to a tenth more, at random, so that the clients of a hub that just came back
/// do not all knock at once. Never less than `delay`: the waits callers rely on are minimums.
pub(crate) fn with_jitter(delay: Duration) -> Duration {
    // A v4 UUID is 122 random bits from the system's generator: no other dependency needed.
    let random = uuid::Uuid::new_v4().as_u128() as u64 % 1000;
    delay.saturating_add(delay.mul_f64(random as f64 / 10_000.0))
}

/// An error with its causes, `: `-separated: reqwest's own message names the URL, its causes
/// say what failed (connection refused, a TLS failure, ...).
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(5)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 0 "));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        for other in ["Wed, 21 Oct 2015 07:28:00 GMT", "-1", "1.5", ""] {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(other));
            assert_eq!(retry_after(&headers), None, "{other}");
        }
    }

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        let delay = Duration::from_millis(1000);
        for _ in 0..100 {
            let jittered = with_jitter(delay);
            assert!(jittered >= delay && jittered < Duration::from_millis(1100), "{jittered:?}");
        }
        assert_eq!(with_jitter(Duration::ZERO), Duration::ZERO);
        assert_eq!(with_jitter(Duration::MAX), Duration::MAX, "saturates");
    }
}
